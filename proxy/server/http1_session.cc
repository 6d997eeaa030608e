#include "proxy/server/http1_session.h"

#include <errno.h>

#include <cstring>

#include "proxy/client/client_ip.h"
#include "proxy/http/head_rewrite.h"
#include "proxy/http/request_checks.h"
#include "proxy/http/response_writer.h"
#include "proxy/routing/route_table.h"
#include "proxy/server/worker.h"

namespace sluice::server {
namespace {

using http::ParseEvent;
using transport::IoResult;

const std::string kUnmatched = "unmatched";

}  // namespace

Http1Session::Http1Session(Worker& w, std::unique_ptr<transport::Transport> t,
                           transport::PeerAddress peer)
    : w_(w),
      t_(std::move(t)),
      peer_(std::move(peer)),
      parser_(HTTP_REQUEST),
      exchange_(*this, w.pool(), record_) {
  t_->setUser(this);
  armRead(true);
  rt_ = w_.runtime();
  setDeadline(Deadline::kHead, rt_->config->server.header_timeout.nanos);
  w_.addConn(this);
}

Http1Session::~Http1Session() = default;

void Http1Session::onTransportReady(bool readable, bool writable) noexcept {
  if (dead_) return;
  w_.newEvent();
  if (tunnel_) {
    tunnel_->onClientReady(readable, writable, w_.now());
    return;
  }
  if (writable) onWritable();
  if (!dead_ && readable) onReadable();
}

event::Nanos Http1Session::now() noexcept { return w_.now(); }

void Http1Session::armRead(bool on) {
  if (on == reading_ || dead_) return;
  reading_ = on;
  t_->wantRead(on);
}

void Http1Session::setDeadline(Deadline kind, event::Nanos after) {
  deadline_kind_ = kind;
  deadline_ = kind == Deadline::kNone ? 0 : w_.now() + after;
}

std::string_view Http1Session::headerName(int i) const {
  const auto& f = parser_.head().headers[static_cast<std::size_t>(i)];
  return {buf_.get() + f.name.off, f.name.len};
}

std::string_view Http1Session::headerValue(int i) const {
  const auto& f = parser_.head().headers[static_cast<std::size_t>(i)];
  return {buf_.get() + f.value.off, f.value.len};
}

void Http1Session::onReadable() {
  if (!buf_) {
    buf_ = w_.takeBuffer();
    buf_cap_ = w_.clientBufferSize();
  }
  if (wpos_ == buf_cap_) {
    // No room: stop reading until the data ahead is forwarded (backpressure).
    armRead(false);
    return;
  }
  const ssize_t n = t_->read(buf_.get() + wpos_, buf_cap_ - wpos_);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    // The client went away: cancel whatever it asked for (SPEC §5).
    close();
    return;
  }
  if (n < 0) return;
  wpos_ += static_cast<std::uint32_t>(n);
  if (req_ == Req::kIdle) startHead();
  if (req_ == Req::kBody || req_ == Req::kDiscard) {
    setDeadline(Deadline::kBody, rt_->config->server.body_timeout.nanos);
  }
  process();
}

void Http1Session::startHead() {
  req_ = Req::kHead;
  rt_ = w_.runtime();
  parser_.beginMessage(rpos_);
  setDeadline(Deadline::kHead, rt_->config->server.header_timeout.nanos);
}

void Http1Session::process() {
  while (!dead_ && !exchange_.awaitingAdmission()) {
    // A response fully written and a request fully read: next request.
    if (!local_ && !exchange_.active() && req_ == Req::kDone) {
      endRequest();
      continue;
    }
    switch (req_) {
      case Req::kIdle:
        if (ppos_ == wpos_) return;
        startHead();
        continue;
      case Req::kHead:
        if (!parseHead()) return;
        continue;
      case Req::kBody:
        exchange_.onBodyData();
        return;
      case Req::kDiscard:
        if (!discardBody()) return;
        continue;
      case Req::kDone:
        // Pipelined bytes wait in the buffer; stop reading when it is full.
        if (buf_ && wpos_ == buf_cap_) armRead(false);
        return;
    }
  }
}

