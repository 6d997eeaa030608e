#include "proxy/event/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>

#include "proxy/event/clock.h"

namespace sluice::event {
namespace {

std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};

const char* levelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug: return "debug";
    case LogLevel::kInfo: return "info";
    case LogLevel::kWarn: return "warn";
    case LogLevel::kError: return "error";
  }
  return "info";
}

bool needsQuotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f) return true;
  }
  return false;
}

}  // namespace

bool parseLogLevel(std::string_view text, LogLevel* out) {
  static constexpr std::pair<std::string_view, LogLevel> kNames[] = {
      {"debug", LogLevel::kDebug},
      {"info", LogLevel::kInfo},
      {"warn", LogLevel::kWarn},
      {"error", LogLevel::kError}};
  for (const auto& [name, level] : kNames) {
    if (text == name) {
      *out = level;
      return true;
    }
  }
  return false;
}

void setLogLevel(LogLevel level) { g_level.store(static_cast<int>(level)); }

bool logEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void appendTimestamp(std::string& out, double wall) {
  // The calendar part changes once a second: format it once per thread and
  // second (the access log calls this for every request).
  thread_local time_t cached_secs = -1;
  thread_local char cached[80];
  const auto secs = static_cast<time_t>(wall);
  if (secs != cached_secs) {
    tm utc{};
    gmtime_r(&secs, &utc);
    std::snprintf(cached, sizeof cached, "%04d-%02d-%02dT%02d:%02d:%02d.", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
    cached_secs = secs;
  }
  out.append(cached);
  int millis = static_cast<int>((wall - static_cast<double>(secs)) * 1000.0);
  if (millis > 999) millis = 999;
  out.push_back(static_cast<char>('0' + millis / 100));
  out.push_back(static_cast<char>('0' + millis / 10 % 10));
  out.push_back(static_cast<char>('0' + millis % 10));
  out.push_back('Z');
}

void appendQuoted(std::string& out, std::string_view value, bool json) {
  out.push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n' && !json) {
      out.append("\\n");
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      char hex[8];
      std::snprintf(hex, sizeof hex, json ? "\\u%04x" : "\\x%02x", static_cast<unsigned char>(c));
      out.append(hex);
    } else {
      out.push_back(c);
    }
  }
  out.push_back('"');
}

void appendLogfmt(std::string& out, std::string_view key, std::string_view value) {
  out.push_back(' ');
  out.append(key);
  out.push_back('=');
  if (needsQuotes(value)) {
    appendQuoted(out, value, false);
  } else {
    out.append(value);
  }
}

namespace {
const SteadyClock kDefaultLogClock;
std::atomic<const Clock*> g_log_clock{&kDefaultLogClock};
}  // namespace

void setLogClock(const Clock* clock) {
  g_log_clock.store(clock != nullptr ? clock : &kDefaultLogClock, std::memory_order_release);
}

void log(LogLevel level, std::string_view msg, const LogFields& fields) {
  if (!logEnabled(level)) return;
  std::string line = "ts=";
  appendTimestamp(line, g_log_clock.load(std::memory_order_acquire)->wallSeconds());
  line.append(" level=");
  line.append(levelName(level));
  // msg is always quoted so that lines are easy to grep by message.
  line.append(" msg=\"");
  line.append(msg);
  line.push_back('"');
  for (const auto& [k, v] : fields) appendLogfmt(line, k, v);
  line.push_back('\n');
  ssize_t unused = ::write(STDERR_FILENO, line.data(), line.size());
  (void)unused;
}

}  // namespace sluice::event
