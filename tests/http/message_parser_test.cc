#include "proxy/http/message_parser.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace sluice::http {
namespace {

struct Fed {
  ParseEvent event;
  std::size_t consumed;
};

Fed feedAll(MessageParser& p, const std::string& s, std::uint32_t from = 0) {
  auto r = p.feed(s.data(), from, static_cast<std::uint32_t>(s.size()) - from);
  return {r.event, r.consumed};
}

ParseEvent requestOutcome(const std::string& raw) {
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::uint32_t pos = 0;
  for (int i = 0; i < 4; ++i) {
    auto r = feedAll(p, raw, pos);
    pos += static_cast<std::uint32_t>(r.consumed);
    if (r.event != ParseEvent::kHeadComplete) return r.event;
  }
  return ParseEvent::kNeedMore;
}

TEST(MessageParser, StopsAtHeadEndWithExactOffset) {
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::string raw = "GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\nGET /next";
  auto r = feedAll(p, raw);
  EXPECT_EQ(r.event, ParseEvent::kHeadComplete);
  EXPECT_EQ(r.consumed, raw.find("GET /next"));
  const auto& h = p.head();
  EXPECT_EQ(raw.substr(h.url.off, h.url.len), "/a?b=1");
  EXPECT_EQ(h.header_count, 2);
  EXPECT_EQ(h.host_count, 1);
}

TEST(MessageParser, BodilessMessageCompletesOnZeroByteFeed) {
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::string raw = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_EQ(feedAll(p, raw).event, ParseEvent::kHeadComplete);
  auto r = p.feed(raw.data(), static_cast<std::uint32_t>(raw.size()), 0);
  EXPECT_EQ(r.event, ParseEvent::kMessageComplete);
  EXPECT_EQ(r.consumed, 0u);
}

// After a request with Upgrade + Connection: upgrade (llhttp pauses with
// HPE_PAUSED_UPGRADE), the next message on the connection is parsed from its
// first byte: the upgrade request's end is reported once, not again on the
// next request's first feed (the session would wait for head bytes forever).
TEST(MessageParser, RequestAfterAnUpgradeRequestIsParsed) {
  // An upstream may refuse an Upgrade with an ordinary response (SPEC §10);
  // the client's connection then carries its next request.
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::string raw =
      "GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
  ASSERT_EQ(feedAll(p, raw).event, ParseEvent::kHeadComplete);
  EXPECT_TRUE(p.head().upgrade);
  ASSERT_EQ(p.feed(raw.data(), static_cast<std::uint32_t>(raw.size()), 0).event,
            ParseEvent::kMessageComplete);
  const auto next_at = static_cast<std::uint32_t>(raw.size());
  raw += "GET /next HTTP/1.1\r\nHost: x\r\n\r\n";
  p.beginMessage(next_at);
  auto r = feedAll(p, raw, next_at);
  EXPECT_EQ(r.event, ParseEvent::kHeadComplete);
  EXPECT_EQ(r.consumed, raw.size() - next_at);
  EXPECT_EQ(raw.substr(p.head().url.off, p.head().url.len), "/next");
}

TEST(MessageParser, ChunkedBodyEndIsExact) {
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::string raw =
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nNEXT";
  auto head = feedAll(p, raw);
  ASSERT_EQ(head.event, ParseEvent::kHeadComplete);
  EXPECT_TRUE(p.head().chunked);
  auto body = feedAll(p, raw, static_cast<std::uint32_t>(head.consumed));
  EXPECT_EQ(body.event, ParseEvent::kMessageComplete);
  EXPECT_EQ(head.consumed + body.consumed, raw.find("NEXT"));
  EXPECT_EQ(p.bodyBytes(), 5u);
}

TEST(MessageParser, HeadersSurviveSplitReads) {
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  std::string raw = "GET / HTTP/1.1\r\nHost: example\r\nX-Long: abcdef\r\n\r\n";
  std::uint32_t pos = 0;
  ParseEvent ev = ParseEvent::kNeedMore;
  for (std::uint32_t cut = 1; cut <= raw.size() && ev != ParseEvent::kHeadComplete; ++cut) {
    auto r = p.feed(raw.data(), pos, cut - pos);
    pos += static_cast<std::uint32_t>(r.consumed);
    ev = r.event;
  }
  ASSERT_EQ(ev, ParseEvent::kHeadComplete);
  const auto& f = p.head().headers[1];
  EXPECT_EQ(raw.substr(f.name.off, f.name.len), "X-Long");
  EXPECT_EQ(raw.substr(f.value.off, f.value.len), "abcdef");
}

struct BadCase {
  const char* name;
  const char* raw;
};

class SmugglingTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SmugglingTest, IsRejected) {
  EXPECT_EQ(requestOutcome(GetParam().raw), ParseEvent::kError) << GetParam().name;
}

