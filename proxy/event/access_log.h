#pragma once
// The access log (SPEC §1): one line per request, written off the event loops.
// Workers append lines to their own buffer (no lock per request) and hand
// full buffers to one writer thread on their tick or when large; the writer
// owns the file, so a slow disk never blocks a loop. reopen() (SIGUSR1)
// makes the writer open the path again, for log rotation.

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sluice::event {

class AccessLog {
 public:
  // `target` is "stderr" or a file path (appended to, created 0644).
  AccessLog(std::string target, bool json);
  ~AccessLog();  // flushes everything handed over, then stops the writer
  AccessLog(const AccessLog&) = delete;
  AccessLog& operator=(const AccessLog&) = delete;

  bool json() const { return json_; }
  // Queues a worker's buffer for writing; `buf` is left empty.
  void submit(std::string& buf);
  // Reopens the file before the next write (log rotation).
  void reopen();
  // True if the last open failed (reported once in the process log).
  const std::string& target() const { return target_; }

 private:
  void run();
  void openFile();

  std::string target_;
  bool json_;
  int fd_ = -1;
  bool owns_fd_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> queue_;
  bool reopen_ = false;
  bool stop_ = false;
  std::thread thread_;
};

// Appends one access-log line to `out` (logfmt or JSON).
struct AccessRecord {
  double wall_seconds = 0;
  std::string_view request_id;
  std::string_view client;
  std::string_view method;
  std::string_view path;  // without the query string
  int status = 0;
  std::uint64_t bytes_in = 0;
  std::uint64_t bytes_out = 0;
  double duration_seconds = 0;
  std::string_view route;
  std::string_view upstream;  // target address, or empty
  std::string_view limits;    // denying limits of a 429, comma-separated
};
void appendAccessLine(std::string& out, const AccessRecord& r, bool json);

}  // namespace sluice::event
