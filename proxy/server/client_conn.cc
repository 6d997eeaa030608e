#include "proxy/server/client_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "proxy/client/client_ip.h"
#include "proxy/http/response_writer.h"
#include "proxy/routing/route_table.h"
#include "proxy/server/worker.h"

namespace sluice::server {
namespace {

using http::ParseEvent;

constexpr std::string_view kCrlf = "\r\n";
const std::string kUnmatched = "unmatched";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

// Hop-by-hop fields (RFC 9110 §7.6.1) and fields sluice sets itself.
bool isHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection",         "keep-alive", "proxy-connection", "te",
      "trailer",            "transfer-encoding", "upgrade", "proxy-authorization",
      "x-forwarded-proto",  "x-forwarded-host", "x-forwarded-for"};
  for (std::string_view n : kNames) {
    if (http::equalsIgnoreCase(name, n)) return true;
  }
  return false;
}

bool isResponseHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive", "proxy-connection", "te", "trailer",
      "transfer-encoding", "upgrade", "proxy-authenticate"};
  for (std::string_view n : kNames) {
    if (http::equalsIgnoreCase(name, n)) return true;
  }
  return false;
}

bool isIdempotent(std::uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
      return true;
    default:
      return false;
  }
}

void toMapped(const sockaddr* sa, std::array<std::uint8_t, 16>* out, std::string* text) {
  char buf[INET6_ADDRSTRLEN] = "";
  out->fill(0);
  if (sa->sa_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(sa);
    (*out)[10] = 0xff;
    (*out)[11] = 0xff;
    std::memcpy(out->data() + 12, &v4->sin_addr, 4);
    inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
  } else if (sa->sa_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(out->data(), &v6->sin6_addr, 16);
    static constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::memcmp(out->data(), kMappedPrefix, 12) == 0) {
      inet_ntop(AF_INET, out->data() + 12, buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    }
  }
  *text = buf;
}

}  // namespace

Outbox::Result Outbox::flush(int fd) {
  while (count > 0) {
    // One buffer (every local answer, most heads): send() skips the iovec
    // import and the file-layer checks writev() goes through.
    ssize_t n = count == 1 ? ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL)
                           : ::writev(fd, iov.data(), count);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return Result::kAgain;
      return Result::kError;
    }
    auto left = static_cast<std::size_t>(n);
    int i = 0;
    while (i < count && left >= iov[static_cast<std::size_t>(i)].iov_len) {
      left -= iov[static_cast<std::size_t>(i)].iov_len;
      ++i;
    }
    if (i > 0) {
      for (int k = i; k < count; ++k) {
        iov[static_cast<std::size_t>(k - i)] = iov[static_cast<std::size_t>(k)];
      }
      count -= i;
    }
    if (count > 0 && left > 0) {
      iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + left;
      iov[0].iov_len -= left;
    }
  }
  return Result::kDone;
}

ClientConn::ClientConn(Worker& w, int fd, const sockaddr* peer, int)
    : w_(w), fd_(fd), parser_(HTTP_REQUEST) {
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  toMapped(peer, &peer_, &peer_text_);
  ev_ = event_new(w_.base(), fd_, EV_READ | EV_PERSIST, &ClientConn::onEvent, this);
  wev_ = event_new(w_.base(), fd_, EV_WRITE, &ClientConn::onEvent, this);
  armClientRead(true);
  rt_ = w_.runtime();
  setDeadline(Deadline::kHead, rt_->config->server.header_timeout.nanos);
  w_.addConn(this);
}

ClientConn::~ClientConn() {
  if (up_ != nullptr) {
    // Destroyed mid-request (a worker stopping at once on a second SIGTERM):
    // close the upstream connection too. Only its slot is returned; other
    // workers may already be gone, so no waiter is handed anything.
    up_->pool->releaseSlot(up_->target);
    delete up_;
  }
  if (ev_ != nullptr) event_free(ev_);
  if (wev_ != nullptr) event_free(wev_);
  if (fd_ >= 0) ::close(fd_);
}

void ClientConn::onEvent(evutil_socket_t, short what, void* arg) {
  auto* c = static_cast<ClientConn*>(arg);
  if (c->dead_) return;
  c->w_.newEvent();
  if ((what & EV_WRITE) != 0) c->onWritable();
  if (!c->dead_ && (what & EV_READ) != 0) c->onReadable();
}

void ClientConn::armClientRead(bool on) {
  if (on == reading_ || dead_) return;
  reading_ = on;
  if (on) {
    event_add(ev_, nullptr);
  } else {
    event_del(ev_);
  }
}

void ClientConn::armUpstreamRead(bool on) {
  if (up_ == nullptr) return;
  if (on) {
    event_add(up_->read_ev, nullptr);
  } else {
    event_del(up_->read_ev);
  }
}

void ClientConn::setDeadline(Deadline kind, event::Nanos after) {
  deadline_kind_ = kind;
  deadline_ = kind == Deadline::kNone ? 0 : w_.now() + after;
}

bool ClientConn::ensureBuffer() {
  if (!buf_) {
    buf_ = w_.takeBuffer();
    buf_cap_ = w_.clientBufferSize();
  }
  return true;
}

