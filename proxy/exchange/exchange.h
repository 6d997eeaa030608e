#pragma once
// One request's way through admission -> pool -> upstream -> response
// (SPEC §3-§5). The session that read the request hands it over with
// start() and hears back only through Downstream; the upstream side is a
// ConnectionSource and the UpstreamConn it lends. Neither is a socket here,
// so the whole exchange runs against fakes in tests.

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/event/clock.h"
#include "proxy/exchange/downstream.h"
#include "proxy/exchange/runtime.h"
#include "proxy/http/message_parser.h"
#include "proxy/upstream/local_pool.h"

namespace sluice::exchange {

// What the session knows of the request when it hands it over.
struct Request {
  const Runtime* rt = nullptr;              // the snapshot the request started with
  const RouteRuntime* route = nullptr;      // its route
  const http::MessageHead* head = nullptr;  // valid until beginForwarding()
  const char* buf = nullptr;                // the bytes head offsets point into
  std::string_view target;                  // request-target to forward
  std::string_view peer_text;               // for X-Forwarded-For
  std::string_view request_id;              // X-Request-Id, kept by the session
  int worker = 0;                           // for per-worker metric shards
  event::Nanos start = 0;                   // head complete
  bool has_body = false;
  bool head_request = false;
  bool http10 = false;
  bool idempotent = false;
  bool https = false;  // came over TLS: X-Forwarded-Proto https
  // SPEC §10: the Upgrade tokens the route allows that the client asked for
  // ("" = no tunnel: Upgrade is dropped as hop-by-hop).
  std::string_view upgrade;
};

// What the exchange tells the session's request record (metrics, access log).
struct Record {
  int status = 0;                              // status sent to the client
  std::uint64_t bytes_out = 0;                 // bytes sent to the client
  const upstream::Target* upstream = nullptr;  // the last target tried
};

class Exchange final : public admission::AdmissionWaiter,
                       public upstream::PoolWaiter,
                       public upstream::UpstreamUser {
 public:
  Exchange(Downstream& down, upstream::ConnectionSource& source, Record& record)
      : down_(down), source_(source), record_(record) {}
  ~Exchange() override;
  Exchange(const Exchange&) = delete;
  Exchange& operator=(const Exchange&) = delete;

  // Starts `req`: decides its limits with `view` (whose waiter, the session,
  // hears a decision the store makes later),
  // then forwards it or has the session answer locally.
  void start(const Request& req, admission::RequestView& view);
  // From start() until the response is complete or handed back.
  bool active() const { return active_; }
  // A shared store is deciding; the session must wait.
  bool awaitingAdmission() const { return admission_ticket_ != 0; }
  // Response bytes went to the client: a failure now can only cut it short.
  bool responseStarted() const { return response_started_; }
  // More request body bytes were read.
  void onBodyData();
  // The client took what flushClient() could not write at once.
  void onClientDrained();
  // Enforces the pending/connect/response/upstream-idle deadlines.
  void checkTimeout(event::Nanos now);
  // The request is abandoned (client gone, body timeout): cancel admission
  // and queueing, close the upstream connection. The session answers or closes.
  void cancel();

  void onAdmission(admission::AdmissionResult& result) override;
  void onSlot(std::size_t target) noexcept override;
  void onIdleConn(upstream::UpstreamConn* uc) noexcept override;
  void onUpstreamReady(bool readable, bool writable) noexcept override;

 private:
  enum class Resp { kNone, kHead, kBody };
  enum class Deadline { kNone, kPending, kConnect, kResponse, kUpstreamIdle };

  void afterAdmission(admission::AdmissionResult& verdict);
  void acquire();
  void connect(std::size_t target);
  void attach(upstream::UpstreamConn* uc);
  void pumpRequest();
  void upstreamWritable();
  void upstreamReadable();
  void upstreamEnded(ssize_t n);
  void handleResponseHead();
  bool parseResponse(bool* complete);
  bool relayInterim(bool* flush_now);
  // The upstream agreed to switch protocols: relay its 101, hand both
  // connections to the session's tunnel. The exchange is over.
  void switchProtocols();
  void queueBody();
  void pumpResponse();
  void afterClientDrained(bool complete, bool reusable);
  void finishResponse(bool reusable);
  void upstreamFailed(int status, metrics::UpstreamError kind);
  void bodyFailed(int status);
  void abortUpstream();
  // Closes the upstream connection and the client's: the response is cut short.
  void cutShort();
  void leaveQueue();
  metrics::StatusStats* poolStats() const;
  const std::shared_ptr<upstream::SharedPool>& pool() const;
  void setDeadline(Deadline kind, event::Nanos after);

  Downstream& down_;
  upstream::ConnectionSource& source_;
  Record& record_;
  Request req_;
  bool active_ = false;
  Resp resp_ = Resp::kNone;
  bool retried_ = false;
  bool response_started_ = false;
  bool head_sent_ = false;
  bool resp_head_sent_ = false;
  bool complete_pending_ = false;
  bool reusable_pending_ = false;
  bool rechunk_ = false;                // close-delimited upstream body re-framed as chunked
  std::uint64_t admission_ticket_ = 0;  // a shared-store decision is pending
  std::uint64_t token_ = 0;             // while waiting for a pool slot
  upstream::UpstreamConn* up_ = nullptr;
  transport::Outbox to_up_;
  std::string up_head_;
  std::string resp_head_;
  std::string interim_;
  std::string allowed_headers_;
  std::array<char, 24> chunk_hdr_{};
  admission::AdmissionResult verdict_;  // reused: a 429's header text allocates nothing
  Deadline deadline_kind_ = Deadline::kNone;
  event::Nanos deadline_ = 0;
  event::Nanos up_start_ = 0;  // request handed to an upstream connection
};

}  // namespace sluice::exchange
