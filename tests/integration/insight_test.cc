// Operator insight through the real binary: the access log and X-Request-Id
// (SPEC §1), `sluice explain` (§1) and the admin /limits endpoint (§7).

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// ---- Small readers for what sluice writes ------------------------------------------------------

// A parsed JSON value (RFC 8259); enough for access-log lines and /limits.
struct Json {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  double number = 0;
  std::string text;  // kString: the unescaped string
  std::vector<Json> items;
  std::vector<std::pair<std::string, Json>> members;

  // The member `key` of an object; nullptr when absent.
  const Json* get(std::string_view key) const {
    for (const auto& [k, v] : members) {
      if (k == key) return &v;
    }
    return nullptr;
  }
};

class JsonReader {
 public:
  // The one JSON value `text` holds (surrounding whitespace allowed); nullopt
  // unless it is valid JSON.
  static std::optional<Json> parse(std::string_view text) {
    JsonReader r(text);
    Json v;
    r.space();
    if (!r.value(&v, 0)) return std::nullopt;
    r.space();
    if (r.pos_ != text.size()) return std::nullopt;
    return v;
  }

 private:
  explicit JsonReader(std::string_view s) : s_(s) {}

  void space() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool value(Json* out, int depth) {
    if (depth > 32 || pos_ >= s_.size()) return false;
    char c = s_[pos_];
    if (c == '{') return object(out, depth);
    if (c == '[') return array(out, depth);
    if (c == '"') {
      out->type = Json::Type::kString;
      return readString(&out->text);
    }
    if (c == 't' || c == 'f') {
      out->type = Json::Type::kBool;
      out->boolean = c == 't';
      return literal(c == 't' ? "true" : "false");
    }
    if (c == 'n') {
      out->type = Json::Type::kNull;
      return literal("null");
    }
    return number(out);
  }
  bool number(Json* out) {
    static const std::regex kNumber(R"(-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?)");
    size_t end = pos_;
    while (end < s_.size() &&
           std::string_view("+-.0123456789eE").find(s_[end]) != std::string_view::npos) {
      ++end;
    }
    std::string text(s_.substr(pos_, end - pos_));
    if (text.empty() || !std::regex_match(text, kNumber)) return false;
    out->type = Json::Type::kNumber;
    out->number = std::stod(text);
    pos_ = end;
    return true;
  }
  bool readString(std::string* out) {
    ++pos_;  // the opening quote
    while (pos_ < s_.size()) {
      char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out->push_back(c);
        continue;
      }
      if (pos_ >= s_.size()) return false;
      char e = s_[pos_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out->push_back(e);
          break;
        case 'b':
          out->push_back('\b');
          break;
        case 'f':
          out->push_back('\f');
          break;
        case 'n':
          out->push_back('\n');
          break;
        case 'r':
          out->push_back('\r');
          break;
        case 't':
          out->push_back('\t');
          break;
        case 'u': {
          if (pos_ + 4 > s_.size()) return false;
          std::string hex(s_.substr(pos_, 4));
          if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return false;
          long code = std::stol(hex, nullptr, 16);
          out->push_back(code < 0x80 ? static_cast<char>(code) : '?');
          pos_ += 4;
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }
  bool array(Json* out, int depth) {
    out->type = Json::Type::kArray;
    ++pos_;
    space();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (;;) {
      Json item;
      space();
      if (!value(&item, depth + 1)) return false;
      out->items.push_back(std::move(item));
      space();
      if (pos_ >= s_.size()) return false;
      if (s_[pos_] == ']') {
        ++pos_;
        return true;
      }
      if (s_[pos_++] != ',') return false;
    }
  }
  bool object(Json* out, int depth) {
    out->type = Json::Type::kObject;
    ++pos_;
    space();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return true;
    }
    for (;;) {
      space();
      std::string key;
      if (pos_ >= s_.size() || s_[pos_] != '"' || !readString(&key)) return false;
      space();
      if (pos_ >= s_.size() || s_[pos_++] != ':') return false;
      space();
      Json v;
      if (!value(&v, depth + 1)) return false;
      out->members.emplace_back(std::move(key), std::move(v));
      space();
      if (pos_ >= s_.size()) return false;
      if (s_[pos_] == '}') {
        ++pos_;
        return true;
      }
      if (s_[pos_++] != ',') return false;
    }
  }

  std::string_view s_;
  size_t pos_ = 0;
};

using Fields = std::map<std::string, std::string>;

// One logfmt line (`key=value key="quoted \"value\""`) as key -> unquoted
// value; nullopt when it is not logfmt or a key repeats.
std::optional<Fields> parseLogfmt(std::string_view line) {
  Fields out;
  size_t i = 0;
  while (i < line.size()) {
    size_t eq = line.find('=', i);
    if (eq == std::string_view::npos || eq == i) return std::nullopt;
    std::string key(line.substr(i, eq - i));
    if (key.find_first_of(" \"") != std::string::npos) return std::nullopt;
    std::string value;
    i = eq + 1;
    if (i < line.size() && line[i] == '"') {
      ++i;
      bool closed = false;
      while (i < line.size()) {
        char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\' && i < line.size()) {
          char e = line[i++];
          if (e == 'n') {
            value.push_back('\n');
          } else if (e == 'x' && i + 2 <= line.size()) {
            value.push_back(
                static_cast<char>(std::stoi(std::string(line.substr(i, 2)), nullptr, 16)));
            i += 2;
          } else {
            value.push_back(e);
          }
          continue;
        }
        value.push_back(c);
      }
      if (!closed) return std::nullopt;
    } else {
      size_t end = line.find(' ', i);
      if (end == std::string_view::npos) end = line.size();
      value = std::string(line.substr(i, end - i));
      i = end;
    }
    if (!out.emplace(std::move(key), std::move(value)).second) return std::nullopt;
    if (i < line.size()) {
      if (line[i] != ' ') return std::nullopt;
      ++i;
    }
  }
  return out;
}

