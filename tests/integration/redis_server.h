#pragma once
// A real redis-server for integration tests of `store: redis` (SPEC §2): started
// on 127.0.0.1 without persistence, killed, stalled and restarted on the same
// port by the test; plus a tiny blocking RESP client for inspecting it
// (SCRIPT FLUSH, KEYS, PTTL).

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {

// One RESP2 reply.
struct RespReply {
  enum class Type { kSimple, kError, kInteger, kBulk, kNil, kArray };
  Type type = Type::kNil;
  std::string text;                 // kSimple, kError, kBulk
  long long integer = 0;            // kInteger
  std::vector<RespReply> elements;  // kArray
};

// Sends one command (as a RESP array of bulk strings) to the Redis server at
// 127.0.0.1:port on a fresh connection and reads its reply; nullopt on a
// connection error, a malformed reply or at the deadline.
std::optional<RespReply> redisCommand(int port, const std::vector<std::string>& args,
                                      Deadline deadline = deadlineIn(std::chrono::seconds(5)));

// A port on 127.0.0.1 that was free a moment ago (bound to 0, then closed).
int pickFreePort();

// redis-server on 127.0.0.1 with `--save "" --appendonly no`, as a ChildProcess.
class RedisServer {
 public:
  RedisServer();
  // Resumes it if paused, stops it, removes its working directory.
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  // Starts it on `port` (0: a free port, retried if another process takes it
  // first) and waits until it answers PING.
  ::testing::AssertionResult start(int port = 0,
                                   Deadline deadline = deadlineIn(std::chrono::seconds(10)));
  // SIGKILL, as in a crash (connections reset, nothing flushed), and reaps it.
  ::testing::AssertionResult kill(Deadline deadline = deadlineIn(std::chrono::seconds(5)));
  // SIGSTOP / SIGCONT: the server stalls with its connections open, then resumes.
  bool pause();
  bool resume();

  int port() const { return port_; }
  bool running() { return process_ && process_->running(); }
  ChildProcess* process() { return process_.get(); }
  // redisCommand() against this server.
  std::optional<RespReply> command(const std::vector<std::string>& args,
                                   Deadline deadline = deadlineIn(std::chrono::seconds(5))) const {
    return redisCommand(port_, args, deadline);
  }

  // $SLUICE_REDIS_SERVER_BIN, else `redis-server` found on $PATH; "" when none.
  static std::string binaryPath();

 private:
  ::testing::AssertionResult startOn(int port, Deadline deadline);

  std::unique_ptr<ChildProcess> process_;
  std::string dir_;
  int port_ = 0;
  bool paused_ = false;
};

}  // namespace sluice::testing
