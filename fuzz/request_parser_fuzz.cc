// Request head parsing and framing: pipelined requests split at
// fuzzer-chosen read boundaries (see http_stream.h for the checks).

#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.h"
#include "fuzz/http_stream.h"

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = sluice::fuzz::StreamInput::from(data, size);
  sluice::fuzz::ReadSchedule schedule(in.max_read, in.seed);
  sluice::fuzz::runRequestStream(in.bytes, schedule);
  return 0;
}
