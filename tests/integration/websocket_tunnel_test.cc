// Tunnels under load and when they end (SPEC §10): volume and memory,
// backpressure from a client that stops reading, an upstream that refuses the
// upgrade, SIGTERM with a tunnel open, resets on either side. The WebSocket
// peer is Debian's python3-websockets (tests/integration/ws_echo_server.py);
// where the test needs to reset or watch the upstream's socket it is an
// upstream of the test's own (LoopbackUpstream) that answers 101 by hand.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"
#include "tests/integration/ws_frames.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr long kMaxPeakKb = 64 * 1024;
constexpr std::size_t kTunnelRead = 16 * 1024;  // tunnel::Tunnel::kBufferBytes

int msLeft(Deadline deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

// `n` bytes that differ from message to message and position to position.
std::string message(std::size_t n, std::size_t index) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 7 + i / 256 + index * 13) & 0xff);
  return s;
}

// Open descriptors of process `pid` (entries of /proc/PID/fd); -1 when gone.
long countFds(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return -1;
  long n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return -1;
    ++n;
  }
  return n;
}

// The kernel's ceiling for one socket's receive buffer (tcp_rmem max).
std::uint64_t tcpRmemMax() {
  std::ifstream in("/proc/sys/net/ipv4/tcp_rmem");
  std::uint64_t min = 0, def = 0, max = 0;
  in >> min >> def >> max;
  return max;
}

// ---- an upstream of the test's own ---------------------------------------------

