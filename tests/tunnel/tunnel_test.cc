// The tunnel (SPEC §10) between two fake transports: scripted reads, writes
// that take up to a budget and then say kAgain, and a fake owner. No socket,
// no event loop: the test calls the readiness callbacks itself.

#include "proxy/tunnel/tunnel.h"

#include <errno.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include "proxy/event/clock.h"
#include "proxy/metrics/metrics.h"
#include "proxy/transport/transport.h"

namespace sluice::tunnel {
namespace {

using event::kNanosPerSecond;
using event::Nanos;
using transport::IoResult;
using transport::Outbox;

constexpr std::size_t kUnlimited = std::numeric_limits<std::size_t>::max();
constexpr Nanos kIdle = 10 * kNanosPerSecond;

// The peer's end of one fake connection; outlives the transport (the tunnel
// owns and destroys the upstream one).
struct Wire {
  std::string to_read;                    // bytes the peer sent that the tunnel has not read
  bool eof = false;                       // after them the peer closed
  int read_errno = 0;                     // nonzero: a read with nothing left fails with this
  std::string written;                    // every byte the tunnel wrote to this peer
  std::size_t write_budget = kUnlimited;  // bytes the peer takes before kAgain
  bool write_fails = false;
  int reads = 0;         // read() calls that returned bytes
  bool reading = false;  // wantRead state
  int write_wanted = 0;
  bool quiet = false;
  int closes = 0;
  bool destroyed = false;
};

class FakeTransport final : public transport::Transport {
 public:
  explicit FakeTransport(Wire& wire) : wire_(wire) {}
  ~FakeTransport() override { wire_.destroyed = true; }

  ssize_t read(char* buf, std::size_t len) noexcept override {
    if (wire_.to_read.empty()) {
      if (wire_.read_errno != 0) {
        errno = wire_.read_errno;
        return -1;
      }
      if (wire_.eof) return 0;
      errno = EAGAIN;
      return -1;
    }
    const std::size_t n = std::min(len, wire_.to_read.size());
    std::memcpy(buf, wire_.to_read.data(), n);
    wire_.to_read.erase(0, n);
    ++wire_.reads;
    return static_cast<ssize_t>(n);
  }
  IoResult write(Outbox& out) noexcept override {
    if (wire_.write_fails) return IoResult::kError;
    std::size_t taken = 0;
    for (int i = 0; i < out.count && wire_.write_budget > 0; ++i) {
      const iovec& v = out.iov[static_cast<std::size_t>(i)];
      const std::size_t n = std::min(v.iov_len, wire_.write_budget);
      wire_.written.append(static_cast<const char*>(v.iov_base), n);
      if (wire_.write_budget != kUnlimited) wire_.write_budget -= n;
      taken += n;
      if (n < v.iov_len) break;
    }
    out.consume(taken);
    return out.empty() ? IoResult::kDone : IoResult::kAgain;
  }
  void wantRead(bool on) noexcept override { wire_.reading = on; }
  void wantWrite() noexcept override { ++wire_.write_wanted; }
  void cancelWrite() noexcept override {}
  void quiet() noexcept override {
    wire_.quiet = true;
    wire_.reading = false;
  }
  void close() noexcept override {
    ++wire_.closes;
    wire_.reading = false;
  }
  int connectError() noexcept override { return 0; }
  void setUser(transport::TransportUser* user) noexcept override { user_ = user; }
  transport::TransportUser* user() const { return user_; }

 private:
  Wire& wire_;
  transport::TransportUser* user_ = nullptr;
};

struct FakeOwner final : TunnelOwner {
  void tunnelEnded() noexcept override { ++ended; }
  int ended = 0;
};

// `n` bytes that differ from one position to the next (a shifted or lost
// slice does not compare equal).
std::string pattern(std::size_t n, unsigned seed = 0) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + i / 251 + seed) & 0xff);
  return s;
}

class TunnelTest : public ::testing::Test {
 protected:
  TunnelTest() : client_(client_wire_), stats_("/ws/") {
    auto upstream = std::make_unique<FakeTransport>(upstream_wire_);
    upstream_ = upstream.get();
    tunnel_ = std::make_unique<Tunnel>(client_, std::move(upstream), owner_, &stats_, kIdle);
  }

  // The client's connection became readable / writable.
  void clientReady(bool readable, bool writable, Nanos now = 0) {
    tunnel_->onClientReady(readable, writable, now);
  }
  void upstreamReady(bool readable, bool writable) {
    tunnel_->onTransportReady(readable, writable);
  }

