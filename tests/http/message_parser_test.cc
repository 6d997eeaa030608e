#include "proxy/http/message_parser.h"

#include <gtest/gtest.h>

#include <string>

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
        BadCase{"obs_fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
        BadCase{"space_before_colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n"},
        BadCase{"space_in_name", "GET / HTTP/1.1\r\nHo st: x\r\n\r\n"},
        BadCase{"ctl_in_name", "GET / HTTP/1.1\r\nHo\x01st: x\r\n\r\n"}),
    [](const ::testing::TestParamInfo<BadCase>& tp) { return std::string(tp.param.name); });

TEST(MessageParser, MoreThanHundredHeadersIsTooMany) {
  std::string raw = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 100; ++i) raw += "X-" + std::to_string(i) + ": v\r\n";
  raw += "\r\n";
  MessageParser p(HTTP_REQUEST);
  p.beginMessage(0);
  EXPECT_EQ(feedAll(p, raw).event, ParseEvent::kError);
  EXPECT_EQ(p.error(), ParseError::kTooManyHeaders);
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
