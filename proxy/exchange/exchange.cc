#include "proxy/exchange/exchange.h"

#include <errno.h>

#include <cstdio>

#include "proxy/http/head_rewrite.h"

namespace sluice::exchange {
namespace {

using http::ParseEvent;
using transport::IoResult;

constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

}  // namespace

Exchange::~Exchange() {
  if (up_ != nullptr) {
    // Destroyed mid-request (a worker stopping at once on a second SIGTERM):
    // close the upstream connection too. Only its slot is returned; other
    // workers may already be gone, so no waiter is handed anything.
    up_->pool->releaseSlot(up_->target);
    delete up_;
  }
}

const std::shared_ptr<upstream::SharedPool>& Exchange::pool() const {
  return req_.rt->pools[req_.route->pool_index];
}

metrics::StatusStats* Exchange::poolStats() const {
  return req_.route != nullptr ? req_.rt->pool_stats[req_.route->pool_index] : nullptr;
}

void Exchange::setDeadline(Deadline kind, event::Nanos after) {
  deadline_kind_ = kind;
  deadline_ = kind == Deadline::kNone ? 0 : down_.now() + after;
}

void Exchange::start(const Request& req, admission::RequestView& view) {
  req_ = req;
  active_ = true;
  resp_ = Resp::kNone;
  retried_ = false;
  response_started_ = false;
  head_sent_ = false;
  rechunk_ = false;
  complete_pending_ = reusable_pending_ = false;
  setDeadline(Deadline::kNone, 0);
  record_.upstream = nullptr;
  admission::AdmissionResult& verdict = verdict_;
  verdict.status = 0;
  verdict.ticket = 0;
  verdict.headers.clear();
  verdict.allowed_headers.clear();
  verdict.violated.clear();
  allowed_headers_.clear();
  if (req_.rt->admission)
    req_.rt->admission->decide(req_.route->limits, view, req_.start, &verdict);
  if (verdict.status == admission::kAdmissionPending) {
    // A shared store decides; onAdmission() continues (within redis.timeout).
    admission_ticket_ = verdict.ticket;
    return;
  }
  afterAdmission(verdict);
}

void Exchange::onAdmission(admission::AdmissionResult& result) {
  admission_ticket_ = 0;
  if (!active_) return;
  afterAdmission(result);
}

void Exchange::afterAdmission(admission::AdmissionResult& verdict) {
  if (verdict.status != 0) {
    active_ = false;
    down_.answerLocal(verdict.status,
                      verdict.status == 400 || (req_.has_body && down_.closeAfter()),
                      verdict.headers, verdict.violated);
    return;
  }
  allowed_headers_.swap(verdict.allowed_headers);
  up_head_.clear();
  http::UpstreamHeadInput in;
  in.target = req_.target;
  in.http10 = req_.http10;
  in.peer_text = req_.peer_text;
  in.request_id = req_.request_id;
  in.proto = req_.https ? "https" : "http";
  in.upgrade = req_.upgrade;
  http::buildUpstreamHead(*req_.head, req_.buf, in, &up_head_);
  if (!down_.beginForwarding()) return;  // the session answered 400
  resp_ = Resp::kHead;
  acquire();
}

void Exchange::acquire() {
  up_start_ = req_.start;
  const upstream::ConnectionSource::Acquired a = source_.acquire(pool(), this);
  switch (a.got) {
    case upstream::ConnectionSource::Got::kConn:
      attach(a.conn);
      return;
    case upstream::ConnectionSource::Got::kSlot:
      connect(a.target);
      return;
    case upstream::ConnectionSource::Got::kFull:
      upstreamFailed(503, metrics::UpstreamError::kPoolFull);
      return;
    case upstream::ConnectionSource::Got::kQueued:
      token_ = a.token;
      setDeadline(Deadline::kPending, pool()->config().pending_timeout.nanos);
      return;
  }
}

void Exchange::onSlot(std::size_t target) noexcept {
  token_ = 0;
  connect(target);
}

void Exchange::onIdleConn(upstream::UpstreamConn* uc) noexcept {
  token_ = 0;
  attach(uc);
}

void Exchange::connect(std::size_t target) {
  record_.upstream = &pool()->target(target);
  up_ = source_.open(pool(), target, this);
  if (up_ == nullptr) {
    upstreamFailed(502, metrics::UpstreamError::kConnect);
    return;
  }
  setDeadline(Deadline::kConnect, pool()->config().connect_timeout.nanos);
}

void Exchange::attach(upstream::UpstreamConn* uc) {
  up_ = uc;
  record_.upstream = &uc->pool->target(uc->target);
  uc->user = this;
  uc->reused = true;
  uc->rpos = uc->ppos = uc->wpos = 0;
  uc->parser.beginMessage(0);
  uc->ensureBuffer();
  pumpRequest();
}

void Exchange::onUpstreamReady(bool readable, bool writable) noexcept {
  if (up_ == nullptr) return;
  if (writable) {
    if (!up_->connected) {
      if (const int err = up_->transport->connectError(); err != 0) {
        if (err == EPROTO && up_->transport->secure()) {
          upstreamFailed(502, metrics::UpstreamError::kTls);  // SPEC §9: kind="tls"
          return;
        }
        up_->pool->markDown(up_->target, down_.now());
        upstreamFailed(502, metrics::UpstreamError::kConnect);
        return;
      }
      up_->connected = true;
      // Connected: a body still arriving is bounded by the session's
      // body_timeout; the response deadline starts once it is all written.
      setDeadline(Deadline::kNone, 0);
      up_->ensureBuffer();
      up_->parser.beginMessage(0);
      up_->transport->wantRead(true);
      pumpRequest();
    } else {
      upstreamWritable();
    }
    if (up_ == nullptr) return;
  }
  if (readable) upstreamReadable();
}

void Exchange::onBodyData() {
  if (up_ == nullptr || !up_->connected) return;
  pumpRequest();
}

void Exchange::pumpRequest() {
  if (up_ == nullptr) return;
  up_->connected = true;        // a pooled connection
  if (!to_up_.empty()) return;  // waiting for the socket to drain
  if (!head_sent_) {
    to_up_.add(up_head_.data(), up_head_.size());
    head_sent_ = true;
  }
  const BodyChunk body = down_.nextBody();
  if (body.state != BodyChunk::State::kOk) {
    bodyFailed(body.state == BodyChunk::State::kBad ? 400 : 413);
    return;
  }
  to_up_.add(body.data, body.len);
  upstreamWritable();
}

void Exchange::bodyFailed(int status) {
  abortUpstream();
  active_ = false;
  if (response_started_) {
    down_.abort();
    return;
  }
  resp_ = Resp::kNone;
  if (status == 413) down_.setCloseAfter();
  down_.answerLocal(status, true);
}

void Exchange::upstreamWritable() {
  if (up_ == nullptr) return;
  const IoResult res = up_->transport->write(to_up_);
  if (res == IoResult::kAgain) {
    up_->transport->wantWrite();
    down_.setReading(false);
    return;
  }
  if (res == IoResult::kError) {
    to_up_ = transport::Outbox{};
    // The write failed; the read side reports what happened (EOF or RST).
    upstreamReadable();
    return;
  }
  // Everything queued is written: the head and the body framed so far.
  const bool more = down_.bodyWritten();
  if (!down_.requestComplete()) {
    if (more) pumpRequest();
  } else if (resp_ == Resp::kHead && deadline_kind_ != Deadline::kResponse) {
    setDeadline(Deadline::kResponse, up_->pool->config().response_timeout.nanos);
    down_.setReading(true);
  }
}

void Exchange::upstreamReadable() {
  upstream::UpstreamConn* uc = up_;
  if (uc == nullptr) return;
  if (uc->wpos == upstream::kUpstreamBufferSize) {
    uc->transport->wantRead(false);
    return;
  }
  const ssize_t n = uc->readMore();
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    upstreamEnded(n);
    return;
  }
  uc->wpos += static_cast<std::uint32_t>(n);
  if (resp_ == Resp::kBody) {
    setDeadline(Deadline::kUpstreamIdle, uc->pool->config().idle_timeout.nanos);
  }
  pumpResponse();
}

