#pragma once
// The OpenSSL contexts built from a config (SPEC §9): the server side with
// its certificates picked by SNI, and the client side of each upstream with
// `tls: true`. Immutable once built; a reload builds new ones, and open
// connections keep the context they started with (OpenSSL counts its uses).

#include <openssl/ssl.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/config/config.h"

namespace sluice::tls {

struct CertificateInfo {
  std::vector<std::string> dns_names;  // subjectAltName DNS entries, in order
  std::string name;                    // the first DNS name (else the subject CN)
  std::int64_t not_after = 0;          // Unix seconds
};

class ServerTls {
 public:
  // Loads every certificate of `cfg`; null with `*error` when one does not
  // load (checkFiles reports the same problems at their YAML positions).
  static std::shared_ptr<ServerTls> create(const config::TlsConfig& cfg, std::string* error);
  ~ServerTls();
  ServerTls(const ServerTls&) = delete;
  ServerTls& operator=(const ServerTls&) = delete;

  // A new server-side SSL for an accepted connection (SNI may switch its context).
  SSL* newSession() const;
  const std::vector<CertificateInfo>& certificates() const { return infos_; }

 private:
  ServerTls() = default;
  static int onServerName(SSL* ssl, int* alert, void* arg);

  std::vector<SSL_CTX*> contexts_;  // parallel to the config's certificates
  std::vector<std::vector<std::string>> names_;
  std::vector<CertificateInfo> infos_;
};

class ClientTls {
 public:
  // The client context of upstream `u` (tls: true); null with `*error`.
  static std::shared_ptr<ClientTls> create(const config::UpstreamConfig& u, std::string* error);
  ~ClientTls();
  ClientTls(const ClientTls&) = delete;
  ClientTls& operator=(const ClientTls&) = delete;

  // A new client-side SSL that sends SNI and verifies the certificate for
  // tls_server_name, else `host` (a DNS name or an IP address).
  SSL* newSession(const std::string& host) const;

 private:
  ClientTls() = default;
  SSL_CTX* ctx_ = nullptr;
  std::string server_name_;
};

}  // namespace sluice::tls