std::string_view ClientConn::headerName(int i) const {
  const auto& f = parser_.head().headers[static_cast<std::size_t>(i)];
  return {buf_.get() + f.name.off, f.name.len};
}

std::string_view ClientConn::headerValue(int i) const {
  const auto& f = parser_.head().headers[static_cast<std::size_t>(i)];
  return {buf_.get() + f.value.off, f.value.len};
}

void ClientConn::onReadable() {
  ensureBuffer();
  const std::uint32_t cap = buf_cap_;
  if (wpos_ == cap) {
    // No room: stop reading until the data ahead is forwarded (backpressure).
    armClientRead(false);
    return;
  }
  ssize_t n = ::recv(fd_, buf_.get() + wpos_, cap - wpos_, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
    // The client went away: cancel whatever it asked for (SPEC §5).
    close();
    return;
  }
  if (n < 0) return;
  wpos_ += static_cast<std::uint32_t>(n);
  if (req_ == Req::kIdle) startHead();
  if (req_ == Req::kBody) setDeadline(Deadline::kBody, rt_->config->server.body_timeout.nanos);
  process();
}

void ClientConn::startHead() {
  req_ = Req::kHead;
  rt_ = w_.runtime();
  parser_.beginMessage(rpos_);
  setDeadline(Deadline::kHead, rt_->config->server.header_timeout.nanos);
}

void ClientConn::process() {
  while (!dead_ && admission_ticket_ == 0) {
    // A response fully written and a request fully read: next request.
    if (resp_ == Resp::kNone && req_ == Req::kDone) {
      endRequest();
      continue;
    }
    switch (req_) {
      case Req::kIdle:
        if (ppos_ < wpos_) {
          startHead();
          continue;
        }
        return;
      case Req::kHead: {
        if (ppos_ == wpos_) return;
        auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
        const auto& cfg = rt_->config->server;
        if (r.event == ParseEvent::kError) {
          answerLocal(parser_.error() == http::ParseError::kTooManyHeaders ? 431 : 400, true);
          return;
        }
        ppos_ += static_cast<std::uint32_t>(r.consumed);
        const auto& h = parser_.head();
        const std::uint64_t line_limit = cfg.max_header_bytes / 2;
        if (h.url.len + h.method_span.len > line_limit) {
          answerLocal(414, true);
          return;
        }
        if (r.event == ParseEvent::kNeedMore) {
          if (ppos_ - rpos_ > cfg.max_header_bytes) {
            answerLocal(h.header_count == 0 && h.line_end == 0 ? 414 : 431, true);
            return;
          }
          if (buf_ && wpos_ == buf_cap_) armClientRead(false);
          return;
        }
        if (r.event == ParseEvent::kHeadComplete) {
          if (h.end - h.start > cfg.max_header_bytes) {
            answerLocal(431, true);
            return;
          }
          handleHead();
        }
        continue;
      }
      case Req::kBody:
        if (up_ == nullptr || !up_->connected) return;
        pumpRequest();
        return;
      case Req::kDiscard: {
        if (ppos_ == wpos_) return;
        auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
        if (r.event == ParseEvent::kError ||
            parser_.bodyBytes() > rt_->config->server.max_body_bytes) {
          close();
          return;
        }
        ppos_ += static_cast<std::uint32_t>(r.consumed);
        rpos_ = ppos_;
        if (r.event == ParseEvent::kMessageComplete) {
          req_ = Req::kDone;
          continue;
        }
        if (rpos_ == wpos_) rpos_ = ppos_ = wpos_ = 0;
        return;
      }
      case Req::kDone:
        // Pipelined bytes wait in the buffer; stop reading when it is full.
        if (buf_ && wpos_ == buf_cap_) armClientRead(false);
        return;
    }
  }
}

