#include "proxy/tls/context.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <ctime>

#include "proxy/config/values.h"
#include "proxy/tls/files.h"
#include "proxy/tls/names.h"

namespace sluice::tls {
namespace {

// TLS 1.2: ECDHE key exchange with AEAD ciphers only; TLS 1.3: OpenSSL's suites.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

constexpr unsigned char kSessionContext[] = "sluice";

std::string lastError(const std::string& what) {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return what;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return what + ": " + buf;
}

// ALPN: http/1.1 when the client offers it (h2 joins with SPEC §11).
int selectAlpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
               unsigned int inlen, void*) {
  static const unsigned char kOurs[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, kOurs, sizeof kOurs, in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

// OpenSSL's macros cast in C style; these two are used as documented.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wold-style-cast"
void setServerNameCallback(SSL_CTX* ctx, int (*cb)(SSL*, int*, void*), void* arg) {
  SSL_CTX_set_tlsext_servername_callback(ctx, cb);
  SSL_CTX_set_tlsext_servername_arg(ctx, arg);
}
void setSni(SSL* ssl, const char* name) { SSL_set_tlsext_host_name(ssl, name); }
#pragma GCC diagnostic pop

std::int64_t notAfter(X509* x) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

CertificateInfo infoOf(X509* x) {
  CertificateInfo info;
  info.not_after = notAfter(x);
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(x, NID_subject_alt_name, nullptr, nullptr));
  for (int i = 0; sans != nullptr && i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(sans, i);
    if (n->type != GEN_DNS) continue;
    const ASN1_STRING* s = n->d.dNSName;
    info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                static_cast<std::size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(sans);
  if (!info.dns_names.empty()) {
    info.name = info.dns_names.front();
  } else {
    char cn[256] = {0};
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    info.name = cn;
  }
  return info;
}

// One server context: certificate chain, key, protocol floor, ciphers,
// client verification, ALPN, sessions.
SSL_CTX* serverContext(const config::TlsConfig& cfg, const config::TlsCertificate& c,
                       std::string* error) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (ctx == nullptr) {
    *error = lastError("cannot create a TLS context");
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(
      ctx, cfg.min_version == config::TlsVersion::k13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_options(
      ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                            SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_session_id_context(ctx, kSessionContext, sizeof kSessionContext - 1);
  SSL_CTX_set_alpn_select_cb(ctx, &selectAlpn, nullptr);
  bool ok = SSL_CTX_set_cipher_list(ctx, kTls12Ciphers) == 1;
  ok = ok && SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) == 1;
  ok = ok && SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) == 1;
  ok = ok && SSL_CTX_check_private_key(ctx) == 1;
  if (ok && !cfg.client_ca.empty()) {
    ok = SSL_CTX_load_verify_locations(ctx, cfg.client_ca.c_str(), nullptr) == 1;
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(cfg.client_ca.c_str())) {
      SSL_CTX_set_client_CA_list(ctx, names);
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  if (!ok) {
    *error = lastError("cannot load " + c.cert + " with " + c.key);
    SSL_CTX_free(ctx);
    return nullptr;
  }
  return ctx;
}

}  // namespace

std::shared_ptr<ServerTls> ServerTls::create(const config::TlsConfig& cfg, std::string* error) {
  std::shared_ptr<ServerTls> t(new ServerTls());
  for (const config::TlsCertificate& c : cfg.certificates) {
    SSL_CTX* ctx = serverContext(cfg, c, error);
    if (ctx == nullptr) return nullptr;
    t->contexts_.push_back(ctx);
    setServerNameCallback(ctx, &ServerTls::onServerName, t.get());
    t->infos_.push_back(infoOf(SSL_CTX_get0_certificate(ctx)));
    t->names_.push_back(t->infos_.back().dns_names);
  }
  if (t->contexts_.empty()) {
    *error = "no certificate in tls.certificates";
    return nullptr;
  }
  return t;
}

ServerTls::~ServerTls() {
  for (SSL_CTX* ctx : contexts_) SSL_CTX_free(ctx);
}

SSL* ServerTls::newSession() const { return SSL_new(contexts_.front()); }

int ServerTls::onServerName(SSL* ssl, int*, void* arg) {
  const auto* self = static_cast<const ServerTls*>(arg);
  const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  const std::size_t i = pickCertificate(self->names_, sni == nullptr ? "" : sni);
  if (i != 0) SSL_set_SSL_CTX(ssl, self->contexts_[i]);
  return SSL_TLSEXT_ERR_OK;
}

std::shared_ptr<ClientTls> ClientTls::create(const config::UpstreamConfig& u, std::string* error) {
  std::shared_ptr<ClientTls> t(new ClientTls());
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  if (t->ctx_ == nullptr) {
    *error = lastError("cannot create a TLS context");
    return nullptr;
  }
  SSL_CTX_set_min_proto_version(t->ctx_, TLS1_2_VERSION);
  SSL_CTX_set_mode(t->ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                SSL_MODE_RELEASE_BUFFERS);
  SSL_CTX_set_verify(t->ctx_, SSL_VERIFY_PEER, nullptr);
  const bool ok = u.tls_ca.empty()
                      ? SSL_CTX_set_default_verify_paths(t->ctx_) == 1
                      : SSL_CTX_load_verify_locations(t->ctx_, u.tls_ca.c_str(), nullptr) == 1;
  if (!ok) {
    *error = lastError("upstreams." + u.name + ": cannot load the CA bundle");
    return nullptr;
  }
  t->server_name_ = u.tls_server_name;
  return t;
}

ClientTls::~ClientTls() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

SSL* ClientTls::newSession(const std::string& host) const {
  SSL* ssl = SSL_new(ctx_);
  if (ssl == nullptr) return nullptr;
  const std::string& name = server_name_.empty() ? host : server_name_;
  if (config::parseIp(name)) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
  } else {
    setSni(ssl, name.c_str());
    SSL_set1_host(ssl, name.c_str());
  }
  return ssl;
}

}  // namespace sluice::tls
