#include "tests/integration/harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

extern char** environ;

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

// Milliseconds left until `deadline` for poll(): 0 when past, capped so that a
// far deadline cannot overflow an int.
int msLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count() + 1;
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

template <typename T>
std::optional<T> parseNumber(std::string_view text, int base = 10) {
  T value{};
  auto res = std::from_chars(text.data(), text.data() + text.size(), value, base);
  if (res.ec != std::errc() || res.ptr != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : "..." + s.substr(s.size() - n);
}

// Each non-empty line of `block` prefixed with `indent`, newline-terminated.
std::string indentBlock(std::string_view block, std::string_view indent) {
  std::string out;
  while (!block.empty()) {
    size_t nl = block.find('\n');
    std::string_view line = block.substr(0, nl);
    block = nl == std::string_view::npos ? std::string_view() : block.substr(nl + 1);
    if (trim(line).empty()) continue;
    out += indent;
    out += line;
    out += '\n';
  }
  return out;
}

std::optional<std::int64_t> jsonInt(std::string_view json, std::string_view key) {
  std::string quoted = "\"" + std::string(key) + "\":";
  size_t at = json.find(quoted);
  if (at == std::string_view::npos) return std::nullopt;
  std::string_view rest = json.substr(at + quoted.size());
  size_t end = rest.find_first_not_of("-0123456789");
  return parseNumber<std::int64_t>(rest.substr(0, end));
}

std::string envOr(const char* name, std::string fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? std::string(v) : fallback;
}

}  // namespace

Deadline deadlineIn(std::chrono::milliseconds d) { return Clock::now() + d; }

bool waitUntil(const std::function<bool()>& condition, Deadline deadline,
               std::chrono::milliseconds interval) {
  for (;;) {
    if (condition()) return true;
    int left = msLeft(deadline);
    if (Clock::now() >= deadline) return condition();
    poll(nullptr, 0, std::min(left, static_cast<int>(interval.count())));
  }
}

// ---- ChildProcess ------------------------------------------------------------------

ChildProcess::ChildProcess(std::string path, std::vector<std::string> args, Headers extra_env)
    : path_(std::move(path)) {
  // Everything the child needs is prepared before fork(): after it, the child
  // (a copy of a multi-threaded process) only makes async-signal-safe calls.
  std::vector<std::string> argv_store;
  argv_store.push_back(path_);
  for (auto& a : args) argv_store.push_back(std::move(a));
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string_view entry = *e;
    std::string_view name = entry.substr(0, entry.find('='));
    bool overridden = std::any_of(extra_env.begin(), extra_env.end(),
                                  [&](const auto& kv) { return kv.first == name; });
    if (!overridden) env_store.emplace_back(entry);
  }
  for (const auto& [name, value] : extra_env) env_store.push_back(name + "=" + value);
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (auto& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out[2];
  int err[2];
  int exec_err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0 || pipe2(exec_err, O_CLOEXEC) != 0 ||
      pipe2(wake_fd_, O_CLOEXEC) != 0) {
    error_ = std::string("pipe: ") + std::strerror(errno);
    return;
  }
  int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    error_ = std::string("fork: ") + std::strerror(errno);
    return;
  }
  if (pid == 0) {
    // The child dies with the test process, even when that one crashes.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    dup2(devnull, 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execve(argv[0], argv.data(), envp.data());
    int e = errno;
    ssize_t ignored = write(exec_err[1], &e, sizeof e);
    static_cast<void>(ignored);
    _exit(127);
  }
  close(devnull);
  close(out[1]);
  close(err[1]);
  close(exec_err[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = read(exec_err[0], &child_errno, sizeof child_errno);
  } while (n < 0 && errno == EINTR);
  close(exec_err[0]);
  out_fd_ = out[0];
  err_fd_ = err[0];
  if (n > 0) {  // exec failed; the child has exited
    error_ = "exec " + path_ + ": " + std::strerror(child_errno);
    waitpid(pid, nullptr, 0);
    close(out_fd_);
    close(err_fd_);
    out_fd_ = err_fd_ = -1;
    return;
  }
  pid_ = pid;
  reader_ = std::thread([this] { readLoop(); });
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0) {
    if (!tryReap()) {
      kill(pid_, SIGTERM);
      if (!waitExit(deadlineIn(std::chrono::seconds(5)))) {
        kill(pid_, SIGKILL);
        int status = 0;
        while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
        }
      }
    }
  }
  if (reader_.joinable()) {
    char b = 1;
    ssize_t ignored = write(wake_fd_[1], &b, 1);
    static_cast<void>(ignored);
    reader_.join();
  }
  for (int fd : {out_fd_, err_fd_, wake_fd_[0], wake_fd_[1]}) {
    if (fd >= 0) close(fd);
  }
  if (pid_ > 0 && ::testing::Test::HasFailure()) {
    std::lock_guard<std::mutex> lock(mu_);
    std::cerr << "---- " << path_ << " (pid " << pid_ << ") stdout ----\n"
              << tail(out_, 8000) << "\n---- stderr ----\n"
              << tail(err_, 16000) << "\n---- end ----" << std::endl;
  }
}