void Exchange::upstreamEnded(ssize_t n) {
  upstream::UpstreamConn* uc = up_;
  if (resp_ == Resp::kHead) {
    if (uc->wpos == 0 && uc->reused && req_.idempotent && !req_.has_body && !retried_) {
      // A pooled connection the server closed before answering: retry once
      // on a fresh connection (RFC 9110 §9.2.2, idempotent requests only).
      retried_ = true;
      abortUpstream();
      head_sent_ = false;
      acquire();
      return;
    }
    upstreamFailed(
        502, uc->wpos == 0 ? metrics::UpstreamError::kReset : metrics::UpstreamError::kProtocol);
    return;
  }
  if (resp_ == Resp::kBody && n == 0 && uc->parser.bodyUntilEof() && uc->parser.finishAtEof()) {
    // Close-delimited body ended.
    if (rechunk_) {
      down_.clientOut().add(kLastChunk.data(), kLastChunk.size());
      switch (down_.flushClient()) {
        case IoResult::kError:
          break;
        case IoResult::kAgain:
          complete_pending_ = true;
          reusable_pending_ = false;
          uc->transport->wantRead(false);
          setDeadline(Deadline::kNone, 0);
          return;
        case IoResult::kDone:
          finishResponse(false);
          return;
      }
    } else {
      finishResponse(false);
      return;
    }
  }
  // Truncated response (or the client went away): no clean end for the client.
  cutShort();
}

