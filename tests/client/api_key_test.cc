#include "proxy/client/api_key.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>

namespace sluice::client {
namespace {

TEST(ApiKey, HeaderWinsOverQuery) {
  ApiKey key = apiKey("from-header", "api_key=from-query", "api_key");
  EXPECT_EQ(key.status, ApiKeyStatus::kFound);
  EXPECT_EQ(key.value, "from-header");
}

TEST(ApiKey, HeaderValueIsTrimmed) { EXPECT_EQ(apiKey(" \tabc ", "", "").value, "abc"); }

TEST(ApiKey, QueryUsedWithoutHeader) {
  ApiKey key = apiKey(std::nullopt, "a=1&api_key=secret&b=2", "api_key");
  EXPECT_EQ(key.status, ApiKeyStatus::kFound);
  EXPECT_EQ(key.value, "secret");
}

TEST(ApiKey, EmptyHeaderFallsBackToQuery) {
  EXPECT_EQ(apiKey("  ", "api_key=q", "api_key").value, "q");
}

TEST(ApiKey, QueryIgnoredWhenNoParamConfigured) {
  EXPECT_EQ(apiKey(std::nullopt, "api_key=q", "").status, ApiKeyStatus::kMissing);
}

TEST(ApiKey, MissingEverywhere) {
  EXPECT_EQ(apiKey(std::nullopt, "a=1&b=2", "api_key").status, ApiKeyStatus::kMissing);
  EXPECT_EQ(apiKey(std::nullopt, "", "api_key").status, ApiKeyStatus::kMissing);
  EXPECT_EQ(apiKey(std::nullopt, "api_key=", "api_key").status, ApiKeyStatus::kMissing);
  EXPECT_EQ(apiKey(std::nullopt, "api_key", "api_key").status, ApiKeyStatus::kMissing);
}

TEST(ApiKey, LongestAcceptedAndOneOver) {
  const std::string ok(kMaxApiKeyBytes, 'k');
  const std::string over(kMaxApiKeyBytes + 1, 'k');
  EXPECT_EQ(apiKey(ok, "", "").status, ApiKeyStatus::kFound);
  EXPECT_EQ(apiKey(over, "", "").status, ApiKeyStatus::kTooLong);
  EXPECT_EQ(apiKey(std::nullopt, "k=" + ok, "k").status, ApiKeyStatus::kFound);
  EXPECT_EQ(apiKey(std::nullopt, "k=" + over, "k").status, ApiKeyStatus::kTooLong);
}

TEST(ApiKey, LengthIsMeasuredAfterDecoding) {
  std::string encoded;
  for (std::size_t i = 0; i < kMaxApiKeyBytes; ++i) encoded += "%41";
  ApiKey key = apiKey(std::nullopt, "k=" + encoded, "k");
  EXPECT_EQ(key.status, ApiKeyStatus::kFound);
  EXPECT_EQ(key.value, std::string(kMaxApiKeyBytes, 'A'));
  EXPECT_EQ(apiKey(std::nullopt, "k=" + encoded + "%41", "k").status, ApiKeyStatus::kTooLong);
}

struct QueryCase {
  const char* query;
  const char* name;
  std::optional<std::string> value;
};

class QueryParam : public ::testing::TestWithParam<QueryCase> {};

TEST_P(QueryParam, FindsAndDecodes) {
  EXPECT_EQ(queryParam(GetParam().query, GetParam().name), GetParam().value);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, QueryParam,
    ::testing::Values(QueryCase{"k=v", "k", "v"}, QueryCase{"a=1&k=v&b=2", "k", "v"},
                      QueryCase{"k=first&k=second", "k", "first"},
                      QueryCase{"xk=1&kx=2&k=3", "k", "3"}, QueryCase{"a=1", "k", std::nullopt},
                      QueryCase{"", "k", std::nullopt}, QueryCase{"k", "k", ""},
                      QueryCase{"k=", "k", ""}, QueryCase{"&&k=v&", "k", "v"},
                      QueryCase{"k=a%2Bb", "k", "a+b"}, QueryCase{"k=a+b", "k", "a b"},
                      QueryCase{"k=%7e%7E", "k", "~~"}, QueryCase{"k=%zz%4", "k", "%zz%4"},
                      QueryCase{"k=a=b", "k", "a=b"}, QueryCase{"api%5Fkey=v", "api_key", "v"}));

}  // namespace
}  // namespace sluice::client