bool Http1Session::parseHead() {
  if (ppos_ == wpos_) return false;
  const auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
  if (r.event == ParseEvent::kError) {
    answerLocal(parser_.error() == http::ParseError::kTooManyHeaders ? 431 : 400, true);
    return false;
  }
  ppos_ += static_cast<std::uint32_t>(r.consumed);
  const bool complete = r.event == ParseEvent::kHeadComplete;
  if (int status = http::headSizeStatus(parser_.head(), ppos_ - rpos_, complete,
                                        rt_->config->server.max_header_bytes)) {
    answerLocal(status, true);
    return false;
  }
  if (!complete) {
    if (buf_ && wpos_ == buf_cap_) armRead(false);
    return false;
  }
  handleHead();
  return true;
}

bool Http1Session::discardBody() {
  if (ppos_ == wpos_) return false;
  const auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
  if (r.event == ParseEvent::kError || parser_.bodyBytes() > rt_->config->server.max_body_bytes) {
    close();
    return false;
  }
  ppos_ += static_cast<std::uint32_t>(r.consumed);
  rpos_ = ppos_;
  if (r.event == ParseEvent::kMessageComplete) {
    req_ = Req::kDone;
    return true;
  }
  if (rpos_ == wpos_) rpos_ = ppos_ = wpos_ = 0;
  return false;
}

void Http1Session::beginRecord(std::uint64_t bytes_in) {
  start_ = w_.now();
  recorded_ = false;
  record_ = exchange::Record{};
  bytes_in_ = bytes_in;
  violated_.clear();
}

void Http1Session::handleHead() {
  const auto& h = parser_.head();
  beginRecord(h.end - h.start);
  pickRequestId();
  std::string_view url(buf_.get() + h.url.off, h.url.len);
  if (rt_->access_log) {
    log_method_.assign(buf_.get() + h.method_span.off, h.method_span.len);
    log_path_.assign(routing::requestPath(url));
  }
  target_ = url;
  const auto& cfg = *rt_->config;
  rpos_ = h.start;
  client_http10_ = h.version_minor == 0;
  close_after_ = !h.keep_alive || draining_ || w_.shared().draining.load();
  head_request_ = h.method == HTTP_HEAD;
  has_body_ = h.chunked || h.content_length > 0;
  if (int status = http::requestHeadStatus(h, cfg.server.max_body_bytes)) {
    answerLocal(status, true);
    return;
  }
  std::string_view method(buf_.get() + h.method_span.off, h.method_span.len);
  std::string_view host = h.host_index >= 0 ? headerValue(h.host_index) : std::string_view();
  std::string_view route_path = routing::requestPath(url);
  if (cfg.server.normalize_path && !normalizeTarget(url, &route_path)) {
    answerLocal(400, true);
    return;
  }
  const routing::Route* route = rt_->routes.match(route_path, host, method);
  if (route == nullptr) {
    answerLocal(404, !has_body_ && close_after_);
    return;
  }
  route_ = &rt_->route_runtime[route->index];
  startExchange();
}

// SPEC §12: routes see the normalized path with %2F read as '/'; upstream and
// the access log get the normalized path, %2F still encoded, followed by the
// target's query as the client sent it. An absolute-form target goes upstream
// in origin-form. False: the path cannot be normalized (400).
bool Http1Session::normalizeTarget(std::string_view url, std::string_view* route_path) {
  const std::string_view path = *route_path;
  const http::NormalizedPath n = http::normalizePath(path, path_bufs_);
  if (!n.ok()) return false;
  *route_path = n.route;
  // Where the path ends in the target: origin-form paths are a prefix of it.
  std::size_t rest = path.data() == url.data() ? path.size() : 0;
  if (rest == 0) {
    while (rest < url.size() && url[rest] != '?' && url[rest] != '#') ++rest;
  }
  if (n.forward.data() != url.data() || n.forward.size() != rest) {
    target_buf_.assign(n.forward);
    target_buf_.append(url.substr(rest));
    target_ = target_buf_;
    if (rt_->access_log) log_path_.assign(n.forward);
  }
  return true;
}

