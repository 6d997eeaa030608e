// sluice-load-client: the HTTP/1.1 load generator of loadtest/run.py.
//
// It does what wrk cannot: spread connections over many loopback source
// addresses (bind before connect), fill header templates from a request
// counter (X-API-Key: key-%d, X-Forwarded-For: 10.%d.%d.%d), pace a fixed
// total request rate across connections, and count every status code exactly.
//
// One thread, raw libevent events (one EV_READ|EV_PERSIST per connection,
// write() straight from the code that produces a request, EV_WRITE armed only
// after EAGAIN), llhttp for response framing. Keep-alive connections, one
// request in flight per connection (no pipelining). Latency is measured from
// the moment a request was due: its write in closed-loop mode, its slot in
// the pacing schedule with --rate (so a backlog shows up as latency instead
// of being hidden). Stops issuing at --duration or --max-requests, whichever
// comes first, then waits at most --grace for answers in flight. Prints one
// JSON object on stdout.
//
// With an https:// URL every connection speaks TLS (OpenSSL, certificate not
// verified: the harness makes a self-signed one). No session is ever offered
// for resumption (client session cache off, a fresh SSL per connection), so
// every connection is a full handshake; --requests-per-conn 1 then measures
// handshakes. A TLS connection's first request counts its latency from the
// TCP connect, so the handshake is in it.
//
// --hold S: every connection sends one request, then stays open and idle;
// once all of them are idle, "HOLDING n" goes to stderr and the client waits
// S seconds (or SIGTERM) before it closes them and prints the summary. With
// --ramp K at most K connections are being set up at once.
//
// --ws BYTES: WebSocket mode. Every connection first upgrades (GET with
// Upgrade: websocket and a fresh Sec-WebSocket-Key; the 101 must carry the
// matching Sec-WebSocket-Accept), then sends masked binary messages of BYTES
// payload, one at a time, each answered by its echo (checked byte for byte).
// "requests" then counts echoed messages (rps = messages/s, latency = send to
// echo), "status" counts the handshakes' answers (101), "upgrade_ms" their
// latency from the TCP connect. --hold, --ramp, --rate, --sources and https://
// (WebSocket over TLS) work as they do for requests: with --hold every
// connection upgrades and gets one message echoed, then stays idle.
//
// Only loopback traffic: the target and every source address must lie in
// 127.0.0.0/8.

#include <arpa/inet.h>
#include <event2/event.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::load {
namespace {

constexpr size_t kReadBufferSize = 64 * 1024;
constexpr std::uint64_t kNsPerSec = 1000000000ULL;
constexpr std::uint64_t kRetryDelayUs = 20000;  // after a failed connect
constexpr size_t kMaxUpgradeHead = 16 * 1024;
constexpr size_t kMaxWsMessage = 1 << 20;
constexpr std::string_view kWsGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

std::string base64(const unsigned char* data, size_t len) {
  std::string out(4 * ((len + 2) / 3) + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data,
                                static_cast<int>(len));
  out.resize(static_cast<size_t>(n));
  return out;
}

// Sec-WebSocket-Accept for a key: base64(SHA-1(key + GUID)), RFC 6455 §4.2.2.
std::string webSocketAccept(std::string_view key) {
  std::string in(key);
  in += kWsGuid;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr) != 1) return {};
  return base64(md, md_len);
}

std::uint64_t splitmix(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

bool startsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) !=
        std::tolower(static_cast<unsigned char>(prefix[i]))) {
      return false;
    }
  }
  return true;
}

std::uint64_t nowNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * kNsPerSec + static_cast<std::uint64_t>(ts.tv_nsec);
}

timeval toTimeval(std::uint64_t ns) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ns / kNsPerSec);
  tv.tv_usec = static_cast<suseconds_t>((ns % kNsPerSec) / 1000);
  return tv;
}

// Log-bucketed latency histogram in nanoseconds: exact below 64 ns, then 32
// buckets per power of two (at most 3.2 % relative error), up to 2^47 ns.
class Histogram {
 public:
  void record(std::uint64_t ns) {
    ++counts_[std::min(index(ns), kBuckets - 1)];
    ++total_;
    sum_ += static_cast<double>(ns);
    max_ = std::max(max_, ns);
  }
  std::uint64_t total() const { return total_; }
  std::uint64_t max() const { return max_; }
  double mean() const { return total_ == 0 ? 0.0 : sum_ / static_cast<double>(total_); }

  // The smallest recorded value v such that at least p % of values are <= v,
  // reported as its bucket's midpoint (clamped to the maximum seen).
  std::uint64_t percentile(double p) const {
    if (total_ == 0) return 0;
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total_)));
    rank = std::clamp<std::uint64_t>(rank, 1, total_);
    std::uint64_t seen = 0;
    for (size_t i = 0; i < kBuckets; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::min(midpoint(i), max_);
    }
    return max_;
  }

 private:
  static constexpr size_t kBuckets = 64 + 42 * 32;

  static size_t index(std::uint64_t v) {
    if (v < 64) return static_cast<size_t>(v);
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - 5;
    return 64 + static_cast<size_t>(msb - 6) * 32 + static_cast<size_t>((v >> shift) & 31);
  }
  static std::uint64_t midpoint(size_t i) {
    if (i < 64) return i;
    size_t octave = (i - 64) / 32;
    std::uint64_t mantissa = (i - 64) % 32;
    int shift = static_cast<int>(octave) + 1;
    std::uint64_t lower = (32 + mantissa) << shift;
    return lower + ((std::uint64_t{1} << shift) >> 1);
  }

  std::array<std::uint64_t, kBuckets> counts_{};
  std::uint64_t total_ = 0;
  double sum_ = 0;
  std::uint64_t max_ = 0;
};

// "Name: value" where every %d in the value is filled from a number: one %d
// takes the number in decimal; with k > 1 the number is written in base 256
// over them, most significant first (10.%d.%d.%d -> an IPv4 address).
class HeaderTemplate {
 public:
  static std::optional<HeaderTemplate> parse(std::string_view line) {
    size_t colon = line.find(':');
    if (colon == 0 || colon == std::string_view::npos) return std::nullopt;
    for (char ch : line.substr(0, colon)) {
      bool token = std::isalnum(static_cast<unsigned char>(ch)) != 0 ||
                   std::string_view("!#$%&'*+-.^_`|~").find(ch) != std::string_view::npos;
      if (!token) return std::nullopt;
    }
    if (line.find_first_of("\r\n") != std::string_view::npos) return std::nullopt;
    HeaderTemplate t;
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    std::string head = std::string(line.substr(0, colon)) + ": ";
    for (;;) {
      size_t at = value.find("%d");
      if (at == std::string_view::npos) break;
      t.parts_.push_back(head + std::string(value.substr(0, at)));
      head.clear();
      value.remove_prefix(at + 2);
    }
    t.parts_.push_back(head + std::string(value) + "\r\n");
    return t;
  }
  bool templated() const { return parts_.size() > 1; }

