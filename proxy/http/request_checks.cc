#include "proxy/http/request_checks.h"

namespace sluice::http {

int headSizeStatus(const MessageHead& h, std::uint64_t consumed, bool complete,
                   std::uint64_t max_header_bytes) {
  if (static_cast<std::uint64_t>(h.url.len) + h.method_span.len > max_header_bytes / 2) {
    return 414;
  }
  if (complete) return h.end - h.start > max_header_bytes ? 431 : 0;
  if (consumed > max_header_bytes) return h.header_count == 0 && h.line_end == 0 ? 414 : 431;
  return 0;
}

int requestHeadStatus(const MessageHead& h, std::uint64_t max_body_bytes) {
  if (h.version_major != 1) return 505;
  // Smuggling-shaped framing: no knowable length. Bare LF and obs-fold never
  // get here: the parser rejects the head.
  if (h.transfer_encoding && !h.chunked) return 400;
  const bool http10 = h.version_minor == 0;
  if ((!http10 && h.host_count != 1) || h.host_count > 1) return 400;
  if (h.content_length > max_body_bytes) return 413;
  return 0;
}

}  // namespace sluice::http
