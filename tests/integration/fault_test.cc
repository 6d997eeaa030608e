// Network faults and abusive connection patterns against the real binary
// (Hardening): an upstream whose SYNs vanish, a client that leaves in the
// middle of an upload, slowloris heads, and a flood of idle connections past
// server.max_connections. Refused, hanging, malformed and truncating upstreams,
// and a client leaving while the upstream thinks, are in pool_test.cc.

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start);
}

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Open descriptors of process `pid` (entries of /proc/PID/fd); nullopt when gone.
std::optional<long> countFds(pid_t pid) {
  std::error_code ec;
  std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec);
  if (ec) return std::nullopt;
  long n = 0;
  for (; it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (ec) return std::nullopt;
    ++n;
  }
  return n;
}

// Raises this process's soft RLIMIT_NOFILE to at least `need` (children
// started afterwards inherit it). Empty on success, else why not.
std::string raiseFdLimit(rlim_t need) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return std::string("getrlimit: ") + std::strerror(errno);
  if (rl.rlim_cur >= need) return {};
  if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
    return "RLIMIT_NOFILE hard limit is " + std::to_string(rl.rlim_max) + ", the test needs " +
           std::to_string(need);
  }
  rl.rlim_cur = need;
  if (setrlimit(RLIMIT_NOFILE, &rl) != 0) return std::string("setrlimit: ") + std::strerror(errno);
  return {};
}

