// sluice-demo-upstream: a small HTTP/1.1 origin for integration and load tests.
//
// It must never be the bottleneck of a load test, so it follows the data-path
// recipe of DEPENDENCIES.md: one raw event (EV_READ|EV_PERSIST) per connection
// armed once, read() into a fixed per-worker buffer, llhttp for framing,
// writev() straight from the producing code, EV_WRITE armed only after EAGAIN.
// Large bodies are generated segment by segment from one static pattern buffer
// (byte i of a generated body is kPattern[i % 64]), so nothing is buffered whole.
//
// Behaviour by path and query is documented in usage() below.
//
// WebSocket echo (/__ws, or any path with ?ws=1): a GET with Upgrade:
// websocket and a Sec-WebSocket-Key is answered 101 with its
// Sec-WebSocket-Accept (RFC 6455 §4.2.2); from then on the connection reads
// frames instead of requests. Client frames are unmasked and sent back
// unmasked with the same opcode and FIN bit (continuation frames too, so a
// fragmented message comes back fragmented), ping gets pong, close gets
// close and then FIN. Every echo of one read goes out in one owned piece, so
// a message costs one write.

#include <arpa/inet.h>
#include <event2/event.h>
#include <fcntl.h>
#include <llhttp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace sluice::demo {
namespace {

constexpr std::string_view kPattern =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n";
static_assert(kPattern.size() == 64);

constexpr size_t kReadBufferSize = 64 * 1024;
constexpr size_t kSegmentSize = 256 * 1024;  // a multiple of kPattern.size()
static_assert(kSegmentSize % kPattern.size() == 0);
constexpr size_t kHighWater = 1024 * 1024;        // queued output bytes per connection
constexpr size_t kMaxQueuedResponses = 256;       // pipelined requests; then stop reading
constexpr size_t kMaxWritePerCallback = 4 << 20;  // fairness between connections
constexpr size_t kMaxUrl = 16 * 1024;
constexpr size_t kMaxEchoHead = 64 * 1024;
constexpr int kMaxIov = 64;
constexpr int kMaxAcceptsPerCallback = 64;
constexpr std::uint64_t kMaxWsFrame = 16 << 20;  // a bigger frame closes the connection
constexpr std::string_view kWsGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

constexpr std::string_view kDefaultBody = "hello from upstream\n";
constexpr std::string_view kDefaultResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n\r\n"
    "hello from upstream\n";
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
constexpr std::string_view kCrlf = "\r\n";
constexpr std::string_view kLastChunk = "0\r\n\r\n";

char g_body[kSegmentSize];

// Process-wide counters served by /__stats. in_flight and open_connections are
// gauges of live state: /__reset zeroes the counters and the high-water mark,
// not the gauges (zeroing them would drive them negative as work finishes).
struct Stats {
  std::atomic<std::int64_t> requests{0};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> max_in_flight{0};
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::int64_t> open_connections{0};
};
Stats g_stats;

void requestStarted() {
  g_stats.requests.fetch_add(1, std::memory_order_relaxed);
  std::int64_t now = g_stats.in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
  std::int64_t seen = g_stats.max_in_flight.load(std::memory_order_relaxed);
  while (now > seen &&
         !g_stats.max_in_flight.compare_exchange_weak(seen, now, std::memory_order_relaxed)) {
  }
}

std::string statsJson() {
  std::string out = "{\"requests\":" + std::to_string(g_stats.requests.load());
  out += ",\"in_flight\":" + std::to_string(g_stats.in_flight.load());
  out += ",\"max_in_flight\":" + std::to_string(g_stats.max_in_flight.load());
  out += ",\"connections\":" + std::to_string(g_stats.connections.load());
  out += ",\"open_connections\":" + std::to_string(g_stats.open_connections.load());
  out += "}\n";
  return out;
}

void resetStats() {
  g_stats.requests.store(0);
  g_stats.connections.store(0);
  g_stats.max_in_flight.store(g_stats.in_flight.load());
}

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 301:
      return "Moved Permanently";
    case 302:
      return "Found";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 426:
      return "Upgrade Required";
    case 429:
      return "Too Many Requests";
    case 500:
      return "Internal Server Error";
    case 502:
      return "Bad Gateway";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    default:
      return "Status";
  }
}

// Sec-WebSocket-Accept for a Sec-WebSocket-Key: base64(SHA-1(key + GUID)).
std::string webSocketAccept(std::string_view key) {
  std::string in(key);
  in += kWsGuid;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_Digest(in.data(), in.size(), md, &md_len, EVP_sha1(), nullptr) != 1) return {};
  unsigned char b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
  const int n = EVP_EncodeBlock(b64, md, static_cast<int>(md_len));
  return std::string(reinterpret_cast<const char*>(b64), static_cast<size_t>(n));
}

std::string hex(std::uint64_t n) {
  char buf[24];
  auto res = std::to_chars(buf, buf + sizeof buf, n, 16);
  return std::string(buf, res.ptr);
}

template <typename T>
std::optional<T> parseNumber(std::string_view text) {
  T value{};
  auto res = std::from_chars(text.data(), text.data() + text.size(), value);
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i] >= 'A' && a[i] <= 'Z' ? static_cast<char>(a[i] + 32) : a[i];
    if (x != b[i]) return false;  // b is lower case
  }
  return true;
}

