// Path normalization (SPEC §12, RFC 3986 §2.3, §5.2.4, §6.2.2): every
// spelling of a path routes and forwards as one.

#include "proxy/http/path_normalize.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::http {
namespace {

struct Case {
  Case(std::string in_path, std::string forward_path, std::string route_path = "")
      : in(std::move(in_path)), forward(std::move(forward_path)), route(std::move(route_path)) {}
  std::string in;
  std::string forward;
  std::string route;  // "" = the same as forward
};

struct Result {
  PathStatus status = PathStatus::kOk;
  std::string forward;
  std::string route;
};

Result normalized(std::string_view path) {
  PathBuffers buffers;
  NormalizedPath n = normalizePath(path, buffers);
  return {n.status, std::string(n.forward), std::string(n.route)};
}

std::string routeOf(const Case& c) { return c.route.empty() ? c.forward : c.route; }

void expectTable(const std::vector<Case>& table) {
  for (const Case& c : table) {
    Result r = normalized(c.in);
    EXPECT_EQ(r.status, PathStatus::kOk) << c.in;
    EXPECT_EQ(r.forward, c.forward) << c.in;
    EXPECT_EQ(r.route, routeOf(c)) << c.in;
  }
}

// RFC 3986 §5.4 against the base http://a/b/c/d;p?q: each reference's path
// after merging (§5.2.3, "/b/c/" + a relative path) and its remove_dot_segments
// result. References with a scheme or an authority, and the parts after '?'
// or '#', are not paths and are left out.
const std::vector<Case> kRfc3986Examples = {
    // §5.4.1 normal examples
    {"/b/c/g", "/b/c/g"},
    {"/b/c/./g", "/b/c/g"},
    {"/b/c/g/", "/b/c/g/"},
    {"/g", "/g"},
    {"/b/c/d;p", "/b/c/d;p"},
    {"/b/c/;x", "/b/c/;x"},
    {"/b/c/g;x", "/b/c/g;x"},
    {"/b/c/.", "/b/c/"},
    {"/b/c/./", "/b/c/"},
    {"/b/c/..", "/b/"},
    {"/b/c/../", "/b/"},
    {"/b/c/../g", "/b/g"},
    {"/b/c/../..", "/"},
    {"/b/c/../../", "/"},
    {"/b/c/../../g", "/g"},
    // §5.4.2 abnormal examples
    {"/b/c/../../../g", "/g"},
    {"/b/c/../../../../g", "/g"},
    {"/./g", "/g"},
    {"/../g", "/g"},
    {"/b/c/g.", "/b/c/g."},
    {"/b/c/.g", "/b/c/.g"},
    {"/b/c/g..", "/b/c/g.."},
    {"/b/c/..g", "/b/c/..g"},
    {"/b/c/./../g", "/b/g"},
    {"/b/c/./g/.", "/b/c/g/"},
    {"/b/c/g/./h", "/b/c/g/h"},
    {"/b/c/g/../h", "/b/c/h"},
    {"/b/c/g;x=1/./y", "/b/c/g;x=1/y"},
    {"/b/c/g;x=1/../y", "/b/c/y"},
    // §5.2.4's own walk-through
    {"/a/b/c/./../../g", "/a/g"},
};

TEST(PathNormalize, Rfc3986DotSegmentExamples) { expectTable(kRfc3986Examples); }

const std::vector<Case> kDotsAndSlashes = {
    {"/", "/"},
    {"//", "/"},
    {"///", "/"},
    {"//a", "/a"},
    {"/a//b", "/a/b"},
    {"/a///b//c", "/a/b/c"},
    {"/a/", "/a/"},
    {"/a//", "/a/"},
    {"/.", "/"},
    {"/..", "/"},
    {"/./", "/"},
    {"/../", "/"},
    {"/../..", "/"},
    {"/../../a", "/a"},
    {"/./a", "/a"},
    {"/a/.", "/a/"},
    {"/a/..", "/"},
    {"/a/b/.", "/a/b/"},
    {"/a/b/..", "/a/"},
    {"/a/b/./", "/a/b/"},
    {"/a/b/../", "/a/"},
    {"/a/./b", "/a/b"},
    {"/a/../b", "/b"},
    {"/a/b/../../..", "/"},
    {"/a/./../b", "/b"},
    {"/a/.b", "/a/.b"},
    {"/a/b.", "/a/b."},
    {"/a/...", "/a/..."},
    {"/a/.../b", "/a/.../b"},
    {"/a/..b/c", "/a/..b/c"},
    // Runs of '/' merge before '..' counts: the empty segment is not one to
    // climb out of.
    {"/a//../b", "/b"},
    {"/a/.//b", "/a/b"},
    {"//./..//a//", "/a/"},
    // Encoded dots decode first (RFC 3986 §2.3), then count as dots.
    {"/%2e", "/"},
    {"/%2E%2E", "/"},
    {"/%2e/a", "/a"},
    {"/.%2e/a", "/a"},
    {"/%2E%2e/%2e%2E/a", "/a"},
    {"/a/%2E", "/a/"},
    {"/a/b/%2e%2e", "/a/"},
    {"/a%2eb", "/a.b"},
    // Not a path: left as it is (asterisk-form), or read as "/".
    {"*", "*"},
    {"", "/"},
};

TEST(PathNormalize, DotSegmentsAndSlashes) { expectTable(kDotsAndSlashes); }

const std::vector<Case> kEncodedSeparators = {
    {"/a%2Fb", "/a%2Fb", "/a/b"},
    {"/a%2fb", "/a%2Fb", "/a/b"},
    {"/a%5Cb", "/a%5Cb", "/a\\b"},
    {"/a%5cb", "/a%5Cb", "/a\\b"},
    {"/a%2F", "/a%2F", "/a/"},
    {"/a%2F%2F", "/a%2F%2F", "/a/"},
    {"/%2Fadmin/x", "/%2Fadmin/x", "/admin/x"},
    // Forwarded: %2F is not a separator, so ".." next to it is data. Routed:
    // the path an origin that decodes %2F serves.
    {"/a%2F..%2Fadmin%2Fx", "/a%2F..%2Fadmin%2Fx", "/admin/x"},
    {"/a%2F..%2Fadmin/x", "/a%2F..%2Fadmin/x", "/admin/x"},
    {"/%2e%2e%2Fadmin/x", "/..%2Fadmin/x", "/admin/x"},
    {"/a/b%2F..", "/a/b%2F..", "/a/"},
    {"/a%2F./b", "/a%2F./b", "/a/b"},
    {"/public%2F..%2F..%2Fadmin/", "/public%2F..%2F..%2Fadmin/", "/admin/"},
    // Segments that ".." removes take their %2F along.
    {"/a%2Fb/../c", "/c"},
    // '\' is never a separator, raw or encoded.
    {"/a%5C..%5Cb", "/a%5C..%5Cb", "/a\\..\\b"},
    {"/a\\..\\b", "/a\\..\\b"},
    // Only one layer of encoding is read.
    {"/a%252Fb", "/a%252Fb"},
};

TEST(PathNormalize, EncodedSlashAndBackslashStayEncodedButRouteAsSeparators) {
  expectTable(kEncodedSeparators);
}

std::string escape(int byte, bool lower) {
  char text[4];
  std::snprintf(text, sizeof text, lower ? "%%%02x" : "%%%02X", byte);
  return text;
}

bool unreserved(int c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool control(int c) { return c < 0x20 || c == 0x7f; }

TEST(PathNormalize, EveryEncodedByte) {
  for (int b = 0; b < 256; ++b) {
    for (bool lower : {false, true}) {
      const std::string in = "/x" + escape(b, lower) + "y";
      Result r = normalized(in);
      if (control(b)) {
        EXPECT_EQ(r.status, PathStatus::kControl) << in;
        continue;
      }
      ASSERT_EQ(r.status, PathStatus::kOk) << in;
      if (unreserved(b)) {
        EXPECT_EQ(r.forward, "/x" + std::string(1, static_cast<char>(b)) + "y") << in;
      } else {
        EXPECT_EQ(r.forward, "/x" + escape(b, false) + "y") << in;
      }
      std::string expected_route = r.forward;
      if (b == '/') expected_route = "/x/y";
      if (b == '\\') expected_route = "/x\\y";
      EXPECT_EQ(r.route, expected_route) << in;
    }
  }
}

TEST(PathNormalize, EveryRawByte) {
  for (int b = 0; b < 256; ++b) {
    if (b == '%' || b == '/') continue;  // the escape and the separator have tables of their own
    const std::string in = "/x" + std::string(1, static_cast<char>(b)) + "y";
    Result r = normalized(in);
    if (control(b)) {
      EXPECT_EQ(r.status, PathStatus::kControl) << "byte " << b;
    } else {
      EXPECT_EQ(r.status, PathStatus::kOk) << "byte " << b;
      EXPECT_EQ(r.forward, in) << "byte " << b;
      EXPECT_EQ(r.route, in) << "byte " << b;
    }
  }
}

struct ErrorCase {
  std::string in;
  PathStatus status;
};

TEST(PathNormalize, MalformedEscapesControlBytesAndNonPathsAreRefused) {
  const std::vector<ErrorCase> table = {
      {"/%", PathStatus::kBadEscape},
      {"%", PathStatus::kNotAPath},
      {"/%4", PathStatus::kBadEscape},
      {"/a%", PathStatus::kBadEscape},
      {"/a%2", PathStatus::kBadEscape},
      {"/%zz", PathStatus::kBadEscape},
      {"/%4g", PathStatus::kBadEscape},
      {"/%g4", PathStatus::kBadEscape},
      {"/%%41", PathStatus::kBadEscape},
      {"/% 41", PathStatus::kBadEscape},
      {"/%00", PathStatus::kControl},
      {"/a%00b", PathStatus::kControl},
      {"/a%0A", PathStatus::kControl},
      {"/a%0d%0aX-Injected:%201", PathStatus::kControl},
      {"/a%1f", PathStatus::kControl},
      {"/a%7F", PathStatus::kControl},
      {std::string("/a\0b", 4), PathStatus::kControl},
      {"/a\tb", PathStatus::kControl},
      {"/a\x7f", PathStatus::kControl},
      // Found after a part that needs normalizing, too.
      {"//a/%zz", PathStatus::kBadEscape},
      {"/./%4", PathStatus::kBadEscape},
      {"/%61/%00", PathStatus::kControl},
      {"//a\x01", PathStatus::kControl},
      {"a/b", PathStatus::kNotAPath},
      {"http://h/p", PathStatus::kNotAPath},
      {"**", PathStatus::kNotAPath},
  };
  for (const ErrorCase& c : table) {
    PathBuffers buffers;
    NormalizedPath n = normalizePath(c.in, buffers);
    EXPECT_EQ(n.status, c.status) << c.in;
    EXPECT_FALSE(n.ok()) << c.in;
    EXPECT_TRUE(n.forward.empty()) << c.in;
    EXPECT_TRUE(n.route.empty()) << c.in;
  }
}

TEST(PathNormalize, UnreservedDecodedOthersUpperCased) {
  expectTable({
      {"/%61dmin/x", "/admin/x"},
      {"/%41%42%7e%5F%2d%30", "/AB~_-0"},
      {"/a%20b", "/a%20b"},
      {"/a%3fb%23c", "/a%3Fb%23c"},
      {"/%c3%a9t%C3%A9", "/%C3%A9t%C3%A9"},
      {"/%25", "/%25"},
      {"/%2541", "/%2541"},  // %25 is '%': decoding it would make a new escape
      {"/a+b;c=d@e:f!$&'()*,", "/a+b;c=d@e:f!$&'()*,"},
  });
}

// Every table row: normalizing either view again gives the same two views.
TEST(PathNormalize, IsIdempotentOnEveryTable) {
  for (const auto* table : {&kRfc3986Examples, &kDotsAndSlashes, &kEncodedSeparators}) {
    for (const Case& c : *table) {
      Result once = normalized(c.in);
      Result again = normalized(once.forward);
      EXPECT_EQ(again.status, PathStatus::kOk) << c.in;
      EXPECT_EQ(again.forward, once.forward) << c.in;
      EXPECT_EQ(again.route, once.route) << c.in;
      Result of_route = normalized(once.route);
      EXPECT_EQ(of_route.forward, once.route) << c.in;
      EXPECT_EQ(of_route.route, once.route) << c.in;
    }
  }
}

TEST(PathNormalize, AlreadyNormalPathIsReturnedWithoutCopying) {
  PathBuffers buffers;
  const std::string_view path = "/api/v1/users/42/orders";
  NormalizedPath n = normalizePath(path, buffers);
  EXPECT_EQ(n.forward.data(), path.data());
  EXPECT_EQ(n.route.data(), path.data());
  EXPECT_EQ(buffers.forward.capacity(), std::string().capacity());
}

TEST(PathNormalize, BuffersAreReusedAcrossRequests) {
  PathBuffers buffers;
  normalizePath("/assets//images/../css/%7Euser/%2fstyle.css", buffers);
  const char* forward = buffers.forward.data();
  const char* route = buffers.route.data();
  NormalizedPath n = normalizePath("/static/./css%2F..%2Fjs/app.js", buffers);
  EXPECT_EQ(n.forward, "/static/css%2F..%2Fjs/app.js");
  EXPECT_EQ(n.route, "/static/js/app.js");
  EXPECT_EQ(buffers.forward.data(), forward);
  EXPECT_EQ(buffers.route.data(), route);
}

}  // namespace
}  // namespace sluice::http
