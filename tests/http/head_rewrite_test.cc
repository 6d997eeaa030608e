#include "proxy/http/head_rewrite.h"

#include <gtest/gtest.h>

#include <string>

#include "tests/http/parsed_head.h"

namespace sluice::http {
namespace {

using testing::caseName;
using testing::ParsedHead;
using testing::parseHead;

// ---- buildUpstreamHead ----------------------------------------------------

struct UpstreamCase {
  const char* name;
  const char* request;   // what the client sent
  const char* target;    // UpstreamHeadInput::target
  bool http10;           // UpstreamHeadInput::http10
  const char* proto;     // UpstreamHeadInput::proto
  const char* expected;  // the whole head that goes upstream
};

void PrintTo(const UpstreamCase& c, std::ostream* os) { *os << c.name; }

class UpstreamHeadTest : public ::testing::TestWithParam<UpstreamCase> {};

TEST_P(UpstreamHeadTest, IsRewrittenForTheNextHop) {
  const UpstreamCase& c = GetParam();
  const ParsedHead p = parseHead(c.request);
  ASSERT_EQ(p.event, ParseEvent::kHeadComplete);
  UpstreamHeadInput in;
  in.target = c.target;
  in.http10 = c.http10;
  in.peer_text = "10.0.0.7";
  in.proto = c.proto;
  in.request_id = "rid-1";
  std::string out;
  buildUpstreamHead(p.head, p.bytes.data(), in, &out);
  EXPECT_EQ(out, c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Requests, UpstreamHeadTest,
    ::testing::Values(
        UpstreamCase{"PlainGetGainsForwardingFields",
                     "GET /a?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n", "/a?q=1",
                     false, "http",
                     "GET /a?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n"
                     "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\n"
                     "X-Forwarded-Host: example.com\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "HopByHopFieldsAreDropped",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
            "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
            "Trailer: X-T\r\nUpgrade: h2c\r\nProxy-Authorization: Basic eA==\r\n"
            "Accept: */*\r\n\r\n",
            "/", false, "http",
            "GET / HTTP/1.1\r\nHost: h\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "FieldsNamedByConnectionAreDroppedWhateverTheirCase",
            "GET / HTTP/1.1\r\nHost: h\r\nConnection: close, x-secret\r\n"
            "Connection: X-Other\r\nX-Secret: 1\r\nX-Other: 2\r\nX-Kept: 3\r\n\r\n",
            "/", false, "http",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Kept: 3\r\nX-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "OneForwardedForLineGetsThePeerAppended",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n", "/", false, "http",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 1.1.1.1, 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "SeveralForwardedForLinesAreJoinedInOrder",
            "GET / HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1\r\nHost: h\r\n"
            "X-Forwarded-For: 2.2.2.2, 3.3.3.3\r\nx-forwarded-for: 4.4.4.4\r\n\r\n",
            "/", false, "http",
            "GET / HTTP/1.1\r\nHost: h\r\n"
            "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 4.4.4.4, 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{"ClientForwardedProtoAndHostAreReplaced",
                     "GET / HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-Proto: gopher\r\n"
                     "X-Forwarded-Host: evil.example\r\n\r\n",
                     "/", false, "https",
                     "GET / HTTP/1.1\r\nHost: real.example\r\nX-Forwarded-For: 10.0.0.7\r\n"
                     "X-Forwarded-Proto: https\r\nX-Forwarded-Host: real.example\r\n"
                     "X-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "ClientRequestIdIsReplaced",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Request-Id: from-client\r\n\r\n", "/", false, "http",
            "GET / HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{"Http10ClientIsForwardedAs10WithoutForwardedHost",
                     "GET /old HTTP/1.0\r\nAccept: */*\r\n\r\n", "/old", true, "http",
                     "GET /old HTTP/1.0\r\nAccept: */*\r\nX-Forwarded-For: 10.0.0.7\r\n"
                     "X-Forwarded-Proto: http\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "ChunkedFramingIsKept",
            "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
            "Content-Type: text/plain\r\n\r\n",
            "/up", false, "http",
            "POST /up HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
            "X-Forwarded-For: 10.0.0.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n"
            "X-Request-Id: rid-1\r\nTransfer-Encoding: chunked\r\n\r\n"},
        UpstreamCase{
            "ContentLengthIsKept", "PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n", "/k",
            false, "http",
            "PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nX-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"},
        UpstreamCase{
            "TheTargetPassedInIsSentNotTheRawOne", "GET /a/../b//c HTTP/1.1\r\nHost: h\r\n\r\n",
            "/b/c", false, "http",
            "GET /b/c HTTP/1.1\r\nHost: h\r\nX-Forwarded-For: 10.0.0.7\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nX-Request-Id: rid-1\r\n\r\n"}),
    caseName<UpstreamCase>);

TEST(UpstreamHead, EveryFieldNamedByConnectionIsDropped) {
  // RFC 9110 §7.6.1: a proxy removes every field the Connection header names,
  // however many there are.
  std::string request = "GET / HTTP/1.1\r\nHost: h\r\nConnection: ";
  for (int i = 1; i <= 12; ++i) request += (i > 1 ? ", x-" : "x-") + std::to_string(i);
  request += "\r\n";
  for (int i = 1; i <= 12; ++i) request += "X-" + std::to_string(i) + ": secret\r\n";
  request += "\r\n";
  const ParsedHead p = parseHead(request);
  ASSERT_EQ(p.event, ParseEvent::kHeadComplete);
  UpstreamHeadInput in;
  in.target = "/";
  in.peer_text = "10.0.0.7";
  in.request_id = "rid-1";
  std::string out;
  buildUpstreamHead(p.head, p.bytes.data(), in, &out);
  EXPECT_EQ(out.find("secret"), std::string::npos) << out;
}

// ---- responseFraming ------------------------------------------------------

struct FramingCase {
  const char* name;
  const char* response;
  bool head_request;
  bool client_http10;
  bool close;
  ResponseFraming expected;
};

void PrintTo(const FramingCase& c, std::ostream* os) { *os << c.name; }

class ResponseFramingTest : public ::testing::TestWithParam<FramingCase> {};

TEST_P(ResponseFramingTest, MatchesRfc9112) {
  const FramingCase& c = GetParam();
  const ParsedHead p = parseHead(c.response, HTTP_RESPONSE);
  ASSERT_EQ(p.event, ParseEvent::kHeadComplete);
  const ResponseFraming f = responseFraming(p.head, c.head_request, c.client_http10, c.close);
  EXPECT_EQ(f.no_body, c.expected.no_body);
  EXPECT_EQ(f.rechunk, c.expected.rechunk);
  EXPECT_EQ(f.close, c.expected.close);
}

constexpr const char* kCloseDelimited = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n";

INSTANTIATE_TEST_SUITE_P(
    Responses, ResponseFramingTest,
    ::testing::Values(FramingCase{"ContentLengthPassesThrough",
                                  "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
                                  false,
                                  false,
                                  false,
                                  {false, false, false}},
                      FramingCase{"ChunkedPassesThrough",
                                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                  false,
                                  false,
                                  false,
                                  {false, false, false}},
                      FramingCase{"CloseDelimitedIsRechunkedFor11",
                                  kCloseDelimited,
                                  false,
                                  false,
                                  false,
                                  {false, true, false}},
                      FramingCase{"CloseDelimitedClosesAn10Client",
                                  kCloseDelimited,
                                  false,
                                  true,
                                  false,
                                  {false, false, true}},
                      FramingCase{"HeadRequestHasNoBody",
                                  "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n",
                                  true,
                                  false,
                                  false,
                                  {true, false, false}},
                      FramingCase{"HeadRequestCloseDelimitedIsNotRechunked",
                                  kCloseDelimited,
                                  true,
                                  false,
                                  false,
                                  {true, false, false}},
                      FramingCase{"NoContentHasNoBody",
                                  "HTTP/1.1 204 No Content\r\n\r\n",
                                  false,
                                  false,
                                  false,
                                  {true, false, false}},
                      FramingCase{"NotModifiedHasNoBody",
                                  "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
                                  false,
                                  false,
                                  false,
                                  {true, false, false}},
                      FramingCase{"ClosingConnectionStaysClosing",
                                  "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                                  false,
                                  false,
                                  true,
                                  {false, false, true}}),
    caseName<FramingCase>);

// ---- buildResponseHead ----------------------------------------------------

struct ResponseCase {
  const char* name;
  const char* response;  // what the upstream sent
  ResponseFraming framing;
  const char* extra_headers;
  const char* expected;  // the head the client gets
};

void PrintTo(const ResponseCase& c, std::ostream* os) { *os << c.name; }

class ResponseHeadTest : public ::testing::TestWithParam<ResponseCase> {};

TEST_P(ResponseHeadTest, IsRewrittenForTheClient) {
  const ResponseCase& c = GetParam();
  const ParsedHead p = parseHead(c.response, HTTP_RESPONSE);
  ASSERT_EQ(p.event, ParseEvent::kHeadComplete);
  ResponseHeadInput in;
  in.framing = c.framing;
  in.request_id = "rid-2";
  in.extra_headers = c.extra_headers;
  std::string out;
  buildResponseHead(p.head, p.bytes.data(), in, &out);
  EXPECT_EQ(out, c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Responses, ResponseHeadTest,
    ::testing::Values(
        ResponseCase{"Http10StatusLineBecomes11WithItsCodeAndReason",
                     "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
                     {false, false, false},
                     "",
                     "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{
            "UnusualReasonIsKept",
            "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n",
            {false, false, false},
            "",
            "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"HopByHopAndConnectionNamedFieldsAreDropped",
                     "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\n"
                     "Proxy-Authenticate: Basic\r\nUpgrade: h2c\r\nTrailer: X-T\r\nx-hop: 1\r\n"
                     "Content-Length: 0\r\n\r\n",
                     {false, false, false},
                     "",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{
            "FieldsNamedByEveryConnectionLineAreDropped",
            "HTTP/1.1 200 OK\r\nConnection: X-A\r\nX-A: 1\r\nConnection: X-B\r\n"
            "X-B: 2\r\nX-C: 3\r\nContent-Length: 0\r\n\r\n",
            {false, false, false},
            "",
            "HTTP/1.1 200 OK\r\nX-C: 3\r\nContent-Length: 0\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"UpstreamRequestIdIsReplaced",
                     "HTTP/1.1 200 OK\r\nX-Request-Id: upstream-id\r\nContent-Length: 0\r\n\r\n",
                     {false, false, false},
                     "",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{
            "ChunkedUpstreamStaysChunked",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            {false, false, false},
            "",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"RechunkedBodyIsAnnouncedAsChunked",
                     kCloseDelimited,
                     {false, true, false},
                     "",
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                     "X-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"BodilessResponseAnnouncesNoChunking",
                     "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
                     {true, false, false},
                     "",
                     "HTTP/1.1 204 No Content\r\nX-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"ClosingAddsConnectionClose",
                     "HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                     {false, false, true},
                     "",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n"
                     "X-Request-Id: rid-2\r\n\r\n"},
        ResponseCase{"ExtraHeadersComeLast",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                     {false, false, false},
                     "RateLimit: \"per_ip\";r=3\r\n",
                     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Request-Id: rid-2\r\n"
                     "RateLimit: \"per_ip\";r=3\r\n\r\n"}),
    caseName<ResponseCase>);

}  // namespace
}  // namespace sluice::http