// What the request's query asks for; absent parameters keep their defaults.
struct Query {
  std::optional<std::uint64_t> size;
  bool chunked = false;
  std::uint64_t delay_ms = 0;
  int status = 200;
  bool echo = false;  // any path answers like /__echo
  bool ws = false;    // any path acts as /__ws
};

Query parseQuery(std::string_view query) {
  Query q;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (key == "size") {
      q.size = parseNumber<std::uint64_t>(value);
    } else if (key == "chunked") {
      q.chunked = value == "1" || value == "true";
    } else if (key == "delay") {
      q.delay_ms = parseNumber<std::uint64_t>(value).value_or(0);
    } else if (key == "echo") {
      q.echo = value == "1" || value == "true";
    } else if (key == "ws") {
      q.ws = value == "1" || value == "true";
    } else if (key == "status") {
      int s = parseNumber<int>(value).value_or(200);
      q.status = s >= 100 && s <= 999 ? s : 200;
    }
  }
  return q;
}

enum class Path {
  kGeneric,
  kEcho,
  kStats,
  kReset,
  kHang,
  kClose,
  kResetConn,
  kMalformed,
  kClConflict,
  kWs
};

Path classify(std::string_view path) {
  if (path.substr(0, 3) != "/__") return Path::kGeneric;
  if (path == "/__echo") return Path::kEcho;
  if (path == "/__stats") return Path::kStats;
  if (path == "/__reset") return Path::kReset;
  if (path == "/__hang") return Path::kHang;
  if (path == "/__close") return Path::kClose;
  if (path == "/__reset_conn") return Path::kResetConn;
  if (path == "/__malformed") return Path::kMalformed;
  if (path == "/__cl_conflict") return Path::kClConflict;
  if (path == "/__ws") return Path::kWs;
  return Path::kGeneric;
}

// One unit of output. Data pieces point at static memory (`ext`) or own their
// bytes; markers act once every byte before them has been written.
enum class PieceKind { kData, kDone, kClose, kReset };

struct Piece {
  PieceKind kind = PieceKind::kData;
  std::string owned;
  const char* ext = nullptr;
  size_t len = 0;
  size_t off = 0;
  bool counted = false;  // kDone: the request counts in in_flight
  const char* data() const { return ext != nullptr ? ext : owned.data(); }
};

class Connection;

// A response in request order. Its head (and any literal body) is `head`;
// `stream_left` more bytes are generated from g_body when it reaches the front.
struct Response {
  Connection* conn = nullptr;
  std::string head;
  std::string_view static_head;  // used instead of `head` when set
  std::uint64_t stream_left = 0;
  bool chunked = false;     // generated bytes go out as chunks
  bool last_chunk = false;  // "0\r\n\r\n" still owed
  bool head_emitted = false;
  bool ready = true;  // false until a delay timer fires; forever for /__hang
  bool hang = false;
  bool counted = false;
  PieceKind after = PieceKind::kDone;  // kClose / kReset: end the connection after it
  event* timer = nullptr;

  Response() = default;
  Response(const Response&) = delete;
  Response& operator=(const Response&) = delete;
  ~Response() {
    if (timer != nullptr) event_free(timer);
  }
};

struct Worker;

class Connection {
 public:
  Connection(Worker& worker, int fd);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  static void onReadEvent(evutil_socket_t fd, short what, void* arg) noexcept;
  static void onWriteEvent(evutil_socket_t fd, short what, void* arg) noexcept;
  static void onTimerEvent(evutil_socket_t fd, short what, void* arg) noexcept;

  Connection* next = nullptr;  // worker's list of live connections
  Connection* prev = nullptr;

 private:
  static int onMessageBegin(llhttp_t* p);
  static int onMethod(llhttp_t* p, const char* at, size_t len);
  static int onUrl(llhttp_t* p, const char* at, size_t len);
  static int onHeaderField(llhttp_t* p, const char* at, size_t len);
  static int onHeaderFieldComplete(llhttp_t* p);
  static int onHeaderValue(llhttp_t* p, const char* at, size_t len);
  static int onHeaderValueComplete(llhttp_t* p);
  static int onHeadersComplete(llhttp_t* p);
  static int onBody(llhttp_t* p, const char* at, size_t len);
  static int onMessageComplete(llhttp_t* p);
  static const llhttp_settings_t& settings();
  static Connection& of(llhttp_t* p) { return *static_cast<Connection*>(p->data); }

  void onReadable();
  void feed(const char* data, size_t len);
  void queueResponse();
  void queueError();
  void buildGeneric(Response& r, const Query& q, std::string literal, bool literal_body);
  void produce();
  void produceAndFlush();
  void afterIo();
  void pushData(std::string_view static_bytes);
  void pushOwned(std::string bytes);
  void pushMarker(PieceKind kind, bool counted);
  void armWrite();
  void disarmWrite();
  void updateReading();
  bool acceptWebSocket(Response& r);
  void wsFeed(const char* data, size_t len);
  size_t wsFrames(const char* data, size_t len, std::string& out);

