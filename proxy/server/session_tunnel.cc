// The HTTP/1 session's way into a tunnel (SPEC §10): which Upgrade a request
// may ask for, and the hand-over after the upstream's 101. Once a tunnel,
// the session only forwards its connection's events to it and closes when it
// ends (the access log line is written then: 101, bytes both ways).

#include <algorithm>

#include "proxy/http/message_parser.h"
#include "proxy/server/http1_session.h"
#include "proxy/server/worker.h"

namespace sluice::server {

std::string_view Http1Session::allowedUpgrade() {
  upgrade_.clear();
  const http::MessageHead& h = parser_.head();
  if (!h.upgrade || h.method == HTTP_CONNECT || client_http10_ || has_body_ || route_ == nullptr) {
    return {};
  }
  const std::size_t index = static_cast<std::size_t>(route_ - rt_->route_runtime.data());
  const std::vector<std::string>& allowed = rt_->config->routes[index].upgrades;
  for (int i = 0; i < h.header_count; ++i) {
    if (!http::equalsIgnoreCase(headerName(i), "upgrade")) continue;
    std::string_view list = headerValue(i);
    while (!list.empty()) {
      const std::size_t comma = std::min(list.find(','), list.size());
      std::string_view token = list.substr(0, comma);
      list.remove_prefix(std::min(comma + 1, list.size()));
      while (!token.empty() && (token.front() == ' ' || token.front() == '\t'))
        token.remove_prefix(1);
      while (!token.empty() && (token.back() == ' ' || token.back() == '\t'))
        token.remove_suffix(1);
      const bool ok = std::any_of(allowed.begin(), allowed.end(), [&](const std::string& a) {
        return http::equalsIgnoreCase(a, token);
      });
      if (!ok) continue;
      if (!upgrade_.empty()) upgrade_.append(", ");
      upgrade_.append(token);
    }
  }
  return upgrade_;
}

void Http1Session::startTunnel(std::string_view head,
                               std::unique_ptr<transport::Transport> upstream,
                               std::string_view from_upstream) noexcept {
  metrics::TunnelStats* stats = route_ != nullptr ? route_->tunnels : nullptr;
  if (stats != nullptr) stats->open.fetch_add(1, std::memory_order_relaxed);
  tunnel_ =
      std::make_unique<tunnel::Tunnel>(*t_, std::move(upstream), *this, stats,
                                       rt_->config->server.tunnel_idle_timeout.nanos, w_.base());
  w_.parkTunnel(this);  // off the tick's walk: the tunnel has its own idle timer
  setDeadline(Deadline::kNone, 0);
  req_ = Req::kDone;  // no next request on this connection
  // What the client sent after its request head goes to the new protocol.
  const std::string_view from_client =
      buf_ ? std::string_view(buf_.get() + ppos_, wpos_ - ppos_) : std::string_view();
  std::string to_client(head);
  to_client.append(from_upstream);   // the new protocol's first bytes, read with the 101
  record_.bytes_out -= head.size();  // counted again with the tunnel's bytes
  tunnel_->start(to_client, from_client, w_.now());  // may end the tunnel (and close) at once
  if (buf_) w_.giveBuffer(std::move(buf_), buf_cap_);
  rpos_ = ppos_ = wpos_ = 0;
}

event::Nanos Http1Session::tunnelClock() noexcept {
  w_.newEvent();
  return w_.now();
}

void Http1Session::tunnelEnded() noexcept {
  if (route_ != nullptr && route_->tunnels != nullptr) {
    route_->tunnels->open.fetch_sub(1, std::memory_order_relaxed);
  }
  record_.bytes_out += tunnel_->bytesToClient();
  bytes_in_ += tunnel_->bytesToUpstream();
  close();
}

}  // namespace sluice::server
