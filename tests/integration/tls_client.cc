#include "tests/integration/tls_client.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>

namespace sluice::testing {
namespace {

using std::chrono::milliseconds;

int msLeft(Deadline deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count() + 1;
  return static_cast<int>(std::clamp<long long>(left, 0, 60'000));
}

// Waits until `fd` is readable (or writable, when OpenSSL wants to write);
// false once the deadline has passed.
bool waitFd(int fd, int ssl_error, Deadline deadline) {
  pollfd p{fd, static_cast<short>(ssl_error == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN), 0};
  for (;;) {
    int r = poll(&p, 1, msLeft(deadline));
    if (r > 0) return true;
    if (r < 0 && errno == EINTR) continue;
    if (Clock::now() >= deadline) return false;
  }
}

// Everything on OpenSSL's error queue, oldest first, which it then clears.
std::string opensslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "no OpenSSL error" : out;
}

// Why an SSL_* call failed with `ssl_error`.
std::string describe(int ssl_error) {
  switch (ssl_error) {
    case SSL_ERROR_ZERO_RETURN:
      return "closed by peer";
    case SSL_ERROR_SYSCALL:
      return errno == 0 ? std::string("connection closed by peer")
                        : std::string("socket: ") + std::strerror(errno);
    default:
      return "error " + std::to_string(ssl_error) + ": " + opensslErrors();
  }
}

int protoVersion(TlsVersion v) {
  switch (v) {
    case TlsVersion::k1_0:
      return TLS1_VERSION;
    case TlsVersion::k1_1:
      return TLS1_1_VERSION;
    case TlsVersion::k1_2:
      return TLS1_2_VERSION;
    case TlsVersion::k1_3:
      return TLS1_3_VERSION;
    case TlsVersion::kAny:
      break;
  }
  return 0;
}

// ALPN protocol list in wire format (RFC 7301 §3.1): length-prefixed names.
std::string alpnWire(const std::vector<std::string>& protocols) {
  std::string out;
  for (const auto& p : protocols) {
    out += static_cast<char>(p.size());
    out += p;
  }
  return out;
}

// SSL_write may raise SIGPIPE on a socket the peer closed; tests want an error instead.
void ignoreSigpipeOnce() {
  static const bool done = [] {
    ::signal(SIGPIPE, SIG_IGN);
    return true;
  }();
  static_cast<void>(done);
}

}  // namespace

struct TlsConn::Ssl {
  SSL_CTX* ctx = nullptr;
  SSL* ssl = nullptr;
  ~Ssl() {
    if (ssl != nullptr) SSL_free(ssl);
    if (ctx != nullptr) SSL_CTX_free(ctx);
  }
};

TlsConn::TlsConn(int port, const TlsOptions& options, Deadline deadline)
    : tcp_(port, {}, "127.0.0.1", deadline), ssl_(std::make_unique<Ssl>()) {
  ignoreSigpipeOnce();
  if (!tcp_.connected()) {
    error_ = tcp_.error();
    return;
  }
  ERR_clear_error();
  if (handshake(options, deadline)) {
    handshake_done_ = true;
    readPeerDetails();
  }
}

TlsConn::~TlsConn() {
  if (handshake_done_ && !closed_) SSL_shutdown(ssl_->ssl);  // close_notify; no wait for the reply
}

bool TlsConn::handshake(const TlsOptions& o, Deadline deadline) {
  auto fail = [&](const std::string& what) {
    error_ = what + ": " + opensslErrors();
    return false;
  };
  SSL_CTX* ctx = ssl_->ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return fail("SSL_CTX_new");
  // A peer that closes without close_notify reads as a plain end of stream.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  if (o.max_version == TlsVersion::k1_0 || o.max_version == TlsVersion::k1_1) {
    // OpenSSL 3 refuses TLS < 1.2 at security level 1 and above: without this
    // the client would not even offer the old version, and a test that expects
    // the server to refuse it would pass for the wrong reason.
    SSL_CTX_set_security_level(ctx, 0);
  }
  if (o.min_version != TlsVersion::kAny &&
      SSL_CTX_set_min_proto_version(ctx, protoVersion(o.min_version)) != 1) {
    return fail("min version");
  }
  if (o.max_version != TlsVersion::kAny &&
      SSL_CTX_set_max_proto_version(ctx, protoVersion(o.max_version)) != 1) {
    return fail("max version");
  }
  if (!o.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr) != 1) {
      return fail("load CA " + o.ca_file);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  }
  if (!o.cert_file.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, o.cert_file.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, o.key_file.c_str(), SSL_FILETYPE_PEM) != 1)) {
    return fail("client certificate " + o.cert_file);
  }
  std::string alpn = alpnWire(o.alpn);
  if (!alpn.empty() &&
      SSL_CTX_set_alpn_protos(ctx, reinterpret_cast<const unsigned char*>(alpn.data()),
                              static_cast<unsigned>(alpn.size())) != 0) {  // 0 is success
    return fail("ALPN");
  }
  SSL* ssl = ssl_->ssl = SSL_new(ctx);
  if (ssl == nullptr || SSL_set_fd(ssl, tcp_.fd()) != 1) return fail("SSL_new");
  // SSL_set_tlsext_host_name() spelled out: the macro's C-style cast trips -Wold-style-cast.
  if (!o.sni.empty() && SSL_ctrl(ssl, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                                 const_cast<char*>(o.sni.c_str())) != 1) {
    return fail("SNI");
  }
  if (!o.verify_host.empty() && SSL_set1_host(ssl, o.verify_host.c_str()) != 1) {
    return fail("verify host");
  }
  for (;;) {
    errno = 0;
    int r = SSL_connect(ssl);
    if (r == 1) return true;
    int e = SSL_get_error(ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (waitFd(tcp_.fd(), e, deadline)) continue;
      error_ = "handshake: deadline passed";
      return false;
    }
    error_ = "handshake: " + describe(e);
    long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK)
      error_ += std::string(" (verify: ") + X509_verify_cert_error_string(verify) + ")";
    return false;
  }
}

