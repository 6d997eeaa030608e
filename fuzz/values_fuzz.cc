// The config value parsers of SPEC §2 (durations, sizes, rates) on arbitrary
// text: no crash, no UB, and what they accept is well formed and survives a
// round trip through its display form.

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "proxy/config/values.h"

namespace {

using namespace sluice::config;  // NOLINT(google-build-using-namespace)

void checkDuration(std::string_view text) {
  const auto parsed = parseDuration(text);
  FUZZ_CHECK(parsed.value.has_value() == parsed.error.empty());
  if (!parsed) return;
  FUZZ_CHECK(parsed.value->nanos >= 0);
  const auto again = parseDuration(parsed.value->toString());
  FUZZ_CHECK(again.value == parsed.value);
}

void checkSize(std::string_view text) {
  const auto parsed = parseSize(text);
  FUZZ_CHECK(parsed.value.has_value() == parsed.error.empty());
  if (!parsed) return;
  const auto again = parseSize(std::to_string(*parsed.value));
  FUZZ_CHECK(again.value == parsed.value);
}

void checkRate(std::string_view text) {
  const auto parsed = parseRate(text);
  FUZZ_CHECK(parsed.value.has_value() == parsed.error.empty());
  if (!parsed) return;
  const Rate& rate = *parsed.value;
  FUZZ_CHECK(rate.count > 0 && std::isfinite(rate.count));
  FUZZ_CHECK(rate.period_seconds == 1 || rate.period_seconds == 60 || rate.period_seconds == 3600);
  // `sluice explain` prints toString(): it must be config syntax again. A
  // count that rounds to 2^64 or more prints a whole part the parser cannot
  // hold (it reads whole parts as uint64), so absurd rates are left out.
  if (rate.count < 1.8e19) {
    const auto again = parseRate(rate.toString());
    FUZZ_CHECK(again.value == parsed.value);
  }
}

}  // namespace

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  checkDuration(text);
  checkSize(text);
  checkRate(text);
  return 0;
}
