// README.md's configuration reference lists every key of SPEC §2 with its default; this
// test holds the table to what the loader actually does, so the two cannot
// drift apart.

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "proxy/config/loader.h"
#include "tests/config/loader_test_util.h"

namespace sluice::config {
namespace {

using testing::kMinimalYaml;
using testing::load;

struct DocRow {
  std::string key;
  std::string default_cell;
  std::string meaning;
  int line = 0;
};

std::string trim(const std::string& text) {
  std::size_t begin = text.find_first_not_of(' ');
  std::size_t end = text.find_last_not_of(' ');
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

// Splits a Markdown table row on '|' that is not escaped as "\|".
std::vector<std::string> cells(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  for (std::size_t i = 0; i < line.size(); ++i) {
    if (line[i] == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (line[i] == '|') {
      out.push_back(trim(cell));
      cell.clear();
    } else {
      cell += line[i];
    }
  }
  out.push_back(trim(cell));
  // A row "| a | b | c |" splits into "", a, b, c, "".
  if (!out.empty() && out.front().empty()) out.erase(out.begin());
  if (!out.empty() && out.back().empty()) out.pop_back();
  return out;
}

// The text inside a single `code span`, or nullopt for prose.
std::optional<std::string> codeSpan(const std::string& cell) {
  if (cell.size() < 2 || cell.front() != '`' || cell.back() != '`') return std::nullopt;
  std::string inner = cell.substr(1, cell.size() - 2);
  if (inner.find('`') != std::string::npos) return std::nullopt;
  return inner;
}

// A literal default as written in the table: `""` is the empty string and
// `"sluice:"` is sluice:.
std::optional<std::string> literal(const std::string& cell) {
  auto code = codeSpan(cell);
  if (code && code->size() >= 2 && code->front() == '"' && code->back() == '"') {
    return code->substr(1, code->size() - 2);
  }
  return code;
}

std::vector<DocRow> readTable() {
  // The table lives in README.md between these markers.
  std::string path = testing::sourceDir() + "/README.md";
  std::ifstream in(path);
  EXPECT_TRUE(in.good()) << "cannot open " << path;
  std::vector<DocRow> rows;
  std::string line;
  int number = 0;
  bool inside = false;
  while (std::getline(in, line)) {
    ++number;
    if (line.find("<!-- config-reference:begin -->") != std::string::npos) inside = true;
    if (line.find("<!-- config-reference:end -->") != std::string::npos) inside = false;
    if (!inside || line.rfind("| `", 0) != 0) continue;
    std::vector<std::string> row = cells(line);
    EXPECT_EQ(row.size(), 3u) << "line " << number << ": " << line;
    if (row.size() != 3) continue;
    auto key = codeSpan(row[0]);
    EXPECT_TRUE(key.has_value()) << "line " << number << ": key is not `code`";
    if (!key) continue;
    rows.push_back(DocRow{*key, row[1], row[2], number});
  }
  return rows;
}

// The loader's view of a minimal file: one upstream with only targets, one
// limit with only a rate, one route with only path_prefix and upstream.
struct Loaded {
  std::shared_ptr<const Config> plain;       // no redis block
  std::shared_ptr<const Config> with_redis;  // an empty redis block
};

const Loaded& defaults() {
  static const Loaded loaded = [] {
    std::string base = std::string(kMinimalYaml) + "limits:\n  l:\n    rate: 7/s\n";
    Loaded out;
    LoadResult plain = load(base);
    LoadResult with_redis = load(base + "redis: {}\n");
    EXPECT_TRUE(plain.ok()) << testing::describe(plain.errors);
    EXPECT_TRUE(with_redis.ok()) << testing::describe(with_redis.errors);
    out.plain = plain.config;
    out.with_redis = with_redis.config;
    return out;
  }();
  return loaded;
}

const UpstreamConfig& upstream(const Loaded& d) { return d.plain->upstreams.at(0); }
const LimitConfig& limit(const Loaded& d) { return d.plain->limits.at(0); }
const RouteConfig& route(const Loaded& d) { return d.plain->routes.at(0); }
const RedisConfig& redis(const Loaded& d) { return d.with_redis->redis.value(); }

template <typename T>
std::string list(const std::vector<T>& items) {
  return items.empty() ? "[]" : "[" + std::to_string(items.size()) + " items]";
}

std::string boolean(bool value) { return value ? "true" : "false"; }

// How a key's default is written and how it is checked.
enum class Kind {
  kLiteral,   // `value`, compared as text with the loaded value
  kDuration,  // `10s`, compared after parseDuration
  kSize,      // `16KiB`, compared after parseSize
  kAddress,   // `127.0.0.1:9901`, compared after parseAddress
  kRequired,  // *required*: leaving it out is an error
  kProse,     // italic prose: a section of defaults, or a derived default
};

struct KeySpec {
  std::string key;
  Kind kind;
  std::function<std::string(const Loaded&)> actual;  // kLiteral/kDuration/kSize/kAddress
  std::string missing_yaml;                          // kRequired: a file without the key
  std::function<void()> check_derived;               // kProse: the behaviour the prose names
};

std::string nanos(Duration d) { return std::to_string(d.nanos); }

const std::string kOneUpstream = "upstreams:\n  api:\n    targets: [127.0.0.1:9001]\n";
const std::string kOneRoute = "routes:\n  - path_prefix: /\n    upstream: api\n";

std::vector<KeySpec> specKeys() {
  auto lit = [](std::string key, std::function<std::string(const Loaded&)> actual) {
    return KeySpec{std::move(key), Kind::kLiteral, std::move(actual), "", nullptr};
  };
  auto dur = [](std::string key, std::function<Duration(const Loaded&)> actual) {
    return KeySpec{std::move(key), Kind::kDuration,
                   [actual](const Loaded& d) { return nanos(actual(d)); }, "", nullptr};
  };
  auto size = [](std::string key, std::function<std::uint64_t(const Loaded&)> actual) {
    return KeySpec{std::move(key), Kind::kSize,
                   [actual](const Loaded& d) { return std::to_string(actual(d)); }, "", nullptr};
  };
  auto addr = [](std::string key, std::function<Address(const Loaded&)> actual) {
    return KeySpec{std::move(key), Kind::kAddress,
                   [actual](const Loaded& d) { return actual(d).toString(); }, "", nullptr};
  };
  auto required = [](std::string key, std::string missing_yaml) {
    return KeySpec{std::move(key), Kind::kRequired, nullptr, std::move(missing_yaml), nullptr};
  };
  auto prose = [](std::string key, std::function<void()> check) {
    return KeySpec{std::move(key), Kind::kProse, nullptr, "", std::move(check)};
  };
  auto none = [] {};

  return {
      prose("server", none),
      addr("server.listen", [](const Loaded& d) { return d.plain->server.listen; }),
      addr("server.admin_listen", [](const Loaded& d) { return d.plain->server.admin_listen; }),
      lit("server.workers",
          [](const Loaded& d) {
            int w = d.plain->server.workers;
            return w == 0 ? std::string("auto") : std::to_string(w);
          }),
      lit("server.max_connections",
          [](const Loaded& d) { return std::to_string(d.plain->server.max_connections); }),
      dur("server.header_timeout", [](const Loaded& d) { return d.plain->server.header_timeout; }),
      dur("server.idle_timeout", [](const Loaded& d) { return d.plain->server.idle_timeout; }),
      dur("server.body_timeout", [](const Loaded& d) { return d.plain->server.body_timeout; }),
      size("server.max_header_bytes",
           [](const Loaded& d) { return d.plain->server.max_header_bytes; }),
      size("server.max_body_bytes", [](const Loaded& d) { return d.plain->server.max_body_bytes; }),
      dur("server.shutdown_grace", [](const Loaded& d) { return d.plain->server.shutdown_grace; }),
      lit("server.access_log", [](const Loaded& d) { return d.plain->server.access_log; }),
      lit("server.access_log_format",
          [](const Loaded& d) { return d.plain->server.access_log_format; }),
      lit("server.normalize_path",
          [](const Loaded& d) { return boolean(d.plain->server.normalize_path); }),
      dur("server.tunnel_idle_timeout",
          [](const Loaded& d) { return d.plain->server.tunnel_idle_timeout; }),
      lit("server.tls_listen",
          [](const Loaded& d) {
            const auto& a = d.plain->server.tls_listen;
            return a ? a->toString() : std::string();
          }),

      prose("clients", none),
      lit("clients.trusted_proxies",
          [](const Loaded& d) { return list(d.plain->clients.trusted_proxies); }),
      lit("clients.ipv4_prefix",
          [](const Loaded& d) { return std::to_string(d.plain->clients.ipv4_prefix); }),
      lit("clients.ipv6_prefix",
          [](const Loaded& d) { return std::to_string(d.plain->clients.ipv6_prefix); }),
      prose("clients.api_key", none),
      lit("clients.api_key.header",
          [](const Loaded& d) { return d.plain->clients.api_key.header; }),
      lit("clients.api_key.query", [](const Loaded& d) { return d.plain->clients.api_key.query; }),

      required("upstreams", kOneRoute),
      required("upstreams.<name>.targets", "upstreams:\n  api: {}\n" + kOneRoute),
      lit("upstreams.<name>.max_connections",
          [](const Loaded& d) { return std::to_string(upstream(d).max_connections); }),
      lit("upstreams.<name>.max_pending",
          [](const Loaded& d) { return std::to_string(upstream(d).max_pending); }),
      dur("upstreams.<name>.pending_timeout",
          [](const Loaded& d) { return upstream(d).pending_timeout; }),
      dur("upstreams.<name>.connect_timeout",
          [](const Loaded& d) { return upstream(d).connect_timeout; }),
      dur("upstreams.<name>.response_timeout",
          [](const Loaded& d) { return upstream(d).response_timeout; }),
      dur("upstreams.<name>.idle_timeout",
          [](const Loaded& d) { return upstream(d).idle_timeout; }),
      lit("upstreams.<name>.tls", [](const Loaded& d) { return boolean(upstream(d).tls); }),
      lit("upstreams.<name>.tls_ca", [](const Loaded& d) { return upstream(d).tls_ca; }),
      lit("upstreams.<name>.tls_server_name",
          [](const Loaded& d) { return upstream(d).tls_server_name; }),

      lit("limits",
          [](const Loaded&) {
            LoadResult result = load(kMinimalYaml);
            return result.ok() && result.config->limits.empty() ? std::string("{}") : "?";
          }),
      lit("limits.<name>.per", [](const Loaded& d) { return std::string(toString(limit(d).per)); }),
      required("limits.<name>.rate", kOneUpstream + kOneRoute + "limits:\n  l: { per: ip }\n"),
      prose("limits.<name>.burst",
            [] {
              // "the N of rate, at least 1"
              LoadResult result = load(std::string(kMinimalYaml) +
                                       "limits:\n  a: { rate: 7/s }\n  b: { rate: 30/m }\n"
                                       "  c: { rate: 0.5/s }\n");
              ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
              EXPECT_EQ(result.config->findLimit("a")->burst, 7);
              EXPECT_EQ(result.config->findLimit("b")->burst, 30);
              EXPECT_EQ(result.config->findLimit("c")->burst, 1);
            }),
      lit("limits.<name>.shadow", [](const Loaded& d) { return boolean(limit(d).shadow); }),
      lit("limits.<name>.exempt", [](const Loaded& d) { return list(limit(d).exempt); }),
      lit("limits.<name>.missing",
          [](const Loaded& d) { return std::string(toString(limit(d).missing)); }),
      lit("limits.<name>.overrides",
          [](const Loaded& d) { return limit(d).overrides.empty() ? "{}" : "?"; }),
      prose("limits.<name>.overrides.<key>.rate",
            [] {
              // "the limit's rate"
              LoadResult result = load(std::string(kMinimalYaml) +
                                       "limits:\n  k:\n    per: api_key\n    rate: 9/m\n"
                                       "    overrides:\n      p: { burst: 50 }\n");
              ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
              EXPECT_EQ(result.config->limits[0].overrides.at("p").rate, (Rate{9, 60}));
            }),
      prose("limits.<name>.overrides.<key>.burst",
            [] {
              // "the N of the override's rate, at least 1"
              LoadResult result = load(std::string(kMinimalYaml) +
                                       "limits:\n  k:\n    per: api_key\n    rate: 9/m\n"
                                       "    overrides:\n      p: { rate: 30/s }\n"
                                       "      q: { rate: 0.2/s }\n");
              ASSERT_TRUE(result.ok()) << testing::describe(result.errors);
              EXPECT_EQ(result.config->limits[0].overrides.at("p").burst, 30);
              EXPECT_EQ(result.config->limits[0].overrides.at("q").burst, 1);
            }),
      lit("limits.<name>.store",
          [](const Loaded& d) { return std::string(toString(limit(d).store)); }),
      lit("limits.<name>.on_store_error",
          [](const Loaded& d) { return std::string(toString(limit(d).on_store_error)); }),

      prose("redis", [] { EXPECT_FALSE(defaults().plain->redis.has_value()); }),
      addr("redis.address", [](const Loaded& d) { return redis(d).address; }),
      dur("redis.timeout", [](const Loaded& d) { return redis(d).timeout; }),
      lit("redis.pool_size", [](const Loaded& d) { return std::to_string(redis(d).pool_size); }),
      lit("redis.key_prefix", [](const Loaded& d) { return redis(d).key_prefix; }),

      prose("limiter", none),
      dur("limiter.sweep_interval",
          [](const Loaded& d) { return d.plain->limiter.sweep_interval; }),
      lit("limiter.max_keys",
          [](const Loaded& d) { return std::to_string(d.plain->limiter.max_keys); }),
      lit("limiter.response_headers",
          [](const Loaded& d) { return boolean(d.plain->limiter.response_headers); }),
      lit("limiter.header_style",
          [](const Loaded& d) { return std::string(toString(d.plain->limiter.header_style)); }),

      prose("tls", none),
      lit("tls.certificates",
          [](const Loaded& d) { return d.plain->tls.certificates.empty() ? "[]" : "?"; }),
      required("tls.certificates[].cert",
               kOneUpstream + kOneRoute + "tls:\n  certificates:\n    - {key: k.pem}\n"),
      required("tls.certificates[].key",
               kOneUpstream + kOneRoute + "tls:\n  certificates:\n    - {cert: c.pem}\n"),
      lit("tls.min_version",
          [](const Loaded& d) { return std::string(toString(d.plain->tls.min_version)); }),
      lit("tls.client_ca", [](const Loaded& d) { return d.plain->tls.client_ca; }),

      required("routes", kOneUpstream),
      prose("routes[].name",
            [] {
              // "the path_prefix"
              const RouteConfig& r = route(defaults());
              EXPECT_EQ(r.name, r.path_prefix);
            }),
      required("routes[].path_prefix", kOneUpstream + "routes:\n  - upstream: api\n"),
      lit("routes[].host", [](const Loaded& d) { return route(d).host; }),
      lit("routes[].methods", [](const Loaded& d) { return list(route(d).methods); }),
      required("routes[].upstream", kOneUpstream + "routes:\n  - path_prefix: /\n"),
      lit("routes[].limits", [](const Loaded& d) { return list(route(d).limits); }),
      lit("routes[].upgrades",
          [](const Loaded& d) {
            std::string out;
            for (const std::string& u : route(d).upgrades) out += (out.empty() ? "" : ", ") + u;
            return "[" + out + "]";
          }),
  };
}

std::string leaf(const std::string& key) {
  std::size_t dot = key.find_last_of('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

TEST(ConfigReference, ListsExactlyTheSpecKeys) {
  std::vector<DocRow> rows = readTable();
  std::set<std::string> documented;
  for (const DocRow& row : rows) {
    EXPECT_TRUE(documented.insert(row.key).second)
        << "line " << row.line << ": " << row.key << " is listed twice";
    EXPECT_FALSE(row.meaning.empty()) << "line " << row.line << ": " << row.key;
  }
  std::set<std::string> spec;
  for (const KeySpec& key : specKeys()) spec.insert(key.key);
  for (const std::string& key : spec) {
    EXPECT_EQ(documented.count(key), 1u) << "SPEC key missing from the table: " << key;
  }
  for (const std::string& key : documented) {
    EXPECT_EQ(spec.count(key), 1u) << "table lists a key the SPEC does not have: " << key;
  }
}

TEST(ConfigReference, DefaultsMatchTheLoader) {
  std::map<std::string, DocRow> rows;
  for (DocRow& row : readTable()) rows[row.key] = row;
  ASSERT_FALSE(rows.empty());
  const Loaded& loaded = defaults();
  ASSERT_NE(loaded.plain, nullptr);
  ASSERT_NE(loaded.with_redis, nullptr);

  for (const KeySpec& spec : specKeys()) {
    SCOPED_TRACE(spec.key);
    auto found = rows.find(spec.key);
    if (found == rows.end()) continue;  // reported by ListsExactlyTheSpecKeys
    const std::string& cell = found->second.default_cell;
    auto value = literal(cell);
    switch (spec.kind) {
      case Kind::kLiteral:
        ASSERT_TRUE(value) << "default should be a `literal`, got " << cell;
        EXPECT_EQ(*value, spec.actual(loaded));
        break;
      case Kind::kDuration: {
        ASSERT_TRUE(value) << cell;
        auto parsed = parseDuration(*value);
        ASSERT_TRUE(parsed) << parsed.error;
        EXPECT_EQ(nanos(*parsed.value), spec.actual(loaded)) << "documented " << *value;
        break;
      }
      case Kind::kSize: {
        ASSERT_TRUE(value) << cell;
        auto parsed = parseSize(*value);
        ASSERT_TRUE(parsed) << parsed.error;
        EXPECT_EQ(std::to_string(*parsed.value), spec.actual(loaded)) << "documented " << *value;
        break;
      }
      case Kind::kAddress: {
        ASSERT_TRUE(value) << cell;
        auto parsed = parseAddress(*value);
        ASSERT_TRUE(parsed) << parsed.error;
        EXPECT_EQ(parsed.value->toString(), spec.actual(loaded)) << "documented " << *value;
        break;
      }
      case Kind::kRequired: {
        EXPECT_EQ(cell, "*required*");
        LoadResult result = load(spec.missing_yaml);
        ASSERT_EQ(result.errors.size(), 1u) << testing::describe(result.errors);
        EXPECT_NE(result.errors[0].message.find("missing required key '" + leaf(spec.key) + "'"),
                  std::string::npos)
            << result.errors[0].toString();
        break;
      }
      case Kind::kProse:
        EXPECT_TRUE(cell.size() > 2 && cell.front() == '*' && cell.back() == '*')
            << "default should be *italic prose*, got " << cell;
        spec.check_derived();
        break;
    }
  }
}

}  // namespace
}  // namespace sluice::config