// One JSON access-log line as key -> value (strings unquoted, numbers as
// written); nullopt unless the line is one flat JSON object.
std::optional<Fields> parseJsonLine(std::string_view line) {
  auto v = JsonReader::parse(line);
  if (!v || v->type != Json::Type::kObject) return std::nullopt;
  Fields out;
  for (const auto& [k, m] : v->members) {
    switch (m.type) {
      case Json::Type::kString:
        out[k] = m.text;
        break;
      case Json::Type::kNumber: {
        std::ostringstream s;
        s.precision(17);
        s << m.number;
        out[k] = s.str();
        break;
      }
      default:
        return std::nullopt;  // the access log holds strings and numbers only
    }
  }
  return out;
}

std::string readFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// The complete (newline-terminated) lines of the file at `path`.
std::vector<std::string> readLines(const std::string& path) {
  std::string text = readFile(path);
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t nl = text.find('\n'); nl != std::string::npos; nl = text.find('\n', start)) {
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

// Waits until the file at `path` has at least `n` complete lines; returns
// them (fewer at the deadline).
std::vector<std::string> waitForLines(const std::string& path, size_t n,
                                      Deadline deadline = deadlineIn(seconds(5))) {
  std::vector<std::string> lines;
  waitUntil(
      [&] {
        lines = readLines(path);
        return lines.size() >= n;
      },
      deadline);
  return lines;
}

const std::regex kGeneratedId("[0-9a-f]{32}");

// The request_id of each logfmt access-log line ("<unparsable>" for a line
// that is not logfmt).
std::vector<std::string> idsOf(const std::vector<std::string>& lines) {
  std::vector<std::string> out;
  for (const auto& line : lines) {
    auto f = parseLogfmt(line);
    out.push_back(f ? (*f)["request_id"] : "<unparsable>");
  }
  return out;
}
const std::vector<std::string> kAccessFields = {"ts",       "request_id", "client",   "method",
                                                "path",     "status",     "bytes_in", "bytes_out",
                                                "duration", "route",      "upstream"};

// The request-head fields /__echo sent back: what the upstream received.
Headers echoedFields(std::string_view echo) {
  Headers out;
  std::string_view head = echo.substr(0, echo.find("\r\n\r\n"));
  size_t eol = head.find("\r\n");
  if (eol == std::string_view::npos) return out;
  head.remove_prefix(eol + 2);
  while (!head.empty()) {
    size_t next = head.find("\r\n");
    std::string_view line = head.substr(0, next);
    head = next == std::string_view::npos ? std::string_view() : head.substr(next + 2);
    size_t colon = line.find(':');
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    out.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  return out;
}

// The values of every echoed `X-Request-Id` field.
std::vector<std::string> echoedRequestIds(std::string_view echo) {
  std::vector<std::string> out;
  for (const auto& [name, value] : echoedFields(echo)) {
    std::string lower = name;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (lower == "x-request-id") out.push_back(value);
  }
  return out;
}

// A temporary directory, removed with its content.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-insight-XXXXXX").string();
    if (mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// One request on a fresh connection from `source_ip` (empty: 127.0.0.1).
std::optional<Response> send(int port, std::string_view method, std::string_view path,
                             std::string_view source_ip = {}, const Headers& headers = {},
                             std::string_view body = {}) {
  Deadline deadline = deadlineIn(seconds(10));
  HttpConn conn(port, source_ip, "127.0.0.1", deadline);
  if (!conn.connected() || !conn.send(requestText(method, path, port, headers, body), deadline)) {
    return std::nullopt;
  }
  return conn.readResponse(deadline, method == "HEAD");
}

// ---- Access log and request ids ---------------------------------------------------------------

constexpr std::string_view kHeaderSecret = "HDRSECRET-4f9c2a71";
constexpr std::string_view kQuerySecret = "QRYSECRET-8d3b6e05";

class InsightTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(upstream_.start()); }

  std::string logPath() const { return dir_.file("access.log"); }

  // Two workers; the access log at logPath() in `format`; routes `api`
  // (/api/, per_key), `app` (/app/, per_ip burst 3 at 1/m) and `echo`
  // (/__echo, no limit); any other path is 404.
  std::string config(std::string_view format = "logfmt") const {
    return "server:\n"
           "  listen: 127.0.0.1:0\n"
           "  admin_listen: 127.0.0.1:0\n"
           "  workers: 2\n"
           "  access_log: " +
           logPath() +
           "\n"
           "  access_log_format: " +
           std::string(format) +
           "\n"
           "upstreams:\n"
           "  demo:\n"
           "    targets: [127.0.0.1:" +
           std::to_string(upstream_.port()) +
           "]\n"
           "clients:\n"
           "  api_key: {header: X-API-Key, query: api_key}\n"
           "limits:\n"
           "  per_ip: {per: ip, rate: 1/m, burst: 3}\n"
           "  per_key: {per: api_key, rate: 1/m, burst: 100}\n"
           "routes:\n"
           "  - {name: api, path_prefix: /api/, upstream: demo, limits: [per_key]}\n"
           "  - {name: app, path_prefix: /app/, upstream: demo, limits: [per_ip]}\n"
           "  - {name: echo, path_prefix: /__echo, upstream: demo}\n";
  }

  std::string upstreamTarget() const { return "127.0.0.1:" + std::to_string(upstream_.port()); }

  // Sends the mix of requests the access-log tests check, from 127.0.0.5:
  // forwarded ones (with API keys in a header and in the query, a query
  // string, a body), a 404 and a 429. Returns each response's request id in
  // order (and the expected fields of each line in `expected`).
  std::vector<std::string> sendMix(std::vector<Fields>* expected) {
    struct Case {
      std::string method, target, path, route;
      Headers headers;
      std::string body;
      int status;
    };
    const std::string q_secret(kQuerySecret);
    const std::vector<Case> cases = {
        {"GET", "/app/page?x=1&y=two", "/app/page", "app", {}, "", 200},
        {"GET", "/api/items?api_key=" + q_secret + "&z=1", "/api/items", "api", {}, "", 200},
        {"GET",
         "/api/items",
         "/api/items",
         "api",
         {{"X-API-Key", std::string(kHeaderSecret)}},
         "",
         200},
        {"POST", "/__echo?k=v", "/__echo", "echo", {}, "0123456789", 200},
        {"GET", "/nowhere?secret=no", "/nowhere", "unmatched", {}, "", 404},
        {"GET", "/app/page", "/app/page", "app", {}, "", 200},
        {"GET", "/app/page", "/app/page", "app", {}, "", 200},
        {"GET", "/app/page", "/app/page", "app", {}, "", 429},
    };
    std::vector<std::string> ids;
    for (const Case& c : cases) {
      SCOPED_TRACE(c.method + " " + c.target);
      auto r = send(sluice_.port(), c.method, c.target, "127.0.0.5", c.headers, c.body);
      EXPECT_TRUE(r);
      if (!r) continue;
      EXPECT_EQ(r->status, c.status);
      ids.push_back(r->header("X-Request-Id"));
      Fields f = {{"request_id", ids.back()},
                  {"client", "127.0.0.5"},
                  {"method", c.method},
                  {"path", c.path},
                  {"status", std::to_string(c.status)},
                  {"route", c.route},
                  {"upstream", c.status == 200 ? upstreamTarget() : ""}};
      if (c.status == 429) f["limits"] = "per_ip";
      if (!c.body.empty()) {
        // The whole request: head and body.
        f["bytes_in"] = std::to_string(
            requestText(c.method, c.target, sluice_.port(), c.headers, c.body).size());
      }
      expected->push_back(std::move(f));
    }
    return ids;
  }

  // Checks `lines` (parsed by `parse`) against what sendMix() expected:
  // exactly one line per request, found by its request id (workers flush
  // their lines independently, so the file is not in request order).
  void expectLinesMatch(const std::vector<std::string>& lines, const std::vector<Fields>& expected,
                        std::optional<Fields> (*parse)(std::string_view)) {
    ASSERT_EQ(lines.size(), expected.size()) << readFile(logPath());
    static const std::regex kTs(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)");
    std::map<std::string, Fields> by_id;
    for (const auto& line : lines) {
      SCOPED_TRACE(line);
      auto fields = parse(line);
      ASSERT_TRUE(fields) << "unparsable";
      for (const auto& name : kAccessFields) EXPECT_EQ(fields->count(name), 1u) << name;
      EXPECT_TRUE(std::regex_match((*fields)["ts"], kTs)) << (*fields)["ts"];
      EXPECT_GE(std::stod((*fields)["duration"]), 0.0);
      EXPECT_GT(std::stoll((*fields)["bytes_in"]), 0);
      EXPECT_GT(std::stoll((*fields)["bytes_out"]), 0);
      EXPECT_TRUE(by_id.emplace((*fields)["request_id"], *fields).second) << "repeated id";
    }
    for (const Fields& want : expected) {
      const std::string& id = want.at("request_id");
      SCOPED_TRACE("request " + id + " " + want.at("method") + " " + want.at("path"));
      auto it = by_id.find(id);
      ASSERT_NE(it, by_id.end()) << "no line with this request id:\n" << readFile(logPath());
      Fields& got = it->second;
      for (const auto& [name, value] : want) EXPECT_EQ(got[name], value) << name;
      EXPECT_EQ(got.count("limits"), want.count("limits")) << "limits only on a 429";
    }
  }

  TempDir dir_;
  DemoUpstream upstream_;
  Sluice sluice_;
};

TEST_F(InsightTest, AccessLogHasOneLogfmtLinePerRequestWithEveryField) {
  ASSERT_TRUE(sluice_.start(config("logfmt")));
  std::vector<Fields> expected;
  std::vector<std::string> ids = sendMix(&expected);
  std::vector<std::string> lines = waitForLines(logPath(), expected.size());
  expectLinesMatch(lines, expected, &parseLogfmt);
  for (const auto& id : ids) EXPECT_TRUE(std::regex_match(id, kGeneratedId)) << id;
}

TEST_F(InsightTest, JsonAccessLogIsOneValidObjectPerLineWithTheSameFields) {
  ASSERT_TRUE(sluice_.start(config("json")));
  std::vector<Fields> expected;
  sendMix(&expected);
  std::vector<std::string> lines = waitForLines(logPath(), expected.size());
  expectLinesMatch(lines, expected, &parseJsonLine);
  for (const auto& line : lines) {
    auto v = JsonReader::parse(line);
    ASSERT_TRUE(v) << line;
    EXPECT_EQ(v->get("status")->type, Json::Type::kNumber) << line;
    EXPECT_EQ(v->get("bytes_out")->type, Json::Type::kNumber) << line;
  }
}

TEST_F(InsightTest, ApiKeysNeverReachTheAccessLog) {
  ASSERT_TRUE(sluice_.start(config("logfmt")));
  std::vector<Fields> expected;
  sendMix(&expected);
  waitForLines(logPath(), expected.size());
  // Also when the key rides on a 429 and a 404.
  for (int i = 0; i < 2; ++i) {
    send(sluice_.port(), "GET", "/app/x?api_key=" + std::string(kQuerySecret), "127.0.0.5",
         {{"X-API-Key", std::string(kHeaderSecret)}});
  }
  send(sluice_.port(), "GET", "/none?api_key=" + std::string(kQuerySecret), "127.0.0.5",
       {{"X-API-Key", std::string(kHeaderSecret)}});
  waitForLines(logPath(), expected.size() + 3);
  const std::string log = readFile(logPath());
  EXPECT_THAT(log, Not(HasSubstr(kHeaderSecret)));
  EXPECT_THAT(log, Not(HasSubstr(kQuerySecret)));
  EXPECT_THAT(log, Not(HasSubstr("HDRSECRET")));
  EXPECT_THAT(log, Not(HasSubstr("QRYSECRET")));
  EXPECT_THAT(log, Not(HasSubstr("?"))) << "paths are logged without their query string";
  EXPECT_THAT(sluice_.stderrText(), Not(HasSubstr("SECRET")));
}

TEST_F(InsightTest, BytesInAndOutCountTheWholeMessages) {
  ASSERT_TRUE(sluice_.start(config("logfmt")));
  const std::string body(1000, 'b');
  const Headers headers = {{"Connection", "close"}};
  const std::string request = requestText("POST", "/__echo", sluice_.port(), headers, body);
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(request));
  const std::string raw = conn.readRaw(deadlineIn(seconds(5)));
  ASSERT_THAT(raw, ::testing::StartsWith("HTTP/1.1 200"));
  ASSERT_THAT(raw, HasSubstr("Content-Length:")) << "the check below assumes no re-framing";
  auto lines = waitForLines(logPath(), 1);
  ASSERT_EQ(lines.size(), 1u);
  auto f = parseLogfmt(lines[0]);
  ASSERT_TRUE(f) << lines[0];
  EXPECT_EQ((*f)["bytes_in"], std::to_string(request.size()));
  EXPECT_EQ((*f)["bytes_out"], std::to_string(raw.size()));
}

