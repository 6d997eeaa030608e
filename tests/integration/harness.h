#pragma once
// Integration-test harness: starts real binaries (sluice, sluice-demo-upstream)
// on port 0, talks raw HTTP/1.1 to them, and waits on conditions with
// deadlines. Nothing here sleeps a fixed time: waits are poll() with a
// deadline, or condition variables fed by the child's output.

#include <gtest/gtest.h>
#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace sluice::testing {

using Clock = std::chrono::steady_clock;
using Deadline = Clock::time_point;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The point in time `d` from now.
Deadline deadlineIn(std::chrono::milliseconds d);

// Evaluates `condition` every `interval` (poll() timeout, not a sleep) until it
// returns true or `deadline` passes; returns the last result.
bool waitUntil(const std::function<bool()>& condition, Deadline deadline,
               std::chrono::milliseconds interval = std::chrono::milliseconds(10));

// ---- Child processes ---------------------------------------------------------

enum class Stream { kStdout, kStderr };

struct OutputMatch {
  std::string text;                 // the whole match
  std::vector<std::string> groups;  // regex groups 1..n (empty for a substring)
  size_t end = 0;                   // offset just past the match: `from` for the next wait
};

// A child started with fork/exec (no shell). stdout and stderr are captured
// into growing strings by a background thread. The destructor sends SIGTERM to
// this child only, SIGKILL after 5 s, and reaps it; when the current test has
// failed it also prints the tail of the child's output. The child is killed if
// the thread that started it exits (PR_SET_PDEATHSIG), so start children from
// the test's own thread.
class ChildProcess {
 public:
  // Starts `path` with `args` (argv[1..]); `extra_env` entries override or add to
  // the inherited environment. Check started() afterwards.
  ChildProcess(std::string path, std::vector<std::string> args, Headers extra_env = {});
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // True when exec succeeded; otherwise error() says why.
  bool started() const { return pid_ > 0; }
  const std::string& error() const { return error_; }
  pid_t pid() const { return pid_; }
  const std::string& path() const { return path_; }

  // Everything the child wrote to the stream so far.
  std::string output(Stream stream) const;
  std::string stdoutText() const { return output(Stream::kStdout); }
  std::string stderrText() const { return output(Stream::kStderr); }

  // Waits until `needle` / `pattern` occurs in the stream at or after offset
  // `from`. Returns nullopt at the deadline, or once the stream is closed
  // (child gone) without a match.
  std::optional<OutputMatch> waitForOutput(Stream stream, std::string_view needle,
                                           Deadline deadline, size_t from = 0);
  std::optional<OutputMatch> waitForOutput(Stream stream, const std::regex& pattern,
                                           Deadline deadline, size_t from = 0);

  // Sends `sig` to this child; false when it has already been reaped.
  bool signal(int sig);
  // True once signal() was called: the test itself ends or disturbs the child.
  bool signaled() const { return signaled_; }
  // Waits for the child to exit and reaps it: its exit code, or -N when killed
  // by signal N; nullopt when still running at the deadline.
  std::optional<int> waitExit(Deadline deadline);
  // True while the child has not exited (reaps it if it has).
  bool running();

 private:
  void readLoop();
  std::optional<int> tryReap();
  template <typename Finder>
  std::optional<OutputMatch> waitFor(Stream stream, Deadline deadline, Finder find);

  std::string path_;
  std::string error_;
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  int out_fd_ = -1;
  int err_fd_ = -1;
  int wake_fd_[2] = {-1, -1};
  std::thread reader_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::string out_;
  std::string err_;
  bool out_closed_ = false;
  bool err_closed_ = false;
  bool signaled_ = false;
};

// ---- Raw HTTP/1.1 client -------------------------------------------------------

struct Response {
  int status = 0;
  std::string reason;
  Headers headers;               // in order, as received
  std::string body;              // de-chunked; left empty in BodyMode::kDiscard
  std::uint64_t body_bytes = 0;  // de-chunked body length, in both modes
  bool chunked = false;
  // False when the body ended early: the peer closed or reset (error "eof" /
  // "reset"), or the deadline passed ("timeout"), before the framing was done.
  bool complete = true;
  std::string error;

  // First value of header `name` (case-insensitive); "" when absent.
  std::string header(std::string_view name) const;
  // How many fields named `name` (case-insensitive) the response carried.
  size_t headerCount(std::string_view name) const;
  bool hasHeader(std::string_view name) const { return headerCount(name) > 0; }
};

enum class BodyMode { kStore, kDiscard };

// The status line and fields of a response head (without the blank line);
// null with `*error` when it does not parse. Shared by every test client.
std::optional<Response> parseResponseHead(std::string_view head, std::string* error);
// `s` without surrounding spaces and tabs.
std::string_view trimSpaces(std::string_view s);
// A whole-string unsigned number in `base`, or null.
std::optional<std::uint64_t> parseUnsigned(std::string_view text, int base = 10);