void Exchange::handleResponseHead() {
  upstream::UpstreamConn* uc = up_;
  const http::MessageHead& h = uc->parser.head();
  const http::ResponseFraming framing =
      http::responseFraming(h, req_.head_request, req_.http10, down_.closeAfter());
  if (framing.no_body) uc->parser.skipBody();  // RFC 9112 §6.3
  rechunk_ = framing.rechunk;
  if (framing.close) down_.setCloseAfter();
  resp_head_.clear();
  http::ResponseHeadInput in;
  in.framing = framing;
  in.request_id = req_.request_id;
  in.extra_headers = allowed_headers_;
  http::buildResponseHead(h, uc->buf.get(), in, &resp_head_);
  resp_head_sent_ = false;
  resp_ = Resp::kBody;
  response_started_ = true;
  record_.status = h.status;
  if (metrics::StatusStats* ps = poolStats()) {
    ps->record(req_.worker, h.status, down_.now() - up_start_);
  }
  uc->rpos = uc->ppos;
  setDeadline(Deadline::kUpstreamIdle, uc->pool->config().idle_timeout.nanos);
}

bool Exchange::relayInterim(bool* flush_now) {
  upstream::UpstreamConn* uc = up_;
  if (uc->parser.head().status == 101) {
    if (req_.upgrade.empty()) {
      upstreamFailed(502, metrics::UpstreamError::kProtocol);  // 101 to a request without Upgrade
    } else {
      switchProtocols();
    }
    return false;
  }
  uc->parser.skipBody();
  uc->parser.feed(uc->buf.get(), uc->ppos, 0);
  *flush_now = !req_.http10;  // HTTP/1.0 clients get no interim responses
  if (*flush_now) {
    interim_.assign(uc->buf.get() + uc->rpos, uc->ppos - uc->rpos);
    down_.clientOut().add(interim_.data(), interim_.size());
  }
  uc->rpos = uc->ppos;
  uc->parser.beginMessage(uc->ppos);
  return true;
}

