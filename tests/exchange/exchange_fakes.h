#pragma once
// Fakes for the exchange's three neighbours, none of them a socket: the
// session that brought the request (Downstream), the pool that lends
// connections (ConnectionSource, whose connections carry a scripted
// transport) and the admission decision (AdmissionContext).

#include <errno.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/admission/admission.h"
#include "proxy/event/clock.h"
#include "proxy/exchange/downstream.h"
#include "proxy/transport/transport.h"
#include "proxy/upstream/local_pool.h"

namespace sluice::exchange::testing {

// Where the admission interface lives; the one line to change if it moves.
namespace adm = ::sluice::admission;

// Appends everything `out` holds to `to` and empties it.
inline void drainOutbox(transport::Outbox& out, std::string* to) {
  for (int i = 0; i < out.count; ++i) {
    const iovec& v = out.iov[static_cast<std::size_t>(i)];
    to->append(static_cast<const char*>(v.iov_base), v.iov_len);
  }
  out = transport::Outbox{};
}

// ---- the session side --------------------------------------------------------

struct LocalAnswer {
  int status = 0;
  bool close = false;
  std::string headers;
  std::vector<std::string> violated;
};

class FakeDownstream final : public Downstream {
 public:
  explicit FakeDownstream(const event::Clock& clock) : clock_(clock) {}

  event::Nanos now() noexcept override { return clock_.now(); }
  bool beginForwarding() noexcept override {
    ++forwarding_begun;
    return begin_ok;
  }
  BodyChunk nextBody() noexcept override {
    BodyChunk c;
    c.state = body_state;
    c.data = body.data() + body_written;
    c.len = static_cast<std::uint32_t>(body.size() - body_written);
    return c;
  }
  bool bodyWritten() noexcept override {
    body_written = body.size();
    return false;
  }
  bool requestComplete() const noexcept override {
    return body_complete && body_written == body.size();
  }
  void setReading(bool on) noexcept override { reading = on; }
  transport::Outbox& clientOut() noexcept override { return out_; }
  transport::IoResult flushClient() noexcept override {
    if (flush_again > 0) {
      --flush_again;
      return transport::IoResult::kAgain;  // the bytes stay queued
    }
    drainOutbox(out_, &received);
    return transport::IoResult::kDone;
  }
  bool closeAfter() const noexcept override { return close_after; }
  void setCloseAfter() noexcept override { close_after = true; }
  void answerLocal(int status, bool close, std::string_view headers,
                   std::span<const std::string_view> violated) noexcept override {
    LocalAnswer a{status, close, std::string(headers), {}};
    for (std::string_view v : violated) a.violated.emplace_back(v);
    answers.push_back(std::move(a));
  }
  void exchangeDone() noexcept override { ++done; }
  void abort() noexcept override { ++aborted; }
  void startTunnel(std::string_view head, std::unique_ptr<transport::Transport> upstream,
                   std::string_view from_upstream) noexcept override {
    tunnel_head = std::string(head);
    tunnel_bytes = std::string(from_upstream);
    tunnel_upstream = std::move(upstream);
  }
  std::string tunnel_head;  // the 101 as the client would get it
  std::string tunnel_bytes;
  std::unique_ptr<transport::Transport> tunnel_upstream;

  // The client takes what flushClient() left queued.
  void clientTakesQueued() { drainOutbox(out_, &received); }
  bool clientQueueEmpty() const { return out_.empty(); }

  // Script.
  bool begin_ok = true;
  BodyChunk::State body_state = BodyChunk::State::kOk;
  std::string body;           // request body bytes framed so far
  bool body_complete = true;  // the last of them has been read
  int flush_again = 0;        // this many flushClient() calls return kAgain
  bool close_after = false;
  // Observed.
  int forwarding_begun = 0;
  std::size_t body_written = 0;
  bool reading = true;
  std::string received;  // every byte the client got
  std::vector<LocalAnswer> answers;
  int done = 0;
  int aborted = 0;

 private:
  const event::Clock& clock_;
  transport::Outbox out_;
};

// ---- the upstream side -------------------------------------------------------

// The upstream server's end of one connection.
struct UpstreamWire {
  std::string to_proxy;    // response bytes not yet read by the proxy
  bool eof = false;        // the server closed after them
  int read_errno = 0;      // nonzero: the next empty read fails with this
  int connect_error = 0;   // the non-blocking connect's outcome
  std::string from_proxy;  // every byte the proxy wrote
  bool reading = false;
};

class FakeUpstreamTransport final : public transport::Transport {
 public:
  explicit FakeUpstreamTransport(UpstreamWire& wire) : wire_(wire) {}