  Worker& worker_;
  int fd_;
  event* read_ev_ = nullptr;
  event* write_ev_ = nullptr;
  bool reading_ = false;
  bool write_armed_ = false;
  bool dead_ = false;           // close and free at the end of the current callback
  bool closing_input_ = false;  // no more requests are parsed
  bool peer_eof_ = false;
  bool reset_on_close_ = false;
  llhttp_t parser_{};

  // The request being parsed.
  std::string url_;
  std::string head_;  // raw head bytes, kept for /__echo
  const char* head_start_ = nullptr;
  bool in_head_ = false;
  bool echo_pause_ = false;
  Path path_ = Path::kGeneric;
  bool counted_ = false;
  bool has_body_ = false;
  std::uint64_t body_bytes_ = 0;
  char field_[24] = {};
  size_t field_len_ = 0;  // > sizeof field_ when longer than any name we look for
  enum class Field { kOther, kExpect, kWsKey, kUpgrade };
  Field in_field_ = Field::kOther;
  char value_[64] = {};
  size_t value_len_ = 0;
  bool expect_continue_ = false;
  std::string ws_key_;        // Sec-WebSocket-Key of the request
  bool ws_upgrade_ = false;   // Upgrade: websocket
  bool ws_ = false;           // switched: the connection carries frames now
  std::string ws_in_;         // the start of a frame not complete yet

  std::deque<Response> responses_;
  std::deque<Piece> pieces_;
  size_t pending_bytes_ = 0;
  std::int64_t outstanding_counted_ = 0;
};

struct Worker {
  event_base* base = nullptr;
  int listen_fd = -1;
  event* accept_ev = nullptr;
  int stop_pipe[2] = {-1, -1};
  event* stop_ev = nullptr;
  Connection* conns = nullptr;
  char read_buf[kReadBufferSize];
};

// ---- Connection ------------------------------------------------------------

const llhttp_settings_t& Connection::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t st;
    llhttp_settings_init(&st);
    st.on_message_begin = &Connection::onMessageBegin;
    st.on_method = &Connection::onMethod;
    st.on_url = &Connection::onUrl;
    st.on_header_field = &Connection::onHeaderField;
    st.on_header_field_complete = &Connection::onHeaderFieldComplete;
    st.on_header_value = &Connection::onHeaderValue;
    st.on_header_value_complete = &Connection::onHeaderValueComplete;
    st.on_headers_complete = &Connection::onHeadersComplete;
    st.on_body = &Connection::onBody;
    st.on_message_complete = &Connection::onMessageComplete;
    return st;
  }();
  return s;
}

Connection::Connection(Worker& worker, int fd) : worker_(worker), fd_(fd) {
  llhttp_init(&parser_, HTTP_REQUEST, &settings());
  parser_.data = this;
  read_ev_ = event_new(worker_.base, fd_, EV_READ | EV_PERSIST, &Connection::onReadEvent, this);
  event_add(read_ev_, nullptr);
  reading_ = true;
  next = worker_.conns;
  if (next != nullptr) next->prev = this;
  worker_.conns = this;
  g_stats.connections.fetch_add(1, std::memory_order_relaxed);
  g_stats.open_connections.fetch_add(1, std::memory_order_relaxed);
}