void ChildProcess::readLoop() {
  char buf[16384];
  bool out_open = true;
  bool err_open = true;
  while (out_open || err_open) {
    pollfd fds[3] = {{out_open ? out_fd_ : -1, POLLIN, 0},
                     {err_open ? err_fd_ : -1, POLLIN, 0},
                     {wake_fd_[0], POLLIN, 0}};
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[2].revents != 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard<std::mutex> lock(mu_);
      if (n > 0) {
        (i == 0 ? out_ : err_).append(buf, static_cast<size_t>(n));
      } else {
        (i == 0 ? out_open : err_open) = false;
        (i == 0 ? out_closed_ : err_closed_) = true;
      }
    }
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lock(mu_);
  out_closed_ = err_closed_ = true;
  cv_.notify_all();
}

std::string ChildProcess::output(Stream stream) const {
  std::lock_guard<std::mutex> lock(mu_);
  return stream == Stream::kStdout ? out_ : err_;
}

template <typename Finder>
std::optional<OutputMatch> ChildProcess::waitFor(Stream stream, Deadline deadline, Finder find) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::string& text = stream == Stream::kStdout ? out_ : err_;
  const bool& closed = stream == Stream::kStdout ? out_closed_ : err_closed_;
  for (;;) {
    if (auto m = find(text)) return m;
    if (closed || pid_ <= 0) return std::nullopt;
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return find(text);
    }
  }
}

std::optional<OutputMatch> ChildProcess::waitForOutput(Stream stream, std::string_view needle,
                                                       Deadline deadline, size_t from) {
  return waitFor(stream, deadline, [&](const std::string& text) -> std::optional<OutputMatch> {
    if (from > text.size()) return std::nullopt;
    size_t at = text.find(needle, from);
    if (at == std::string::npos) return std::nullopt;
    return OutputMatch{std::string(needle), {}, at + needle.size()};
  });
}

std::optional<OutputMatch> ChildProcess::waitForOutput(Stream stream, const std::regex& pattern,
                                                       Deadline deadline, size_t from) {
  return waitFor(stream, deadline, [&](const std::string& text) -> std::optional<OutputMatch> {
    if (from > text.size()) return std::nullopt;
    std::smatch m;
    if (!std::regex_search(text.begin() + static_cast<std::ptrdiff_t>(from), text.end(), m,
                           pattern)) {
      return std::nullopt;
    }
    OutputMatch out;
    out.text = m.str(0);
    for (size_t i = 1; i < m.size(); ++i) out.groups.push_back(m.str(i));
    out.end = from + static_cast<size_t>(m.position(0) + m.length(0));
    return out;
  });
}

std::optional<int> ChildProcess::tryReap() {
  if (exit_code_) return exit_code_;
  if (pid_ <= 0) return std::nullopt;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r != pid_) return std::nullopt;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return exit_code_;
}

bool ChildProcess::signal(int sig) {
  signaled_ = true;
  if (pid_ <= 0 || exit_code_) return false;
  return kill(pid_, sig) == 0;
}

