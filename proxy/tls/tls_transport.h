#pragma once
// A TLS connection on a libevent loop (SPEC §9): OpenSSL over the non-blocking
// socket, driven by the same two events as PlainTransport. The handshake runs
// inside the transport; its user hears of readiness only once it is done (or
// failed: then read() reports the end). Output is copied into records of up
// to 16 KiB through one staging buffer per thread, so a head and its body
// leave in one record and one send and an idle connection holds no buffer;
// the Outbox drops bytes only once OpenSSL has written them.

#include <event2/event.h>
#include <openssl/ssl.h>

#include <memory>

#include "proxy/metrics/metrics.h"
#include "proxy/transport/transport.h"

namespace sluice::tls {

class TlsTransport final : public transport::Transport {
 public:
  enum class Role { kServer, kClient };
  // Takes ownership of the connected socket `fd` and of `ssl`.
  TlsTransport(event_base* base, int fd, SSL* ssl, Role role, metrics::TlsHandshakes* stats,
               transport::TransportUser* user);
  ~TlsTransport() override;
  TlsTransport(const TlsTransport&) = delete;
  TlsTransport& operator=(const TlsTransport&) = delete;

  ssize_t read(char* buf, std::size_t len) noexcept override;
  transport::IoResult write(transport::Outbox& out) noexcept override;
  void wantRead(bool on) noexcept override;
  void wantWrite() noexcept override;
  void cancelWrite() noexcept override;
  void quiet() noexcept override;
  void close() noexcept override;
  int connectError() noexcept override;
  void setUser(transport::TransportUser* user) noexcept override { user_ = user; }
  bool secure() const noexcept override { return true; }

 private:
  static constexpr std::size_t kRecordBytes = 16 * 1024;

  static void onEvent(evutil_socket_t fd, short what, void* arg) noexcept;
  // Advances the handshake; true once it is over (done or failed).
  bool handshake() noexcept;
  void armHandshakeEvents(int ssl_error) noexcept;
  // The user may read more than the socket says: OpenSSL holds decrypted bytes.
  void kickIfPending() noexcept;
  ssize_t readFailed(int ret) noexcept;

  int fd_;
  SSL* ssl_;
  Role role_;
  metrics::TlsHandshakes* stats_;
  transport::TransportUser* user_;
  ::event* rev_ = nullptr;         // EV_READ|EV_PERSIST
  ::event* wev_ = nullptr;         // EV_WRITE, one shot
  bool reading_ = false;           // the user wants readable events
  bool user_wants_write_ = false;  // asked before the handshake was over
  bool handshake_done_ = false;
  bool tcp_connected_ = false;  // client: the TCP connect completed
  bool failed_ = false;
  int connect_error_ = 0;
  bool read_wants_write_ = false;  // SSL_read needs the socket writable
  bool write_wants_read_ = false;  // SSL_write needs the socket readable
  std::size_t pending_ = 0;        // bytes of the SSL_write to retry (WANT_WRITE), else 0
};

}  // namespace sluice::tls