Connection::~Connection() {
  if (prev != nullptr) {
    prev->next = next;
  } else {
    worker_.conns = next;
  }
  if (next != nullptr) next->prev = prev;
  g_stats.in_flight.fetch_sub(outstanding_counted_, std::memory_order_relaxed);
  g_stats.open_connections.fetch_sub(1, std::memory_order_relaxed);
  responses_.clear();  // frees pending timers before the base goes
  event_free(read_ev_);
  if (write_ev_ != nullptr) event_free(write_ev_);
  if (reset_on_close_) {
    linger lg{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  }
  close(fd_);
}

void Connection::onReadEvent(evutil_socket_t, short, void* arg) noexcept {
  auto* c = static_cast<Connection*>(arg);
  c->onReadable();
  if (c->dead_) delete c;
}

void Connection::onWriteEvent(evutil_socket_t, short, void* arg) noexcept {
  auto* c = static_cast<Connection*>(arg);
  c->produceAndFlush();
  c->afterIo();
  if (c->dead_) delete c;
}

void Connection::onTimerEvent(evutil_socket_t, short, void* arg) noexcept {
  auto* r = static_cast<Response*>(arg);
  Connection* c = r->conn;
  r->ready = true;
  c->produceAndFlush();
  c->afterIo();
  if (c->dead_) delete c;
}

void Connection::onReadable() {
  char* buf = worker_.read_buf;
  for (int i = 0; i < 4; ++i) {
    ssize_t n = read(fd_, buf, kReadBufferSize);
    if (n > 0) {
      // Past the last request, input is read only to notice the peer leaving.
      if (closing_input_) {
      } else if (ws_) {
        wsFeed(buf, static_cast<size_t>(n));
      } else {
        feed(buf, static_cast<size_t>(n));
      }
      if (dead_) return;
      if (static_cast<size_t>(n) < kReadBufferSize) break;
    } else if (n == 0) {
      peer_eof_ = true;
      closing_input_ = true;
      break;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      dead_ = true;
      return;
    }
  }
  produceAndFlush();
  afterIo();
}

// Runs llhttp over `len` bytes. Pauses come from on_headers_complete (to find
// the end of an /__echo head) and from on_message_complete (no more requests).
void Connection::feed(const char* data, size_t len) {
  const char* p = data;
  const char* end = data + len;
  if (in_head_ && head_start_ != nullptr) head_start_ = data;  // head spans reads
  // After a pause llhttp must run again even with no bytes left: the message
  // that paused in on_headers_complete completes only then.
  for (;;) {
    llhttp_errno_t err = llhttp_execute(&parser_, p, static_cast<size_t>(end - p));
    if (err == HPE_OK) break;
    if (err == HPE_PAUSED) {
      const char* pos = llhttp_get_error_pos(&parser_);
      if (echo_pause_) {
        echo_pause_ = false;
        size_t n = static_cast<size_t>(pos - head_start_);
        if (head_.size() + n <= kMaxEchoHead) head_.append(head_start_, n);
      }
      llhttp_resume(&parser_);
      if (closing_input_) return;
      p = pos;
      continue;
    }
    if (err == HPE_PAUSED_UPGRADE) {
      // Accepted (/__ws): what follows the head is the first frames.
      // Otherwise never accepted: answered with Connection: close.
      if (ws_) {
        const char* pos = llhttp_get_error_pos(&parser_);
        wsFeed(pos, static_cast<size_t>(end - pos));
      }
      return;
    }
    queueError();
    return;
  }
  if (in_head_ && head_start_ != nullptr && head_.size() <= kMaxEchoHead) {
    head_.append(head_start_, static_cast<size_t>(end - head_start_));
  }
}

int Connection::onMessageBegin(llhttp_t* p) {
  Connection& c = of(p);
  c.url_.clear();
  c.head_.clear();
  c.head_start_ = nullptr;
  c.in_head_ = true;
  c.path_ = Path::kGeneric;
  c.counted_ = false;
  c.has_body_ = false;
  c.body_bytes_ = 0;
  c.field_len_ = 0;
  c.in_field_ = Field::kOther;
  c.value_len_ = 0;
  c.expect_continue_ = false;
  c.ws_key_.clear();
  c.ws_upgrade_ = false;
  return 0;
}

int Connection::onMethod(llhttp_t* p, const char* at, size_t) {
  Connection& c = of(p);
  if (c.head_start_ == nullptr) c.head_start_ = at;
  return 0;
}

int Connection::onUrl(llhttp_t* p, const char* at, size_t len) {
  Connection& c = of(p);
  if (c.url_.size() + len > kMaxUrl) return -1;
  c.url_.append(at, len);
  return 0;
}

int Connection::onHeaderField(llhttp_t* p, const char* at, size_t len) {
  Connection& c = of(p);
  if (c.field_len_ + len <= sizeof c.field_) {
    std::memcpy(c.field_ + c.field_len_, at, len);
  }
  c.field_len_ += len;
  return 0;
}

int Connection::onHeaderFieldComplete(llhttp_t* p) {
  Connection& c = of(p);
  c.in_field_ = Field::kOther;
  if (c.field_len_ <= sizeof c.field_) {
    std::string_view name(c.field_, c.field_len_);
    if (equalsIgnoreCase(name, "expect")) {
      c.in_field_ = Field::kExpect;
    } else if (equalsIgnoreCase(name, "sec-websocket-key")) {
      c.in_field_ = Field::kWsKey;
    } else if (equalsIgnoreCase(name, "upgrade")) {
      c.in_field_ = Field::kUpgrade;
    }
  }
  c.field_len_ = 0;
  return 0;
}

int Connection::onHeaderValue(llhttp_t* p, const char* at, size_t len) {
  Connection& c = of(p);
  if (c.in_field_ != Field::kOther) {
    if (c.value_len_ + len <= sizeof c.value_) std::memcpy(c.value_ + c.value_len_, at, len);
    c.value_len_ += len;
  }
  return 0;
}

int Connection::onHeaderValueComplete(llhttp_t* p) {
  Connection& c = of(p);
  if (c.value_len_ <= sizeof c.value_) {
    std::string_view value(c.value_, c.value_len_);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    switch (c.in_field_) {
      case Field::kExpect:
        if (equalsIgnoreCase(value, "100-continue")) c.expect_continue_ = true;
        break;
      case Field::kWsKey:
        c.ws_key_.assign(value);
        break;
      case Field::kUpgrade:
        if (equalsIgnoreCase(value, "websocket")) c.ws_upgrade_ = true;
        break;
      case Field::kOther:
        break;
    }
  }
  c.in_field_ = Field::kOther;
  c.value_len_ = 0;
  return 0;
}

int Connection::onHeadersComplete(llhttp_t* p) {
  Connection& c = of(p);
  c.in_head_ = false;
  std::string_view url = c.url_;
  size_t qmark = url.find('?');
  c.path_ = classify(url.substr(0, qmark));
  if (c.path_ == Path::kGeneric && qmark != std::string_view::npos) {
    Query q = parseQuery(url.substr(qmark + 1));
    if (q.ws) {
      c.path_ = Path::kWs;
    } else if (q.echo) {
      c.path_ = Path::kEcho;
    }
  }
  if (c.path_ != Path::kStats && c.path_ != Path::kReset) {
    c.counted_ = true;
    ++c.outstanding_counted_;
    requestStarted();
  }
  c.has_body_ =
      (p->flags & F_CHUNKED) != 0 || ((p->flags & F_CONTENT_LENGTH) != 0 && p->content_length > 0);
  // 100 Continue may only go out when nothing is queued ahead of it.
  if (c.expect_continue_ && c.has_body_ && c.responses_.empty() && c.pieces_.empty()) {
    c.pushData(kContinue);
  }
  if (c.path_ == Path::kEcho && c.head_start_ != nullptr) {
    c.echo_pause_ = true;
    return HPE_PAUSED;
  }
  return 0;
}

int Connection::onBody(llhttp_t* p, const char*, size_t len) {
  of(p).body_bytes_ += len;
  return 0;
}

int Connection::onMessageComplete(llhttp_t* p) {
  Connection& c = of(p);
  c.queueResponse();
  if (c.closing_input_) return HPE_PAUSED;
  return 0;
}

void Connection::buildGeneric(Response& r, const Query& q, std::string literal, bool literal_body) {
  bool head_only = parser_.method == HTTP_HEAD;
  bool bodyless_status = q.status < 200 || q.status == 204 || q.status == 304;
  std::uint64_t body_len = literal_body ? literal.size() : q.size.value_or(0);
  std::string& h = r.head;
  h.reserve(160 + (literal_body ? literal.size() : 0));
  h += "HTTP/1.1 ";
  h += std::to_string(q.status);
  h += ' ';
  h += reasonPhrase(q.status);
  h += "\r\nContent-Type: text/plain\r\n";
  if (!bodyless_status) {
    if (q.chunked) {
      h += "Transfer-Encoding: chunked\r\n";
    } else {
      h += "Content-Length: ";
      h += std::to_string(body_len);
      h += kCrlf;
    }
  }
  if (r.after == PieceKind::kClose) {
    h += "Connection: close\r\n";
  } else if (parser_.http_major == 1 && parser_.http_minor == 0) {
    h += "Connection: keep-alive\r\n";
  }
  h += kCrlf;
  if (head_only || bodyless_status) return;
  if (literal_body) {
    if (q.chunked && !literal.empty()) {
      h += hex(literal.size());
      h += kCrlf;
      h += literal;
      h += kCrlf;
    } else if (!q.chunked) {
      h += literal;
    }
    if (q.chunked) h += kLastChunk;
    return;
  }
  r.stream_left = body_len;
  r.chunked = q.chunked;
  r.last_chunk = q.chunked;
}

void Connection::queueResponse() {
  if (path_ == Path::kWs && parser_.upgrade != 0 && ws_upgrade_ && !ws_key_.empty() &&
      parser_.method == HTTP_GET && !has_body_) {
    Response& r = responses_.emplace_back();
    r.conn = this;
    r.counted = counted_;
    counted_ = false;
    r.head =
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: " +
        webSocketAccept(ws_key_) + "\r\n\r\n";
    ws_ = true;
    return;
  }
  bool keep_alive = llhttp_should_keep_alive(&parser_) != 0 && parser_.upgrade == 0;
  if (!keep_alive) closing_input_ = true;
  Response& r = responses_.emplace_back();
  r.conn = this;
  r.counted = counted_;
  counted_ = false;
  r.after = keep_alive ? PieceKind::kDone : PieceKind::kClose;
  std::string_view url = url_;
  size_t qmark = url.find('?');
  std::string_view query =
      qmark == std::string_view::npos ? std::string_view() : url.substr(qmark + 1);

  switch (path_) {
    case Path::kStats:
    case Path::kReset: {
      if (path_ == Path::kReset) resetStats();
      std::string body = path_ == Path::kStats ? statsJson() : std::string("reset\n");
      r.head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) +
               (keep_alive ? "\r\n\r\n" : "\r\nConnection: close\r\n\r\n");
      r.head += body;
      return;
    }
    case Path::kHang:
      r.ready = false;
      r.hang = true;
      return;
    case Path::kClose:
    case Path::kResetConn:
      r.head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n";
      r.head.append(g_body, 10);
      r.after = path_ == Path::kClose ? PieceKind::kClose : PieceKind::kReset;
      closing_input_ = true;
      return;
    case Path::kMalformed:
      r.head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
          "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
      r.after = PieceKind::kClose;
      closing_input_ = true;
      return;
    case Path::kClConflict:
      r.head =
          "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
          "Content-Length: 6\r\n\r\nhello!";
      r.after = PieceKind::kClose;
      closing_input_ = true;
      return;
    case Path::kWs:  // not a WebSocket handshake
      r.head = std::string(
                   "HTTP/1.1 426 Upgrade Required\r\nUpgrade: websocket\r\nContent-Length: 0\r\n") +
               (keep_alive ? "\r\n" : "Connection: close\r\n\r\n");
      return;
    case Path::kEcho:
    case Path::kGeneric:
      break;
  }

  if (query.empty() && path_ == Path::kGeneric && !has_body_ && keep_alive &&
      parser_.method != HTTP_HEAD && parser_.http_minor == 1) {
    r.static_head = kDefaultResponse;  // the load-test hot path
    return;
  }
  Query q = parseQuery(query);
  if (path_ == Path::kEcho) {
    std::string body = head_;
    if (has_body_) body += "received " + std::to_string(body_bytes_) + " bytes\n";
    buildGeneric(r, q, std::move(body), true);
  } else if (has_body_) {
    buildGeneric(r, q, "received " + std::to_string(body_bytes_) + " bytes\n", true);
  } else if (q.size) {
    buildGeneric(r, q, std::string(), false);
  } else {
    buildGeneric(r, q, std::string(kDefaultBody), true);
  }
  if (q.delay_ms > 0) {
    r.ready = false;
    r.timer = event_new(worker_.base, -1, 0, &Connection::onTimerEvent, &r);
    timeval tv{static_cast<time_t>(q.delay_ms / 1000),
               static_cast<suseconds_t>((q.delay_ms % 1000) * 1000)};
    event_add(r.timer, &tv);
  }
}

