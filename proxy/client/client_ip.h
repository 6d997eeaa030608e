#pragma once
// The client address of a request (SPEC §3 step 3): the peer, or the address a
// trusted proxy reported in X-Forwarded-For, and the per-IP bucket network.

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "proxy/client/key_hash.h"
#include "proxy/config/values.h"

namespace sluice::client {

struct ClientIp {
  IpAddr ip{};
  bool xff_invalid = false;  // a trusted hop sent an entry we could not parse; ip is the peer
};

// True when `ip` is IPv4 (the mapped ::ffff:0:0/96 form).
bool isIpv4(const IpAddr& ip);

// Parses one X-Forwarded-For element. Accepts surrounding spaces/tabs, IPv4,
// bare IPv6, "[IPv6]", "[IPv6]:port" and "IPv4:port" (some balancers append
// the source port); rejects zone ids, "unknown" and RFC 7239 obfuscated names.
std::optional<IpAddr> parseForwardedElement(std::string_view element);

// SPEC §3: the peer unless it is trusted; then X-Forwarded-For (all lines
// joined by ',') walked right to left past trusted proxies: the first
// untrusted entry, or the leftmost when every entry is trusted. Entries left
// of the answer are never parsed (the client wrote them). Empty list elements
// are skipped (RFC 9110 §5.6.1). An unparsable entry on the walk gives the
// peer with xff_invalid set.
ClientIp clientIp(const IpAddr& peer, std::string_view xff,
                  std::span<const config::Cidr> trusted_proxies);

// True when some network in `networks` contains `ip`.
bool inAny(const IpAddr& ip, std::span<const config::Cidr> networks);

// The bucket network of `ip`: IPv4 masked to ipv4_prefix (0..32), IPv6 to
// ipv6_prefix (0..128); out-of-range prefixes are clamped.
IpAddr ipKey(const IpAddr& ip, int ipv4_prefix, int ipv6_prefix);

// Display form of an ipKey: "10.1.2.0/24", "2001:db8:1::/64", or the plain
// address at /32 and /128.
std::string ipKeyText(const IpAddr& key, int ipv4_prefix, int ipv6_prefix);

}  // namespace sluice::client
