#pragma once
// One connection to an upstream target, owned by a worker's LocalPool: the
// transport, the fixed input buffer and the response parser. While a request
// uses it, readiness goes to that request's UpstreamUser; while it sits idle
// in the pool, to the pool (a readable idle connection was closed).

#include <cstdint>
#include <memory>

#include "proxy/http/message_parser.h"
#include "proxy/transport/transport.h"
#include "proxy/upstream/shared_pool.h"

namespace sluice::upstream {

inline constexpr std::uint32_t kUpstreamBufferSize = 32 * 1024;

// The request using a connection.
class UpstreamUser {
 public:
  virtual ~UpstreamUser() = default;
  virtual void onUpstreamReady(bool readable, bool writable) noexcept = 0;
};

class LocalPool;

struct UpstreamConn final : transport::TransportUser {
  UpstreamConn(std::shared_ptr<SharedPool> p, std::size_t t)
      : pool(std::move(p)), target(t), parser(HTTP_RESPONSE) {}
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;

  void onTransportReady(bool readable, bool writable) noexcept override;
  // Reads what the peer has into buf at wpos: the read() result.
  ssize_t readMore() noexcept;
  // The input buffer, allocated on first use.
  void ensureBuffer();

  std::unique_ptr<transport::Transport> transport;
  std::shared_ptr<SharedPool> pool;
  std::size_t target = 0;
  bool connected = false;        // TCP handshake done
  bool reused = false;           // served a request before this one
  Nanos idle_deadline = 0;       // while idle in the pool
  LocalPool* home = nullptr;     // the worker's pool that owns it
  UpstreamUser* user = nullptr;  // the request using it, or null when idle
  std::unique_ptr<char[]> buf;
  std::uint32_t rpos = 0;  // first byte not yet forwarded
  std::uint32_t ppos = 0;  // first byte not yet parsed
  std::uint32_t wpos = 0;  // end of data read
  http::MessageParser parser;
  UpstreamConn* next_idle = nullptr;  // intrusive idle list
};

}  // namespace sluice::upstream
