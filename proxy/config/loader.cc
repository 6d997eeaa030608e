#include "proxy/config/loader.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "proxy/config/document.h"
#include "proxy/config/reader.h"
#include "proxy/config/sections.h"

namespace sluice::config {
namespace {

constexpr std::string_view kRootKeys[] = {"server", "clients", "upstreams", "limits",
                                          "redis",  "limiter", "routes",    "tls"};

// The sections in the order they are read, then the checks across them.
void loadRoot(Reader& reader, const YAML::Node& root, Draft& draft) {
  MapView view = reader.openMap(Entry{"", root, YAML::Mark()}, kRootKeys, /*is_root=*/true);
  if (!view.valid) return;
  Config& config = draft.config;
  if (const Entry* e = view.find("server")) loadServer(reader, *e, config.server);
  if (const Entry* e = view.find("clients")) loadClients(reader, *e, config.clients);
  if (const Entry* e = reader.require(view, "upstreams")) loadUpstreams(reader, *e, draft);
  if (const Entry* e = view.find("limits")) loadLimits(reader, *e, draft);
  if (const Entry* e = view.find("redis")) loadRedis(reader, *e, config.redis);
  if (const Entry* e = view.find("limiter")) loadLimiter(reader, *e, config.limiter);
  if (const Entry* e = reader.require(view, "routes")) loadRoutes(reader, *e, draft);
  const Entry* tls = view.find("tls");
  if (tls != nullptr) loadTls(reader, *tls, config.tls);
  if (config.server.tls_listen && config.tls.certificates.empty()) {
    const Entry* server = view.find("server");
    reader.error(tls != nullptr ? *tls : *server,
                 "server.tls_listen needs at least one entry in tls.certificates");
  }
  checkReferences(reader, draft);
}

LoadResult load(const std::string& yaml, const std::string& file_name) {
  Reader reader(file_name);
  Draft draft;
  draft.config.file = file_name;
  loadDocument(yaml, reader, [&](const YAML::Node& root) { loadRoot(reader, root, draft); });
  LoadResult result;
  result.errors = reader.takeErrors();
  if (result.errors.empty()) {
    result.config = std::make_shared<const Config>(std::move(draft.config));
  }
  return result;
}

}  // namespace

std::string ConfigError::toString() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

LoadResult loadConfigString(const std::string& yaml, const std::string& file_name) {
  try {
    return load(yaml, file_name);
  } catch (...) {
    // Only allocation failure can get here; still no exception escapes.
    LoadResult result;
    result.errors.push_back(ConfigError{file_name, 0, 0, "cannot load the config: out of memory"});
    return result;
  }
}

LoadResult loadConfigFile(const std::string& path) {
  auto fail = [&](const std::string& message) {
    LoadResult result;
    result.errors.push_back(ConfigError{path, 0, 0, message});
    return result;
  };
  try {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec))
      return fail("cannot read the config: is a directory");
    std::ifstream in(path, std::ios::binary);
    if (!in) return fail(std::string("cannot open the config: ") + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) return fail(std::string("cannot read the config: ") + std::strerror(errno));
    return loadConfigString(text.str(), path);
  } catch (const std::exception& e) {
    return fail(std::string("cannot read the config: ") + e.what());
  }
}

}  // namespace sluice::config