std::optional<int> ChildProcess::waitExit(Deadline deadline) {
  for (;;) {
    if (auto code = tryReap()) return code;
    if (pid_ <= 0 || Clock::now() >= deadline) return std::nullopt;
    poll(nullptr, 0, std::min(msLeft(deadline), 5));
  }
}

bool ChildProcess::running() { return pid_ > 0 && !tryReap(); }

// ---- Response / HttpConn -------------------------------------------------------------

std::string Response::header(std::string_view name) const {
  for (const auto& [n, v] : headers) {
    if (equalsIgnoreCase(n, name)) return v;
  }
  return {};
}

size_t Response::headerCount(std::string_view name) const {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(), [&](const auto& kv) {
    return equalsIgnoreCase(kv.first, name);
  }));
}

HttpConn::HttpConn(int port, std::string_view source_ip, std::string_view host, Deadline deadline) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    error_ = std::string("socket: ") + std::strerror(errno);
    return;
  }
  auto fail = [&](const std::string& what) {
    error_ = what + ": " + std::strerror(errno);
    ::close(fd);
  };
  if (!source_ip.empty()) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    if (inet_pton(AF_INET, std::string(source_ip).c_str(), &src.sin_addr) != 1) {
      errno = EINVAL;
      fail("bad source address " + std::string(source_ip));
      return;
    }
    if (bind(fd, reinterpret_cast<const sockaddr*>(&src), sizeof src) != 0) {
      fail("bind " + std::string(source_ip));
      return;
    }
  }
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, std::string(host).c_str(), &dst.sin_addr) != 1) {
    errno = EINVAL;
    fail("bad address " + std::string(host));
    return;
  }
  std::string target = std::string(host) + ":" + std::to_string(port);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0) {
    if (errno != EINPROGRESS) {
      fail("connect " + target);
      return;
    }
    pollfd p{fd, POLLOUT, 0};
    int r;
    do {
      r = poll(&p, 1, msLeft(deadline));
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
      errno = ETIMEDOUT;
      fail("connect " + target);
      return;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
      errno = soerr;
      fail("connect " + target);
      return;
    }
  }
  fd_ = fd;
}

HttpConn::~HttpConn() { close(); }

HttpConn::HttpConn(HttpConn&& other) noexcept { *this = std::move(other); }

HttpConn& HttpConn::operator=(HttpConn&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    error_ = std::move(other.error_);
    buf_ = std::move(other.buf_);
    rpos_ = std::exchange(other.rpos_, 0);
    eof_ = other.eof_;
    reset_ = other.reset_;
  }
  return *this;
}

int HttpConn::localPort() const {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (fd_ < 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) return -1;
  return ntohs(a.sin_port);
}

bool HttpConn::send(std::string_view bytes, Deadline deadline) {
  while (!bytes.empty()) {
    if (fd_ < 0) return false;
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      if (errno == ECONNRESET) reset_ = true;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    pollfd p{fd_, POLLOUT, 0};
    if (poll(&p, 1, msLeft(deadline)) == 0) {
      error_ = "send: deadline passed";
      return false;
    }
  }
  return true;
}

int HttpConn::fill(Deadline deadline) {
  if (fd_ < 0) return -1;
  if (reset_) return -1;
  if (eof_) return 0;
  if (rpos_ == buf_.size()) {
    buf_.clear();
    rpos_ = 0;
  } else if (rpos_ > 65536 && rpos_ * 2 > buf_.size()) {
    buf_.erase(0, rpos_);
    rpos_ = 0;
  }
  constexpr size_t kChunk = 256 * 1024;
  for (;;) {
    size_t old = buf_.size();
    buf_.resize(old + kChunk);
    ssize_t n = recv(fd_, buf_.data() + old, kChunk, 0);
    int e = errno;
    buf_.resize(old + (n > 0 ? static_cast<size_t>(n) : 0));
    if (n > 0) return static_cast<int>(n);
    if (n == 0) {
      eof_ = true;
      return 0;
    }
    if (e == EINTR) continue;
    if (e != EAGAIN && e != EWOULDBLOCK) {
      if (e == ECONNRESET) reset_ = true;
      error_ = std::string("recv: ") + std::strerror(e);
      return -1;
    }
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, msLeft(deadline));
    if (r == 0 && Clock::now() >= deadline) return -2;
  }
}

