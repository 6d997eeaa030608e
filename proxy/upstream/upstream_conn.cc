#include "proxy/upstream/upstream_conn.h"

#include "proxy/upstream/local_pool.h"

namespace sluice::upstream {

void UpstreamConn::onTransportReady(bool readable, bool writable) noexcept {
  if (home != nullptr) home->eventStarted();
  if (user != nullptr) {
    user->onUpstreamReady(readable, writable);
    return;
  }
  // An idle pooled connection became readable: the server closed it (or
  // sent bytes nobody asked for). Either way it is done.
  if (home != nullptr) home->idleClosed(this);
}

ssize_t UpstreamConn::readMore() noexcept {
  return transport->read(buf.get() + wpos, kUpstreamBufferSize - wpos);
}

void UpstreamConn::ensureBuffer() {
  if (!buf) buf = std::make_unique<char[]>(kUpstreamBufferSize);
}

}  // namespace sluice::upstream