// ---- WebSocket echo (after the 101) -------------------------------------------

void appendFrameHead(std::string& out, unsigned char first, std::uint64_t len) {
  out += static_cast<char>(first);
  if (len < 126) {
    out += static_cast<char>(len);
  } else if (len < 65536) {
    out += static_cast<char>(126);
    out += static_cast<char>(len >> 8);
    out += static_cast<char>(len & 0xff);
  } else {
    out += static_cast<char>(127);
    for (int i = 7; i >= 0; --i) out += static_cast<char>((len >> (8 * i)) & 0xff);
  }
}

// Appends `len` payload bytes unmasked with `mask` (4 bytes, from the
// payload's first byte), eight at a time.
void appendUnmasked(std::string& out, const char* payload, size_t len, const unsigned char* mask) {
  const size_t start = out.size();
  out.append(payload, len);
  char* p = out.data() + start;
  unsigned char m8[8];
  for (int i = 0; i < 8; ++i) m8[i] = mask[i & 3];
  std::uint64_t m = 0;
  std::memcpy(&m, m8, 8);
  size_t i = 0;
  for (; i + 8 <= len; i += 8) {
    std::uint64_t v = 0;
    std::memcpy(&v, p + i, 8);
    v ^= m;
    std::memcpy(p + i, &v, 8);
  }
  for (; i < len; ++i) p[i] = static_cast<char>(p[i] ^ static_cast<char>(mask[i & 3]));
}

