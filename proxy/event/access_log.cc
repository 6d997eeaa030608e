#include "proxy/event/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "proxy/event/log.h"

namespace sluice::event {
namespace {

void appendTimestamp(std::string& out, double wall) {
  time_t secs = static_cast<time_t>(wall);
  tm utc{};
  gmtime_r(&secs, &utc);
  char ts[64];
  int millis = static_cast<int>((wall - static_cast<double>(secs)) * 1000.0);
  std::snprintf(ts, sizeof ts, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
  out.append(ts);
}

void appendJsonString(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\u%04x", static_cast<unsigned char>(c));
      out.append(hex);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

}  // namespace

void appendAccessLine(std::string& out, const AccessRecord& r, bool json) {
  char num[64];
  std::snprintf(num, sizeof num, "%.6f", r.duration_seconds);
  if (json) {
    out.append("{\"ts\":\"");
    appendTimestamp(out, r.wall_seconds);
    out.append("\",\"request_id\":");
    appendJsonString(out, r.request_id);
    out.append(",\"client\":");
    appendJsonString(out, r.client);
    out.append(",\"method\":");
    appendJsonString(out, r.method);
    out.append(",\"path\":");
    appendJsonString(out, r.path);
    out.append(",\"status\":");
    out.append(std::to_string(r.status));
    out.append(",\"bytes_in\":");
    out.append(std::to_string(r.bytes_in));
    out.append(",\"bytes_out\":");
    out.append(std::to_string(r.bytes_out));
    out.append(",\"duration\":");
    out.append(num);
    out.append(",\"route\":");
    appendJsonString(out, r.route);
    out.append(",\"upstream\":");
    appendJsonString(out, r.upstream);
    if (!r.limits.empty()) {
      out.append(",\"limits\":");
      appendJsonString(out, r.limits);
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
