#pragma once
// One client connection: read a request head, decide (route, limits),
// answer locally or forward through a pooled upstream connection, stream the
// response back, then the next request (keep-alive, pipelining in order).
//
// I/O style (DEPENDENCIES.md): the read event is armed once; reads go into a
// fixed buffer; writes go straight out with writev() from the callback that
// produced the data; EV_WRITE is armed only after EAGAIN.

#include <sys/uio.h>

#include <array>
#include <span>
#include <cstdint>
#include <memory>
#include <string>

#include "proxy/event/clock.h"
#include "proxy/http/message_parser.h"
#include "proxy/server/runtime.h"
#include "proxy/upstream/upstream_conn.h"

namespace sluice::server {

class Worker;

// Data queued for one socket: up to four slices, written with writev.
struct Outbox {
  std::array<iovec, 4> iov{};
  int count = 0;
  void add(const void* p, std::size_t n) {
    if (n == 0) return;
    iov[static_cast<std::size_t>(count++)] = iovec{const_cast<void*>(p), n};
  }
  bool empty() const { return count == 0; }
  enum class Result { kDone, kAgain, kError };
  // Writes as much as the socket takes; keeps the rest.
  Result flush(int fd);
};

class ClientConn final : public AdmissionWaiter {
 public:
  ClientConn(Worker& w, int fd, const sockaddr* peer, int peer_len);
  ~ClientConn() override;
  void onAdmission(AdmissionResult& result) override;
  ClientConn(const ClientConn&) = delete;
  ClientConn& operator=(const ClientConn&) = delete;

  // Coarse-tick timeout check.
  void checkTimeout(event::Nanos now);
  // A slot (or an idle connection) for the pool this request waits on.
  void onSlot(std::size_t target);
  void onIdleConn(upstream::UpstreamConn* uc);
  // The process is draining: close if idle, else close after this response.
  void drain();

  void onUpstreamEvent(short what);

  ClientConn* prev = nullptr;
  ClientConn* next = nullptr;
  bool dead() const { return dead_; }

 private:
  enum class Req { kIdle, kHead, kBody, kDone, kDiscard };
  enum class Resp { kNone, kHead, kBody, kLocal };
  enum class Deadline {
    kNone, kIdle, kHead, kBody, kPending, kConnect, kResponse, kWrite, kUpstreamIdle
  };

  static void onEvent(evutil_socket_t fd, short what, void* arg);
  void onReadable();
  void onWritable();
  void process();
  bool ensureBuffer();
  void startHead();
  void handleHead();
  void afterAdmission(AdmissionResult& verdict);
  void answerLocal(int status, bool close, std::string_view extra_headers = {},
                   std::span<const std::string_view> violated = {});
  void acquireUpstream();
  void connectUpstream(std::size_t target);
  void attachUpstream(upstream::UpstreamConn* uc);
  void buildUpstreamHead();
  void pumpRequest();
  void upstreamReadable();
  void upstreamWritable();
  void handleResponseHead();
  void pumpResponse();
  void afterClientDrained(bool complete, bool reusable);
  void finishResponse(bool upstream_reusable);
  void upstreamFailed(int status, metrics::UpstreamError kind);
  void abortUpstream();
  void writeClient();
  void endRequest();
  void close();
  void recordRequest();
  void pickRequestId();
  metrics::StatusStats* poolStats() const;
  void setDeadline(Deadline kind, event::Nanos after);
  void armClientRead(bool on);
  void armUpstreamRead(bool on);
  std::string_view headerValue(int i) const;
  std::string_view headerName(int i) const;

  Worker& w_;
  int fd_;
  ::event* ev_ = nullptr;        // EV_READ|EV_PERSIST
  ::event* wev_ = nullptr;       // EV_WRITE, armed on EAGAIN only
  bool reading_ = false;
  std::array<std::uint8_t, 16> peer_{};
  std::string peer_text_;
  std::unique_ptr<char[]> buf_;
  std::uint32_t buf_cap_ = 0;
  std::uint32_t rpos_ = 0, ppos_ = 0, wpos_ = 0;
  http::MessageParser parser_;
  std::shared_ptr<const Runtime> rt_;
  const RouteRuntime* route_ = nullptr;
  Req req_ = Req::kIdle;
  Resp resp_ = Resp::kNone;
  bool close_after_ = false;
  bool head_request_ = false;
  bool client_http10_ = false;
  bool idempotent_ = false;
  bool retried_ = false;
  bool response_started_ = false;
  bool rechunk_ = false;       // close-delimited upstream body re-framed as chunked
  bool expect_continue_ = false;
  bool head_sent_ = false;
  bool resp_head_sent_ = false;
  bool complete_pending_ = false;
  bool reusable_pending_ = false;
  std::string interim_;
  bool has_body_ = false;
  std::uint64_t body_limit_ = 0;
  std::uint64_t token_ = 0;    // while waiting for a pool slot
  upstream::UpstreamConn* up_ = nullptr;
  Outbox to_up_;
  Outbox to_client_;
  std::string up_head_;
  std::string resp_head_;
  std::string local_;
  std::string allowed_headers_;
  std::array<char, 24> chunk_hdr_{};
  Deadline deadline_kind_ = Deadline::kNone;
  event::Nanos deadline_ = 0;
  bool dead_ = false;
  std::uint64_t admission_ticket_ = 0;  // a shared-store decision is pending
  std::string request_id_;
  bool client_request_id_ = false;  // kept from the client's X-Request-Id
  std::string log_method_;          // copies for the access log (the head
  std::string log_path_;            //   bytes are reused for the body)
  std::string log_client_;          // client IP for the access log
  std::string violated_;
  AdmissionResult verdict_;            // denying limits of a 429, for the log
  std::uint64_t bytes_in_ = 0;
  std::uint64_t bytes_out_ = 0;
  const upstream::Target* last_target_ = nullptr;
  int status_ = 0;             // status sent for the current request (metrics, logs)
  bool recorded_ = true;       // the current request is counted
  event::Nanos start_ = 0;     // request head complete
  event::Nanos up_start_ = 0;  // request handed to an upstream connection
  bool draining_ = false;
};

}  // namespace sluice::server
