#pragma once
// Drives a MessageParser the way Http1Session does (proxy/server/http1_session.cc):
// bytes arrive in reads of fuzzer-chosen sizes into one contiguous buffer,
// feed() is called on everything received and not yet parsed, heads stop the
// parser, bodiless messages are completed with a zero-byte feed, and
// pipelined messages start where the previous one ended. Every result is
// checked against the invariants the proxy relies on.

#include <llhttp.h>

#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "proxy/http/message_parser.h"

namespace sluice::fuzz {

inline bool isTokenChar(char c) {
  if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

inline bool hasLineBreakOrNul(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// True when [span.off, span.off + span.len) lies inside [lo, hi).
inline bool within(const http::Span& span, std::uint32_t lo, std::uint32_t hi) {
  return span.len == 0 || (span.off >= lo && span.off + span.len <= hi);
}

inline std::string_view text(std::string_view buf, const http::Span& span) {
  return buf.substr(span.off, span.len);
}

// Checks a head reported complete at `end` for a message begun at `start`.
inline void checkHead(const http::MessageHead& h, std::string_view buf, std::uint32_t start,
                      std::uint32_t end, bool request) {
  FUZZ_CHECK(h.start == start);
  FUZZ_CHECK(h.end == end);
  FUZZ_CHECK(end <= buf.size());
  FUZZ_CHECK(end - start >= 4);
  FUZZ_CHECK(buf.substr(end - 4, 4) == "\r\n\r\n");
  FUZZ_CHECK(h.line_end > start && h.line_end <= end - 2);
  FUZZ_CHECK(buf.substr(h.line_end - 2, 2) == "\r\n");
  FUZZ_CHECK(h.header_count >= 0 && h.header_count <= http::kMaxHeaders);
  FUZZ_CHECK(h.host_count >= 0 && h.host_count <= h.header_count);
  FUZZ_CHECK(h.host_index >= -1 && h.host_index < h.header_count);
  FUZZ_CHECK((h.host_count == 0) == (h.host_index == -1));
  FUZZ_CHECK(!(h.chunked && h.has_content_length));
  FUZZ_CHECK(h.has_content_length || h.content_length == 0);
  if (request) {
    // llhttp skips empty lines before a request line (RFC 9112 §2.2).
    FUZZ_CHECK(h.method_span.len > 0 && h.method_span.off >= start);
    for (std::uint32_t i = start; i < h.method_span.off; ++i) {
      FUZZ_CHECK(buf[i] == '\r' || buf[i] == '\n');
    }
    FUZZ_CHECK(within(h.method_span, start, h.line_end));
    FUZZ_CHECK(text(buf, h.method_span) ==
               llhttp_method_name(static_cast<llhttp_method_t>(h.method)));
    // llhttp 8.1 lets CONNECT through with an empty target ("CONNECT  HTTP/1.1");
    // harmless here: requestPath("") matches no route, the answer is 404.
    FUZZ_CHECK(h.url.len > 0 || h.method == HTTP_CONNECT);
    FUZZ_CHECK(within(h.url, h.method_span.off + h.method_span.len, h.line_end));
    FUZZ_CHECK(!hasLineBreakOrNul(text(buf, h.url)));
  } else {
    FUZZ_CHECK(h.status >= 0 && h.status <= 999);
  }
  std::uint32_t prev_end = h.line_end;
  for (int i = 0; i < h.header_count; ++i) {
    const http::HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    FUZZ_CHECK(f.name.len > 0);
    FUZZ_CHECK(f.name.off == prev_end);  // each field starts a line
    FUZZ_CHECK(within(f.name, prev_end, end - 2));
    FUZZ_CHECK(within(f.value, f.name.off + f.name.len, end - 2));
    const std::uint32_t value_end = f.value.len > 0 ? f.value.off + f.value.len : f.name.off;
    FUZZ_CHECK(f.line_end > value_end && f.line_end <= end - 2);
    FUZZ_CHECK(buf.substr(f.line_end - 2, 2) == "\r\n");
    for (char c : text(buf, f.name)) FUZZ_CHECK(isTokenChar(c));
    FUZZ_CHECK(!hasLineBreakOrNul(text(buf, f.value)));
    // Between the name and the value only the colon and optional whitespace.
    const std::uint32_t gap_from = f.name.off + f.name.len;
    const std::uint32_t gap_to = f.value.len > 0 ? f.value.off : gap_from + 1;
    FUZZ_CHECK(gap_to > gap_from && buf[gap_from] == ':');
    for (std::uint32_t j = gap_from + 1; j < gap_to; ++j) {
      FUZZ_CHECK(buf[j] == ' ' || buf[j] == '\t');
    }
    prev_end = f.line_end;
  }
  if (h.host_index >= 0) {
    const http::HeaderField& host = h.headers[static_cast<std::size_t>(h.host_index)];
    FUZZ_CHECK(http::equalsIgnoreCase(text(buf, host.name), "host"));
  }
}

// Checks that `body` is a complete chunked body (RFC 9112 §7.1) that a
// strict reader frames the same way: it ends exactly where the parser said
// and decodes to `decoded` bytes. A disagreement would let a request smuggle
// bytes past the proxy, since sluice forwards chunked framing raw.
inline bool strictChunkedFraming(std::string_view body, std::uint64_t decoded) {
  std::size_t i = 0;
  std::uint64_t total = 0;
  auto crlf = [&](std::size_t at) { return body.substr(at, 2) == "\r\n"; };
  for (;;) {
    std::uint64_t size = 0;
    const std::size_t digits_from = i;
    while (i < body.size()) {
      const char c = body[i];
      int v = -1;
      if (c >= '0' && c <= '9') v = c - '0';
      if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
      if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
      if (v < 0) break;
      if (size > (UINT64_MAX >> 4)) return false;
      size = size * 16 + static_cast<std::uint64_t>(v);
      ++i;
    }
    if (i == digits_from) return false;
    // chunk-ext: whatever the parser allowed, but never a line break.
    while (i < body.size() && body[i] != '\r' && body[i] != '\n') ++i;
    if (!crlf(i)) return false;
    i += 2;
    if (size == 0) break;
    if (body.size() - i < size + 2) return false;
    i += size;
    if (!crlf(i)) return false;
    i += 2;
    total += size;
  }
  // Trailer fields, then the empty line.
  for (;;) {
    const std::size_t eol = body.find("\r\n", i);
    if (eol == std::string_view::npos) return false;
    const std::string_view line = body.substr(i, eol - i);
    if (line.find_first_of("\r\n") != std::string_view::npos) return false;
    i = eol + 2;
    if (line.empty()) break;
  }
  return i == body.size() && total == decoded;
}

// Feeds `stream` (a sequence of pipelined requests) to a request parser in
// reads chosen by `schedule`, checking every event.
inline void runRequestStream(std::string_view stream, ReadSchedule& schedule) {
  if (stream.size() > UINT32_MAX / 2) return;
  http::MessageParser parser(HTTP_REQUEST);
  const char* base = stream.data();
  const auto size = static_cast<std::uint32_t>(stream.size());
  std::uint32_t avail = 0;  // bytes "received" so far
  std::uint32_t pos = 0;    // bytes parsed so far
  std::uint32_t start = 0;  // first byte of the current message
  std::uint32_t body_from = 0;
  bool in_body = false;
  http::MessageHead head;
  parser.beginMessage(0);
  for (;;) {
    if (pos == avail) {
      if (avail == size) break;
      avail += schedule.next(size - avail);
    }
    const std::uint32_t len = avail - pos;
    const std::uint64_t body_before = parser.bodyBytes();
    const http::ParseResult r = parser.feed(base, pos, len);
    FUZZ_CHECK(r.consumed <= len);
    if (r.event == http::ParseEvent::kError) {
      FUZZ_CHECK(r.consumed == 0);
      FUZZ_CHECK(parser.error() != http::ParseError::kNone);
      return;
    }
    if (r.event == http::ParseEvent::kNeedMore) FUZZ_CHECK(r.consumed == len);
    pos += static_cast<std::uint32_t>(r.consumed);
    if (!in_body) {
      FUZZ_CHECK(parser.bodyBytes() == 0);
      if (r.event == http::ParseEvent::kMessageComplete) {
        // The end of an Upgrade/CONNECT message surfaces on the next feed;
        // it must not swallow bytes of the next head.
        FUZZ_CHECK(r.consumed == 0);
        continue;
      }
      if (r.event != http::ParseEvent::kHeadComplete) continue;
      checkHead(parser.head(), stream, start, pos, /*request=*/true);
      head = parser.head();
      // Http1Session::handleHead answers 400 and closes (RFC 9112 §6.3 rule 4).
      if (head.bare_lf || (head.transfer_encoding && !head.chunked)) return;
      FUZZ_CHECK(parser.bodyUntilEof() == false);  // requests never read to EOF
      body_from = pos;
      if (head.chunked || head.content_length > 0) {
        in_body = true;
        continue;
      }
      // A bodiless request completes at once (Http1Session::handleHead).
      const http::ParseResult done = parser.feed(base, pos, 0);
      FUZZ_CHECK(done.event == http::ParseEvent::kMessageComplete);
      FUZZ_CHECK(done.consumed == 0);
    } else {
      const std::uint64_t body = parser.bodyBytes();
      FUZZ_CHECK(body >= body_before);
      FUZZ_CHECK(body - body_before <= r.consumed);
      FUZZ_CHECK(body <= pos - body_from);
      if (!head.chunked) {
        FUZZ_CHECK(body - body_before == r.consumed);
        FUZZ_CHECK(body <= head.content_length);
      }
      if (r.event != http::ParseEvent::kMessageComplete) continue;
      if (head.chunked) {
        FUZZ_CHECK(strictChunkedFraming(stream.substr(body_from, pos - body_from), body));
      } else {
        FUZZ_CHECK(body == head.content_length);
      }
      in_body = false;
    }
    start = pos;
    parser.beginMessage(pos);
  }
  // The client closed: a request is never completed by EOF.
  FUZZ_CHECK(!parser.finishAtEof());
}

}  // namespace sluice::fuzz
