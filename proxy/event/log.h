#pragma once
// logfmt logging to stderr: `ts=... level=info msg="..." key=value`, one
// line per event, written with a single write() so threads never interleave.

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sluice::event {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

// Parses "debug|info|warn|error"; false on anything else.
bool parseLogLevel(std::string_view text, LogLevel* out);
void setLogLevel(LogLevel level);
class Clock;
// The clock that stamps log lines (the process's SteadyClock until set).
void setLogClock(const Clock* clock);
bool logEnabled(LogLevel level);

using LogFields = std::vector<std::pair<std::string, std::string>>;

// Writes one logfmt line if `level` is enabled. Values are quoted when needed.
void log(LogLevel level, std::string_view msg, const LogFields& fields = {});

// Appends an RFC 3339 UTC timestamp with milliseconds ("2026-01-02T03:04:05.678Z").
void appendTimestamp(std::string& out, double wall_seconds);

// Appends `value` in double quotes, escaping quotes, backslashes and control
// bytes (JSON: \u00XX; logfmt: \n and \xXX).
void appendQuoted(std::string& out, std::string_view value, bool json);

// Appends ` key=value` to `out`, quoting and escaping the value if needed.
void appendLogfmt(std::string& out, std::string_view key, std::string_view value);

}  // namespace sluice::event
