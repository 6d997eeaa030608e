#include "proxy/routing/route_table.h"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

namespace sluice::routing {
namespace {

config::RouteConfig route(std::string prefix, std::string host = "",
                          std::vector<std::string> methods = {}, std::string name = "") {
  config::RouteConfig r;
  r.path_prefix = std::move(prefix);
  r.host = std::move(host);
  r.methods = std::move(methods);
  r.name = std::move(name);
  r.upstream = "u";
  return r;
}

TEST(RouteTable, FirstMatchingPrefixWins) {
  RouteTable t({route("/api/", "", {}, "api"), route("/", "", {}, "root")});
  EXPECT_EQ(t.match("/api/x", "h", "GET")->name, "api");
  EXPECT_EQ(t.match("/apix", "h", "GET")->name, "root");
}

TEST(RouteTable, NoMatchIsNull) {
  RouteTable t({route("/api/")});
  EXPECT_EQ(t.match("/other", "h", "GET"), nullptr);
}

TEST(RouteTable, HostMatchIgnoresPortAndCase) {
  RouteTable t({route("/", "api.example.com", {}, "a"), route("/", "", {}, "b")});
  EXPECT_EQ(t.match("/", "API.example.com:8080", "GET")->name, "a");
  EXPECT_EQ(t.match("/", "other.example.com", "GET")->name, "b");
}

// SPEC §12: case, the port and one trailing dot make no difference.
TEST(RouteTable, HostMatchIgnoresCasePortAndOneTrailingDot) {
  struct Row {
    std::string route_host;
    std::string request_host;
    bool matches;
  };
  const std::vector<Row> table = {
      {"api.example.com", "api.example.com", true},
      {"api.example.com", "API.Example.COM", true},
      {"api.example.com", "api.example.com:8080", true},
      {"api.example.com", "api.example.com.", true},
      {"api.example.com", "API.EXAMPLE.COM.:443", true},
      {"api.example.com.", "api.example.com", true},
      {"api.example.com.", "Api.Example.Com.:80", true},
      {"localhost", "LOCALHOST.", true},
      {"[::1]", "[::1]:8080", true},
      {"api.example.com", "api.example.com..", false},
      {"api.example.com", "api.example.co", false},
      {"api.example.com", "xapi.example.com", false},
      {"api.example.com", "api.example.com.evil", false},
      {"api.example.com", "", false},
      {"api.example.com", ".", false},
      {"api.example.com", ":8080", false},
      {"[::1]", "[::2]", false},
  };
  for (const Row& row : table) {
    RouteTable t({route("/", row.route_host, {}, "host"), route("/", "", {}, "any")});
    const Route* r = t.match("/", row.request_host, "GET");
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(r->name, row.matches ? "host" : "any")
        << "route host '" << row.route_host << "', Host '" << row.request_host << "'";
  }
}

TEST(HostForMatching, DropsThePortAndOneTrailingDot) {
  const std::vector<std::pair<std::string, std::string>> table = {
      {"a.example", "a.example"},
      {"a.example:80", "a.example"},
      {"a.example.", "a.example"},
      {"a.example.:80", "a.example"},
      {"a.example..", "a.example."},
      {"[::1]:80", "[::1]"},
      {"[::1]", "[::1]"},
      {".", "."},
      {"", ""},
      {"A.Example.", "A.Example"},
  };
  for (const auto& [in, out] : table) EXPECT_EQ(hostForMatching(in), out) << in;
}

TEST(RouteTable, NormalizedPrefixesMatchNormalizedPaths) {
  const std::vector<config::RouteConfig> routes = {
      route("/%7Euser/", "", {}, "tilde"), route("/a//b/./", "", {}, "ab"),
      route("/files%2fx/", "", {}, "slash"), route("/%zz/", "", {}, "bad")};
  RouteTable normalized(routes, PrefixForm::kNormalized);
  EXPECT_EQ(normalized.routes()[0].path_prefix, "/~user/");
  EXPECT_EQ(normalized.routes()[1].path_prefix, "/a/b/");
  EXPECT_EQ(normalized.routes()[2].path_prefix, "/files/x/");
  EXPECT_EQ(normalized.routes()[3].path_prefix, "/%zz/");
  EXPECT_EQ(normalized.match("/~user/x", "h", "GET")->name, "tilde");
  EXPECT_EQ(normalized.match("/a/b/c", "h", "GET")->name, "ab");
  EXPECT_EQ(normalized.match("/files/x/y", "h", "GET")->name, "slash");
  EXPECT_EQ(normalized.routes()[0].name, "tilde");

  RouteTable as_written(routes);
  EXPECT_EQ(as_written.routes()[0].path_prefix, "/%7Euser/");
  EXPECT_EQ(as_written.match("/~user/x", "h", "GET"), nullptr);
  EXPECT_EQ(as_written.match("/%7Euser/x", "h", "GET")->name, "tilde");
}

TEST(RouteTable, MethodsRestrictTheRoute) {
  RouteTable t({route("/", "", {"post"}, "w"), route("/", "", {}, "r")});
  EXPECT_EQ(t.match("/", "h", "POST")->name, "w");
  EXPECT_EQ(t.match("/", "h", "GET")->name, "r");
}

TEST(RouteTable, NameDefaultsToPrefix) {
  RouteTable t({route("/v1/")});
  EXPECT_EQ(t.routes()[0].name, "/v1/");
}

TEST(RoutePath, StripsQueryAndAbsoluteForm) {
  EXPECT_EQ(requestPath("/a/b?x=1"), "/a/b");
  EXPECT_EQ(requestPath("http://h:1/p?q"), "/p");
  EXPECT_EQ(requestPath("http://h"), "/");
  EXPECT_EQ(stripPort("[::1]:80"), "[::1]");
  EXPECT_EQ(stripPort("example.com:80"), "example.com");
}

}  // namespace
}  // namespace sluice::routing
