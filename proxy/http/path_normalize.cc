#include "proxy/http/path_normalize.h"

#include <array>
#include <cassert>
#include <cstring>

namespace sluice::http {
namespace {

// What a byte means to the scan for an already-normal path.
enum ByteClass : std::uint8_t { kPlain, kSlash, kPercent, kControlByte };

constexpr std::array<std::uint8_t, 256> kByteClass = [] {
  std::array<std::uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = kControlByte;
  t[0x7f] = kControlByte;
  t['/'] = kSlash;
  t['%'] = kPercent;
  return t;
}();

// Hex digit value, kNotHex for anything else.
constexpr std::uint8_t kNotHex = 0xff;
constexpr std::array<std::uint8_t, 256> kHexValue = [] {
  std::array<std::uint8_t, 256> t{};
  t.fill(kNotHex);
  for (int c = 0; c < 10; ++c) t['0' + c] = static_cast<std::uint8_t>(c);
  for (int c = 0; c < 6; ++c) {
    t['A' + c] = static_cast<std::uint8_t>(10 + c);
    t['a' + c] = static_cast<std::uint8_t>(10 + c);
  }
  return t;
}();

constexpr char kUpperHex[] = "0123456789ABCDEF";

// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
bool isUnreserved(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

bool isControl(unsigned char c) { return c < 0x20 || c == 0x7f; }

bool isUpperHexDigit(char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }

bool isDotSegment(const char* s, std::size_t len) {
  return (len == 1 && s[0] == '.') || (len == 2 && s[0] == '.' && s[1] == '.');
}

// The value of the escape at s[0] ('%'), or -1 when two hex digits do not
// follow within `left` bytes.
int escapeValue(const char* s, std::size_t left) {
  if (left < 3) return -1;
  const std::uint8_t hi = kHexValue[static_cast<unsigned char>(s[1])];
  const std::uint8_t lo = kHexValue[static_cast<unsigned char>(s[2])];
  return hi == kNotHex || lo == kNotHex ? -1 : hi * 16 + lo;
}

enum class Scan { kNormal, kNormalWithEscapedSeparator, kNeedsWork, kControl, kBadEscape };

// One pass over a '/'-rooted path: is it already what normalizing gives?
// Errors found on the way are final; kNeedsWork leaves the rest unchecked.
Scan scan(std::string_view path) {
  const char* s = path.data();
  const std::size_t n = path.size();
  std::size_t segment = 1;  // start of the current segment
  bool escaped_separator = false;
  for (std::size_t i = 1; i < n; ++i) {
    switch (kByteClass[static_cast<unsigned char>(s[i])]) {
      case kPlain:
        continue;
      case kSlash:
        if (i == segment || isDotSegment(s + segment, i - segment)) return Scan::kNeedsWork;
        segment = i + 1;
        continue;
      case kPercent: {
        int v = escapeValue(s + i, n - i);
        if (v < 0) return Scan::kBadEscape;
        if (isControl(static_cast<unsigned char>(v))) return Scan::kControl;
        if (isUnreserved(static_cast<unsigned char>(v)) || !isUpperHexDigit(s[i + 1]) ||
            !isUpperHexDigit(s[i + 2])) {
          return Scan::kNeedsWork;
        }
        escaped_separator |= v == '/' || v == '\\';
        i += 2;
        continue;
      }
      default:
        return Scan::kControl;
    }
  }
  if (isDotSegment(s + segment, n - segment)) return Scan::kNeedsWork;
  return escaped_separator ? Scan::kNormalWithEscapedSeparator : Scan::kNormal;
}

// Writes `path` into `out` with unreserved escapes decoded and the others
// upper-cased (RFC 3986 §6.2.2.1-2); sets `escaped_separator` on %2F or %5C.
PathStatus decodeInto(std::string_view path, std::string& out, bool& escaped_separator) {
  out.resize(path.size());  // decoding never lengthens
  char* o = out.data();
  const std::size_t n = path.size();
  for (std::size_t i = 0; i < n; ++i) {
    const char c = path[i];
    if (isControl(static_cast<unsigned char>(c))) return PathStatus::kControl;
    if (c != '%') {
      *o++ = c;
      continue;
    }
    int v = escapeValue(path.data() + i, n - i);
    if (v < 0) return PathStatus::kBadEscape;
    if (isControl(static_cast<unsigned char>(v))) return PathStatus::kControl;
    if (isUnreserved(static_cast<unsigned char>(v))) {
      *o++ = static_cast<char>(v);
    } else {
      *o++ = '%';
      *o++ = kUpperHex[v >> 4];
      *o++ = kUpperHex[v & 0xf];
      escaped_separator |= v == '/' || v == '\\';
    }
    i += 2;
  }
  out.resize(static_cast<std::size_t>(o - out.data()));
  return PathStatus::kOk;
}

// In place on a '/'-rooted path: removes dot segments (RFC 3986 §5.2.4) and
// empty segments; a final empty, "." or ".." segment leaves a trailing '/'.
void collapse(std::string& s) {
  char* d = s.data();
  const std::size_t n = s.size();
  std::size_t w = 0;  // d[0, w) is a run of "/segment" pieces
  std::size_t r = 0;  // d[r] == '/', the start of the next segment
  bool trailing = false;
  while (r < n) {
    const char* segment = d + r + 1;
    const void* next = std::memchr(segment, '/', n - r - 1);
    const std::size_t end =
        next != nullptr ? static_cast<std::size_t>(static_cast<const char*>(next) - d) : n;
    const std::size_t len = end - r - 1;
    if (len == 0 || (len == 1 && segment[0] == '.')) {
      trailing = true;
    } else if (len == 2 && segment[0] == '.' && segment[1] == '.') {
      while (w > 0 && d[--w] != '/') {
      }
      trailing = true;
    } else {
      if (w != r) std::memmove(d + w, d + r, len + 1);
      w += len + 1;
      trailing = false;
    }
    r = end;
  }
  assert(trailing || w > 0);
  if (trailing) d[w++] = '/';  // w < n: the dropped last segment's '/' was not kept
  s.resize(w);
}

// The route view of a normal path: %2F as '/', %5C as '\', collapsed again.
std::string_view routeView(std::string_view forward, std::string& out) {
  out.resize(forward.size());
  char* o = out.data();
  for (std::size_t i = 0; i < forward.size(); ++i) {
    const char c = forward[i];
    if (c == '%' && forward[i + 1] == '2' && forward[i + 2] == 'F') {
      *o++ = '/';
      i += 2;
    } else if (c == '%' && forward[i + 1] == '5' && forward[i + 2] == 'C') {
      *o++ = '\\';
      i += 2;
    } else {
      *o++ = c;
    }
  }
  out.resize(static_cast<std::size_t>(o - out.data()));
  collapse(out);
  return out;
}

NormalizedPath failure(PathStatus status) {
  NormalizedPath r;
  r.status = status;
  return r;
}

}  // namespace

NormalizedPath normalizePath(std::string_view path, PathBuffers& buffers) {
  NormalizedPath r;
  if (path.empty()) {
    r.forward = r.route = "/";
    return r;
  }
  if (path.front() != '/') {
    if (path != "*") return failure(PathStatus::kNotAPath);
    r.forward = r.route = path;
    return r;
  }
  switch (scan(path)) {
    case Scan::kNormal:
      r.forward = r.route = path;
      return r;
    case Scan::kNormalWithEscapedSeparator:
      r.forward = path;
      r.route = routeView(path, buffers.route);
      return r;
    case Scan::kControl:
      return failure(PathStatus::kControl);
    case Scan::kBadEscape:
      return failure(PathStatus::kBadEscape);
    case Scan::kNeedsWork:
      break;
  }
  bool escaped_separator = false;
  PathStatus status = decodeInto(path, buffers.forward, escaped_separator);
  if (status != PathStatus::kOk) return failure(status);
  collapse(buffers.forward);
  r.forward = buffers.forward;
  r.route = escaped_separator ? routeView(buffers.forward, buffers.route) : r.forward;
  return r;
}

}  // namespace sluice::http