void Exchange::switchProtocols() {
  upstream::UpstreamConn* uc = up_;
  const http::MessageHead& h = uc->parser.head();
  http::ResponseHeadInput in;
  in.framing.no_body = true;
  in.request_id = req_.request_id;
  in.upgrade = req_.upgrade;
  for (int i = 0; i < h.header_count; ++i) {
    const http::HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    if (http::equalsIgnoreCase({uc->buf.get() + f.name.off, f.name.len}, "upgrade")) {
      in.upgrade = {uc->buf.get() + f.value.off, f.value.len};  // what the upstream switched to
    }
  }
  resp_head_.clear();
  http::buildResponseHead(h, uc->buf.get(), in, &resp_head_);
  record_.status = 101;
  record_.bytes_out += resp_head_.size();
  if (metrics::StatusStats* ps = poolStats()) ps->record(req_.worker, 101, down_.now() - up_start_);
  interim_.assign(uc->buf.get() + uc->ppos, uc->wpos - uc->ppos);  // the tunnel's first bytes
  up_ = nullptr;
  active_ = false;
  resp_ = Resp::kNone;
  setDeadline(Deadline::kNone, 0);
  down_.startTunnel(resp_head_, source_.detach(uc), interim_);
}

bool Exchange::parseResponse(bool* complete) {
  upstream::UpstreamConn* uc = up_;
  while (!*complete) {
    if (resp_ == Resp::kHead) {
      if (uc->ppos == uc->wpos) break;
      const auto r = uc->parser.feed(uc->buf.get(), uc->ppos, uc->wpos - uc->ppos);
      if (r.event == ParseEvent::kError) {
        upstreamFailed(502, metrics::UpstreamError::kProtocol);
        return false;
      }
      uc->ppos += static_cast<std::uint32_t>(r.consumed);
      if (r.event == ParseEvent::kNeedMore) {
        if (uc->wpos != upstream::kUpstreamBufferSize) break;
        upstreamFailed(502, metrics::UpstreamError::kProtocol);  // head larger than our buffer
        return false;
      }
      const int status = uc->parser.head().status;
      if (status >= 100 && status < 200) {
        // Interim response (100 Continue, 103): relay it, then the final one.
        bool flush_now = false;
        if (!relayInterim(&flush_now)) return false;
        if (flush_now) break;  // flush it before going on
        continue;
      }
      handleResponseHead();
      continue;
    }
    // Body: forward the raw bytes the parser has accepted.
    const auto r = uc->parser.feed(uc->buf.get(), uc->ppos, uc->wpos - uc->ppos);
    if (r.event == ParseEvent::kError) {
      cutShort();
      return false;
    }
    uc->ppos += static_cast<std::uint32_t>(r.consumed);
    if (r.event == ParseEvent::kMessageComplete) *complete = true;
    if (r.event == ParseEvent::kNeedMore || uc->ppos == uc->wpos) break;
  }
  return true;
}

void Exchange::queueBody() {
  upstream::UpstreamConn* uc = up_;
  transport::Outbox& out = down_.clientOut();
  if (resp_ != Resp::kBody) return;
  if (!resp_head_sent_) {
    out.add(resp_head_.data(), resp_head_.size());
    record_.bytes_out += resp_head_.size();
    resp_head_sent_ = true;
  }
  const std::uint32_t len = uc->ppos - uc->rpos;
  record_.bytes_out += len;
  if (len > 0) {
    if (rechunk_) {
      const int hl = std::snprintf(chunk_hdr_.data(), chunk_hdr_.size(), "%x\r\n", len);
      out.add(chunk_hdr_.data(), static_cast<std::size_t>(hl));
      out.add(uc->buf.get() + uc->rpos, len);
      out.add(kCrlf.data(), kCrlf.size());
    } else {
      out.add(uc->buf.get() + uc->rpos, len);
    }
  }
  uc->rpos = uc->ppos;
}

void Exchange::pumpResponse() {
  upstream::UpstreamConn* uc = up_;
  if (uc == nullptr || !down_.clientOut().empty()) return;
  bool complete = false;
  if (!parseResponse(&complete)) return;
  queueBody();
  const bool reusable = complete && uc->parser.head().keep_alive && uc->ppos == uc->wpos &&
                        down_.requestComplete() && to_up_.empty();
  switch (down_.flushClient()) {
    case IoResult::kError:
      cutShort();
      return;
    case IoResult::kAgain:
      // The client is slow: stop reading the upstream until it catches up
      // (the session's write deadline applies meanwhile).
      complete_pending_ = complete;
      reusable_pending_ = reusable;
      uc->transport->wantRead(false);
      setDeadline(Deadline::kNone, 0);
      return;
    case IoResult::kDone:
      break;
  }
  afterClientDrained(complete, reusable);
}

