// The demo upstream, driven directly through the harness: proves both before
// the proxy is put between them.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using ::testing::HasSubstr;

class DemoUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(upstream_.start()); }
  DemoUpstream upstream_;
};

TEST_F(DemoUpstreamTest, DefaultResponseIsHelloText) {
  auto r = httpGet(upstream_.port(), "/anything");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), "text/plain");
  EXPECT_EQ(r->header("Content-Length"), "20");
  EXPECT_EQ(r->body, "hello from upstream\n");
}

TEST_F(DemoUpstreamTest, HeadGetsHeadersWithoutBody) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("HEAD", "/", upstream_.port()) +
                        requestText("GET", "/", upstream_.port())));
  auto head = conn.readResponse(deadlineIn(seconds(5)), /*head_request=*/true);
  ASSERT_TRUE(head);
  EXPECT_EQ(head->header("Content-Length"), "20");
  EXPECT_EQ(head->body, "");
  auto get = conn.readResponse(deadlineIn(seconds(5)));  // framing still in step
  ASSERT_TRUE(get);
  EXPECT_EQ(get->body, "hello from upstream\n");
}

TEST_F(DemoUpstreamTest, SizeParameterGivesThatManyPatternBytes) {
  auto r = httpGet(upstream_.port(), "/?size=1000000");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_EQ(r->header("Content-Length"), "1000000");
  EXPECT_EQ(r->body.size(), 1000000u);
  EXPECT_TRUE(isDemoBodyPattern(r->body));
}

TEST_F(DemoUpstreamTest, ChunkedParameterUsesChunkedEncoding) {
  auto r = httpGet(upstream_.port(), "/?size=700000&chunked=1");
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_TRUE(r->chunked);
  EXPECT_EQ(r->header("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(r->hasHeader("Content-Length"));
  EXPECT_EQ(r->body.size(), 700000u);
  EXPECT_TRUE(isDemoBodyPattern(r->body));
}

TEST_F(DemoUpstreamTest, StatusParameterSetsStatus) {
  auto r = httpGet(upstream_.port(), "/?status=503");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "hello from upstream\n");
}

TEST_F(DemoUpstreamTest, DelayParameterDelaysTheResponse) {
  auto start = Clock::now();
  auto r = httpGet(upstream_.port(), "/?delay=200");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_GE(Clock::now() - start, milliseconds(200));
}

TEST_F(DemoUpstreamTest, PipelinedRequestsAreAnsweredInOrder) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  // The first answer is the slowest: order must come from the queue, not timing.
  std::string batch;
  std::vector<std::string> paths = {"/?size=5&delay=150", "/?size=1", "/?size=4&chunked=1",
                                    "/?size=2&delay=20", "/?size=3"};
  for (const auto& p : paths) batch += requestText("GET", p, upstream_.port());
  ASSERT_TRUE(conn.send(batch));
  for (size_t expected : {5u, 1u, 4u, 2u, 3u}) {
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->body.size(), expected);
  }
  EXPECT_EQ(conn.buffered(), 0u);
}

TEST_F(DemoUpstreamTest, KeepAliveReusesOneConnection) {
  ASSERT_TRUE(upstream_.reset());
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/", upstream_.port())));
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 3);
  EXPECT_EQ(stats->connections, 1);
  EXPECT_EQ(stats->open_connections, 1);
}

TEST_F(DemoUpstreamTest, ContentLengthUploadIsCounted) {
  std::string body(300000, 'u');
  auto r = httpRequest(upstream_.port(), "POST", "/upload", {}, body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "received 300000 bytes\n");
}

TEST_F(DemoUpstreamTest, ChunkedUploadIsCounted) {
  std::string body = "5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n";
  auto r =
      httpRequest(upstream_.port(), "POST", "/upload", {{"Transfer-Encoding", "chunked"}}, body);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "received 8 bytes\n");
}

TEST_F(DemoUpstreamTest, ExpectContinueGets100BeforeTheBody) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("PUT", "/", upstream_.port(),
                                    {{"Expect", "100-continue"}, {"Content-Length", "4"}})));
  auto interim = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(conn.send("abcd"));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, "received 4 bytes\n");
}

