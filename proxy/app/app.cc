#include "proxy/app/app.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "proxy/admission/limiter_admission.h"
#include "proxy/config/loader.h"
#include "proxy/event/log.h"
#include "proxy/server/http1_session.h"
#include "proxy/tls/files.h"
#include "proxy/transport/socket_address.h"
#include "proxy/version.h"

namespace sluice::app {
namespace {

using event::LogLevel;

int workerCount(const config::Config& cfg) {
  if (cfg.server.workers > 0) return cfg.server.workers;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

}  // namespace

config::LoadResult loadChecked(const std::string& path) {
  config::LoadResult result = config::loadConfigFile(path);
  if (!result.ok()) return result;
  result.errors = tls::checkFiles(*result.config);
  if (!result.errors.empty()) result.config = nullptr;
  return result;
}

std::shared_ptr<const exchange::Runtime> buildRuntime(std::shared_ptr<const config::Config> cfg,
                                                      const exchange::Runtime* previous,
                                                      metrics::Registry* registry,
                                                      std::shared_ptr<store::RedisStore> store,
                                                      int workers, event::Nanos now,
                                                      std::string* error) {
  auto rt = std::make_shared<exchange::Runtime>(cfg);
  for (const auto& up : cfg->upstreams) {
    std::shared_ptr<upstream::SharedPool> pool;
    if (previous != nullptr) {
      // Pools of unchanged upstreams keep their connections across a reload.
      for (std::size_t i = 0; i < previous->config->upstreams.size(); ++i) {
        const auto& old = previous->config->upstreams[i];
        if (old.name == up.name && old.targets == up.targets &&
            old.max_connections == up.max_connections && old.max_pending == up.max_pending &&
            old.pending_timeout == up.pending_timeout &&
            old.connect_timeout == up.connect_timeout && old.tls == up.tls &&
            old.tls_ca == up.tls_ca && old.tls_server_name == up.tls_server_name &&
            old.response_timeout == up.response_timeout && old.idle_timeout == up.idle_timeout) {
          pool = previous->pools[i];
        }
      }
    }
    if (!pool) pool = upstream::SharedPool::create(up, error);
    if (!pool) return nullptr;
    rt->pools.push_back(std::move(pool));
    rt->pool_stats.push_back(registry->upstream(up.name));
  }
  if (cfg->server.tls_listen) {
    rt->tls = tls::ServerTls::create(cfg->tls, error);
    if (!rt->tls) return nullptr;
  }
  rt->admission = admission::makeAdmission(*cfg, previous ? previous->admission.get() : nullptr,
                                           std::move(store), registry->store(), workers, now);
  if (!cfg->server.access_log.empty()) {
    const bool json = cfg->server.access_log_format == "json";
    if (previous != nullptr && previous->access_log &&
        previous->access_log->target() == cfg->server.access_log &&
        previous->access_log->json() == json) {
      rt->access_log = previous->access_log;
    } else {
      rt->access_log = std::make_shared<event::AccessLog>(cfg->server.access_log, json);
    }
  }
  rt->unmatched_stats = registry->route("unmatched");
  for (const auto& route : cfg->routes) {
    exchange::RouteRuntime rr;
    for (std::size_t i = 0; i < cfg->upstreams.size(); ++i) {
      if (cfg->upstreams[i].name == route.upstream) {
        rr.pool = rt->pools[i].get();
        rr.pool_index = i;
      }
    }
    rr.limits = admission::compileRouteLimits(*cfg, route);
    rr.stats = registry->route(route.name.empty() ? route.path_prefix : route.name);
    rr.tunnels = registry->tunnels(rr.stats->name());
    rt->route_runtime.push_back(std::move(rr));
  }
  return rt;
}

App::App(std::string config_path, std::shared_ptr<const config::Config> cfg)
    : config_path_(std::move(config_path)), cfg_(std::move(cfg)), shared_(clock_) {}

App::~App() {
  for (::event* e : signal_events_) event_free(e);
  if (drain_ev_ != nullptr) event_free(drain_ev_);
  if (sweep_ev_ != nullptr) event_free(sweep_ev_);
  if (admin_ != nullptr) evhttp_free(admin_);
  workers_.clear();
  if (base_ != nullptr) event_base_free(base_);
}

int App::run() {
  evthread_use_pthreads();
  signal(SIGPIPE, SIG_IGN);
  std::string error;
  const int n = workerCount(*cfg_);
  metrics_ = std::make_unique<metrics::Registry>(n, kVersion);
  shared_.metrics = metrics_.get();
  worker_count_ = n;
  shared_.on_worker_stop = [this](int worker) {
    std::lock_guard lock(stores_mu_);
    for (auto& s : stores_) s->closeWorker(worker);
  };
  runtime_ = buildRuntime(cfg_, nullptr, metrics_.get(), storeFor(*cfg_), n, clock_.now(), &error);
  if (!runtime_) {
    event::log(LogLevel::kError, "cannot start", {{"error", error}});
    return 1;
  }
  base_ = event_base_new();
  shared_.max_connections.store(cfg_->server.max_connections);

  metrics_->configLoaded(clock_.wallSeconds());
  for (int i = 0; i < n; ++i) {
    workers_.push_back(std::make_unique<server::Worker>(i, shared_, runtime_));
    shared_.workers.push_back(workers_.back().get());
  }
  const bool tls = cfg_->server.tls_listen.has_value();
  const bool plain = cfg_->server.cleartext;
  if ((plain && !bindAll(server::ListenerKind::kPlain, cfg_->server.listen, false, &bound_listen_,
                         &error)) ||
      (tls && !bindAll(server::ListenerKind::kTls, *cfg_->server.tls_listen, false, &bound_tls_,
                       &error))) {
    event::log(LogLevel::kError, "cannot listen", {{"error", error}});
    return 1;
  }

  admin_ = evhttp_new(base_);
  evhttp_set_gencb(admin_, &App::onAdminRequest, this);
  evhttp_set_allowed_methods(admin_, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
  const auto& admin_addr = cfg_->server.admin_listen;
  evhttp_bound_socket* admin_sock =
      evhttp_bind_socket_with_handle(admin_, admin_addr.host.c_str(), admin_addr.port);
  admin_sock_ = admin_sock;
  if (admin_sock == nullptr) {
    event::log(
        LogLevel::kError, "cannot listen",
        {{"listener", "admin"}, {"addr", admin_addr.toString()}, {"error", std::strerror(errno)}});
    return 1;
  }
  const int admin_port = transport::boundPort(evhttp_bound_socket_get_fd(admin_sock));

  for (int sig : {SIGHUP, SIGTERM, SIGINT, SIGUSR1}) {
    ::event* e = evsignal_new(base_, sig, &App::onSignal, this);
    event_add(e, nullptr);
    signal_events_.push_back(e);
  }
  connectStore(storeFor(*cfg_));
  for (auto& w : workers_) w->start();
  sweep_ev_ = event_new(base_, -1, EV_PERSIST, &App::onSweep, this);
  timeval sweep_tv{0, static_cast<suseconds_t>(admission::kSweepTick / 1000)};
  event_add(sweep_ev_, &sweep_tv);

  if (plain) {
    event::log(LogLevel::kInfo, "listening",
               {{"listener", "proxy"},
                {"addr", bound_listen_.toString()},
                {"workers", std::to_string(n)}});
  }
  if (tls) {
    event::log(
        LogLevel::kInfo, "listening",
        {{"listener", "tls"}, {"addr", bound_tls_.toString()}, {"workers", std::to_string(n)}});
  }
  config::Address admin_shown = admin_addr;
  admin_shown.port = static_cast<std::uint16_t>(admin_port);
  event::log(LogLevel::kInfo, "listening",
             {{"listener", "admin"}, {"addr", admin_shown.toString()}});

  event_base_dispatch(base_);
  stopWorkers();
  event::log(LogLevel::kInfo, "stopped", {{"exit_code", std::to_string(exit_code_)}});
  return exit_code_;
}

void App::onSignal(evutil_socket_t sig, short, void* arg) noexcept {
  auto* app = static_cast<App*>(arg);
  switch (sig) {
    case SIGHUP:
      app->reload();
      break;
    case SIGTERM:
    case SIGINT:
      if (app->draining_) {
        // A second signal: stop now.
        event::log(LogLevel::kWarn, "second signal, exiting now");
        event_base_loopbreak(app->base_);
      } else {
        app->beginDrain();
      }
      break;
    case SIGUSR1:
      // logrotate renamed the file: write to a new one at the same path.
      if (app->runtime_->access_log) app->runtime_->access_log->reopen();
      break;
    default:
      break;
  }
}

void App::reload() {
  auto result = loadChecked(config_path_);
  if (!result.errors.empty()) {
    for (const auto& e : result.errors) {
      event::log(LogLevel::kError, "reload failed", {{"error", e.toString()}});
    }
    metrics_->reloadFailed();
    return;
  }
  std::string error;
  auto store = storeFor(*result.config);
  connectStore(store);  // before the new runtime reaches the workers (same inbox, in order)
  auto rt = buildRuntime(result.config, runtime_.get(), metrics_.get(), store, worker_count_,
                         clock_.now(), &error);
  if (!rt || !rebindListeners(*result.config, &error)) {
    event::log(LogLevel::kError, "reload failed", {{"error", error}});
    metrics_->reloadFailed();
    return;
  }
  metrics_->reloadSucceeded(clock_.wallSeconds());
  runtime_ = rt;
  cfg_ = result.config;
  shared_.max_connections.store(cfg_->server.max_connections);
  for (auto& w : workers_) {
    server::InboxMessage m;
    m.kind = server::InboxMessage::Kind::kRuntime;
    m.runtime = rt;
    w->post(std::move(m));
  }
  event::log(LogLevel::kInfo, "config reloaded", {{"file", config_path_}});
}

void App::connectStore(const std::shared_ptr<store::RedisStore>& store) {
  if (!store) return;
  for (auto& w : workers_) {
    server::InboxMessage m;
    m.kind = server::InboxMessage::Kind::kRun;
    m.run = [store](server::Worker& worker) { store->connectWorker(worker.id(), worker.base()); };
    w->post(std::move(m));
  }
}

std::shared_ptr<store::RedisStore> App::storeFor(const config::Config& cfg) {
  bool needed = false;
  for (const auto& l : cfg.limits) needed = needed || l.store == config::StoreKind::kRedis;
  if (!cfg.redis || !needed) return nullptr;
  const config::RedisConfig& r = *cfg.redis;
  std::lock_guard lock(stores_mu_);
  if (!stores_.empty()) {
    const config::RedisConfig& last = stores_.back()->config();
    if (last.address == r.address && last.timeout == r.timeout && last.pool_size == r.pool_size &&
        last.key_prefix == r.key_prefix) {
      return stores_.back();
    }
  }
  stores_.push_back(std::make_shared<store::RedisStore>(r, worker_count_, clock_));
  return stores_.back();
}

bool App::rebindListeners(const config::Config& next, std::string* error) {
  const auto& cur = cfg_->server;
  if (!(next.server.admin_listen == cur.admin_listen)) {
    const auto& a = next.server.admin_listen;
    evhttp_bound_socket* fresh = evhttp_bind_socket_with_handle(admin_, a.host.c_str(), a.port);
    if (fresh == nullptr) {
      *error = "cannot listen on " + a.toString() + ": " + std::strerror(errno);
      return false;
    }
    if (admin_sock_ != nullptr) evhttp_del_accept_socket(admin_, admin_sock_);
    admin_sock_ = fresh;
    config::Address shown = a;
    shown.port =
        static_cast<std::uint16_t>(transport::boundPort(evhttp_bound_socket_get_fd(fresh)));
    event::log(LogLevel::kInfo, "listening", {{"listener", "admin"}, {"addr", shown.toString()}});
  }
  if (!next.server.cleartext && cur.cleartext) {
    for (auto& w : workers_) w->unbind(server::ListenerKind::kPlain);
  } else if (next.server.cleartext && (!cur.cleartext || !(next.server.listen == cur.listen))) {
    if (!bindAll(server::ListenerKind::kPlain, next.server.listen, true, &bound_listen_, error)) {
      return false;
    }
    event::log(LogLevel::kInfo, "listening",
               {{"listener", "proxy"}, {"addr", bound_listen_.toString()}});
  }
  if (next.server.tls_listen != cur.tls_listen) {
    if (!next.server.tls_listen) {
      for (auto& w : workers_) w->unbind(server::ListenerKind::kTls);
    } else if (!bindAll(server::ListenerKind::kTls, *next.server.tls_listen, true, &bound_tls_,
                        error)) {
      return false;
    } else {
      event::log(LogLevel::kInfo, "listening",
                 {{"listener", "tls"}, {"addr", bound_tls_.toString()}});
    }
  }
  return true;
}

bool App::bindAll(server::ListenerKind kind, config::Address addr, bool rebind,
                  config::Address* bound, std::string* error) {
  // On reload the new listeners come first, then the old ones close: no
  // refused connection. Port 0: every worker shares the first worker's pick.
  for (auto& w : workers_) {
    const int port = rebind ? w->rebind(addr, kind, error) : w->listen(addr, kind, error);
    if (port < 0) return false;
    addr.port = static_cast<std::uint16_t>(port);
  }
  *bound = addr;
  return true;
}

void App::beginDrain() {
  draining_ = true;
  shared_.draining.store(true);
  event::log(LogLevel::kInfo, "draining",
             {{"grace", std::to_string(cfg_->server.shutdown_grace.nanos / 1000000) + "ms"}});
  for (auto& w : workers_) w->post(server::InboxMessage::of(server::InboxMessage::Kind::kDrain));
  drain_deadline_ = shared_.clock.now() + cfg_->server.shutdown_grace.nanos;
  drain_ev_ = event_new(base_, -1, EV_PERSIST, &App::onDrainTick, this);
  timeval tv{0, 50 * 1000};
  event_add(drain_ev_, &tv);
}

void App::onSweep(evutil_socket_t, short, void* arg) noexcept {
  auto* app = static_cast<App*>(arg);
  if (app->runtime_->admission) app->runtime_->admission->sweep(app->shared_.clock.now());
}

void App::onDrainTick(evutil_socket_t, short, void* arg) noexcept {
  auto* app = static_cast<App*>(arg);
  if (app->shared_.client_connections.load() == 0 ||
      app->shared_.clock.now() >= app->drain_deadline_) {
    event_base_loopexit(app->base_, nullptr);
  }
}

void App::stopWorkers() {
  for (auto& w : workers_) w->post(server::InboxMessage::of(server::InboxMessage::Kind::kStop));
  for (auto& w : workers_) w->join();
}

void App::onAdminRequest(evhttp_request* req, void* arg) noexcept {
  auto* app = static_cast<App*>(arg);
  const char* uri = evhttp_request_get_uri(req);
  evhttp_uri* parsed = evhttp_uri_parse(uri);
  std::string path = parsed != nullptr && evhttp_uri_get_path(parsed) != nullptr
                         ? evhttp_uri_get_path(parsed)
                         : "/";
  if (parsed != nullptr) evhttp_uri_free(parsed);
  evbuffer* body = evbuffer_new();
  evkeyvalq* out = evhttp_request_get_output_headers(req);
  int code = 200;
  const char* reason = "OK";
  if (path == "/metrics") {
    metrics::ScrapeInput in;
    in.client_connections = app->shared_.client_connections.load();
    if (app->runtime_->tls) {
      for (const tls::CertificateInfo& c : app->runtime_->tls->certificates()) {
        in.certificates.push_back({c.name, static_cast<double>(c.not_after)});
      }
    }
    const auto& rt = app->runtime_;
    for (std::size_t i = 0; i < rt->pools.size(); ++i) {
      const auto& p = rt->pools[i];
      std::int64_t idle = p->idle.load();
      in.pools.push_back(
          {p->name(), std::max<std::int64_t>(0, p->open() - idle), idle, p->pending()});
    }
    if (rt->admission) rt->admission->sample(&in.limits);
    std::string text = app->metrics_->render(in);
    evhttp_add_header(out, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    evbuffer_add(body, text.data(), text.size());
  } else if (path == "/limits") {
    evkeyvalq params{};
    const char* query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    std::string name;
    std::size_t top = 10;
    if (query != nullptr && evhttp_parse_query_str(query, &params) == 0) {
      if (const char* v = evhttp_find_header(&params, "limit")) name = v;
      if (const char* v = evhttp_find_header(&params, "top")) {
        top = static_cast<std::size_t>(std::clamp(std::atol(v), 1L, 1000L));
      }
    }
    evhttp_clear_headers(&params);
    std::string json;
    const auto& rt = app->runtime_;
    if (rt->admission && rt->admission->topKeys(name, top, app->shared_.clock.now(), &json)) {
      evhttp_add_header(out, "Content-Type", "application/json");
      evbuffer_add(body, json.data(), json.size());
    } else {
      code = 404;
      reason = "Not Found";
      evhttp_add_header(out, "Content-Type", "application/json");
      evbuffer_add_printf(body, "{\"error\":\"unknown limit\"}\n");
    }
  } else if (path == "/healthz") {
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(body, "ok\n");
  } else if (path == "/readyz") {
    evhttp_add_header(out, "Content-Type", "text/plain");
    if (app->draining_) {
      code = 503;
      reason = "Service Unavailable";
      evbuffer_add_printf(body, "draining\n");
    } else {
      evbuffer_add_printf(body, "ready\n");
    }
  } else {
    code = 404;
    reason = "Not Found";
    evhttp_add_header(out, "Content-Type", "text/plain");
    evbuffer_add_printf(body, "not found\n");
  }
  evhttp_send_reply(req, code, reason, body);
  evbuffer_free(body);
}

}  // namespace sluice::app
