#include "proxy/client/client_ip.h"

#include <algorithm>

namespace sluice::client {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool isPort(std::string_view s) {
  if (s.empty() || s.size() > 5) return false;
  unsigned value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  return value <= 65535;
}

int clampPrefix(int prefix, int max) { return std::clamp(prefix, 0, max); }

}  // namespace

bool isIpv4(const IpAddr& ip) { return config::isIpv4Mapped(ip); }

std::optional<IpAddr> parseForwardedElement(std::string_view element) {
  std::string_view text = trim(element);
  if (text.empty()) return std::nullopt;
  if (text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    std::string_view rest = text.substr(close + 1);
    if (!rest.empty() && !(rest.front() == ':' && isPort(rest.substr(1)))) return std::nullopt;
    std::string_view host = text.substr(1, close - 1);
    bool is_ipv4 = false;
    auto ip = config::parseIp(host, &is_ipv4);
    // Brackets are only for IPv6 literals (RFC 3986 §3.2.2).
    if (!ip || host.find(':') == std::string_view::npos) return std::nullopt;
    return ip;
  }
  std::size_t colon = text.find(':');
  if (colon != std::string_view::npos && text.find(':', colon + 1) == std::string_view::npos) {
    // Exactly one colon: only "IPv4:port" fits (IPv6 has at least two).
    if (!isPort(text.substr(colon + 1))) return std::nullopt;
    bool is_ipv4 = false;
    auto ip = config::parseIp(text.substr(0, colon), &is_ipv4);
    if (!ip || !is_ipv4) return std::nullopt;
    return ip;
  }
  return config::parseIp(text);
}

bool inAny(const IpAddr& ip, std::span<const config::Cidr> networks) {
  return std::any_of(networks.begin(), networks.end(),
                     [&](const config::Cidr& net) { return net.contains(ip); });
}

ClientIp clientIp(const IpAddr& peer, std::string_view xff,
                  std::span<const config::Cidr> trusted_proxies) {
  if (!inAny(peer, trusted_proxies)) return {peer, false};
  std::optional<IpAddr> leftmost;
  std::string_view rest = xff;
  while (!rest.empty()) {
    std::size_t comma = rest.rfind(',');
    std::string_view element = comma == std::string_view::npos ? rest : rest.substr(comma + 1);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(0, comma);
    if (trim(element).empty()) continue;
    auto ip = parseForwardedElement(element);
    if (!ip) return {peer, true};
    if (!inAny(*ip, trusted_proxies)) return {*ip, false};
    leftmost = ip;
  }
  // Every hop is a trusted proxy: the leftmost one is the best we know.
  return {leftmost.value_or(peer), false};
}

IpAddr ipKey(const IpAddr& ip, int ipv4_prefix, int ipv6_prefix) {
  const int prefix = isIpv4(ip) ? 96 + clampPrefix(ipv4_prefix, 32) : clampPrefix(ipv6_prefix, 128);
  IpAddr masked{};
  for (int bit = 0; bit < 128; bit += 8) {
    const auto i = static_cast<std::size_t>(bit / 8);
    if (prefix >= bit + 8) {
      masked[i] = ip[i];
    } else if (prefix > bit) {
      masked[i] = static_cast<std::uint8_t>(ip[i] & (0xff << (8 - (prefix - bit))));
    }
  }
  return masked;
}

std::string ipKeyText(const IpAddr& key, int ipv4_prefix, int ipv6_prefix) {
  const bool v4 = isIpv4(key);
  const int prefix = v4 ? clampPrefix(ipv4_prefix, 32) : clampPrefix(ipv6_prefix, 128);
  std::string text = config::formatIp(key);
  if (prefix != (v4 ? 32 : 128)) text += "/" + std::to_string(prefix);
  return text;
}

}  // namespace sluice::client