TEST_F(DemoUpstreamTest, EchoReturnsTheRawRequestHead) {
  std::string head =
      "GET /__echo?x=1 HTTP/1.1\r\nHost: example.test\r\nX-Odd-Case:  spaced value\r\n\r\n";
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  // Split mid-header; the stats round trip lets the server read the first part
  // alone, so the head spans two reads.
  ASSERT_TRUE(conn.send(head.substr(0, 30)));
  ASSERT_TRUE(waitUntil([&] { return upstream_.stats().has_value(); }, deadlineIn(seconds(5))));
  ASSERT_TRUE(conn.send(head.substr(30)));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body, head);
}

TEST_F(DemoUpstreamTest, EchoQueryReturnsTheHeadOnAnyPath) {
  auto r = httpGet(upstream_.port(), "/admin/%2Fx?echo=1&y=2");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(r->body, ::testing::StartsWith("GET /admin/%2Fx?echo=1&y=2 HTTP/1.1\r\n"));
  auto plain = httpGet(upstream_.port(), "/admin/x?echo=0");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->body, "hello from upstream\n");
}

TEST_F(DemoUpstreamTest, EchoOfUploadAppendsTheByteCount) {
  auto r =
      httpRequest(upstream_.port(), "POST", "/__echo", {{"X-Forwarded-For", "10.0.0.1"}}, "12345");
  ASSERT_TRUE(r);
  EXPECT_THAT(r->body, HasSubstr("POST /__echo HTTP/1.1\r\n"));
  EXPECT_THAT(r->body, HasSubstr("X-Forwarded-For: 10.0.0.1\r\n"));
  EXPECT_THAT(r->body, HasSubstr("\r\n\r\nreceived 5 bytes\n"));
}

TEST_F(DemoUpstreamTest, StatsCountRequestsAndConnections) {
  ASSERT_TRUE(upstream_.reset());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(httpGet(upstream_.port(), "/"));
  std::optional<UpstreamStats> stats;
  // The server notices each client close a moment after the response.
  ASSERT_TRUE(waitUntil(
      [&] {
        stats = upstream_.stats();
        return stats && stats->open_connections == 0;
      },
      deadlineIn(seconds(5))));
  EXPECT_EQ(stats->requests, 3);
  EXPECT_EQ(stats->connections, 3);
  EXPECT_EQ(stats->in_flight, 0);
  EXPECT_EQ(stats->max_in_flight, 1);
}

TEST_F(DemoUpstreamTest, MaxInFlightTracksConcurrentDelayedRequests) {
  ASSERT_TRUE(upstream_.reset());
  std::vector<HttpConn> conns;
  // The delay is long enough for all four to overlap even on a loaded machine.
  for (int i = 0; i < 4; ++i) {
    conns.emplace_back(upstream_.port());
    ASSERT_TRUE(conns.back().connected()) << conns.back().error();
    ASSERT_TRUE(conns.back().send(requestText("GET", "/?delay=1000", upstream_.port())));
  }
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->in_flight == 4;
      },
      deadlineIn(seconds(5))));
  for (auto& c : conns) {
    auto r = c.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->in_flight, 0);
  EXPECT_EQ(stats->max_in_flight, 4);
  EXPECT_EQ(stats->requests, 4);
}

TEST_F(DemoUpstreamTest, HugeBodyIsStreamedWithBoundedMemory) {
  constexpr std::uint64_t kSize = 256ull << 20;
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(
      requestText("GET", "/?size=" + std::to_string(kSize) + "&chunked=1", upstream_.port())));
  auto r = conn.readResponseDiscardBody(deadlineIn(seconds(60)));
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->complete) << r->error;
  EXPECT_EQ(r->body_bytes, kSize);
  EXPECT_TRUE(r->body.empty());
  auto rss = readRssKb(upstream_.pid());
  ASSERT_TRUE(rss);
  EXPECT_LT(rss->hwm_kb, 64 * 1024) << "the demo upstream buffered the body";
}

TEST_F(DemoUpstreamTest, HangNeverAnswersAndKeepsTheConnection) {
  ASSERT_TRUE(upstream_.reset());
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/__hang", upstream_.port())));
  EXPECT_FALSE(conn.readResponse(deadlineIn(milliseconds(300))));
  EXPECT_FALSE(conn.isClosedByPeer(deadlineIn(milliseconds(50))));
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->in_flight, 1);
  conn.close();
  EXPECT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->in_flight == 0 && s->open_connections == 0;
      },
      deadlineIn(seconds(5))));
}

