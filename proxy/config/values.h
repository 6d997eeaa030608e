#pragma once
// Pure parsers for the value syntaxes of SPEC §2: durations, sizes, rates,
// addresses and CIDRs. Each returns a Parsed<T>: the value, or an error message
// that names the offending text (the loader adds file, line and column).

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sluice::config {

struct Duration {
  std::int64_t nanos = 0;
  static constexpr Duration seconds(std::int64_t s) { return {s * 1000000000LL}; }
  static constexpr Duration millis(std::int64_t ms) { return {ms * 1000000LL}; }
  static constexpr Duration micros(std::int64_t us) { return {us * 1000LL}; }
  // Fractional seconds, for arithmetic and log fields.
  double inSeconds() const { return static_cast<double>(nanos) / 1e9; }
  // Shortest exact spelling in the config syntax: "250ms", "10s", "1h".
  std::string toString() const;
  friend bool operator==(const Duration&, const Duration&) = default;
};

// A refill rate: `count` tokens per `period_seconds` (1, 60 or 3600).
struct Rate {
  double count = 0;
  double period_seconds = 1;
  double perSecond() const { return count / period_seconds; }
  std::string toString() const;  // "5000/s", "0.5/s", "10/m"
  friend bool operator==(const Rate&, const Rate&) = default;
};

// HOST:PORT. `host` is the literal (IPv6 without brackets); `is_ipv6` set for
// bracketed hosts.
struct Address {
  std::string host;
  std::uint16_t port = 0;
  bool is_ipv6 = false;
  std::string toString() const;  // host:port or [host]:port
  friend bool operator==(const Address&, const Address&) = default;
};

// An IPv4 or IPv6 network. IPv4 is stored as IPv4-mapped IPv6 (::ffff:a.b.c.d)
// with prefix + 96, so one matcher serves both families.
struct Cidr {
  std::array<std::uint8_t, 16> addr{};
  int prefix = 0;  // 0..128 in the mapped space
  bool is_ipv4 = false;
  // True when `ip` (mapped 16-byte form, see parseIp) lies inside the network.
  bool contains(const std::array<std::uint8_t, 16>& ip) const;
  std::string toString() const;  // "10.0.0.0/8", "2001:db8::/32"
  friend bool operator==(const Cidr&, const Cidr&) = default;
};

template <typename T>
struct Parsed {
  std::optional<T> value;
  std::string error;  // set when !value
  explicit operator bool() const { return value.has_value(); }
};

// "250ms", "10s", "5m", "1h" (also "us" and fractions such as "1.5s").
Parsed<Duration> parseDuration(std::string_view text);
// "512", "16KiB", "10MiB", "1GiB" (also KB/MB/GB as powers of 1000).
Parsed<std::uint64_t> parseSize(std::string_view text);
// "N/s", "N/m", "N/h", N > 0, may be fractional.
Parsed<Rate> parseRate(std::string_view text);
// "HOST:PORT", "[::1]:8080"; port 0..65535 (0 = ephemeral).
Parsed<Address> parseAddress(std::string_view text);
// "10.0.0.0/8", "2001:db8::/32"; a bare address is a host route.
Parsed<Cidr> parseCidr(std::string_view text);
// Parses an IP literal (v4 or v6) into the mapped 16-byte form. `*is_ipv4` is
// set for dotted IPv4 and for IPv4-mapped IPv6 (the two are the same address).
std::optional<std::array<std::uint8_t, 16>> parseIp(std::string_view text, bool* is_ipv4 = nullptr);
// Formats the mapped 16-byte form: dotted quad for IPv4-mapped, else RFC 5952 IPv6.
std::string formatIp(const std::array<std::uint8_t, 16>& ip);
// True for the ::ffff:0:0/96 range, i.e. an IPv4 address in the mapped form.
bool isIpv4Mapped(const std::array<std::uint8_t, 16>& ip);

}  // namespace sluice::config
