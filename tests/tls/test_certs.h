#pragma once
// Certificates for the TLS unit tests, made with the OpenSSL API at test time
// (never committed): a P-256 key and a self-signed certificate for some DNS
// names, written as PEM into a temporary directory that is removed at the end.

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

namespace sluice::tls::testing {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/sluice-tls-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct KeyPair {
  std::string cert;
  std::string key;
};

inline void writePem(const std::string& path, X509* x, EVP_PKEY* k) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return;
  if (x != nullptr) PEM_write_X509(f, x);
  if (k != nullptr) PEM_write_PrivateKey(f, k, nullptr, nullptr, 0, nullptr, nullptr);
  std::fclose(f);
}

// A self-signed certificate for `dns_names` (the first is also the CN),
// valid for `days`, and its key: `prefix`.crt and `prefix`.key in `dir`.
inline KeyPair makeCertificate(const TempDir& dir, const std::string& prefix,
                               const std::vector<std::string>& dns_names, int days = 30) {
  EVP_PKEY* key = EVP_EC_gen("P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
  X509_gmtime_adj(X509_getm_notBefore(x), 0);
  X509_gmtime_adj(X509_getm_notAfter(x), static_cast<long>(days) * 24 * 3600);
  X509_set_pubkey(x, key);
  X509_NAME* name = X509_get_subject_name(x);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(dns_names.front().c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(x, name);
  std::string san;
  for (const std::string& n : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + n;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str())) {
    X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(x, key, EVP_sha256());
  KeyPair kp{dir.file(prefix + ".crt"), dir.file(prefix + ".key")};
  writePem(kp.cert, x, nullptr);
  writePem(kp.key, nullptr, key);
  X509_free(x);
  EVP_PKEY_free(key);
  return kp;
}

}  // namespace sluice::tls::testing