TEST_F(DemoUpstreamTest, CloseCutsTheBodyShort) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/__close", upstream_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->header("Content-Length"), "1000");
  EXPECT_FALSE(r->complete);
  EXPECT_EQ(r->error, "eof");
  EXPECT_EQ(r->body.size(), 10u);
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(1))));
  EXPECT_FALSE(conn.wasReset());
}

TEST_F(DemoUpstreamTest, ResetConnSendsRst) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/__reset_conn", upstream_.port())));
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));
  EXPECT_TRUE(conn.wasReset());
}

TEST_F(DemoUpstreamTest, MalformedSendsBothFramingHeaders) {
  HttpConn conn(upstream_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/__malformed", upstream_.port())));
  std::string raw = conn.readRaw(deadlineIn(seconds(5)));
  EXPECT_THAT(raw, HasSubstr("\r\nContent-Length: 5\r\n"));
  EXPECT_THAT(raw, HasSubstr("\r\nTransfer-Encoding: chunked\r\n"));
}

TEST_F(DemoUpstreamTest, ClConflictSendsTwoDifferentContentLengths) {
  auto r = httpGet(upstream_.port(), "/__cl_conflict");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->headerCount("Content-Length"), 2u);
}

TEST_F(DemoUpstreamTest, SigtermExitsZero) {
  ASSERT_TRUE(upstream_.process().signal(SIGTERM));
  EXPECT_EQ(upstream_.process().waitExit(deadlineIn(seconds(5))), 0);
}

TEST(DemoUpstreamThreads, SeveralThreadsShareThePort) {
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start({"--threads", "3"}));
  ASSERT_TRUE(upstream.reset());
  for (int i = 0; i < 12; ++i) {
    auto r = httpGet(upstream.port(), "/");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto stats = upstream.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 12);
  EXPECT_EQ(stats->connections, 12);
}

TEST(ChildProcessTest, ReportsExecFailure) {
  ChildProcess child("/nonexistent/binary", {});
  EXPECT_FALSE(child.started());
  EXPECT_THAT(child.error(), HasSubstr("No such file"));
}

TEST(ChildProcessTest, CapturesBothStreamsAndExitCode) {
  ChildProcess child("/bin/sh", {"-c", "echo out-$V; echo err >&2; exit 3"}, {{"V", "42"}});
  ASSERT_TRUE(child.started()) << child.error();
  auto m = child.waitForOutput(Stream::kStdout, std::regex("out-(\\d+)"), deadlineIn(seconds(5)));
  ASSERT_TRUE(m);
  EXPECT_EQ(m->groups.at(0), "42");
  EXPECT_TRUE(child.waitForOutput(Stream::kStderr, "err", deadlineIn(seconds(5))));
  EXPECT_EQ(child.waitExit(deadlineIn(seconds(5))), 3);
}

TEST(ChildProcessTest, WaitForOutputGivesUpWhenTheStreamCloses) {
  ChildProcess child("/bin/true", {});
  ASSERT_TRUE(child.started()) << child.error();
  auto start = Clock::now();
  EXPECT_FALSE(child.waitForOutput(Stream::kStdout, "never", deadlineIn(seconds(30))));
  EXPECT_LT(Clock::now() - start, seconds(10));
}

TEST(MinimalConfigTest, IndentsExtraBlocks) {
  ConfigOptions options;
  options.server = "workers: 1\n";
  options.route = "limits: [per_ip]\n";
  options.top = "limits:\n  per_ip:\n    per: ip\n    rate: 1/s\n";
  std::string yaml = minimalConfig(9001, options);
  EXPECT_THAT(
      yaml,
      HasSubstr("server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  workers: 1\n"));
  EXPECT_THAT(yaml, HasSubstr("    targets: [127.0.0.1:9001]\n"));
  EXPECT_THAT(yaml, HasSubstr("  - path_prefix: /\n    upstream: demo\n    limits: [per_ip]\n"));
  EXPECT_THAT(yaml, HasSubstr("\nlimits:\n  per_ip:\n"));
}

}  // namespace
}  // namespace sluice::testing