  Wire client_wire_;
  Wire upstream_wire_;
  FakeTransport client_;
  FakeTransport* upstream_ = nullptr;  // owned by the tunnel
  FakeOwner owner_;
  metrics::TunnelStats stats_;
  std::unique_ptr<Tunnel> tunnel_;
};

constexpr std::string_view kSwitch =
    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";

TEST_F(TunnelTest, TakesOverTheUpstreamTransport) {
  EXPECT_EQ(upstream_->user(), tunnel_.get()) << "the upstream's readiness reaches the tunnel";
  tunnel_.reset();
  EXPECT_TRUE(upstream_wire_.destroyed);
  EXPECT_FALSE(client_wire_.destroyed) << "the client transport stays the session's";
}

TEST_F(TunnelTest, StartWritesTheBytesAlreadyReadBothWays) {
  const std::string to_client = std::string(kSwitch) + "\x81\x05hello";
  const std::string to_upstream = "\x81\x85" + pattern(9);
  tunnel_->start(to_client, to_upstream, 0);
  EXPECT_EQ(client_wire_.written, to_client);
  EXPECT_EQ(upstream_wire_.written, to_upstream);
  EXPECT_TRUE(client_wire_.reading);
  EXPECT_TRUE(upstream_wire_.reading);
  EXPECT_EQ(owner_.ended, 0);
}

TEST_F(TunnelTest, StartKeepsItsOwnCopyOfBytesTheSinkCannotTakeYet) {
  client_wire_.write_budget = 10;
  std::string to_client = std::string(kSwitch) + "after";
  tunnel_->start(to_client, {}, 0);
  const std::string expected = to_client;
  std::fill(to_client.begin(), to_client.end(), '#');  // the caller's buffer is reused
  EXPECT_EQ(client_wire_.written, expected.substr(0, 10));
  EXPECT_FALSE(upstream_wire_.reading) << "nothing read from the upstream while the 101 waits";
  client_wire_.write_budget = kUnlimited;
  clientReady(false, true);
  EXPECT_EQ(client_wire_.written, expected);
  EXPECT_TRUE(upstream_wire_.reading);
}

TEST_F(TunnelTest, BytesCrossByteExactInBothDirections) {
  tunnel_->start(kSwitch, {}, 0);
  const std::string up = pattern(5 * Tunnel::kBufferBytes + 123, 1);
  const std::string down = pattern(3 * Tunnel::kBufferBytes + 7, 2);
  client_wire_.to_read = up;
  clientReady(true, false);
  upstream_wire_.to_read = down;
  upstreamReady(true, false);
  EXPECT_EQ(upstream_wire_.written, up);
  EXPECT_EQ(client_wire_.written, std::string(kSwitch) + down);
  EXPECT_EQ(tunnel_->bytesToUpstream(), up.size());
  EXPECT_EQ(tunnel_->bytesToClient(), kSwitch.size() + down.size());
  EXPECT_EQ(owner_.ended, 0);
}

TEST_F(TunnelTest, StatsCountTheBytesEachWay) {
  tunnel_->start(kSwitch, "early", 0);
  client_wire_.to_read = pattern(40000);
  clientReady(true, false);
  upstream_wire_.to_read = pattern(70000);
  upstreamReady(true, false);
  EXPECT_EQ(stats_.bytes_upstream.load(), 5u + 40000u);
  EXPECT_EQ(stats_.bytes_downstream.load(), kSwitch.size() + 70000u);
}

TEST_F(TunnelTest, BytesNotWrittenYetAreNotCounted) {
  tunnel_->start({}, {}, 0);
  upstream_wire_.write_budget = 1000;
  client_wire_.to_read = pattern(5000);
  clientReady(true, false);
  EXPECT_EQ(stats_.bytes_upstream.load(), 1000u);
  EXPECT_EQ(tunnel_->bytesToUpstream(), 1000u);
}

// ---- backpressure ------------------------------------------------------------

TEST_F(TunnelTest, FullUpstreamStopsReadingTheClientUntilItDrains) {
  tunnel_->start({}, {}, 0);
  const std::string up = pattern(10 * Tunnel::kBufferBytes, 3);
  client_wire_.to_read = up;
  upstream_wire_.write_budget = 1000;
  clientReady(true, false);
  EXPECT_EQ(client_wire_.reads, 1) << "one read, then the client waits for the upstream";
  EXPECT_FALSE(client_wire_.reading);
  EXPECT_GE(upstream_wire_.write_wanted, 1) << "told when the upstream can take more";
  const std::size_t taken = up.size() - client_wire_.to_read.size();
  EXPECT_LE(taken - upstream_wire_.written.size(), Tunnel::kBufferBytes)
      << "at most one read's worth held";
  // The client stays readable (level-triggered events, a late callback):
  // still nothing more is read.
  clientReady(true, false);
  clientReady(true, true);
  EXPECT_EQ(client_wire_.reads, 1);
  upstream_wire_.write_budget = kUnlimited;
  upstreamReady(false, true);
  EXPECT_EQ(upstream_wire_.written, up);
  EXPECT_TRUE(client_wire_.reading) << "reading resumes once the upstream drained";
}