TEST_F(InsightTest, Sigusr1ReopensTheAccessLogAfterRotation) {
  ASSERT_TRUE(sluice_.start(config("logfmt")));
  std::vector<std::string> before;
  for (int i = 0; i < 2; ++i) {
    auto r = send(sluice_.port(), "GET", "/__echo");
    ASSERT_TRUE(r);
    before.push_back(r->header("X-Request-Id"));
  }
  ASSERT_EQ(waitForLines(logPath(), 2).size(), 2u);
  const std::string rotated = logPath() + ".1";
  std::filesystem::rename(logPath(), rotated);
  ASSERT_TRUE(sluice_.process().signal(SIGUSR1));
  ASSERT_TRUE(waitUntil([&] { return std::filesystem::exists(logPath()); }, deadlineIn(seconds(5))))
      << "no new file at the configured path after SIGUSR1";
  std::vector<std::string> after;
  for (int i = 0; i < 3; ++i) {
    auto r = send(sluice_.port(), "GET", "/__echo");
    ASSERT_TRUE(r);
    after.push_back(r->header("X-Request-Id"));
  }
  std::vector<std::string> fresh = waitForLines(logPath(), 3);
  ASSERT_EQ(fresh.size(), 3u);
  EXPECT_THAT(idsOf(fresh), UnorderedElementsAreArray(after));
  std::vector<std::string> old = readLines(rotated);
  EXPECT_THAT(idsOf(old), UnorderedElementsAreArray(before))
      << "the rotated file keeps the old lines, and only those";
}

