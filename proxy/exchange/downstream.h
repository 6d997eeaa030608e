#pragma once
// What an exchange needs of the side that brought the request: an HTTP/1
// session today, an HTTP/2 stream later. The exchange never touches the
// client's socket or buffer except through this.

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "proxy/event/clock.h"
#include "proxy/transport/outbox.h"
#include "proxy/transport/transport.h"

namespace sluice::exchange {

// Request body bytes framed and ready to forward.
struct BodyChunk {
  enum class State { kOk, kBad, kTooLarge };
  State state = State::kOk;
  const char* data = nullptr;
  std::uint32_t len = 0;
};

class Downstream {
 public:
  virtual ~Downstream() = default;
  // The time of the current event.
  virtual event::Nanos now() noexcept = 0;
  // The request was admitted: move past its head. False when the session
  // answered instead (a bodiless request that did not complete: 400).
  virtual bool beginForwarding() noexcept = 0;
  // Frames the body bytes read so far; the chunk holds every framed byte not
  // yet written upstream (chunked framing included).
  virtual BodyChunk nextBody() noexcept = 0;
  // The bytes of the last chunk are written upstream. True when more body
  // bytes are already waiting to be framed.
  virtual bool bodyWritten() noexcept = 0;
  // The whole request, body included, has been read.
  virtual bool requestComplete() const noexcept = 0;
  // Reading from the client on or off (upstream backpressure).
  virtual void setReading(bool on) noexcept = 0;
  // The client's output; filled by the exchange, written by flushClient().
  virtual transport::Outbox& clientOut() noexcept = 0;
  // Writes clientOut(). kAgain: the exchange hears onClientDrained() later.
  virtual transport::IoResult flushClient() noexcept = 0;
  // Whether the client connection closes after this response; and asking it to.
  virtual bool closeAfter() const noexcept = 0;
  virtual void setCloseAfter() noexcept = 0;
  // Answers the request locally; the exchange is over.
  virtual void answerLocal(int status, bool close, std::string_view headers = {},
                           std::span<const std::string_view> violated = {}) noexcept = 0;
  // The response is complete and written; the exchange is over.
  virtual void exchangeDone() noexcept = 0;
  // The response was cut short: the client connection must close now.
  virtual void abort() noexcept = 0;
  // The upstream answered 101 (SPEC §10): write `head` to the client, then
  // join the two connections. `from_upstream` are bytes read after the head.
  virtual void startTunnel(std::string_view head, std::unique_ptr<transport::Transport> upstream,
                           std::string_view from_upstream) noexcept = 0;
};

}  // namespace sluice::exchange