  void append(std::string& out, std::uint64_t n) const {
    size_t k = parts_.size() - 1;
    if (k == 0) {
      out += parts_[0];
      return;
    }
    std::uint64_t digits[16] = {};
    size_t used = std::min<size_t>(k, 16);
    for (size_t i = used; i-- > 1;) {
      digits[i] = n & 0xff;
      n >>= 8;
    }
    digits[0] = n;
    char buf[24];
    for (size_t i = 0; i < k; ++i) {
      out += parts_[i];
      auto res = std::to_chars(buf, buf + sizeof buf, i < used ? digits[i] : 0);
      out.append(buf, res.ptr);
    }
    out += parts_[k];
  }

 private:
  std::vector<std::string> parts_;
};

struct Options {
  sockaddr_in target{};
  std::string host_header;
  std::string path = "/";
  int connections = 64;
  double duration_s = 10;
  std::uint64_t max_requests = 100000000;
  double rate = 0;  // total requests per second; 0 = closed loop
  std::vector<sockaddr_in> sources;
  std::uint64_t requests_per_conn = 0;  // 0 = keep the connection
  std::vector<HeaderTemplate> headers;
  std::uint64_t key_space = 0;  // 0 = the request number itself
  double timeout_s = 10;
  double grace_s = 5;
  bool tls = false;
  std::string sni;     // the URL's host when it is a name
  double hold_s = 0;   // > 0: one request per connection, then hold them idle
  int ramp = 0;        // > 0: at most this many connections being set up at once
  size_t ws_bytes = 0;  // > 0: WebSocket mode, messages of this many payload bytes
};

class Client;

class Conn {
 public:
  Conn(Client& client, size_t id) : client_(client), id_(id) {
    llhttp_settings_init(&settings_);
    settings_.on_headers_complete = &Conn::onHeadersComplete;
    settings_.on_message_complete = &Conn::onMessageComplete;
  }
  ~Conn() { closeSocket(); }
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;

  // kUpgrading: the WebSocket handshake request is out, the 101 awaited.
  enum class State { kDown, kConnecting, kHandshaking, kUpgrading, kIdle, kBusy };
  State state() const { return state_; }
  size_t id() const { return id_; }
  std::uint64_t sentAt() const { return sent_ns_; }
  std::uint64_t served() const { return served_; }
  std::uint64_t connectedAt() const { return connect_ns_; }
  bool everAnswered() const { return ever_answered_; }
  void setEverAnswered() { ever_answered_ = true; }

  void connectTo(const sockaddr_in* source);
  void send(std::string request, std::uint64_t due_ns);
  void upgrade(std::string request, std::string accept);
  bool wsOpen() const { return ws_open_; }
  void closeSocket();

 private:
  static void onReadEvent(evutil_socket_t fd, short what, void* arg) noexcept;
  static void onWriteEvent(evutil_socket_t fd, short what, void* arg) noexcept;
  static int onHeadersComplete(llhttp_t* p);
  static int onMessageComplete(llhttp_t* p);
  void onReadable();
  void onWritable();
  void flush();
  void fail(const char* kind);
  void handshake();
  ssize_t readSome(bool& more);
  void connected();
  void onUpgradeBytes(const char* data, size_t len);
  void onWsBytes(const char* data, size_t len, bool more);

  Client& client_;
  size_t id_;
  int fd_ = -1;
  SSL* ssl_ = nullptr;
  bool ssl_write_retry_ = false;  // an SSL_write to repeat with the same bytes
  std::uint64_t connect_ns_ = 0;
  bool ever_answered_ = false;
  event* read_ev_ = nullptr;
  event* write_ev_ = nullptr;
  State state_ = State::kDown;
  llhttp_settings_t settings_{};
  llhttp_t parser_{};
  std::string out_;
  size_t out_off_ = 0;
  std::uint64_t due_ns_ = 0;
  std::uint64_t sent_ns_ = 0;
  std::uint64_t served_ = 0;
  int status_ = 0;
  bool complete_ = false;
  bool keep_alive_ = true;
  bool ws_open_ = false;     // upgraded: frames from now on
  std::string ws_in_;        // the 101 head, or a frame, not complete yet
  std::string ws_accept_;    // the Sec-WebSocket-Accept the 101 must carry
};

