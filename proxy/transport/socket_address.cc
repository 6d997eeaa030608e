#include "proxy/transport/socket_address.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstring>

namespace sluice::transport {

bool numericSockaddr(const config::Address& a, sockaddr_storage* out, socklen_t* len) {
  std::memset(out, 0, sizeof *out);
  auto* v4 = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, a.host.c_str(), &v4->sin_addr) == 1 || a.host == "localhost") {
    if (a.host == "localhost") v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(a.port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* v6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, a.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(a.port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

bool resolveSockaddr(const config::Address& a, sockaddr_storage* out, socklen_t* len) {
  if (a.host != "localhost" && numericSockaddr(a, out, len)) return true;
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(a.host.c_str(), nullptr, &hints, &res) != 0 || res == nullptr) return false;
  std::memset(out, 0, sizeof *out);
  std::memcpy(out, res->ai_addr, res->ai_addrlen);
  *len = res->ai_addrlen;
  if (out->ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(out)->sin_port = htons(a.port);
  } else {
    reinterpret_cast<sockaddr_in6*>(out)->sin6_port = htons(a.port);
  }
  freeaddrinfo(res);
  return true;
}

PeerAddress peerOf(const sockaddr* sa) {
  PeerAddress p;
  char buf[INET6_ADDRSTRLEN] = "";
  if (sa->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    p.mapped[10] = 0xff;
    p.mapped[11] = 0xff;
    std::memcpy(p.mapped.data() + 12, &v4->sin_addr, 4);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(p.mapped.data(), &v6->sin6_addr, 16);
    static constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(p.mapped.data(), kMappedPrefix, 12) == 0) {
      inet_ntop(AF_INET, p.mapped.data() + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    }
  }
  p.text = buf;
  return p;
}

int boundPort(int fd) {
  sockaddr_storage bound{};
  socklen_t blen = sizeof bound;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &blen) != 0) return -1;
  return bound.ss_family == AF_INET ? ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port)
                                    : ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);
}

}  // namespace sluice::transport
