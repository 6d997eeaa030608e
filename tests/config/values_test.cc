#include "proxy/config/values.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <string>

namespace sluice::config {
namespace {

// ---- durations ----

struct DurationCase {
  const char* text;
  std::int64_t nanos;
};

class ValidDuration : public ::testing::TestWithParam<DurationCase> {};

TEST_P(ValidDuration, Parses) {
  auto parsed = parseDuration(GetParam().text);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.value->nanos, GetParam().nanos);
}

INSTANTIATE_TEST_SUITE_P(
    Values, ValidDuration,
    ::testing::Values(DurationCase{"250ms", 250000000LL}, DurationCase{"10s", 10000000000LL},
                      DurationCase{"5m", 300000000000LL}, DurationCase{"1h", 3600000000000LL},
                      DurationCase{"1.5s", 1500000000LL}, DurationCase{"100us", 100000LL},
                      DurationCase{"0.5ms", 500000LL}, DurationCase{"0s", 0},
                      DurationCase{"0.1s", 100000000LL}, DurationCase{"20ms", 20000000LL},
                      DurationCase{"2562047h", 2562047LL * 3600000000000LL}));

class InvalidDuration : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidDuration, IsAnError) {
  auto parsed = parseDuration(GetParam());
  EXPECT_FALSE(parsed);
  EXPECT_FALSE(parsed.error.empty());
}

INSTANTIATE_TEST_SUITE_P(Values, InvalidDuration,
                         ::testing::Values("", "10", "-1s", "1x", "s", "ms", "1.s", ".5s", "1.5",
                                           "10 s", " 10s", "1e3s", "1hh", "10ns", "10S", "2562048h",
                                           "99999999999999999999s"));

TEST(ParseDuration, NamesTheProblem) {
  EXPECT_NE(parseDuration("10").error.find("no unit"), std::string::npos);
  EXPECT_NE(parseDuration("-1s").error.find("negative"), std::string::npos);
  EXPECT_NE(parseDuration("10d").error.find("unknown unit 'd'"), std::string::npos);
}

TEST(DurationToString, UsesTheLargestExactUnit) {
  EXPECT_EQ(Duration::millis(250).toString(), "250ms");
  EXPECT_EQ(Duration::seconds(10).toString(), "10s");
  EXPECT_EQ(Duration::seconds(90).toString(), "90s");
  EXPECT_EQ(Duration::seconds(300).toString(), "5m");
  EXPECT_EQ(Duration::seconds(3600).toString(), "1h");
  EXPECT_EQ(Duration{1500}.toString(), "1.5us");
  EXPECT_EQ(Duration{}.toString(), "0s");
}

TEST(DurationToString, RoundTripsThroughTheParser) {
  for (const char* text : {"250ms", "1500ms", "10s", "5m", "1h", "100us", "36h"}) {
    auto parsed = parseDuration(text);
    ASSERT_TRUE(parsed) << text;
    EXPECT_EQ(parseDuration(parsed.value->toString()).value, parsed.value) << text;
  }
}

// ---- sizes ----

struct SizeCase {
  const char* text;
  std::uint64_t bytes;
};

class ValidSize : public ::testing::TestWithParam<SizeCase> {};

TEST_P(ValidSize, Parses) {
  auto parsed = parseSize(GetParam().text);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(*parsed.value, GetParam().bytes);
}

INSTANTIATE_TEST_SUITE_P(Values, ValidSize,
                         ::testing::Values(SizeCase{"0", 0}, SizeCase{"512", 512},
                                           SizeCase{"512B", 512}, SizeCase{"16KiB", 16384},
                                           SizeCase{"10MiB", 10485760},
                                           SizeCase{"1GiB", 1073741824}, SizeCase{"1KB", 1000},
                                           SizeCase{"10MB", 10000000}, SizeCase{"2GB", 2000000000},
                                           SizeCase{"1.5KiB", 1536}, SizeCase{"0.5MB", 500000}));

