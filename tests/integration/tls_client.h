#pragma once
// A small blocking TLS client for integration tests (OpenSSL): connects to
// 127.0.0.1:port, handshakes with the options a test chooses, and then speaks
// HTTP/1.1 over the connection. Every wait has a deadline; failures are
// strings in error(), never exceptions.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {

enum class TlsVersion { kAny, k1_0, k1_1, k1_2, k1_3 };

struct TlsOptions {
  std::string sni;          // server name sent in the ClientHello; "" = none
  std::string ca_file;      // verify the server's chain against this; "" = no verification
  std::string verify_host;  // with ca_file: also check the certificate names this host
  TlsVersion min_version = TlsVersion::kAny;
  TlsVersion max_version = TlsVersion::kAny;  // k1_0 / k1_1 also lower the client's security level
  std::string cert_file;                      // client certificate (mTLS); "" = none
  std::string key_file;                       // its key
  std::vector<std::string> alpn;              // protocols offered, in order; empty = no ALPN
};

// One TLS connection. Bytes after a response stay buffered for the next
// readResponse(), so keep-alive works.
class TlsConn {
 public:
  // Connects and handshakes; check connected() / error().
  TlsConn(int port, const TlsOptions& options,
          Deadline deadline = deadlineIn(std::chrono::seconds(5)));
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  // True when the TCP connect and the TLS handshake both succeeded.
  bool connected() const { return handshake_done_; }
  const std::string& error() const { return error_; }

  // After the handshake: "TLSv1.2" / "TLSv1.3", the ALPN protocol the server
  // chose ("" = none), and the server certificate's serial (upper-case hex,
  // no leading zeros, e.g. "1001"), subject ("/CN=a.test") and
  // subjectAltNames ("DNS:a.test", "IP:127.0.0.1").
  const std::string& version() const { return version_; }
  const std::string& alpn() const { return alpn_; }
  const std::string& peerSerial() const { return serial_; }
  const std::string& peerSubject() const { return subject_; }
  const std::vector<std::string>& peerSans() const { return sans_; }

  // Writes all of `bytes`; false on error or at the deadline.
  bool send(std::string_view bytes, Deadline deadline = deadlineIn(std::chrono::seconds(10)));
  // Reads one response (Content-Length, chunked, or delimited by close).
  // nullopt when no complete head arrived (deadline, close, alert, garbage).
  std::optional<Response> readResponse(Deadline deadline, bool head_request = false);
  // Waits until the peer closes (close_notify, EOF, alert or reset). Data that
  // arrives meanwhile is kept for readResponse().
  bool isClosedByPeer(Deadline deadline);

 private:
  struct Ssl;
  bool handshake(const TlsOptions& options, Deadline deadline);
  void readPeerDetails();
  // Decrypts more into buf_: > 0 bytes read, 0 closed, -1 error, -2 deadline.
  int fill(Deadline deadline);
  std::optional<std::string> readLine(Deadline deadline);
  bool readBody(Response& r, std::uint64_t length, Deadline deadline);
  bool readChunked(Response& r, Deadline deadline);

  HttpConn tcp_;
  std::unique_ptr<Ssl> ssl_;
  bool handshake_done_ = false;
  bool closed_ = false;
  std::string error_;
  std::string version_;
  std::string alpn_;
  std::string serial_;
  std::string subject_;
  std::vector<std::string> sans_;
  std::string buf_;
  size_t rpos_ = 0;
};

// One GET on a fresh TLS connection: Host 127.0.0.1:port, then the response.
// nullopt when the connection, handshake or response failed; *error says why.
std::optional<Response> httpsGet(int port, const TlsOptions& options, std::string_view path,
                                 std::string* error = nullptr, const Headers& headers = {},
                                 Deadline deadline = deadlineIn(std::chrono::seconds(10)));

}  // namespace sluice::testing
