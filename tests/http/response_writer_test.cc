#include "proxy/http/response_writer.h"

#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

namespace sluice::http {
namespace {

struct Split {
  std::string head;
  std::string body;
};

Split split(const std::string& response) {
  const std::size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos) return {response, ""};
  return {response.substr(0, end + 2), response.substr(end + 4)};
}

// The value of `name` in `head` ("" when absent).
std::string field(const std::string& head, std::string_view name) {
  const std::string key = "\r\n" + std::string(name) + ": ";
  const std::size_t at = head.find(key);
  if (at == std::string::npos) return "";
  const std::size_t from = at + key.size();
  return head.substr(from, head.find("\r\n", from) - from);
}

TEST(ProblemResponseTest, TooManyRequestsNamesEveryViolatedPolicy) {
  const std::vector<std::string_view> violated = {"per_ip", "per_key"};
  LocalResponse r;
  r.status = 429;
  r.extra_headers = "Retry-After: 3\r\n";
  r.request_id = "abc123";
  r.violated_policies = violated;
  std::string out;
  appendProblemResponse(out, r);
  const Split s = split(out);
  EXPECT_EQ(s.head.rfind("HTTP/1.1 429 Too Many Requests\r\n", 0), 0u) << out;
  EXPECT_EQ(field(s.head, "Content-Type"), "application/problem+json");
  EXPECT_EQ(field(s.head, "Retry-After"), "3");
  EXPECT_EQ(field(s.head, "X-Request-Id"), "abc123");
  EXPECT_EQ(field(s.head, "Connection"), "");
  EXPECT_EQ(field(s.head, "Content-Length"), std::to_string(s.body.size()));
  EXPECT_EQ(s.body,
            R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded",)"
            R"("title":"Too Many Requests","status":429,"violated-policies":["per_ip","per_key"]})"
            "\n");
}

TEST(ProblemResponseTest, LongListOfPoliciesIsNeverCutShort) {
  // 40 names of 60 characters: far more than a small fixed buffer holds.
  std::vector<std::string> names;
  for (int i = 0; i < 40; ++i) names.push_back(std::string(58, 'a' + i % 26) + std::to_string(i % 10) + "x");
  const std::vector<std::string_view> violated(names.begin(), names.end());
  LocalResponse r;
  r.status = 429;
  r.violated_policies = violated;
  std::string out;
  appendProblemResponse(out, r);
  const Split s = split(out);
  EXPECT_EQ(field(s.head, "Content-Length"), std::to_string(s.body.size()));
  for (const auto& n : names) EXPECT_NE(s.body.find("\"" + n + "\""), std::string::npos) << n;
  ASSERT_GE(s.body.size(), 3u);
  EXPECT_EQ(s.body.substr(s.body.size() - 3), "]}\n");
}

TEST(ProblemResponseTest, HeadAnswerKeepsTheLengthButSendsNoBody) {
  LocalResponse r;
  r.status = 404;
  r.head_only = true;
  r.close = true;
  std::string out;
  appendProblemResponse(out, r);
  const Split s = split(out);
  EXPECT_EQ(s.body, "");
  EXPECT_EQ(field(s.head, "Connection"), "close");
  const std::string full = R"({"type":"about:blank","title":"Not Found","status":404})"
                           "\n";
  EXPECT_EQ(field(s.head, "Content-Length"), std::to_string(full.size()));
  EXPECT_EQ(field(s.head, "X-Request-Id"), "") << "no id given, none written";
}

TEST(ProblemResponseTest, ReusedOutputGrowsByOneWholeResponseEachTime) {
  LocalResponse r;
  r.status = 400;
  std::string out;
  appendProblemResponse(out, r);
  const std::size_t one = out.size();
  appendProblemResponse(out, r);
  EXPECT_EQ(out.size(), 2 * one);
  EXPECT_EQ(out.substr(one), out.substr(0, one));
}

}  // namespace
}  // namespace sluice::http