TEST_F(TunnelTest, SlowClientStopsReadingTheUpstreamUntilItDrains) {
  tunnel_->start({}, {}, 0);
  const std::string down = pattern(6 * Tunnel::kBufferBytes + 11, 4);
  upstream_wire_.to_read = down;
  client_wire_.write_budget = 0;
  upstreamReady(true, false);
  EXPECT_EQ(upstream_wire_.reads, 1);
  EXPECT_FALSE(upstream_wire_.reading);
  EXPECT_GE(client_wire_.write_wanted, 1);
  upstreamReady(true, false);
  EXPECT_EQ(upstream_wire_.reads, 1) << "nothing read while the client cannot take it";
  // The client drains a little at a time; every step forwards only what fits
  // and the upstream is read again only once the held bytes are gone.
  while (client_wire_.written.size() < down.size()) {
    const std::size_t held =
        down.size() - upstream_wire_.to_read.size() - client_wire_.written.size();
    ASSERT_LE(held, Tunnel::kBufferBytes);
    const int reads_before = upstream_wire_.reads;
    client_wire_.write_budget = 5000;
    clientReady(false, true);
    if (held > 5000) {
      EXPECT_EQ(upstream_wire_.reads, reads_before);
    }
    ASSERT_EQ(owner_.ended, 0);
  }
  EXPECT_EQ(client_wire_.written, down);
}

TEST_F(TunnelTest, OneStalledDirectionDoesNotStopTheOther) {
  tunnel_->start({}, {}, 0);
  upstream_wire_.write_budget = 0;
  client_wire_.to_read = pattern(50000, 5);
  clientReady(true, false);
  ASSERT_FALSE(client_wire_.reading);
  const std::string down = pattern(50000, 6);
  upstream_wire_.to_read = down;
  upstreamReady(true, false);
  EXPECT_EQ(client_wire_.written, down);
}

TEST_F(TunnelTest, HeldBytesSurviveAnotherTunnelReadingOnTheSameThread) {
  tunnel_->start({}, {}, 0);
  const std::string mine = pattern(Tunnel::kBufferBytes, 9);
  client_wire_.to_read = mine;
  upstream_wire_.write_budget = 10;
  clientReady(true, false);
  // A second tunnel on this thread reads through the same per-thread buffer.
  Wire other_client_wire;
  Wire other_upstream_wire;
  FakeTransport other_client(other_client_wire);
  FakeOwner other_owner;
  Tunnel other(other_client, std::make_unique<FakeTransport>(other_upstream_wire), other_owner,
               nullptr, kIdle);
  other.start({}, {}, 0);
  other_client_wire.to_read = pattern(3 * Tunnel::kBufferBytes, 10);
  other.onClientReady(true, false, 0);
  ASSERT_EQ(other_upstream_wire.written, pattern(3 * Tunnel::kBufferBytes, 10));
  upstream_wire_.write_budget = kUnlimited;
  upstreamReady(false, true);
  EXPECT_EQ(upstream_wire_.written, mine);
}

// ---- the end -------------------------------------------------------------------

TEST_F(TunnelTest, ClientEofEndsTheTunnelOnce) {
  tunnel_->start({}, {}, 0);
  client_wire_.to_read = "last words";
  client_wire_.eof = true;
  clientReady(true, false);
  EXPECT_EQ(upstream_wire_.written, "last words") << "what was read is written before the end";
  EXPECT_FALSE(tunnel_->ended()) << "a short read waits for the next event (no EAGAIN read)";
  clientReady(true, false);  // the socket reports the end as readable
  EXPECT_TRUE(tunnel_->ended());
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_EQ(upstream_wire_.closes, 1);
  EXPECT_TRUE(client_wire_.quiet) << "the session closes it; no more events meanwhile";
  clientReady(true, true);
  upstreamReady(true, true);
  tunnel_->checkTimeout(100 * kIdle);
  EXPECT_EQ(owner_.ended, 1);
}