std::optional<std::string> HttpConn::readLine(Deadline deadline, int* why) {
  for (;;) {
    size_t nl = buf_.find("\r\n", rpos_);
    if (nl != std::string::npos) {
      std::string line = buf_.substr(rpos_, nl - rpos_);
      rpos_ = nl + 2;
      return line;
    }
    int r = fill(deadline);
    if (r <= 0) {
      *why = r;
      return std::nullopt;
    }
  }
}

namespace {
const char* endReason(int why) { return why == 0 ? "eof" : why == -2 ? "timeout" : "reset"; }
}  // namespace

bool HttpConn::readBody(Response& r, std::uint64_t length, BodyMode mode, Deadline deadline) {
  while (length > 0) {
    if (rpos_ == buf_.size()) {
      int got = fill(deadline);
      if (got <= 0) {
        r.complete = false;
        r.error = endReason(got);
        return false;
      }
    }
    size_t take = static_cast<size_t>(std::min<std::uint64_t>(length, buf_.size() - rpos_));
    if (mode == BodyMode::kStore) r.body.append(buf_, rpos_, take);
    rpos_ += take;
    r.body_bytes += take;
    length -= take;
  }
  return true;
}

bool HttpConn::readChunked(Response& r, BodyMode mode, Deadline deadline) {
  int why = 0;
  for (;;) {
    auto line = readLine(deadline, &why);
    if (!line) break;
    std::string_view size_text = trim(std::string_view(*line).substr(0, line->find(';')));
    auto size = parseNumber<std::uint64_t>(size_text, 16);
    if (!size) {
      r.complete = false;
      r.error = "bad chunk size: " + *line;
      return false;
    }
    if (*size == 0) {
      for (;;) {  // trailer fields, up to the empty line
        auto trailer = readLine(deadline, &why);
        if (!trailer) break;
        if (trailer->empty()) return true;
      }
      break;
    }
    if (!readBody(r, *size, mode, deadline)) return false;
    auto crlf = readLine(deadline, &why);
    if (!crlf) break;
    if (!crlf->empty()) {
      r.complete = false;
      r.error = "chunk data longer than its size";
      return false;
    }
  }
  r.complete = false;
  r.error = endReason(why);
  return false;
}

std::optional<Response> parseResponseHead(std::string_view head, std::string* error) {
  Response r;
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  auto status = status_line.substr(0, 5) == "HTTP/" && status_line.size() >= 12 &&
                        status_line[8] == ' '
                    ? parseNumber<int>(status_line.substr(9, 3))
                    : std::nullopt;
  if (!status) {
    *error = "bad status line: " + std::string(status_line);
    return std::nullopt;
  }
  r.status = *status;
  r.reason = std::string(trim(status_line.substr(12)));
  std::string_view rest = eol == std::string_view::npos ? std::string_view() : head.substr(eol + 2);
  while (!rest.empty()) {
    size_t next = rest.find("\r\n");
    std::string_view line = rest.substr(0, next);
    rest = next == std::string_view::npos ? std::string_view() : rest.substr(next + 2);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      *error = "bad header line: " + std::string(line);
      return std::nullopt;
    }
    r.headers.emplace_back(std::string(line.substr(0, colon)),
                           std::string(trim(line.substr(colon + 1))));
  }
  return r;
}

std::string_view trimSpaces(std::string_view s) { return trim(s); }

std::optional<std::uint64_t> parseUnsigned(std::string_view text, int base) {
  return parseNumber<std::uint64_t>(text, base);
}