TEST_F(InsightTest, GeneratedRequestIdReachesUpstreamAndClientUnchanged) {
  ASSERT_TRUE(sluice_.start(config()));
  auto r = send(sluice_.port(), "GET", "/__echo");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  const std::string id = r->header("X-Request-Id");
  EXPECT_TRUE(std::regex_match(id, kGeneratedId)) << id;
  EXPECT_EQ(r->headerCount("X-Request-Id"), 1u);
  EXPECT_EQ(echoedRequestIds(r->body), std::vector<std::string>{id}) << r->body;
  // Fresh for each request.
  auto again = send(sluice_.port(), "GET", "/__echo");
  ASSERT_TRUE(again);
  EXPECT_NE(again->header("X-Request-Id"), id);
  // And logged.
  auto lines = waitForLines(logPath(), 2);
  EXPECT_THAT(idsOf(lines), UnorderedElementsAre(id, again->header("X-Request-Id")));
}

TEST_F(InsightTest, ClientRequestIdIsKept) {
  ASSERT_TRUE(sluice_.start(config()));
  const std::vector<std::string> ids = {"trace-abc.123_XYZ:7/~!", std::string(128, 'r')};
  for (const auto& id : ids) {
    SCOPED_TRACE(id);
    auto r = send(sluice_.port(), "GET", "/__echo", {}, {{"X-Request-Id", id}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    EXPECT_EQ(r->header("X-Request-Id"), id);
    EXPECT_EQ(r->headerCount("X-Request-Id"), 1u);
    EXPECT_EQ(echoedRequestIds(r->body), std::vector<std::string>{id}) << r->body;
  }
  EXPECT_THAT(idsOf(waitForLines(logPath(), ids.size())), UnorderedElementsAreArray(ids));
}

TEST_F(InsightTest, InvalidClientRequestIdIsReplacedByAGeneratedOne) {
  ASSERT_TRUE(sluice_.start(config()));
  const std::vector<std::string> invalid = {std::string(129, 'x'), std::string(200, 'y'),
                                            "has space", "tab\there", "caf\xc3\xa9"};
  for (const auto& bad : invalid) {
    SCOPED_TRACE("X-Request-Id: " + bad);
    auto r = send(sluice_.port(), "GET", "/__echo", {}, {{"X-Request-Id", bad}});
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200);
    const std::string id = r->header("X-Request-Id");
    EXPECT_TRUE(std::regex_match(id, kGeneratedId)) << id;
    EXPECT_EQ(r->headerCount("X-Request-Id"), 1u);
    EXPECT_EQ(echoedRequestIds(r->body), std::vector<std::string>{id})
        << "the upstream sees the generated id only:\n"
        << r->body;
  }
}

TEST_F(InsightTest, SluicesOwnAnswersCarryTheRequestId) {
  ASSERT_TRUE(sluice_.start(config()));
  std::vector<std::string> ids;
  // 404: no route.
  auto nf = send(sluice_.port(), "GET", "/nowhere");
  ASSERT_TRUE(nf);
  EXPECT_EQ(nf->status, 404);
  EXPECT_TRUE(std::regex_match(nf->header("X-Request-Id"), kGeneratedId))
      << nf->header("X-Request-Id");
  ids.push_back(nf->header("X-Request-Id"));
  // 429: per_ip (burst 3) exhausted.
  for (int i = 0; i < 3; ++i) {
    auto ok = send(sluice_.port(), "GET", "/app/x", "127.0.0.8");
    ASSERT_TRUE(ok);
    EXPECT_EQ(ok->status, 200);
    ids.push_back(ok->header("X-Request-Id"));
  }
  auto limited = send(sluice_.port(), "GET", "/app/x", "127.0.0.8");
  ASSERT_TRUE(limited);
  EXPECT_EQ(limited->status, 429);
  EXPECT_TRUE(std::regex_match(limited->header("X-Request-Id"), kGeneratedId))
      << limited->header("X-Request-Id");
  ids.push_back(limited->header("X-Request-Id"));
  // A client's id is kept on them too.
  auto nf_kept = send(sluice_.port(), "GET", "/nowhere", {}, {{"X-Request-Id", "mine-404"}});
  ASSERT_TRUE(nf_kept);
  EXPECT_EQ(nf_kept->status, 404);
  EXPECT_EQ(nf_kept->header("X-Request-Id"), "mine-404");
  ids.push_back("mine-404");
  auto limited_kept =
      send(sluice_.port(), "GET", "/app/x", "127.0.0.8", {{"X-Request-Id", "mine-429"}});
  ASSERT_TRUE(limited_kept);
  EXPECT_EQ(limited_kept->status, 429);
  EXPECT_EQ(limited_kept->header("X-Request-Id"), "mine-429");
  ids.push_back("mine-429");
  // Each id is the one in its access-log line.
  EXPECT_THAT(idsOf(waitForLines(logPath(), ids.size())), UnorderedElementsAreArray(ids));
  std::set<std::string> distinct(ids.begin(), ids.end());
  EXPECT_EQ(distinct.size(), ids.size()) << "every request gets its own id";
}

// ---- sluice explain -----------------------------------------------------------------------------

struct ExplainRun {
  std::optional<int> exit_code;
  std::string out;
  std::string err;
};

ExplainRun explain(const std::string& config_path, std::vector<std::string> args) {
  std::vector<std::string> argv = {"explain", "--config", config_path};
  argv.insert(argv.end(), args.begin(), args.end());
  ChildProcess p(Sluice::binaryPath(), argv);
  ExplainRun run;
  if (!p.started()) {
    run.err = p.error();
    return run;
  }
  run.exit_code = p.waitExit(deadlineIn(seconds(10)));
  // The exit was reaped; wait for the captured output to be complete.
  p.waitForOutput(Stream::kStdout, "\x01never\x01", deadlineIn(seconds(2)));
  p.waitForOutput(Stream::kStderr, "\x01never\x01", deadlineIn(seconds(2)));
  run.out = p.stdoutText();
  run.err = p.stderrText();
  return run;
}

class ExplainTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("explain.yaml");
    std::ofstream(path_) << "upstreams:\n"
                            "  demo: {targets: [127.0.0.1:9]}\n"
                            "clients:\n"
                            "  trusted_proxies: [10.0.0.0/8]\n"
                            "  ipv6_prefix: 56\n"
                            "limits:\n"
                            "  per_ip: {per: ip, rate: 20/s, burst: 40}\n"
                            "  per_key:\n"
                            "    per: api_key\n"
                            "    rate: 100/s\n"
                            "    burst: 200\n"
                            "    overrides:\n"
                            "      partner-123: {rate: 1000/s, burst: 2000}\n"
                            "routes:\n"
                            "  - {name: api, path_prefix: /api/, upstream: demo, "
                            "limits: [per_ip, per_key]}\n";
  }

  // The output line starting with `prefix` (after leading spaces); "" when none.
  static std::string line(const std::string& out, std::string_view prefix) {
    std::istringstream in(out);
    std::string l;
    while (std::getline(in, l)) {
      size_t start = l.find_first_not_of(' ');
      if (start != std::string::npos && l.compare(start, prefix.size(), prefix) == 0) return l;
    }
    return {};
  }

  TempDir dir_;
  std::string path_;
};