TEST_F(TunnelTest, UpstreamEofEndsTheTunnelOnce) {
  tunnel_->start({}, {}, 0);
  upstream_wire_.to_read = pattern(20000, 7);
  upstream_wire_.eof = true;
  upstreamReady(true, false);
  EXPECT_EQ(client_wire_.written, pattern(20000, 7));
  upstreamReady(true, false);  // the socket reports the end as readable
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_TRUE(client_wire_.quiet);
  EXPECT_EQ(upstream_wire_.closes, 1);
  client_wire_.to_read = "too late";
  clientReady(true, true);
  upstreamReady(true, true);
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_EQ(upstream_wire_.written, "") << "nothing crosses an ended tunnel";
}

TEST_F(TunnelTest, UpstreamEofWaitsForTheHeldBytesToReachTheClient) {
  tunnel_->start({}, {}, 0);
  upstream_wire_.to_read = pattern(3000, 8);
  upstream_wire_.eof = true;
  client_wire_.write_budget = 100;
  upstreamReady(true, false);
  EXPECT_EQ(owner_.ended, 0) << "the end is not seen before the held bytes are written";
  client_wire_.write_budget = kUnlimited;
  clientReady(false, true);
  EXPECT_EQ(client_wire_.written, pattern(3000, 8));
  EXPECT_EQ(owner_.ended, 1);
}

TEST_F(TunnelTest, EofDuringStartEndsTheTunnelOnce) {
  upstream_wire_.eof = true;
  tunnel_->start(kSwitch, {}, 0);
  EXPECT_EQ(client_wire_.written, kSwitch);
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_TRUE(tunnel_->ended());
}

TEST_F(TunnelTest, ReadErrorEndsTheTunnel) {
  tunnel_->start({}, {}, 0);
  client_wire_.read_errno = ECONNRESET;
  clientReady(true, false);
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_EQ(upstream_wire_.closes, 1);
}

TEST_F(TunnelTest, InterruptedReadDoesNotEndTheTunnel) {
  tunnel_->start({}, {}, 0);
  client_wire_.read_errno = EINTR;
  clientReady(true, false);
  EXPECT_EQ(owner_.ended, 0);
}

TEST_F(TunnelTest, WriteErrorEndsTheTunnelOnce) {
  tunnel_->start({}, {}, 0);
  upstream_wire_.write_fails = true;
  client_wire_.to_read = pattern(100);
  clientReady(true, false);
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_TRUE(client_wire_.quiet);
  EXPECT_EQ(upstream_wire_.closes, 1);
  clientReady(true, true);
  EXPECT_EQ(owner_.ended, 1);
}

TEST_F(TunnelTest, WriteErrorTowardsTheClientEndsTheTunnel) {
  tunnel_->start({}, {}, 0);
  client_wire_.write_fails = true;
  upstream_wire_.to_read = pattern(100);
  upstreamReady(true, false);
  EXPECT_EQ(owner_.ended, 1);
}

// ---- idle timeout ----------------------------------------------------------------

TEST_F(TunnelTest, IdleTimeoutCountsFromStart) {
  tunnel_->start(kSwitch, {}, kNanosPerSecond);
  tunnel_->checkTimeout(kNanosPerSecond + kIdle - 1);
  EXPECT_EQ(owner_.ended, 0);
  tunnel_->checkTimeout(kNanosPerSecond + kIdle);
  EXPECT_EQ(owner_.ended, 1);
  EXPECT_EQ(upstream_wire_.closes, 1);
  tunnel_->checkTimeout(kNanosPerSecond + 2 * kIdle);
  EXPECT_EQ(owner_.ended, 1);
}

TEST_F(TunnelTest, BytesEitherWayPostponeTheIdleTimeout) {
  tunnel_->start({}, {}, 0);
  client_wire_.to_read = "ping";
  clientReady(true, false, 6 * kNanosPerSecond);
  tunnel_->checkTimeout(15 * kNanosPerSecond);
  EXPECT_EQ(owner_.ended, 0) << "bytes moved at 6 s";
  upstream_wire_.to_read = "pong";
  tunnel_->checkTimeout(14 * kNanosPerSecond);  // the session tells the time
  upstreamReady(true, false);
  tunnel_->checkTimeout(14 * kNanosPerSecond + kIdle - 1);
  EXPECT_EQ(owner_.ended, 0) << "bytes moved downstream at 14 s";
  tunnel_->checkTimeout(14 * kNanosPerSecond + kIdle);
  EXPECT_EQ(owner_.ended, 1);
}

TEST_F(TunnelTest, ReadinessWithoutBytesIsIdle) {
  tunnel_->start({}, {}, 0);
  clientReady(true, true, 5 * kNanosPerSecond);
  upstreamReady(true, true);
  tunnel_->checkTimeout(kIdle);
  EXPECT_EQ(owner_.ended, 1) << "events that moved nothing do not keep the tunnel open";
}

}  // namespace
}  // namespace sluice::tunnel