// One blocking client connection. Bytes after a response stay buffered for the
// next readResponse(), so keep-alive and pipelining work.
class HttpConn {
 public:
  // Connects to host:port (a 127.0.0.0/8 address), binding the local end to
  // `source_ip` when given (any 127.x.y.z works on Linux). Check connected().
  explicit HttpConn(int port, std::string_view source_ip = {}, std::string_view host = "127.0.0.1",
                    Deadline deadline = deadlineIn(std::chrono::seconds(5)));
  ~HttpConn();
  HttpConn(HttpConn&& other) noexcept;
  HttpConn& operator=(HttpConn&& other) noexcept;
  HttpConn(const HttpConn&) = delete;
  HttpConn& operator=(const HttpConn&) = delete;

  bool connected() const { return fd_ >= 0; }
  const std::string& error() const { return error_; }
  int fd() const { return fd_; }
  int localPort() const;

  // Writes all of `bytes`; false on error or at the deadline.
  bool send(std::string_view bytes, Deadline deadline = deadlineIn(std::chrono::seconds(10)));
  // Reads one response. nullopt when no complete head arrived (deadline, close,
  // garbage); a response whose body was cut short has complete == false.
  // `head_request`: the request was HEAD, so the response has no body (RFC 9112
  // §6.3); 1xx, 204 and 304 never have one. A 1xx is returned like any other.
  std::optional<Response> readResponse(Deadline deadline, bool head_request = false,
                                       BodyMode mode = BodyMode::kStore);
  // readResponse() that counts body bytes without keeping them (huge bodies).
  std::optional<Response> readResponseDiscardBody(Deadline deadline, bool head_request = false) {
    return readResponse(deadline, head_request, BodyMode::kDiscard);
  }
  // Waits until the peer closes (EOF) or resets the connection. Bytes that
  // arrive meanwhile are kept for readResponse()/readRaw().
  bool isClosedByPeer(Deadline deadline);
  // True once a read saw ECONNRESET.
  bool wasReset() const { return reset_; }
  // Everything buffered plus whatever arrives until EOF/RST or the deadline.
  std::string readRaw(Deadline deadline);
  // The next `n` bytes (after what readResponse() consumed); null when the
  // connection ended or the deadline passed first.
  std::optional<std::string> readExactly(size_t n, Deadline deadline);
  // Bytes received but not consumed by readResponse().
  size_t buffered() const { return buf_.size() - rpos_; }

  void shutdownWrite();
  // Closes with RST instead of FIN (SO_LINGER 0).
  void closeWithReset();
  void close();

 private:
  // Reads more into buf_: > 0 bytes read, 0 EOF, -1 reset/error, -2 deadline.
  int fill(Deadline deadline);
  bool readBody(Response& r, std::uint64_t length, BodyMode mode, Deadline deadline);
  bool readChunked(Response& r, BodyMode mode, Deadline deadline);
  std::optional<std::string> readLine(Deadline deadline, int* why);

  int fd_ = -1;
  std::string error_;
  std::string buf_;
  size_t rpos_ = 0;
  bool eof_ = false;
  bool reset_ = false;
};

// "METHOD path HTTP/1.1" with Host (127.0.0.1:port unless given), the headers,
// and Content-Length when there is a body and no framing header was given.
std::string requestText(std::string_view method, std::string_view path, int port,
                        const Headers& headers = {}, std::string_view body = {});

// One request on a fresh connection; the connection is closed afterwards.
std::optional<Response> httpRequest(int port, std::string_view method, std::string_view path,
                                    const Headers& headers = {}, std::string_view body = {},
                                    Deadline deadline = deadlineIn(std::chrono::seconds(10)));
std::optional<Response> httpGet(int port, std::string_view path, const Headers& headers = {},
                                Deadline deadline = deadlineIn(std::chrono::seconds(10)));

// ---- Process memory --------------------------------------------------------------

struct RssKb {
  long hwm_kb = 0;  // VmHWM: peak resident set
  long rss_kb = 0;  // VmRSS: resident set now
};
// From /proc/PID/status; nullopt when the process is gone.
std::optional<RssKb> readRssKb(pid_t pid);

// ---- The demo upstream -------------------------------------------------------------

// What /__stats reports, minus the harness's own control connection (see
// DemoUpstream::stats()).
struct UpstreamStats {
  std::int64_t requests = 0;       // requests received, /__stats and /__reset excluded
  std::int64_t in_flight = 0;      // head arrived, response not fully written
  std::int64_t max_in_flight = 0;  // high-water mark of in_flight since start or reset()
  std::int64_t connections = 0;    // accepted since start or reset()
  std::int64_t open_connections = 0;
};