void Http1Session::startExchange() {
  const auto& cfg = *rt_->config;
  const auto& h = parser_.head();
  // Admission: client identity and every limit of the route.
  admission::RequestView view;
  view.peer = peer_.mapped;
  std::string xff_joined;
  const std::string& key_header = cfg.clients.api_key.header;
  for (int i = 0; i < h.header_count; ++i) {
    std::string_view name = headerName(i);
    if (http::equalsIgnoreCase(name, "x-forwarded-for")) {
      if (!xff_joined.empty()) xff_joined.append(", ");
      xff_joined.append(headerValue(i));
    } else if (http::equalsIgnoreCase(name, key_header)) {
      if (view.has_api_key_header) {
        answerLocal(400, true);  // SPEC §12: two API-key lines are ambiguous identity
        return;
      }
      view.api_key_header = headerValue(i);
      view.has_api_key_header = true;
    }
  }
  view.xff = xff_joined;
  if (rt_->access_log) {
    // The log names the client as the limits see it: behind a trusted proxy,
    // the address X-Forwarded-For reports.
    const auto& trusted = cfg.clients.trusted_proxies;
    log_client_ = trusted.empty()
                      ? peer_.text
                      : config::formatIp(client::clientIp(peer_.mapped, xff_joined, trusted).ip);
  }
  std::string_view url(buf_.get() + h.url.off, h.url.len);
  if (std::size_t q = url.find('?'); q != std::string_view::npos) view.query = url.substr(q + 1);
  view.worker = w_.id();
  view.base = w_.base();
  view.waiter = this;
  exchange::Request r;
  r.rt = rt_.get();
  r.route = route_;
  r.head = &h;
  r.buf = buf_.get();
  r.target = target_;
  r.peer_text = peer_.text;
  r.request_id = request_id_;
  r.worker = w_.id();
  r.start = start_;
  r.has_body = has_body_;
  r.head_request = head_request_;
  r.http10 = client_http10_;
  r.idempotent = http::isIdempotent(h.method);
  r.https = t_->secure();
  r.upgrade = allowedUpgrade();
  setDeadline(Deadline::kNone, 0);  // the exchange's deadlines apply from here
  exchange_.start(r, view);
}

void Http1Session::onAdmission(admission::AdmissionResult& result) {
  exchange_.onAdmission(result);
  if (!dead_) process();
}

void Http1Session::pickRequestId() {
  // SPEC §1: keep the client's X-Request-Id when it is 1-128 visible
  // characters; otherwise make one.
  const auto& h = parser_.head();
  for (int i = 0; i < h.header_count; ++i) {
    if (!http::equalsIgnoreCase(headerName(i), "x-request-id")) continue;
    std::string_view v = headerValue(i);
    bool ok = !v.empty() && v.size() <= 128;
    for (char ch : v) {
      if (ch < 0x21 || ch > 0x7e) ok = false;
    }
    if (ok) {
      request_id_.assign(v);
      return;
    }
    break;
  }
  w_.newRequestId(&request_id_);
}

bool Http1Session::beginForwarding() noexcept {
  const auto& h = parser_.head();
  rpos_ = ppos_ = h.end;
  if (has_body_) {
    req_ = Req::kBody;
    setDeadline(Deadline::kBody, rt_->config->server.body_timeout.nanos);
    return true;
  }
  const auto r = parser_.feed(buf_.get(), ppos_, 0);
  if (r.event != ParseEvent::kMessageComplete) {  // a bodiless message completes at once
    answerLocal(400, true);
    return false;
  }
  req_ = Req::kDone;
  return true;
}

