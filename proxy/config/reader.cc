#include "proxy/config/reader.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>
#include <tuple>

#include "proxy/config/suggest.h"

namespace sluice::config {

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "'" + node.Scalar() + "'";
    default:
      return "nothing";
  }
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

void Reader::error(const YAML::Mark& mark, std::string message) {
  ConfigError e;
  e.file = file_;
  e.line = mark.is_null() ? 1 : mark.line + 1;
  e.column = mark.is_null() ? 1 : mark.column + 1;
  e.message = std::move(message);
  errors_.push_back(std::move(e));
}

void Reader::errorWithoutPosition(std::string message) {
  errors_.push_back(ConfigError{file_, 0, 0, std::move(message)});
}

YAML::Mark Reader::markOf(const Entry& entry) {
  if (entry.value.IsDefined() && !entry.value.IsNull() && !entry.value.Mark().is_null()) {
    return entry.value.Mark();
  }
  return entry.anchor;
}

Position Reader::positionOf(const Entry& entry) {
  const YAML::Mark mark = markOf(entry);
  if (mark.is_null()) return {1, 1};
  return {mark.line + 1, mark.column + 1};
}

void Reader::error(const Entry& entry, const std::string& message) {
  error(markOf(entry), entry.path + ": " + message);
}

MapView Reader::openMap(const Entry& entry, Keys known, bool is_root) {
  MapView view;
  view.path = entry.path;
  view.mark = is_root ? YAML::Mark() : markOf(entry);
  view.is_root = is_root;
  const YAML::Node& node = entry.value;
  if (!node.IsDefined() || node.IsNull()) {
    view.valid = true;
    return view;
  }
  if (!node.IsMap()) {
    if (is_root) {
      error(node.Mark(), "expected a map of settings at the top level, got " + describe(node));
    } else {
      error(entry, "expected a map, got " + describe(node));
    }
    return view;
  }
  view.valid = true;
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    // Copies: the iterator's `->` hands out a temporary pair.
    YAML::Node key = it->first;
    YAML::Node value = it->second;
    if (!key.IsScalar()) {
      error(key.Mark(), "keys must be plain strings, got " + describe(key));
      continue;
    }
    std::string name = key.Scalar();
    std::string where = is_root ? "at the top level" : "in " + entry.path;
    if (!seen.insert(name).second) {
      error(key.Mark(), "duplicate key '" + name + "' " + where);
      continue;
    }
    if (known.size() != 0 && std::find(known.begin(), known.end(), name) == known.end()) {
      error(key.Mark(), "unknown key '" + name + "' " + where + suggestion(name, known));
      continue;
    }
    std::string path = is_root ? name : entry.path + "." + name;
    view.entries.emplace_back(name, Entry{path, value, key.Mark()});
  }
  return view;
}

const Entry* Reader::require(const MapView& view, std::string_view key) {
  const Entry* entry = view.find(key);
  if (entry == nullptr && view.valid) {
    std::string where = view.is_root ? "" : " in " + view.path;
    error(view.mark, "missing required key '" + std::string(key) + "'" + where);
  }
  return entry;
}

std::optional<std::string> Reader::scalar(const Entry& entry, std::string_view expected) {
  if (entry.value.IsScalar()) return entry.value.Scalar();
  error(entry, "expected " + std::string(expected) + ", got " + describe(entry.value));
  return std::nullopt;
}

std::optional<std::string> Reader::readString(const Entry& entry) {
  return scalar(entry, "a string");
}

bool Reader::readBool(const Entry& entry, bool& out) {
  auto text = scalar(entry, "true or false");
  if (!text) return false;
  if (*text == "true" || *text == "True" || *text == "TRUE") {
    out = true;
  } else if (*text == "false" || *text == "False" || *text == "FALSE") {
    out = false;
  } else {
    error(entry, "expected true or false, got '" + *text + "'");
    return false;
  }
  return true;
}