  ssize_t read(char* buf, std::size_t len) noexcept override {
    if (wire_.to_proxy.empty()) {
      if (wire_.read_errno != 0) {
        errno = wire_.read_errno;
        return -1;
      }
      if (wire_.eof) return 0;
      errno = EAGAIN;
      return -1;
    }
    const std::size_t n = std::min(len, wire_.to_proxy.size());
    std::memcpy(buf, wire_.to_proxy.data(), n);
    wire_.to_proxy.erase(0, n);
    return static_cast<ssize_t>(n);
  }
  transport::IoResult write(transport::Outbox& out) noexcept override {
    drainOutbox(out, &wire_.from_proxy);
    return transport::IoResult::kDone;
  }
  void wantRead(bool on) noexcept override { wire_.reading = on; }
  void wantWrite() noexcept override {}
  void cancelWrite() noexcept override {}
  void quiet() noexcept override { wire_.reading = false; }
  void close() noexcept override { wire_.reading = false; }
  int connectError() noexcept override { return wire_.connect_error; }
  void setUser(transport::TransportUser*) noexcept override {}

 private:
  UpstreamWire& wire_;
};

class FakeSource final : public upstream::ConnectionSource {
 public:
  using Conn = upstream::UpstreamConn;

  Acquired acquire(const std::shared_ptr<upstream::SharedPool>&,
                   upstream::PoolWaiter* waiter) override {
    ++acquires;
    last_waiter = waiter;
    if (script.empty()) return Acquired{};  // kFull
    Acquired a = script.front();
    script.pop_front();
    return a;
  }
  Conn* open(const std::shared_ptr<upstream::SharedPool>& pool, std::size_t target,
             upstream::UpstreamUser* user) override {
    opened_targets.push_back(target);
    if (open_fails) return nullptr;
    Conn* uc = makeConn(pool, target);
    uc->connected = false;
    uc->user = user;
    return uc;
  }
  void cancel(const std::shared_ptr<upstream::SharedPool>&, std::uint64_t token) override {
    cancelled.push_back(token);
  }
  void release(Conn* uc, bool reusable) override {
    releases.push_back({uc, reusable});
    uc->user = nullptr;  // as the pool does: its readiness no longer reaches the request
    const bool again = std::any_of(released_.begin(), released_.end(),
                                   [uc](const auto& r) { return r.get() == uc; });
    if (again) {
      ++double_releases;
      return;
    }
    released_.emplace_back(uc);  // kept so the test can still look at it
  }
  std::unique_ptr<transport::Transport> detach(Conn* uc) override {
    ++detached;
    uc->user = nullptr;
    std::unique_ptr<transport::Transport> t = std::move(uc->transport);
    released_.emplace_back(uc);
    return t;
  }
  int detached = 0;
  upstream::Nanos now() override { return 0; }

  // A connection with its own wire, as if taken from the idle list; the
  // exchange owns it once handed over.
  Conn* makeConn(const std::shared_ptr<upstream::SharedPool>& pool, std::size_t target) {
    wires_.push_back(std::make_unique<UpstreamWire>());
    auto* uc = new Conn(pool, target);
    uc->transport = std::make_unique<FakeUpstreamTransport>(*wires_.back());
    uc->connected = true;
    conns_.push_back(uc);
    return uc;
  }
  Conn* conn(std::size_t i) const { return conns_.at(i); }
  UpstreamWire& wire(std::size_t i) const { return *wires_.at(i); }
  std::size_t connCount() const { return conns_.size(); }

  struct Release {
    Conn* uc;
    bool reusable;
  };
  // Script.
  std::deque<Acquired> script;  // acquire() answers in order; then kFull
  bool open_fails = false;
  // Observed.
  int acquires = 0;
  upstream::PoolWaiter* last_waiter = nullptr;
  std::vector<std::size_t> opened_targets;
  std::vector<std::uint64_t> cancelled;
  std::vector<Release> releases;
  int double_releases = 0;  // release() of a connection already released

 private:
  std::vector<std::unique_ptr<UpstreamWire>> wires_;
  std::vector<Conn*> conns_;
  std::vector<std::unique_ptr<Conn>> released_;
};

inline upstream::ConnectionSource::Acquired got(upstream::ConnectionSource::Got g,
                                                upstream::UpstreamConn* conn = nullptr,
                                                std::uint64_t token = 0) {
  upstream::ConnectionSource::Acquired a;
  a.got = g;
  a.conn = conn;
  a.token = token;
  return a;
}

// ---- admission -----------------------------------------------------------------

class FakeAdmission final : public adm::AdmissionContext {
 public:
  void decide(const adm::RouteLimits&, const adm::RequestView& req, std::int64_t,
              adm::AdmissionResult* out) override {
    ++decided;
    waiter = req.waiter;
    out->status = verdict.status;
    out->ticket = verdict.ticket;
    out->headers = verdict.headers;
    out->allowed_headers = verdict.allowed_headers;
    out->violated = verdict.violated;
  }
  void sample(std::vector<metrics::LimitSample>*) const override {}
  void cancel(int worker, std::uint64_t ticket) override { cancelled.push_back({worker, ticket}); }
  bool topKeys(std::string_view, std::size_t, std::int64_t, std::string*) const override {
    return false;
  }
  void sweep(std::int64_t) override {}

  struct Cancel {
    int worker;
    std::uint64_t ticket;
  };
  adm::AdmissionResult verdict;  // what decide() answers (default: forward)
  int decided = 0;
  adm::AdmissionWaiter* waiter = nullptr;
  std::vector<Cancel> cancelled;
};

}  // namespace sluice::exchange::testing