// Answers every complete frame at the start of data into `out`; returns the
// bytes used. A close frame (answered with close) or a protocol error
// (answered with close 1002) sets closing_input_.
size_t Connection::wsFrames(const char* data, size_t len, std::string& out) {
  size_t at = 0;
  while (!closing_input_ && len - at >= 2) {
    const auto* b = reinterpret_cast<const unsigned char*>(data + at);
    const size_t avail = len - at;
    const unsigned opcode = b[0] & 0x0f;
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
    const bool masked = (b[1] & 0x80) != 0;
    const bool data_frame = opcode <= 2;
    const bool control = opcode >= 8 && opcode <= 10;
    if (!masked || (b[0] & 0x70) != 0 || plen > kMaxWsFrame || (!data_frame && !control)) {
      appendFrameHead(out, 0x88, 2);  // close, 1002 protocol error
      out += static_cast<char>(1002 >> 8);
      out += static_cast<char>(1002 & 0xff);
      closing_input_ = true;
      break;
    }
    head += 4;
    if (avail < head + plen) break;
    const unsigned char* mask = b + head - 4;
    const char* payload = data + at + head;
    const auto n = static_cast<size_t>(plen);
    if (opcode == 8) {  // close: the same payload (status code) back, then FIN
      appendFrameHead(out, 0x88, plen);
      appendUnmasked(out, payload, n, mask);
      closing_input_ = true;
    } else if (opcode == 9) {  // ping: pong
      appendFrameHead(out, 0x8a, plen);
      appendUnmasked(out, payload, n, mask);
    } else if (data_frame) {  // text, binary, continuation: echoed as they came
      appendFrameHead(out, static_cast<unsigned char>(b[0] & 0x8f), plen);
      appendUnmasked(out, payload, n, mask);
    }  // pong: nothing
    at += head + n;
  }
  return at;
}

void Connection::wsFeed(const char* data, size_t len) {
  std::string out;
  if (ws_in_.empty()) {
    out.reserve(len);
    const size_t used = wsFrames(data, len, out);
    if (used < len && !closing_input_) ws_in_.assign(data + used, len - used);
  } else {
    ws_in_.append(data, len);
    out.reserve(ws_in_.size());
    const size_t used = wsFrames(ws_in_.data(), ws_in_.size(), out);
    ws_in_.erase(0, used);
  }
  if (closing_input_) ws_in_.clear();
  if (out.empty() && !closing_input_) return;
  produce();  // the 101 goes first
  if (!out.empty()) pushOwned(std::move(out));
  if (closing_input_) pushMarker(PieceKind::kClose, false);
}

void Connection::queueError() {
  closing_input_ = true;
  Response& r = responses_.emplace_back();
  r.conn = this;
  r.counted = counted_;
  counted_ = false;
  r.static_head = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  r.after = PieceKind::kClose;
}