// An executable named `name` on $PATH or in the sbin directories; "" if none.
std::string findTool(std::string_view name) {
  std::string path = std::getenv("PATH") != nullptr ? std::getenv("PATH") : "";
  path += ":/usr/local/sbin:/usr/sbin:/sbin";
  std::istringstream dirs(path);
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + std::string(name);
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

// A TCP connection to 127.0.0.1:port, started without waiting for it to
// complete; -1 when even that failed.
int startConnect(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<std::uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0 &&
      errno != EINPROGRESS) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Latency of one GET / on a fresh connection; nullopt unless it answered 200.
std::optional<double> freshRequestMs(int port) {
  auto start = Clock::now();
  auto r = httpGet(port, "/", {}, deadlineIn(seconds(10)));
  if (!r || r->status != 200 || !r->complete) return std::nullopt;
  return msSince(start);
}

// Median of `n` fresh requests in a row; nullopt when one of them failed.
std::optional<double> medianFreshRequestMs(int port, int n) {
  std::vector<double> samples;
  for (int i = 0; i < n; ++i) {
    auto ms = freshRequestMs(port);
    if (!ms) return std::nullopt;
    samples.push_back(*ms);
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

// ---- 1. An upstream whose SYNs vanish ---------------------------------------------------

constexpr int kBlackholePort = 9;  // inside the test's own network namespace

struct NetnsOutcome {
  std::string skip;  // non-empty: the namespace or the firewall rule could not be set up
  std::optional<Response> dark;
  milliseconds dark_elapsed{0};
  std::optional<Response> live;
  bool dark_pending_after_live = false;  // no answer on the dark request yet
  std::optional<double> connect_errors;
};

// Brings the loopback interface of the calling thread's network namespace up.
std::string loopbackUp() {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  std::string error;
  if (ioctl(fd, SIOCGIFFLAGS, &ifr) != 0) {
    error = std::string("SIOCGIFFLAGS lo: ") + std::strerror(errno);
  } else {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
    if (ioctl(fd, SIOCSIFFLAGS, &ifr) != 0) {
      error = std::string("SIOCSIFFLAGS lo: ") + std::strerror(errno);
    }
  }
  ::close(fd);
  return error;
}

// Runs on a thread of its own: that thread (only) moves into a fresh network
// namespace, so the firewall rule, sluice, the demo upstream and the client
// sockets all live there, and the namespace vanishes with them. Children are
// started from this thread, as the harness requires.
void blackholeScenario(const std::string& iptables, NetnsOutcome* out) {
  if (unshare(CLONE_NEWNET) != 0) {
    out->skip = std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno);
    return;
  }
  if (std::string e = loopbackUp(); !e.empty()) {
    out->skip = e;
    return;
  }
  {
    ChildProcess rule(iptables, {"-w", "-A", "OUTPUT", "-p", "tcp", "--dport",
                                 std::to_string(kBlackholePort), "-j", "DROP"});
    auto code = rule.started() ? rule.waitExit(deadlineIn(seconds(10))) : std::nullopt;
    if (code != 0) {
      out->skip = "iptables -A OUTPUT ... -j DROP failed (exit " +
                  (code ? std::to_string(*code) : std::string("none")) + "): " + rule.error() +
                  rule.stderrText();
      return;
    }
  }
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  std::string yaml =
      "server:\n"
      "  listen: 127.0.0.1:0\n"
      "  admin_listen: 127.0.0.1:0\n"
      "  workers: 1\n"
      "upstreams:\n"
      "  dark:\n"
      "    targets: [127.0.0.1:" +
      std::to_string(kBlackholePort) +
      "]\n"
      "    connect_timeout: 500ms\n"
      "  demo:\n"
      "    targets: [127.0.0.1:" +
      std::to_string(upstream.port()) +
      "]\n"
      "routes:\n"
      "  - path_prefix: /live/\n"
      "    upstream: demo\n"
      "  - path_prefix: /\n"
      "    upstream: dark\n";
  Sluice sluice;
  ASSERT_TRUE(sluice.start(yaml));

  // The request to the dark target waits for its connect; meanwhile the same
  // (single) worker must go on serving everyone else.
  HttpConn dark(sluice.port());
  ASSERT_TRUE(dark.connected()) << dark.error();
  auto start = Clock::now();
  ASSERT_TRUE(dark.send(requestText("GET", "/", sluice.port())));
  out->live = httpGet(sluice.port(), "/live/", {}, deadlineIn(seconds(10)));
  pollfd pending{dark.fd(), POLLIN, 0};
  out->dark_pending_after_live = poll(&pending, 1, 0) == 0;
  out->dark = dark.readResponse(deadlineIn(seconds(10)));
  out->dark_elapsed = since(start);
  out->connect_errors = scrapeValue(sluice.adminPort(), "sluice_upstream_errors_total",
                                    {{"upstream", "dark"}, {"kind", "connect"}});
}

TEST(BlackholeTest, DroppedSynsAnswer502AtConnectTimeoutInANetworkNamespace) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root for unshare -n and iptables";
  std::string iptables = findTool("iptables");
  if (iptables.empty()) {
    GTEST_SKIP() << "iptables is not installed (Debian package `iptables`)";
  }
  NetnsOutcome out;
  std::thread scenario([&] { blackholeScenario(iptables, &out); });
  scenario.join();
  if (!out.skip.empty()) GTEST_SKIP() << "cannot blackhole a port: " << out.skip;
  if (HasFatalFailure()) return;

  ASSERT_TRUE(out.live) << "the live route did not answer while a connect was pending";
  EXPECT_EQ(out.live->status, 200);
  EXPECT_TRUE(out.dark_pending_after_live)
      << "the live route was answered only after the pending connect had ended";

  ASSERT_TRUE(out.dark) << "no answer for the blackholed target";
  std::cout << "[ blackhole ] " << out.dark->status << " after " << out.dark_elapsed.count()
            << " ms\n";
  EXPECT_EQ(out.dark->status, 502) << out.dark->body;
  EXPECT_EQ(out.dark->header("Content-Type"), "application/problem+json");
  EXPECT_GE(out.dark_elapsed, milliseconds(450)) << "answered before connect_timeout";
  EXPECT_LT(out.dark_elapsed, milliseconds(3000)) << "connect_timeout: 500ms was not enforced";
  EXPECT_THAT(out.connect_errors, ::testing::Optional(::testing::Ge(1.0)));
}

// The same fault without root: a listener whose accept queue is full drops
// further SYNs (Linux), so a connect to it neither completes nor fails.
TEST(BlackholeTest, UnansweredSynsAnswer502AtConnectTimeout) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(listener, reinterpret_cast<const sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(listen(listener, 0), 0);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&a), &len), 0);
  int port = ntohs(a.sin_port);
  HttpConn filler(port);  // fills the one-entry accept queue; never accepted
  ASSERT_TRUE(filler.connected()) << filler.error();
  {
    // Proof that the queue is full: a second connect stays pending.
    int probe = startConnect(port);
    ASSERT_GE(probe, 0);
    pollfd p{probe, POLLOUT, 0};
    int ready = poll(&p, 1, 300);
    ::close(probe);
    if (ready != 0) {
      ::close(listener);
      GTEST_SKIP() << "this kernel completes connects to a full accept queue";
    }
  }

  ConfigOptions options;
  options.server = "workers: 1\n";
  options.upstream = "connect_timeout: 500ms\n";
  Sluice sluice;
  ASSERT_TRUE(sluice.start(minimalConfig(port, options)));
  auto start = Clock::now();
  auto r = httpGet(sluice.port(), "/", {}, deadlineIn(seconds(10)));
  auto elapsed = since(start);
  ::close(listener);
  ASSERT_TRUE(r);
  std::cout << "[ blackhole ] " << r->status << " after " << elapsed.count() << " ms\n";
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_EQ(r->header("Content-Type"), "application/problem+json");
  EXPECT_GE(elapsed, milliseconds(450)) << "answered before connect_timeout";
  EXPECT_LT(elapsed, milliseconds(3000)) << "connect_timeout: 500ms was not enforced";
  EXPECT_THAT(scrapeValue(sluice.adminPort(), "sluice_upstream_errors_total",
                          {{"upstream", "demo"}, {"kind", "connect"}}),
              ::testing::Optional(::testing::Ge(1.0)));
}

