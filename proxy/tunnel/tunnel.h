#pragma once
// A tunnel (SPEC §10): after a 101 the client's connection and the upstream
// connection are joined and bytes are copied both ways until either side
// closes or nothing moves for tunnel_idle_timeout. Bytes are read into one
// buffer per worker thread and written at once; only what the receiving side
// cannot take now is kept (at most one read's worth per direction), and while
// it waits the sending side is not read (backpressure both ways, memory
// bounded whatever the peers do, nothing held by an idle tunnel).
// No sockets here: both ends are Transports, so tests drive it with fakes.

#include <event2/event.h>

#include <cstdint>
#include <memory>
#include <string_view>

#include "proxy/event/clock.h"
#include "proxy/metrics/metrics.h"
#include "proxy/transport/transport.h"

namespace sluice::tunnel {

// Told once when the tunnel is over (the owner closes both connections).
class TunnelOwner {
 public:
  virtual ~TunnelOwner() = default;
  virtual void tunnelEnded() noexcept = 0;
  // The time now, read fresh (the tunnel's own events come from its timer
  // and its upstream connection). Used only by a tunnel with an event base.
  virtual event::Nanos tunnelClock() noexcept { return 0; }
};

class Tunnel final : public transport::TransportUser {
 public:
  static constexpr std::size_t kBufferBytes = 16 * 1024;

  // `client` stays owned by the caller (the session forwards its events
  // with onClientReady); `upstream` is owned by the tunnel from now on.
  // With `base`, the tunnel keeps its own idle timer (no periodic check
  // touches an idle tunnel); without, the owner calls checkTimeout.
  Tunnel(transport::Transport& client, std::unique_ptr<transport::Transport> upstream,
         TunnelOwner& owner, metrics::TunnelStats* stats, event::Nanos idle_timeout,
         event_base* base = nullptr);
  ~Tunnel() override;
  Tunnel(const Tunnel&) = delete;
  Tunnel& operator=(const Tunnel&) = delete;

  // Starts copying: `to_client` and `to_upstream` are bytes already read
  // (the 101 head and what followed it; what the client sent after its
  // request head).
  void start(std::string_view to_client, std::string_view to_upstream, event::Nanos now);
  // The client's connection is ready (its events come through the session).
  void onClientReady(bool readable, bool writable, event::Nanos now) noexcept;
  // Ends the tunnel when nothing moved for idle_timeout.
  void checkTimeout(event::Nanos now) noexcept;
  bool ended() const { return ended_; }
  std::uint64_t bytesToUpstream() const { return up_.bytes; }
  std::uint64_t bytesToClient() const { return down_.bytes; }

  void onTransportReady(bool readable, bool writable) noexcept override;  // upstream

 private:
  static void onTimer(evutil_socket_t, short, void* arg) noexcept;
  void armTimer(event::Nanos after) noexcept;
  struct Direction {
    transport::Transport* from = nullptr;
    transport::Transport* to = nullptr;
    bool to_upstream = false;
    std::unique_ptr<char[]> held;  // bytes the sink has not taken yet
    transport::Outbox out;         // the unwritten bytes (in held while waiting)
    bool in_scratch = false;       // out points into the thread's read buffer
    std::uint64_t bytes = 0;
  };

  // Keeps what `d.out` still points at (the thread's buffer) in d.held.
  static void hold(Direction& d);
  // Writes what `d` holds, then reads and writes until the source has
  // nothing or the sink is full.
  void pump(Direction& d) noexcept;
  // A write of `d` finished or stalled: true when the buffer is empty again.
  bool flush(Direction& d) noexcept;
  void end() noexcept;

  transport::Transport& client_;
  std::unique_ptr<transport::Transport> upstream_;
  TunnelOwner& owner_;
  metrics::TunnelStats* stats_;  // the route's; may be null
  event::Nanos idle_timeout_;
  event::Nanos last_moved_ = 0;
  event::Nanos now_ = 0;
  ::event* timer_ = nullptr;  // the idle timer (with an event base)
  Direction up_;              // client -> upstream
  Direction down_;            // upstream -> client
  bool ended_ = false;
};

}  // namespace sluice::tunnel
