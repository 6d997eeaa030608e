#include "proxy/transport/plain_transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

namespace sluice::transport {

PlainTransport::PlainTransport(event_base* base, int fd, TransportUser* user)
    : fd_(fd), user_(user) {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  rev_ = event_new(base, fd_, EV_READ | EV_PERSIST, &PlainTransport::onEvent, this);
  wev_ = event_new(base, fd_, EV_WRITE, &PlainTransport::onEvent, this);
}

PlainTransport::~PlainTransport() {
  if (rev_ != nullptr) event_free(rev_);
  if (wev_ != nullptr) event_free(wev_);
  if (fd_ >= 0) ::close(fd_);
}

int connectSocket(const sockaddr* addr, socklen_t len, bool* refused) {
  *refused = false;
  const int fd = ::socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (::connect(fd, addr, len) != 0 && errno != EINPROGRESS) *refused = true;
  return fd;
}

std::unique_ptr<PlainTransport> PlainTransport::connect(event_base* base, const sockaddr* addr,
                                                        socklen_t len, TransportUser* user,
                                                        bool* refused) {
  const int fd = connectSocket(addr, len, refused);
  if (fd < 0) return nullptr;
  auto t = std::make_unique<PlainTransport>(base, fd, user);
  if (!*refused) t->wantWrite();
  return t;
}

void PlainTransport::onEvent(evutil_socket_t, short what, void* arg) noexcept {
  auto* t = static_cast<PlainTransport*>(arg);
  t->user_->onTransportReady((what & EV_READ) != 0, (what & EV_WRITE) != 0);
}

ssize_t PlainTransport::read(char* buf, std::size_t len) noexcept {
  return ::recv(fd_, buf, len, 0);
}

IoResult PlainTransport::write(Outbox& out) noexcept {
  while (out.count > 0) {
    // One buffer (every local answer, most heads): send() skips the iovec
    // import and the file-layer checks writev() goes through.
    ssize_t n = out.count == 1 ? ::send(fd_, out.iov[0].iov_base, out.iov[0].iov_len, MSG_NOSIGNAL)
                               : ::writev(fd_, out.iov.data(), out.count);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return IoResult::kAgain;
      return IoResult::kError;
    }
    out.consume(static_cast<std::size_t>(n));
  }
  return IoResult::kDone;
}

void PlainTransport::wantRead(bool on) noexcept {
  if (on == reading_) return;
  reading_ = on;
  if (on) {
    event_add(rev_, nullptr);
  } else {
    event_del(rev_);
  }
}

void PlainTransport::wantWrite() noexcept { event_add(wev_, nullptr); }

void PlainTransport::cancelWrite() noexcept { event_del(wev_); }

void PlainTransport::quiet() noexcept {
  reading_ = false;
  event_del(rev_);
  event_del(wev_);
}

void PlainTransport::close() noexcept {
  quiet();
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

int PlainTransport::connectError() noexcept {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return errno;
  return err;
}

}  // namespace sluice::transport
