// Client identity and address parsing on arbitrary text: X-Forwarded-For
// walking (clientIp, parseForwardedElement), IP/CIDR/HOST:PORT parsing and
// the bucket key helpers (ipKey, ipKeyText), with round trips.
//
// Input: lines separated by '\n'. Line 0 is the peer address, line 1 the
// X-Forwarded-For value, the rest trusted proxy CIDRs. Every line is also
// run through each parser on its own. The first byte also picks the key
// prefixes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "proxy/client/client_ip.h"
#include "proxy/config/values.h"

namespace {

using sluice::client::IpAddr;
namespace client = sluice::client;
namespace config = sluice::config;

void checkIp(std::string_view text) {
  bool is_ipv4 = false;
  const auto ip = config::parseIp(text, &is_ipv4);
  if (!ip) return;
  FUZZ_CHECK(is_ipv4 == config::isIpv4Mapped(*ip));
  bool again_v4 = false;
  const auto again = config::parseIp(config::formatIp(*ip), &again_v4);
  FUZZ_CHECK(again == ip);
  FUZZ_CHECK(again_v4 == is_ipv4);
}

void checkCidr(std::string_view text) {
  const auto parsed = config::parseCidr(text);
  FUZZ_CHECK(parsed.value.has_value() == parsed.error.empty());
  if (!parsed) return;
  const config::Cidr& cidr = *parsed.value;
  FUZZ_CHECK(cidr.prefix >= 0 && cidr.prefix <= 128);
  FUZZ_CHECK(!cidr.is_ipv4 || cidr.prefix >= 96);
  FUZZ_CHECK(cidr.contains(cidr.addr));
  const auto again = config::parseCidr(cidr.toString());
  FUZZ_CHECK(again.value == parsed.value);
}

void checkAddress(std::string_view text) {
  const auto parsed = config::parseAddress(text);
  FUZZ_CHECK(parsed.value.has_value() == parsed.error.empty());
  if (!parsed) return;
  FUZZ_CHECK(!parsed.value->host.empty());
  const auto again = config::parseAddress(parsed.value->toString());
  FUZZ_CHECK(again.value == parsed.value);
}

void checkKey(const IpAddr& ip, int v4_prefix, int v6_prefix) {
  const IpAddr key = client::ipKey(ip, v4_prefix, v6_prefix);
  FUZZ_CHECK(client::isIpv4(key) == client::isIpv4(ip));
  FUZZ_CHECK(client::ipKey(key, v4_prefix, v6_prefix) == key);
  const std::string shown = client::ipKeyText(key, v4_prefix, v6_prefix);
  const auto network = config::parseCidr(shown);
  FUZZ_CHECK(network.value.has_value());
  FUZZ_CHECK(network.value->addr == key);
  FUZZ_CHECK(network.value->contains(ip));
}

void checkElement(std::string_view element) {
  const auto ip = client::parseForwardedElement(element);
  if (!ip) return;
  // Whatever an element names is an address the rest of the proxy can print
  // and parse again (access log, /limits).
  const auto again = config::parseIp(config::formatIp(*ip));
  FUZZ_CHECK(again == ip);
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  for (;;) {
    const std::size_t at = text.find(sep);
    out.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return out;
    text.remove_prefix(at + 1);
  }
}

}  // namespace

// libFuzzer's entry point; the name is fixed.
// NOLINTNEXTLINE(readability-identifier-naming)
extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const int v4_prefix = size > 0 ? data[0] % 40 - 4 : 24;  // also out of range: clamped
  const int v6_prefix = size > 0 ? data[0] % 140 - 6 : 64;
  const std::vector<std::string_view> lines = split(input, '\n');
  std::vector<config::Cidr> trusted;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    checkIp(lines[i]);
    checkCidr(lines[i]);
    checkAddress(lines[i]);
    if (i >= 2) {
      if (auto cidr = config::parseCidr(lines[i])) trusted.push_back(*cidr.value);
    }
  }
  for (std::string_view element : split(lines.size() > 1 ? lines[1] : std::string_view(), ',')) {
    checkElement(element);
  }
  const auto peer = config::parseIp(lines[0]);
  if (!peer) return 0;
  checkKey(*peer, v4_prefix, v6_prefix);
  const std::string_view xff = lines.size() > 1 ? lines[1] : std::string_view();
  const client::ClientIp who = client::clientIp(*peer, xff, trusted);
  if (!client::inAny(*peer, trusted) || who.xff_invalid) {
    FUZZ_CHECK(who.ip == *peer);
  }
  if (who.ip != *peer) {
    // The answer came from the header: some element names it.
    bool named = false;
    for (std::string_view element : split(xff, ',')) {
      named = named || client::parseForwardedElement(element) == who.ip;
    }
    FUZZ_CHECK(named);
  }
  checkKey(who.ip, v4_prefix, v6_prefix);
  return 0;
}
