#pragma once
// A TCP socket on a libevent loop (DEPENDENCIES.md I/O style): the read event
// is armed once and stays armed unless backpressure turns it off; EV_WRITE is
// armed only after EAGAIN; recv()/send() for one buffer, writev() for more.

#include <event2/event.h>
#include <sys/socket.h>

#include <memory>

#include "proxy/transport/transport.h"

namespace sluice::transport {

// A non-blocking TCP socket with a connect to `addr` started: -1 when the
// socket cannot be made; `*refused` when the connect failed at once.
int connectSocket(const sockaddr* addr, socklen_t len, bool* refused);

class PlainTransport final : public Transport {
 public:
  // Takes ownership of the connected socket `fd` (TCP_NODELAY is set).
  PlainTransport(event_base* base, int fd, TransportUser* user);
  ~PlainTransport() override;
  PlainTransport(const PlainTransport&) = delete;
  PlainTransport& operator=(const PlainTransport&) = delete;

  // Starts a non-blocking connect to `addr`: null when the socket cannot be
  // made; `*refused` when the connect failed at once (the target is down).
  static std::unique_ptr<PlainTransport> connect(event_base* base, const sockaddr* addr,
                                                 socklen_t len, TransportUser* user, bool* refused);

  ssize_t read(char* buf, std::size_t len) noexcept override;
  IoResult write(Outbox& out) noexcept override;
  void wantRead(bool on) noexcept override;
  void wantWrite() noexcept override;
  void cancelWrite() noexcept override;
  void quiet() noexcept override;
  void close() noexcept override;
  int connectError() noexcept override;
  void setUser(TransportUser* user) noexcept override { user_ = user; }

 private:
  static void onEvent(evutil_socket_t fd, short what, void* arg) noexcept;

  int fd_;
  TransportUser* user_;
  ::event* rev_ = nullptr;  // EV_READ|EV_PERSIST
  ::event* wev_ = nullptr;  // EV_WRITE, one shot
  bool reading_ = false;
};

}  // namespace sluice::transport
