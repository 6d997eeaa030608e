// Chunked request bodies: a fixed `Transfer-Encoding: chunked` head followed
// by fuzzed bytes, read in fuzzer-chosen pieces. The decoded length never
// exceeds the bytes fed, and a body the parser accepts must frame the same
// way under a strict reading of RFC 9112 §7.1 (http_stream.h).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz/fuzz_util.h"
#include "fuzz/http_stream.h"

namespace {

constexpr std::string_view kHead =
    "POST /upload HTTP/1.1\r\nHost: example\r\nTransfer-Encoding: chunked\r\n\r\n";

}  // namespace

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = sluice::fuzz::StreamInput::from(data, size);
  std::string stream(kHead);
  stream.append(in.bytes);
  sluice::fuzz::ReadSchedule schedule(in.max_read, in.seed);
  sluice::fuzz::runRequestStream(stream, schedule);
  return 0;
}