// ---- 2. A client that leaves in the middle of an upload -------------------------------

class AbandonedUploadTest : public ::testing::TestWithParam<bool> {};  // true: RST, false: FIN

TEST_P(AbandonedUploadTest, UpstreamRequestIsAbortedAndDescriptorsAreReleased) {
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  ConfigOptions options;
  options.server =
      "workers: 1\n"
      "max_body_bytes: 200MiB\n";
  Sluice sluice;
  ASSERT_TRUE(sluice.start(minimalConfig(upstream.port(), options)));

  // Warm up so lazily opened descriptors (the pooled upstream connection)
  // are part of the baseline.
  auto warm = httpGet(sluice.port(), "/");
  ASSERT_TRUE(warm);
  ASSERT_EQ(warm->status, 200);
  auto base_stats = upstream.stats();
  ASSERT_TRUE(base_stats);
  auto base_fds = countFds(sluice.pid());
  ASSERT_TRUE(base_fds);

  constexpr std::uint64_t kDeclared = 100ull << 20;  // 100 MiB announced
  constexpr size_t kSent = 1 << 20;                  // 1 MiB sent
  HttpConn conn(sluice.port());
  ASSERT_TRUE(conn.connected()) << conn.error();
  ASSERT_TRUE(conn.send(requestText("POST", "/upload", sluice.port(),
                                    {{"Content-Length", std::to_string(kDeclared)}})));
  ASSERT_TRUE(conn.send(std::string(kSent, 'u'), deadlineIn(seconds(10))))
      << "sluice stopped reading the body: " << conn.error();
  ASSERT_TRUE(waitUntil(
      [&] {
        auto s = upstream.stats();
        return s && s->in_flight == 1;
      },
      deadlineIn(seconds(5))))
      << "the upload never reached the upstream";
  EXPECT_FALSE(conn.isClosedByPeer(deadlineIn(milliseconds(0))));

  if (GetParam()) {
    conn.closeWithReset();
  } else {
    conn.close();
  }
  std::optional<UpstreamStats> last;
  EXPECT_TRUE(waitUntil(
      [&] {
        last = upstream.stats();
        return last && last->in_flight == 0 &&
               last->open_connections <= base_stats->open_connections;
      },
      deadlineIn(seconds(5))))
      << "upstream request not aborted: in_flight " << (last ? last->in_flight : -1)
      << ", open connections " << (last ? last->open_connections : -1) << " (baseline "
      << base_stats->open_connections << ")";
  std::optional<long> fds;
  EXPECT_TRUE(waitUntil(
      [&] {
        fds = countFds(sluice.pid());
        return fds && *fds <= *base_fds;
      },
      deadlineIn(seconds(5))))
      << "sluice holds " << fds.value_or(-1) << " descriptors, " << *base_fds << " before";
  auto after = upstream.stats();
  ASSERT_TRUE(after);
  EXPECT_EQ(after->requests, base_stats->requests + 1) << "the aborted upload was retried";

  // And the proxy is fine afterwards.
  auto next = httpGet(sluice.port(), "/");
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

INSTANTIATE_TEST_SUITE_P(ClientLeaves, AbandonedUploadTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param) {
                           return param.param ? std::string("Reset") : std::string("Fin");
                         });

