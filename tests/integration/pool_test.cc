// The bounded upstream pool and the upstream-side failures (SPEC §4, §5):
// connection limits across workers, the pending queue and its timeout,
// refused, hanging, malformed and truncating upstreams, and cancellation when
// the client leaves.

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

// A loopback port nobody listens on: bound once by the kernel, then released.
int closedPort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = -1;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

class PoolTest : public ::testing::Test {
 protected:
  // Starts the demo upstream and sluice with `server` / `upstream` extra keys.
  void start(std::string server, std::string upstream) {
    ASSERT_TRUE(upstream_.start());
    ConfigOptions options;
    options.server = std::move(server);
    options.upstream = std::move(upstream);
    ASSERT_TRUE(sluice_.start(minimalConfig(upstream_.port(), options)));
  }

  // One connection per request, each with `path` sent.
  std::vector<HttpConn> sendConcurrently(int n, const std::string& path) {
    std::vector<HttpConn> conns;
    for (int i = 0; i < n; ++i) {
      conns.emplace_back(sluice_.port());
      EXPECT_TRUE(conns.back().connected()) << conns.back().error();
      EXPECT_TRUE(conns.back().send(requestText("GET", path, sluice_.port())));
    }
    return conns;
  }

  DemoUpstream upstream_;
  Sluice sluice_;
};

TEST_F(PoolTest, OpenConnectionsNeverExceedMaxConnectionsAcrossWorkers) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 2\n",
                                "max_connections: 3\n"
                                "max_pending: 100\n"
                                "pending_timeout: 20s\n"));
  ASSERT_TRUE(upstream_.reset());
  auto conns = sendConcurrently(20, "/?delay=300");
  int ok = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    auto r = conns[i].readResponse(deadlineIn(seconds(20)));
    ASSERT_TRUE(r) << "request " << i << ": " << conns[i].error();
    EXPECT_EQ(r->status, 200) << "request " << i << ": " << r->body;
    if (r->status == 200) ++ok;
  }
  EXPECT_EQ(ok, 20);
  auto stats = upstream_.stats();
  ASSERT_TRUE(stats);
  EXPECT_EQ(stats->requests, 20);
  EXPECT_LE(stats->max_in_flight, 3);
  EXPECT_GE(stats->max_in_flight, 2) << "the pool did not run requests in parallel";
}

TEST_F(PoolTest, FullQueueAnswers503WithRetryAfter) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 2\n",
                                "max_connections: 1\n"
                                "max_pending: 1\n"
                                "pending_timeout: 20s\n"));
  auto conns = sendConcurrently(4, "/?delay=1000");
  int unavailable = 0;
  int ok = 0;
  for (size_t i = 0; i < conns.size(); ++i) {
    auto r = conns[i].readResponse(deadlineIn(seconds(10)));
    ASSERT_TRUE(r) << "request " << i << ": " << conns[i].error();
    if (r->status == 503) {
      ++unavailable;
      EXPECT_EQ(r->header("Retry-After"), "1");
      EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
    } else {
      EXPECT_EQ(r->status, 200) << "request " << i;
      ++ok;
    }
  }
  EXPECT_GE(unavailable, 1);
  EXPECT_GE(ok, 1);
  EXPECT_LE(ok, 2) << "one connection and one queue place serve at most two";
}

TEST_F(PoolTest, PendingTimeoutAnswers503) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 1\n",
                                "max_connections: 1\n"
                                "max_pending: 10\n"
                                "pending_timeout: 300ms\n"));
  HttpConn busy(sluice_.port());
  ASSERT_TRUE(busy.connected()) << busy.error();
  ASSERT_TRUE(busy.send(requestText("GET", "/?delay=3000", sluice_.port())));
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->in_flight == 1;
      },
      deadlineIn(seconds(5))));
  auto start = Clock::now();
  auto r = httpGet(sluice_.port(), "/", {}, deadlineIn(seconds(5)));
  auto elapsed = since(start);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->header("Retry-After"), "1");
  EXPECT_GE(elapsed, milliseconds(250));
  EXPECT_LT(elapsed, milliseconds(2000)) << "waited for the busy connection instead";
}

