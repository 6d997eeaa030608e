// normalizePath (SPEC §12) on arbitrary bytes: no crash, no UB; both views are
// normal (no "/./", "/../", "//", no trailing "/." or "/..", escapes upper-case
// and never of an unreserved or control byte), normalizing either view again
// changes nothing, reused buffers give what fresh ones give, and everything
// agrees with a plain segment-stack reading of RFC 3986 §5.2.4.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "proxy/http/path_normalize.h"

namespace {

using sluice::http::NormalizedPath;
using sluice::http::normalizePath;
using sluice::http::PathBuffers;
using sluice::http::PathStatus;

bool unreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool control(unsigned char c) { return c < 0x20 || c == 0x7f; }

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The oracle: decode (one escape at a time), split on '/', keep a stack of
// segments. `route`: %2F is a separator too, %5C a plain '\'.
struct Reference {
  PathStatus status = PathStatus::kOk;
  std::string path;
};

Reference reference(std::string_view in, bool route) {
  if (in.empty()) return {PathStatus::kOk, "/"};
  if (in == "*") return {PathStatus::kOk, "*"};
  if (in.front() != '/') return {PathStatus::kNotAPath, ""};
  std::vector<std::string> segments(1);  // segments[0] is before the leading '/'
  for (std::size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (control(c)) return {PathStatus::kControl, ""};
    if (c == '/') {
      segments.emplace_back();
      continue;
    }
    if (c != '%') {
      segments.back().push_back(static_cast<char>(c));
      continue;
    }
    int hi = i + 2 < in.size() ? hexValue(in[i + 1]) : -1;
    int lo = i + 2 < in.size() ? hexValue(in[i + 2]) : -1;
    if (hi < 0 || lo < 0) return {PathStatus::kBadEscape, ""};
    const auto v = static_cast<unsigned char>(hi * 16 + lo);
    i += 2;
    if (control(v)) return {PathStatus::kControl, ""};
    if (unreserved(v)) {
      segments.back().push_back(static_cast<char>(v));
    } else if (route && v == '/') {
      segments.emplace_back();
    } else if (route && v == '\\') {
      segments.back().push_back('\\');
    } else {
      const char* digits = "0123456789ABCDEF";
      segments.back() += {'%', digits[v >> 4], digits[v & 0xf]};
    }
  }
  std::vector<std::string> stack;
  bool trailing = false;
  for (std::size_t s = 1; s < segments.size(); ++s) {
    const std::string& seg = segments[s];
    trailing = seg.empty() || seg == "." || seg == "..";
    if (seg == ".." && !stack.empty()) stack.pop_back();
    if (!trailing) stack.push_back(seg);
  }
  std::string out;
  for (const std::string& seg : stack) out += "/" + seg;
  if (trailing || out.empty()) out += "/";
  return {PathStatus::kOk, out};
}

// Every property a normalized view has, whichever view it is.
void checkNormal(std::string_view v, bool is_route) {
  if (v == "*") return;
  FUZZ_CHECK(!v.empty() && v.front() == '/');
  FUZZ_CHECK(v.find("/./") == std::string_view::npos);
  FUZZ_CHECK(v.find("/../") == std::string_view::npos);
  FUZZ_CHECK(v.find("//") == std::string_view::npos);
  FUZZ_CHECK(!v.ends_with("/.") && !v.ends_with("/.."));
  for (std::size_t i = 0; i < v.size(); ++i) {
    FUZZ_CHECK(!control(static_cast<unsigned char>(v[i])));
    if (v[i] != '%') continue;
    FUZZ_CHECK(i + 2 < v.size());
    const std::string_view hex = v.substr(i + 1, 2);
    for (char h : hex) FUZZ_CHECK((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'));
    const auto value = static_cast<unsigned char>(hexValue(hex[0]) * 16 + hexValue(hex[1]));
    FUZZ_CHECK(!unreserved(value) && !control(value));
    FUZZ_CHECK(!is_route || (value != '/' && value != '\\'));
  }
}

}  // namespace

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  static PathBuffers reused;  // as a connection keeps them across requests
  PathBuffers fresh;
  const NormalizedPath n = normalizePath(in, reused);
  const NormalizedPath f = normalizePath(in, fresh);
  FUZZ_CHECK(n.status == f.status && n.forward == f.forward && n.route == f.route);

  const Reference forward = reference(in, false);
  FUZZ_CHECK(n.status == forward.status);
  if (!n.ok()) {
    FUZZ_CHECK(n.forward.empty() && n.route.empty());
    return 0;
  }
  FUZZ_CHECK(n.forward == forward.path);
  // Routes see what is forwarded, read by an origin that decodes %2F.
  FUZZ_CHECK(n.route == reference(n.forward, true).path);
  checkNormal(n.forward, false);
  checkNormal(n.route, true);

  const std::string forward_view(n.forward);
  const std::string route_view(n.route);
  PathBuffers again_buffers;
  const NormalizedPath again = normalizePath(forward_view, again_buffers);
  FUZZ_CHECK(again.ok() && again.forward == forward_view && again.route == route_view);
  const NormalizedPath of_route = normalizePath(route_view, again_buffers);
  FUZZ_CHECK(of_route.ok() && of_route.forward == route_view && of_route.route == route_view);
  return 0;
}