void Connection::pushData(std::string_view static_bytes) {
  Piece& p = pieces_.emplace_back();
  p.ext = static_bytes.data();
  p.len = static_bytes.size();
  pending_bytes_ += p.len;
}

void Connection::pushOwned(std::string bytes) {
  Piece& p = pieces_.emplace_back();
  p.owned = std::move(bytes);
  p.len = p.owned.size();
  pending_bytes_ += p.len;
}

void Connection::pushMarker(PieceKind kind, bool counted) {
  Piece& p = pieces_.emplace_back();
  p.kind = kind;
  p.counted = counted;
}

// Moves ready responses, in order, into pieces until kHighWater bytes wait.
void Connection::produce() {
  while (pending_bytes_ < kHighWater && !responses_.empty()) {
    Response& r = responses_.front();
    if (!r.ready) return;
    if (!r.head_emitted) {
      r.head_emitted = true;
      if (!r.static_head.empty()) {
        pushData(r.static_head);
      } else if (!r.head.empty()) {
        pushOwned(std::move(r.head));
      }
    }
    if (r.stream_left > 0) {
      size_t seg = static_cast<size_t>(std::min<std::uint64_t>(r.stream_left, kSegmentSize));
      r.stream_left -= seg;
      if (r.chunked) pushOwned(hex(seg) + "\r\n");
      pushData(std::string_view(g_body, seg));
      if (r.chunked) pushData(kCrlf);
      continue;
    }
    if (r.last_chunk) pushData(kLastChunk);
    pushMarker(PieceKind::kDone, r.counted);
    if (r.after != PieceKind::kDone) pushMarker(r.after, false);
    responses_.pop_front();
  }
}

void Connection::produceAndFlush() {
  size_t written = 0;
  produce();
  while (!pieces_.empty()) {
    Piece& front = pieces_.front();
    if (front.kind == PieceKind::kDone) {
      if (front.counted) {
        --outstanding_counted_;
        g_stats.in_flight.fetch_sub(1, std::memory_order_relaxed);
      }
      pieces_.pop_front();
      if (pieces_.empty()) produce();
      continue;
    }
    if (front.kind == PieceKind::kClose || front.kind == PieceKind::kReset) {
      reset_on_close_ = front.kind == PieceKind::kReset;
      dead_ = true;
      return;
    }
    iovec iov[kMaxIov];
    int n = 0;
    size_t want = 0;
    for (const Piece& p : pieces_) {
      if (p.kind != PieceKind::kData || n == kMaxIov) break;
      iov[n].iov_base = const_cast<char*>(p.data() + p.off);
      iov[n].iov_len = p.len - p.off;
      want += iov[n].iov_len;
      ++n;
    }
    ssize_t w = writev(fd_, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        armWrite();
        return;
      }
      dead_ = true;
      return;
    }
    size_t left = static_cast<size_t>(w);
    pending_bytes_ -= left;
    written += left;
    while (left > 0) {
      Piece& p = pieces_.front();
      size_t rest = p.len - p.off;
      if (left < rest) {
        p.off += left;
        break;
      }
      left -= rest;
      pieces_.pop_front();
    }
    if (static_cast<size_t>(w) < want || written >= kMaxWritePerCallback) {
      armWrite();  // socket buffer full (EAGAIN next), or let other connections run
      return;
    }
    if (pieces_.empty()) produce();
  }
  disarmWrite();
}

// Closes when the peer went away and nothing more can be answered; otherwise
// applies read backpressure.
void Connection::afterIo() {
  if (dead_) return;
  // A half-closed peer still gets every answer queued before a /__hang.
  if (peer_eof_ && pieces_.empty() && (responses_.empty() || responses_.front().hang)) {
    dead_ = true;
    return;
  }
  updateReading();
}

void Connection::updateReading() {
  // An echo reads on only while less than kHighWater of its answers wait.
  bool want = !peer_eof_ && (closing_input_ || responses_.size() < kMaxQueuedResponses) &&
              (!ws_ || closing_input_ || pending_bytes_ < kHighWater);
  if (want == reading_) return;
  reading_ = want;
  if (want) {
    event_add(read_ev_, nullptr);
  } else {
    event_del(read_ev_);
  }
}

void Connection::armWrite() {
  if (write_armed_) return;
  if (write_ev_ == nullptr) {
    write_ev_ =
        event_new(worker_.base, fd_, EV_WRITE | EV_PERSIST, &Connection::onWriteEvent, this);
  }
  event_add(write_ev_, nullptr);
  write_armed_ = true;
}

void Connection::disarmWrite() {
  if (!write_armed_) return;
  event_del(write_ev_);
  write_armed_ = false;
}

// ---- Workers and main --------------------------------------------------------

void onAccept(evutil_socket_t fd, short, void* arg) noexcept {
  auto* w = static_cast<Worker*>(arg);
  for (int i = 0; i < kMaxAcceptsPerCallback; ++i) {
    int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      return;  // EAGAIN, or out of descriptors: try again on the next event
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    new Connection(*w, c);
  }
}

void onStop(evutil_socket_t, short, void* arg) noexcept {
  event_base_loopbreak(static_cast<Worker*>(arg)->base);
}