TEST_F(ExplainTest, TrustedForwardedForChainNamesTheClient) {
  ExplainRun r = explain(path_, {"--peer", "10.1.2.3", "-H",
                                 "X-Forwarded-For: 203.0.113.7, 10.9.9.9", "GET", "/api/x"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(line(r.out, "route:"), HasSubstr("api"));
  EXPECT_THAT(line(r.out, "client ip:"), HasSubstr("client ip: 203.0.113.7 ")) << r.out;
  EXPECT_THAT(line(r.out, "client ip:"), HasSubstr("X-Forwarded-For")) << r.out;
  EXPECT_THAT(line(r.out, "per_ip:"), HasSubstr("key=203.0.113.7")) << r.out;

  // The same chain from a peer that is not trusted: the peer is the client.
  ExplainRun untrusted = explain(
      path_, {"--peer", "192.0.2.1", "-H", "X-Forwarded-For: 203.0.113.7", "GET", "/api/x"});
  ASSERT_EQ(untrusted.exit_code, 0) << untrusted.out << untrusted.err;
  EXPECT_THAT(line(untrusted.out, "client ip:"), HasSubstr("client ip: 192.0.2.1 "))
      << untrusted.out;
  EXPECT_THAT(line(untrusted.out, "per_ip:"), HasSubstr("key=192.0.2.1")) << untrusted.out;
}

TEST_F(ExplainTest, Ipv6ClientIsGroupedByItsPrefix) {
  ExplainRun r = explain(path_, {"--peer", "2001:db8:1:ab::1", "GET", "/api/x"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(line(r.out, "ip key:"), HasSubstr("2001:db8:1::/56")) << r.out;
  EXPECT_THAT(line(r.out, "per_ip:"), HasSubstr("key=2001:db8:1::/56")) << r.out;
  // The /56 boundary falls inside the fourth group.
  ExplainRun mid = explain(path_, {"--peer", "2001:db8:1:1ff::1", "GET", "/api/x"});
  ASSERT_EQ(mid.exit_code, 0) << mid.out << mid.err;
  EXPECT_THAT(line(mid.out, "ip key:"), HasSubstr("2001:db8:1:100::/56")) << mid.out;
}

TEST_F(ExplainTest, KeyWithAnOverrideShowsTheOverridesRateAndBurst) {
  ExplainRun r = explain(path_, {"-H", "X-API-Key: partner-123", "GET", "/api/x"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  const std::string per_key = line(r.out, "per_key:");
  EXPECT_THAT(per_key, HasSubstr("override")) << r.out;
  EXPECT_THAT(per_key, HasSubstr("rate=1000/s")) << r.out;
  EXPECT_THAT(per_key, HasSubstr("burst=2000")) << r.out;
  EXPECT_TRUE(std::regex_search(per_key, std::regex("key=[0-9a-f]{8}( |$)"))) << per_key;
  EXPECT_THAT(r.out, Not(HasSubstr("partner-123"))) << "the key itself is never printed";

  ExplainRun plain = explain(path_, {"-H", "X-API-Key: someone-else", "GET", "/api/x"});
  ASSERT_EQ(plain.exit_code, 0) << plain.out << plain.err;
  const std::string plain_key = line(plain.out, "per_key:");
  EXPECT_THAT(plain_key, Not(HasSubstr("override"))) << plain.out;
  EXPECT_THAT(plain_key, HasSubstr("rate=100/s")) << plain.out;
  EXPECT_THAT(plain_key, HasSubstr("burst=200")) << plain.out;
}

TEST_F(ExplainTest, RequestMatchingNoRouteIs404AndExitsZero) {
  ExplainRun r = explain(path_, {"GET", "/elsewhere"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("route: none: sluice answers 404")) << r.out;
  EXPECT_EQ(line(r.out, "limits:"), "") << "nothing past the route";
}

TEST_F(ExplainTest, PathIsNormalizedAsTheProxyDoesBeforeRouting) {
  ExplainRun r = explain(path_, {"GET", "/x/../%61pi//v1?q=%2e"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(line(r.out, "path:"), "path: normalized to /api/v1") << r.out;
  EXPECT_THAT(line(r.out, "route:"), HasSubstr("route: api ")) << r.out;

  ExplainRun bad = explain(path_, {"GET", "/api/%zz"});
  ASSERT_EQ(bad.exit_code, 0) << bad.out << bad.err;
  EXPECT_EQ(line(bad.out, "path:"), "path: cannot be normalized: sluice answers 400") << bad.out;
  EXPECT_EQ(line(bad.out, "route:"), "") << "nothing past the path";
}

TEST_F(ExplainTest, TwoApiKeyLinesAre400) {
  ExplainRun r =
      explain(path_, {"-H", "X-API-Key: a", "-H", "x-api-key: b", "GET", "/api/x"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(line(r.out, "api key:"), "api key: several X-API-Key lines: sluice answers 400")
      << r.out;
  EXPECT_EQ(line(r.out, "limits:"), "") << "nothing past the identity";
}

TEST_F(ExplainTest, ConfigErrorIsPrintedWithFileLineColumnAndExitsOne) {
  const std::string bad = dir_.file("bad.yaml");
  const std::string zero_line = "  zero: {per: ip, burst: 2, rate: 0/s}";
  std::ofstream(bad) << "upstreams:\n"
                        "  demo: {targets: [127.0.0.1:9]}\n"
                        "limits:\n"
                        "  ok_limit: {rate: 5/s}\n"
                     << zero_line << "\n"
                     << "routes:\n"
                        "  - {path_prefix: /, upstream: demo, limits: [zero]}\n";
  // Line 5; the column (1-based) of the zero rate's value.
  const std::string where = bad + ":5:" + std::to_string(zero_line.find("0/s") + 1) + ": ";
  ExplainRun r = explain(bad, {"GET", "/"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const std::string all = r.out + r.err;
  EXPECT_THAT(all, HasSubstr(where)) << all;
  EXPECT_THAT(all, Not(HasSubstr("route:"))) << "nothing is explained from an invalid file";
}

// ---- /limits ------------------------------------------------------------------------------------

class LimitsEndpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(upstream_.start());
    // 1/m: no token comes back during the test; burst 1: one allowed each.
    ASSERT_TRUE(
        sluice_.start("server:\n"
                      "  listen: 127.0.0.1:0\n"
                      "  admin_listen: 127.0.0.1:0\n"
                      "  workers: 2\n"
                      "upstreams:\n"
                      "  demo:\n"
                      "    targets: [127.0.0.1:" +
                      std::to_string(upstream_.port()) +
                      "]\n"
                      "limits:\n"
                      "  per_ip: {per: ip, rate: 1/m, burst: 1}\n"
                      "  per_key: {per: api_key, rate: 1/m, burst: 1, missing: skip}\n"
                      "routes:\n"
                      "  - {path_prefix: /ip/, upstream: demo, limits: [per_ip]}\n"
                      "  - {path_prefix: /key/, upstream: demo, limits: [per_key]}\n"));
  }

  // `n` GETs of `path` from `source_ip`; their statuses.
  std::vector<int> hit(int n, std::string_view path, std::string_view source_ip,
                       const Headers& headers = {}) {
    std::vector<int> out;
    for (int i = 0; i < n; ++i) {
      auto r = send(sluice_.port(), "GET", path, source_ip, headers);
      out.push_back(r ? r->status : 0);
    }
    return out;
  }

  // GET /limits?<query> on the admin listener.
  std::optional<Response> limits(std::string_view query) {
    return httpGet(sluice_.adminPort(), "/limits?" + std::string(query));
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

double numberOf(const Json& entry, std::string_view key) {
  const Json* v = entry.get(key);
  return v != nullptr && v->type == Json::Type::kNumber ? v->number : -1;
}
std::string textOf(const Json& entry, std::string_view key) {
  const Json* v = entry.get(key);
  return v != nullptr && v->type == Json::Type::kString ? v->text : "<absent>";
}

TEST_F(LimitsEndpointTest, TopKeysAreTheMostDeniedInOrderWithTheirCounts) {
  EXPECT_EQ(hit(6, "/ip/x", "127.0.0.2"), (std::vector<int>{200, 429, 429, 429, 429, 429}));
  EXPECT_EQ(hit(3, "/ip/x", "127.0.0.3"), (std::vector<int>{200, 429, 429}));
  EXPECT_EQ(hit(2, "/ip/x", "127.0.0.4"), (std::vector<int>{200, 429}));
  EXPECT_EQ(hit(1, "/ip/x", "127.0.0.6"), (std::vector<int>{200}));

  auto r = limits("limit=per_ip&top=2");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->header("Content-Type"), HasSubstr("application/json"));
  auto doc = JsonReader::parse(r->body);
  ASSERT_TRUE(doc) << "not JSON: " << r->body;
  EXPECT_EQ(textOf(*doc, "limit"), "per_ip") << r->body;
  const Json* keys = doc->get("keys");
  ASSERT_TRUE(keys != nullptr && keys->type == Json::Type::kArray) << r->body;
  ASSERT_EQ(keys->items.size(), 2u) << r->body;
  const Json& a = keys->items[0];
  const Json& b = keys->items[1];
  EXPECT_EQ(textOf(a, "key"), "127.0.0.2") << r->body;
  EXPECT_EQ(numberOf(a, "denied"), 5) << r->body;
  EXPECT_EQ(numberOf(a, "allowed"), 1) << r->body;
  EXPECT_EQ(numberOf(a, "tokens"), 0) << r->body;
  EXPECT_EQ(textOf(b, "key"), "127.0.0.3") << r->body;
  EXPECT_EQ(numberOf(b, "denied"), 2) << r->body;
  EXPECT_EQ(numberOf(b, "allowed"), 1) << r->body;
  EXPECT_EQ(numberOf(b, "tokens"), 0) << r->body;
}

TEST_F(LimitsEndpointTest, UnknownLimitIs404) {
  auto r = limits("limit=no_such_limit&top=3");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404) << r->body;
  auto missing = limits("top=3");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404) << missing->body;
}

TEST_F(LimitsEndpointTest, ApiKeysAreShownAsAFingerprintNeverAsTheKey) {
  const std::string secret = "LIMITSSECRET-77aa31";
  EXPECT_EQ(hit(3, "/key/x", "127.0.0.2", {{"X-API-Key", secret}}),
            (std::vector<int>{200, 429, 429}));
  auto r = limits("limit=per_key&top=5");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_THAT(r->body, Not(HasSubstr("SECRET")));
  auto doc = JsonReader::parse(r->body);
  ASSERT_TRUE(doc) << "not JSON: " << r->body;
  const Json* keys = doc->get("keys");
  ASSERT_TRUE(keys != nullptr && keys->type == Json::Type::kArray) << r->body;
  ASSERT_EQ(keys->items.size(), 1u) << r->body;
  const std::string fp = textOf(keys->items[0], "key");
  EXPECT_TRUE(std::regex_match(fp, std::regex("[0-9a-f]{8}"))) << r->body;
  EXPECT_EQ(numberOf(keys->items[0], "denied"), 2) << r->body;
  EXPECT_EQ(numberOf(keys->items[0], "allowed"), 1) << r->body;

  // The same fingerprint `sluice explain` shows for that key.
  ExplainRun e = explain(sluice_.configPath(), {"-H", "X-API-Key: " + secret, "GET", "/key/x"});
  ASSERT_EQ(e.exit_code, 0) << e.out << e.err;
  EXPECT_THAT(e.out, HasSubstr("fingerprint " + fp)) << e.out;
}

}  // namespace
}  // namespace sluice::testing
