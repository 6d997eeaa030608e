#include "proxy/store/redis_store.h"

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstring>

#include "proxy/event/clock.h"
#include "proxy/event/log.h"

namespace sluice::store {
namespace {

// KEYS: one bucket per Redis-stored limit. ARGV: T and tolerance (burst * T)
// per key, in microseconds. Returns {allowed, then per key: admitted,
// remaining, wait_us, full_in_us}. Integers stay below 2^53 (Lua doubles).
const char* const kScript = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local n = #KEYS
local tats = {}
local admits = {}
local all = 1
for i = 1, n do
  local T = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  admits[i] = (tat + T - now <= tau)
  if not admits[i] then all = 0 end
end
local out = {all}
for i = 1, n do
  local T = tonumber(ARGV[2 * i - 1])
  local tau = tonumber(ARGV[2 * i])
  local tat = tats[i]
  if all == 1 then
    tat = tat + T
    redis.call('SET', KEYS[i], tostring(tat), 'PX', math.floor((tat - now) / 1000) + 1)
  end
  local backlog = tat - now
  local remaining = math.floor((tau - backlog) / T)
  if remaining < 0 then remaining = 0 end
  local wait = backlog + T - tau
  if wait < 0 then wait = 0 end
  out[#out + 1] = admits[i] and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = wait
  out[#out + 1] = backlog
end
return out
)lua";

constexpr Nanos kMinBackoff = 100 * event::kNanosPerMilli;
constexpr Nanos kMaxBackoff = 5 * event::kNanosPerSecond;

timeval toTimeval(Nanos d) {
  if (d < 0) d = 0;
  return timeval{static_cast<time_t>(d / event::kNanosPerSecond),
                 static_cast<suseconds_t>((d % event::kNanosPerSecond) / 1000)};
}

}  // namespace

const std::string& decisionScript() {
  static const std::string script(kScript);
  return script;
}

struct RedisStore::Conn {
  RedisStore* store = nullptr;
  WorkerClients* wc = nullptr;
  redisAsyncContext* ac = nullptr;
  bool connected = false;
  std::string sha;
  ::event* retry_ev = nullptr;
  Nanos backoff = kMinBackoff;
};

struct RedisStore::Pending {
  RedisStore* store = nullptr;
  WorkerClients* wc = nullptr;
  std::uint64_t ticket = 0;
  Callback cb = nullptr;
  void* ctx = nullptr;
  std::vector<std::string> args;  // [cmd, sha-or-script, numkeys, keys..., argv...]
  std::size_t nkeys = 0;
  ::event* timer = nullptr;
  Nanos start = 0;
  bool answered = false;  // callback delivered (reply, error or timeout)
  bool in_flight = false; // hiredis holds a callback for it
  bool retried = false;   // NOSCRIPT: resent with EVAL
  bool down = false;      // no connection: the timer fires at once with kError
};

struct RedisStore::WorkerClients {
  event_base* base = nullptr;
  std::vector<std::unique_ptr<Conn>> conns;
  std::size_t rr = 0;
  std::uint64_t next_ticket = 1;
  std::unordered_map<std::uint64_t, Pending*> pending;
  bool closing = false;
};

RedisStore::RedisStore(const config::RedisConfig& cfg, int workers, const event::Clock& clock)
    : cfg_(cfg), clock_(clock) {
  workers_.resize(static_cast<std::size_t>(workers));
}

RedisStore::~RedisStore() {
  for (auto& wc : workers_) {
    if (wc) closeWorker(*wc);
  }
}

void RedisStore::closeWorker(int worker) {
  auto& wc = workers_[static_cast<std::size_t>(worker)];
  if (wc) {
    closeWorker(*wc);
    wc.reset();
  }
}

void RedisStore::closeWorker(WorkerClients& wc) {
  wc.closing = true;
  for (auto& c : wc.conns) {
    if (c->retry_ev != nullptr) {
      event_free(c->retry_ev);
      c->retry_ev = nullptr;
    }
    if (c->ac != nullptr) {
      redisAsyncContext* ac = c->ac;
      c->ac = nullptr;
      redisAsyncFree(ac);  // runs the outstanding callbacks with no reply
    }
  }
  for (auto& [ticket, p] : wc.pending) {
    if (p->timer != nullptr) event_free(p->timer);
    delete p;
  }
  wc.pending.clear();
}

RedisStore::WorkerClients& RedisStore::clients(int worker, event_base* base) {
  auto& wc = workers_[static_cast<std::size_t>(worker)];
  if (!wc) {
    wc = std::make_unique<WorkerClients>();
    wc->base = base;
    for (int i = 0; i < std::max(1, cfg_.pool_size); ++i) {
      auto c = std::make_unique<Conn>();
      c->store = this;
      c->wc = wc.get();
      c->retry_ev = event_new(base, -1, 0, &RedisStore::onRetry, c.get());
      connect(*c);
      wc->conns.push_back(std::move(c));
    }
  }
  return *wc;
}

void RedisStore::connect(Conn& c) {
  c.connected = false;
  c.sha.clear();
  redisAsyncContext* ac = redisAsyncConnect(cfg_.address.host.c_str(), cfg_.address.port);
  if (ac == nullptr || ac->err != 0) {
    if (ac != nullptr) redisAsyncFree(ac);
    timeval tv = toTimeval(c.backoff);
    event_add(c.retry_ev, &tv);
    c.backoff = std::min(kMaxBackoff, c.backoff * 2);
    return;
  }
  ac->data = &c;
  redisLibeventAttach(ac, c.wc->base);
  redisAsyncSetConnectCallback(ac, &RedisStore::onConnect);
  redisAsyncSetDisconnectCallback(ac, &RedisStore::onDisconnect);
  c.ac = ac;
}

void RedisStore::onConnect(const redisAsyncContext* ac, int status) {
  auto* c = static_cast<Conn*>(ac->data);
  if (c == nullptr) return;
  if (status != REDIS_OK) {
    // hiredis frees the context after this callback.
    c->ac = nullptr;
    if (!c->wc->closing) {
      timeval tv = toTimeval(c->backoff);
      event_add(c->retry_ev, &tv);
      c->backoff = std::min(kMaxBackoff, c->backoff * 2);
    }
    return;
  }
  c->connected = true;
  c->backoff = kMinBackoff;
  const char* argv[] = {"SCRIPT", "LOAD", kScript};
  const size_t lens[] = {6, 4, std::strlen(kScript)};
  redisAsyncCommandArgv(c->ac, &RedisStore::onScriptLoaded, c, 3, argv, lens);
  event::log(event::LogLevel::kInfo, "redis connected",
             {{"addr", c->store->cfg_.address.toString()}});
}

void RedisStore::onScriptLoaded(redisAsyncContext* ac, void* reply, void* privdata) noexcept {
  auto* c = static_cast<Conn*>(privdata);
  auto* r = static_cast<redisReply*>(reply);
  if (ac->data == nullptr || r == nullptr) return;
  if (r->type == REDIS_REPLY_STRING) c->sha.assign(r->str, r->len);
}

void RedisStore::onDisconnect(const redisAsyncContext* ac, int) {
  auto* c = static_cast<Conn*>(ac->data);
  if (c == nullptr) return;
  c->ac = nullptr;  // hiredis frees it
  c->connected = false;
  c->sha.clear();
  if (c->wc->closing) return;
  event::log(event::LogLevel::kWarn, "redis disconnected",
             {{"addr", c->store->cfg_.address.toString()}});
  timeval tv = toTimeval(c->backoff);
  event_add(c->retry_ev, &tv);
  c->backoff = std::min(kMaxBackoff, c->backoff * 2);
}

void RedisStore::onRetry(evutil_socket_t, short, void* arg) noexcept {
  auto* c = static_cast<Conn*>(arg);
  if (c->ac == nullptr && !c->wc->closing) c->store->connect(*c);
}

std::uint64_t RedisStore::decide(int worker, event_base* base, std::vector<KeyRequest> keys,
                                 Callback cb, void* ctx, Nanos now) {
  WorkerClients& wc = clients(worker, base);
  auto* p = new Pending();
  p->store = this;
  p->wc = &wc;
  p->ticket = wc.next_ticket++;
  p->cb = cb;
  p->ctx = ctx;
  p->start = now;
  p->nkeys = keys.size();
  p->args.reserve(3 + keys.size() * 3);
  p->args.emplace_back("EVALSHA");
  p->args.emplace_back();
  p->args.push_back(std::to_string(keys.size()));
  for (const auto& k : keys) p->args.push_back(k.key);
  for (const auto& k : keys) {
    p->args.push_back(std::to_string(k.interval_us));
    p->args.push_back(std::to_string(k.tolerance_us));
  }
  wc.pending[p->ticket] = p;
  // A connected connection, round-robin.
  Conn* conn = nullptr;
  for (std::size_t i = 0; i < wc.conns.size(); ++i) {
    Conn* c = wc.conns[(wc.rr + i) % wc.conns.size()].get();
    if (c->connected && c->ac != nullptr) {
      conn = c;
      wc.rr = (wc.rr + i + 1) % wc.conns.size();
      break;
    }
  }
  const std::uint64_t ticket = p->ticket;
  p->timer = evtimer_new(wc.base, &RedisStore::onTimeout, p);
  if (conn == nullptr || !send(*conn, p, !conn->sha.empty())) {
    // Redis is down: on_store_error applies at once, but never from inside
    // decide() itself (the caller is still setting up its side).
    p->down = true;
    event_active(p->timer, EV_TIMEOUT, 0);
    return ticket;
  }
  timeval tv = toTimeval(cfg_.timeout.nanos);
  evtimer_add(p->timer, &tv);
  return ticket;
}

bool RedisStore::send(Conn& c, Pending* p, bool by_sha) {
  if (by_sha) {
    p->args[0] = "EVALSHA";
    p->args[1] = c.sha;
  } else {
    p->args[0] = "EVAL";
    p->args[1] = kScript;
  }
  std::vector<const char*> argv;
  std::vector<size_t> lens;
  argv.reserve(p->args.size());
  lens.reserve(p->args.size());
  for (const auto& a : p->args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  if (redisAsyncCommandArgv(c.ac, &RedisStore::onReply, p, static_cast<int>(argv.size()),
                            argv.data(), lens.data()) != REDIS_OK) {
    return false;
  }
  p->in_flight = true;
  return true;
}

void RedisStore::onTimeout(evutil_socket_t, short, void* arg) noexcept {
  auto* p = static_cast<Pending*>(arg);
  Reply r;
  r.result = p->down ? Result::kError : Result::kTimeout;
  p->store->finish(p, r);
}

void RedisStore::finish(Pending* p, const Reply& r) {
  if (!p->answered) {
    p->answered = true;
    if (p->cb != nullptr && !p->wc->closing) {
      Reply out = r;
      out.took = p->store->clock_.now() - p->start;
      p->cb(p->ctx, out);
    }
  }
  if (p->in_flight) return;  // hiredis still holds it; freed in onReply
  if (p->timer != nullptr) event_free(p->timer);
  p->wc->pending.erase(p->ticket);
  delete p;
}

void RedisStore::onReply(redisAsyncContext* ac, void* reply, void* privdata) noexcept {
  auto* p = static_cast<Pending*>(privdata);
  p->in_flight = false;
  auto* r = static_cast<redisReply*>(reply);
  if (p->wc->closing) return;  // closeWorker frees it
  Reply out;
  out.result = Result::kError;
  if (r != nullptr && r->type == REDIS_REPLY_ERROR && !p->retried && ac->data != nullptr &&
      std::strncmp(r->str, "NOSCRIPT", 8) == 0 && !p->answered) {
    // The script cache was flushed: send the script itself (which caches it
    // again) and reload it for the next requests.
    auto* c = static_cast<Conn*>(ac->data);
    p->retried = true;
    c->sha.clear();
    const char* argv[] = {"SCRIPT", "LOAD", kScript};
    const size_t lens[] = {6, 4, std::strlen(kScript)};
    redisAsyncCommandArgv(c->ac, &RedisStore::onScriptLoaded, c, 3, argv, lens);
    if (p->store->send(*c, p, false)) return;
  }
  if (r != nullptr && r->type == REDIS_REPLY_ARRAY && r->elements == 1 + 4 * p->nkeys) {
    out.result = Result::kOk;
    out.allowed = r->element[0]->integer == 1;
    for (std::size_t i = 0; i < p->nkeys; ++i) {
      KeyReply k;
      k.admitted = r->element[1 + 4 * i]->integer == 1;
      k.remaining = r->element[2 + 4 * i]->integer;
      k.wait_us = r->element[3 + 4 * i]->integer;
      k.full_in_us = r->element[4 + 4 * i]->integer;
      out.keys.push_back(k);
    }
  }
  p->store->finish(p, out);
}

void RedisStore::cancel(int worker, std::uint64_t ticket) {
  auto& wc = workers_[static_cast<std::size_t>(worker)];
  if (!wc) return;
  auto it = wc->pending.find(ticket);
  if (it == wc->pending.end()) return;
  Pending* p = it->second;
  p->answered = true;  // never call back
  if (p->timer != nullptr) event_del(p->timer);
  if (!p->in_flight) {
    if (p->timer != nullptr) event_free(p->timer);
    wc->pending.erase(it);
    delete p;
  }
}

}  // namespace sluice::store
