#pragma once
// RFC 6455 framing for the tunnel tests, by hand: what a client sends
// (masked, §5.3) and what it reads back (unmasked, unfragmented frames).

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <string_view>

#include "tests/integration/harness.h"

namespace sluice::testing {

// One client frame (FIN, masked as RFC 6455 §5.3 requires of clients).
inline std::string clientFrame(std::string_view payload, std::uint8_t opcode = 0x1) {
  std::string f(1, static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    f += static_cast<char>(0x80 | n);
  } else if (n < 65536) {
    f += static_cast<char>(0x80 | 126);
    f += static_cast<char>(n >> 8);
    f += static_cast<char>(n & 0xff);
  } else {
    f += static_cast<char>(0x80 | 127);
    for (int shift = 56; shift >= 0; shift -= 8) f += static_cast<char>((n >> shift) & 0xff);
  }
  const char mask[4] = {0x12, 0x34, 0x56, 0x78};
  f.append(mask, 4);
  for (std::size_t i = 0; i < n; ++i) f += static_cast<char>(payload[i] ^ mask[i % 4]);
  return f;
}

// The payload of the next (unmasked, unfragmented) server frame.
inline std::optional<std::string> serverFrame(HttpConn& conn, Deadline deadline) {
  auto head = conn.readExactly(2, deadline);
  if (!head) return std::nullopt;
  std::uint64_t n = static_cast<unsigned char>((*head)[1]) & 0x7f;
  if (n >= 126) {
    auto ext = conn.readExactly(n == 126 ? 2 : 8, deadline);
    if (!ext) return std::nullopt;
    n = 0;
    for (unsigned char c : *ext) n = (n << 8) | c;
  }
  return conn.readExactly(static_cast<std::size_t>(n), deadline);
}

// A WebSocket opening handshake (RFC 6455 §1.3's example key) for `path`.
inline std::string upgradeRequest(int port, std::string_view path = "/chat",
                                  std::string_view upgrade = "websocket",
                                  std::string_view version = "13") {
  return std::string("GET ") + std::string(path) +
         " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: " + std::string(upgrade) +
         "\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
         "Sec-WebSocket-Version: " +
         std::string(version) + "\r\n\r\n";
}

// Opens a connection to `port` and upgrades it; null (and a test failure)
// unless the 101 arrives.
inline std::unique_ptr<HttpConn> upgradedConnection(int port) {
  auto conn = std::make_unique<HttpConn>(port);
  if (!conn->send(upgradeRequest(port))) return nullptr;
  auto r = conn->readResponse(deadlineIn(std::chrono::seconds(5)));
  if (!r || r->status != 101) {
    ADD_FAILURE() << "no 101: " << (r ? std::to_string(r->status) : conn->error());
    return nullptr;
  }
  return conn;
}

#ifdef SLUICE_TEST_SOURCE_DIR
// Starts tests/integration/ws_echo_server.py (python3-websockets) into
// `*server`; its port, or 0 (and a test failure) when it did not start.
inline int startEchoServer(std::unique_ptr<ChildProcess>* server) {
  *server = std::make_unique<ChildProcess>(
      "/usr/bin/python3", std::vector<std::string>{std::string(SLUICE_TEST_SOURCE_DIR) +
                                                   "/tests/integration/ws_echo_server.py"});
  if (!(*server)->started()) {
    ADD_FAILURE() << (*server)->error();
    return 0;
  }
  auto m = (*server)->waitForOutput(Stream::kStdout, std::regex("listening (\\d+)"),
                                    deadlineIn(std::chrono::seconds(10)));
  if (!m) {
    ADD_FAILURE() << "the WebSocket server did not start: " << (*server)->stderrText();
    return 0;
  }
  return std::stoi(m->groups[0]);
}
#endif

}  // namespace sluice::testing
