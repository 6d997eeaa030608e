#include "proxy/config/values.h"

#include <arpa/inet.h>

#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

namespace sluice::config {
namespace {

template <typename T>
Parsed<T> ok(T value) {
  return Parsed<T>{std::move(value), {}};
}

template <typename T>
Parsed<T> fail(std::string message) {
  return Parsed<T>{std::nullopt, std::move(message)};
}

std::string quoted(std::string_view text) { return "'" + std::string(text) + "'"; }

bool isDigit(char c) { return c >= '0' && c <= '9'; }

// A decimal number as the config syntax spells it: digits, optionally a dot
// and more digits. No sign, no exponent, no leading dot.
struct Decimal {
  std::uint64_t whole = 0;
  double fraction = 0;  // in [0, 1)
  bool has_fraction = false;
  double value() const { return static_cast<double>(whole) + fraction; }
};

// Scans a Decimal at the start of `text`; returns the characters consumed
// (0 when `text` does not start with a digit, or the whole part overflows).
std::size_t scanDecimal(std::string_view text, Decimal& out) {
  std::size_t i = 0;
  while (i < text.size() && isDigit(text[i])) ++i;
  if (i == 0) return 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + i, out.whole);
  if (ec != std::errc() || ptr != text.data() + i) return 0;
  if (i + 1 < text.size() && text[i] == '.' && isDigit(text[i + 1])) {
    std::size_t j = i + 1;
    while (j < text.size() && isDigit(text[j])) ++j;
    // "0.<digits>" parsed as a double keeps the fraction exact enough for
    // nanoseconds and bytes (the error is far below one unit).
    std::string frac = "0" + std::string(text.substr(i, j - i));
    double f = 0;
    std::from_chars(frac.data(), frac.data() + frac.size(), f);
    out.fraction = f;
    out.has_fraction = true;
    i = j;
  }
  return i;
}

// Multiplies a Decimal by an integer unit, rounding the fraction to the
// nearest whole unit; nullopt on overflow.
std::optional<std::uint64_t> scale(const Decimal& d, std::uint64_t unit, std::uint64_t max) {
  if (d.whole > max / unit) return std::nullopt;
  std::uint64_t whole = d.whole * unit;
  auto frac = static_cast<std::uint64_t>(std::llround(d.fraction * static_cast<double>(unit)));
  if (frac > max - whole) return std::nullopt;
  return whole + frac;
}

// Shortest round-trip spelling of a double in plain decimals ("5000", "0.5",
// "1000000"): the config syntax has no exponent, and the plain to_chars
// overload picks "1e+06" whenever that is shorter.
std::string formatNumber(double value) {
  char buf[400];  // the longest fixed spelling of a double (denormals) is ~330
  auto [ptr, ec] = std::to_chars(buf, buf + sizeof(buf), value, std::chars_format::fixed);
  if (ec != std::errc()) return "?";
  return std::string(buf, ptr);
}

bool parsePort(std::string_view text, std::uint16_t& port, std::string& error) {
  if (text.empty()) {
    error = "missing port after ':'";
    return false;
  }
  for (char c : text) {
    if (!isDigit(c)) {
      error = "port " + quoted(text) + " is not a number";
      return false;
    }
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value > 65535) {
    error = "port " + std::string(text) + " is out of range (0-65535)";
    return false;
  }
  port = static_cast<std::uint16_t>(value);
  return true;
}

// RFC 1123 host name: dot-separated labels of letters, digits and hyphens,
// each 1..63 characters, not starting or ending with a hyphen.
bool isHostName(std::string_view host) {
  if (host.empty() || host.size() > 253) return false;
  std::size_t label = 0;
  char prev = '.';
  for (char c : host) {
    if (c == '.') {
      if (label == 0 || prev == '-') return false;
      label = 0;
    } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || isDigit(c) || c == '-') {
      if (label == 0 && c == '-') return false;
      if (++label > 63) return false;
    } else {
      return false;
    }
    prev = c;
  }
  return prev != '-' && prev != '.';
}