class Client {
 public:
  explicit Client(Options opts) : opts_(std::move(opts)) {}
  ~Client() {
    conns_.clear();
    for (event* ev : {pace_ev_, tick_ev_}) {
      if (ev != nullptr) event_free(ev);
    }
    if (base_ != nullptr) event_base_free(base_);
    if (ssl_ctx_ != nullptr) SSL_CTX_free(ssl_ctx_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int run();

  // Called by connections.
  event_base* base() const { return base_; }
  SSL_CTX* sslContext() const { return ssl_ctx_; }
  const std::string& sni() const { return opts_.sni; }
  void onConnected(Conn& c);
  void onUpgraded(Conn& c, int status, bool ok);
  std::string_view wsPayload() const { return ws_payload_; }
  size_t wsBytes() const { return opts_.ws_bytes; }
  void onHandshake(SSL* ssl, std::uint64_t ns);
  void onHandshakeFailed() { ++errors_["handshake"]; }
  void onResponse(Conn& c, int status, std::uint64_t due_ns, bool reuse);
  void onError(Conn& c, const char* kind, bool request_lost);
  void onPeerClosed(Conn& c) { reconnectLater(c, 0); }
  const sockaddr_in& target() const { return opts_.target; }
  static bool stopping() { return stop_requested_; }

 private:
  static void onPace(evutil_socket_t, short, void* arg) noexcept;
  static void onTick(evutil_socket_t, short, void* arg) noexcept;
  static void onRetry(evutil_socket_t, short, void* arg) noexcept;
  static void onSignal(int) { stop_requested_ = true; }

  bool takeToken(std::uint64_t now, std::uint64_t& seq, std::uint64_t& due);
  void becameIdle(Conn& c);
  void dispatch(Conn& c, std::uint64_t seq, std::uint64_t due);
  void dispatchIdle();
  void reconnect(Conn& c);
  void reconnectLater(Conn& c, std::uint64_t delay_us);
  void checkDone();
  void startMore();
  size_t idleCount() const {
    size_t n = 0;
    for (const auto& c : conns_) n += c->state() == Conn::State::kIdle ? 1 : 0;
    return n;
  }
  void printSummary() const;

  Options opts_;
  event_base* base_ = nullptr;
  SSL_CTX* ssl_ctx_ = nullptr;
  size_t started_ = 0;          // connections started (--ramp starts them gradually)
  size_t first_answers_ = 0;    // connections that got their first answer
  bool holding_ = false;
  size_t held_ = 0;            // idle connections when holding started
  size_t held_open_end_ = 0;   // ... and still open when it ended
  std::uint64_t hold_start_ns_ = 0;
  std::uint64_t handshakes_ = 0;
  std::uint64_t resumed_ = 0;
  std::map<std::string, std::uint64_t> tls_kinds_;  // "TLSv1.3 TLS_AES_256_GCM_SHA384" -> n
  Histogram handshake_latency_;
  std::uint64_t upgrades_ = 0;
  Histogram upgrade_latency_;
  std::string ws_frame_;    // the masked frame every message sends
  std::string ws_payload_;  // its payload, as the echo must bring it back
  std::uint64_t ws_key_state_ = 0;
  event* pace_ev_ = nullptr;
  event* tick_ev_ = nullptr;
  std::vector<std::unique_ptr<Conn>> conns_;
  std::vector<Conn*> idle_;
  std::string request_prefix_;
  std::string static_headers_;
  size_t next_source_ = 0;
  std::vector<bool> source_used_;

  std::uint64_t t0_ = 0;
  std::uint64_t stop_ns_ = 0;        // end of issuing
  std::uint64_t issue_end_ns_ = 0;   // when issuing actually stopped
  std::uint64_t last_done_ns_ = 0;
  std::uint64_t first_send_ns_ = 0;
  std::uint64_t last_send_ns_ = 0;
  bool issuing_ = true;
  bool finished_ = false;
  std::uint64_t issued_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t connects_ = 0;
  std::map<int, std::uint64_t> statuses_;
  std::map<std::string, std::uint64_t> errors_;
  Histogram latency_;
  static volatile sig_atomic_t stop_requested_;
};

volatile sig_atomic_t Client::stop_requested_ = 0;

char g_read_buf[kReadBufferSize];

// ---- Conn --------------------------------------------------------------------

void Conn::connectTo(const sockaddr_in* source) {
  closeSocket();
  llhttp_init(&parser_, HTTP_RESPONSE, &settings_);
  parser_.data = this;
  served_ = 0;
  out_.clear();
  out_off_ = 0;
  ws_open_ = false;
  ws_in_.clear();
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    fail("socket");
    return;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (source != nullptr) {
    // The port is picked at connect() time, per (source, destination) pair.
    setsockopt(fd_, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd_, reinterpret_cast<const sockaddr*>(source), sizeof *source) != 0) {
      fail("bind");
      return;
    }
  }
  const sockaddr_in& dst = client_.target();
  state_ = State::kConnecting;
  connect_ns_ = nowNs();
  read_ev_ = event_new(client_.base(), fd_, EV_READ | EV_PERSIST, &Conn::onReadEvent, this);
  write_ev_ = event_new(client_.base(), fd_, EV_WRITE | EV_PERSIST, &Conn::onWriteEvent, this);
  if (connect(fd_, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) == 0) {
    event_add(read_ev_, nullptr);
    connected();
    return;
  }
  if (errno != EINPROGRESS) {
    fail("connect");
    return;
  }
  event_add(write_ev_, nullptr);
}

// TCP is up: either the connection is ready, or the TLS handshake starts.
void Conn::connected() {
  if (client_.sslContext() == nullptr) {
    state_ = State::kIdle;
    client_.onConnected(*this);
    return;
  }
  ssl_ = SSL_new(client_.sslContext());
  if (ssl_ == nullptr || SSL_set_fd(ssl_, fd_) != 1) {
    fail("tls_setup");
    return;
  }
  if (!client_.sni().empty()) {
    SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
             const_cast<char*>(client_.sni().c_str()));
  }
  SSL_set_connect_state(ssl_);
  state_ = State::kHandshaking;
  handshake();
}

void Conn::handshake() {
  ERR_clear_error();
  int ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    event_del(write_ev_);
    state_ = State::kIdle;
    client_.onHandshake(ssl_, nowNs() - connect_ns_);
    client_.onConnected(*this);
    return;
  }
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ) {
    event_del(write_ev_);
  } else if (e == SSL_ERROR_WANT_WRITE) {
    event_add(write_ev_, nullptr);
  } else {
    ERR_clear_error();
    client_.onHandshakeFailed();
    fail("tls");
  }
}