// Listens on 127.0.0.1:0; the test accepts each connection and then holds
// the raw socket: reads the request, answers by hand, resets or watches it.
class LoopbackUpstream {
 public:
  LoopbackUpstream() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        ::listen(fd_, 16) != 0 || ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "upstream listen: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(a.sin_port);
  }
  ~LoopbackUpstream() {
    if (peer_ >= 0) ::close(peer_);
    if (fd_ >= 0) ::close(fd_);
  }
  LoopbackUpstream(const LoopbackUpstream&) = delete;
  LoopbackUpstream& operator=(const LoopbackUpstream&) = delete;

  int port() const { return port_; }

  // The next request head: on the connection held now, or on a new one
  // (which then replaces it).
  std::optional<std::string> request(Deadline deadline) {
    while (in_.find("\r\n\r\n") == std::string::npos) {
      pollfd p[2] = {{fd_, POLLIN, 0}, {peer_, POLLIN, 0}};
      if (::poll(p, peer_ >= 0 ? 2 : 1, msLeft(deadline)) <= 0) return std::nullopt;
      if (peer_ >= 0 && p[1].revents != 0) {
        if (fill(deadline) <= 0) {
          ::close(peer_);
          peer_ = -1;
          in_.clear();
        }
        continue;
      }
      if (peer_ >= 0) ::close(peer_);
      peer_ = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      in_.clear();
      if (peer_ < 0) return std::nullopt;
    }
    const std::size_t end = in_.find("\r\n\r\n") + 4;
    std::string head = in_.substr(0, end);
    in_.erase(0, end);
    return head;
  }
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(peer_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // The next `n` bytes from the accepted connection.
  std::optional<std::string> readExactly(std::size_t n, Deadline deadline) {
    while (in_.size() < n) {
      if (fill(deadline) <= 0) return std::nullopt;
    }
    std::string out = in_.substr(0, n);
    in_.erase(0, n);
    return out;
  }
  // True once the accepted connection ended (FIN or RST) before the deadline.
  bool closedByPeer(Deadline deadline) {
    for (;;) {
      const int r = fill(deadline);
      if (r == 0 || r == -1) return true;
      if (r == -2) return false;
    }
  }
  // Closes the accepted connection with FIN.
  void closeNow() {
    ::close(peer_);
    peer_ = -1;
  }
  // Closes the accepted connection with RST (SO_LINGER 0).
  void reset() {
    linger lg{1, 0};
    ::setsockopt(peer_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    ::close(peer_);
    peer_ = -1;
  }

 private:
  // > 0 bytes read, 0 EOF, -1 error or reset, -2 deadline.
  int fill(Deadline deadline) {
    pollfd p{peer_, POLLIN, 0};
    if (::poll(&p, 1, msLeft(deadline)) != 1) return -2;
    char buf[65536];
    const ssize_t n = ::recv(peer_, buf, sizeof buf, 0);
    if (n > 0) in_.append(buf, static_cast<std::size_t>(n));
    return n > 0 ? static_cast<int>(n) : (n == 0 ? 0 : -1);
  }

  int fd_ = -1;
  int port_ = 0;
  int peer_ = -1;
  std::string in_;
};

constexpr std::string_view kSwitch =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";

// ---- the fixture -----------------------------------------------------------------

class TunnelTest : public ::testing::Test {
 protected:
  // Starts the python echo server and sluice in front of it.
  ::testing::AssertionResult startWithEcho(ConfigOptions options = {}) {
    const int port = startEchoServer(&echo_);
    if (port == 0) return ::testing::AssertionFailure() << "no echo server";
    return sluice_.start(minimalConfig(port, options));
  }
  // Starts sluice in front of the test's own upstream.
  ::testing::AssertionResult startWithLoopback(ConfigOptions options = {}) {
    return sluice_.start(minimalConfig(loopback_.port(), options));
  }

  // A connection upgraded through sluice (to the echo server); null on failure.
  std::unique_ptr<HttpConn> upgraded() { return upgradedConnection(sluice_.port()); }
  // A connection upgraded through sluice to LoopbackUpstream, which answered 101.
  std::unique_ptr<HttpConn> upgradedToLoopback() {
    auto conn = std::make_unique<HttpConn>(sluice_.port());
    if (!conn->send(upgradeRequest(sluice_.port()))) return nullptr;
    auto head = loopback_.request(deadlineIn(seconds(5)));
    if (!head || !loopback_.send(kSwitch)) {
      ADD_FAILURE() << "the upgrade did not reach the upstream";
      return nullptr;
    }
    auto r = conn->readResponse(deadlineIn(seconds(5)));
    if (!r || r->status != 101) {
      ADD_FAILURE() << "no 101: " << (r ? std::to_string(r->status) : conn->error());
      return nullptr;
    }
    return conn;
  }

  double metric(std::string_view name, const Headers& labels) {
    return scrapeValue(sluice_.adminPort(), name, labels).value_or(-1);
  }
  double tunnelBytes(std::string_view direction) {
    return metric("sluice_tunnel_bytes_total",
                  {{"route", "/"}, {"direction", std::string(direction)}});
  }
  bool tunnelsBackToZero() {
    return waitUntil(
        [&] {
          return metric("sluice_tunnels", {{"route", "/"}}) == 0;
        },
        deadlineIn(seconds(5)));
  }

  std::unique_ptr<ChildProcess> echo_;
  LoopbackUpstream loopback_;
  Sluice sluice_;
};

// ---- volume and memory -------------------------------------------------------------

TEST_F(TunnelTest, SixtyFourMiBEachWayKeepPeakRssUnder64MiB) {
  ASSERT_TRUE(startWithEcho());
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  constexpr std::size_t kMessage = 1 << 20;
  constexpr std::size_t kMessages = 64;
  const auto deadline = deadlineIn(seconds(60));
  for (std::size_t i = 0; i < kMessages; ++i) {
    const std::string payload = message(kMessage, i);
    ASSERT_TRUE(conn->send(clientFrame(payload, 0x2), deadline)) << i << ": " << conn->error();
    auto echoed = serverFrame(*conn, deadline);
    ASSERT_TRUE(echoed) << "message " << i << ": " << conn->error();
    ASSERT_EQ(echoed->size(), kMessage) << "message " << i;
    ASSERT_TRUE(*echoed == payload) << "message " << i << " came back changed";
  }
  EXPECT_GE(tunnelBytes("upstream"), static_cast<double>(kMessages * kMessage));
  EXPECT_GE(tunnelBytes("downstream"), static_cast<double>(kMessages * kMessage));
  auto rss = readRssKb(sluice_.pid());
  ASSERT_TRUE(rss);
  EXPECT_LT(rss->hwm_kb, kMaxPeakKb) << "sluice buffered the tunnel's bytes";
}

// ---- backpressure ------------------------------------------------------------------

// Reads server frames from a raw socket (the echoes of a client that sent
// while not reading).
class FrameReader {
 public:
  explicit FrameReader(int fd) : fd_(fd) {}
  // Reads what is there now (after poll said POLLIN); false at EOF or error.
  bool fill() {
    char buf[65536];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
    if (n > 0) in_.append(buf, static_cast<std::size_t>(n));
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
  }
  // The payload of the next complete frame, if one is buffered.
  std::optional<std::string> next() {
    if (in_.size() < 2) return std::nullopt;
    std::uint64_t n = static_cast<unsigned char>(in_[1]) & 0x7f;
    std::size_t at = 2;
    if (n >= 126) {
      const std::size_t ext = n == 126 ? 2 : 8;
      if (in_.size() < 2 + ext) return std::nullopt;
      n = 0;
      for (std::size_t i = 0; i < ext; ++i) n = (n << 8) | static_cast<unsigned char>(in_[2 + i]);
      at += ext;
    }
    if (in_.size() < at + n) return std::nullopt;
    std::string payload = in_.substr(at, static_cast<std::size_t>(n));
    in_.erase(0, at + static_cast<std::size_t>(n));
    return payload;
  }

 private:
  int fd_;
  std::string in_;
};

// Sends 64 KiB messages without reading until no send is possible for 1 s
// (everything between the client and the echo server is full); the bytes
// sent after the 101, or kGiveUp when the client never had to wait.
struct Flood {
  std::uint64_t sent = 0;
  std::size_t messages = 0;  // begun (the last one may be partly sent)
  std::string pending;       // the rest of the last frame
};
constexpr std::size_t kFloodMessage = 64 * 1024;
constexpr std::uint64_t kGiveUp = 256ull << 20;

Flood floodUntilStalled(int fd) {
  Flood f;
  while (f.sent < kGiveUp) {
    if (f.pending.empty()) f.pending = clientFrame(message(kFloodMessage, f.messages++), 0x2);
    const ssize_t n = ::send(fd, f.pending.data(), f.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      f.sent += static_cast<std::uint64_t>(n);
      f.pending.erase(0, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
      ADD_FAILURE() << "send: " << std::strerror(errno);
      break;
    }
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 1000) == 0) break;  // stalled
  }
  return f;
}

