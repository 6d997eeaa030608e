#include "proxy/config/loader.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string_view>
#include <tuple>
#include <utility>

namespace sluice::config {
namespace {

constexpr std::size_t kMaxApiKeyBytes = 256;  // SPEC §4: a longer key is a 400
constexpr std::int64_t kMaxWorkers = 1024;
constexpr std::int64_t kMaxPoolSize = 1024;
constexpr std::int64_t kMaxInt = 2147483647;
constexpr std::int64_t kMaxInt64 = 9223372036854775807LL;
constexpr int kMaxDocuments = 64;  // empty documents tolerated before giving up

using Keys = std::span<const std::string_view>;

constexpr std::string_view kRootKeys[] = {"server", "clients", "upstreams", "limits",
                                          "redis",  "limiter", "routes"};
constexpr std::string_view kServerKeys[] = {
    "listen",         "admin_listen",   "workers",      "max_connections",
    "header_timeout", "idle_timeout",   "body_timeout", "max_header_bytes",
    "max_body_bytes", "shutdown_grace", "access_log",   "access_log_format",
    "normalize_path"};
constexpr std::string_view kClientsKeys[] = {"trusted_proxies", "ipv4_prefix", "ipv6_prefix",
                                             "api_key"};
constexpr std::string_view kApiKeyKeys[] = {"header", "query"};
constexpr std::string_view kUpstreamKeys[] = {
    "targets",         "max_connections",  "max_pending", "pending_timeout",
    "connect_timeout", "response_timeout", "idle_timeout"};
constexpr std::string_view kLimitKeys[] = {
    "per", "rate", "burst", "shadow", "exempt", "missing", "overrides", "store", "on_store_error"};
constexpr std::string_view kOverrideKeys[] = {"rate", "burst"};
constexpr std::string_view kRedisKeys[] = {"address", "timeout", "pool_size", "key_prefix"};
constexpr std::string_view kLimiterKeys[] = {"sweep_interval", "max_keys", "response_headers",
                                             "header_style"};
constexpr std::string_view kRouteKeys[] = {"name",    "path_prefix", "host",
                                           "methods", "upstream",    "limits"};

// One value of the document with its dotted path for messages
// ("server.listen", "routes[0].limits[1]") and the position to report when
// the value itself has none (a null value is reported at its key).
struct Entry {
  std::string path;
  YAML::Node value;
  YAML::Mark anchor;
};

// The entries of one YAML map, after unknown and duplicate keys were reported.
struct MapView {
  bool valid = false;  // false: not a map (already reported)
  std::string path;
  YAML::Mark mark;  // where a missing required key is reported
  bool is_root = false;
  std::vector<std::pair<std::string, Entry>> entries;  // document order