std::optional<Response> HttpConn::readResponse(Deadline deadline, bool head_request,
                                               BodyMode mode) {
  size_t head_end;
  for (;;) {
    head_end = buf_.find("\r\n\r\n", rpos_);
    if (head_end != std::string::npos) break;
    if (fill(deadline) <= 0) return std::nullopt;
  }
  auto parsed = parseResponseHead(std::string_view(buf_.data() + rpos_, head_end - rpos_), &error_);
  if (!parsed) return std::nullopt;
  Response r = std::move(*parsed);
  rpos_ = head_end + 4;

  // Framing, RFC 9112 §6.3.
  if (head_request || r.status < 200 || r.status == 204 || r.status == 304) return r;
  std::string te = r.header("Transfer-Encoding");
  if (!te.empty()) {
    std::string_view last = trim(
        std::string_view(te).substr(te.rfind(',') == std::string::npos ? 0 : te.rfind(',') + 1));
    if (equalsIgnoreCase(last, "chunked")) {
      r.chunked = true;
      readChunked(r, mode, deadline);
      return r;
    }
  } else if (r.hasHeader("Content-Length")) {
    auto length = parseNumber<std::uint64_t>(r.header("Content-Length"));
    if (!length) {
      r.complete = false;
      r.error = "bad Content-Length";
      return r;
    }
    readBody(r, *length, mode, deadline);
    return r;
  }
  // Delimited by close.
  for (;;) {
    size_t take = buf_.size() - rpos_;
    if (mode == BodyMode::kStore) r.body.append(buf_, rpos_, take);
    r.body_bytes += take;
    rpos_ += take;
    int got = fill(deadline);
    if (got == 0) return r;
    if (got < 0) {
      r.complete = false;
      r.error = endReason(got);
      return r;
    }
  }
}

bool HttpConn::isClosedByPeer(Deadline deadline) {
  for (;;) {
    int r = fill(deadline);
    if (r == 0 || r == -1) return true;
    if (r == -2) return false;
  }
}

std::string HttpConn::readRaw(Deadline deadline) {
  while (fill(deadline) > 0) {
  }
  std::string out = buf_.substr(rpos_);
  rpos_ = buf_.size();
  return out;
}

std::optional<std::string> HttpConn::readExactly(size_t n, Deadline deadline) {
  while (buffered() < n) {
    if (fill(deadline) <= 0) return std::nullopt;
  }
  std::string out = buf_.substr(rpos_, n);
  rpos_ += n;
  return out;
}

void HttpConn::shutdownWrite() {
  if (fd_ >= 0) shutdown(fd_, SHUT_WR);
}

void HttpConn::closeWithReset() {
  if (fd_ < 0) return;
  linger lg{1, 0};
  setsockopt(fd_, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  close();
}

void HttpConn::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::string requestText(std::string_view method, std::string_view path, int port,
                        const Headers& headers, std::string_view body) {
  auto has = [&](std::string_view name) {
    return std::any_of(headers.begin(), headers.end(),
                       [&](const auto& kv) { return equalsIgnoreCase(kv.first, name); });
  };
  std::string out;
  out.append(method).append(" ").append(path).append(" HTTP/1.1\r\n");
  if (!has("Host")) out += "Host: 127.0.0.1:" + std::to_string(port) + "\r\n";
  for (const auto& [name, value] : headers) out += name + ": " + value + "\r\n";
  if (!body.empty() && !has("Content-Length") && !has("Transfer-Encoding")) {
    out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  out += "\r\n";
  out.append(body);
  return out;
}

std::optional<Response> httpRequest(int port, std::string_view method, std::string_view path,
                                    const Headers& headers, std::string_view body,
                                    Deadline deadline) {
  HttpConn conn(port, {}, "127.0.0.1", deadline);
  if (!conn.connected() || !conn.send(requestText(method, path, port, headers, body), deadline)) {
    return std::nullopt;
  }
  return conn.readResponse(deadline, method == "HEAD");
}

std::optional<Response> httpGet(int port, std::string_view path, const Headers& headers,
                                Deadline deadline) {
  return httpRequest(port, "GET", path, headers, {}, deadline);
}

// ---- readRssKb -------------------------------------------------------------------------

std::optional<RssKb> readRssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  if (!in) return std::nullopt;
  RssKb out;
  bool hwm = false;
  bool rss = false;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    long kb = 0;
    fields >> key >> kb;
    if (key == "VmHWM:") {
      out.hwm_kb = kb;
      hwm = true;
    } else if (key == "VmRSS:") {
      out.rss_kb = kb;
      rss = true;
    }
  }
  if (!hwm || !rss) return std::nullopt;  // a zombie has no memory lines
  return out;
}