void TlsConn::readPeerDetails() {
  SSL* ssl = ssl_->ssl;
  version_ = SSL_get_version(ssl);
  const unsigned char* proto = nullptr;
  unsigned proto_len = 0;
  SSL_get0_alpn_selected(ssl, &proto, &proto_len);
  alpn_.assign(reinterpret_cast<const char*>(proto), proto == nullptr ? 0 : proto_len);
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (cert == nullptr) return;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      serial_ = hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  if (char* name = X509_NAME_oneline(X509_get_subject_name(cert), nullptr, 0)) {
    subject_ = name;
    OPENSSL_free(name);
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    if (n->type == GEN_DNS) {
      const ASN1_STRING* s = n->d.dNSName;
      sans_.push_back("DNS:" + std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                           static_cast<size_t>(ASN1_STRING_length(s))));
    } else if (n->type == GEN_IPADD) {
      const ASN1_STRING* s = n->d.iPAddress;
      char text[INET6_ADDRSTRLEN] = {};
      int family = ASN1_STRING_length(s) == 4 ? AF_INET : AF_INET6;
      inet_ntop(family, ASN1_STRING_get0_data(s), text, sizeof text);
      sans_.push_back(std::string("IP:") + text);
    }
  }
  GENERAL_NAMES_free(names);
  X509_free(cert);
}