// Sends what is left of the flood and reads every echo; each must come
// back intact and in order.
void readEchoes(int fd, Flood& f, Deadline deadline) {
  FrameReader reader(fd);
  std::size_t echoed = 0;
  while (echoed < f.messages) {
    pollfd p{fd, static_cast<short>(POLLIN | (f.pending.empty() ? 0 : POLLOUT)), 0};
    ASSERT_GT(::poll(&p, 1, msLeft(deadline)), 0)
        << "only " << echoed << " of " << f.messages << " echoes arrived";
    if ((p.revents & POLLOUT) != 0) {
      const ssize_t n = ::send(fd, f.pending.data(), f.pending.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) f.pending.erase(0, static_cast<std::size_t>(n));
    }
    if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      ASSERT_TRUE(reader.fill()) << "closed after " << echoed << " echoes";
    }
    while (auto payload = reader.next()) {
      ASSERT_TRUE(*payload == message(kFloodMessage, echoed)) << "echo " << echoed << " changed";
      ++echoed;
    }
  }
}

TEST_F(TunnelTest, ClientThatStopsReadingIsNotReadWithoutBound) {
  ASSERT_TRUE(startWithEcho());
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  ASSERT_EQ(conn->buffered(), 0u);
  Flood f = floodUntilStalled(conn->fd());
  ASSERT_LT(f.sent, kGiveUp) << "the client never had to wait: sluice kept reading it";
  int unsent = 0;
  ASSERT_EQ(::ioctl(conn->fd(), SIOCOUTQ, &unsent), 0);
  // What left the client's socket and did not reach the upstream is in
  // sluice's receive buffer or in sluice: at most one read in sluice.
  const double taken = static_cast<double>(f.sent - static_cast<std::uint64_t>(unsent));
  const double forwarded = tunnelBytes("upstream");
  EXPECT_LE(taken - forwarded, static_cast<double>(tcpRmemMax() + kTunnelRead))
      << "sent " << f.sent << ", still in the client " << unsent << ", forwarded " << forwarded;
  auto rss = readRssKb(sluice_.pid());
  ASSERT_TRUE(rss);
  EXPECT_LT(rss->hwm_kb, kMaxPeakKb) << "sluice held what it could not write";
  readEchoes(conn->fd(), f, deadlineIn(seconds(30)));
  EXPECT_EQ(metric("sluice_tunnels", {{"route", "/"}}), 1);
}

