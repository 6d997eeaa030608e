#pragma once
// Pure head rewriting for forwarding (RFC 9110 §7.6): the head sent upstream
// and the head sent back to the client, built from parsed offsets into the
// bytes that were read. No sockets; table-tested.

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/http/message_parser.h"

namespace sluice::http {

// Hop-by-hop fields (RFC 9110 §7.6.1) and the X-Forwarded-* fields sluice
// sets itself: never copied from a request to the upstream.
bool isRequestHopByHop(std::string_view name);
// Hop-by-hop fields of a response: never copied to the client.
bool isResponseHopByHop(std::string_view name);
// Methods that may be retried on a fresh connection (RFC 9110 §9.2.2).
bool isIdempotent(std::uint8_t method);

struct UpstreamHeadInput {
  std::string_view target;          // the request-target to send (the raw one, or normalized)
  bool http10 = false;              // the client spoke HTTP/1.0: forward as 1.0
  std::string_view peer_text;       // the TCP peer, appended to X-Forwarded-For
  std::string_view proto = "http";  // X-Forwarded-Proto
  std::string_view request_id;      // X-Request-Id
  std::string_view upgrade;         // SPEC §10: Upgrade to ask for (with Connection: upgrade), or ""
};

// Appends the upstream request head for client head `h` (offsets into `buf`)
// to `out`: hop-by-hop fields and those named by Connection dropped, every
// X-Forwarded-For line joined and the peer appended, X-Forwarded-Proto/Host
// and X-Request-Id set, chunked framing kept.
void buildUpstreamHead(const MessageHead& h, const char* buf, const UpstreamHeadInput& in,
                       std::string* out);

struct ResponseFraming {
  bool no_body = false;  // HEAD request, 204, 304 (RFC 9112 §6.3)
  bool rechunk = false;  // close-delimited body re-framed as chunked for the client
  bool close = false;    // the client connection closes after this response
};

// How response `h` is framed toward the client. `close` is whether the client
// connection was to close anyway.
ResponseFraming responseFraming(const MessageHead& h, bool head_request, bool client_http10,
                                bool close);

struct ResponseHeadInput {
  ResponseFraming framing;
  std::string_view request_id;     // X-Request-Id
  std::string_view extra_headers;  // complete lines (rate-limit fields), may be empty
  std::string_view upgrade;        // a 101's Upgrade (with Connection: upgrade), or ""
};

// Appends the client-facing head for upstream response `h` (offsets into
// `buf`) to `out`: HTTP/1.1 status line, hop-by-hop and Connection-named
// fields and the upstream's X-Request-Id dropped, framing per `in.framing`.
void buildResponseHead(const MessageHead& h, const char* buf, const ResponseHeadInput& in,
                       std::string* out);

}  // namespace sluice::http
