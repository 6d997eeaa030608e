#pragma once
// Real message bytes parsed into a MessageHead, for the tests of the pure
// functions that take one (head rewriting, request checks).

#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <utility>

#include "proxy/http/message_parser.h"

namespace sluice::http::testing {

// The bytes and the head parsed from them (offsets point into `bytes`).
struct ParsedHead {
  std::string bytes;
  MessageHead head;
  ParseEvent event = ParseEvent::kNeedMore;  // what the one feed() stopped at
  std::uint32_t consumed = 0;
};

// Feeds all of `bytes` to a fresh parser of `type` in one read.
inline ParsedHead parseHead(std::string bytes, llhttp_type_t type = HTTP_REQUEST) {
  ParsedHead p;
  p.bytes = std::move(bytes);
  MessageParser parser(type);
  parser.beginMessage(0);
  const auto r = parser.feed(p.bytes.data(), 0, static_cast<std::uint32_t>(p.bytes.size()));
  p.head = parser.head();
  p.event = r.event;
  p.consumed = static_cast<std::uint32_t>(r.consumed);
  return p;
}

// Test names for a table whose rows have a `name` (INSTANTIATE_TEST_SUITE_P).
template <typename Case>
std::string caseName(const ::testing::TestParamInfo<Case>& row) {
  return row.param.name;
}

}  // namespace sluice::http::testing