// ---- an upgrade the upstream refuses -------------------------------------------------

// An Upgrade request that gets an ordinary (non-101) answer leaves an
// ordinary HTTP connection: the client's next request is answered (it used
// to hang, holding SIGTERM's drain for all of shutdown_grace).
TEST_F(TunnelTest, RefusedUpgradeIsAnOrdinaryResponseOnAKeptConnection) {
  ASSERT_TRUE(startWithEcho());
  HttpConn conn(sluice_.port());
  // python3-websockets answers a wrong version with 400, Content-Length and
  // Connection: close (and closes its side): hop-by-hop, for sluice only.
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port(), "/chat", "websocket", "12")));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 400);
  EXPECT_NE(r->body.find("Sec-WebSocket-Version"), std::string::npos) << r->body;
  EXPECT_EQ(metric("sluice_tunnels", {{"route", "/"}}), 0);
  ASSERT_NE(r->header("Connection"), "close") << "sluice's own connection need not close";
  // The same connection carries the next request, here a good upgrade.
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port())));
  auto again = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(again) << conn.error();
  EXPECT_EQ(again->status, 101);
  ASSERT_TRUE(conn.send(clientFrame("after a refusal")));
  EXPECT_EQ(serverFrame(conn, deadlineIn(seconds(5))), "after a refusal");
}

// The same with an upstream that keeps its connection: the next request reaches it as HTTP.
TEST_F(TunnelTest, KeptAliveRefusalLeavesTheConnectionHttp) {
  ASSERT_TRUE(startWithLoopback());
  HttpConn conn(sluice_.port());
  ASSERT_TRUE(conn.send(upgradeRequest(sluice_.port())));
  ASSERT_TRUE(loopback_.request(deadlineIn(seconds(5))));
  ASSERT_TRUE(loopback_.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "no");
  // Bytes the client sends next are a request, not tunnel bytes.
  ASSERT_TRUE(conn.send(requestText("GET", "/next", sluice_.port())));
  auto head = loopback_.request(deadlineIn(seconds(5)));
  ASSERT_TRUE(head) << "the next request did not reach the upstream as a request";
  EXPECT_EQ(head->rfind("GET /next HTTP/1.1\r\n", 0), 0u) << *head;
  ASSERT_TRUE(loopback_.send("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext"));
  auto next = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(next) << conn.error();
  EXPECT_EQ(next->body, "next");
}

// ---- SIGTERM ------------------------------------------------------------------------

TEST_F(TunnelTest, TunnelWorksThroughShutdownGraceThenClosesAndExitZero) {
  ConfigOptions o;
  o.server = "shutdown_grace: 2s\n";
  ASSERT_TRUE(startWithEcho(o));
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  const auto signalled = Clock::now();
  // Frames keep crossing for most of the grace (2 s): the drain leaves the
  // tunnel alone.
  int round_trips = 0;
  while (Clock::now() < signalled + milliseconds(1500)) {
    const std::string text = "during the drain " + std::to_string(round_trips);
    ASSERT_TRUE(conn->send(clientFrame(text))) << "after " << round_trips << ": " << conn->error();
    ASSERT_EQ(serverFrame(*conn, deadlineIn(seconds(2))), text) << "round trip " << round_trips;
    ++round_trips;
  }
  EXPECT_TRUE(conn->isClosedByPeer(signalled + seconds(6))) << "the tunnel outlived the grace";
  EXPECT_EQ(sluice_.process().waitExit(signalled + seconds(6)), 0);
}

