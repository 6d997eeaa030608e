#pragma once
// Route matching (SPEC §2 routes, §3 step 2): first route whose path_prefix,
// host and methods all match wins. Pure; no sockets.

#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"

namespace sluice::routing {

struct Route {
  std::string name;
  std::string path_prefix;
  std::string host;  // lower-case, "" = any
  std::vector<std::string> methods;  // upper-case, empty = any
  std::size_t index = 0;  // position in the config
};

class RouteTable {
 public:
  explicit RouteTable(const std::vector<config::RouteConfig>& routes);

  // The first matching route, or nullptr (404). `host` may carry a port,
  // which is ignored; `path` is the URL path without the query string.
  const Route* match(std::string_view path, std::string_view host,
                     std::string_view method) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

// Host header value without the port, e.g. "[::1]:80" -> "[::1]".
std::string_view stripPort(std::string_view host);

// The path part of a request target: origin-form up to '?', or the path of
// an absolute-form URL.
std::string_view requestPath(std::string_view target);

}  // namespace sluice::routing