bool allDigitsAndDots(std::string_view text) {
  for (char c : text) {
    if (!isDigit(c) && c != '.') return false;
  }
  return true;
}

constexpr std::array<std::uint8_t, 12> kMappedPrefix = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

}  // namespace

std::string Duration::toString() const {
  struct Unit {
    std::int64_t nanos;
    const char* suffix;
  };
  static constexpr Unit kUnits[] = {{3600000000000LL, "h"},
                                    {60000000000LL, "m"},
                                    {1000000000LL, "s"},
                                    {1000000LL, "ms"},
                                    {1000LL, "us"}};
  if (nanos == 0) return "0s";
  for (const Unit& unit : kUnits) {
    if (nanos % unit.nanos == 0) return std::to_string(nanos / unit.nanos) + unit.suffix;
  }
  // Sub-microsecond remainder: microseconds with up to three decimals.
  std::string frac = std::to_string(1000 + nanos % 1000).substr(1);
  while (!frac.empty() && frac.back() == '0') frac.pop_back();
  return std::to_string(nanos / 1000) + "." + frac + "us";
}

std::string Rate::toString() const {
  std::string unit;
  if (period_seconds == 1) {
    unit = "s";
  } else if (period_seconds == 60) {
    unit = "m";
  } else if (period_seconds == 3600) {
    unit = "h";
  } else {
    unit = formatNumber(period_seconds) + "s";
  }
  return formatNumber(count) + "/" + unit;
}

std::string Address::toString() const {
  std::string port_text = std::to_string(port);
  if (is_ipv6) return "[" + host + "]:" + port_text;
  return host + ":" + port_text;
}

bool Cidr::contains(const std::array<std::uint8_t, 16>& ip) const {
  int full_bytes = prefix / 8;
  for (int i = 0; i < full_bytes; ++i) {
    if (ip[static_cast<std::size_t>(i)] != addr[static_cast<std::size_t>(i)]) return false;
  }
  int rest = prefix % 8;
  if (rest == 0) return true;
  auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  auto i = static_cast<std::size_t>(full_bytes);
  return (ip[i] & mask) == (addr[i] & mask);
}

std::string Cidr::toString() const {
  if (is_ipv4) return formatIp(addr) + "/" + std::to_string(prefix - 96);
  char buf[INET6_ADDRSTRLEN];
  if (inet_ntop(AF_INET6, addr.data(), buf, sizeof(buf)) == nullptr) return "?";
  return std::string(buf) + "/" + std::to_string(prefix);
}

bool isIpv4Mapped(const std::array<std::uint8_t, 16>& ip) {
  return std::equal(kMappedPrefix.begin(), kMappedPrefix.end(), ip.begin());
}

std::string formatIp(const std::array<std::uint8_t, 16>& ip) {
  char buf[INET6_ADDRSTRLEN];
  const char* out = isIpv4Mapped(ip) ? inet_ntop(AF_INET, ip.data() + 12, buf, sizeof(buf))
                                     : inet_ntop(AF_INET6, ip.data(), buf, sizeof(buf));
  return out == nullptr ? std::string("?") : std::string(out);
}

std::optional<std::array<std::uint8_t, 16>> parseIp(std::string_view text, bool* is_ipv4) {
  // inet_pton wants a NUL-terminated string; anything longer than the
  // longest literal cannot be an address.
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN ||
      text.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  std::string copy(text);
  std::array<std::uint8_t, 16> out{};
  if (inet_pton(AF_INET, copy.c_str(), out.data() + 12) == 1) {
    std::copy(kMappedPrefix.begin(), kMappedPrefix.end(), out.begin());
    if (is_ipv4 != nullptr) *is_ipv4 = true;
    return out;
  }
  if (inet_pton(AF_INET6, copy.c_str(), out.data()) == 1) {
    if (is_ipv4 != nullptr) *is_ipv4 = isIpv4Mapped(out);
    return out;
  }
  return std::nullopt;
}