INSTANTIATE_TEST_SUITE_P(
    Framing, SmugglingTest,
    ::testing::Values(
        BadCase{"cl_and_te", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                             "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        BadCase{"two_cl", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                          "Content-Length: 6\r\n\r\nhello!"},
        BadCase{"cl_not_number", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n"},
        BadCase{"te_not_final_chunked", "POST / HTTP/1.1\r\nHost: x\r\n"
                                        "Transfer-Encoding: chunked, identity\r\n\r\n"},
        BadCase{"te_xchunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n"},
        BadCase{"te_gzip_only", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"},
        BadCase{"bad_chunk_size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                                  "\r\nzz\r\nhello\r\n0\r\n\r\n"},
        BadCase{"bare_lf", "GET / HTTP/1.1\nHost: x\n\n"},
        // llhttp accepts these three even in strict mode (found by fuzz/).
        BadCase{"bare_lf_after_request_line", "GET / HTTP/1.1\nHost: x\r\n\r\n"},
        BadCase{"bare_lf_ending_head", "GET / HTTP/1.1\r\nHost: x\r\n\n"},
        BadCase{"bare_lf_ending_chunked_body",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\n\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"},
        // obs-fold after an empty first line (found by fuzz/).
        BadCase{"obs_fold_after_empty_value",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n"},
        BadCase{"obs_fold_after_empty_host", "GET / HTTP/1.1\r\nHost:\r\n evil\r\n\r\n"},
        BadCase{"obs_fold_blank_continuation", "GET / HTTP/1.1\r\nHost: x\r\nX: \r\n \r\n\r\n"},
        // llhttp reads no content for CONNECT; the next hop would (found by fuzz/).
        BadCase{"connect_with_content_length",
                "CONNECT /admin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"},
        BadCase{"connect_with_chunked_body",
                "CONNECT x:443 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        BadCase{"empty_header_name", "GET / HTTP/1.1\r\n: x\r\nHost: x\r\n\r\n"},
        BadCase{"empty_name_hiding_content_length",
                "POST / HTTP/1.1\r\nHost: x\r\n:Content-Length: 5\r\n\r\nhello"},
        BadCase{"empty_trailer_name",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\n: x\r\n\r\n"},
        BadCase{"bare_lf_ending_trailers",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\nX-T: 1\r\n\n"},
        BadCase{"content_length_in_trailers",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\nContent-Length: 5\r\n\r\n"},
        BadCase{"transfer_encoding_in_trailers",
                "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                "0\r\ntransfer-encoding: chunked\r\n\r\n"},
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
        BadCase{"space_before_colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n"},
        BadCase{"space_in_name", "GET / HTTP/1.1\r\nHo st: x\r\n\r\n"},
        BadCase{"ctl_in_name", "GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n"}),
    [](const ::testing::TestParamInfo<BadCase>& tp) { return std::string(tp.param.name); });

// Feeds the body part of `raw` (from `from`) the way the proxy does once the
// head is forwarded: each piece copied to the front of a fresh buffer, so
// nothing of an earlier read stays where it was. Returns the last event.
ParseEvent feedBodyMoving(MessageParser& p, const std::string& raw, std::size_t from,
                          std::size_t piece) {
  ParseEvent last = ParseEvent::kNeedMore;
  for (std::size_t pos = from; pos < raw.size();) {
    std::string buf = raw.substr(pos, piece) + std::string(8, '#');  // moved, not contiguous
    auto len = static_cast<std::uint32_t>(std::min(piece, raw.size() - pos));
    auto r = p.feed(buf.data(), 0, len);
    last = r.event;
    if (last != ParseEvent::kNeedMore) break;
    pos += r.consumed;
  }
  return last;
}

struct Outcome {
  ParseEvent event;
  ParseError error;
  std::uint64_t body_bytes;
};

// The head of `raw` in one read, the rest in reads of `piece` bytes through a
// moving buffer (feedBodyMoving): the last event, the parser's error and the
// body bytes it counted.
Outcome messageOutcome(const std::string& raw, std::size_t piece,
                       llhttp_type_t type = HTTP_REQUEST) {
  MessageParser p(type);
  p.beginMessage(0);
  auto head = feedAll(p, raw);
  if (head.event != ParseEvent::kHeadComplete) return {head.event, p.error(), 0};
  ParseEvent last = feedBodyMoving(p, raw, head.consumed, piece);
  return {last, p.error(), p.bodyBytes()};
}

TEST(MessageParser, ChunkedBodyEndingInBareLfIsRejectedAcrossReads) {
  // The last empty line arrives one byte per read: the check must not rely
  // on earlier bytes still being in the buffer.
  std::string raw =
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\n";
  EXPECT_EQ(messageOutcome(raw, 1).event, ParseEvent::kError);
}

TEST(MessageParser, ChunkedBodyEndingInCrlfCompletesAcrossReads) {
  std::string raw =
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
  const Outcome o = messageOutcome(raw, 1);
  EXPECT_EQ(o.event, ParseEvent::kMessageComplete);
  EXPECT_EQ(o.body_bytes, 3u);
}

TEST(MessageParser, ResponseHeadEndingInBareLfIsRejected) {
  // Before: accepted, with line_end one byte short, so the status line went
  // to the client as "HTTP/1.1 204 No Content\r" run into the next field.
  for (const char* raw : {"HTTP/1.1 204 No Content\r\n\n", "HTTP/1.1 204 No Content\n\r\n",
                          "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"}) {
    MessageParser p(HTTP_RESPONSE);
    p.beginMessage(0);
    std::string s(raw);
    EXPECT_EQ(feedAll(p, s).event, ParseEvent::kError) << s;
  }
}

TEST(MessageParser, ResponseFieldWithEmptyNameIsRejected) {
  // Found by fuzz/response_parser_fuzz: llhttp accepted ":Content-Length: 3"
  // and the proxy relayed it to the client as ": Content-Length: 3".
  for (const char* raw : {"HTTP/1.1 200 OK\r\n:Content-Length: 3\r\n\r\nabc",
                          "HTTP/1.1 200 OK\r\nA: b\r\n: x\r\n\r\n"}) {
    MessageParser p(HTTP_RESPONSE);
    p.beginMessage(0);
    std::string s(raw);
    EXPECT_EQ(feedAll(p, s).event, ParseEvent::kError) << s;
  }
}

TEST(MessageParser, MoreThanHundredHeadersIsTooMany) {
  std::string raw = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 100; ++i) raw += "X-" + std::to_string(i) + ": v\r\n";
  raw += "\r\n";
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  EXPECT_EQ(feedAll(p, raw).event, ParseEvent::kError);
  EXPECT_EQ(p.error(), ParseError::kTooManyHeaders);
}

std::string chunkedWithTrailers(int head_fields, int trailer_fields, std::string_view value) {
  std::string raw = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n";
  for (int i = 0; i < head_fields; ++i) raw += "X-H" + std::to_string(i) + ": v\r\n";
  raw += "\r\n3\r\nabc\r\n0\r\n";
  for (int i = 0; i < trailer_fields; ++i) {
    raw += "X-T" + std::to_string(i) + ": " + std::string(value) + "\r\n";
  }
  raw += "\r\n";
  return raw;
}

TEST(MessageParser, TrailersHaveAFieldLimitOfTheirOwn) {
  // 98 head fields (with Host and Transfer-Encoding) and 100 trailer fields:
  // each section is within the limit.
  std::string raw = chunkedWithTrailers(96, 100, "t");
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  auto head = feedAll(p, raw);
  ASSERT_EQ(head.event, ParseEvent::kHeadComplete);
  EXPECT_EQ(p.head().header_count, 98);
  EXPECT_EQ(feedBodyMoving(p, raw, head.consumed, raw.size()), ParseEvent::kMessageComplete);
  EXPECT_EQ(p.bodyBytes(), 3u);
}

TEST(MessageParser, MoreThanHundredTrailerFieldsIsTooMany) {
  std::string raw = chunkedWithTrailers(0, 101, "t");
  const Outcome o = messageOutcome(raw, raw.size());
  EXPECT_EQ(o.event, ParseEvent::kError);
  EXPECT_EQ(o.error, ParseError::kTooManyHeaders);
}

TEST(MessageParser, TrailerValueSplitBetweenReadsOfAMovedBuffer) {
  // Every cut of a trailer value between two reads, the bytes of the second
  // read landing at the front of the buffer: still one value, not obs-fold.
  std::string raw = chunkedWithTrailers(0, 2, "abcdefghij");
  for (std::size_t piece = 1; piece <= 16; ++piece) {
    EXPECT_EQ(messageOutcome(raw, piece).event, ParseEvent::kMessageComplete)
        << "reads of " << piece << " bytes";
  }
}

TEST(MessageParser, ObsFoldInTrailersIsRejectedHoweverItIsSplit) {
  std::string raw =
      "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n0\r\nX-T: a\r\n b\r\n\r\n";
  for (std::size_t piece = 1; piece <= raw.size(); ++piece) {
    EXPECT_EQ(messageOutcome(raw, piece).event, ParseEvent::kError)
        << "reads of " << piece << " bytes";
  }
}

TEST(MessageParser, ObsFoldInTheHeadIsRejectedAtEveryCut) {
  std::string raw = "GET / HTTP/1.1\r\nHost: x\r\nX-A: abc\r\n def\r\n\r\n";
  for (std::uint32_t cut = 1; cut < raw.size(); ++cut) {
    MessageParser p(HTTP_REQUEST);
    p.beginMessage(0);
    auto first = p.feed(raw.data(), 0, cut);
    ParseEvent ev = first.event;
    if (ev == ParseEvent::kNeedMore) {
      auto pos = static_cast<std::uint32_t>(first.consumed);
      ev = p.feed(raw.data(), pos, static_cast<std::uint32_t>(raw.size()) - pos).event;
    }
    EXPECT_EQ(ev, ParseEvent::kError) << "cut at " << cut;
  }
}

TEST(MessageParser, ObsFoldIsRejectedWhenTheLineBreakArrivesAlone) {
  // "X-A: a" | CRLF | " b": the fold starts its own read, right after a read
  // that carried nothing but the line break. Every whitespace and split.
  for (std::string fold : {" b", "\tb", "  b", " ", "\t "}) {
    for (std::string cut : {"\r\n", "\r", ""}) {
      const std::string head = "GET / HTTP/1.1\r\nHost: x\r\nX-A: a";
      const std::string rest = std::string("\r\n").substr(cut.size());
      const std::vector<std::string> reads = {head, cut, rest + fold, "\r\n\r\n"};
      MessageParser p(HTTP_REQUEST);
      p.beginMessage(0);
      std::string buf;
      std::uint32_t pos = 0;
      ParseEvent ev = ParseEvent::kNeedMore;
      for (const auto& r : reads) {
        buf += r;
        auto res = p.feed(buf.data(), pos, static_cast<std::uint32_t>(buf.size()) - pos);
        ev = res.event;
        if (ev != ParseEvent::kNeedMore) break;
        pos += static_cast<std::uint32_t>(res.consumed);
      }
      EXPECT_EQ(ev, ParseEvent::kError) << "fold '" << fold << "' after reads split at '"
                                        << (cut == "\r\n" ? "CRLF" : cut == "\r" ? "CR" : "")
                                        << "'";
    }
  }
}

TEST(MessageParser, FramingInTrailersIsRejectedHoweverItIsSplit) {
  // Requests and responses alike; the name may arrive a byte per read.
  for (std::string field : {"Content-Length: 5", "Transfer-Encoding: chunked"}) {
    const std::string trailers = "0\r\nX-Ok: 1\r\n" + field + "\r\n\r\n";
    const std::string request =
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + trailers;
    const std::string response =
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + trailers;
    for (std::size_t piece = 1; piece <= trailers.size(); ++piece) {
      EXPECT_EQ(messageOutcome(request, piece).event, ParseEvent::kError)
          << field << ", request, reads of " << piece << " bytes";
      EXPECT_EQ(messageOutcome(response, piece, HTTP_RESPONSE).event, ParseEvent::kError)
          << field << ", response, reads of " << piece << " bytes";
    }
  }
}

TEST(MessageParser, ResponseToHeadSkipsBodyDespiteContentLength) {
  MessageParser p(HTTP_RESPONSE);
  p.beginMessage(0);
  std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
  auto head = feedAll(p, raw);
  ASSERT_EQ(head.event, ParseEvent::kHeadComplete);
  p.skipBody();
  auto done = feedAll(p, raw, static_cast<std::uint32_t>(head.consumed));
  EXPECT_EQ(done.event, ParseEvent::kMessageComplete);
  EXPECT_EQ(done.consumed, 0u);
}

TEST(MessageParser, CloseDelimitedResponseEndsAtEof) {
  MessageParser p(HTTP_RESPONSE);
  p.beginMessage(0);
  std::string raw = "HTTP/1.1 200 OK\r\n\r\nsome body";
  auto head = feedAll(p, raw);
  ASSERT_EQ(head.event, ParseEvent::kHeadComplete);
  auto body = feedAll(p, raw, static_cast<std::uint32_t>(head.consumed));
  EXPECT_EQ(body.event, ParseEvent::kNeedMore);
  EXPECT_TRUE(p.bodyUntilEof());
  EXPECT_TRUE(p.finishAtEof());
}

TEST(MessageParser, ResponseWithTwoContentLengthsIsRejected) {
  MessageParser p(HTTP_RESPONSE);
  p.beginMessage(0);
  std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello";
  EXPECT_EQ(feedAll(p, raw).event, ParseEvent::kError);
}

TEST(HeaderTokens, ListContainsTokenIgnoresCaseAndSpaces) {
  EXPECT_TRUE(listContainsToken("keep-alive, X-Foo", "x-foo"));
  EXPECT_FALSE(listContainsToken("keep-alive, X-Foobar", "x-foo"));
}

}  // namespace
}  // namespace sluice::http

namespace sluice::http {
namespace {

TEST(MessageParser, NewMessageForgetsThePreviousHeadsOffsets) {
  MessageParser p(HTTP_REQUEST);
  std::string first = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  p.beginMessage(0);
  ASSERT_EQ(p.feed(first.data(), 0, static_cast<std::uint32_t>(first.size())).event,
            ParseEvent::kHeadComplete);
  ASSERT_GT(p.head().line_end, 0u);
  p.feed(first.data(), static_cast<std::uint32_t>(first.size()), 0);
  // The next request has only begun: no start line has ended yet (the
  // proxy tells 414 from 431 by this).
  p.beginMessage(0);
  EXPECT_EQ(p.head().line_end, 0u);
  EXPECT_EQ(p.head().end, 0u);
}

}  // namespace
}  // namespace sluice::http