void Conn::closeSocket() {
  if (read_ev_ != nullptr) event_free(read_ev_);
  if (write_ev_ != nullptr) event_free(write_ev_);
  read_ev_ = write_ev_ = nullptr;
  if (ssl_ != nullptr) {
    if (fd_ >= 0 && state_ != State::kHandshaking && state_ != State::kConnecting) {
      ERR_clear_error();
      SSL_shutdown(ssl_);  // one close_notify; not waiting for the peer's
    }
    ERR_clear_error();
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  ssl_write_retry_ = false;
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  state_ = State::kDown;
}

void Conn::fail(const char* kind) {
  bool lost = state_ == State::kBusy;
  closeSocket();
  client_.onError(*this, kind, lost);
}

void Conn::send(std::string request, std::uint64_t due_ns) {
  out_ = std::move(request);
  out_off_ = 0;
  due_ns_ = due_ns;
  sent_ns_ = nowNs();
  status_ = 0;
  complete_ = false;
  state_ = State::kBusy;
  flush();
}

void Conn::upgrade(std::string request, std::string accept) {
  out_ = std::move(request);
  out_off_ = 0;
  ws_accept_ = std::move(accept);
  ws_in_.clear();
  sent_ns_ = nowNs();
  state_ = State::kUpgrading;
  flush();
}

// Bytes while the 101 is awaited: the head, checked once complete.
void Conn::onUpgradeBytes(const char* data, size_t len) {
  ws_in_.append(data, len);
  const size_t end = ws_in_.find("\r\n\r\n");
  if (end == std::string::npos) {
    if (ws_in_.size() > kMaxUpgradeHead) fail("upgrade_parse");
    return;
  }
  std::string_view head(ws_in_.data(), end + 2);
  int status = 0;
  if (head.size() < 12 || head.substr(0, 5) != "HTTP/" ||
      std::from_chars(head.data() + 9, head.data() + 12, status).ec != std::errc()) {
    fail("upgrade_parse");
    return;
  }
  bool accepted = false;
  for (size_t at = head.find("\r\n"); at != std::string_view::npos && at + 2 < head.size();) {
    const size_t next = head.find("\r\n", at + 2);
    std::string_view line = head.substr(at + 2, next - at - 2);
    at = next;
    if (!startsWithIgnoreCase(line, "sec-websocket-accept:")) continue;
    std::string_view v = line.substr(21);
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    accepted = v == ws_accept_;
  }
  if (status != 101 || !accepted) {
    closeSocket();
    client_.onUpgraded(*this, status, false);
    return;
  }
  ws_in_.erase(0, end + 4);  // frames sent right behind the 101
  ws_open_ = true;
  state_ = State::kIdle;
  client_.onUpgraded(*this, status, true);
}

// Frames from the server (never masked). One message is in flight: its echo
// completes it, anything after it is unsolicited. Ping and pong are ignored,
// close ends the connection.
void Conn::onWsBytes(const char* data, size_t len, bool more) {
  const char* p = data;
  size_t n = len;
  if (!ws_in_.empty()) {
    ws_in_.append(data, len);
    p = ws_in_.data();
    n = ws_in_.size();
  }
  size_t at = 0;
  while (n - at >= 2) {
    const auto* b = reinterpret_cast<const unsigned char*>(p + at);
    const size_t avail = n - at;
    std::uint64_t plen = b[1] & 0x7f;
    size_t head = 2;
    if (plen == 126) {
      if (avail < 4) break;
      plen = (std::uint64_t{b[2]} << 8) | b[3];
      head = 4;
    } else if (plen == 127) {
      if (avail < 10) break;
      plen = 0;
      for (int i = 0; i < 8; ++i) plen = (plen << 8) | b[2 + i];
      head = 10;
    }
    if ((b[1] & 0x80) != 0 || plen > kMaxWsMessage) {
      fail("ws_frame");
      return;
    }
    if (avail < head + plen) break;
    const unsigned opcode = b[0] & 0x0f;
    const std::string_view payload(p + at + head, static_cast<size_t>(plen));
    at += head + static_cast<size_t>(plen);
    if (opcode == 8) {
      if (state_ == State::kBusy) {
        fail("ws_closed");
        return;
      }
      closeSocket();
      client_.onPeerClosed(*this);
      return;
    }
    if (opcode == 9 || opcode == 10) continue;
    if (state_ != State::kBusy || at != n) {
      fail("unsolicited");
      return;
    }
    if (b[0] != 0x82 || payload != client_.wsPayload()) {
      fail("ws_echo");
      return;
    }
    ws_in_.clear();
    state_ = State::kIdle;
    ++served_;
    client_.onResponse(*this, 0, due_ns_, true);
    return;
  }
  if (p == ws_in_.data()) {
    ws_in_.erase(0, at);
  } else {
    ws_in_.assign(p + at, n - at);
  }
  if (more && fd_ >= 0) event_active(read_ev_, EV_READ, 0);
}

void Conn::flush() {
  while (ssl_ != nullptr && out_off_ < out_.size()) {
    ERR_clear_error();
    size_t n = 0;
    int ret = SSL_write_ex(ssl_, out_.data() + out_off_, out_.size() - out_off_, &n);
    if (ret == 1) {
      ssl_write_retry_ = false;
      out_off_ += n;
      continue;
    }
    int e = SSL_get_error(ssl_, ret);
    if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
      ssl_write_retry_ = true;  // the read event retries a WANT_READ
      if (e == SSL_ERROR_WANT_WRITE) event_add(write_ev_, nullptr);
      return;
    }
    ERR_clear_error();
    fail("write");
    return;
  }
  while (ssl_ == nullptr && out_off_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n > 0) {
      out_off_ += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      event_add(write_ev_, nullptr);
      return;
    } else {
      fail("write");
      return;
    }
  }
  event_del(write_ev_);
}

void Conn::onWriteEvent(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Conn*>(arg)->onWritable();
}

void Conn::onWritable() {
  if (state_ == State::kConnecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail("connect");
      return;
    }
    event_del(write_ev_);
    event_add(read_ev_, nullptr);
    connected();
    return;
  }
  if (state_ == State::kHandshaking) {
    handshake();
    return;
  }
  flush();
}

// One read: plain read(), or SSL_read_ex. `more` is set when OpenSSL holds
// bytes already (read-ahead) that no readiness event would announce.
ssize_t Conn::readSome(bool& more) {
  more = false;
  if (ssl_ == nullptr) return read(fd_, g_read_buf, sizeof g_read_buf);
  ERR_clear_error();
  size_t n = 0;
  int ret = SSL_read_ex(ssl_, g_read_buf, sizeof g_read_buf, &n);
  if (ret == 1) {
    more = SSL_has_pending(ssl_) == 1;
    return static_cast<ssize_t>(n);
  }
  int e = SSL_get_error(ssl_, ret);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    // WANT_READ with nothing: e.g. only session tickets were in the records.
    more = SSL_has_pending(ssl_) == 1;
    errno = EAGAIN;
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) return 0;
  if (e == SSL_ERROR_SYSCALL && errno == 0) return 0;
  ERR_clear_error();
  if (errno == 0 || errno == EAGAIN) errno = EPROTO;
  return -1;
}

void Conn::onReadEvent(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Conn*>(arg)->onReadable();
}