void ClientConn::handleHead() {
  const auto& h = parser_.head();
  start_ = w_.now();
  recorded_ = false;
  status_ = 0;
  bytes_in_ = h.end - h.start;
  bytes_out_ = 0;
  last_target_ = nullptr;
  violated_.clear();
  pickRequestId();
  if (rt_->access_log) {
    log_method_.assign(buf_.get() + h.method_span.off, h.method_span.len);
    std::string_view target(buf_.get() + h.url.off, h.url.len);
    log_path_.assign(routing::requestPath(target));
  }
  const auto& cfg = *rt_->config;
  rpos_ = h.start;
  client_http10_ = h.version_minor == 0;
  close_after_ = !h.keep_alive || draining_ || w_.shared().draining.load();
  head_request_ = h.method == HTTP_HEAD;
  idempotent_ = isIdempotent(h.method);
  retried_ = false;
  response_started_ = false;
  const bool has_body = h.chunked || h.content_length > 0;
  has_body_ = has_body;

  if (h.version_major != 1) {
    answerLocal(505, true);
    return;
  }
  if (h.transfer_encoding && !h.chunked) {
    // Smuggling-shaped framing (RFC 9112 §6.3 rule 4: a request whose
    // Transfer-Encoding does not end in chunked has no knowable length).
    // Bare LF and obs-fold never get here: the parser rejects the head.
    answerLocal(400, true);
    return;
  }
  if ((!client_http10_ && h.host_count != 1) || h.host_count > 1) {
    // RFC 9112 §3.2: exactly one Host on HTTP/1.1.
    answerLocal(400, true);
    return;
  }
  if (h.content_length > cfg.server.max_body_bytes) {
    answerLocal(413, true);
    return;
  }
  std::string_view url(buf_.get() + h.url.off, h.url.len);
  std::string_view method(buf_.get() + h.method_span.off, h.method_span.len);
  std::string_view host = h.host_index >= 0 ? headerValue(h.host_index) : std::string_view();
  const routing::Route* route = rt_->routes.match(routing::requestPath(url), host, method);
  if (route == nullptr) {
    answerLocal(404, !has_body && close_after_);
    return;
  }
  route_ = &rt_->route_runtime[route->index];

  // Admission: client identity and every limit of the route.
  RequestView view;
  view.peer = peer_;
  std::string xff_joined;
  const std::string& key_header = cfg.clients.api_key.header;
  for (int i = 0; i < h.header_count; ++i) {
    std::string_view name = headerName(i);
    if (http::equalsIgnoreCase(name, "x-forwarded-for")) {
      if (!xff_joined.empty()) xff_joined.append(", ");
      xff_joined.append(headerValue(i));
    } else if (!view.has_api_key_header && http::equalsIgnoreCase(name, key_header)) {
      view.api_key_header = headerValue(i);
      view.has_api_key_header = true;
    }
  }
  view.xff = xff_joined;
  if (rt_->access_log) {
    // The log names the client as the limits see it: behind a trusted proxy,
    // the address X-Forwarded-For reports.
    const auto& trusted = cfg.clients.trusted_proxies;
    log_client_ = trusted.empty() ? peer_text_
                                  : config::formatIp(client::clientIp(peer_, xff_joined, trusted).ip);
  }
  if (std::size_t q = url.find('?'); q != std::string_view::npos) view.query = url.substr(q + 1);
  view.worker = w_.id();
  view.base = w_.base();
  view.waiter = this;
  // Reused across requests: a 429's header text allocates nothing.
  AdmissionResult& verdict = verdict_;
  verdict.status = 0;
  verdict.ticket = 0;
  verdict.headers.clear();
  verdict.allowed_headers.clear();
  verdict.violated.clear();
  allowed_headers_.clear();
  if (rt_->admission) {
    rt_->admission->decide(route_->limits, view, start_, &verdict);
  }
  if (verdict.status == kAdmissionPending) {
    // A shared store decides; onAdmission() continues (within redis.timeout).
    admission_ticket_ = verdict.ticket;
    setDeadline(Deadline::kNone, 0);
    return;
  }
  afterAdmission(verdict);
}

void ClientConn::onAdmission(AdmissionResult& verdict) {
  admission_ticket_ = 0;
  if (dead_) return;
  afterAdmission(verdict);
  process();
}

void ClientConn::afterAdmission(AdmissionResult& verdict) {
  const auto& h = parser_.head();
  const auto& cfg = *rt_->config;
  const bool has_body = has_body_;
  if (verdict.status != 0) {
    answerLocal(verdict.status, verdict.status == 400 || (has_body && close_after_),
                verdict.headers, verdict.violated);
    return;
  }
  allowed_headers_.swap(verdict.allowed_headers);

  buildUpstreamHead();
  rpos_ = h.end;
  ppos_ = h.end;
  body_limit_ = cfg.server.max_body_bytes;
  expect_continue_ = h.expect_continue;
  if (has_body) {
    req_ = Req::kBody;
    setDeadline(Deadline::kBody, cfg.server.body_timeout.nanos);
  } else {
    auto r = parser_.feed(buf_.get(), ppos_, 0);
    if (r.event != ParseEvent::kMessageComplete) {  // a bodiless message completes at once
      answerLocal(400, true);
      return;
    }
    req_ = Req::kDone;
  }
  resp_ = Resp::kHead;
  acquireUpstream();
}

void ClientConn::pickRequestId() {
  // SPEC §1: keep the client's X-Request-Id when it is 1-128 visible
  // characters; otherwise make one.
  const auto& h = parser_.head();
  client_request_id_ = false;
  for (int i = 0; i < h.header_count; ++i) {
    if (!http::equalsIgnoreCase(headerName(i), "x-request-id")) continue;
    std::string_view v = headerValue(i);
    bool ok = !v.empty() && v.size() <= 128;
    for (char ch : v) {
      if (ch < 0x21 || ch > 0x7e) ok = false;
    }
    if (ok) {
      request_id_.assign(v);
      client_request_id_ = true;
      return;
    }
    break;
  }
  w_.newRequestId(&request_id_);
}