TEST_F(PoolTest, DeadTargetAnswers502Quickly) {
  int port = closedPort();
  ASSERT_GT(port, 0);
  ConfigOptions options;
  options.server = "workers: 1\n";
  options.upstream = "connect_timeout: 5s\n";
  ASSERT_TRUE(sluice_.start(minimalConfig(port, options)));
  auto start = Clock::now();
  auto r = httpGet(sluice_.port(), "/", {}, deadlineIn(seconds(10)));
  auto elapsed = since(start);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502);
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  EXPECT_LT(elapsed, milliseconds(1000)) << "a refused connect waited for connect_timeout";
}

TEST_F(PoolTest, HangingUpstreamAnswers504AfterResponseTimeout) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 1\n", "response_timeout: 500ms\n"));
  auto start = Clock::now();
  auto r = httpGet(sluice_.port(), "/__hang", {}, deadlineIn(seconds(10)));
  auto elapsed = since(start);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 504);
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  EXPECT_GE(elapsed, milliseconds(450));
  EXPECT_LT(elapsed, milliseconds(3000));
  // The connection still owes a response: it must not go back to the pool.
  EXPECT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->open_connections == 0;
      },
      deadlineIn(seconds(5))));
}

class MalformedUpstreamTest : public PoolTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(MalformedUpstreamTest, Answers502AndTheNextRequestSucceeds) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 1\n", ""));
  auto bad = httpGet(sluice_.port(), GetParam());
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 502);
  EXPECT_EQ(bad->header("Content-Type"), "application/problem+json");
  auto good = httpGet(sluice_.port(), "/");
  ASSERT_TRUE(good);
  EXPECT_EQ(good->status, 200);
  EXPECT_EQ(good->body, "hello from upstream\n");
}

INSTANTIATE_TEST_SUITE_P(UpstreamResponses, MalformedUpstreamTest,
                         ::testing::Values("/__malformed", "/__cl_conflict"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           return std::string(param.param).substr(3) == "malformed"
                                      ? std::string("ContentLengthAndChunked")
                                      : std::string("TwoContentLengths");
                         });

class TruncatingUpstreamTest : public PoolTest,
                               public ::testing::WithParamInterface<const char*> {};

TEST_P(TruncatingUpstreamTest, ClientConnectionClosesWithoutACompleteBody) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 1\n", ""));
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", GetParam(), sluice_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  if (r) {
    // The head (200, Content-Length 1000) may have been relayed; the body
    // must then end short, never look complete.
    EXPECT_FALSE(r->complete) << "a truncated body was presented as complete";
    EXPECT_LT(r->body.size(), 1000u);
  }
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));
}

INSTANTIATE_TEST_SUITE_P(UpstreamResponses, TruncatingUpstreamTest,
                         ::testing::Values("/__close", "/__reset_conn"),
                         [](const ::testing::TestParamInfo<const char*>& param) {
                           return std::string(param.param) == "/__close" ? std::string("Fin")
                                                                         : std::string("Reset");
                         });

TEST_F(PoolTest, ClientLeavingCancelsItsUpstreamRequest) {
  ASSERT_NO_FATAL_FAILURE(start("workers: 1\n", ""));
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("GET", "/__hang", sluice_.port())));
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->in_flight == 1 && s->open_connections == 1;
      },
      deadlineIn(seconds(5))));
  conn.close();
  EXPECT_TRUE(waitUntil(
      [&] {
        auto s = upstream_.stats();
        return s && s->open_connections == 0 && s->in_flight == 0;
      },
      deadlineIn(seconds(5))))
      << "the upstream connection of a cancelled request stayed open";
}

}  // namespace
}  // namespace sluice::testing