void Conn::onReadable() {
  if (state_ == State::kHandshaking) {
    handshake();
    return;
  }
  if (ssl_write_retry_) {
    flush();
    if (fd_ < 0) return;
  }
  bool more = false;
  ssize_t n = readSome(more);
  if (n < 0) {
    if (more && fd_ >= 0) event_active(read_ev_, EV_READ, 0);
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) return;
    fail(state_ == State::kBusy ? "reset" : "reset_idle");
    return;
  }
  if (n > 0 && state_ == State::kUpgrading) {
    onUpgradeBytes(g_read_buf, static_cast<size_t>(n));
    if (more && fd_ >= 0) event_active(read_ev_, EV_READ, 0);
    return;
  }
  if (n > 0 && ws_open_) {
    onWsBytes(g_read_buf, static_cast<size_t>(n), more);
    return;
  }
  if (n == 0 && state_ == State::kUpgrading) {
    fail("upgrade_closed");
    return;
  }
  if (n == 0 && ws_open_ && state_ == State::kBusy) {
    fail("closed");
    return;
  }
  if (n == 0) {
    if (state_ == State::kBusy) {
      // A close-delimited body ends here.
      if (llhttp_finish(&parser_) == HPE_OK && complete_) {
        complete_ = false;
        state_ = State::kIdle;
        closeSocket();
        client_.onResponse(*this, status_, due_ns_, false);
        return;
      }
      fail("closed");
      return;
    }
    closeSocket();
    client_.onPeerClosed(*this);
    return;
  }
  if (state_ != State::kBusy) {
    fail("unsolicited");
    return;
  }
  llhttp_errno_t err = llhttp_execute(&parser_, g_read_buf, static_cast<size_t>(n));
  if (err == HPE_PAUSED) {
    // Paused in on_message_complete; anything after it is unsolicited.
    if (llhttp_get_error_pos(&parser_) != g_read_buf + n) {
      fail("unsolicited");
      return;
    }
    llhttp_resume(&parser_);
  } else if (err != HPE_OK) {
    fail("parse");
    return;
  }
  if (!complete_) {
    if (more) event_active(read_ev_, EV_READ, 0);
    return;
  }
  complete_ = false;
  state_ = State::kIdle;
  ++served_;
  bool reuse = keep_alive_;
  if (!reuse) closeSocket();
  client_.onResponse(*this, status_, due_ns_, reuse);
}

int Conn::onHeadersComplete(llhttp_t* p) {
  static_cast<Conn*>(p->data)->status_ = p->status_code;
  return 0;
}

int Conn::onMessageComplete(llhttp_t* p) {
  auto* c = static_cast<Conn*>(p->data);
  c->complete_ = true;
  c->keep_alive_ = llhttp_should_keep_alive(p) != 0;
  return HPE_PAUSED;
}

// ---- Client ------------------------------------------------------------------

