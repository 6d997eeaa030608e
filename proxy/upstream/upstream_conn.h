#pragma once
// One connection to an upstream target, owned by a worker. The worker's
// client connection drives it; this struct holds the socket, its events,
// the fixed input buffer and the response parser.

#include <event2/event.h>

#include <cstdint>
#include <memory>

#include "proxy/http/message_parser.h"
#include "proxy/upstream/shared_pool.h"

namespace sluice::upstream {

inline constexpr std::uint32_t kUpstreamBufferSize = 32 * 1024;

struct UpstreamConn {
  UpstreamConn() : parser(HTTP_RESPONSE) {}
  ~UpstreamConn();
  UpstreamConn(const UpstreamConn&) = delete;
  UpstreamConn& operator=(const UpstreamConn&) = delete;

  int fd = -1;
  ::event* read_ev = nullptr;
  ::event* write_ev = nullptr;
  std::shared_ptr<SharedPool> pool;
  std::size_t target = 0;
  bool connected = false;     // TCP handshake done
  bool reused = false;        // served a request before this one
  Nanos idle_deadline = 0;    // while idle in the pool
  void* home = nullptr;       // the worker whose loop owns the socket
  void* owner = nullptr;      // client connection using it, or null when idle
  std::unique_ptr<char[]> buf;
  std::uint32_t rpos = 0;     // first byte not yet forwarded
  std::uint32_t ppos = 0;     // first byte not yet parsed
  std::uint32_t wpos = 0;     // end of data read
  http::MessageParser parser;
  UpstreamConn* next_idle = nullptr;  // intrusive idle list
};

}  // namespace sluice::upstream
