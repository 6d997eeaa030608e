#include "proxy/http/request_checks.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/http/parsed_head.h"

namespace sluice::http {
namespace {

using testing::caseName;
using testing::ParsedHead;
using testing::parseHead;

constexpr std::uint64_t kMaxHead = 64;  // max_header_bytes: the request line may be 32

// A GET whose method and target together are `line` bytes ("GET" + "/aaa...").
std::string requestLine(std::size_t line) {
  return "GET /" + std::string(line - 4, 'a') + " HTTP/1.1\r\n";
}

// A complete head of exactly `total` bytes: "GET / HTTP/1.1", one padded field.
std::string headOf(std::size_t total) {
  const std::string start = "GET / HTTP/1.1\r\nX: ";
  return start + std::string(total - start.size() - 4, 'v') + "\r\n\r\n";
}

// ---- headSizeStatus -------------------------------------------------------

struct SizeCase {
  const char* name;
  std::string bytes;  // fed in one read
  bool complete;      // the bytes hold the whole head
  int expected;
};

void PrintTo(const SizeCase& c, std::ostream* os) { *os << c.name; }

class HeadSizeTest : public ::testing::TestWithParam<SizeCase> {};

TEST_P(HeadSizeTest, AnswersWithTheRightStatus) {
  const SizeCase& c = GetParam();
  const ParsedHead p = parseHead(c.bytes);
  ASSERT_EQ(p.event, c.complete ? ParseEvent::kHeadComplete : ParseEvent::kNeedMore);
  EXPECT_EQ(headSizeStatus(p.head, p.consumed, c.complete, kMaxHead), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Limits, HeadSizeTest,
    ::testing::Values(
        SizeCase{"MethodAndTargetAtHalfTheLimitPass", requestLine(32) + "Host: x\r\n\r\n", true, 0},
        SizeCase{"MethodAndTargetOverHalfTheLimitAre414", requestLine(33) + "Host: x\r\n\r\n", true,
                 414},
        SizeCase{"LongRequestLineIs414WhileIncomplete", "GET /" + std::string(29, 'a'), false, 414},
        SizeCase{"RequestLineAtHalfTheLimitWaitsWhileIncomplete", "GET /" + std::string(28, 'a'),
                 false, 0},
        SizeCase{"HeadExactlyAtTheLimitPasses", headOf(64), true, 0},
        SizeCase{"HeadOneByteOverTheLimitIs431", headOf(65), true, 431},
        SizeCase{"IncompleteHeadAtTheLimitWaits", headOf(70).substr(0, 64), false, 0},
        SizeCase{"IncompleteHeadOverTheLimitIs431", headOf(70).substr(0, 65), false, 431}),
    caseName<SizeCase>);

// ---- requestHeadStatus ----------------------------------------------------

constexpr std::uint64_t kMaxBody = 100;

struct HeadCase {
  const char* name;
  const char* bytes;
  int expected;
};

void PrintTo(const HeadCase& c, std::ostream* os) { *os << c.name; }

class RequestHeadTest : public ::testing::TestWithParam<HeadCase> {};

TEST_P(RequestHeadTest, AnswersWithTheRightStatus) {
  const HeadCase& c = GetParam();
  const ParsedHead p = parseHead(c.bytes);
  ASSERT_EQ(p.event, ParseEvent::kHeadComplete) << "the parser let it through";
  EXPECT_EQ(requestHeadStatus(p.head, kMaxBody), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Checks, RequestHeadTest,
    ::testing::Values(
        HeadCase{"Http11WithOneHostPasses", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 0},
        // llhttp takes 2.0 (the h2 preface) and 0.9; neither is HTTP/1.x.
        HeadCase{"Http20Is505", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
        HeadCase{"Http09Is505", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505},
        HeadCase{"Http11WithoutHostIs400", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400},
        HeadCase{"Http11WithTwoHostsIs400", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        HeadCase{"Http10WithoutHostPasses", "GET / HTTP/1.0\r\n\r\n", 0},
        HeadCase{"Http10WithOneHostPasses", "GET / HTTP/1.0\r\nHost: x\r\n\r\n", 0},
        HeadCase{"Http10WithTwoHostsIs400", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        // llhttp completes this head and fails only at the body.
        HeadCase{"TransferEncodingNotEndingInChunkedIs400",
                 "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
        HeadCase{"ChunkedPasses",
                 "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0},
        HeadCase{"BodyExactlyAtTheLimitPasses",
                 "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", 0},
        HeadCase{"BodyOverTheLimitIs413",
                 "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 413}),
    caseName<HeadCase>);

}  // namespace
}  // namespace sluice::http
