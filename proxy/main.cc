// flags -> App -> exit code; nothing else.
#include <cstdio>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/app/app.h"
#include "proxy/app/explain.h"
#include "proxy/config/loader.h"
#include "proxy/event/log.h"
#include "proxy/version.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: sluice --config FILE [--log-level debug|info|warn|error]\n"
               "       sluice --check-config FILE\n"
               "       sluice --version\n"
               "       sluice explain --config FILE [--peer IP] [-H \"Name: value\"]... METHOD URL\n");
  return 2;
}

int printErrors(const sluice::config::LoadResult& r) {
  for (const auto& e : r.errors) std::printf("%s\n", e.toString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string_view(argv[1]) == "explain") {
    return sluice::app::explainMain(std::vector<std::string>(argv + 2, argv + argc));
  }
  std::string config_path;
  std::string check_path;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    if (arg == "--version") {
      std::printf("sluice %s\n", sluice::kVersion);
      return 0;
    } else if (arg == "--config") {
      if (!value(&config_path)) return usage();
    } else if (arg == "--check-config") {
      if (!value(&check_path)) return usage();
    } else if (arg == "--log-level") {
      std::string level;
      sluice::event::LogLevel parsed;
      if (!value(&level) || !sluice::event::parseLogLevel(level, &parsed)) return usage();
      sluice::event::setLogLevel(parsed);
    } else {
      return usage();
    }
  }
  if (!check_path.empty()) {
    auto r = sluice::app::loadChecked(check_path);
    if (!r.ok()) return printErrors(r);
    std::printf("ok\n");
    return 0;
  }
  if (config_path.empty()) return usage();
  auto r = sluice::app::loadChecked(config_path);
  if (!r.ok()) {
    for (const auto& e : r.errors) std::fprintf(stderr, "%s\n", e.toString().c_str());
    return 1;
  }
  sluice::app::App app(config_path, r.config);
  return app.run();
}