class InvalidSize : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidSize, IsAnError) {
  auto parsed = parseSize(GetParam());
  EXPECT_FALSE(parsed);
  EXPECT_FALSE(parsed.error.empty());
}

INSTANTIATE_TEST_SUITE_P(Values, InvalidSize,
                         ::testing::Values("", "-1", "1.5", "16kib", "16K", "KiB", "1 KiB", "abc",
                                           "99999999999999999999", "20000000000GiB", "1e3"));

// ---- rates ----

struct RateCase {
  const char* text;
  double count;
  double period_seconds;
};

class ValidRate : public ::testing::TestWithParam<RateCase> {};

TEST_P(ValidRate, Parses) {
  auto parsed = parseRate(GetParam().text);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_DOUBLE_EQ(parsed.value->count, GetParam().count);
  EXPECT_DOUBLE_EQ(parsed.value->period_seconds, GetParam().period_seconds);
}

INSTANTIATE_TEST_SUITE_P(Values, ValidRate,
                         ::testing::Values(RateCase{"0.5/s", 0.5, 1}, RateCase{"100/s", 100, 1},
                                           RateCase{"5000/s", 5000, 1}, RateCase{"10/m", 10, 60},
                                           RateCase{"1/h", 1, 3600}, RateCase{"0.001/s", 0.001, 1},
                                           RateCase{"600/m", 600, 60}));

class InvalidRate : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidRate, IsAnError) {
  auto parsed = parseRate(GetParam());
  EXPECT_FALSE(parsed);
  EXPECT_FALSE(parsed.error.empty());
}

INSTANTIATE_TEST_SUITE_P(Values, InvalidRate,
                         ::testing::Values("0/s", "0.0/s", "-1/s", "10", "10/d", "/s", "10/",
                                           "abc/s", "1e3/s", "10/sec", "10 /s", ""));

TEST(ParseRate, ZeroIsAboveZeroError) {
  EXPECT_NE(parseRate("0/s").error.find("rate must be above zero"), std::string::npos);
  EXPECT_NE(parseRate("0/m").error.find("rate must be above zero"), std::string::npos);
}

TEST(ParseRate, PerSecond) {
  EXPECT_DOUBLE_EQ(parseRate("0.5/s").value->perSecond(), 0.5);
  EXPECT_DOUBLE_EQ(parseRate("120/m").value->perSecond(), 2);
  EXPECT_DOUBLE_EQ(parseRate("7200/h").value->perSecond(), 2);
}

TEST(RateToString, RoundTrips) {
  for (const char* text : {"0.5/s", "100/s", "10/m", "1/h", "5000/s"}) {
    EXPECT_EQ(parseRate(text).value->toString(), text);
  }
}

TEST(RateToString, NeverUsesAnExponent) {
  // Found by fuzz/values_fuzz: "1000000/h" used to print as "1e+06/h", which
  // `sluice explain` showed and the config cannot read back.
  for (const char* text : {"1000000/h", "10000000/s", "0.0001/s", "0.00000001/m"}) {
    EXPECT_EQ(parseRate(text).value->toString(), text);
  }
}

// ---- addresses ----

struct AddressCase {
  const char* text;
  const char* host;
  std::uint16_t port;
  bool is_ipv6;
};

class ValidAddress : public ::testing::TestWithParam<AddressCase> {};

TEST_P(ValidAddress, Parses) {
  auto parsed = parseAddress(GetParam().text);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.value->host, GetParam().host);
  EXPECT_EQ(parsed.value->port, GetParam().port);
  EXPECT_EQ(parsed.value->is_ipv6, GetParam().is_ipv6);
  EXPECT_EQ(parsed.value->toString(), GetParam().text);
}

INSTANTIATE_TEST_SUITE_P(
    Values, ValidAddress,
    ::testing::Values(AddressCase{"127.0.0.1:8080", "127.0.0.1", 8080, false},
                      AddressCase{"0.0.0.0:0", "0.0.0.0", 0, false},
                      AddressCase{"[::1]:80", "::1", 80, true},
                      AddressCase{"[::1]:8080", "::1", 8080, true},
                      AddressCase{"[2001:db8::1]:65535", "2001:db8::1", 65535, true},
                      AddressCase{"localhost:6379", "localhost", 6379, false},
                      AddressCase{"api.example.com:443", "api.example.com", 443, false},
                      AddressCase{"redis-0.redis:6379", "redis-0.redis", 6379, false}));