exchange::BodyChunk Http1Session::nextBody() noexcept {
  exchange::BodyChunk c;
  if (req_ == Req::kBody && ppos_ < wpos_) {
    const auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
    if (r.event == ParseEvent::kError) {
      c.state = exchange::BodyChunk::State::kBad;
      return c;
    }
    ppos_ += static_cast<std::uint32_t>(r.consumed);
    if (parser_.bodyBytes() > rt_->config->server.max_body_bytes) {
      c.state = exchange::BodyChunk::State::kTooLarge;
      return c;
    }
    if (r.event == ParseEvent::kMessageComplete) {
      req_ = Req::kDone;
      if (deadline_kind_ == Deadline::kBody) setDeadline(Deadline::kNone, 0);
    }
  }
  c.data = buf_.get() + rpos_;
  c.len = ppos_ - rpos_;
  return c;
}

bool Http1Session::bodyWritten() noexcept {
  rpos_ = ppos_;
  if (req_ != Req::kBody) return false;
  if (rpos_ == wpos_) rpos_ = ppos_ = wpos_ = 0;
  armRead(true);
  return ppos_ < wpos_;
}

IoResult Http1Session::flushClient() noexcept {
  const IoResult res = t_->write(out_);
  if (res == IoResult::kAgain) {
    t_->wantWrite();
    if (deadline_kind_ != Deadline::kWrite) {
      setDeadline(Deadline::kWrite, rt_->config->server.idle_timeout.nanos);
    }
  } else if (res == IoResult::kDone && deadline_kind_ == Deadline::kWrite) {
    setDeadline(Deadline::kNone, 0);
  }
  return res;
}

void Http1Session::answerLocal(int status, bool close, std::string_view extra_headers,
                               std::span<const std::string_view> violated) noexcept {
  exchange_.cancel();  // whatever was under way upstream is over
  const auto& h = parser_.head();
  const bool has_body = req_ == Req::kHead && (h.chunked || h.content_length > 0);
  if (status == 503) extra_headers = "Retry-After: 1\r\n";
  if (recorded_) {  // an answer outside a request (e.g. 400, 408 on a partial head)
    beginRecord(wpos_ - rpos_);
    log_method_.clear();
    log_client_.clear();
    log_path_.clear();
    w_.newRequestId(&request_id_);
  }
  record_.status = status;
  if (status == 429 && rt_->access_log) {
    for (std::string_view v : violated) {
      if (!violated_.empty()) violated_.push_back(',');
      violated_.append(v);
    }
  }
  if (close || draining_ || w_.shared().draining.load()) close_after_ = true;
  local_text_.clear();
  http::LocalResponse r;
  r.status = status;
  r.close = close_after_;
  r.head_only = head_request_;
  r.extra_headers = extra_headers;
  r.request_id = request_id_;
  r.violated_policies = violated;
  http::appendProblemResponse(local_text_, r);
  if (req_ == Req::kHead) {
    rpos_ = ppos_ = h.end;
    if (has_body && !close_after_) {
      req_ = Req::kDiscard;  // read and drop the body so the connection stays usable
      setDeadline(Deadline::kBody, rt_->config->server.body_timeout.nanos);
    } else {
      req_ = Req::kDone;
      if (!has_body && !close_after_) parser_.feed(buf_.get(), ppos_, 0);
    }
  }
  local_ = true;
  out_ = transport::Outbox{};
  out_.add(local_text_.data(), local_text_.size());
  record_.bytes_out += local_text_.size();
  writeLocal();
}

bool Http1Session::writeOut() {
  switch (t_->write(out_)) {
    case IoResult::kError:
      close();
      return false;
    case IoResult::kAgain:
      t_->wantWrite();
      if (local_ && (deadline_kind_ == Deadline::kNone || deadline_kind_ == Deadline::kIdle)) {
        setDeadline(Deadline::kWrite, rt_->config->server.idle_timeout.nanos);
      }
      return false;
    case IoResult::kDone:
      break;
  }
  if (deadline_kind_ == Deadline::kWrite) setDeadline(Deadline::kNone, 0);
  return true;
}

void Http1Session::writeLocal() {
  if (dead_ || !writeOut()) return;
  local_ = false;
  recordRequest();
  if (close_after_) {
    close();
    return;
  }
  process();
}

