#include "proxy/event/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "proxy/event/log.h"

namespace sluice::event {
namespace {

std::string_view decimal(char* buf, std::size_t size, std::uint64_t v) {
  auto [end, ec] = std::to_chars(buf, buf + size, v);
  (void)ec;
  return {buf, static_cast<std::size_t>(end - buf)};
}

// Seconds with microsecond precision, without printf.
std::string_view seconds(char* buf, std::size_t size, double secs) {
  const auto micros = static_cast<std::uint64_t>(secs > 0 ? secs * 1e6 + 0.5 : 0);
  char frac[8];
  std::uint64_t f = micros % 1000000;
  for (int i = 5; i >= 0; --i) {
    frac[i] = static_cast<char>('0' + f % 10);
    f /= 10;
  }
  std::string_view whole = decimal(buf, size - 8, micros / 1000000);
  char* p = buf + whole.size();
  *p++ = '.';
  for (int i = 0; i < 6; ++i) *p++ = frac[i];
  return {buf, static_cast<std::size_t>(p - buf)};
}

}  // namespace

void appendAccessLine(std::string& out, const AccessRecord& r, bool json) {
  char dur_buf[40];
  char status_buf[24];
  char in_buf[24];
  char out_buf[24];
  const std::string_view dur = seconds(dur_buf, sizeof dur_buf, r.duration_seconds);
  const std::string_view status = decimal(status_buf, sizeof status_buf,
                                          static_cast<std::uint64_t>(r.status));
  const std::string_view bytes_in = decimal(in_buf, sizeof in_buf, r.bytes_in);
  const std::string_view bytes_out = decimal(out_buf, sizeof out_buf, r.bytes_out);
  if (json) {
    out.append("{\"ts\":\"");
    appendTimestamp(out, r.wall_seconds);
    out.append("\",\"request_id\":");
    appendQuoted(out, r.request_id, true);
    out.append(",\"client\":");
    appendQuoted(out, r.client, true);
    out.append(",\"method\":");
    appendQuoted(out, r.method, true);
    out.append(",\"path\":");
    appendQuoted(out, r.path, true);
    out.append(",\"status\":");
    out.append(status);
    out.append(",\"bytes_in\":");
    out.append(bytes_in);
    out.append(",\"bytes_out\":");
    out.append(bytes_out);
    out.append(",\"duration\":");
    out.append(dur);
    out.append(",\"route\":");
    appendQuoted(out, r.route, true);
    out.append(",\"upstream\":");
    appendQuoted(out, r.upstream, true);
    if (!r.limits.empty()) {
      out.append(",\"limits\":");
      appendQuoted(out, r.limits, true);
    }
    out.append("}\n");
    return;
  }
  out.append("ts=");
  appendTimestamp(out, r.wall_seconds);
  appendLogfmt(out, "request_id", r.request_id);
  appendLogfmt(out, "client", r.client);
  appendLogfmt(out, "method", r.method);
  appendLogfmt(out, "path", r.path);
  appendLogfmt(out, "status", status);
  appendLogfmt(out, "bytes_in", bytes_in);
  appendLogfmt(out, "bytes_out", bytes_out);
  appendLogfmt(out, "duration", dur);
  appendLogfmt(out, "route", r.route);
  appendLogfmt(out, "upstream", r.upstream);
  if (!r.limits.empty()) appendLogfmt(out, "limits", r.limits);
  out.push_back('\n');
}

AccessLog::AccessLog(std::string target, bool json) : target_(std::move(target)), json_(json) {
  openFile();
  thread_ = std::thread([this] { run(); });
}

AccessLog::~AccessLog() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_one();
  thread_.join();
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
}

void AccessLog::openFile() {
  if (target_ == "stderr") {
    fd_ = STDERR_FILENO;
    owns_fd_ = false;
    return;
  }
  int fd = ::open(target_.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    log(LogLevel::kError, "cannot open access log",
        {{"path", target_}, {"error", std::strerror(errno)}});
    return;  // keep the old descriptor, if any
  }
  if (owns_fd_ && fd_ >= 0) ::close(fd_);
  fd_ = fd;
  owns_fd_ = true;
}

void AccessLog::submit(std::string& buf) {
  if (buf.empty()) return;
  {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(buf));
  }
  buf.clear();
  cv_.notify_one();
}

void AccessLog::reopen() {
  {
    std::lock_guard lock(mu_);
    reopen_ = true;
  }
  cv_.notify_one();
}

void AccessLog::run() {
  for (;;) {
    std::vector<std::string> batch;
    bool reopen = false;
    bool stop = false;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stop_ || reopen_ || !queue_.empty(); });
      batch.swap(queue_);
      reopen = reopen_;
      reopen_ = false;
      stop = stop_;
    }
    if (reopen) openFile();
    for (const std::string& b : batch) {
      std::size_t off = 0;
      while (off < b.size() && fd_ >= 0) {
        ssize_t n = ::write(fd_, b.data() + off, b.size() - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;  // disk full or the like: drop rather than block
        off += static_cast<std::size_t>(n);
      }
    }
    if (stop) {
      std::lock_guard lock(mu_);
      if (queue_.empty()) return;
    }
  }
}

}  // namespace sluice::event
