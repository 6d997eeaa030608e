// Certificate names: which names a certificate covers, and which
// certificate a client's SNI picks.

#include "proxy/tls/names.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::tls {
namespace {

struct NameCase {
  const char* pattern;
  const char* host;
  bool matches;
};

class NameMatchTest : public ::testing::TestWithParam<NameCase> {};

TEST_P(NameMatchTest, FollowsRfc6125) {
  const NameCase& c = GetParam();
  EXPECT_EQ(nameMatches(c.pattern, c.host), c.matches) << c.pattern << " vs " << c.host;
}

INSTANTIATE_TEST_SUITE_P(Names, NameMatchTest,
                         ::testing::Values(NameCase{"example.com", "example.com", true},
                                           NameCase{"Example.COM", "example.com", true},
                                           NameCase{"example.com", "example.com.", true},
                                           NameCase{"example.com.", "EXAMPLE.com", true},
                                           NameCase{"example.com", "www.example.com", false},
                                           NameCase{"example.com", "", false},
                                           NameCase{"*.example.com", "a.example.com", true},
                                           NameCase{"*.example.com", "A.EXAMPLE.COM.", true},
                                           NameCase{"*.example.com", "example.com", false},
                                           NameCase{"*.example.com", "a.b.example.com", false},
                                           NameCase{"*.example.com", ".example.com", false},
                                           NameCase{"*.com", "example.com", false},
                                           NameCase{"f*.example.com", "foo.example.com", false},
                                           NameCase{"*.*.example.com", "a.b.example.com", false},
                                           NameCase{"a.*.example.com", "a.b.example.com", false},
                                           NameCase{"*", "localhost", false}));

TEST(PickCertificate, ExactNameBeatsAnEarlierWildcard) {
  const std::vector<std::vector<std::string>> certs = {
      {"default.test"}, {"*.b.test"}, {"x.b.test", "y.test"}};
  EXPECT_EQ(pickCertificate(certs, "x.b.test"), 2u);
  EXPECT_EQ(pickCertificate(certs, "z.b.test"), 1u);
  EXPECT_EQ(pickCertificate(certs, "Y.TEST"), 2u);
}

TEST(PickCertificate, UnknownOrMissingNameGetsTheDefault) {
  const std::vector<std::vector<std::string>> certs = {{"a.test"}, {"*.b.test"}};
  EXPECT_EQ(pickCertificate(certs, "other.test"), 0u);
  EXPECT_EQ(pickCertificate(certs, ""), 0u);
  EXPECT_EQ(pickCertificate(certs, "b.test"), 0u);
}

}  // namespace
}  // namespace sluice::tls
