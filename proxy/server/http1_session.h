#pragma once
// One HTTP/1.1 client connection (RFC 9112): the downstream buffer, the
// request parser, the keep-alive and pipelining loop (one request at a time,
// answered in order) and the client-side deadlines. Each admitted request's
// way upstream and back is an exchange::Exchange; requests refused before
// that (framing, size, no route) are answered here.
//
// I/O style (DEPENDENCIES.md): reads go into a fixed buffer taken from the
// worker only while a request is in progress; writes go straight out from
// the callback that produced them; EV_WRITE only after EAGAIN.

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "proxy/event/clock.h"
#include "proxy/exchange/exchange.h"
#include "proxy/http/message_parser.h"
#include "proxy/http/path_normalize.h"
#include "proxy/transport/socket_address.h"
#include "proxy/transport/transport.h"
#include "proxy/tunnel/tunnel.h"

namespace sluice::server {

class Worker;

class Http1Session final : public transport::TransportUser,
                           public exchange::Downstream,
                           public admission::AdmissionWaiter,
                           public tunnel::TunnelOwner {
 public:
  Http1Session(Worker& w, std::unique_ptr<transport::Transport> t, transport::PeerAddress peer);
  ~Http1Session() override;
  Http1Session(const Http1Session&) = delete;
  Http1Session& operator=(const Http1Session&) = delete;

  // Coarse-tick deadline check (the session's and its exchange's).
  void checkTimeout(event::Nanos now);
  // The process is draining: close if idle, else close after this response.
  void drain();
  bool dead() const { return dead_; }

  void onTransportReady(bool readable, bool writable) noexcept override;
  void onAdmission(admission::AdmissionResult& result) override;

  // exchange::Downstream
  event::Nanos now() noexcept override;
  bool beginForwarding() noexcept override;
  exchange::BodyChunk nextBody() noexcept override;
  bool bodyWritten() noexcept override;
  bool requestComplete() const noexcept override { return req_ == Req::kDone; }
  void setReading(bool on) noexcept override { armRead(on); }
  transport::Outbox& clientOut() noexcept override { return out_; }
  transport::IoResult flushClient() noexcept override;
  bool closeAfter() const noexcept override { return close_after_; }
  void setCloseAfter() noexcept override { close_after_ = true; }
  void answerLocal(int status, bool close, std::string_view headers = {},
                   std::span<const std::string_view> violated = {}) noexcept override;
  void exchangeDone() noexcept override;
  void abort() noexcept override { close(); }
  void startTunnel(std::string_view head, std::unique_ptr<transport::Transport> upstream,
                   std::string_view from_upstream) noexcept override;

  // tunnel::TunnelOwner
  void tunnelEnded() noexcept override;
  event::Nanos tunnelClock() noexcept override;

  Http1Session* prev = nullptr;  // the worker's intrusive list
  Http1Session* next = nullptr;

 private:
  enum class Req { kIdle, kHead, kBody, kDone, kDiscard };
  enum class Deadline { kNone, kIdle, kHead, kBody, kWrite };

  void onReadable();
  void onWritable();
  void process();
  bool parseHead();
  bool discardBody();
  void startHead();
  void handleHead();
  bool normalizeTarget(std::string_view url, std::string_view* route_path);
  void startExchange();
  // SPEC §10: the Upgrade tokens of this request the route allows, joined
  // (into upgrade_); "" when the request does not ask for an allowed one.
  std::string_view allowedUpgrade();
  void beginRecord(std::uint64_t bytes_in);
  void pickRequestId();
  // Writes out_; true when all of it is out (false: later, or closed).
  bool writeOut();
  void writeLocal();
  void endRequest();
  void close();
  void recordRequest();
  void setDeadline(Deadline kind, event::Nanos after);
  void armRead(bool on);
  std::string_view headerValue(int i) const;
  std::string_view headerName(int i) const;

  Worker& w_;
  std::unique_ptr<transport::Transport> t_;
  transport::PeerAddress peer_;
  bool reading_ = false;
  std::unique_ptr<char[]> buf_;
  std::uint32_t buf_cap_ = 0;
  std::uint32_t rpos_ = 0, ppos_ = 0, wpos_ = 0;  // forwarded | parsed | read
  http::MessageParser parser_;
  std::shared_ptr<const exchange::Runtime> rt_;
  const exchange::RouteRuntime* route_ = nullptr;
  Req req_ = Req::kIdle;
  bool local_ = false;  // a local answer is being written
  bool close_after_ = false;
  bool head_request_ = false;
  bool client_http10_ = false;
  bool has_body_ = false;
  transport::Outbox out_;
  std::string local_text_;
  Deadline deadline_kind_ = Deadline::kNone;
  event::Nanos deadline_ = 0;
  bool dead_ = false;
  bool draining_ = false;
  std::string request_id_;
  http::PathBuffers path_bufs_;             // normalizePath's output, reused across requests
  std::string target_buf_;                  // the forwarded target when normalizing changed it
  std::string upgrade_;                     // the Upgrade tokens asked for upstream (SPEC §10)
  std::unique_ptr<tunnel::Tunnel> tunnel_;  // after a 101: the connection is a tunnel
  std::string_view target_;                 // request-target to forward (into buf_ or target_buf_)
  std::string log_method_;                  // copies for the access log (the head
  std::string log_path_;                    //   bytes are reused for the body)
  std::string log_client_;                  // client IP as the limits see it
  std::string violated_;                    // denying limits of a 429
  std::uint64_t bytes_in_ = 0;
  exchange::Record record_;
  bool recorded_ = true;    // the current request is counted
  event::Nanos start_ = 0;  // request head complete
  exchange::Exchange exchange_;
};

}  // namespace sluice::server