int openListener(const sockaddr_in& addr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 ||
      listen(fd, 4096) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

void runWorker(Worker* w) {
  event_base_dispatch(w->base);
  while (w->conns != nullptr) delete w->conns;
  event_free(w->accept_ev);
  event_free(w->stop_ev);
  event_base_free(w->base);
}

void usage(FILE* out) {
  std::fputs(
      "usage: sluice-demo-upstream [--listen HOST:PORT] [--threads N]\n"
      "  --listen   IPv4 address to serve (default 127.0.0.1:9001; port 0 = ephemeral)\n"
      "  --threads  event-loop threads, one SO_REUSEPORT listener each (default 1)\n"
      "Prints 'listening HOST:PORT' once ready; exits 0 on SIGTERM/SIGINT.\n"
      "Any path: 200 text/plain 'hello from upstream\\n'. Query: size=N (N generated bytes),\n"
      "chunked=1, delay=MS, status=N, echo=1 (answer as /__echo does). A request body is\n"
      "read and discarded; the answer is 'received N bytes\\n'. /__echo: the raw request\n"
      "head (then 'received N bytes\\n' when there was a body). /__stats: JSON counters.\n"
      "/__reset: zero the counters. /__hang: never answer. /__close: Content-Length 1000,\n"
      "10 bytes, FIN. /__reset_conn: the same, then RST. /__malformed: Content-Length and\n"
      "chunked. /__cl_conflict: two differing Content-Length.\n"
      "/__ws (or any path with ws=1): a WebSocket handshake (GET, Upgrade: websocket,\n"
      "Connection: Upgrade, Sec-WebSocket-Key) is answered 101, then every frame is\n"
      "echoed (ping: pong, close: close); anything else there gets 426.\n",
      out);
}

int run(int argc, char** argv) {
  std::string listen = "127.0.0.1:9001";
  int threads = 1;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&](std::string_view name) -> std::optional<std::string_view> {
      if (arg == name && i + 1 < argc) return std::string_view(argv[++i]);
      if (arg.size() > name.size() + 1 && arg.substr(0, name.size()) == name &&
          arg[name.size()] == '=') {
        return arg.substr(name.size() + 1);
      }
      return std::nullopt;
    };
    if (auto v = value("--listen")) {
      listen = *v;
    } else if (auto t = value("--threads")) {
      threads = parseNumber<int>(*t).value_or(0);
      if (threads < 1 || threads > 256) {
        std::fprintf(stderr, "sluice-demo-upstream: bad --threads %.*s\n",
                     static_cast<int>(t->size()), t->data());
        return 2;
      }
    } else if (arg == "--help" || arg == "-h") {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  size_t colon = listen.rfind(':');
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  std::optional<int> port = colon == std::string::npos
                                ? std::nullopt
                                : parseNumber<int>(std::string_view(listen).substr(colon + 1));
  if (!port || *port < 0 || *port > 65535 ||
      inet_pton(AF_INET, listen.substr(0, colon).c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "sluice-demo-upstream: bad --listen %s (want IPv4:PORT)\n",
                 listen.c_str());
    return 2;
  }
  addr.sin_port = htons(static_cast<std::uint16_t>(*port));

  for (size_t i = 0; i < kSegmentSize; ++i) g_body[i] = kPattern[i % kPattern.size()];

  // Signals are taken synchronously by the main thread; workers never see them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);

  std::vector<std::unique_ptr<Worker>> workers;
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<Worker>();
    w->listen_fd = openListener(addr);
    if (w->listen_fd < 0) {
      std::fprintf(stderr, "sluice-demo-upstream: cannot listen on %s: %s\n", listen.c_str(),
                   std::strerror(errno));
      return 1;
    }
    if (i == 0) {  // later listeners share the port the kernel picked for the first
      socklen_t len = sizeof addr;
      getsockname(w->listen_fd, reinterpret_cast<sockaddr*>(&addr), &len);
    }
    if (pipe2(w->stop_pipe, O_CLOEXEC | O_NONBLOCK) != 0) return 1;
    w->base = event_base_new();
    if (w->base == nullptr) return 1;
    w->accept_ev = event_new(w->base, w->listen_fd, EV_READ | EV_PERSIST, &onAccept, w.get());
    w->stop_ev = event_new(w->base, w->stop_pipe[0], EV_READ, &onStop, w.get());
    event_add(w->accept_ev, nullptr);
    event_add(w->stop_ev, nullptr);
    workers.push_back(std::move(w));
  }
  char host[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr.sin_addr, host, sizeof host);
  std::printf("listening %s:%u\n", host, ntohs(addr.sin_port));
  std::fflush(stdout);

  std::vector<std::thread> running;
  for (auto& w : workers) running.emplace_back(runWorker, w.get());
  int sig = 0;
  sigwait(&sigs, &sig);
  for (auto& w : workers) {
    char b = 1;
    ssize_t ignored = write(w->stop_pipe[1], &b, 1);
    (void)ignored;
  }
  for (auto& t : running) t.join();
  for (auto& w : workers) {  // closed only here: the main thread wrote to the pipes
    close(w->listen_fd);
    close(w->stop_pipe[0]);
    close(w->stop_pipe[1]);
  }
  return 0;
}

}  // namespace
}  // namespace sluice::demo

int main(int argc, char** argv) { return sluice::demo::run(argc, argv); }