// ---- DemoUpstream ----------------------------------------------------------------------

DemoUpstream::DemoUpstream() = default;

DemoUpstream::~DemoUpstream() {
  control_.reset();
  if (process_ && process_->started() && !process_->signaled()) {
    bool was_running = process_->running();
    auto code = stop();
    if (!was_running) {
      ADD_FAILURE() << "sluice-demo-upstream died during the test (exit " << code.value_or(999)
                    << ")";
    } else if (code != 0) {
      ADD_FAILURE() << "sluice-demo-upstream did not exit 0 on SIGTERM (exit "
                    << (code ? std::to_string(*code) : std::string("none")) << ")";
    }
  }
  process_.reset();
}

std::optional<int> DemoUpstream::stop(Deadline deadline) {
  if (!process_) return std::nullopt;
  process_->signal(SIGTERM);
  return process_->waitExit(deadline);
}

std::string DemoUpstream::binaryPath() {
  std::string compiled;
#ifdef SLUICE_DEFAULT_DEMO_UPSTREAM_BIN
  compiled = SLUICE_DEFAULT_DEMO_UPSTREAM_BIN;
#endif
  if (compiled.empty()) {
    namespace fs = std::filesystem;
    fs::path proxy_dir = fs::path(Sluice::binaryPath()).parent_path();
    compiled =
        (proxy_dir.parent_path() / "loadtest" / "upstream" / "sluice-demo-upstream").string();
  }
  return envOr("SLUICE_DEMO_UPSTREAM_BIN", compiled);
}

::testing::AssertionResult DemoUpstream::start(std::vector<std::string> extra_args,
                                               Deadline deadline) {
  std::vector<std::string> args = {"--listen", "127.0.0.1:0"};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<ChildProcess>(binaryPath(), std::move(args));
  if (!process_->started()) return ::testing::AssertionFailure() << process_->error();
  auto m = process_->waitForOutput(Stream::kStdout,
                                   std::regex("listening 127\\.0\\.0\\.1:(\\d+)\n"), deadline);
  if (!m) {
    return ::testing::AssertionFailure() << "demo upstream did not report listening; stderr:\n"
                                         << process_->stderrText();
  }
  port_ = std::stoi(m->groups[0]);
  return ::testing::AssertionSuccess();
}

std::optional<Response> DemoUpstream::control(std::string_view path, Deadline deadline) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!control_ || !control_->connected()) {
      control_ = std::make_unique<HttpConn>(port_, std::string_view(), "127.0.0.1", deadline);
      if (!control_->connected()) return std::nullopt;
      control_counted_ = true;
    }
    if (control_->send(requestText("GET", path, port_), deadline)) {
      auto r = control_->readResponse(deadline);
      if (r && r->complete) return r;
    }
    control_.reset();  // the demo upstream closed it: open a fresh one
  }
  return std::nullopt;
}

std::optional<UpstreamStats> DemoUpstream::stats(Deadline deadline) {
  auto r = control("/__stats", deadline);
  if (!r || r->status != 200) return std::nullopt;
  auto requests = jsonInt(r->body, "requests");
  auto in_flight = jsonInt(r->body, "in_flight");
  auto max_in_flight = jsonInt(r->body, "max_in_flight");
  auto connections = jsonInt(r->body, "connections");
  auto open = jsonInt(r->body, "open_connections");
  if (!requests || !in_flight || !max_in_flight || !connections || !open) return std::nullopt;
  return UpstreamStats{*requests, *in_flight, *max_in_flight,
                       *connections - (control_counted_ ? 1 : 0), *open - 1};
}

bool DemoUpstream::reset(Deadline deadline) {
  auto r = control("/__reset", deadline);
  if (!r || r->status != 200) return false;
  control_counted_ = false;
  return true;
}

