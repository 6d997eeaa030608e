#pragma once
// YAML -> validated, immutable Config (SPEC §2). The loader reports every
// error it finds in one pass, each positioned at the offending YAML node, and
// never lets a yaml-cpp exception escape.

#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.h"

namespace sluice::config {

struct ConfigError {
  std::string file;
  int line = 0;    // 1-based; 0 when the error has no position (unreadable file)
  int column = 0;  // 1-based
  std::string message;

  // "FILE:LINE:COLUMN: message" (SPEC §1); "FILE: message" when line is 0.
  std::string toString() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // set exactly when errors is empty
  std::vector<ConfigError> errors;       // ordered by line, then column

  bool ok() const { return errors.empty(); }
};

// Reads and validates the YAML file at `path`; Config::file is `path`.
LoadResult loadConfigFile(const std::string& path);

// Validates YAML text; `file_name` is used in errors and as Config::file.
LoadResult loadConfigString(const std::string& yaml, const std::string& file_name);

}  // namespace sluice::config