void Http1Session::onWritable() {
  if (out_.empty()) return;
  if (local_) {
    writeLocal();
  } else if (writeOut()) {
    exchange_.onClientDrained();
  }
}

void Http1Session::exchangeDone() noexcept {
  recordRequest();
  if (req_ != Req::kDone) close_after_ = true;  // answered before the body ended
  if (close_after_) {
    close();
    return;
  }
  process();
}

void Http1Session::endRequest() {
  if (close_after_) {
    close();
    return;
  }
  const std::uint32_t left = wpos_ - ppos_;
  if (left > 0 && ppos_ > 0) std::memmove(buf_.get(), buf_.get() + ppos_, left);
  rpos_ = ppos_ = 0;
  wpos_ = left;
  req_ = Req::kIdle;
  route_ = nullptr;
  has_body_ = false;
  armRead(true);
  if (wpos_ == 0) {
    if (buf_) w_.giveBuffer(std::move(buf_), buf_cap_);
    setDeadline(Deadline::kIdle, rt_->config->server.idle_timeout.nanos);
  } else {
    startHead();
  }
}

void Http1Session::recordRequest() {
  if (recorded_) return;
  recorded_ = true;
  metrics::StatusStats* stats = route_ != nullptr ? route_->stats : rt_->unmatched_stats;
  const event::Nanos took = w_.now() - start_;
  if (stats != nullptr) stats->record(w_.id(), record_.status, took);
  if (!rt_->access_log) return;
  event::AccessRecord r;
  r.wall_seconds = w_.shared().clock.wallSeconds();
  r.request_id = request_id_;
  r.client = log_client_.empty() ? std::string_view(peer_.text) : std::string_view(log_client_);
  r.method = log_method_;
  r.path = log_path_;
  r.status = record_.status;
  r.bytes_in = bytes_in_ + parser_.bodyBytes();
  r.bytes_out = record_.bytes_out;
  r.duration_seconds = static_cast<double>(took) / 1e9;
  const std::size_t route_index = static_cast<std::size_t>(route_ - rt_->route_runtime.data());
  r.route = route_ != nullptr ? rt_->routes.routes()[route_index].name : kUnmatched;
  r.upstream =
      record_.upstream != nullptr ? std::string_view(record_.upstream->text) : std::string_view();
  r.limits = violated_;
  event::appendAccessLine(w_.accessBuffer(), r, rt_->access_log->json());
  w_.flushAccessLog(false);
}

void Http1Session::close() {
  if (dead_) return;
  exchange_.cancel();
  if (record_.status != 0) recordRequest();  // an answer was under way
  dead_ = true;
  t_->close();
  if (buf_) w_.giveBuffer(std::move(buf_), buf_cap_);
  w_.removeConn(this);
  w_.retire(this);
}

void Http1Session::checkTimeout(event::Nanos now) {
  if (dead_) return;
  if (tunnel_) {
    tunnel_->checkTimeout(now);
    return;
  }
  exchange_.checkTimeout(now);
  if (dead_ || deadline_kind_ == Deadline::kNone || now < deadline_) return;
  const Deadline kind = deadline_kind_;
  deadline_kind_ = Deadline::kNone;
  switch (kind) {
    case Deadline::kNone:
      return;
    case Deadline::kIdle:
    case Deadline::kWrite:
      close();
      return;
    case Deadline::kHead:
      if (req_ == Req::kHead && wpos_ > rpos_) {
        answerLocal(408, true);
      } else {
        close();
      }
      return;
    case Deadline::kBody:
      if (req_ == Req::kDiscard || (exchange_.active() && exchange_.responseStarted())) {
        close();
        return;
      }
      close_after_ = true;
      answerLocal(408, true);
      return;
  }
}

void Http1Session::drain() {
  draining_ = true;
  close_after_ = true;
  if (req_ == Req::kIdle && wpos_ == 0 && !local_ && !exchange_.active()) close();
}

}  // namespace sluice::server