// ---- Sluice ----------------------------------------------------------------------------

std::string minimalConfig(int upstream_port, const ConfigOptions& options) {
  std::string y;
  y += "server:\n";
  y += "  listen: 127.0.0.1:0\n";
  y += "  admin_listen: 127.0.0.1:0\n";
  y += indentBlock(options.server, "  ");
  y += "upstreams:\n";
  y += "  demo:\n";
  y += "    targets: [127.0.0.1:" + std::to_string(upstream_port) + "]\n";
  y += indentBlock(options.upstream, "    ");
  y += "routes:\n";
  y += "  - path_prefix: /\n";
  y += "    upstream: demo\n";
  y += indentBlock(options.route, "    ");
  y += options.top;
  if (!y.empty() && y.back() != '\n') y += '\n';
  return y;
}

std::string Sluice::binaryPath() {
  std::string compiled;
#ifdef SLUICE_DEFAULT_BIN
  compiled = SLUICE_DEFAULT_BIN;
#endif
  return envOr("SLUICE_BIN", compiled);
}

Sluice::Sluice() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-test-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) {
    dir_ = tmpl;
    config_path_ = dir_ + "/sluice.yaml";
  }
}

Sluice::~Sluice() {
  process_.reset();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::optional<int> Sluice::stop(Deadline deadline) {
  if (!process_) return std::nullopt;
  process_->signal(SIGTERM);
  return process_->waitExit(deadline);
}

bool Sluice::writeConfig(std::string_view yaml) {
  if (config_path_.empty()) return false;
  // Write then rename, so a reload never reads a half-written file.
  std::string tmp = config_path_ + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << yaml;
    if (!out.flush()) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, config_path_, ec);
  return !ec;
}

::testing::AssertionResult Sluice::start(std::string_view yaml, std::vector<std::string> extra_args,
                                         Deadline deadline) {
  if (config_path_.empty()) return ::testing::AssertionFailure() << "no temporary directory";
  if (!writeConfig(yaml)) return ::testing::AssertionFailure() << "cannot write " << config_path_;
  std::vector<std::string> args = {"--config", config_path_};
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  process_ = std::make_unique<ChildProcess>(binaryPath(), std::move(args));
  if (!process_->started()) return ::testing::AssertionFailure() << process_->error();
  auto listening = [&](std::string_view listener) {
    std::regex re("msg=\"listening\"[^\\n]*listener=" + std::string(listener) +
                  "[^\\n]*addr=\\S*:(\\d+)");
    return process_->waitForOutput(Stream::kStderr, re, deadline);
  };
  auto proxy = listening("(?:proxy|tls)");  // the cleartext listener, or TLS alone
  auto admin = proxy ? listening("admin") : std::nullopt;
  if (!proxy || !admin) {
    auto code = process_->waitExit(deadlineIn(milliseconds(0)));
    return ::testing::AssertionFailure()
           << "sluice did not log both listening lines"
           << (code ? " (exited with " + std::to_string(*code) + ")" : std::string())
           << "; config:\n"
           << yaml << "\nstderr:\n"
           << process_->stderrText();
  }
  port_ = std::stoi(proxy->groups[0]);
  admin_port_ = std::stoi(admin->groups[0]);
  return ::testing::AssertionSuccess();
}

std::string twoWorkerConfig(int upstream_port, std::string_view rest) {
  std::string yaml =
      "server:\n"
      "  listen: 127.0.0.1:0\n"
      "  admin_listen: 127.0.0.1:0\n"
      "  workers: 2\n"
      "upstreams:\n"
      "  demo:\n"
      "    targets: [127.0.0.1:" +
      std::to_string(upstream_port) + "]\n";
  yaml += rest;
  return yaml;
}

bool isDemoBodyPattern(std::string_view body) {
  for (size_t i = 0; i < body.size(); ++i) {
    if (body[i] != kDemoBodyPattern[i % kDemoBodyPattern.size()]) return false;
  }
  return true;
}

}  // namespace sluice::testing
