#include "proxy/upstream/shared_pool.h"

#include "proxy/transport/socket_address.h"

namespace sluice::upstream {

std::shared_ptr<SharedPool> SharedPool::create(const config::UpstreamConfig& cfg,
                                               std::string* error) {
  std::shared_ptr<SharedPool> pool(new SharedPool(cfg));
  for (const auto& addr : cfg.targets) {
    auto t = std::make_unique<Target>();
    t->address = addr;
    t->text = addr.toString();
    if (!transport::resolveSockaddr(addr, &t->sockaddr, &t->sockaddr_len)) {
      *error = "upstream " + cfg.name + ": cannot resolve " + addr.toString();
      return nullptr;
    }
    pool->targets_.push_back(std::move(t));
  }
  if (cfg.tls) {
    pool->tls_ = tls::ClientTls::create(cfg, error);
    if (!pool->tls_) return nullptr;
  }
  return pool;
}

std::optional<std::size_t> SharedPool::reserveSlot(Nanos now) {
  const std::size_t n = targets_.size();
  if (n == 0) return std::nullopt;
  const int max = static_cast<int>(cfg_.max_connections);
  std::uint32_t start = rr_.fetch_add(1, std::memory_order_relaxed);
  // Two passes: healthy targets first, then any target (all down: try anyway
  // rather than fail every request for 5 s).
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t k = 0; k < n; ++k) {
      std::size_t i = (start + k) % n;
      Target& t = *targets_[i];
      if (pass == 0 && t.down_until.load(std::memory_order_relaxed) > now) continue;
      int cur = t.open.load(std::memory_order_relaxed);
      while (cur < max) {
        if (t.open.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel)) return i;
      }
    }
  }
  return std::nullopt;
}

std::int64_t SharedPool::open() const {
  std::int64_t n = 0;
  for (const auto& t : targets_) n += t->open.load(std::memory_order_relaxed);
  return n;
}

void SharedPool::releaseSlot(std::size_t target) {
  targets_[target]->open.fetch_sub(1, std::memory_order_acq_rel);
}

void SharedPool::markDown(std::size_t target, Nanos now) {
  targets_[target]->down_until.store(now + kRefusedPenalty, std::memory_order_relaxed);
}

bool SharedPool::enqueue(const Waiter& w) {
  std::lock_guard lock(mu_);
  if (static_cast<std::int64_t>(queue_.size()) >= cfg_.max_pending) return false;
  queue_.push_back(w);
  waiting_.store(static_cast<std::int64_t>(queue_.size()), std::memory_order_release);
  return true;
}

bool SharedPool::cancel(const Waiter& w) {
  std::lock_guard lock(mu_);
  for (auto it = queue_.begin(); it != queue_.end(); ++it) {
    if (it->worker == w.worker && it->token == w.token) {
      queue_.erase(it);
      waiting_.store(static_cast<std::int64_t>(queue_.size()), std::memory_order_release);
      return true;
    }
  }
  return false;
}

std::optional<Waiter> SharedPool::popWaiter() {
  std::lock_guard lock(mu_);
  if (queue_.empty()) return std::nullopt;
  Waiter w = queue_.front();
  queue_.pop_front();
  waiting_.store(static_cast<std::int64_t>(queue_.size()), std::memory_order_release);
  return w;
}

}  // namespace sluice::upstream
