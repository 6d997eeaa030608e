#include "proxy/tls/files.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace sluice::tls {
namespace {

struct FileClose {
  void operator()(std::FILE* f) const { std::fclose(f); }
};
using File = std::unique_ptr<std::FILE, FileClose>;

struct KeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};

// Opens `path` for reading, or says why not.
File openFile(const std::string& path, std::string* why) {
  File f(std::fopen(path.c_str(), "rb"));
  if (!f) *why = "cannot read " + path + ": " + std::strerror(errno);
  return f;
}

config::ConfigError errorAt(const config::Config& cfg, config::Position at, const std::string& path,
                            const std::string& message) {
  return config::ConfigError{cfg.file, at.line, at.column, path + ": " + message};
}

}  // namespace

X509Ptr readCertificate(const std::string& path) {
  std::string why;
  File f = openFile(path, &why);
  if (!f) return nullptr;
  X509Ptr x(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  return x;
}

std::optional<FileProblem> checkKeyPair(const std::string& cert, const std::string& key) {
  std::string why;
  File cf = openFile(cert, &why);
  if (!cf) return FileProblem{false, why};
  X509Ptr x(PEM_read_X509(cf.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!x) return FileProblem{false, cert + " holds no PEM certificate"};
  File kf = openFile(key, &why);
  if (!kf) return FileProblem{true, why};
  std::unique_ptr<EVP_PKEY, KeyFree> k(PEM_read_PrivateKey(kf.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!k) return FileProblem{true, key + " holds no PEM private key"};
  if (X509_check_private_key(x.get(), k.get()) != 1) {
    ERR_clear_error();
    return FileProblem{true, "the key in " + key + " does not match the certificate in " + cert};
  }
  return std::nullopt;
}

std::optional<std::string> checkCaBundle(const std::string& path) {
  std::string why;
  File f = openFile(path, &why);
  if (!f) return why;
  X509Ptr x(PEM_read_X509(f.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (!x) return path + " holds no PEM certificate";
  return std::nullopt;
}

std::vector<config::ConfigError> checkFiles(const config::Config& cfg) {
  std::vector<config::ConfigError> errors;
  for (std::size_t i = 0; i < cfg.tls.certificates.size(); ++i) {
    const config::TlsCertificate& c = cfg.tls.certificates[i];
    if (auto p = checkKeyPair(c.cert, c.key)) {
      const std::string field = "tls.certificates[" + std::to_string(i) + "]";
      errors.push_back(p->at_key ? errorAt(cfg, c.key_at, field + ".key", p->message)
                                 : errorAt(cfg, c.cert_at, field + ".cert", p->message));
    }
  }
  if (!cfg.tls.client_ca.empty()) {
    if (auto p = checkCaBundle(cfg.tls.client_ca)) {
      errors.push_back(errorAt(cfg, cfg.tls.client_ca_at, "tls.client_ca", *p));
    }
  }
  for (const config::UpstreamConfig& u : cfg.upstreams) {
    if (u.tls_ca.empty()) continue;
    if (auto p = checkCaBundle(u.tls_ca)) {
      errors.push_back(errorAt(cfg, u.tls_ca_at, "upstreams." + u.name + ".tls_ca", *p));
    }
  }
  std::stable_sort(errors.begin(), errors.end(), [](const auto& a, const auto& b) {
    return a.line != b.line ? a.line < b.line : a.column < b.column;
  });
  return errors;
}

}  // namespace sluice::tls
