#include "proxy/event/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "proxy/event/log.h"

namespace sluice::event {
void appendAccessLine(std::string& out, const AccessRecord& r, bool json) {
  char num[64];
  std::snprintf(num, sizeof num, "%.6f", r.duration_seconds);
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
    out.append(std::to_string(r.status));
    out.append(",\"bytes_in\":");
    out.append(std::to_string(r.bytes_in));
    out.append(",\"bytes_out\":");
    out.append(std::to_string(r.bytes_out));
    out.append(",\"duration\":");
    out.append(num);
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
  appendLogfmt(out, "status", std::to_string(r.status));
  appendLogfmt(out, "bytes_in", std::to_string(r.bytes_in));
  appendLogfmt(out, "bytes_out", std::to_string(r.bytes_out));
  appendLogfmt(out, "duration", num);
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