Parsed<Duration> parseDuration(std::string_view text) {
  const std::string hint = " (expected a number and a unit: us, ms, s, m or h, e.g. 250ms)";
  if (text.empty()) return fail<Duration>("empty duration" + hint);
  if (text.front() == '-') return fail<Duration>("duration " + quoted(text) + " is negative");
  Decimal number;
  std::size_t used = scanDecimal(text, number);
  if (used == 0) return fail<Duration>("invalid duration " + quoted(text) + hint);
  std::string_view unit = text.substr(used);
  if (unit.empty()) return fail<Duration>("duration " + quoted(text) + " has no unit" + hint);
  std::uint64_t unit_nanos = 0;
  if (unit == "us") {
    unit_nanos = 1000ULL;
  } else if (unit == "ms") {
    unit_nanos = 1000000ULL;
  } else if (unit == "s") {
    unit_nanos = 1000000000ULL;
  } else if (unit == "m") {
    unit_nanos = 60000000000ULL;
  } else if (unit == "h") {
    unit_nanos = 3600000000000ULL;
  } else {
    return fail<Duration>("duration " + quoted(text) + " has an unknown unit " + quoted(unit) +
                          hint);
  }
  auto nanos = scale(number, unit_nanos,
                     static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  if (!nanos) return fail<Duration>("duration " + quoted(text) + " is too large");
  return ok(Duration{static_cast<std::int64_t>(*nanos)});
}

Parsed<std::uint64_t> parseSize(std::string_view text) {
  const std::string hint = " (expected bytes, or a number with KiB, MiB, GiB, KB, MB or GB)";
  if (text.empty()) return fail<std::uint64_t>("empty size" + hint);
  if (text.front() == '-') return fail<std::uint64_t>("size " + quoted(text) + " is negative");
  Decimal number;
  std::size_t used = scanDecimal(text, number);
  if (used == 0) return fail<std::uint64_t>("invalid size " + quoted(text) + hint);
  std::string_view unit = text.substr(used);
  struct Unit {
    std::string_view name;
    std::uint64_t bytes;
  };
  static constexpr Unit kUnits[] = {
      {"", 1},
      {"B", 1},
      {"KiB", 1ULL << 10},
      {"MiB", 1ULL << 20},
      {"GiB", 1ULL << 30},
      {"TiB", 1ULL << 40},
      {"KB", 1000ULL},
      {"MB", 1000000ULL},
      {"GB", 1000000000ULL},
      {"TB", 1000000000000ULL},
  };
  for (const Unit& u : kUnits) {
    if (u.name != unit) continue;
    if (u.bytes == 1 && number.has_fraction) {
      return fail<std::uint64_t>("size " + quoted(text) + " is not a whole number of bytes");
    }
    auto bytes = scale(number, u.bytes, std::numeric_limits<std::uint64_t>::max());
    if (!bytes) return fail<std::uint64_t>("size " + quoted(text) + " is too large");
    return ok(*bytes);
  }
  return fail<std::uint64_t>("size " + quoted(text) + " has an unknown unit " + quoted(unit) +
                             hint);
}

Parsed<Rate> parseRate(std::string_view text) {
  const std::string hint = " (expected N/s, N/m or N/h, e.g. 100/s or 0.5/s)";
  std::size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail<Rate>("invalid rate " + quoted(text) + hint);
  }
  std::string_view count_text = text.substr(0, slash);
  std::string_view unit = text.substr(slash + 1);
  if (!count_text.empty() && count_text.front() == '-') {
    return fail<Rate>("rate must be above zero, got " + quoted(text));
  }
  Decimal number;
  if (scanDecimal(count_text, number) != count_text.size() || count_text.empty()) {
    return fail<Rate>("invalid rate " + quoted(text) + hint);
  }
  Rate rate;
  if (unit == "s") {
    rate.period_seconds = 1;
  } else if (unit == "m") {
    rate.period_seconds = 60;
  } else if (unit == "h") {
    rate.period_seconds = 3600;
  } else {
    return fail<Rate>("rate " + quoted(text) + " has an unknown period " + quoted(unit) + hint);
  }
  // Parse the count from the text so that "0.1" is the closest double, not
  // whole + fraction summed.
  double count = 0;
  std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
  if (!(count > 0)) return fail<Rate>("rate must be above zero, got " + quoted(text));
  if (!std::isfinite(count)) return fail<Rate>("rate " + quoted(text) + " is too large");
  rate.count = count;
  return ok(rate);
}

