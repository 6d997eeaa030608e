#pragma once
// Helpers shared by the config tests: load YAML text, look at its errors.

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "proxy/config/loader.h"

namespace sluice::config::testing {

// The smallest valid file: one upstream, one route.
inline constexpr const char* kMinimalYaml =
    "upstreams:\n"
    "  api:\n"
    "    targets: [127.0.0.1:9001]\n"
    "routes:\n"
    "  - path_prefix: /\n"
    "    upstream: api\n";

// Drops the newline right after R"( so that line 1 is the first YAML line.
inline std::string yaml(const char* text) {
  std::string out(text);
  if (!out.empty() && out.front() == '\n') out.erase(0, 1);
  return out;
}

// The repository root: $SLUICE_SOURCE_DIR (set by ctest), else the path
// compiled in by tests/config/CMakeLists.txt, so the binary also runs alone.
inline std::string sourceDir() {
  if (const char* dir = std::getenv("SLUICE_SOURCE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  return SLUICE_TEST_SOURCE_DIR;
}

inline LoadResult load(const std::string& text) { return loadConfigString(text, "test.yaml"); }

inline std::string describe(const std::vector<ConfigError>& errors) {
  std::string out;
  for (const ConfigError& e : errors) out += "\n  " + e.toString();
  return out;
}

// Asserts that `text` yields exactly one error, at LINE:COLUMN, whose
// message contains `fragment`.
inline void expectOnlyError(const std::string& text, int line, int column,
                            const std::string& fragment) {
  LoadResult result = load(text);
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 1u) << describe(result.errors);
  const ConfigError& e = result.errors.front();
  EXPECT_EQ(e.file, "test.yaml");
  EXPECT_EQ(e.line, line) << e.toString();
  EXPECT_EQ(e.column, column) << e.toString();
  EXPECT_NE(e.message.find(fragment), std::string::npos)
      << "message '" << e.message << "' lacks '" << fragment << "'";
}

}  // namespace sluice::config::testing