int Client::run() {
  signal(SIGPIPE, SIG_IGN);
  signal(SIGINT, &Client::onSignal);
  signal(SIGTERM, &Client::onSignal);
  event_config* cfg = event_config_new();
  event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
  base_ = event_base_new_with_config(cfg);
  event_config_free(cfg);
  if (base_ == nullptr) return 1;

  request_prefix_ = "GET " + opts_.path + " HTTP/1.1\r\nHost: " + opts_.host_header + "\r\n";
  std::vector<HeaderTemplate> templated;
  for (const HeaderTemplate& h : opts_.headers) {
    if (h.templated()) {
      templated.push_back(h);
    } else {
      h.append(static_headers_, 0);
    }
  }
  opts_.headers = std::move(templated);
  source_used_.assign(opts_.sources.size(), false);
  if (opts_.tls) {
    ssl_ctx_ = SSL_CTX_new(TLS_client_method());
    if (ssl_ctx_ == nullptr) return 1;
    SSL_CTX_set_min_proto_version(ssl_ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(ssl_ctx_, SSL_VERIFY_NONE, nullptr);
    // Never resume: no client-side cache, no tickets asked for (TLS 1.2), and
    // no session is ever set on a new SSL.
    SSL_CTX_set_session_cache_mode(ssl_ctx_, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ssl_ctx_, SSL_OP_NO_TICKET);
    SSL_CTX_set_mode(ssl_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                   SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(ssl_ctx_, 1);
    static const unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    SSL_CTX_set_alpn_protos(ssl_ctx_, kAlpn, sizeof kAlpn);
  }
  if (opts_.ws_bytes > 0) {
    // One binary frame, FIN, masked with one key: built once, sent as is.
    ws_key_state_ = nowNs() ^ (static_cast<std::uint64_t>(getpid()) << 32);
    ws_payload_.resize(opts_.ws_bytes);
    for (size_t i = 0; i < ws_payload_.size(); ++i) {
      ws_payload_[i] = static_cast<char>('a' + i % 26);
    }
    const size_t n = opts_.ws_bytes;
    ws_frame_ += static_cast<char>(0x82);
    if (n < 126) {
      ws_frame_ += static_cast<char>(0x80 | n);
    } else if (n < 65536) {
      ws_frame_ += static_cast<char>(0x80 | 126);
      ws_frame_ += static_cast<char>(n >> 8);
      ws_frame_ += static_cast<char>(n & 0xff);
    } else {
      ws_frame_ += static_cast<char>(0x80 | 127);
      for (int i = 7; i >= 0; --i) ws_frame_ += static_cast<char>((n >> (8 * i)) & 0xff);
    }
    std::uint64_t m = splitmix(ws_key_state_);
    unsigned char mask[4];
    std::memcpy(mask, &m, 4);
    ws_frame_.append(reinterpret_cast<const char*>(mask), 4);
    for (size_t i = 0; i < n; ++i) {
      ws_frame_ += static_cast<char>(ws_payload_[i] ^ static_cast<char>(mask[i & 3]));
    }
  }
  if (opts_.hold_s > 0) {
    opts_.requests_per_conn = 0;
    opts_.max_requests = std::min<std::uint64_t>(opts_.max_requests,
                                                 static_cast<std::uint64_t>(opts_.connections));
  }

  t0_ = nowNs();
  stop_ns_ = t0_ + static_cast<std::uint64_t>(opts_.duration_s * 1e9);
  for (int i = 0; i < opts_.connections; ++i) {
    conns_.push_back(std::make_unique<Conn>(*this, static_cast<size_t>(i)));
  }
  if (opts_.rate > 0) {
    pace_ev_ = event_new(base_, -1, EV_PERSIST, &Client::onPace, this);
    timeval tv{0, 500};
    event_add(pace_ev_, &tv);
  }
  tick_ev_ = event_new(base_, -1, EV_PERSIST, &Client::onTick, this);
  timeval tick{0, 10000};
  event_add(tick_ev_, &tick);
  startMore();
  event_base_dispatch(base_);
  for (auto& c : conns_) c->closeSocket();
  printSummary();
  return 0;
}

void Client::startMore() {
  while (started_ < conns_.size() &&
         (opts_.ramp <= 0 || started_ - first_answers_ < static_cast<size_t>(opts_.ramp))) {
    reconnect(*conns_[started_++]);
  }
}

void Client::onHandshake(SSL* ssl, std::uint64_t ns) {
  ++handshakes_;
  if (SSL_session_reused(ssl) == 1) ++resumed_;
  handshake_latency_.record(ns);
  std::string kind = SSL_get_version(ssl);
  kind += ' ';
  kind += SSL_get_cipher_name(ssl);
  ++tls_kinds_[kind];
}

bool Client::takeToken(std::uint64_t now, std::uint64_t& seq, std::uint64_t& due) {
  if (!issuing_ || issued_ >= opts_.max_requests) return false;
  if (opts_.rate > 0) {
    // Token j is due at t0 + j / rate.
    auto due_j = t0_ + static_cast<std::uint64_t>(static_cast<double>(issued_) * 1e9 / opts_.rate);
    if (due_j > now || due_j >= stop_ns_) return false;
    due = due_j;
  } else {
    due = now;
  }
  seq = issued_++;
  return true;
}

void Client::onConnected(Conn& c) {
  if (opts_.ws_bytes == 0 || c.wsOpen()) {
    becameIdle(c);
    return;
  }
  // A fresh 16-byte key per handshake, and the answer it must get.
  unsigned char raw[16];
  for (int i = 0; i < 2; ++i) {
    std::uint64_t r = splitmix(ws_key_state_);
    std::memcpy(raw + 8 * i, &r, 8);
  }
  const std::string key = base64(raw, sizeof raw);
  std::string req = request_prefix_;
  req += "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
         "Sec-WebSocket-Key: ";
  req += key;
  req += "\r\n";
  req += static_headers_;
  for (const HeaderTemplate& h : opts_.headers) h.append(req, connects_);
  req += "\r\n";
  c.upgrade(std::move(req), webSocketAccept(key));
}

void Client::onUpgraded(Conn& c, int status, bool ok) {
  ++statuses_[status];
  if (!ok) {
    ++errors_[status == 101 ? "upgrade_accept" : "upgrade_refused"];
    reconnectLater(c, kRetryDelayUs);
    checkDone();
    return;
  }
  ++upgrades_;
  upgrade_latency_.record(nowNs() - c.connectedAt());
  becameIdle(c);
}

void Client::dispatch(Conn& c, std::uint64_t seq, std::uint64_t due) {
  if (opts_.ws_bytes > 0) {
    ++in_flight_;
    std::uint64_t now = nowNs();
    if (first_send_ns_ == 0) first_send_ns_ = now;
    last_send_ns_ = now;
    c.send(ws_frame_, due);
    return;
  }
  std::string req = request_prefix_;
  req += static_headers_;
  std::uint64_t n = opts_.key_space > 0 ? seq % opts_.key_space : seq;
  for (const HeaderTemplate& h : opts_.headers) h.append(req, n);
  req += "\r\n";
  ++in_flight_;
  std::uint64_t now = nowNs();
  if (first_send_ns_ == 0) first_send_ns_ = now;
  last_send_ns_ = now;
  // Closed loop over TLS: a connection's first request waited for the handshake.
  if (ssl_ctx_ != nullptr && opts_.rate <= 0 && c.served() == 0) due = c.connectedAt();
  c.send(std::move(req), due);
}

void Client::becameIdle(Conn& c) {
  if (opts_.hold_s > 0 && c.served() > 0) {  // held: no second request
    checkDone();
    return;
  }
  std::uint64_t seq = 0;
  std::uint64_t due = 0;
  if (takeToken(nowNs(), seq, due)) {
    dispatch(c, seq, due);
  } else {
    idle_.push_back(&c);
    checkDone();
  }
}

void Client::dispatchIdle() {
  std::uint64_t now = nowNs();
  while (!idle_.empty()) {
    Conn* c = idle_.back();
    if (c->state() != Conn::State::kIdle) {  // closed meanwhile
      idle_.pop_back();
      continue;
    }
    std::uint64_t seq = 0;
    std::uint64_t due = 0;
    if (!takeToken(now, seq, due)) break;
    idle_.pop_back();
    dispatch(*c, seq, due);
  }
}

void Client::onResponse(Conn& c, int status, std::uint64_t due_ns, bool reuse) {
  std::uint64_t now = nowNs();
  --in_flight_;
  ++completed_;
  last_done_ns_ = now;
  if (status != 0) ++statuses_[status];  // 0: an echoed WebSocket message
  latency_.record(now > due_ns ? now - due_ns : 0);
  if (!c.everAnswered()) {
    c.setEverAnswered();
    ++first_answers_;
    startMore();
  }
  if (!reuse) {
    reconnectLater(c, 0);
    return;
  }
  if (opts_.requests_per_conn > 0 && c.served() >= opts_.requests_per_conn) {
    c.closeSocket();  // the next connection comes from the next source address
    reconnect(c);
    return;
  }
  becameIdle(c);
}

void Client::onError(Conn& c, const char* kind, bool request_lost) {
  ++errors_[kind];
  if (request_lost) --in_flight_;
  reconnectLater(c, kRetryDelayUs);
  checkDone();
}

void Client::reconnect(Conn& c) {
  if (!issuing_) {
    checkDone();
    return;
  }
  ++connects_;
  if (opts_.sources.empty()) {
    c.connectTo(nullptr);
    return;
  }
  size_t i = next_source_++ % opts_.sources.size();
  source_used_[i] = true;
  c.connectTo(&opts_.sources[i]);
}

struct Retry {
  Client* client;
  Conn* conn;
};

void Client::onRetry(evutil_socket_t, short, void* arg) noexcept {
  std::unique_ptr<Retry> r(static_cast<Retry*>(arg));
  r->client->reconnect(*r->conn);
}

void Client::reconnectLater(Conn& c, std::uint64_t delay_us) {
  if (!issuing_) {
    checkDone();
    return;
  }
  if (delay_us == 0) {
    reconnect(c);
    return;
  }
  auto* r = new Retry{this, &c};
  timeval tv = toTimeval(delay_us * 1000);
  if (event_base_once(base_, -1, EV_TIMEOUT, &Client::onRetry, r, &tv) != 0) delete r;
}

void Client::onPace(evutil_socket_t, short, void* arg) noexcept {
  static_cast<Client*>(arg)->dispatchIdle();
}

void Client::onTick(evutil_socket_t, short, void* arg) noexcept {
  auto* self = static_cast<Client*>(arg);
  std::uint64_t now = nowNs();
  if (self->issuing_ && (now >= self->stop_ns_ || stopping() ||
                         self->issued_ >= self->opts_.max_requests)) {
    self->issuing_ = false;
    self->issue_end_ns_ = now;
    self->idle_.clear();
  }
  if (self->holding_) {
    if (stopping() || now >= self->hold_start_ns_ + static_cast<std::uint64_t>(
                                                       self->opts_.hold_s * 1e9)) {
      self->held_open_end_ = self->idleCount();
      self->finished_ = true;
      event_base_loopbreak(self->base_);
    }
    return;
  }
  auto timeout = static_cast<std::uint64_t>(self->opts_.timeout_s * 1e9);
  for (auto& c : self->conns_) {
    if (c->state() == Conn::State::kBusy && now - c->sentAt() > timeout) {
      ++self->errors_["timeout"];
      --self->in_flight_;
      c->closeSocket();
      self->reconnectLater(*c, 0);
    } else if ((c->state() == Conn::State::kConnecting ||
                c->state() == Conn::State::kHandshaking ||
                c->state() == Conn::State::kUpgrading) &&
               now - c->connectedAt() > timeout) {
      ++self->errors_["connect_timeout"];
      c->closeSocket();
      self->reconnectLater(*c, kRetryDelayUs);
    }
  }
  if (!self->issuing_ && self->opts_.hold_s > 0) {
    self->checkDone();
    return;
  }
  if (!self->issuing_) {
    auto grace = static_cast<std::uint64_t>(self->opts_.grace_s * 1e9);
    if (self->in_flight_ == 0 || now >= self->issue_end_ns_ + grace) {
      if (self->in_flight_ > 0) self->errors_["unfinished"] += self->in_flight_;
      self->finished_ = true;
      event_base_loopbreak(self->base_);
    }
  }
}

void Client::checkDone() {
  if (opts_.hold_s > 0) {
    // Holding starts once every connection got its one answer (or issuing ended).
    if (holding_ || in_flight_ > 0 || (issuing_ && first_answers_ < conns_.size())) return;
    issuing_ = false;
    holding_ = true;
    hold_start_ns_ = nowNs();
    held_ = idleCount();
    std::fprintf(stderr, "HOLDING %zu\n", held_);
    std::fflush(stderr);
    return;
  }
  if (!issuing_ && in_flight_ == 0 && !finished_) {
    finished_ = true;
    event_base_loopbreak(base_);
  }
}

void Client::printSummary() const {
  std::uint64_t end = last_done_ns_ > 0 ? last_done_ns_ : nowNs();
  double elapsed = static_cast<double>(end - t0_) / 1e9;
  auto ms = [this](double p) { return static_cast<double>(latency_.percentile(p)) / 1e6; };
  size_t sources_used = static_cast<size_t>(std::count(source_used_.begin(), source_used_.end(), true));
  std::printf("{\"requests\":%llu,\"issued\":%llu,\"elapsed_s\":%.6f,\"rps\":%.1f,",
              static_cast<unsigned long long>(completed_),
              static_cast<unsigned long long>(issued_), elapsed,
              elapsed > 0 ? static_cast<double>(completed_) / elapsed : 0.0);
  double span = last_send_ns_ > first_send_ns_
                    ? static_cast<double>(last_send_ns_ - first_send_ns_) / 1e9
                    : 0.0;
  // window_s: first request written .. last answer read. Every decision the
  // server made for these requests lies inside it.
  double window = last_done_ns_ > first_send_ns_ && first_send_ns_ > 0
                      ? static_cast<double>(last_done_ns_ - first_send_ns_) / 1e9
                      : 0.0;
  std::printf("\"send_span_s\":%.6f,\"window_s\":%.6f,\"connects\":%llu,\"sources_used\":%zu,",
              span, window, static_cast<unsigned long long>(connects_), sources_used);
  std::printf(
      "\"latency_ms\":{\"p50\":%.4f,\"p90\":%.4f,\"p99\":%.4f,\"p99.9\":%.4f,\"max\":%.4f,"
      "\"mean\":%.4f},",
      ms(50), ms(90), ms(99), ms(99.9), static_cast<double>(latency_.max()) / 1e6,
      latency_.mean() / 1e6);
  std::printf("\"status\":{");
  bool first = true;
  for (const auto& [code, count] : statuses_) {
    std::printf("%s\"%d\":%llu", first ? "" : ",", code, static_cast<unsigned long long>(count));
    first = false;
  }
  std::printf("},\"errors\":{");
  first = true;
  for (const auto& [kind, count] : errors_) {
    std::printf("%s\"%s\":%llu", first ? "" : ",", kind.c_str(),
                static_cast<unsigned long long>(count));
    first = false;
  }
  std::printf("}");
  if (ssl_ctx_ != nullptr) {
    auto hs = [this](double p) { return static_cast<double>(handshake_latency_.percentile(p)) / 1e6; };
    std::printf(",\"handshakes\":%llu,\"resumed\":%llu,\"handshake_ms\":{\"p50\":%.4f,"
                "\"p99\":%.4f},\"tls\":{",
                static_cast<unsigned long long>(handshakes_),
                static_cast<unsigned long long>(resumed_), hs(50), hs(99));
    first = true;
    for (const auto& [kind, count] : tls_kinds_) {
      std::printf("%s\"%s\":%llu", first ? "" : ",", kind.c_str(),
                  static_cast<unsigned long long>(count));
      first = false;
    }
    std::printf("}");
  }
  if (opts_.ws_bytes > 0) {
    auto up = [this](double p) { return static_cast<double>(upgrade_latency_.percentile(p)) / 1e6; };
    std::printf(",\"ws_message_bytes\":%zu,\"upgrades\":%llu,\"upgrade_ms\":{\"p50\":%.4f,"
                "\"p99\":%.4f}",
                opts_.ws_bytes, static_cast<unsigned long long>(upgrades_), up(50), up(99));
  }
  if (opts_.hold_s > 0) {
    std::printf(",\"held\":%zu,\"held_open_at_end\":%zu", held_, held_open_end_);
  }
  std::printf("}\n");
  std::fflush(stdout);
}

// ---- Command line --------------------------------------------------------------

void usage(FILE* out) {
  std::fputs(
      "usage: sluice-load-client --url http[s]://127.X.Y.Z:PORT/PATH [options]\n"
      "  --connections N       keep-alive connections (default 64)\n"
      "  --duration S          stop issuing after S seconds (default 10, fractions allowed)\n"
      "  --max-requests N      stop issuing after N requests (default 100000000)\n"
      "  --rate R              total requests/s paced across connections (default 0: closed loop)\n"
      "  --sources A.B.C.D/N   bind connections to N consecutive source addresses from A.B.C.D\n"
      "                        (within 127.0.0.0/8), a new one at every reconnect\n"
      "  --requests-per-conn N close and reconnect after N answers (default 0: never)\n"
      "  -H, --header 'Name: value'  add a header; each %d is filled from the request number\n"
      "                        (one %d: decimal; k of them: base 256, most significant first)\n"
      "  --key-space N         header templates use the request number modulo N\n"
      "  --timeout S           per-request timeout (default 10)\n"
      "  --grace S             after the end, wait for answers in flight (default 5)\n"
      "  --sni NAME            TLS server name to send (https:// URLs)\n"
      "  --hold S              one request per connection, then hold them all idle for S\n"
      "                        seconds (\"HOLDING n\" on stderr once they are)\n"
      "  --ramp K              at most K connections being set up at once\n"
      "  --ws BYTES            WebSocket: upgrade every connection, then send masked binary\n"
      "                        messages of BYTES payload and wait for each echo; requests and\n"
      "                        rps count messages, status the handshakes' answers\n"
      "Prints a JSON summary: requests, rps, latency_ms percentiles, status counts, errors.\n",
      out);
}

template <typename T>
std::optional<T> parseNumber(std::string_view text) {
  T value{};
  auto res = std::from_chars(text.data(), text.data() + text.size(), value);
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

bool isLoopback(const in_addr& a) { return (ntohl(a.s_addr) >> 24) == 127; }

bool parseUrl(std::string_view url, Options& o) {
  constexpr std::string_view kScheme = "http://";
  constexpr std::string_view kTlsScheme = "https://";
  if (url.substr(0, kTlsScheme.size()) == kTlsScheme) {
    o.tls = true;
    url.remove_prefix(kTlsScheme.size());
  } else if (url.substr(0, kScheme.size()) == kScheme) {
    url.remove_prefix(kScheme.size());
  } else {
    return false;
  }
  size_t slash = url.find('/');
  std::string_view hostport = url.substr(0, slash);
  o.path = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  size_t colon = hostport.rfind(':');
  if (colon == std::string_view::npos) return false;
  auto port = parseNumber<int>(hostport.substr(colon + 1));
  std::string host(hostport.substr(0, colon));
  if (!port || *port <= 0 || *port > 65535) return false;
  o.target.sin_family = AF_INET;
  o.target.sin_port = htons(static_cast<std::uint16_t>(*port));
  if (inet_pton(AF_INET, host.c_str(), &o.target.sin_addr) != 1) return false;
  o.host_header = std::string(hostport);
  return isLoopback(o.target.sin_addr);
}

bool parseSources(std::string_view spec, Options& o) {
  size_t slash = spec.find('/');
  if (slash == std::string_view::npos) return false;
  std::string first(spec.substr(0, slash));
  auto count = parseNumber<std::uint32_t>(spec.substr(slash + 1));
  in_addr a{};
  if (!count || *count == 0 || inet_pton(AF_INET, first.c_str(), &a) != 1) return false;
  std::uint32_t base = ntohl(a.s_addr);
  if ((base >> 24) != 127 || ((base + *count - 1) >> 24) != 127 || base + *count < base) {
    return false;
  }
  for (std::uint32_t i = 0; i < *count; ++i) {
    sockaddr_in s{};
    s.sin_family = AF_INET;
    s.sin_addr.s_addr = htonl(base + i);
    o.sources.push_back(s);
  }
  return true;
}

int run(int argc, char** argv) {
  Options o;
  bool have_url = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    }
    if (i + 1 >= argc) {
      usage(stderr);
      return 2;
    }
    std::string_view v = argv[++i];
    bool ok = true;
    if (arg == "--url") {
      ok = parseUrl(v, o);
      have_url = ok;
    } else if (arg == "--connections") {
      auto n = parseNumber<int>(v);
      ok = n && *n >= 1 && *n <= 100000;
      if (ok) o.connections = *n;
    } else if (arg == "--duration") {
      auto n = parseNumber<double>(v);
      ok = n && *n > 0 && *n <= 3600;
      if (ok) o.duration_s = *n;
    } else if (arg == "--max-requests") {
      auto n = parseNumber<std::uint64_t>(v);
      ok = n && *n >= 1;
      if (ok) o.max_requests = *n;
    } else if (arg == "--rate") {
      auto n = parseNumber<double>(v);
      ok = n && *n >= 0;
      if (ok) o.rate = *n;
    } else if (arg == "--sources") {
      ok = parseSources(v, o);
    } else if (arg == "--requests-per-conn") {
      auto n = parseNumber<std::uint64_t>(v);
      ok = n.has_value();
      if (ok) o.requests_per_conn = *n;
    } else if (arg == "--header" || arg == "-H") {
      auto t = HeaderTemplate::parse(v);
      ok = t.has_value();
      if (ok) o.headers.push_back(std::move(*t));
    } else if (arg == "--key-space") {
      auto n = parseNumber<std::uint64_t>(v);
      ok = n.has_value();
      if (ok) o.key_space = *n;
    } else if (arg == "--timeout") {
      auto n = parseNumber<double>(v);
      ok = n && *n > 0;
      if (ok) o.timeout_s = *n;
    } else if (arg == "--sni") {
      o.sni = std::string(v);
    } else if (arg == "--hold") {
      auto n = parseNumber<double>(v);
      ok = n && *n > 0 && *n <= 600;
      if (ok) o.hold_s = *n;
    } else if (arg == "--ramp") {
      auto n = parseNumber<int>(v);
      ok = n && *n >= 1;
      if (ok) o.ramp = *n;
    } else if (arg == "--ws") {
      auto n = parseNumber<size_t>(v);
      ok = n && *n >= 1 && *n <= kMaxWsMessage;
      if (ok) o.ws_bytes = *n;
    } else if (arg == "--grace") {
      auto n = parseNumber<double>(v);
      ok = n && *n >= 0;
      if (ok) o.grace_s = *n;
    } else {
      ok = false;
    }
    if (!ok) {
      std::fprintf(stderr, "sluice-load-client: bad %.*s %.*s\n", static_cast<int>(arg.size()),
                   arg.data(), static_cast<int>(v.size()), v.data());
      return 2;
    }
  }
  if (!have_url) {
    std::fputs("sluice-load-client: --url http://127.x.y.z:PORT/PATH is required\n", stderr);
    usage(stderr);
    return 2;
  }
  Client client(std::move(o));
  return client.run();
}

}  // namespace
}  // namespace sluice::load

int main(int argc, char** argv) { return sluice::load::run(argc, argv); }
