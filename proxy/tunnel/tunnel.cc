#include "proxy/tunnel/tunnel.h"

#include <errno.h>

#include <algorithm>
#include <cstring>

namespace sluice::tunnel {

Tunnel::Tunnel(transport::Transport& client, std::unique_ptr<transport::Transport> upstream,
               TunnelOwner& owner, metrics::TunnelStats* stats, event::Nanos idle_timeout,
               event_base* base)
    : client_(client),
      upstream_(std::move(upstream)),
      owner_(owner),
      stats_(stats),
      idle_timeout_(idle_timeout) {
  up_.from = &client_;
  up_.to = upstream_.get();
  up_.to_upstream = true;
  down_.from = upstream_.get();
  down_.to = &client_;
  upstream_->setUser(this);
  if (base != nullptr) timer_ = evtimer_new(base, &Tunnel::onTimer, this);
}

Tunnel::~Tunnel() {
  if (timer_ != nullptr) event_free(timer_);
  if (upstream_) upstream_->close();
}

void Tunnel::armTimer(event::Nanos after) noexcept {
  if (timer_ == nullptr) return;
  const event::Nanos us = std::max<event::Nanos>(after / 1000, 1000);
  timeval tv{static_cast<time_t>(us / 1000000), static_cast<suseconds_t>(us % 1000000)};
  evtimer_add(timer_, &tv);
}

void Tunnel::onTimer(evutil_socket_t, short, void* arg) noexcept {
  auto* t = static_cast<Tunnel*>(arg);
  const event::Nanos now = t->owner_.tunnelClock();
  t->checkTimeout(now);
  // Bytes moved since the timer was set: wait for the rest of the timeout.
  if (!t->ended_) t->armTimer(t->idle_timeout_ - (now - t->last_moved_));
}

void Tunnel::hold(Direction& d) {
  const std::size_t n = d.out.bytes();
  auto copy = std::make_unique<char[]>(n);
  std::size_t at = 0;
  for (int i = 0; i < d.out.count; ++i) {
    const iovec& v = d.out.iov[static_cast<std::size_t>(i)];
    std::memcpy(copy.get() + at, v.iov_base, v.iov_len);
    at += v.iov_len;
  }
  d.held = std::move(copy);
  d.out = transport::Outbox{};
  d.out.add(d.held.get(), n);
  d.in_scratch = false;
}

void Tunnel::start(std::string_view to_client, std::string_view to_upstream, event::Nanos now) {
  now_ = last_moved_ = now;
  armTimer(idle_timeout_);
  down_.out.add(to_client.data(), to_client.size());
  hold(down_);
  up_.out.add(to_upstream.data(), to_upstream.size());
  hold(up_);
  client_.wantRead(true);
  upstream_->wantRead(true);
  pump(down_);
  if (!ended_) pump(up_);
}

void Tunnel::onClientReady(bool readable, bool writable, event::Nanos now) noexcept {
  now_ = now;
  if (!ended_ && writable) pump(down_);
  if (!ended_ && readable) pump(up_);
}

void Tunnel::onTransportReady(bool readable, bool writable) noexcept {
  if (timer_ != nullptr) now_ = owner_.tunnelClock();
  if (!ended_ && writable) pump(up_);
  if (!ended_ && readable) pump(down_);
}

bool Tunnel::flush(Direction& d) noexcept {
  const std::size_t before = d.out.bytes();
  const transport::IoResult res = d.to->write(d.out);
  const std::size_t written = before - d.out.bytes();
  if (written > 0) {
    d.bytes += written;
    last_moved_ = now_;
    if (stats_ != nullptr) {
      (d.to_upstream ? stats_->bytes_upstream : stats_->bytes_downstream)
          .fetch_add(written, std::memory_order_relaxed);
    }
  }
  switch (res) {
    case transport::IoResult::kDone:
      d.held.reset();
      d.in_scratch = false;
      return true;
    case transport::IoResult::kAgain:
      // The sink is full: keep the rest and stop reading the source until
      // it drains.
      if (d.in_scratch) hold(d);
      d.from->wantRead(false);
      d.to->wantWrite();
      return false;
    case transport::IoResult::kError:
      break;
  }
  end();
  return false;
}

void Tunnel::pump(Direction& d) noexcept {
  static thread_local std::unique_ptr<char[]> scratch;
  if (!scratch) scratch = std::make_unique<char[]>(kBufferBytes);
  for (;;) {
    if (!d.out.empty() && !flush(d)) return;
    d.from->wantRead(true);
    const ssize_t n = d.from->read(scratch.get(), kBufferBytes);
    if (n > 0) {
      d.out.add(scratch.get(), static_cast<std::size_t>(n));
      d.in_scratch = true;
      // A short read took all there was: write it and wait for the next
      // event instead of a read that would only say EAGAIN. (A TLS source
      // that still holds decrypted bytes raises its own event.)
      if (static_cast<std::size_t>(n) < kBufferBytes) {
        flush(d);
        return;
      }
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    end();  // one side closed (or failed): the tunnel is over
    return;
  }
}

void Tunnel::checkTimeout(event::Nanos now) noexcept {
  now_ = now;
  if (!ended_ && now - last_moved_ >= idle_timeout_) end();
}

void Tunnel::end() noexcept {
  if (ended_) return;
  ended_ = true;
  if (timer_ != nullptr) event_del(timer_);
  client_.quiet();
  if (upstream_) upstream_->close();
  owner_.tunnelEnded();
}

}  // namespace sluice::tunnel
