#include "proxy/server/worker.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "proxy/event/log.h"
#include "proxy/server/http1_session.h"
#include "proxy/tls/tls_transport.h"
#include "proxy/transport/plain_transport.h"
#include "proxy/transport/socket_address.h"

namespace sluice::server {
namespace {

constexpr timeval kTick{0, 50 * 1000};  // coarse timeout resolution: 50 ms

}  // namespace

Worker::Worker(int id, ServerShared& shared, std::shared_ptr<const exchange::Runtime> runtime)
    : id_(id),
      shared_(shared),
      runtime_(std::move(runtime)),
      base_(event_base_new()),
      pool_(id, base_, *this) {
  const auto& s = runtime_->config->server;
  // The head must fit whole; the rest of the buffer carries body bytes.
  client_buf_size_ = static_cast<std::uint32_t>(s.max_header_bytes + 16 * 1024);
  tick_ev_ = event_new(base_, -1, EV_PERSIST, &Worker::onTick, this);
  event_add(tick_ev_, &kTick);
  inbox_ev_ = event_new(base_, -1, 0, &Worker::onInbox, this);
  reap_ev_ = event_new(base_, -1, 0, &Worker::onReap, this);
  std::random_device rd;
  rng_[0] = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  rng_[1] = (static_cast<std::uint64_t>(rd()) << 32) ^ rd() ^ 0x9e3779b97f4a7c15ULL;
}

void Worker::newRequestId(std::string* out) {
  // xorshift128+: fast, and ids only need to be unique, not secret.
  static constexpr char kHex[] = "0123456789abcdef";
  out->resize(32);
  for (int half = 0; half < 2; ++half) {
    std::uint64_t s1 = rng_[0];
    const std::uint64_t s0 = rng_[1];
    rng_[0] = s0;
    s1 ^= s1 << 23;
    rng_[1] = s1 ^ s0 ^ (s1 >> 17) ^ (s0 >> 26);
    std::uint64_t v = rng_[1] + s0;
    for (int i = 0; i < 16; ++i) {
      (*out)[static_cast<std::size_t>(half * 16 + i)] = kHex[v & 0xf];
      v >>= 4;
    }
  }
}

void Worker::flushAccessLog(bool force) {
  if (access_buf_.empty()) return;
  if (!force && access_buf_.size() < 32 * 1024) return;
  if (runtime_->access_log) {
    runtime_->access_log->submit(access_buf_);
  } else {
    access_buf_.clear();
  }
}

Worker::~Worker() {
  while (conns_ != nullptr || tunnels_ != nullptr) {
    Http1Session* c = conns_ != nullptr ? conns_ : tunnels_;
    removeConn(c);
    delete c;
  }
  for (Http1Session* c : graveyard_) delete c;
  pool_.closeAll();  // before the loop its events belong to is freed
  closeListeners();
  event_free(tick_ev_);
  event_free(inbox_ev_);
  event_free(reap_ev_);
  event_base_free(base_);
}

evconnlistener* Worker::bindListener(const config::Address& addr, std::string* error, int* port) {
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (!transport::numericSockaddr(addr, &ss, &len)) {
    *error = "cannot parse listen address " + addr.toString();
    return nullptr;
  }
  evconnlistener* l =
      evconnlistener_new_bind(base_, &Worker::onAccept, this,
                              LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE |
                                  LEV_OPT_REUSEABLE_PORT | LEV_OPT_THREADSAFE,
                              1024, reinterpret_cast<sockaddr*>(&ss), static_cast<int>(len));
  if (l == nullptr) {
    *error = "cannot listen on " + addr.toString() + ": " + std::strerror(errno);
    return nullptr;
  }
  evconnlistener_set_error_cb(l, &Worker::onAcceptError);
  *port = transport::boundPort(evconnlistener_get_fd(l));
  return l;
}

int Worker::listen(const config::Address& addr, ListenerKind kind, std::string* error) {
  int port = -1;
  evconnlistener*& slot = listeners_[static_cast<std::size_t>(kind)];
  slot = bindListener(addr, error, &port);
  return slot == nullptr ? -1 : port;
}

int Worker::rebind(const config::Address& addr, ListenerKind kind, std::string* error) {
  int port = -1;
  evconnlistener* fresh = bindListener(addr, error, &port);
  if (fresh == nullptr) return -1;
  InboxMessage m;
  m.kind = InboxMessage::Kind::kSwapListener;
  m.listener = fresh;
  m.listener_kind = kind;
  post(std::move(m));
  return port;
}

void Worker::unbind(ListenerKind kind) {
  InboxMessage m;
  m.kind = InboxMessage::Kind::kSwapListener;
  m.listener_kind = kind;
  post(std::move(m));
}

void Worker::pauseListeners() {
  for (evconnlistener* l : listeners_) {
    if (l != nullptr) evconnlistener_disable(l);
  }
  listener_paused_ = true;
}

void Worker::closeListeners() {
  for (evconnlistener*& l : listeners_) {
    if (l != nullptr) evconnlistener_free(l);
    l = nullptr;
  }
}

std::unique_ptr<transport::Transport> Worker::transportFor(const evconnlistener* l, int fd) {
  const auto tls_slot = static_cast<std::size_t>(ListenerKind::kTls);
  if (l != nullptr && l == listeners_[tls_slot] && runtime_->tls) {
    return std::make_unique<tls::TlsTransport>(base_, fd, runtime_->tls->newSession(),
                                               tls::TlsTransport::Role::kServer,
                                               shared_.metrics->tlsHandshakes(), nullptr);
  }
  return std::make_unique<transport::PlainTransport>(base_, fd, nullptr);
}

void Worker::start() {
  thread_ = std::thread([this] { event_base_dispatch(base_); });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::post(InboxMessage msg) {
  {
    std::lock_guard lock(inbox_mu_);
    inbox_.push_back(std::move(msg));
  }
  event_active(inbox_ev_, 0, 0);
}

std::unique_ptr<char[]> Worker::takeBuffer() {
  if (free_buffers_.empty()) return std::make_unique<char[]>(client_buf_size_);
  auto b = std::move(free_buffers_.back());
  free_buffers_.pop_back();
  return b;
}

void Worker::giveBuffer(std::unique_ptr<char[]> b, std::uint32_t size) {
  // Keep a few warm buffers; idle connections hold none. A buffer of an
  // older size (max_header_bytes changed on reload) is simply freed.
  if (size == client_buf_size_ && free_buffers_.size() < 64) free_buffers_.push_back(std::move(b));
}

void Worker::addConn(Http1Session* c) {
  c->next = conns_;
  c->prev = nullptr;
  if (conns_ != nullptr) conns_->prev = c;
  conns_ = c;
}

void Worker::parkTunnel(Http1Session* c) {
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (conns_ == c) conns_ = c->next;
  c->prev = nullptr;
  c->next = tunnels_;
  if (tunnels_ != nullptr) tunnels_->prev = c;
  tunnels_ = c;
}

void Worker::removeConn(Http1Session* c) {
  if (c->prev != nullptr) c->prev->next = c->next;
  if (c->next != nullptr) c->next->prev = c->prev;
  if (conns_ == c) conns_ = c->next;
  if (tunnels_ == c) tunnels_ = c->next;
  c->prev = c->next = nullptr;
  shared_.client_connections.fetch_sub(1, std::memory_order_relaxed);
}

void Worker::retire(Http1Session* c) {
  graveyard_.push_back(c);
  event_active(reap_ev_, 0, 0);
}

void Worker::onReap(evutil_socket_t, short, void* arg) noexcept {
  auto* w = static_cast<Worker*>(arg);
  std::vector<Http1Session*> dead;
  dead.swap(w->graveyard_);
  for (Http1Session* c : dead) delete c;
  if (w->stopping_ && w->conns_ == nullptr) event_base_loopexit(w->base_, nullptr);
}

void Worker::onAccept(evconnlistener* l, evutil_socket_t fd, sockaddr* sa, int,
                      void* arg) noexcept {
  auto* w = static_cast<Worker*>(arg);
  w->newEvent();
  if (w->stopping_ || w->shared_.draining.load(std::memory_order_relaxed)) {
    ::close(fd);
    return;
  }
  std::int64_t n = w->shared_.client_connections.fetch_add(1, std::memory_order_relaxed) + 1;
  const std::int64_t max = w->shared_.max_connections.load(std::memory_order_relaxed);
  if (n > max) {
    // Another worker took the last slot; this one pauses accepting.
    w->shared_.client_connections.fetch_sub(1, std::memory_order_relaxed);
    ::close(fd);
    w->pauseListeners();
    return;
  }
  new Http1Session(*w, w->transportFor(l, fd), transport::peerOf(sa));
  if (n >= max) w->pauseListeners();  // at the cap: the tick resumes once below it
}

void Worker::onAcceptError(evconnlistener*, void* arg) noexcept {
  auto* w = static_cast<Worker*>(arg);
  int err = EVUTIL_SOCKET_ERROR();
  if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
    // Out of descriptors: pause instead of spinning on accept; retry on tick.
    w->pauseListeners();
    event::log(event::LogLevel::kWarn, "accept paused", {{"error", std::strerror(err)}});
  }
}

void Worker::onTick(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->tick();
}

void Worker::tick() {
  newEvent();
  const event::Nanos now = this->now();
  flushAccessLog(true);
  for (Http1Session* c = conns_; c != nullptr;) {
    Http1Session* next = c->next;
    c->checkTimeout(now);
    c = next;
  }
  pool_.expireIdle(now);
  if (listener_paused_ && !stopping_ && !shared_.draining.load() &&
      shared_.client_connections.load() < shared_.max_connections.load()) {
    for (evconnlistener* l : listeners_) {
      if (l != nullptr) evconnlistener_enable(l);
    }
    listener_paused_ = false;
  }
}

void Worker::onInbox(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Worker*>(arg)->drainInbox();
}

void Worker::drainInbox() {
  newEvent();
  std::vector<InboxMessage> msgs;
  {
    std::lock_guard lock(inbox_mu_);
    msgs.swap(inbox_);
  }
  for (auto& m : msgs) handle(m);
}

void Worker::handle(InboxMessage& m) {
  switch (m.kind) {
    case InboxMessage::Kind::kSlot:
      pool_.onSlotMessage(m.pool, m.target, m.token);
      break;
    case InboxMessage::Kind::kReclaimIdle:
      pool_.reclaimOne(m.pool.get());
      break;
    case InboxMessage::Kind::kRuntime: {
      flushAccessLog(true);  // lines so far belong to the log of the old config
      runtime_ = std::move(m.runtime);
      const auto size =
          static_cast<std::uint32_t>(runtime_->config->server.max_header_bytes + 16 * 1024);
      if (size != client_buf_size_) {
        client_buf_size_ = size;
        free_buffers_.clear();
      }
      break;
    }
    case InboxMessage::Kind::kDrain:
      closeListeners();
      for (Http1Session* c = conns_; c != nullptr;) {
        Http1Session* next = c->next;
        c->drain();
        c = next;
      }
      break;
    case InboxMessage::Kind::kRun:
      if (m.run) m.run(*this);
      break;
    case InboxMessage::Kind::kSwapListener: {
      evconnlistener*& slot = listeners_[static_cast<std::size_t>(m.listener_kind)];
      if (slot != nullptr) evconnlistener_free(slot);
      slot = m.listener;
      if (slot != nullptr && listener_paused_) evconnlistener_disable(slot);
      if (slot != nullptr && (stopping_ || shared_.draining.load())) {
        evconnlistener_free(slot);
        slot = nullptr;
      }
      break;
    }
    case InboxMessage::Kind::kStop:
      flushAccessLog(true);
      if (shared_.on_worker_stop) shared_.on_worker_stop(id_);
      stopping_ = true;
      pool_.stopping();
      event_base_loopexit(base_, nullptr);
      break;
  }
}

void Worker::postSlot(int worker, std::shared_ptr<upstream::SharedPool> pool, std::size_t target,
                      std::uint64_t token) {
  shared_.workers[static_cast<std::size_t>(worker)]->post(
      InboxMessage::of(InboxMessage::Kind::kSlot, std::move(pool), target, token));
}

void Worker::postReclaim(const std::shared_ptr<upstream::SharedPool>& pool) {
  for (Worker* w : shared_.workers) {
    if (w != this) w->post(InboxMessage::of(InboxMessage::Kind::kReclaimIdle, pool, 0, 0));
  }
}

}  // namespace sluice::server
