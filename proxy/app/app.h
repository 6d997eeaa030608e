#pragma once
// Wiring: owns the workers, the admin listener, signal handling and reload.
// Everything else is a library this folder composes.

#include <event2/event.h>
#include <event2/http.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"
#include "proxy/event/clock.h"
#include "proxy/exchange/runtime.h"
#include "proxy/server/worker.h"
#include "proxy/store/redis_store.h"

namespace sluice::app {

// The config at `path` with the files it names checked too (TLS certificates
// and keys, SPEC §9): what --check-config, start-up and SIGHUP load.
config::LoadResult loadChecked(const std::string& path);

// Compiles a validated config into a runtime snapshot. `previous` (may be
// null) donates state that survives a reload. Returns null and sets `error`.
std::shared_ptr<const exchange::Runtime> buildRuntime(
    std::shared_ptr<const config::Config> cfg, const exchange::Runtime* previous,
    metrics::Registry* registry, std::shared_ptr<store::RedisStore> store, int workers,
    event::Nanos now, std::string* error);

class App {
 public:
  App(std::string config_path, std::shared_ptr<const config::Config> cfg);
  ~App();
  App(const App&) = delete;
  App& operator=(const App&) = delete;

  // Binds listeners, starts workers, serves until SIGTERM/SIGINT. Returns the
  // process exit code.
  int run();

 private:
  static void onSignal(evutil_socket_t sig, short, void* arg) noexcept;
  static void onAdminRequest(evhttp_request* req, void* arg) noexcept;
  static void onDrainTick(evutil_socket_t, short, void* arg) noexcept;
  void reload();
  // The Redis store for `cfg` (null without a redis block); reused while the
  // redis block is unchanged. Stores live until exit.
  std::shared_ptr<store::RedisStore> storeFor(const config::Config& cfg);
  // Has every worker open its connections to `store` (posted to the loops).
  void connectStore(const std::shared_ptr<store::RedisStore>& store);
  bool rebindListeners(const config::Config& next, std::string* error);
  // Binds (or rebinds) the listener of `kind` on every worker; `*bound` is
  // the address with the port picked.
  bool bindAll(server::ListenerKind kind, config::Address addr, bool rebind,
               config::Address* bound, std::string* error);
  void beginDrain();
  void stopWorkers();

  std::string config_path_;
  std::shared_ptr<const config::Config> cfg_;
  std::shared_ptr<const exchange::Runtime> runtime_;
  event::SteadyClock clock_;  // the process's one real clock
  server::ServerShared shared_;
  std::unique_ptr<metrics::Registry> metrics_;
  std::mutex stores_mu_;
  std::vector<std::shared_ptr<store::RedisStore>> stores_;
  int worker_count_ = 1;
  std::vector<std::unique_ptr<server::Worker>> workers_;
  event_base* base_ = nullptr;
  evhttp* admin_ = nullptr;
  evhttp_bound_socket* admin_sock_ = nullptr;
  config::Address bound_listen_;  // actual address (port 0 resolved)
  config::Address bound_tls_;
  std::vector<::event*> signal_events_;
  ::event* drain_ev_ = nullptr;
  ::event* sweep_ev_ = nullptr;
  static void onSweep(evutil_socket_t, short, void* arg) noexcept;
  event::Nanos drain_deadline_ = 0;
  bool draining_ = false;
  int exit_code_ = 0;
};

}  // namespace sluice::app
