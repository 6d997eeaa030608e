#pragma once
// The one place that converts between socket addresses and sluice's own
// forms: config addresses to sockaddr (listeners, upstream targets), a peer's
// sockaddr to the 16-byte IPv4-mapped form the limits key on, and a bound
// socket's port.

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>

#include "proxy/config/config.h"

namespace sluice::transport {

// Fills `out` for a numeric IPv4/IPv6 host or "localhost"; false otherwise.
bool numericSockaddr(const config::Address& a, sockaddr_storage* out, socklen_t* len);
// As numericSockaddr, then a name lookup (start-up and reload only, never per request).
bool resolveSockaddr(const config::Address& a, sockaddr_storage* out, socklen_t* len);

// A peer as the data path keeps it: IPv4-mapped bytes and its text.
struct PeerAddress {
  std::array<std::uint8_t, 16> mapped{};  // ::ffff:a.b.c.d for IPv4
  std::string text;                       // "a.b.c.d" (mapped IPv6 shown as IPv4) or IPv6 text
};
PeerAddress peerOf(const sockaddr* sa);

// The local port a socket is bound to (port 0 listeners), or -1.
int boundPort(int fd);

}  // namespace sluice::transport