void ClientConn::buildUpstreamHead() {
  const auto& h = parser_.head();
  const char* b = buf_.get();
  up_head_.clear();
  up_head_.append(b + h.method_span.off, h.method_span.len);
  up_head_.push_back(' ');
  up_head_.append(b + h.url.off, h.url.len);
  // An HTTP/1.0 client's request goes upstream as 1.0 so that the answer
  // comes back in a framing the client understands (no chunked).
  up_head_.append(client_http10_ ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  // Fields named by Connection are hop-by-hop too (RFC 9110 §7.6.1).
  std::string_view connection_fields[8];
  int connection_count = 0;
  std::string_view xff;
  bool multi_xff = false;
  std::string_view host;
  for (int i = 0; i < h.header_count; ++i) {
    std::string_view name = headerName(i);
    if (http::equalsIgnoreCase(name, "connection")) {
      std::string_view v = headerValue(i);
      std::size_t pos = 0;
      while (pos < v.size() && connection_count < 8) {
        std::size_t comma = v.find(',', pos);
        if (comma == std::string_view::npos) comma = v.size();
        std::string_view item = v.substr(pos, comma - pos);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) connection_fields[connection_count++] = item;
        pos = comma + 1;
      }
    } else if (http::equalsIgnoreCase(name, "x-forwarded-for")) {
      if (!xff.empty()) multi_xff = true;
      if (xff.empty()) xff = headerValue(i);
    } else if (http::equalsIgnoreCase(name, "host")) {
      host = headerValue(i);
    }
  }
  for (int i = 0; i < h.header_count; ++i) {
    std::string_view name = headerName(i);
    if (isHopByHop(name) || http::equalsIgnoreCase(name, "x-request-id")) continue;
    bool named = false;
    for (int k = 0; k < connection_count; ++k) {
      if (http::equalsIgnoreCase(name, connection_fields[k])) named = true;
    }
    if (named) continue;
    up_head_.append(name);
    up_head_.append(": ");
    up_head_.append(headerValue(i));
    up_head_.append(kCrlf);
  }
  up_head_.append("X-Forwarded-For: ");
  if (multi_xff) {
    for (int i = 0; i < h.header_count; ++i) {
      if (http::equalsIgnoreCase(headerName(i), "x-forwarded-for")) {
        up_head_.append(headerValue(i));
        up_head_.append(", ");
      }
    }
  } else if (!xff.empty()) {
    up_head_.append(xff);
    up_head_.append(", ");
  }
  up_head_.append(peer_text_);
  up_head_.append("\r\nX-Forwarded-Proto: http\r\n");
  if (!host.empty()) {
    up_head_.append("X-Forwarded-Host: ");
    up_head_.append(host);
    up_head_.append(kCrlf);
  }
  up_head_.append("X-Request-Id: ");
  up_head_.append(request_id_);
  up_head_.append(kCrlf);
  if (h.chunked) up_head_.append("Transfer-Encoding: chunked\r\n");
  up_head_.append(kCrlf);
}

void ClientConn::answerLocal(int status, bool close, std::string_view extra_headers,
                             std::span<const std::string_view> violated) {
  const auto& h = parser_.head();
  const bool has_body = req_ == Req::kHead && (h.chunked || h.content_length > 0);
  if (status == 503) extra_headers = "Retry-After: 1\r\n";
  status_ = status;
  if (recorded_) {  // an answer outside a request (e.g. 400, 408 on a partial head)
    recorded_ = false;
    start_ = w_.now();
    bytes_in_ = wpos_ - rpos_;
    bytes_out_ = 0;
    last_target_ = nullptr;
    log_method_.clear();
    log_client_.clear();
    log_path_.clear();
    violated_.clear();
    w_.newRequestId(&request_id_);
  }
  if (status == 429 && rt_->access_log) {
    for (std::string_view v : violated) {
      if (!violated_.empty()) violated_.push_back(',');
      violated_.append(v);
    }
  }
  if (close || draining_ || w_.shared().draining.load()) close_after_ = true;
  local_.clear();
  http::LocalResponse r;
  r.status = status;
  r.close = close_after_;
  r.head_only = head_request_;
  r.extra_headers = extra_headers;
  r.request_id = request_id_;
  r.violated_policies = violated;
  http::appendProblemResponse(local_, r);
  if (req_ == Req::kHead) {
    if (has_body && !close_after_) {
      // Read and drop the body so the connection stays usable.
      rpos_ = ppos_ = h.end;
      req_ = Req::kDiscard;
    } else {
      rpos_ = ppos_ = parser_.head().end;
      req_ = Req::kDone;
      if (!has_body && !close_after_) parser_.feed(buf_.get(), ppos_, 0);
    }
  }
  resp_ = Resp::kLocal;
  to_client_ = Outbox{};
  to_client_.add(local_.data(), local_.size());
  bytes_out_ += local_.size();
  writeClient();
}

void ClientConn::writeClient() {
  if (dead_) return;
  switch (to_client_.flush(fd_)) {
    case Outbox::Result::kError:
      close();
      return;
    case Outbox::Result::kAgain:
      event_add(wev_, nullptr);
      armUpstreamRead(false);
      if (deadline_kind_ == Deadline::kNone || deadline_kind_ == Deadline::kIdle) {
        setDeadline(Deadline::kWrite, rt_->config->server.idle_timeout.nanos);
      }
      return;
    case Outbox::Result::kDone:
      break;
  }
  if (deadline_kind_ == Deadline::kWrite) setDeadline(Deadline::kNone, 0);
  if (resp_ == Resp::kLocal) {
    resp_ = Resp::kNone;
    recordRequest();
    if (close_after_) {
      close();
      return;
    }
    process();
    return;
  }
  if (up_ != nullptr && (resp_ == Resp::kBody || resp_ == Resp::kHead)) {
    const bool complete = complete_pending_;
    const bool reusable = reusable_pending_;
    complete_pending_ = reusable_pending_ = false;
    afterClientDrained(complete, reusable);
  }
}