// ---- 3. Slowloris ----------------------------------------------------------------------

TEST(SlowlorisTest, TricklingHeadsDoNotSlowOthersAndGet408AtHeaderTimeout) {
  constexpr int kSlow = 1000;
  constexpr int kSamples = 21;
  if (std::string e = raiseFdLimit(kSlow + 512); !e.empty()) GTEST_SKIP() << e;
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  ConfigOptions options;
  options.server =
      "workers: 2\n"
      "header_timeout: 2s\n";
  Sluice sluice;
  ASSERT_TRUE(sluice.start(minimalConfig(upstream.port(), options)));

  for (int i = 0; i < 5; ++i) ASSERT_TRUE(freshRequestMs(sluice.port()));  // warm up
  auto baseline = medianFreshRequestMs(sluice.port(), kSamples);
  ASSERT_TRUE(baseline);

  struct Slow {
    int fd = -1;
    Clock::time_point opened;
    std::optional<milliseconds> closed_after;
    std::string received;
  };
  std::vector<Slow> slow(kSlow);
  auto close_all = [&] {
    for (auto& s : slow) {
      if (s.fd >= 0) ::close(s.fd);
      s.fd = -1;
    }
  };
  for (auto& s : slow) {
    s.opened = Clock::now();
    s.fd = startConnect(sluice.port());
    if (s.fd < 0) {
      close_all();
      FAIL() << "connect: " << std::strerror(errno);
    }
  }
  // A few bytes of a head on each, once connected, then nothing.
  const std::string_view kTrickle = "GET / HTTP/1.1\r\nHo";
  int sent = 0;
  std::vector<bool> done(kSlow, false);
  Deadline connect_deadline = deadlineIn(seconds(10));
  while (sent < kSlow && Clock::now() < connect_deadline) {
    std::vector<pollfd> fds;
    std::vector<int> index;
    for (int i = 0; i < kSlow; ++i) {
      if (done[static_cast<size_t>(i)]) continue;
      fds.push_back({slow[static_cast<size_t>(i)].fd, POLLOUT, 0});
      index.push_back(i);
    }
    if (poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      auto& s = slow[static_cast<size_t>(index[k])];
      done[static_cast<size_t>(index[k])] = true;
      ++sent;
      if ((fds[k].revents & POLLOUT) == 0 ||
          ::send(s.fd, kTrickle.data(), kTrickle.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(kTrickle.size())) {
        close_all();
        FAIL() << "slow connection " << index[k] << " failed before its head was sent";
      }
    }
  }
  if (sent < kSlow) {
    close_all();
    FAIL() << "only " << sent << " of " << kSlow << " slow connections connected";
  }
  // All of them held by sluice before measuring.
  std::optional<double> gauge;
  bool held = waitUntil(
      [&] {
        gauge = scrapeValue(sluice.adminPort(), "sluice_client_connections");
        return gauge && *gauge >= kSlow;
      },
      deadlineIn(seconds(5)));
  auto during = held ? medianFreshRequestMs(sluice.port(), kSamples) : std::nullopt;
  auto measured_after = since(slow.front().opened);

  // Then every slow connection gets its 408 (or is closed) once header_timeout
  // has passed, never before.
  Deadline resolve_deadline = deadlineIn(seconds(10));
  int open = kSlow;
  char buf[4096];
  while (open > 0 && Clock::now() < resolve_deadline) {
    std::vector<pollfd> fds;
    std::vector<size_t> index;
    for (size_t i = 0; i < slow.size(); ++i) {
      if (slow[i].closed_after) continue;
      fds.push_back({slow[i].fd, POLLIN, 0});
      index.push_back(i);
    }
    if (poll(fds.data(), fds.size(), 100) <= 0) continue;
    for (size_t k = 0; k < fds.size(); ++k) {
      if (fds[k].revents == 0) continue;
      auto& s = slow[index[k]];
      for (;;) {
        ssize_t n = recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
          s.received.append(buf, static_cast<size_t>(n));
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        s.closed_after = since(s.opened);  // EOF or reset
        --open;
        break;
      }
    }
  }
  close_all();

  ASSERT_TRUE(held) << "sluice never held all " << kSlow << " slow connections (gauge "
                    << gauge.value_or(-1) << ")";
  ASSERT_TRUE(during) << "a fresh request failed while the slow connections were open";
  const double allowed = std::max(2 * *baseline, *baseline + 5.0);
  EXPECT_LE(*during, allowed) << "median fresh-request latency " << *during << " ms with " << kSlow
                              << " slow heads open, " << *baseline << " ms before";
  // The measurement means something only while the slow heads were all pending.
  EXPECT_LT(measured_after, milliseconds(1900))
      << "the latency was measured after the first 408s (machine too slow?)";

  int answered408 = 0;
  int closed_silently = 0;
  int unresolved = 0;
  milliseconds earliest = milliseconds::max();
  for (size_t i = 0; i < slow.size(); ++i) {
    const auto& s = slow[i];
    if (!s.closed_after) {
      ++unresolved;
      continue;
    }
    earliest = std::min(earliest, *s.closed_after);
    if (s.received.empty()) {
      ++closed_silently;
    } else if (s.received.rfind("HTTP/1.1 408 ", 0) == 0) {
      ++answered408;
    } else {
      ADD_FAILURE() << "slow connection " << i << " got: " << s.received.substr(0, 40);
    }
  }
  EXPECT_EQ(unresolved, 0) << "slow connections still open 10 s after header_timeout";
  EXPECT_EQ(answered408 + closed_silently, kSlow);
  EXPECT_GT(answered408, 0) << "no slow connection got its 408";
  // header_timeout starts at accept, after our connect began: never earlier.
  EXPECT_GE(earliest, milliseconds(1950)) << "a slow connection was cut before header_timeout";
  std::cout << "[ slowloris ] fresh-request median " << *baseline << " ms before, " << *during
            << " ms with " << kSlow << " slow heads (allowed " << allowed << " ms); " << answered408
            << " got 408, " << closed_silently << " closed silently, first after "
            << earliest.count() << " ms\n";

  auto after = httpGet(sluice.port(), "/");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

// ---- 4. More idle connections than server.max_connections --------------------------------

TEST(ConnectionCapTest, TenThousandIdleConnectionsNeverExceedMaxConnections) {
  constexpr int kIdle = 10'000;
  constexpr double kCap = 5000;
  if (std::string e = raiseFdLimit(kIdle + 1024); !e.empty()) GTEST_SKIP() << e;
  auto test_start = Clock::now();
  DemoUpstream upstream;
  ASSERT_TRUE(upstream.start());
  ConfigOptions options;
  options.server =
      "workers: 2\n"
      "max_connections: 5000\n"
      "header_timeout: 60s\n"
      "idle_timeout: 60s\n";
  Sluice sluice;
  ASSERT_TRUE(sluice.start(minimalConfig(upstream.port(), options)));
  auto first = httpGet(sluice.port(), "/");
  ASSERT_TRUE(first);
  ASSERT_EQ(first->status, 200);
  auto base_fds = countFds(sluice.pid());
  ASSERT_TRUE(base_fds);
  auto base_stats = upstream.stats();
  ASSERT_TRUE(base_stats);
  const long base_upstream = base_stats->open_connections;

  std::vector<int> idle;
  idle.reserve(kIdle);
  auto close_range = [&](size_t from, size_t to) {
    for (size_t i = from; i < to && i < idle.size(); ++i) {
      if (idle[i] >= 0) ::close(idle[i]);
      idle[i] = -1;
    }
  };
  struct Closer {
    std::function<void()> f;
    ~Closer() { f(); }
  } closer{[&] { close_range(0, idle.size()); }};

  double max_gauge = 0;
  long max_fds = 0;
  auto sample = [&] {
    if (auto g = scrapeValue(sluice.adminPort(), "sluice_client_connections")) {
      max_gauge = std::max(max_gauge, *g);
    }
    if (auto f = countFds(sluice.pid())) max_fds = std::max(max_fds, *f);
  };
  for (int i = 0; i < kIdle; ++i) {
    int fd = startConnect(sluice.port());
    ASSERT_GE(fd, 0) << "connect " << i << ": " << std::strerror(errno);
    idle.push_back(fd);
    if (i % 500 == 0) sample();
  }
  // sluice fills up to the cap and stays there.
  std::optional<double> gauge;
  ASSERT_TRUE(waitUntil(
      [&] {
        sample();
        gauge = scrapeValue(sluice.adminPort(), "sluice_client_connections");
        return gauge && *gauge >= kCap;
      },
      deadlineIn(seconds(10)), milliseconds(20)))
      << "sluice never reached max_connections (gauge " << gauge.value_or(-1) << ")";
  Deadline hold = deadlineIn(milliseconds(500));
  waitUntil(
      [&] {
        sample();
        return false;
      },
      hold, milliseconds(20));

  // How the excess is held: connected (accept queue or accepted), still
  // connecting (SYN dropped at a full queue), or closed by sluice.
  int connected = 0;
  int connecting = 0;
  int closed = 0;
  {
    std::vector<pollfd> fds;
    for (int fd : idle) fds.push_back({fd, POLLOUT | POLLIN | POLLRDHUP, 0});
    poll(fds.data(), fds.size(), 0);
    for (const auto& p : fds) {
      if ((p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        ++closed;
      } else if ((p.revents & POLLOUT) != 0) {
        ++connected;
      } else {
        ++connecting;
      }
    }
  }

  // A fresh request while at the cap is served once some idle ones leave.
  int fresh = startConnect(sluice.port());
  ASSERT_GE(fresh, 0);
  idle.push_back(fresh);  // closed with the others
  close_range(0, 6000);
  std::string fresh_answer;
  {
    Deadline d = deadlineIn(seconds(20));
    bool writable = false;
    while (Clock::now() < d) {
      pollfd p{fresh, POLLOUT, 0};
      if (poll(&p, 1, 100) == 1) {
        writable = p.revents == POLLOUT;  // not POLLERR / POLLHUP: the connect failed
        break;
      }
    }
    std::string req = requestText("GET", "/", sluice.port(), {{"Connection", "close"}});
    if (writable &&
        ::send(fresh, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[4096];
      while (Clock::now() < d && fresh_answer.find("\r\n\r\n") == std::string::npos) {
        pollfd r{fresh, POLLIN, 0};
        if (poll(&r, 1, 100) <= 0) continue;
        ssize_t n = recv(fresh, buf, sizeof buf, 0);
        if (n <= 0) break;
        fresh_answer.append(buf, static_cast<size_t>(n));
      }
    }
  }
  waitUntil(
      [&] {
        sample();
        return false;
      },
      deadlineIn(milliseconds(200)), milliseconds(20));

  // Everyone leaves: the gauge drains and a new request succeeds.
  close_range(0, idle.size());
  EXPECT_TRUE(waitUntil(
      [&] {
        sample();
        gauge = scrapeValue(sluice.adminPort(), "sluice_client_connections");
        return gauge && *gauge == 0;
      },
      deadlineIn(seconds(10)), milliseconds(50)))
      << "client connection gauge stuck at " << gauge.value_or(-1);
  auto after = httpGet(sluice.port(), "/");
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
  // Pooled upstream connections (one per worker at most here) come and go
  // with the workers that served; the rest must be back to the baseline.
  std::optional<long> fds;
  EXPECT_TRUE(waitUntil(
      [&] {
        fds = countFds(sluice.pid());
        auto up = upstream.stats();
        return fds && up && *fds - up->open_connections <= *base_fds - base_upstream;
      },
      deadlineIn(seconds(5))))
      << "sluice holds " << fds.value_or(-1) << " descriptors, " << *base_fds << " before";

  EXPECT_LE(max_gauge, kCap) << "sluice_client_connections exceeded max_connections";
  EXPECT_LE(max_fds, *base_fds + static_cast<long>(kCap) + 2)
      << "sluice held more client sockets than max_connections";
  EXPECT_THAT(fresh_answer, ::testing::StartsWith("HTTP/1.1 200 "))
      << "a fresh request was not served after idle connections left the cap";
  EXPECT_LT(since(test_start), seconds(30));
  std::cout << "[ cap ] max gauge " << max_gauge << ", max fds " << max_fds << " (baseline "
            << *base_fds << "); at the cap: " << connected << " connected, " << connecting
            << " still connecting, " << closed << " closed by sluice\n";
}

}  // namespace
}  // namespace sluice::testing