class InvalidAddress : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidAddress, IsAnError) {
  auto parsed = parseAddress(GetParam());
  EXPECT_FALSE(parsed);
  EXPECT_FALSE(parsed.error.empty());
}

INSTANTIATE_TEST_SUITE_P(Values, InvalidAddress,
                         ::testing::Values("", "127.0.0.1", "::1:8080", "[::1]", "[::1]8080",
                                           "[::1:80", "127.0.0.1:65536", "127.0.0.1:-1",
                                           "127.0.0.1:http", ":8080", "127.0.0.1:", "256.1.1.1:80",
                                           "1.2.3:80", "[127.0.0.1]:80", "bad_host:80",
                                           "-bad.example:80", "a..b:80", "host name:80"));

TEST(ParseAddress, UnbracketedIpv6NamesTheFix) {
  EXPECT_NE(parseAddress("::1:8080").error.find("[::1]:8080"), std::string::npos);
}

TEST(ParseAddress, PortOutOfRangeNamesTheRange) {
  EXPECT_NE(parseAddress("127.0.0.1:65536").error.find("0-65535"), std::string::npos);
}

// ---- IPs and CIDRs ----

std::array<std::uint8_t, 16> ip(const char* text) {
  auto parsed = parseIp(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(std::array<std::uint8_t, 16>{});
}

TEST(ParseIp, Ipv4IsStoredMapped) {
  bool is_ipv4 = false;
  auto parsed = parseIp("192.0.2.7", &is_ipv4);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(is_ipv4);
  std::array<std::uint8_t, 16> expected{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7};
  EXPECT_EQ(*parsed, expected);
  EXPECT_TRUE(isIpv4Mapped(*parsed));
  EXPECT_EQ(ip("::ffff:192.0.2.7"), expected);
}

TEST(ParseIp, Ipv6) {
  bool is_ipv4 = true;
  auto parsed = parseIp("2001:db8::1", &is_ipv4);
  ASSERT_TRUE(parsed);
  EXPECT_FALSE(is_ipv4);
  EXPECT_EQ((*parsed)[0], 0x20);
  EXPECT_EQ((*parsed)[15], 1);
}

TEST(ParseIp, RejectsGarbage) {
  for (const char* text :
       {"", "1.2.3", "1.2.3.4 ", "1.2.3.256", "::1::2", "localhost", "[::1]", "01.2.3.4x"}) {
    EXPECT_FALSE(parseIp(text)) << text;
  }
  EXPECT_FALSE(parseIp(std::string_view("1.2.3.4\0", 8)));
}

TEST(FormatIp, PrintsBothFamilies) {
  EXPECT_EQ(formatIp(ip("10.1.2.3")), "10.1.2.3");
  EXPECT_EQ(formatIp(ip("2001:db8:0:0::1")), "2001:db8::1");
}

struct CidrCase {
  const char* text;
  const char* canonical;
  int prefix;  // in the mapped space
  bool is_ipv4;
};

class ValidCidr : public ::testing::TestWithParam<CidrCase> {};

TEST_P(ValidCidr, Parses) {
  auto parsed = parseCidr(GetParam().text);
  ASSERT_TRUE(parsed) << parsed.error;
  EXPECT_EQ(parsed.value->prefix, GetParam().prefix);
  EXPECT_EQ(parsed.value->is_ipv4, GetParam().is_ipv4);
  EXPECT_EQ(parsed.value->toString(), GetParam().canonical);
}

INSTANTIATE_TEST_SUITE_P(
    Values, ValidCidr,
    ::testing::Values(CidrCase{"10.0.0.0/8", "10.0.0.0/8", 104, true},
                      CidrCase{"10.1.2.3/8", "10.0.0.0/8", 104, true},
                      CidrCase{"192.168.1.7", "192.168.1.7/32", 128, true},
                      CidrCase{"0.0.0.0/0", "0.0.0.0/0", 96, true},
                      CidrCase{"10.0.0.0/32", "10.0.0.0/32", 128, true},
                      CidrCase{"2001:db8::/32", "2001:db8::/32", 32, false},
                      CidrCase{"::1", "::1/128", 128, false}, CidrCase{"::/0", "::/0", 0, false},
                      CidrCase{"fd00::/8", "fd00::/8", 8, false},
                      CidrCase{"2001:db8::/128", "2001:db8::/128", 128, false}));

class InvalidCidr : public ::testing::TestWithParam<const char*> {};

TEST_P(InvalidCidr, IsAnError) {
  auto parsed = parseCidr(GetParam());
  EXPECT_FALSE(parsed);
  EXPECT_FALSE(parsed.error.empty());
}

INSTANTIATE_TEST_SUITE_P(Values, InvalidCidr,
                         ::testing::Values("10.0.0.0/33", "2001:db8::/129", "10.0.0.0/",
                                           "10.0.0.0/a", "10.0.0/8", "", "foo/8", "10.0.0.0/-1",
                                           "10.0.0.0/8/8", "/8", "10.0.0.0/1000"));

TEST(ParseCidr, PrefixOutOfRangeNamesTheRange) {
  EXPECT_NE(parseCidr("10.0.0.0/33").error.find("0-32"), std::string::npos);
  EXPECT_NE(parseCidr("::/129").error.find("0-128"), std::string::npos);
}

TEST(CidrContains, Ipv4Network) {
  Cidr cidr = *parseCidr("10.0.0.0/8").value;
  EXPECT_TRUE(cidr.contains(ip("10.0.0.0")));
  EXPECT_TRUE(cidr.contains(ip("10.255.255.255")));
  EXPECT_FALSE(cidr.contains(ip("11.0.0.0")));
  EXPECT_FALSE(cidr.contains(ip("9.255.255.255")));
  EXPECT_FALSE(cidr.contains(ip("::a00:1")));  // IPv4-compatible, not mapped
}

TEST(CidrContains, OddPrefixes) {
  Cidr cidr = *parseCidr("172.16.0.0/12").value;
  EXPECT_TRUE(cidr.contains(ip("172.31.255.255")));
  EXPECT_FALSE(cidr.contains(ip("172.32.0.0")));
  Cidr v6 = *parseCidr("2001:db8:1234::/47").value;
  EXPECT_TRUE(v6.contains(ip("2001:db8:1235:ffff::1")));
  EXPECT_FALSE(v6.contains(ip("2001:db8:1236::")));
}

TEST(CidrContains, HostRoute) {
  Cidr v4 = *parseCidr("192.0.2.1").value;
  EXPECT_TRUE(v4.contains(ip("192.0.2.1")));
  EXPECT_FALSE(v4.contains(ip("192.0.2.2")));
  Cidr v6 = *parseCidr("::1").value;
  EXPECT_TRUE(v6.contains(ip("::1")));
  EXPECT_FALSE(v6.contains(ip("::2")));
}

TEST(CidrContains, AllIpv4DoesNotCoverIpv6) {
  Cidr all_v4 = *parseCidr("0.0.0.0/0").value;
  EXPECT_TRUE(all_v4.contains(ip("255.255.255.255")));
  EXPECT_FALSE(all_v4.contains(ip("2001:db8::1")));
  Cidr all = *parseCidr("::/0").value;
  EXPECT_TRUE(all.contains(ip("2001:db8::1")));
  EXPECT_TRUE(all.contains(ip("1.2.3.4")));
}

TEST(CidrContains, MappedIpv6ClientMatchesIpv4Network) {
  Cidr cidr = *parseCidr("10.0.0.0/8").value;
  EXPECT_TRUE(cidr.contains(ip("::ffff:10.9.8.7")));
}

}  // namespace
}  // namespace sluice::config