void ClientConn::onWritable() {
  if (to_client_.empty()) return;
  writeClient();
}

void ClientConn::acquireUpstream() {
  upstream::SharedPool* pool = route_->pool;
  up_start_ = start_;
  if (upstream::UpstreamConn* uc = w_.takeIdle(pool)) {
    attachUpstream(uc);
    return;
  }
  if (auto slot = pool->reserveSlot(w_.now())) {
    connectUpstream(*slot);
    return;
  }
  token_ = w_.registerWaiter(this);
  if (!pool->enqueue(upstream::Waiter{w_.id(), token_})) {
    w_.unregisterWaiter(token_);
    token_ = 0;
    upstreamFailed(503, metrics::UpstreamError::kPoolFull);
    return;
  }
  setDeadline(Deadline::kPending, pool->config().pending_timeout.nanos);
  w_.reclaimIdleElsewhere(rt_->pools[route_->pool_index]);
}

void ClientConn::onSlot(std::size_t target) {
  token_ = 0;
  connectUpstream(target);
}

void ClientConn::onIdleConn(upstream::UpstreamConn* uc) {
  token_ = 0;
  attachUpstream(uc);
}

void ClientConn::connectUpstream(std::size_t target) {
  auto& pool_ptr = rt_->pools[route_->pool_index];
  upstream::Target& t = pool_ptr->target(target);
  last_target_ = &t;
  auto* uc = new upstream::UpstreamConn();
  uc->pool = pool_ptr;
  uc->target = target;
  uc->owner = this;
  uc->home = &w_;
  uc->fd = ::socket(t.sockaddr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  up_ = uc;
  if (uc->fd < 0) {
    upstreamFailed(502, metrics::UpstreamError::kConnect);
    return;
  }
  int one = 1;
  setsockopt(uc->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  uc->read_ev = event_new(w_.base(), uc->fd, EV_READ | EV_PERSIST, &Worker::onUpstreamEvent, uc);
  uc->write_ev = event_new(w_.base(), uc->fd, EV_WRITE, &Worker::onUpstreamEvent, uc);
  int rc = ::connect(uc->fd, reinterpret_cast<const sockaddr*>(&t.sockaddr), t.sockaddr_len);
  if (rc != 0 && errno != EINPROGRESS) {
    pool_ptr->markDown(target, w_.now());
    upstreamFailed(502, metrics::UpstreamError::kConnect);
    return;
  }
  setDeadline(Deadline::kConnect, pool_ptr->config().connect_timeout.nanos);
  event_add(uc->write_ev, nullptr);
}

void ClientConn::attachUpstream(upstream::UpstreamConn* uc) {
  up_ = uc;
  last_target_ = &uc->pool->target(uc->target);
  uc->owner = this;
  uc->reused = true;
  uc->rpos = uc->ppos = uc->wpos = 0;
  uc->parser.beginMessage(0);
  if (!uc->buf) uc->buf = std::make_unique<char[]>(upstream::kUpstreamBufferSize);
  pumpRequest();
}

void ClientConn::onUpstreamEvent(short what) {
  if (up_ == nullptr) return;
  if ((what & EV_WRITE) != 0) {
    if (!up_->connected) {
      int err = 0;
      socklen_t len = sizeof err;
      getsockopt(up_->fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        up_->pool->markDown(up_->target, w_.now());
        upstreamFailed(502, metrics::UpstreamError::kConnect);
        return;
      }
      up_->connected = true;
      if (!up_->buf) up_->buf = std::make_unique<char[]>(upstream::kUpstreamBufferSize);
      up_->parser.beginMessage(0);
      event_add(up_->read_ev, nullptr);
      pumpRequest();
      if (dead_ || up_ == nullptr) return;
    } else {
      upstreamWritable();
      if (dead_ || up_ == nullptr) return;
    }
  }
  if ((what & EV_READ) != 0) upstreamReadable();
}

void ClientConn::pumpRequest() {
  if (up_ == nullptr || dead_) return;
  if (!up_->connected) {
    up_->connected = true;  // a pooled connection
  }
  if (!to_up_.empty()) return;  // waiting for the socket to drain
  if (!head_sent_) {
    to_up_.add(up_head_.data(), up_head_.size());
    head_sent_ = true;
  }
  if (req_ == Req::kBody && ppos_ < wpos_) {
    auto r = parser_.feed(buf_.get(), ppos_, wpos_ - ppos_);
    if (r.event == ParseEvent::kError) {
      abortUpstream();
      if (!response_started_) {
        answerLocal(400, true);
      } else {
        close();
      }
      return;
    }
    ppos_ += static_cast<std::uint32_t>(r.consumed);
    if (parser_.bodyBytes() > body_limit_) {
      abortUpstream();
      if (!response_started_) {
        resp_ = Resp::kNone;
        close_after_ = true;
        answerLocal(413, true);
      } else {
        close();
      }
      return;
    }
    if (r.event == ParseEvent::kMessageComplete) req_ = Req::kDone;
  }
  if (req_ == Req::kBody || ppos_ > rpos_) {
    to_up_.add(buf_.get() + rpos_, ppos_ - rpos_);
  }
  upstreamWritable();
}

void ClientConn::upstreamWritable() {
  if (up_ == nullptr) return;
  auto res = to_up_.flush(up_->fd);
  if (res == Outbox::Result::kAgain) {
    event_add(up_->write_ev, nullptr);
    armClientRead(false);
    return;
  }
  if (res == Outbox::Result::kError) {
    to_up_ = Outbox{};
    // The write failed; the read side reports what happened (EOF or RST).
    upstreamReadable();
    return;
  }
  // Everything queued is written: the head and the body bytes up to ppos_.
  rpos_ = ppos_;
  if (req_ == Req::kBody) {
    if (rpos_ == wpos_) rpos_ = ppos_ = wpos_ = 0;
    armClientRead(true);
    if (ppos_ < wpos_) {
      pumpRequest();
      return;
    }
  } else if (resp_ == Resp::kHead && deadline_kind_ != Deadline::kResponse) {
    setDeadline(Deadline::kResponse, up_->pool->config().response_timeout.nanos);
    armClientRead(true);
  }
}

void ClientConn::upstreamReadable() {
  upstream::UpstreamConn* uc = up_;
  if (uc == nullptr || dead_) return;
  if (uc->wpos == upstream::kUpstreamBufferSize) {
    armUpstreamRead(false);
    return;
  }
  ssize_t n = ::recv(uc->fd, uc->buf.get() + uc->wpos, upstream::kUpstreamBufferSize - uc->wpos, 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
  if (n <= 0) {
    if (resp_ == Resp::kHead) {
      if (uc->wpos == 0 && uc->reused && idempotent_ && !has_body_ && !retried_) {
        // A pooled connection the server closed before answering: retry once
        // on a fresh connection (RFC 9110 §9.2.2, idempotent requests only).
        retried_ = true;
        abortUpstream();
        head_sent_ = false;
        acquireUpstream();
        return;
      }
      upstreamFailed(502, uc->wpos == 0 ? metrics::UpstreamError::kReset
                                      : metrics::UpstreamError::kProtocol);
      return;
    }
    if (resp_ == Resp::kBody && n == 0 && uc->parser.bodyUntilEof() &&
        uc->parser.finishAtEof()) {
      // Close-delimited body ended.
      if (rechunk_) {
        to_client_.add(kLastChunk.data(), kLastChunk.size());
        switch (to_client_.flush(fd_)) {
          case Outbox::Result::kError: close(); return;
          case Outbox::Result::kAgain:
            complete_pending_ = true;
            reusable_pending_ = false;
            event_add(wev_, nullptr);
            armUpstreamRead(false);
            return;
          case Outbox::Result::kDone: break;
        }
      }
      finishResponse(false);
      return;
    }
    // Truncated response: the client must not see a clean end.
    abortUpstream();
    close();
    return;
  }
  uc->wpos += static_cast<std::uint32_t>(n);
  if (resp_ == Resp::kBody) {
    setDeadline(Deadline::kUpstreamIdle, uc->pool->config().idle_timeout.nanos);
  }
  pumpResponse();
}

void ClientConn::handleResponseHead() {
  upstream::UpstreamConn* uc = up_;
  const auto& h = uc->parser.head();
  const char* b = uc->buf.get();
  const int status = h.status;
  const bool no_body = head_request_ || status == 204 || status == 304;
  if (no_body) uc->parser.skipBody();  // RFC 9112 §6.3
  const bool eof_body = !no_body && !h.chunked && !h.has_content_length;
  rechunk_ = eof_body && !client_http10_;
  if (eof_body && client_http10_) close_after_ = true;
  if (client_http10_) close_after_ = true;

  resp_head_.clear();
  std::string_view start_line(b + h.start, h.line_end - h.start);
  std::size_t sp = start_line.find(' ');
  resp_head_.append("HTTP/1.1");
  resp_head_.append(sp == std::string_view::npos ? std::string_view(" 502\r\n")
                                                 : start_line.substr(sp));
  std::string_view connection;
  for (int i = 0; i < h.header_count; ++i) {
    const auto& f = h.headers[static_cast<std::size_t>(i)];
    if (http::equalsIgnoreCase(std::string_view(b + f.name.off, f.name.len), "connection")) {
      connection = std::string_view(b + f.value.off, f.value.len);
    }
  }
  for (int i = 0; i < h.header_count; ++i) {
    const auto& f = h.headers[static_cast<std::size_t>(i)];
    std::string_view name(b + f.name.off, f.name.len);
    if (isResponseHopByHop(name) || http::equalsIgnoreCase(name, "x-request-id")) continue;
    if (!connection.empty() && http::listContainsToken(connection, name)) continue;
    resp_head_.append(name);
    resp_head_.append(": ");
    resp_head_.append(b + f.value.off, f.value.len);
    resp_head_.append(kCrlf);
  }
  if (!no_body && (h.chunked || rechunk_)) resp_head_.append("Transfer-Encoding: chunked\r\n");
  if (close_after_) resp_head_.append("Connection: close\r\n");
  resp_head_.append("X-Request-Id: ");
  resp_head_.append(request_id_);
  resp_head_.append(kCrlf);
  resp_head_.append(allowed_headers_);
  resp_head_.append(kCrlf);
  resp_head_sent_ = false;
  resp_ = Resp::kBody;
  response_started_ = true;
  status_ = status;
  if (metrics::StatusStats* ps = poolStats()) ps->record(w_.id(), status, w_.now() - up_start_);
  uc->rpos = uc->ppos;
  setDeadline(Deadline::kUpstreamIdle, uc->pool->config().idle_timeout.nanos);
}

void ClientConn::pumpResponse() {
  upstream::UpstreamConn* uc = up_;
  if (uc == nullptr || dead_ || !to_client_.empty()) return;
  bool complete = false;
  to_client_ = Outbox{};
  while (!complete) {
    if (resp_ == Resp::kHead) {
      if (uc->ppos == uc->wpos) break;
      auto r = uc->parser.feed(uc->buf.get(), uc->ppos, uc->wpos - uc->ppos);
      if (r.event == ParseEvent::kError) {
        upstreamFailed(502, metrics::UpstreamError::kProtocol);
        return;
      }
      uc->ppos += static_cast<std::uint32_t>(r.consumed);
      if (r.event == ParseEvent::kNeedMore) {
        if (uc->wpos == upstream::kUpstreamBufferSize) {
          upstreamFailed(502, metrics::UpstreamError::kProtocol);  // head larger than our buffer
          return;
        }
        break;
      }
      const int status = uc->parser.head().status;
      if (status >= 100 && status < 200) {
        // Interim response (100 Continue, 103): relay it, then the final one.
        if (status == 101) {
          upstreamFailed(502, metrics::UpstreamError::kProtocol);
          return;
        }
        uc->parser.skipBody();
        uc->parser.feed(uc->buf.get(), uc->ppos, 0);
        if (!client_http10_) {
          interim_.assign(uc->buf.get() + uc->rpos, uc->ppos - uc->rpos);
          uc->rpos = uc->ppos;
          uc->parser.beginMessage(uc->ppos);
          to_client_.add(interim_.data(), interim_.size());
          break;  // flush it before going on
        }
        uc->rpos = uc->ppos;
        uc->parser.beginMessage(uc->ppos);
        continue;
      }
      handleResponseHead();
      continue;
    }
    // Body: forward the raw bytes the parser has accepted.
    auto r = uc->parser.feed(uc->buf.get(), uc->ppos, uc->wpos - uc->ppos);
    if (r.event == ParseEvent::kError) {
      abortUpstream();
      close();
      return;
    }
    uc->ppos += static_cast<std::uint32_t>(r.consumed);
    if (r.event == ParseEvent::kMessageComplete) complete = true;
    if (r.event == ParseEvent::kNeedMore || uc->ppos == uc->wpos) break;
  }
  if (resp_ == Resp::kBody && !resp_head_sent_) {
    to_client_.add(resp_head_.data(), resp_head_.size());
    bytes_out_ += resp_head_.size();
    resp_head_sent_ = true;
  }
  if (resp_ == Resp::kBody) {
    std::uint32_t len = uc->ppos - uc->rpos;
    bytes_out_ += len;
    if (len > 0) {
      if (rechunk_) {
        int hl = std::snprintf(chunk_hdr_.data(), chunk_hdr_.size(), "%x\r\n", len);
        to_client_.add(chunk_hdr_.data(), static_cast<std::size_t>(hl));
        to_client_.add(uc->buf.get() + uc->rpos, len);
        to_client_.add(kCrlf.data(), kCrlf.size());
      } else {
        to_client_.add(uc->buf.get() + uc->rpos, len);
      }
    }
    uc->rpos = uc->ppos;
  }
  const bool reusable = complete && uc->parser.head().keep_alive && uc->ppos == uc->wpos &&
                        req_ == Req::kDone && to_up_.empty();
  switch (to_client_.flush(fd_)) {
    case Outbox::Result::kError:
      abortUpstream();
      close();
      return;
    case Outbox::Result::kAgain:
      complete_pending_ = complete;
      reusable_pending_ = reusable;
      event_add(wev_, nullptr);
      armUpstreamRead(false);
      if (deadline_kind_ != Deadline::kWrite) {
        setDeadline(Deadline::kWrite, rt_->config->server.idle_timeout.nanos);
      }
      return;
    case Outbox::Result::kDone:
      break;
  }
  afterClientDrained(complete, reusable);
}

void ClientConn::afterClientDrained(bool complete, bool reusable) {
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
  armUpstreamRead(true);
  if (uc->ppos < uc->wpos) pumpResponse();
}

void ClientConn::finishResponse(bool reusable) {
  recordRequest();
  upstream::UpstreamConn* uc = up_;
  up_ = nullptr;
  to_up_ = Outbox{};
  if (uc != nullptr) {
    uc->owner = nullptr;
    w_.releaseUpstream(uc, reusable);
  }
  resp_ = Resp::kNone;
  setDeadline(Deadline::kNone, 0);
  if (req_ != Req::kDone) close_after_ = true;  // answered before the body ended
  if (close_after_) {
    close();
    return;
  }
  process();
}

void ClientConn::abortUpstream() {
  upstream::UpstreamConn* uc = up_;
  up_ = nullptr;
  to_up_ = Outbox{};
  if (uc != nullptr) {
    uc->owner = nullptr;
    w_.releaseUpstream(uc, false);
  }
}

void ClientConn::upstreamFailed(int status, metrics::UpstreamError kind) {
  if (metrics::StatusStats* ps = poolStats()) ps->error(w_.id(), kind);
  abortUpstream();
  if (response_started_) {
    close();
    return;
  }
  if (req_ == Req::kBody) close_after_ = true;  // the body was not consumed
  resp_ = Resp::kNone;
  answerLocal(status, close_after_);
}

void ClientConn::endRequest() {
  if (close_after_) {
    close();
    return;
  }
  const std::uint32_t left = wpos_ - ppos_;
  if (left > 0 && ppos_ > 0) std::memmove(buf_.get(), buf_.get() + ppos_, left);
  rpos_ = ppos_ = 0;
  wpos_ = left;
  req_ = Req::kIdle;
  resp_ = Resp::kNone;
  route_ = nullptr;
  head_sent_ = false;
  has_body_ = false;
  rechunk_ = false;
  response_started_ = false;
  armClientRead(true);
  if (wpos_ == 0) {
    if (buf_) w_.giveBuffer(std::move(buf_), buf_cap_);
    setDeadline(Deadline::kIdle, rt_->config->server.idle_timeout.nanos);
  } else {
    startHead();
  }
}

void ClientConn::recordRequest() {
  if (recorded_) return;
  recorded_ = true;
  metrics::StatusStats* stats = route_ != nullptr ? route_->stats : rt_->unmatched_stats;
  const event::Nanos took = w_.now() - start_;
  if (stats != nullptr) stats->record(w_.id(), status_, took);
  if (rt_->access_log) {
    event::AccessRecord r;
    r.wall_seconds = w_.shared().clock.wallSeconds();
    r.request_id = request_id_;
    r.client = log_client_.empty() ? std::string_view(peer_text_) : std::string_view(log_client_);
    r.method = log_method_;
    r.path = log_path_;
    r.status = status_;
    r.bytes_in = bytes_in_ + parser_.bodyBytes();
    r.bytes_out = bytes_out_;
    r.duration_seconds = static_cast<double>(took) / 1e9;
    const std::string& route_name =
        route_ != nullptr ? rt_->routes.routes()[static_cast<std::size_t>(route_ - rt_->route_runtime.data())].name
                          : kUnmatched;
    r.route = route_name;
    r.upstream = last_target_ != nullptr ? std::string_view(last_target_->text) : std::string_view();
    r.limits = violated_;
    event::appendAccessLine(w_.accessBuffer(), r, rt_->access_log->json());
    w_.flushAccessLog(false);
  }
}

metrics::StatusStats* ClientConn::poolStats() const {
  return route_ != nullptr ? rt_->pool_stats[route_->pool_index] : nullptr;
}

void ClientConn::close() {
  if (dead_) return;
  dead_ = true;
  if (admission_ticket_ != 0) {
    rt_->admission->cancel(w_.id(), admission_ticket_);
    admission_ticket_ = 0;
  }
  if (status_ != 0) recordRequest();  // an answer was under way
  if (token_ != 0) {
    if (route_ != nullptr) {
      rt_->pools[route_->pool_index]->cancel(upstream::Waiter{w_.id(), token_});
    }
    w_.unregisterWaiter(token_);
    token_ = 0;
  }
  abortUpstream();
  event_del(ev_);
  event_del(wev_);
  ::close(fd_);
  fd_ = -1;
  if (buf_) w_.giveBuffer(std::move(buf_), buf_cap_);
  w_.removeConn(this);
  w_.retire(this);
}

void ClientConn::checkTimeout(event::Nanos now) {
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
      if (!response_started_) {
        abortUpstream();
        resp_ = Resp::kNone;
        close_after_ = true;
        answerLocal(408, true);
      } else {
        close();
      }
      return;
    case Deadline::kPending:
      if (token_ != 0) {
        rt_->pools[route_->pool_index]->cancel(upstream::Waiter{w_.id(), token_});
        w_.unregisterWaiter(token_);
        token_ = 0;
      }
      upstreamFailed(503, metrics::UpstreamError::kPendingTimeout);
      return;
    case Deadline::kConnect:
      upstreamFailed(502, metrics::UpstreamError::kConnect);
      return;
    case Deadline::kResponse:
      upstreamFailed(504, metrics::UpstreamError::kTimeout);
      return;
    case Deadline::kUpstreamIdle:
      abortUpstream();
      close();
      return;
  }
}

void ClientConn::drain() {
  draining_ = true;
  close_after_ = true;
  if (req_ == Req::kIdle && wpos_ == 0 && resp_ == Resp::kNone) close();
}
}  // namespace sluice::server
