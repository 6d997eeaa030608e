#pragma once
// Reads YAML nodes for the loader: each value with its dotted path, maps with
// unknown and duplicate keys reported, lists, and the scalar syntaxes of
// values.h. Every problem becomes a ConfigError at the node's mark
// (FILE:LINE:COL), so one pass reports them all.

#include <yaml-cpp/yaml.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/config/enum_names.h"
#include "proxy/config/loader.h"
#include "proxy/config/values.h"

namespace sluice::config {

using Keys = std::span<const std::string_view>;

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

  // The entry for `key`, or nullptr when the map lacks it.
  const Entry* find(std::string_view key) const {
    for (const auto& [name, entry] : entries) {
      if (name == key) return &entry;
    }
    return nullptr;
  }
};

// "a map", "a list", "'text'" or "nothing": what a node holds, for messages.
std::string describe(const YAML::Node& node);

// The names separated by ", ".
std::string joined(const std::vector<std::string>& names);

enum class Zero { kAllowed, kRejected };
enum class Port { kZeroAllowed, kZeroRejected };

class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  // Records `message` at `mark` (1:1 when the mark is null).
  void error(const YAML::Mark& mark, std::string message);
  // Reports at the value (or its key when the value is empty), prefixed by its path.
  void error(const Entry& entry, const std::string& message);
  // Records an error about the whole file (line 0).
  void errorWithoutPosition(std::string message);
  // The errors so far, ordered by line then column (stable for equal positions).
  std::vector<ConfigError> takeErrors();

  // Where a message about `entry` points: its value, or its key when the value is empty.
  static YAML::Mark markOf(const Entry& entry);
  // markOf as a 1-based Position (kept in the Config for later checks).
  static Position positionOf(const Entry& entry);

  // Opens a map; null counts as an empty map. With `known` keys, every other
  // key is an error; with none, any key is a name (upstreams, limits).
  MapView openMap(const Entry& entry, Keys known, bool is_root = false);

  // A key that must be present; missing is reported at the parent map (1:1 at the root).
  const Entry* require(const MapView& view, std::string_view key);

  // Calls `visit` for each item of a list; null counts as an empty list.
  // False when the value is not a list (reported).
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

  // The scalar's text; anything else is reported as "expected <expected>".
  std::optional<std::string> scalar(const Entry& entry, std::string_view expected);
  // Any scalar, as text.
  std::optional<std::string> readString(const Entry& entry);

  // The read* functions set `out` and return true only for a valid value;
  // otherwise they report why and leave `out` alone.

  // true/True/TRUE or false/False/FALSE.
  bool readBool(const Entry& entry, bool& out);
  // A decimal integer in [min, max].
  std::optional<std::int64_t> readInt(const Entry& entry, std::int64_t min, std::int64_t max);
  template <typename T>
  bool readInt(const Entry& entry, T& out, std::int64_t min, std::int64_t max) {
    auto value = readInt(entry, min, max);
    if (value) out = static_cast<T>(*value);
    return value.has_value();
  }
  // A finite number of at least 1.
  bool readBurst(const Entry& entry, double& out);
  // A duration (values.h); zero only when `zero` allows it.
  bool readDuration(const Entry& entry, Duration& out, Zero zero = Zero::kRejected);
  // A size (values.h) of at least `min` bytes.
  bool readSize(const Entry& entry, std::uint64_t& out, std::uint64_t min);
  // A rate (values.h).
  bool readRate(const Entry& entry, Rate& out);
  // HOST:PORT; port 0 only when `port` allows it (listeners).
  bool readAddress(const Entry& entry, Address& out, Port port);
  // A list of CIDRs; `out` is replaced only when every item is valid.
  bool readCidrs(const Entry& entry, std::vector<Cidr>& out);

  // The index of the entry's text in `names`; any other text is reported with the choices.
  std::optional<std::size_t> readChoice(const Entry& entry, const std::vector<std::string>& names);

  // One of the spellings in `table` (enum_names.h).
  template <typename T, std::size_t N>
  bool readEnum(const Entry& entry, T& out, const EnumName<T> (&table)[N]) {
    std::vector<std::string> names;
    for (const EnumName<T>& choice : table) names.emplace_back(choice.name);
    auto index = readChoice(entry, names);
    if (index) out = table[*index].value;
    return index.has_value();
  }

 private:
  // The entry's text run through `parse` (values.h); its error is reported at the entry.
  template <typename T>
  std::optional<T> parseScalar(const Entry& entry, std::string_view expected,
                               Parsed<T> (*parse)(std::string_view));

  std::string file_;
  std::vector<ConfigError> errors_;
};

}  // namespace sluice::config