// sluice-demo-upstream on 127.0.0.1:0 (binary: $SLUICE_DEMO_UPSTREAM_BIN, else the
// path CMake compiled in, else next to $SLUICE_BIN).
class DemoUpstream {
 public:
  DemoUpstream();
  // Unless the test signalled the process itself, stops it and adds a test
  // failure when it had died or does not exit 0 (crash, sanitizer report).
  ~DemoUpstream();
  DemoUpstream(const DemoUpstream&) = delete;
  DemoUpstream& operator=(const DemoUpstream&) = delete;

  // Starts it with `extra_args` (e.g. {"--threads", "2"}) and waits for its
  // "listening 127.0.0.1:PORT" line.
  ::testing::AssertionResult start(std::vector<std::string> extra_args = {},
                                   Deadline deadline = deadlineIn(std::chrono::seconds(10)));
  int port() const { return port_; }
  ChildProcess& process() { return *process_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }

  // /__stats over one kept-alive control connection. The counts exclude that
  // connection: it is neither in open_connections nor, once reset() ran on it,
  // in connections.
  std::optional<UpstreamStats> stats(Deadline deadline = deadlineIn(std::chrono::seconds(5)));
  // /__reset: zeroes requests, connections and max_in_flight (in_flight and
  // open_connections are live gauges and stay).
  bool reset(Deadline deadline = deadlineIn(std::chrono::seconds(5)));
  // SIGTERM, then its exit code (see ChildProcess::waitExit).
  std::optional<int> stop(Deadline deadline = deadlineIn(std::chrono::seconds(5)));

  static std::string binaryPath();

 private:
  std::optional<Response> control(std::string_view path, Deadline deadline);

  std::unique_ptr<ChildProcess> process_;
  std::unique_ptr<HttpConn> control_;
  bool control_counted_ = false;  // control_ was accepted after the last reset
  int port_ = 0;
};

// ---- The proxy ---------------------------------------------------------------------

// Extra YAML for minimalConfig(). Each block is written unindented; it is
// indented to its place.
struct ConfigOptions {
  std::string server;    // more keys under `server:`, e.g. "workers: 1\nheader_timeout: 1s\n"
  std::string upstream;  // more keys of upstream `demo`, e.g. "max_connections: 2\n"
  std::string route;     // more keys of the `/` route, e.g. "limits: [per_ip]\n"
  std::string top;       // top-level blocks appended as is (limits:, clients:, limiter:)
};

// A config with the proxy and admin listeners on 127.0.0.1:0, upstream `demo`
// -> 127.0.0.1:upstream_port and one route `/` -> demo.
std::string minimalConfig(int upstream_port, const ConfigOptions& options = {});

// A config with two workers, listeners on port 0 and upstream `demo` on
// `upstream_port`, followed by `rest` (limits:, routes:, clients:, ...).
std::string twoWorkerConfig(int upstream_port, std::string_view rest);

// Byte i of a body the demo upstream generates is kDemoBodyPattern[i % 64].
inline constexpr std::string_view kDemoBodyPattern =
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-\n";

// True when `body` is a prefix of the demo upstream's generated bodies.
bool isDemoBodyPattern(std::string_view body);

// $SLUICE_BIN run with a config written to a temporary file.
class Sluice {
 public:
  Sluice();
  ~Sluice();  // stops the process, then removes the temporary directory
  Sluice(const Sluice&) = delete;
  Sluice& operator=(const Sluice&) = delete;

  // Writes `yaml`, runs `sluice --config FILE` plus `extra_args`, and waits for
  // the `msg="listening" listener=proxy|admin addr=HOST:PORT` log lines.
  ::testing::AssertionResult start(std::string_view yaml, std::vector<std::string> extra_args = {},
                                   Deadline deadline = deadlineIn(std::chrono::seconds(10)));
  // Replaces the config file's content (then signal(SIGHUP) to reload).
  bool writeConfig(std::string_view yaml);
  // SIGTERM (drain, SPEC §6), then the exit code; nullopt at the deadline.
  std::optional<int> stop(Deadline deadline = deadlineIn(std::chrono::seconds(25)));

  int port() const { return port_; }
  int adminPort() const { return admin_port_; }
  pid_t pid() const { return process_ ? process_->pid() : -1; }
  ChildProcess& process() { return *process_; }
  std::string stderrText() const { return process_ ? process_->stderrText() : std::string(); }
  const std::string& configPath() const { return config_path_; }

  static std::string binaryPath();

 private:
  std::unique_ptr<ChildProcess> process_;
  std::string dir_;
  std::string config_path_;
  int port_ = 0;
  int admin_port_ = 0;
};

}  // namespace sluice::testing