std::optional<std::int64_t> Reader::readInt(const Entry& entry, std::int64_t min,
                                            std::int64_t max) {
  auto text = scalar(entry, "an integer");
  if (!text) return std::nullopt;
  std::int64_t value = 0;
  const char* end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec == std::errc::result_out_of_range) {
    error(entry, "'" + *text + "' is out of range");
    return std::nullopt;
  }
  if (ec != std::errc() || ptr != end) {
    error(entry, "expected an integer, got '" + *text + "'");
    return std::nullopt;
  }
  if (value < min) {
    error(entry, "must be at least " + std::to_string(min) + ", got " + *text);
    return std::nullopt;
  }
  if (value > max) {
    error(entry, "must be at most " + std::to_string(max) + ", got " + *text);
    return std::nullopt;
  }
  return value;
}

bool Reader::readBurst(const Entry& entry, double& out) {
  auto text = scalar(entry, "a number");
  if (!text) return false;
  double value = 0;
  const char* end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value)) {
    error(entry, "expected a number, got '" + *text + "'");
    return false;
  }
  if (value < 1) {
    error(entry, "burst must be at least 1, got " + *text);
    return false;
  }
  out = value;
  return true;
}

template <typename T>
std::optional<T> Reader::parseScalar(const Entry& entry, std::string_view expected,
                                     Parsed<T> (*parse)(std::string_view)) {
  auto text = scalar(entry, expected);
  if (!text) return std::nullopt;
  Parsed<T> parsed = parse(*text);
  if (!parsed) {
    error(entry, parsed.error);
    return std::nullopt;
  }
  return parsed.value;
}

bool Reader::readDuration(const Entry& entry, Duration& out, Zero zero) {
  auto value = parseScalar(entry, "a duration such as 10s", parseDuration);
  if (!value) return false;
  if (zero == Zero::kRejected && value->nanos == 0) {
    error(entry, "duration must be above zero");
    return false;
  }
  out = *value;
  return true;
}

bool Reader::readSize(const Entry& entry, std::uint64_t& out, std::uint64_t min) {
  auto value = parseScalar(entry, "a size such as 16KiB", parseSize);
  if (!value) return false;
  if (*value < min) {
    error(entry, "size must be at least " + std::to_string(min) + " bytes");
    return false;
  }
  out = *value;
  return true;
}

bool Reader::readRate(const Entry& entry, Rate& out) {
  auto value = parseScalar(entry, "a rate such as 100/s", parseRate);
  if (value) out = *value;
  return value.has_value();
}

bool Reader::readAddress(const Entry& entry, Address& out, Port port) {
  auto value = parseScalar(entry, "an address HOST:PORT", parseAddress);
  if (!value) return false;
  if (port == Port::kZeroRejected && value->port == 0) {
    error(entry, "port 0 is only allowed for listeners");
    return false;
  }
  out = *value;
  return true;
}

bool Reader::readCidrs(const Entry& entry, std::vector<Cidr>& out) {
  std::vector<Cidr> cidrs;
  bool items_ok = true;
  bool is_list = forEachItem(entry, [&](const Entry& item) {
    auto cidr = parseScalar(item, "a CIDR such as 10.0.0.0/8", parseCidr);
    if (cidr) {
      cidrs.push_back(*cidr);
    } else {
      items_ok = false;
    }
  });
  if (!is_list || !items_ok) return false;
  out = std::move(cidrs);
  return true;
}

std::optional<std::size_t> Reader::readChoice(const Entry& entry,
                                              const std::vector<std::string>& names) {
  std::string expected = "one of " + joined(names);
  auto text = scalar(entry, expected);
  if (!text) return std::nullopt;
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (names[i] == *text) return i;
  }
  error(entry, "expected " + expected + ", got '" + *text + "'" + suggestion(*text, names));
  return std::nullopt;
}

std::vector<ConfigError> Reader::takeErrors() {
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  return std::move(errors_);
}

}  // namespace sluice::config
