// Response parsing as exchange::Exchange::pumpResponse drives it: interim 1xx
// responses are skipped with skipBody(), HEAD/204/304 answers have no body
// whatever their headers say (RFC 9112 §6.3), close-delimited bodies end at
// EOF. Byte 0 bit 0 of the input marks the responses as answers to HEAD;
// bit 1 picks that per response instead.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "fuzz/http_stream.h"

namespace {

using sluice::fuzz::checkHead;
using sluice::fuzz::strictChunkedFraming;
using sluice::http::MessageParser;
using sluice::http::ParseEvent;

void runResponseStream(std::string_view stream, std::uint8_t flags,
                       sluice::fuzz::ReadSchedule& schedule) {
  if (stream.size() > UINT32_MAX / 2) return;
  MessageParser parser(HTTP_RESPONSE);
  const char* base = stream.data();
  const auto size = static_cast<std::uint32_t>(stream.size());
  std::uint32_t avail = 0;
  std::uint32_t pos = 0;
  std::uint32_t start = 0;
  std::uint32_t body_from = 0;
  bool in_body = false;
  bool no_body = false;
  bool feed_now = false;  // pumpResponse feeds once right after a head, even with no bytes
  sluice::http::MessageHead head;
  parser.beginMessage(0);
  for (;;) {
    if (pos == avail && !feed_now) {
      if (avail == size) break;
      avail += schedule.next(size - avail);
    }
    feed_now = false;
    const std::uint32_t len = avail - pos;
    const std::uint64_t body_before = parser.bodyBytes();
    const auto r = parser.feed(base, pos, len);
    FUZZ_CHECK(r.consumed <= len);
    if (r.event == ParseEvent::kError) {
      FUZZ_CHECK(r.consumed == 0);
      return;
    }
    if (r.event == ParseEvent::kNeedMore) FUZZ_CHECK(r.consumed == len);
    pos += static_cast<std::uint32_t>(r.consumed);
    if (!in_body) {
      FUZZ_CHECK(parser.bodyBytes() == 0);
      if (r.event == ParseEvent::kNeedMore) continue;
      // pumpResponse takes any other event in head state for a head.
      FUZZ_CHECK(r.event == ParseEvent::kHeadComplete);
      checkHead(parser.head(), stream, start, pos, /*request=*/false);
      head = parser.head();
      if (head.status >= 100 && head.status < 200) {
        if (head.status == 101) return;  // the proxy answers 502
        parser.skipBody();
        const auto done = parser.feed(base, pos, 0);
        FUZZ_CHECK(done.event == ParseEvent::kMessageComplete);
        FUZZ_CHECK(done.consumed == 0);
        FUZZ_CHECK(parser.bodyBytes() == 0);
        start = pos;
        parser.beginMessage(pos);
        continue;
      }
      const bool head_request = (flags & 2) != 0 ? schedule.bit() : (flags & 1) != 0;
      no_body = head_request || head.status == 204 || head.status == 304;
      if (no_body) parser.skipBody();
      FUZZ_CHECK(parser.bodyUntilEof() == (!no_body && !head.chunked && !head.has_content_length));
      in_body = true;
      feed_now = true;
      body_from = pos;
      continue;
    }
    const std::uint64_t body = parser.bodyBytes();
    FUZZ_CHECK(body >= body_before);
    FUZZ_CHECK(body <= pos - body_from);
    if (no_body) FUZZ_CHECK(body == 0);
    if (!head.chunked) FUZZ_CHECK(body - body_before == r.consumed);
    if (!no_body && head.has_content_length) FUZZ_CHECK(body <= head.content_length);
    if (r.event != ParseEvent::kMessageComplete) continue;
    if (no_body) {
      FUZZ_CHECK(pos == body_from);
    } else if (head.chunked) {
      FUZZ_CHECK(strictChunkedFraming(stream.substr(body_from, pos - body_from), body));
    } else {
      FUZZ_CHECK(head.has_content_length && body == head.content_length);
    }
    in_body = false;
    start = pos;
    parser.beginMessage(pos);
  }
  // The upstream closed. Exchange::upstreamReadable ends the response
  // cleanly when bodyUntilEof() && finishAtEof(): that must hold exactly for
  // close-delimited bodies. (A chunked body's trailers may carry a
  // Transfer-Encoding that makes llhttp's bodyUntilEof() true mid-message,
  // so both are checked.)
  if (in_body) {
    const bool close_delimited = !no_body && !head.chunked && !head.has_content_length;
    const bool clean_end = parser.bodyUntilEof() && parser.finishAtEof();
    FUZZ_CHECK(clean_end == close_delimited);
  }
}

}  // namespace

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = sluice::fuzz::StreamInput::from(data, size);
  sluice::fuzz::ReadSchedule schedule(in.max_read, in.seed);
  runResponseStream(in.bytes, in.flags, schedule);
  return 0;
}
