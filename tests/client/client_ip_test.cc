#include "proxy/client/client_ip.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace sluice::client {
namespace {

IpAddr ip(const char* text) {
  auto parsed = config::parseIp(text);
  EXPECT_TRUE(parsed) << text;
  return parsed.value_or(IpAddr{});
}

std::vector<config::Cidr> cidrs(std::initializer_list<const char*> texts) {
  std::vector<config::Cidr> out;
  for (const char* text : texts) {
    auto parsed = config::parseCidr(text);
    EXPECT_TRUE(parsed) << text;
    if (parsed) out.push_back(*parsed.value);
  }
  return out;
}

// ---- one X-Forwarded-For element ----

struct ElementCase {
  const char* element;
  const char* expected;  // nullptr: rejected
};

class ForwardedElement : public ::testing::TestWithParam<ElementCase> {};

TEST_P(ForwardedElement, ParsesOrRejects) {
  auto parsed = parseForwardedElement(GetParam().element);
  if (GetParam().expected == nullptr) {
    EXPECT_FALSE(parsed) << config::formatIp(parsed.value_or(IpAddr{}));
  } else {
    ASSERT_TRUE(parsed);
    EXPECT_EQ(*parsed, ip(GetParam().expected));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Elements, ForwardedElement,
    ::testing::Values(
        ElementCase{"1.2.3.4", "1.2.3.4"}, ElementCase{" \t1.2.3.4  ", "1.2.3.4"},
        ElementCase{"2001:db8::1", "2001:db8::1"}, ElementCase{"[2001:db8::1]", "2001:db8::1"},
        ElementCase{" [2001:db8::1]:443 ", "2001:db8::1"}, ElementCase{"1.2.3.4:5678", "1.2.3.4"},
        ElementCase{"::ffff:1.2.3.4", "1.2.3.4"}, ElementCase{"::1", "::1"},
        ElementCase{"", nullptr}, ElementCase{"  ", nullptr}, ElementCase{"unknown", nullptr},
        ElementCase{"_hidden", nullptr}, ElementCase{"1.2.3", nullptr},
        ElementCase{"1.2.3.4:", nullptr}, ElementCase{"1.2.3.4:99999", nullptr},
        ElementCase{"1.2.3.4:x", nullptr}, ElementCase{"[1.2.3.4]", nullptr},
        ElementCase{"[::1", nullptr}, ElementCase{"[::1]x", nullptr},
        ElementCase{"[::1]:", nullptr}, ElementCase{"fe80::1%eth0", nullptr},
        ElementCase{"1.2.3.4 5.6.7.8", nullptr}, ElementCase{"2001:db8::1:443x", nullptr}));

// ---- the walk ----

struct WalkCase {
  const char* name;
  const char* peer;
  const char* xff;
  const char* expected;
  bool invalid;
};

class ClientIpWalk : public ::testing::TestWithParam<WalkCase> {};

TEST_P(ClientIpWalk, FindsTheClient) {
  const auto trusted = cidrs({"10.0.0.0/8", "2001:db8:ffff::/48"});
  const WalkCase& c = GetParam();
  ClientIp got = clientIp(ip(c.peer), c.xff, trusted);
  EXPECT_EQ(config::formatIp(got.ip), config::formatIp(ip(c.expected)));
  EXPECT_EQ(got.xff_invalid, c.invalid);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ClientIpWalk,
    ::testing::Values(
        WalkCase{"UntrustedPeerIgnoresXff", "203.0.113.9", "198.51.100.7", "203.0.113.9", false},
        WalkCase{"UntrustedPeerIgnoresGarbageXff", "203.0.113.9", "garbage", "203.0.113.9", false},
        WalkCase{"TrustedPeerNoXff", "10.0.0.1", "", "10.0.0.1", false},
        WalkCase{"TrustedPeerOneHop", "10.0.0.1", "198.51.100.7", "198.51.100.7", false},
        WalkCase{"TrustedChain", "10.0.0.1", "198.51.100.7, 10.0.0.2, 10.0.0.3", "198.51.100.7",
                 false},
        WalkCase{"SpoofedLeftEntriesIgnored", "10.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.2",
                 "198.51.100.7", false},
        WalkCase{"GarbageLeftOfClientNotParsed", "10.0.0.1", "garbage, 198.51.100.7",
                 "198.51.100.7", false},
        WalkCase{"AllTrustedGivesLeftmost", "10.0.0.1", "10.0.0.5, 10.0.0.2", "10.0.0.5", false},
        WalkCase{"UnparsableOnWalkGivesPeer", "10.0.0.1", "198.51.100.7, bogus", "10.0.0.1", true},
        WalkCase{"UnparsableAfterTrustedGivesPeer", "10.0.0.1", "nope, 10.0.0.2", "10.0.0.1", true},
        WalkCase{"JoinedHeaderLines", "10.0.0.1", "6.6.6.6,198.51.100.7,10.0.0.2", "198.51.100.7",
                 false},
        WalkCase{"EmptyElementsSkipped", "10.0.0.1", "198.51.100.7,, 10.0.0.2, ,", "198.51.100.7",
                 false},
        WalkCase{"OnlyEmptyElementsGivesPeer", "10.0.0.1", " , ,", "10.0.0.1", false},
        WalkCase{"EntryWithPort", "10.0.0.1", "198.51.100.7:51234", "198.51.100.7", false},
        WalkCase{"Ipv6Chain", "2001:db8:ffff::1", "2001:db8:1::5, [2001:db8:ffff::2]:443",
                 "2001:db8:1::5", false},
        WalkCase{"MappedPeerIsIpv4", "::ffff:10.0.0.1", "198.51.100.7", "198.51.100.7", false},
        WalkCase{"MappedEntryIsIpv4", "10.0.0.1", "::ffff:198.51.100.7", "198.51.100.7", false},
        WalkCase{"MappedTrustedEntrySkipped", "10.0.0.1", "198.51.100.7, ::ffff:10.9.9.9",
                 "198.51.100.7", false}),
    [](const auto& test) { return std::string(test.param.name); });

TEST(ClientIp, NoTrustedProxiesMeansPeer) {
  ClientIp got = clientIp(ip("10.0.0.1"), "198.51.100.7", {});
  EXPECT_EQ(got.ip, ip("10.0.0.1"));
  EXPECT_FALSE(got.xff_invalid);
}

TEST(ClientIp, MappedEntryIsIpv4) {
  EXPECT_TRUE(isIpv4(clientIp(ip("10.0.0.1"), "::ffff:1.2.3.4", cidrs({"10.0.0.0/8"})).ip));
}

// ---- bucket networks ----

struct KeyCase {
  const char* address;
  int v4;
  int v6;
  const char* text;
};

class IpKeyText : public ::testing::TestWithParam<KeyCase> {};

TEST_P(IpKeyText, MasksAndFormats) {
  const KeyCase& c = GetParam();
  EXPECT_EQ(ipKeyText(ipKey(ip(c.address), c.v4, c.v6), c.v4, c.v6), c.text);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, IpKeyText,
    ::testing::Values(
        KeyCase{"1.2.3.4", 32, 64, "1.2.3.4"}, KeyCase{"10.1.2.77", 24, 64, "10.1.2.0/24"},
        KeyCase{"10.1.2.77", 16, 64, "10.1.0.0/16"}, KeyCase{"10.1.2.77", 20, 64, "10.1.0.0/20"},
        KeyCase{"10.1.2.77", 0, 64, "0.0.0.0/0"},
        KeyCase{"::ffff:10.1.2.77", 24, 64, "10.1.2.0/24"},
        KeyCase{"2001:db8:1:2:3:4:5:6", 32, 64, "2001:db8:1:2::/64"},
        KeyCase{"2001:db8:1:2ff:3:4:5:6", 32, 56, "2001:db8:1:200::/56"},
        KeyCase{"2001:db8:1:2:3:4:5:6", 32, 128, "2001:db8:1:2:3:4:5:6"},
        KeyCase{"2001:db8::1", 32, 48, "2001:db8::/48"}, KeyCase{"2001:db8::1", 32, 0, "::/0"}));

TEST(IpKey, SameIpv6SlashSixtyFourSharesABucket) {
  const IpAddr a = ipKey(ip("2001:db8:1:2::1"), 32, 64);
  const IpAddr b = ipKey(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), 32, 64);
  const IpAddr c = ipKey(ip("2001:db8:1:3::1"), 32, 64);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(hashIpKey(a), hashIpKey(b));
  EXPECT_NE(hashIpKey(a), hashIpKey(c));
}

TEST(IpKey, Ipv4UsesTheIpv4PrefixEvenWhenMapped) {
  EXPECT_EQ(ipKey(ip("::ffff:192.0.2.200"), 24, 64), ip("192.0.2.0"));
  EXPECT_TRUE(isIpv4(ipKey(ip("192.0.2.200"), 0, 0)));
}

TEST(IpKey, PrefixesOutOfRangeAreClamped) {
  EXPECT_EQ(ipKey(ip("192.0.2.200"), 40, 64), ip("192.0.2.200"));
  EXPECT_EQ(ipKey(ip("2001:db8::1"), 32, 200), ip("2001:db8::1"));
  EXPECT_EQ(ipKey(ip("2001:db8::1"), 32, -3), ip("::"));
}

}  // namespace
}  // namespace sluice::client
