#pragma once
// The seam under a connection: bytes in, bytes out, and readiness. The
// session (client side) and the upstream connection drive one each; a plain
// socket today, TLS later. Readiness comes back through TransportUser, so a
// fake transport in tests needs no socket and no event loop.

#include <sys/types.h>

#include <cstddef>

#include "proxy/transport/outbox.h"

namespace sluice::transport {

// Told when the transport can make progress (called from the event loop).
class TransportUser {
 public:
  virtual ~TransportUser() = default;
  virtual void onTransportReady(bool readable, bool writable) noexcept = 0;
};

class Transport {
 public:
  virtual ~Transport() = default;
  // Reads up to `len` bytes: > 0 bytes read, 0 at end of stream, -1 with
  // errno set (EAGAIN/EWOULDBLOCK/EINTR: nothing now).
  virtual ssize_t read(char* buf, std::size_t len) noexcept = 0;
  // Writes as much of `out` as the peer takes now and drops it from `out`.
  virtual IoResult write(Outbox& out) noexcept = 0;
  // Readable events on or off (off: backpressure; nothing is read).
  virtual void wantRead(bool on) noexcept = 0;
  // One writable event, after a write returned kAgain or a connect started.
  virtual void wantWrite() noexcept = 0;
  // Drops a pending writable event (nothing more to write).
  virtual void cancelWrite() noexcept = 0;
  // Stops every event (the transport stays open until destroyed).
  virtual void quiet() noexcept = 0;
  // Stops every event and closes the connection now; the object may be
  // destroyed later (it can be inside its own callback).
  virtual void close() noexcept = 0;
  // The outcome of a non-blocking connect once writable: 0 or an errno.
  virtual int connectError() noexcept = 0;
  // Who is told about readiness; may change (a pooled connection).
  virtual void setUser(TransportUser* user) noexcept = 0;
  // The bytes are encrypted (TLS): X-Forwarded-Proto is https.
  virtual bool secure() const noexcept { return false; }
};

}  // namespace sluice::transport