Parsed<Address> parseAddress(std::string_view text) {
  const std::string what = "address " + quoted(text);
  if (text.empty()) return fail<Address>("empty address (expected HOST:PORT)");
  Address address;
  std::string_view port_text;
  if (text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos) return fail<Address>(what + ": missing ']'");
    std::string_view host = text.substr(1, close - 1);
    bool is_ipv4 = false;
    if (!parseIp(host, &is_ipv4) || host.find(':') == std::string_view::npos) {
      return fail<Address>(what + ": " + quoted(host) + " is not an IPv6 address");
    }
    std::string_view rest = text.substr(close + 1);
    if (rest.empty() || rest.front() != ':') {
      return fail<Address>(what + ": missing ':PORT' after ']'");
    }
    address.host = std::string(host);
    address.is_ipv6 = true;
    port_text = rest.substr(1);
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return fail<Address>(what + ": missing port (expected HOST:PORT)");
    }
    std::string_view host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos) {
      return fail<Address>(what + ": IPv6 addresses must be in brackets, e.g. [::1]:8080");
    }
    if (host.empty()) return fail<Address>(what + ": missing host (expected HOST:PORT)");
    if (allDigitsAndDots(host)) {
      if (!parseIp(host))
        return fail<Address>(what + ": " + quoted(host) + " is not an IPv4 address");
    } else if (!isHostName(host)) {
      return fail<Address>(what + ": " + quoted(host) + " is not a valid host name");
    }
    address.host = std::string(host);
    port_text = text.substr(colon + 1);
  }
  std::string error;
  if (!parsePort(port_text, address.port, error)) return fail<Address>(what + ": " + error);
  return ok(std::move(address));
}

Parsed<Cidr> parseCidr(std::string_view text) {
  const std::string what = "CIDR " + quoted(text);
  std::size_t slash = text.find('/');
  std::string_view ip_text = text.substr(0, slash);
  bool is_ipv4 = false;
  bool dotted = ip_text.find(':') == std::string_view::npos;
  auto ip = parseIp(ip_text, &is_ipv4);
  if (!ip) return fail<Cidr>(what + ": " + quoted(ip_text) + " is not an IP address");
  int max_prefix = dotted ? 32 : 128;
  int prefix = max_prefix;
  if (slash != std::string_view::npos) {
    std::string_view prefix_text = text.substr(slash + 1);
    bool digits = !prefix_text.empty() && prefix_text.size() <= 3;
    for (char c : prefix_text) digits = digits && isDigit(c);
    if (!digits) return fail<Cidr>(what + ": prefix " + quoted(prefix_text) + " is not a number");
    std::from_chars(prefix_text.data(), prefix_text.data() + prefix_text.size(), prefix);
    if (prefix > max_prefix) {
      return fail<Cidr>(what + ": prefix /" + std::string(prefix_text) + " is out of range for " +
                        (dotted ? "IPv4 (0-32)" : "IPv6 (0-128)"));
    }
  }
  Cidr cidr;
  cidr.prefix = dotted ? prefix + 96 : prefix;
  // An IPv4-mapped IPv6 network is an IPv4 network when it stays inside ::ffff:0:0/96.
  cidr.is_ipv4 = is_ipv4 && cidr.prefix >= 96;
  // Keep only the network bits, so equal networks compare equal.
  cidr.addr = *ip;
  for (int bit = cidr.prefix; bit < 128; ++bit) {
    auto byte = static_cast<std::size_t>(bit / 8);
    cidr.addr[byte] = static_cast<std::uint8_t>(cidr.addr[byte] & ~(0x80 >> (bit % 8)));
  }
  return ok(cidr);
}

}  // namespace sluice::config
