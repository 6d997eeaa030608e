// The YAML config loader on arbitrary text: it never throws, never crashes,
// and answers either a config or a non-empty list of positioned errors,
// sorted by line and column (proxy/config/loader.h).

#include <cstddef>
#include <cstdint>
#include <string>
#include <tuple>

#include "fuzz/fuzz_util.h"
#include "proxy/config/loader.h"

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string yaml(reinterpret_cast<const char*>(data), size);
  const auto result = sluice::config::loadConfigString(yaml, "fuzz.yaml");
  FUZZ_CHECK((result.config != nullptr) == result.errors.empty());
  for (std::size_t i = 0; i < result.errors.size(); ++i) {
    const auto& e = result.errors[i];
    FUZZ_CHECK(e.line >= 0 && e.column >= 0);
    FUZZ_CHECK(!e.message.empty());
    FUZZ_CHECK(e.file == "fuzz.yaml");
    if (i > 0) {
      const auto& p = result.errors[i - 1];
      FUZZ_CHECK(std::tie(p.line, p.column) <= std::tie(e.line, e.column));
    }
  }
  if (result.config) FUZZ_CHECK(result.config->file == "fuzz.yaml");
  return 0;
}