bool TlsConn::send(std::string_view bytes, Deadline deadline) {
  if (!handshake_done_ || closed_) {
    if (error_.empty()) error_ = "send: not connected";
    return false;
  }
  while (!bytes.empty()) {
    int len = static_cast<int>(std::min<size_t>(bytes.size(), INT_MAX));
    errno = 0;
    int n = SSL_write(ssl_->ssl, bytes.data(), len);
    if (n > 0) {
      bytes.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    int e = SSL_get_error(ssl_->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (waitFd(tcp_.fd(), e, deadline)) continue;  // retry with the same bytes
      error_ = "send: deadline passed";
      return false;
    }
    closed_ = true;
    error_ = "send: " + describe(e);
    return false;
  }
  return true;
}

int TlsConn::fill(Deadline deadline) {
  if (!handshake_done_) return -1;
  if (closed_) return 0;
  if (rpos_ == buf_.size()) {
    buf_.clear();
    rpos_ = 0;
  }
  char chunk[16384];
  for (;;) {
    errno = 0;
    int n = SSL_read(ssl_->ssl, chunk, sizeof chunk);
    if (n > 0) {
      buf_.append(chunk, static_cast<size_t>(n));
      return n;
    }
    int e = SSL_get_error(ssl_->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      if (waitFd(tcp_.fd(), e, deadline)) continue;
      return -2;
    }
    closed_ = true;
    if (e == SSL_ERROR_ZERO_RETURN) return 0;
    error_ = "read: " + describe(e);
    return -1;
  }
}

bool TlsConn::isClosedByPeer(Deadline deadline) {
  for (;;) {
    int r = fill(deadline);
    if (r == 0 || r == -1) return true;
    if (r == -2) return false;
  }
}

std::optional<std::string> TlsConn::readLine(Deadline deadline) {
  for (;;) {
    size_t nl = buf_.find("\r\n", rpos_);
    if (nl != std::string::npos) {
      std::string line = buf_.substr(rpos_, nl - rpos_);
      rpos_ = nl + 2;
      return line;
    }
    if (fill(deadline) <= 0) return std::nullopt;
  }
}

bool TlsConn::readBody(Response& r, std::uint64_t length, Deadline deadline) {
  while (length > 0) {
    if (rpos_ == buf_.size() && fill(deadline) <= 0) {
      r.complete = false;
      r.error = "body cut short";
      return false;
    }
    size_t take = static_cast<size_t>(std::min<std::uint64_t>(length, buf_.size() - rpos_));
    r.body.append(buf_, rpos_, take);
    rpos_ += take;
    r.body_bytes += take;
    length -= take;
  }
  return true;
}

bool TlsConn::readChunked(Response& r, Deadline deadline) {
  for (;;) {
    auto line = readLine(deadline);
    auto size = line ? parseUnsigned(
                           trimSpaces(std::string_view(*line).substr(0, line->find(';'))), 16)
                     : std::nullopt;
    if (!size) break;
    if (*size == 0) {
      while (auto trailer = readLine(deadline)) {
        if (trailer->empty()) return true;
      }
      break;
    }
    if (!readBody(r, *size, deadline)) return false;
    auto crlf = readLine(deadline);
    if (!crlf || !crlf->empty()) break;
  }
  r.complete = false;
  r.error = "bad or cut-short chunked body";
  return false;
}

std::optional<Response> TlsConn::readResponse(Deadline deadline, bool head_request) {
  size_t head_end;
  while ((head_end = buf_.find("\r\n\r\n", rpos_)) == std::string::npos) {
    if (fill(deadline) <= 0) {
      if (error_.empty()) error_ = "no response head";
      return std::nullopt;
    }
  }
  auto r = parseResponseHead(std::string_view(buf_).substr(rpos_, head_end - rpos_), &error_);
  if (!r) return std::nullopt;
  rpos_ = head_end + 4;
  // Framing, RFC 9112 §6.3 (a Transfer-Encoding here is always chunked).
  if (head_request || r->status < 200 || r->status == 204 || r->status == 304) return r;
  if (r->hasHeader("Transfer-Encoding")) {
    r->chunked = true;
    readChunked(*r, deadline);
  } else if (r->hasHeader("Content-Length")) {
    auto length = parseUnsigned(r->header("Content-Length"));
    if (length) {
      readBody(*r, *length, deadline);
    } else {
      r->complete = false;
      r->error = "bad Content-Length";
    }
  } else {  // delimited by close
    int got;
    while ((got = fill(deadline)) > 0) {
    }
    r->body.append(buf_, rpos_);
    r->body_bytes = r->body.size();
    rpos_ = buf_.size();
    if (got < 0) {
      r->complete = false;
      r->error = got == -2 ? "timeout" : "reset";
    }
  }
  return r;
}

std::optional<Response> httpsGet(int port, const TlsOptions& options, std::string_view path,
                                 std::string* error, const Headers& headers, Deadline deadline) {
  TlsConn conn(port, options, deadline);
  std::optional<Response> r;
  if (conn.connected() && conn.send(requestText("GET", path, port, headers), deadline)) {
    r = conn.readResponse(deadline);
  }
  if (!r && error != nullptr) *error = conn.error();
  return r;
}

}  // namespace sluice::testing