  const Entry* find(std::string_view key) const {
    for (const auto& [name, entry] : entries) {
      if (name == key) return &entry;
    }
    return nullptr;
  }
};

// What the route cross-checks need to point back into the document.
struct RouteInfo {
  std::string path;
  YAML::Mark mark;
  std::optional<Entry> name;
  std::optional<Entry> path_prefix;
  std::optional<Entry> upstream;
  std::vector<Entry> limits;
  bool complete = false;  // path_prefix and upstream parsed
};

// Records where a document starts and whether it holds anything but null;
// used to walk the documents of a stream without building them.
class DocumentScan : public YAML::EventHandler {
 public:
  const YAML::Mark& start() const { return start_; }
  bool hasContent() const { return content_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    content_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_;
  bool content_ = false;
};

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

// Optimal string alignment distance: an adjacent swap ("lsiten") costs one.
std::size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

// " (did you mean 'listen'?)" when one candidate is a likely typo of `word`.
template <typename Range>
std::string suggestion(std::string_view word, const Range& candidates) {
  std::string best;
  std::size_t best_distance = 3;
  for (const auto& candidate : candidates) {
    std::size_t distance = editDistance(word, candidate);
    if (distance < best_distance && distance < word.size()) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) out += (out.empty() ? "" : ", ") + name;
  return out;
}

bool isTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// RFC 9110 §5.6.2 token: header names and methods.
bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

// Names of upstreams and limits end up in metric labels and in the quoted
// RateLimit-Policy item (SPEC §4), so they stay plain.
bool isPlainName(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

std::string toLower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

std::string toUpper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

class Loader {
 public:
  explicit Loader(std::string file) : file_(std::move(file)) { config_.file = file_; }

  LoadResult run(const std::string& yaml) {
    try {
      if (scanDocuments(yaml)) loadRoot(YAML::Load(yaml));
    } catch (const YAML::Exception& e) {
      error(e.mark, "YAML syntax error: " + e.msg);
    } catch (const std::exception& e) {
      errorWithoutPosition(std::string("cannot load the config: ") + e.what());
    } catch (...) {
      errorWithoutPosition("cannot load the config: unknown error");
    }
    std::stable_sort(errors_.begin(), errors_.end(),
                     [](const ConfigError& a, const ConfigError& b) {
                       return std::tie(a.line, a.column) < std::tie(b.line, b.column);
                     });
    LoadResult result;
    result.errors = std::move(errors_);
    if (result.errors.empty()) result.config = std::make_shared<const Config>(std::move(config_));
    return result;
  }

 private:
  // Checks the stream holds one document; false when it cannot be loaded.
  // YAML::LoadAll is not used: on a stray ',' where a document should start,
  // yaml-cpp 0.7 reports an empty document without consuming anything, and
  // LoadAll collects empty documents until memory runs out.
  bool scanDocuments(const std::string& yaml) {
    std::istringstream in(yaml);
    YAML::Parser parser(in);
    DocumentScan scan;
    if (!parser.HandleNextDocument(scan)) return true;
    YAML::Mark previous = scan.start();
    for (int documents = 1; parser.HandleNextDocument(scan); ++documents) {
      if (scan.start().pos == previous.pos || documents > kMaxDocuments) {
        auto pos = static_cast<std::size_t>(scan.start().pos);
        std::string what = pos < yaml.size() ? "'" + std::string(1, yaml[pos]) + "'" : "content";
        error(scan.start(), "YAML syntax error: unexpected " + what);
        return false;
      }
      if (scan.hasContent()) {
        error(scan.start(), "a config file holds one YAML document; found a second one");
        return true;
      }
      previous = scan.start();
    }
    return true;
  }

  // ---- error reporting ----

  void error(const YAML::Mark& mark, std::string message) {
    ConfigError e;
    e.file = file_;
    e.line = mark.is_null() ? 1 : mark.line + 1;
    e.column = mark.is_null() ? 1 : mark.column + 1;
    e.message = std::move(message);
    errors_.push_back(std::move(e));
  }

  void errorWithoutPosition(std::string message) {
    errors_.push_back(ConfigError{file_, 0, 0, std::move(message)});
  }

  static YAML::Mark markOf(const Entry& entry) {
    if (entry.value.IsDefined() && !entry.value.IsNull() && !entry.value.Mark().is_null()) {
      return entry.value.Mark();
    }
    return entry.anchor;
  }

  // Reports at the value (or its key when the value is empty), prefixed by its path.
  void error(const Entry& entry, const std::string& message) {
    error(markOf(entry), entry.path + ": " + message);
  }

  // ---- structure ----

  // Opens a map; null counts as an empty map. With `known` keys, every other
  // key is an error; with none, any key is a name (upstreams, limits).
  MapView openMap(const Entry& entry, Keys known, bool is_root = false) {
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

  // A key that must be present; missing is reported at the parent map (1:1 at the root).
  const Entry* require(const MapView& view, std::string_view key) {
    const Entry* entry = view.find(key);
    if (entry == nullptr && view.valid) {
      std::string where = view.is_root ? "" : " in " + view.path;
      error(view.mark, "missing required key '" + std::string(key) + "'" + where);
    }
    return entry;
  }

  // Calls `visit` for each item of a list; null counts as an empty list.
  template <typename Visit>
  bool forEachItem(const Entry& entry, Visit visit) {
    const YAML::Node& node = entry.value;
    if (!node.IsDefined() || node.IsNull()) return true;
    if (!node.IsSequence()) {
      error(entry, "expected a list, got " + describe(node));
      return false;
    }
    std::size_t index = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++index) {
      YAML::Node item = *it;
      YAML::Mark mark = item.Mark().is_null() || item.IsNull() ? markOf(entry) : item.Mark();
      visit(Entry{entry.path + "[" + std::to_string(index) + "]", item, mark});
    }
    return true;
  }

  // ---- scalars ----

  std::optional<std::string> scalar(const Entry& entry, std::string_view expected) {
    if (entry.value.IsScalar()) return entry.value.Scalar();
    error(entry, "expected " + std::string(expected) + ", got " + describe(entry.value));
    return std::nullopt;
  }

  std::optional<std::string> readString(const Entry& entry) { return scalar(entry, "a string"); }

  bool readBool(const Entry& entry, bool& out) {
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

  std::optional<std::int64_t> readInt(const Entry& entry, std::int64_t min, std::int64_t max) {
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

  template <typename T>
  bool readInt(const Entry& entry, T& out, std::int64_t min, std::int64_t max) {
    auto value = readInt(entry, min, max);
    if (value) out = static_cast<T>(*value);
    return value.has_value();
  }

  bool readBurst(const Entry& entry, double& out) {
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

  enum class Zero { kAllowed, kRejected };

  bool readDuration(const Entry& entry, Duration& out, Zero zero = Zero::kRejected) {
    auto text = scalar(entry, "a duration such as 10s");
    if (!text) return false;
    auto parsed = parseDuration(*text);
    if (!parsed) {
      error(entry, parsed.error);
      return false;
    }
    if (zero == Zero::kRejected && parsed.value->nanos == 0) {
      error(entry, "duration must be above zero");
      return false;
    }
    out = *parsed.value;
    return true;
  }

  bool readSize(const Entry& entry, std::uint64_t& out, std::uint64_t min) {
    auto text = scalar(entry, "a size such as 16KiB");
    if (!text) return false;
    auto parsed = parseSize(*text);
    if (!parsed) {
      error(entry, parsed.error);
      return false;
    }
    if (*parsed.value < min) {
      error(entry, "size must be at least " + std::to_string(min) + " bytes");
      return false;
    }
    out = *parsed.value;
    return true;
  }

  bool readRate(const Entry& entry, Rate& out) {
    auto text = scalar(entry, "a rate such as 100/s");
    if (!text) return false;
    auto parsed = parseRate(*text);
    if (!parsed) {
      error(entry, parsed.error);
      return false;
    }
    out = *parsed.value;
    return true;
  }

  enum class Port { kZeroAllowed, kZeroRejected };

  bool readAddress(const Entry& entry, Address& out, Port port) {
    auto text = scalar(entry, "an address HOST:PORT");
    if (!text) return false;
    auto parsed = parseAddress(*text);
    if (!parsed) {
      error(entry, parsed.error);
      return false;
    }
    if (port == Port::kZeroRejected && parsed.value->port == 0) {
      error(entry, "port 0 is only allowed for listeners");
      return false;
    }
    out = *parsed.value;
    return true;
  }

  bool readCidrs(const Entry& entry, std::vector<Cidr>& out) {
    std::vector<Cidr> cidrs;
    bool items_ok = true;
    bool is_list = forEachItem(entry, [&](const Entry& item) {
      auto text = scalar(item, "a CIDR such as 10.0.0.0/8");
      if (!text) {
        items_ok = false;
        return;
      }
      auto parsed = parseCidr(*text);
      if (!parsed) {
        error(item, parsed.error);
        items_ok = false;
        return;
      }
      cidrs.push_back(*parsed.value);
    });
    if (!is_list || !items_ok) return false;
    out = std::move(cidrs);
    return true;
  }

  template <typename T>
  bool readEnum(const Entry& entry, T& out,
                std::initializer_list<std::pair<std::string_view, T>> choices) {
    std::vector<std::string> names;
    for (const auto& choice : choices) names.emplace_back(choice.first);
    std::string expected = "one of " + joined(names);
    auto text = scalar(entry, expected);
    if (!text) return false;
    for (const auto& choice : choices) {
      if (choice.first == *text) {
        out = choice.second;
        return true;
      }
    }
    error(entry, "expected " + expected + ", got '" + *text + "'" + suggestion(*text, names));
    return false;
  }

  // ---- sections ----

  void loadRoot(const YAML::Node& root) {
    MapView view = openMap(Entry{"", root, YAML::Mark()}, kRootKeys, /*is_root=*/true);
    if (!view.valid) return;
    if (const Entry* e = view.find("server")) loadServer(*e);
    if (const Entry* e = view.find("clients")) loadClients(*e);
    if (const Entry* e = require(view, "upstreams")) loadUpstreams(*e);
    if (const Entry* e = view.find("limits")) loadLimits(*e);
    if (const Entry* e = view.find("redis")) loadRedis(*e);
    if (const Entry* e = view.find("limiter")) loadLimiter(*e);
    if (const Entry* e = require(view, "routes")) loadRoutes(*e);
    checkReferences();
  }

  void loadServer(const Entry& entry) {
    MapView view = openMap(entry, kServerKeys);
    ServerConfig& s = config_.server;
    if (const Entry* e = view.find("listen")) readAddress(*e, s.listen, Port::kZeroAllowed);
    if (const Entry* e = view.find("admin_listen")) {
      if (readAddress(*e, s.admin_listen, Port::kZeroAllowed) && s.admin_listen.port != 0 &&
          s.admin_listen == s.listen) {
        error(*e, "must differ from server.listen (" + s.listen.toString() + ")");
      }
    }
    if (const Entry* e = view.find("workers")) {
      if (e->value.IsScalar() && e->value.Scalar() == "auto") {
        s.workers = 0;
      } else if (e->value.IsScalar()) {
        auto text = e->value.Scalar();
        std::int64_t value = 0;
        auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (ec != std::errc() || ptr != text.data() + text.size()) {
          error(*e, "expected auto or a positive integer, got '" + text + "'");
        } else {
          readInt(*e, s.workers, 1, kMaxWorkers);
        }
      } else {
        error(*e, "expected auto or a positive integer, got " + describe(e->value));
      }
    }
    if (const Entry* e = view.find("max_connections")) {
      readInt(*e, s.max_connections, 1, kMaxInt64);
    }
    if (const Entry* e = view.find("header_timeout")) readDuration(*e, s.header_timeout);
    if (const Entry* e = view.find("idle_timeout")) readDuration(*e, s.idle_timeout);
    if (const Entry* e = view.find("body_timeout")) readDuration(*e, s.body_timeout);
    if (const Entry* e = view.find("max_header_bytes")) readSize(*e, s.max_header_bytes, 1);
    if (const Entry* e = view.find("max_body_bytes")) readSize(*e, s.max_body_bytes, 0);
    if (const Entry* e = view.find("shutdown_grace")) {
      readDuration(*e, s.shutdown_grace, Zero::kAllowed);
    }
    if (const Entry* e = view.find("access_log")) {
      if (auto text = readString(*e)) s.access_log = *text;
    }
    if (const Entry* e = view.find("access_log_format")) {
      std::string format;
      if (readEnum<std::string>(*e, format, {{"logfmt", "logfmt"}, {"json", "json"}})) {
        s.access_log_format = format;
      }
    }
    if (const Entry* e = view.find("normalize_path")) readBool(*e, s.normalize_path);
  }

  void loadClients(const Entry& entry) {
    MapView view = openMap(entry, kClientsKeys);
    ClientsConfig& c = config_.clients;
    if (const Entry* e = view.find("trusted_proxies")) readCidrs(*e, c.trusted_proxies);
    if (const Entry* e = view.find("ipv4_prefix")) readInt(*e, c.ipv4_prefix, 0, 32);
    if (const Entry* e = view.find("ipv6_prefix")) readInt(*e, c.ipv6_prefix, 0, 128);
    if (const Entry* e = view.find("api_key")) {
      MapView key_view = openMap(*e, kApiKeyKeys);
      if (const Entry* h = key_view.find("header")) {
        if (auto text = readString(*h)) {
          if (isToken(*text)) {
            c.api_key.header = *text;
          } else {
            error(*h, "'" + *text + "' is not a valid header name");
          }
        }
      }
      if (const Entry* q = key_view.find("query")) {
        if (auto text = readString(*q)) {
          bool plain = std::all_of(text->begin(), text->end(), [](char ch) {
            return isTokenChar(ch) && ch != '&' && ch != '#';
          });
          if (plain) {
            c.api_key.query = *text;
          } else {
            error(*q, "'" + *text + "' is not a valid query parameter name");
          }
        }
      }
    }
  }

  void loadUpstreams(const Entry& entry) {
    MapView view = openMap(entry, {});
    if (!view.valid) return;
    if (view.entries.empty()) {
      error(entry, "at least one upstream is required");
      return;
    }
    upstreams_defined_ = true;
    for (const auto& [name, e] : view.entries) {
      if (!isPlainName(name)) {
        error(e.anchor,
              "upstream name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
      }
      UpstreamConfig upstream;
      upstream.name = name;
      loadUpstream(e, upstream);
      config_.upstreams.push_back(std::move(upstream));
    }
  }

  void loadUpstream(const Entry& entry, UpstreamConfig& u) {
    MapView view = openMap(entry, kUpstreamKeys);
    if (const Entry* e = require(view, "targets")) {
      forEachItem(*e, [&](const Entry& item) {
        Address address;
        if (readAddress(item, address, Port::kZeroRejected)) u.targets.push_back(address);
      });
      if (e->value.IsNull() || (e->value.IsSequence() && e->value.size() == 0)) {
        error(*e, "at least one target HOST:PORT is required");
      }
    }
    if (const Entry* e = view.find("max_connections")) readInt(*e, u.max_connections, 1, kMaxInt);
    if (const Entry* e = view.find("max_pending")) readInt(*e, u.max_pending, 0, kMaxInt);
    if (const Entry* e = view.find("pending_timeout")) {
      readDuration(*e, u.pending_timeout, Zero::kAllowed);
    }
    if (const Entry* e = view.find("connect_timeout")) readDuration(*e, u.connect_timeout);
    if (const Entry* e = view.find("response_timeout")) readDuration(*e, u.response_timeout);
    if (const Entry* e = view.find("idle_timeout")) readDuration(*e, u.idle_timeout);
  }

  void loadLimits(const Entry& entry) {
    MapView view = openMap(entry, {});
    limits_readable_ = view.valid;
    for (const auto& [name, e] : view.entries) {
      if (!isPlainName(name)) {
        error(e.anchor,
              "limit name '" + name + "' may only contain letters, digits, '_', '-' and '.'");
      }
      LimitConfig limit;
      limit.name = name;
      loadLimit(e, limit);
      config_.limits.push_back(std::move(limit));
    }
  }

  void loadLimit(const Entry& entry, LimitConfig& l) {
    MapView view = openMap(entry, kLimitKeys);
    bool per_known = true;
    if (const Entry* e = view.find("per")) {
      per_known = readEnum<LimitScope>(*e, l.per,
                                       {{"global", LimitScope::kGlobal},
                                        {"ip", LimitScope::kIp},
                                        {"api_key", LimitScope::kApiKey}});
    }
    bool have_rate = false;
    if (const Entry* e = require(view, "rate")) have_rate = readRate(*e, l.rate);
    if (const Entry* e = view.find("burst")) {
      readBurst(*e, l.burst);
    } else if (have_rate) {
      l.burst = std::max(1.0, l.rate.count);
    }
    if (const Entry* e = view.find("shadow")) readBool(*e, l.shadow);
    if (const Entry* e = view.find("exempt")) readCidrs(*e, l.exempt);
    bool api_key = l.per == LimitScope::kApiKey;
    if (const Entry* e = view.find("missing")) {
      readEnum<MissingKey>(
          *e, l.missing,
          {{"ip", MissingKey::kIp}, {"skip", MissingKey::kSkip}, {"reject", MissingKey::kReject}});
      if (per_known && !api_key) {
        error(e->anchor, entry.path + ".missing: only applies to limits with per: api_key");
      }
    }
    if (const Entry* e = view.find("overrides")) {
      if (per_known && !api_key) {
        error(e->anchor, entry.path + ".overrides: only applies to limits with per: api_key");
      }
      loadOverrides(*e, l, have_rate);
    }
    if (const Entry* e = view.find("store")) {
      if (readEnum<StoreKind>(*e, l.store,
                              {{"local", StoreKind::kLocal}, {"redis", StoreKind::kRedis}}) &&
          l.store == StoreKind::kRedis) {
        redis_stores_.push_back(*e);
      }
    }
    if (const Entry* e = view.find("on_store_error")) {
      readEnum<StoreErrorPolicy>(*e, l.on_store_error,
                                 {{"local", StoreErrorPolicy::kLocal},
                                  {"allow", StoreErrorPolicy::kAllow},
                                  {"deny", StoreErrorPolicy::kDeny}});
    }
  }

  void loadOverrides(const Entry& entry, LimitConfig& l, bool have_rate) {
    MapView view = openMap(entry, {});
    for (const auto& [key, e] : view.entries) {
      if (key.empty() || key.size() > kMaxApiKeyBytes) {
        error(e.anchor, entry.path + ": an API key must be 1 to " +
                            std::to_string(kMaxApiKeyBytes) + " bytes long");
        continue;
      }
      if (!e.value.IsMap()) {
        error(e, "expected a map such as { rate: 1000/s, burst: 2000 }, got " + describe(e.value));
        continue;
      }
      MapView fields = openMap(e, kOverrideKeys);
      if (fields.entries.empty()) {
        error(e, "an override needs a rate, a burst or both");
        continue;
      }
      // An override inherits what it leaves out: the limit's rate, and the
      // burst that rate implies.
      KeyOverride override_value;
      bool ok = have_rate;
      override_value.rate = l.rate;
      if (const Entry* r = fields.find("rate")) ok = readRate(*r, override_value.rate);
      if (const Entry* b = fields.find("burst")) {
        ok = readBurst(*b, override_value.burst) && ok;
      } else {
        override_value.burst = std::max(1.0, override_value.rate.count);
      }
      if (ok) l.overrides[key] = override_value;
    }
  }

  void loadRedis(const Entry& entry) {
    MapView view = openMap(entry, kRedisKeys);
    if (!view.valid) return;
    RedisConfig r;
    if (const Entry* e = view.find("address")) readAddress(*e, r.address, Port::kZeroRejected);
    if (const Entry* e = view.find("timeout")) readDuration(*e, r.timeout);
    if (const Entry* e = view.find("pool_size")) readInt(*e, r.pool_size, 1, kMaxPoolSize);
    if (const Entry* e = view.find("key_prefix")) {
      if (auto text = readString(*e)) r.key_prefix = *text;
    }
    config_.redis = r;
  }

  void loadLimiter(const Entry& entry) {
    MapView view = openMap(entry, kLimiterKeys);
    LimiterConfig& l = config_.limiter;
    if (const Entry* e = view.find("sweep_interval")) readDuration(*e, l.sweep_interval);
    if (const Entry* e = view.find("max_keys")) readInt(*e, l.max_keys, 1, kMaxInt64);
    if (const Entry* e = view.find("response_headers")) readBool(*e, l.response_headers);
    if (const Entry* e = view.find("header_style")) {
      readEnum<HeaderStyle>(*e, l.header_style,
                            {{"ietf", HeaderStyle::kIetf},
                             {"x-ratelimit", HeaderStyle::kXRateLimit},
                             {"none", HeaderStyle::kNone}});
    }
  }

  void loadRoutes(const Entry& entry) {
    bool is_list = forEachItem(entry, [&](const Entry& item) {
      RouteConfig route;
      RouteInfo info;
      info.path = item.path;
      info.mark = markOf(item);
      loadRoute(item, route, info);
      config_.routes.push_back(std::move(route));
      routes_.push_back(std::move(info));
    });
    if (is_list && config_.routes.empty()) error(entry, "at least one route is required");
  }

  void loadRoute(const Entry& entry, RouteConfig& r, RouteInfo& info) {
    if (!entry.value.IsMap()) {
      error(entry, "expected a map with path_prefix and upstream, got " + describe(entry.value));
      return;
    }
    MapView view = openMap(entry, kRouteKeys);
    bool prefix_ok = false;
    if (const Entry* e = require(view, "path_prefix")) {
      info.path_prefix = *e;
      if (auto text = scalar(*e, "a path such as /api/")) {
        bool clean = std::none_of(text->begin(), text->end(), [](char c) {
          return c == '?' || c == '#' || std::isspace(static_cast<unsigned char>(c)) != 0 ||
                 std::iscntrl(static_cast<unsigned char>(c)) != 0;
        });
        if (text->empty() || text->front() != '/') {
          error(*e, "path_prefix must start with '/', got '" + *text + "'");
        } else if (!clean) {
          error(*e,
                "path_prefix must be a plain path (no spaces, '?' or '#'), got '" + *text + "'");
        } else {
          r.path_prefix = *text;
          r.name = *text;
          prefix_ok = true;
        }
      }
    }
    if (const Entry* e = view.find("name")) {
      if (auto text = readString(*e)) {
        if (text->empty()) {
          error(*e, "a route name must not be empty (leave it out to use the path_prefix)");
        } else {
          r.name = *text;
          info.name = *e;
        }
      }
    }
    if (const Entry* e = view.find("host")) {
      if (auto text = readString(*e)) {
        std::string host = toLower(*text);
        bool bracketed = host.size() > 2 && host.front() == '[' && host.back() == ']';
        bool plain = std::all_of(host.begin(), host.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '.' || c == '-' ||
                 c == '_';
        });
        if (!bracketed && host.find(':') != std::string::npos) {
          error(*e, "host must not include a port (the port is ignored when matching)");
        } else if (!bracketed && !plain) {
          error(*e, "'" + *text + "' is not a valid host name");
        } else {
          r.host = host;
        }
      }
    }
    if (const Entry* e = view.find("methods")) {
      forEachItem(*e, [&](const Entry& item) {
        auto text = scalar(item, "an HTTP method such as GET");
        if (!text) return;
        if (!isToken(*text)) {
          error(item, "'" + *text + "' is not a valid HTTP method");
          return;
        }
        std::string method = toUpper(*text);
        if (std::find(r.methods.begin(), r.methods.end(), method) == r.methods.end()) {
          r.methods.push_back(method);
        }
      });
    }
    if (const Entry* e = require(view, "upstream")) {
      if (auto text = scalar(*e, "an upstream name")) {
        r.upstream = *text;
        info.upstream = *e;
      }
    }
    if (const Entry* e = view.find("limits")) {
      forEachItem(*e, [&](const Entry& item) {
        auto text = scalar(item, "a limit name");
        if (!text) return;
        if (std::find(r.limits.begin(), r.limits.end(), *text) != r.limits.end()) {
          error(item, "limit '" + *text + "' is listed twice");
          return;
        }
        r.limits.push_back(*text);
        info.limits.push_back(item);
      });
    }
    info.complete = prefix_ok && info.upstream.has_value();
  }

  // ---- cross-references (after every section is read) ----

  void checkReferences() {
    std::vector<std::string> upstream_names;
    for (const auto& u : config_.upstreams) upstream_names.push_back(u.name);
    std::vector<std::string> limit_names;
    for (const auto& l : config_.limits) limit_names.push_back(l.name);

    for (std::size_t i = 0; i < routes_.size(); ++i) {
      const RouteInfo& info = routes_[i];
      const RouteConfig& route = config_.routes[i];
      // Without a usable upstreams (or limits) section, every reference
      // would fail too; the section's own error says it all.
      if (upstreams_defined_ && info.upstream && config_.findUpstream(route.upstream) == nullptr) {
        error(*info.upstream, "unknown upstream '" + route.upstream + "'" +
                                  suggestion(route.upstream, upstream_names));
      }
      for (const Entry& item : info.limits) {
        if (!limits_readable_) break;
        std::string name = item.value.Scalar();
        if (config_.findLimit(name) == nullptr) {
          std::string known =
              limit_names.empty() ? " (no limits are defined)" : suggestion(name, limit_names);
          error(item, "unknown limit '" + name + "'" + known);
        }
      }
    }
    checkDuplicateRoutes();
    if (!config_.redis) {
      for (const Entry& e : redis_stores_) {
        error(e, "store: redis needs a top-level redis: block");
      }
    }
  }

  void checkDuplicateRoutes() {
    std::map<std::string, std::size_t> by_match;  // path_prefix, host, methods -> route
    std::map<std::string, std::size_t> by_name;
    for (std::size_t i = 0; i < routes_.size(); ++i) {
      const RouteInfo& info = routes_[i];
      const RouteConfig& route = config_.routes[i];
      if (!info.path_prefix || route.path_prefix.empty()) continue;
      std::vector<std::string> methods = route.methods;
      std::sort(methods.begin(), methods.end());
      std::string match = route.path_prefix + '\n' + route.host + '\n' + joined(methods);
      auto [first, inserted] = by_match.emplace(match, i);
      if (!inserted) {
        const RouteInfo& other = routes_[first->second];
        error(info.mark, info.path + ": same path_prefix, host and methods as " + other.path +
                             " (line " + std::to_string(other.mark.line + 1) +
                             "); this route can never match");
        continue;
      }
      // Defaulted names may repeat (same prefix, different host or methods);
      // a name given explicitly must be unique.
      auto [named, fresh] = by_name.emplace(route.name, i);
      if (!fresh) {
        const RouteInfo& other = routes_[named->second];
        if (info.name || other.name) {
          const Entry& where = info.name ? *info.name : *info.path_prefix;
          error(where, "duplicate route name '" + route.name + "' (also " + other.path +
                           " at line " + std::to_string(other.mark.line + 1) + ")");
        }
      }
    }
  }

  std::string file_;
  Config config_;
  std::vector<ConfigError> errors_;
  std::vector<RouteInfo> routes_;    // parallel to config_.routes
  std::vector<Entry> redis_stores_;  // `store: redis` values, checked against redis:
  bool upstreams_defined_ = false;   // upstreams is a non-empty map
  bool limits_readable_ = true;      // limits is absent or a map
};

}  // namespace

std::string ConfigError::toString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

LoadResult loadConfigString(const std::string& yaml, const std::string& file_name) {
  try {
    return Loader(file_name).run(yaml);
  } catch (...) {
    // Only allocation failure can get here; still no exception escapes.
    LoadResult result;
    result.errors.push_back(ConfigError{file_name, 0, 0, "cannot load the config: out of memory"});
    return result;
  }
}

LoadResult loadConfigFile(const std::string& path) {
  auto fail = [&](const std::string& message) {
    LoadResult result;
    result.errors.push_back(ConfigError{path, 0, 0, message});
    return result;
  };
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      return fail("cannot read the config: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(std::string("cannot open the config: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return fail(std::string("cannot read the config: ") + std::strerror(errno));
    return loadConfigString(text.str(), path);
  } catch (const std::exception& e) {
    return fail(std::string("cannot read the config: ") + e.what());
  }
}

}  // namespace sluice::config
