#include "tests/integration/redis_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <filesystem>

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

int msLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count() + 1;
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

// A connected, non-blocking socket to 127.0.0.1:port; -1 on failure.
int connectLocal(int port, Deadline deadline) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(static_cast<std::uint16_t>(port));
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&dst), sizeof dst) != 0) {
    if (errno != EINPROGRESS) {
      ::close(fd);
      return -1;
    }
    pollfd p{fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (poll(&p, 1, msLeft(deadline)) != 1 ||
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0 || soerr != 0) {
      ::close(fd);
      return -1;
    }
  }
  return fd;
}

bool sendAll(int fd, std::string_view out, Deadline deadline) {
  while (!out.empty()) {
    ssize_t n = ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      out.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return false;
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, msLeft(deadline)) == 0) return false;
  }
  return true;
}

enum class Parse { kDone, kMore, kBad };

// Parses one reply from `buf` at `*pos`; advances `*pos` past it when done.
Parse parseReply(const std::string& buf, size_t* pos, RespReply* out) {
  size_t eol = buf.find("\r\n", *pos);
  if (eol == std::string::npos) return Parse::kMore;
  if (eol == *pos) return Parse::kBad;
  const char kind = buf[*pos];
  std::string_view line(buf.data() + *pos + 1, eol - *pos - 1);
  size_t next = eol + 2;
  long long n = 0;
  auto number = [&]() {
    auto r = std::from_chars(line.data(), line.data() + line.size(), n);
    return r.ec == std::errc() && r.ptr == line.data() + line.size();
  };
  switch (kind) {
    case '+':
    case '-':
      out->type = kind == '+' ? RespReply::Type::kSimple : RespReply::Type::kError;
      out->text = std::string(line);
      *pos = next;
      return Parse::kDone;
    case ':':
      if (!number()) return Parse::kBad;
      out->type = RespReply::Type::kInteger;
      out->integer = n;
      *pos = next;
      return Parse::kDone;
    case '$':
      if (!number()) return Parse::kBad;
      if (n < 0) {
        out->type = RespReply::Type::kNil;
        *pos = next;
        return Parse::kDone;
      }
      if (buf.size() < next + static_cast<size_t>(n) + 2) return Parse::kMore;
      out->type = RespReply::Type::kBulk;
      out->text = buf.substr(next, static_cast<size_t>(n));
      *pos = next + static_cast<size_t>(n) + 2;
      return Parse::kDone;
    case '*': {
      if (!number()) return Parse::kBad;
      if (n < 0) {
        out->type = RespReply::Type::kNil;
        *pos = next;
        return Parse::kDone;
      }
      out->type = RespReply::Type::kArray;
      out->elements.clear();
      size_t at = next;
      for (long long i = 0; i < n; ++i) {
        RespReply element;
        Parse p = parseReply(buf, &at, &element);
        if (p != Parse::kDone) return p;
        out->elements.push_back(std::move(element));
      }
      *pos = at;
      return Parse::kDone;
    }
    default:
      return Parse::kBad;
  }
}

std::string findOnPath(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

}  // namespace

std::optional<RespReply> redisCommand(int port, const std::vector<std::string>& args,
                                      Deadline deadline) {
  int fd = connectLocal(port, deadline);
  if (fd < 0) return std::nullopt;
  std::string request = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) request += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  std::optional<RespReply> result;
  if (sendAll(fd, request, deadline)) {
    std::string buf;
    for (;;) {
      RespReply reply;
      size_t pos = 0;
      Parse p = parseReply(buf, &pos, &reply);
      if (p == Parse::kDone) {
        result = std::move(reply);
        break;
      }
      if (p == Parse::kBad) break;
      char chunk[4096];
      ssize_t n = recv(fd, chunk, sizeof chunk, 0);
      if (n > 0) {
        buf.append(chunk, static_cast<size_t>(n));
        continue;
      }
      if (n == 0 || (errno != EAGAIN && errno != EINTR)) break;
      pollfd pf{fd, POLLIN, 0};
      if (poll(&pf, 1, msLeft(deadline)) == 0 && Clock::now() >= deadline) break;
    }
  }
  ::close(fd);
  return result;
}

int pickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  int port = 0;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
    port = ntohs(a.sin_port);
  }
  ::close(fd);
  return port;
}

RedisServer::RedisServer() {
  std::string tmpl = (std::filesystem::temp_directory_path() / "sluice-redis-XXXXXX").string();
  if (mkdtemp(tmpl.data()) != nullptr) dir_ = tmpl;
}

RedisServer::~RedisServer() {
  resume();
  process_.reset();  // SIGTERM, SIGKILL after 5 s
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string RedisServer::binaryPath() {
  const char* env = std::getenv("SLUICE_REDIS_SERVER_BIN");
  if (env != nullptr && *env != '\0') return env;
  return findOnPath("redis-server");
}

::testing::AssertionResult RedisServer::start(int port, Deadline deadline) {
  if (binaryPath().empty()) {
    return ::testing::AssertionFailure()
           << "redis-server not found on PATH (scripts/setup.sh installs it; or set "
              "SLUICE_REDIS_SERVER_BIN)";
  }
  if (port != 0) return startOn(port, deadline);
  // A free port can be taken between pickFreePort() and redis's bind: retry.
  ::testing::AssertionResult last = ::testing::AssertionFailure() << "no free port";
  for (int attempt = 0; attempt < 5; ++attempt) {
    int p = pickFreePort();
    if (p == 0) continue;
    last = startOn(p, deadline);
    if (last) return last;
  }
  return last;
}

::testing::AssertionResult RedisServer::startOn(int port, Deadline deadline) {
  process_.reset();
  paused_ = false;
  process_ = std::make_unique<ChildProcess>(
      binaryPath(),
      std::vector<std::string>{"--port", std::to_string(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", dir_.empty() ? "/tmp" : dir_});
  if (!process_->started()) return ::testing::AssertionFailure() << process_->error();
  port_ = port;
  bool ready = waitUntil(
      [&] {
        if (!process_->running()) return true;  // stop waiting: it exited
        auto r = redisCommand(port, {"PING"}, deadlineIn(milliseconds(500)));
        return r && r->type == RespReply::Type::kSimple && r->text == "PONG";
      },
      deadline, milliseconds(20));
  if (!ready || !process_->running()) {
    std::string out = process_->stdoutText();
    process_.reset();
    return ::testing::AssertionFailure()
           << "redis-server on port " << port << " did not answer PING; output:\n"
           << out;
  }
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult RedisServer::kill(Deadline deadline) {
  if (!process_) return ::testing::AssertionFailure() << "redis-server was not started";
  paused_ = false;
  process_->signal(SIGKILL);
  if (!process_->waitExit(deadline)) {
    return ::testing::AssertionFailure() << "redis-server did not die on SIGKILL";
  }
  return ::testing::AssertionSuccess();
}

bool RedisServer::pause() {
  if (!process_ || !process_->signal(SIGSTOP)) return false;
  paused_ = true;
  return true;
}

bool RedisServer::resume() {
  if (!paused_ || !process_) return false;
  paused_ = false;
  return process_->signal(SIGCONT);
}

}  // namespace sluice::testing
