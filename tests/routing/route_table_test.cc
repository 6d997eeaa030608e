#include "proxy/routing/route_table.h"

#include <gtest/gtest.h>

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
