#pragma once
// Pure checks of a request head before it is routed (RFC 9112): size limits
// while the head is still arriving, and framing/version/Host rules once it
// is complete. Each returns the status to answer with, or 0.

#include <cstdint>

#include "proxy/http/message_parser.h"

namespace sluice::http {

// A head `h` of which `consumed` bytes are parsed so far (`complete` once the
// blank line was seen) against max_header_bytes: 414 for a request line
// longer than half of it, 431 for a head over it, else 0.
int headSizeStatus(const MessageHead& h, std::uint64_t consumed, bool complete,
                   std::uint64_t max_header_bytes);

// A complete request head: 505 for a version other than 1.x, 400 for a
// Transfer-Encoding not ending in chunked (RFC 9112 §6.3 rule 4) or a Host
// count other than one on HTTP/1.1 (§3.2), 413 for a Content-Length over
// `max_body_bytes`, else 0.
int requestHeadStatus(const MessageHead& h, std::uint64_t max_body_bytes);

}  // namespace sluice::http
