#pragma once
// The TLS files a config names, read with OpenSSL: what is wrong with them,
// reported as config errors at the YAML positions the loader kept (SPEC §9:
// a certificate or key that does not load, or a key that does not match its
// certificate, is a config error at its position).

#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/config/loader.h"

namespace sluice::tls {

struct FileProblem {
  bool at_key = false;  // the key file (else the certificate file)
  std::string message;
};

// Whether `cert` holds a PEM certificate (chain) and `key` the matching
// private key.
std::optional<FileProblem> checkKeyPair(const std::string& cert, const std::string& key);
// Whether `path` holds at least one PEM certificate.
std::optional<std::string> checkCaBundle(const std::string& path);

// Every problem with the TLS files of `cfg`, ordered like the loader's errors.
std::vector<config::ConfigError> checkFiles(const config::Config& cfg);

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;

// The first certificate in a PEM file, or null.
X509Ptr readCertificate(const std::string& path);

}  // namespace sluice::tls
