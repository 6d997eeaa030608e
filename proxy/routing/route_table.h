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
  std::string path_prefix;           // as written, or its route view (PrefixForm::kNormalized)
  std::string host;                  // lower-case, no trailing dot, "" = any
  std::vector<std::string> methods;  // upper-case, empty = any
  std::size_t index = 0;             // position in the config
};

// How path prefixes are compared. kNormalized (server.normalize_path) stores
// each prefix as http::normalizePath's route view, so `/%7Euser/` and
// `/a//b/` in the file match the normalized paths they stand for; a prefix
// that does not normalize (`/%zz`) is kept as written and matches no
// normalized path.
enum class PrefixForm { kAsWritten, kNormalized };

class RouteTable {
 public:
  explicit RouteTable(const std::vector<config::RouteConfig>& routes,
                      PrefixForm prefixes = PrefixForm::kAsWritten);

  // The first matching route, or nullptr (404). `host` is compared as
  // hostForMatching() gives it (SPEC §12); `path` is the URL path without
  // the query string (with server.normalize_path, normalizePath's route view).
  const Route* match(std::string_view path, std::string_view host, std::string_view method) const;

  const std::vector<Route>& routes() const { return routes_; }

 private:
  std::vector<Route> routes_;
};

// Host header value without the port, e.g. "[::1]:80" -> "[::1]".
std::string_view stripPort(std::string_view host);

// A Host value as routes compare it (SPEC §12; RFC 9110 §4.2.3): without the
// port and without one trailing dot (RFC 1034 §3.1 absolute name), so
// "Example.com.:8080" meets a route on example.com; case is left to the caller.
std::string_view hostForMatching(std::string_view host);

// The path part of a request target: origin-form up to '?', or the path of
// an absolute-form URL.
std::string_view requestPath(std::string_view target);

}  // namespace sluice::routing
