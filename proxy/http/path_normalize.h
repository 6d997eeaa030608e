#pragma once
// Path normalization (SPEC §12): one spelling per path, so that a limit on a
// route cannot be walked around with `//admin`, `/./admin`, `/%61dmin` or
// `/x/../admin`. Pure; no allocation once the caller's buffers are warm, and
// none at all for a path that is already normal (the common case).
//
// Input: the path of a request target, i.e. everything before the first '?'
// (and '#', which RFC 9112 does not allow but llhttp accepts). The caller
// keeps the rest of the target (query and all) untouched and appends it to the
// normalized path. Decisions where RFC 3986 leaves room:
//
// - origin-form (RFC 9112 §3.2.1): the path starts with '/'; normalized.
// - absolute-form (§3.2.2, `http://host/p`): pass only its path component
//   (routing::requestPath gives it, "/" when there is none) and forward the
//   request upstream in origin-form. An empty path is read as "/".
// - asterisk-form (§3.2.4, `OPTIONS *`): "*" is returned unchanged; it
//   starts with no route's path_prefix, so it gets 404 as before.
// - anything else (a rootless path, CONNECT's authority-form): kNotAPath.
// - a control byte, raw (< 0x20, 0x7f) or percent-encoded (%00..%1F, %7F):
//   kControl. Encoded CR, LF or NUL would only ever reach an origin that
//   decodes them into a log line or a file name.
// - '%' not followed by two hex digits: kBadEscape.
// - other bytes (raw bytes >= 0x80, '\', '"', ...) are kept as they are.
//
// `forward` is what goes upstream and into the access log: %2F and %5C stay
// encoded and are not segment separators, so dot segments around them are
// data (`/a%2F..%2Fb` is forwarded as is). `route` is what routes match: %2F
// read as '/', %5C as '\', then dot segments removed and '/' runs merged again
// with '/' as the only separator, i.e. the forwarded path as an origin that
// decodes %2F would serve it. So `/a%2F..%2Fadmin%2Fx` routes as `/admin/x`
// and a limit on `/admin/` covers it; `\` is never a separator (SPEC §12
// reads %5C as '\').
// Both views are normal: normalizing either again changes nothing.

#include <cstdint>
#include <string>
#include <string_view>

namespace sluice::http {

enum class PathStatus : std::uint8_t {
  kOk,
  kBadEscape,  // '%' not followed by two hex digits: 400
  kControl,    // raw or encoded NUL, C0 control or DEL: 400
  kNotAPath,   // neither '/'-rooted, empty nor "*": 400
};

struct NormalizedPath {
  PathStatus status = PathStatus::kOk;
  std::string_view forward;  // upstream request line and access log (%2F, %5C encoded)
  std::string_view route;    // route matching (%2F as '/', %5C as '\')

  bool ok() const { return status == PathStatus::kOk; }
};

// Reused across requests: after the first few requests normalizing a path
// that needs changes allocates nothing either.
struct PathBuffers {
  std::string forward;
  std::string route;
};

// Normalizes a request-target path per RFC 3986 §6.2.2 (§2.3 unreserved
// decoded, §6.2.2.1 other %xx upper-cased, §5.2.4 dot segments removed) and
// merges runs of '/'. The views point into `path` or `buffers` and stay valid
// until either changes; on an error both are empty.
NormalizedPath normalizePath(std::string_view path, PathBuffers& buffers);

}  // namespace sluice::http