void Exchange::onClientDrained() {
  if (up_ == nullptr || resp_ == Resp::kNone) return;
  const bool complete = complete_pending_;
  const bool reusable = reusable_pending_;
  complete_pending_ = reusable_pending_ = false;
  afterClientDrained(complete, reusable);
}

void Exchange::afterClientDrained(bool complete, bool reusable) {
  upstream::UpstreamConn* uc = up_;
  if (uc == nullptr) return;
  if (uc->rpos == uc->wpos) {
    uc->rpos = uc->ppos = uc->wpos = 0;
    // After an interim response the next head starts at the buffer's start.
    if (resp_ == Resp::kHead) uc->parser.beginMessage(0);
  }
  if (complete) {
    finishResponse(reusable);
    return;
  }
  if (resp_ == Resp::kBody) {
    setDeadline(Deadline::kUpstreamIdle, uc->pool->config().idle_timeout.nanos);
  } else if (resp_ == Resp::kHead) {
    setDeadline(Deadline::kResponse, uc->pool->config().response_timeout.nanos);
  }
  uc->transport->wantRead(true);
  if (uc->ppos < uc->wpos) pumpResponse();
}

void Exchange::finishResponse(bool reusable) {
  upstream::UpstreamConn* uc = up_;
  up_ = nullptr;
  to_up_ = transport::Outbox{};
  resp_ = Resp::kNone;
  active_ = false;
  setDeadline(Deadline::kNone, 0);
  if (uc != nullptr) source_.release(uc, reusable);
  down_.exchangeDone();
}

void Exchange::cutShort() {
  abortUpstream();
  active_ = false;
  down_.abort();
}

void Exchange::abortUpstream() {
  upstream::UpstreamConn* uc = up_;
  up_ = nullptr;
  to_up_ = transport::Outbox{};
  if (uc != nullptr) source_.release(uc, false);
}

void Exchange::leaveQueue() {
  if (token_ == 0) return;
  source_.cancel(pool(), token_);
  token_ = 0;
}

void Exchange::upstreamFailed(int status, metrics::UpstreamError kind) {
  if (metrics::StatusStats* ps = poolStats()) ps->error(req_.worker, kind);
  abortUpstream();
  active_ = false;
  setDeadline(Deadline::kNone, 0);
  if (response_started_) {
    down_.abort();
    return;
  }
  if (!down_.requestComplete()) down_.setCloseAfter();  // the body was not consumed
  resp_ = Resp::kNone;
  down_.answerLocal(status, down_.closeAfter());
}

void Exchange::checkTimeout(event::Nanos now) {
  if (!active_ || deadline_kind_ == Deadline::kNone || now < deadline_) return;
  const Deadline kind = deadline_kind_;
  deadline_kind_ = Deadline::kNone;
  switch (kind) {
    case Deadline::kNone:
      return;
    case Deadline::kPending:
      leaveQueue();
      upstreamFailed(503, metrics::UpstreamError::kPendingTimeout);
      return;
    case Deadline::kConnect:
      upstreamFailed(502, metrics::UpstreamError::kConnect);
      return;
    case Deadline::kResponse:
      upstreamFailed(504, metrics::UpstreamError::kTimeout);
      return;
    case Deadline::kUpstreamIdle:
      cutShort();
      return;
  }
}

void Exchange::cancel() {
  if (admission_ticket_ != 0) {
    req_.rt->admission->cancel(req_.worker, admission_ticket_);
    admission_ticket_ = 0;
  }
  leaveQueue();
  abortUpstream();
  active_ = false;
  resp_ = Resp::kNone;
  deadline_kind_ = Deadline::kNone;
}

}  // namespace sluice::exchange
