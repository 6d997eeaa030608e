// Upgrade and WebSocket tunnels (SPEC §10) through the real binary in front
// of a real WebSocket server (Debian's python3-websockets, run by
// /usr/bin/python3; tests/integration/ws_echo_server.py echoes every
// message). The client side speaks RFC 6455 framing by hand.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"
#include "tests/integration/ws_frames.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;
using ::testing::HasSubstr;

class WebSocketTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ws_port_ = startEchoServer(&server_);
    ASSERT_NE(ws_port_, 0);
  }

  ::testing::AssertionResult start(ConfigOptions options = {}) {
    return sluice_.start(minimalConfig(ws_port_, options));
  }

  // Opens a connection and upgrades it; the 101 must arrive.
  std::unique_ptr<HttpConn> upgraded() { return upgradedConnection(sluice_.port()); }

  double metric(std::string_view name, const Headers& labels) {
    return scrapeValue(sluice_.adminPort(), name, labels).value_or(-1);
  }

  std::unique_ptr<ChildProcess> server_;
  int ws_port_ = 0;
  Sluice sluice_;
};

TEST_F(WebSocketTest, HandshakeIsRelayedAndFramesGoBothWays) {
  ASSERT_TRUE(start());
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 101);
  EXPECT_TRUE(::testing::Value(r->header("Upgrade"), ::testing::StrCaseEq("websocket")));
  // RFC 6455 §1.3's example key gives this accept value: the upstream's answer arrived.
  EXPECT_EQ(r->header("Sec-WebSocket-Accept"), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  EXPECT_FALSE(r->header("X-Request-Id").empty());
  ASSERT_TRUE(conn.send(clientFrame("hello through sluice")));
  EXPECT_EQ(serverFrame(conn, deadlineIn(seconds(5))), "hello through sluice");
  const std::string big(200 * 1024, 'x');  // more than one tunnel buffer each way
  ASSERT_TRUE(conn.send(clientFrame(big, 0x2)));
  auto echoed = serverFrame(conn, deadlineIn(seconds(10)));
  ASSERT_TRUE(echoed);
  EXPECT_EQ(echoed->size(), big.size());
  EXPECT_EQ(*echoed, big);
}

TEST_F(WebSocketTest, UpgradeRequestIsLimitedLikeAnyRequest) {
  ConfigOptions o;
  o.route = "limits: [tight]\n";
  o.top = "limits:\n  tight: {per: ip, rate: 1/m, burst: 1}\n";
  ASSERT_TRUE(start(o));
  auto first = upgraded();
  ASSERT_TRUE(first);
  HttpConn second(sluice_.port());
  ASSERT_TRUE(second.send(upgradeRequest(sluice_.port())));
  auto r = second.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << second.error();
  EXPECT_EQ(r->status, 429) << "denied before any tunnel";
  EXPECT_FALSE(r->header("Retry-After").empty());
}

TEST_F(WebSocketTest, RouteWithoutUpgradesForwardsAPlainRequest) {
  ConfigOptions o;
  o.route = "upgrades: []\n";
  ASSERT_TRUE(start(o));
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port())));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_NE(r->status, 101) << "the Upgrade field was dropped, so the server did not switch";
  EXPECT_EQ(metric("sluice_tunnels", {{"route", "/"}}), 0);
}

TEST_F(WebSocketTest, UnlistedProtocolIsNotTunnelled) {
  ASSERT_TRUE(start());
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port(), "/chat", "h2c")));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_NE(r->status, 101);
}

TEST_F(WebSocketTest, IdleTunnelIsClosedAfterTunnelIdleTimeout) {
  ConfigOptions o;
  o.server = "tunnel_idle_timeout: 1s\n";
  ASSERT_TRUE(start(o));
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send(clientFrame("still here")));
  EXPECT_EQ(serverFrame(*conn, deadlineIn(seconds(5))), "still here");
  EXPECT_TRUE(conn->isClosedByPeer(deadlineIn(seconds(4))));
  EXPECT_TRUE(waitUntil(
      [&] {
        return metric("sluice_tunnels", {{"route", "/"}}) == 0;
      },
      deadlineIn(seconds(3))));
}

TEST_F(WebSocketTest, BusyTunnelOutlivesTheIdleTimeout) {
  ConfigOptions o;
  o.server = "tunnel_idle_timeout: 1s\n";
  ASSERT_TRUE(start(o));
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  // Round trips for twice the idle timeout (bounded): bytes keep moving, so
  // the idle timer keeps being pushed back.
  const auto until = std::chrono::steady_clock::now() + seconds(2);
  int trips = 0;
  while (std::chrono::steady_clock::now() < until && trips < 100000) {
    ASSERT_TRUE(conn->send(clientFrame("tick"))) << "round trip " << trips;
    ASSERT_EQ(serverFrame(*conn, deadlineIn(seconds(2))), "tick") << "round trip " << trips;
    ++trips;
  }
  EXPECT_EQ(metric("sluice_tunnels", {{"route", "/"}}), 1);
  EXPECT_TRUE(conn->isClosedByPeer(deadlineIn(seconds(4)))) << "then idle: closed";
}

TEST_F(WebSocketTest, TunnelsAreCountedWhileOpenWithTheirBytes) {
  ASSERT_TRUE(start());
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send(clientFrame(std::string(1000, 'a'))));
  ASSERT_TRUE(serverFrame(*conn, deadlineIn(seconds(5))));
  EXPECT_EQ(metric("sluice_tunnels", {{"route", "/"}}), 1);
  EXPECT_GE(metric("sluice_tunnel_bytes_total", {{"route", "/"}, {"direction", "upstream"}}), 1000);
  EXPECT_GE(metric("sluice_tunnel_bytes_total", {{"route", "/"}, {"direction", "downstream"}}),
            1000);
  conn->closeWithReset();
  EXPECT_TRUE(waitUntil(
      [&] {
        return metric("sluice_tunnels", {{"route", "/"}}) == 0;
      },
      deadlineIn(seconds(5))))
      << "a client reset ends the tunnel";
}

}  // namespace
}  // namespace sluice::testing
