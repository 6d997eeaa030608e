#include "proxy/tls/tls_transport.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

namespace sluice::tls {

TlsTransport::TlsTransport(event_base* base, int fd, SSL* ssl, Role role,
                           metrics::TlsHandshakes* stats, transport::TransportUser* user)
    : fd_(fd), ssl_(ssl), role_(role), stats_(stats), user_(user) {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  rev_ = event_new(base, fd_, EV_READ | EV_PERSIST, &TlsTransport::onEvent, this);
  wev_ = event_new(base, fd_, EV_WRITE, &TlsTransport::onEvent, this);
  SSL_set_fd(ssl_, fd_);
  if (role_ == Role::kServer) {
    SSL_set_accept_state(ssl_);
    tcp_connected_ = true;
    event_add(rev_, nullptr);  // the ClientHello
  } else {
    SSL_set_connect_state(ssl_);
    event_add(wev_, nullptr);  // the TCP connect
  }
}

TlsTransport::~TlsTransport() {
  if (rev_ != nullptr) event_free(rev_);
  if (wev_ != nullptr) event_free(wev_);
  SSL_free(ssl_);
  if (fd_ >= 0) ::close(fd_);
}

void TlsTransport::onEvent(evutil_socket_t, short what, void* arg) noexcept {
  auto* t = static_cast<TlsTransport*>(arg);
  bool readable = (what & EV_READ) != 0;
  bool writable = (what & EV_WRITE) != 0;
  if (!t->handshake_done_ && !t->failed_) {
    if (!t->handshake()) return;
    // Over: the user reads (the first request, or the end) and connects.
    readable = true;
    writable = t->user_wants_write_ || t->role_ == Role::kClient;
    t->user_wants_write_ = false;
    if (!t->reading_ && !t->failed_) event_del(t->rev_);
  } else {
    if (readable && t->write_wants_read_) writable = true;
    if (writable && t->read_wants_write_) readable = true;
  }
  t->user_->onTransportReady(readable, writable);
}

bool TlsTransport::handshake() noexcept {
  if (!tcp_connected_) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err != 0) {
      connect_error_ = err;
      failed_ = true;
      return true;
    }
    tcp_connected_ = true;
    event_add(rev_, nullptr);
  }
  ERR_clear_error();
  const int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    handshake_done_ = true;
    if (stats_ != nullptr) {
      auto& c = SSL_version(ssl_) == TLS1_3_VERSION ? stats_->ok13 : stats_->ok12;
      c.fetch_add(1, std::memory_order_relaxed);
    }
    return true;
  }
  const int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    armHandshakeEvents(e);
    return false;
  }
  ERR_clear_error();
  failed_ = true;
  connect_error_ = EPROTO;
  if (stats_ != nullptr) stats_->failed.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void TlsTransport::armHandshakeEvents(int ssl_error) noexcept {
  if (ssl_error == SSL_ERROR_WANT_WRITE) event_add(wev_, nullptr);
}

ssize_t TlsTransport::read(char* buf, std::size_t len) noexcept {
  if (failed_) return 0;  // the handshake failed: the end of this connection
  if (!handshake_done_) {
    errno = EAGAIN;
    return -1;
  }
  read_wants_write_ = false;
  ERR_clear_error();
  std::size_t n = 0;
  const int ret = SSL_read_ex(ssl_, buf, len, &n);
  if (ret == 1) {
    kickIfPending();
    return static_cast<ssize_t>(n);
  }
  return readFailed(ret);
}

ssize_t TlsTransport::readFailed(int ret) noexcept {
  const int e = SSL_get_error(ssl_, ret);
  switch (e) {
    case SSL_ERROR_WANT_READ:
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_WANT_WRITE:
      read_wants_write_ = true;
      event_add(wev_, nullptr);
      errno = EAGAIN;
      return -1;
    case SSL_ERROR_ZERO_RETURN:
      return 0;  // close_notify
    case SSL_ERROR_SYSCALL:
      ERR_clear_error();
      if (errno == 0) return 0;  // the peer closed without close_notify
      return -1;
    default:
      ERR_clear_error();
      errno = EPROTO;
      return -1;
  }
}

void TlsTransport::kickIfPending() noexcept {
  if (reading_ && SSL_pending(ssl_) > 0) event_active(rev_, EV_READ, 0);
}

transport::IoResult TlsTransport::write(transport::Outbox& out) noexcept {
  if (failed_) return transport::IoResult::kError;
  if (!handshake_done_) return transport::IoResult::kAgain;
  write_wants_read_ = false;
  // One record's bytes, copied from the front of `out`. The Outbox drops them
  // only once written, so a retry after WANT_WRITE copies the same bytes
  // again (pending_ of them, as OpenSSL requires); nothing is kept per
  // connection between writes.
  static thread_local std::unique_ptr<char[]> stage;
  if (!stage) stage = std::make_unique<char[]>(kRecordBytes);
  while (!out.empty()) {
    const std::size_t len = pending_ != 0 ? pending_ : std::min(out.bytes(), kRecordBytes);
    std::size_t copied = 0;
    for (int i = 0; i < out.count && copied < len; ++i) {
      const iovec& v = out.iov[static_cast<std::size_t>(i)];
      const std::size_t n = std::min(v.iov_len, len - copied);
      std::memcpy(stage.get() + copied, v.iov_base, n);
      copied += n;
    }
    ERR_clear_error();
    std::size_t n = 0;
    const int ret = SSL_write_ex(ssl_, stage.get(), len, &n);
    if (ret == 1) {
      pending_ = 0;
      out.consume(n);
      continue;
    }
    const int e = SSL_get_error(ssl_, ret);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      pending_ = len;
      write_wants_read_ = e == SSL_ERROR_WANT_READ;
      return transport::IoResult::kAgain;
    }
    ERR_clear_error();
    return transport::IoResult::kError;
  }
  return transport::IoResult::kDone;
}

void TlsTransport::wantRead(bool on) noexcept {
  if (on == reading_) return;
  reading_ = on;
  if (!handshake_done_ && !failed_) return;  // the handshake keeps its own events
  if (on) {
    event_add(rev_, nullptr);
    kickIfPending();
  } else {
    event_del(rev_);
  }
}

void TlsTransport::wantWrite() noexcept {
  if (!handshake_done_ && !failed_) {
    user_wants_write_ = true;
    return;
  }
  event_add(wev_, nullptr);
}

void TlsTransport::cancelWrite() noexcept {
  if (!handshake_done_ && !failed_) {
    user_wants_write_ = false;
    return;
  }
  if (!read_wants_write_) event_del(wev_);
}

void TlsTransport::quiet() noexcept {
  reading_ = false;
  event_del(rev_);
  event_del(wev_);
}

void TlsTransport::close() noexcept {
  quiet();
  if (fd_ < 0) return;
  if (handshake_done_ && !failed_) {
    ERR_clear_error();
    SSL_shutdown(ssl_);  // one close_notify, not waiting for the peer's
    ERR_clear_error();
  }
  ::close(fd_);
  fd_ = -1;
}

int TlsTransport::connectError() noexcept { return failed_ ? connect_error_ : 0; }

}  // namespace sluice::tls