TEST_F(TunnelTest, SigtermWithoutTunnelsStillExitsAtOnce) {
  ConfigOptions o;
  o.server = "shutdown_grace: 20s\n";
  ASSERT_TRUE(startWithEcho(o));
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  conn->close();
  ASSERT_TRUE(tunnelsBackToZero());
  ASSERT_TRUE(sluice_.process().signal(SIGTERM));
  EXPECT_EQ(sluice_.process().waitExit(deadlineIn(seconds(5))), 0)
      << "a closed tunnel kept the drain waiting";
}

// ---- resets -------------------------------------------------------------------------

TEST_F(TunnelTest, ClientResetClosesTheUpstreamAndFreesDescriptors) {
  ASSERT_TRUE(startWithLoopback());
  const long baseline = countFds(sluice_.pid());
  ASSERT_GT(baseline, 0);
  auto conn = upgradedToLoopback();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(conn->send("up the tunnel"));
  ASSERT_EQ(loopback_.readExactly(13, deadlineIn(seconds(5))), "up the tunnel");
  EXPECT_EQ(countFds(sluice_.pid()), baseline + 2) << "the client's and the upstream's";
  conn->closeWithReset();
  EXPECT_TRUE(loopback_.closedByPeer(deadlineIn(seconds(5))));
  EXPECT_TRUE(
      waitUntil([&] { return countFds(sluice_.pid()) == baseline; }, deadlineIn(seconds(5))))
      << countFds(sluice_.pid()) << " descriptors open, " << baseline << " before the tunnel";
  EXPECT_TRUE(tunnelsBackToZero());
}

TEST_F(TunnelTest, UpstreamResetClosesTheClientAndFreesDescriptors) {
  ASSERT_TRUE(startWithLoopback());
  const long baseline = countFds(sluice_.pid());
  ASSERT_GT(baseline, 0);
  auto conn = upgradedToLoopback();
  ASSERT_TRUE(conn);
  ASSERT_TRUE(loopback_.send("down the tunnel"));
  ASSERT_EQ(conn->readExactly(15, deadlineIn(seconds(5))), "down the tunnel");
  loopback_.reset();
  EXPECT_TRUE(conn->isClosedByPeer(deadlineIn(seconds(5))));
  EXPECT_TRUE(
      waitUntil([&] { return countFds(sluice_.pid()) == baseline; }, deadlineIn(seconds(5))))
      << countFds(sluice_.pid()) << " descriptors open, " << baseline << " before the tunnel";
  EXPECT_TRUE(tunnelsBackToZero());
  // sluice carries on: the next upgrade gets a tunnel.
  auto next = upgradedToLoopback();
  ASSERT_TRUE(next);
  ASSERT_TRUE(next->send("again"));
  EXPECT_EQ(loopback_.readExactly(5, deadlineIn(seconds(5))), "again");
}

TEST_F(TunnelTest, UpstreamCloseAfterItsLastBytesDeliversThemFirst) {
  ASSERT_TRUE(startWithLoopback());
  auto conn = upgradedToLoopback();
  ASSERT_TRUE(conn);
  const std::string last = message(300 * 1024, 1);
  ASSERT_TRUE(loopback_.send(last));
  loopback_.closeNow();
  auto got = conn->readExactly(last.size(), deadlineIn(seconds(10)));
  ASSERT_TRUE(got) << conn->error();
  EXPECT_TRUE(*got == last);
  EXPECT_TRUE(conn->isClosedByPeer(deadlineIn(seconds(5))));
}

// ---- the pool -------------------------------------------------------------------------

TEST_F(TunnelTest, TunnelDoesNotTakeAPoolConnection) {
  ConfigOptions o;
  o.upstream = "max_connections: 1\n";
  ASSERT_TRUE(startWithEcho(o));
  auto conn = upgraded();
  ASSERT_TRUE(conn);
  // The echo server answers a plain request with 426: an ordinary answer,
  // not the pool's 503.
  auto r = httpGet(sluice_.port(), "/plain", {}, deadlineIn(seconds(5)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 426) << "the tunnel's connection still counted in max_connections";
  ASSERT_TRUE(conn->send(clientFrame("still open")));
  EXPECT_EQ(serverFrame(*conn, deadlineIn(seconds(5))), "still open");
}

}  // namespace
}  // namespace sluice::testing
