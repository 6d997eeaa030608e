#include "proxy/upstream/local_pool.h"

#include <unistd.h>

#include "proxy/tls/tls_transport.h"
#include "proxy/transport/plain_transport.h"

namespace sluice::upstream {

LocalPool::~LocalPool() { closeAll(); }

void LocalPool::closeAll() {
  for (auto& [pool, head] : idle_) {
    while (head != nullptr) {
      UpstreamConn* n = head->next_idle;
      head->pool->idle.fetch_sub(1, std::memory_order_relaxed);
      head->pool->releaseSlot(head->target);
      delete head;
      head = n;
    }
  }
  idle_.clear();
}

ConnectionSource::Acquired LocalPool::acquire(const std::shared_ptr<SharedPool>& pool,
                                              PoolWaiter* waiter) {
  Acquired a;
  if (UpstreamConn* uc = takeIdle(pool.get())) {
    a.got = Got::kConn;
    a.conn = uc;
    return a;
  }
  if (auto slot = pool->reserveSlot(peers_.now())) {
    a.got = Got::kSlot;
    a.target = *slot;
    return a;
  }
  const std::uint64_t token = next_token_++;
  if (!pool->enqueue(Waiter{worker_, token})) {
    a.got = Got::kFull;
    return a;
  }
  waiters_[token] = waiter;
  a.got = Got::kQueued;
  a.token = token;
  peers_.postReclaim(pool);
  return a;
}

UpstreamConn* LocalPool::open(const std::shared_ptr<SharedPool>& pool, std::size_t target,
                              UpstreamUser* user) {
  auto* uc = new UpstreamConn(pool, target);
  uc->home = this;
  uc->user = user;
  const Target& t = pool->target(target);
  bool refused = false;
  const auto* addr = reinterpret_cast<const sockaddr*>(&t.sockaddr);
  if (const tls::ClientTls* tls = pool->tls()) {
    const int fd = transport::connectSocket(addr, t.sockaddr_len, &refused);
    SSL* ssl = fd >= 0 && !refused ? tls->newSession(t.address.host) : nullptr;
    if (ssl != nullptr) {
      uc->transport = std::make_unique<tls::TlsTransport>(
          base_, fd, ssl, tls::TlsTransport::Role::kClient, nullptr, uc);
    } else if (fd >= 0) {
      ::close(fd);
    }
  } else {
    uc->transport = transport::PlainTransport::connect(base_, addr, t.sockaddr_len, uc, &refused);
  }
  if (!uc->transport || refused) {
    if (refused) pool->markDown(target, peers_.now());
    delete uc;
    passSlot(pool, target);
    return nullptr;
  }
  return uc;
}

void LocalPool::cancel(const std::shared_ptr<SharedPool>& pool, std::uint64_t token) {
  pool->cancel(Waiter{worker_, token});
  waiters_.erase(token);
}

PoolWaiter* LocalPool::takeWaiter(std::uint64_t token) {
  auto it = waiters_.find(token);
  if (it == waiters_.end()) return nullptr;  // gave up meanwhile
  PoolWaiter* w = it->second;
  waiters_.erase(it);
  return w;
}

void LocalPool::release(UpstreamConn* uc, bool reusable) {
  uc->user = nullptr;
  if (!reusable || stopping_) {
    closeConn(uc);
    return;
  }
  std::shared_ptr<SharedPool> pool = uc->pool;
  if (pool->hasWaiters()) {
    while (auto waiter = pool->popWaiter()) {
      if (waiter->worker == worker_) {
        PoolWaiter* w = takeWaiter(waiter->token);
        if (w == nullptr) continue;
        w->onIdleConn(uc);
        return;
      }
      // The oldest waiter lives on another worker: close this connection and
      // hand it the slot (sockets stay on the worker that opened them).
      const std::size_t target = uc->target;
      delete uc;
      peers_.postSlot(waiter->worker, pool, target, waiter->token);
      return;
    }
  }
  keepIdle(uc);
}

void LocalPool::onSlotMessage(const std::shared_ptr<SharedPool>& pool, std::size_t target,
                              std::uint64_t token) {
  if (PoolWaiter* w = takeWaiter(token)) {
    w->onSlot(target);
  } else {
    passSlot(pool, target);  // that request gave up meanwhile
  }
}

void LocalPool::passSlot(const std::shared_ptr<SharedPool>& pool, std::size_t target) {
  while (auto waiter = pool->popWaiter()) {
    if (waiter->worker == worker_) {
      PoolWaiter* w = takeWaiter(waiter->token);
      if (w == nullptr) continue;
      w->onSlot(target);
      return;
    }
    peers_.postSlot(waiter->worker, pool, target, waiter->token);
    return;
  }
  pool->releaseSlot(target);
}

UpstreamConn* LocalPool::takeIdle(SharedPool* pool) {
  auto it = idle_.find(pool);
  if (it == idle_.end() || it->second == nullptr) return nullptr;
  UpstreamConn* uc = it->second;
  it->second = uc->next_idle;
  uc->next_idle = nullptr;
  uc->pool->idle.fetch_sub(1, std::memory_order_relaxed);
  return uc;
}

void LocalPool::keepIdle(UpstreamConn* uc) {
  uc->idle_deadline = peers_.now() + uc->pool->config().idle_timeout.nanos;
  uc->rpos = uc->ppos = uc->wpos = 0;
  // The read event stays armed so a server-side close is noticed at once.
  uc->transport->cancelWrite();
  uc->transport->wantRead(true);
  uc->pool->idle.fetch_add(1, std::memory_order_relaxed);
  UpstreamConn*& head = idle_[uc->pool.get()];
  uc->next_idle = head;
  head = uc;
}

std::unique_ptr<transport::Transport> LocalPool::detach(UpstreamConn* uc) {
  std::unique_ptr<transport::Transport> t = std::move(uc->transport);
  t->setUser(nullptr);
  closeConn(uc);
  return t;
}

void LocalPool::closeConn(UpstreamConn* uc) {
  std::shared_ptr<SharedPool> p = uc->pool;
  const std::size_t target = uc->target;
  delete uc;
  passSlot(p, target);
}

void LocalPool::reclaimOne(SharedPool* pool) {
  if (UpstreamConn* uc = takeIdle(pool)) closeConn(uc);
}

void LocalPool::idleClosed(UpstreamConn* uc) noexcept {
  UpstreamConn** link = &idle_[uc->pool.get()];
  while (*link != nullptr && *link != uc) link = &(*link)->next_idle;
  if (*link == uc) {
    *link = uc->next_idle;
    uc->pool->idle.fetch_sub(1, std::memory_order_relaxed);
  }
  uc->next_idle = nullptr;
  closeConn(uc);
}

void LocalPool::expireIdle(Nanos now) {
  for (auto& [pool, head] : idle_) {
    UpstreamConn** link = &head;
    while (*link != nullptr) {
      UpstreamConn* uc = *link;
      if (uc->idle_deadline <= now) {
        uc->pool->idle.fetch_sub(1, std::memory_order_relaxed);
        *link = uc->next_idle;
        uc->next_idle = nullptr;
        uc->transport->quiet();
        closeConn(uc);
      } else {
        link = &uc->next_idle;
      }
    }
  }
}

}  // namespace sluice::upstream
