#pragma once
// Test certificates made at test time with the `openssl` command line tool,
// into a temporary directory that is removed afterwards: no key is ever
// committed. Every key is ECDSA P-256; every certificate is valid for 30 days
// from now. Files are written under a temporary name and renamed into place,
// so a proxy reloading them never reads a half-written file.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::testing {

// A PEM certificate and its PEM private key.
struct CertFiles {
  std::string cert;
  std::string key;
};

// What a leaf certificate is for (its extendedKeyUsage).
enum class CertUse { kServer, kClient };

class CertFactory {
 public:
  // Makes the temporary directory; check ok().
  CertFactory();
  ~CertFactory();  // removes the directory and everything in it
  CertFactory(const CertFactory&) = delete;
  CertFactory& operator=(const CertFactory&) = delete;

  bool ok() const { return !dir_.empty(); }
  const std::string& dir() const { return dir_; }
  // Why the last call that returned nullopt failed (the openssl command and its stderr).
  const std::string& error() const { return error_; }

  // A self-signed CA certificate (CN `name`) and key: DIR/NAME.crt, DIR/NAME.key.
  std::optional<CertFiles> makeCa(std::string_view name);
  // A leaf certificate (CN `name`) signed by `ca`, with `sans` as its
  // subjectAltNames ("DNS:a.test", "DNS:*.b.test", "IP:127.0.0.1") and serial
  // number `serial_hex` (hex digits, e.g. "1001"). Writes DIR/NAME.crt and a fresh
  // DIR/NAME.key, replacing an earlier pair of that name (rotation).
  std::optional<CertFiles> makeLeaf(std::string_view name, const CertFiles& ca,
                                    const std::vector<std::string>& sans,
                                    std::string_view serial_hex, CertUse use = CertUse::kServer);
  // A self-signed leaf certificate (not a CA) with `sans`.
  std::optional<CertFiles> makeSelfSigned(std::string_view name,
                                          const std::vector<std::string>& sans,
                                          std::string_view serial_hex = "5E1F");
  // A fresh private key DIR/NAME.key that matches no certificate.
  std::optional<std::string> makeKey(std::string_view name);
  // DIR/NAME with `content` as is (e.g. a file that is not PEM).
  std::optional<std::string> writeFile(std::string_view name, std::string_view content);

  // The path of the openssl binary: $SLUICE_OPENSSL_BIN, else `openssl` on $PATH.
  static std::string opensslPath();

 private:
  // Runs openssl with `args`; false (and error_ set) unless it exits 0.
  bool openssl(const std::vector<std::string>& args);
  bool newKey(const std::string& path);
  // Signs a CSR for `key` with subject CN=`cn` and the extensions in section
  // [ext] of `ext_text`: by `ca` or, without one, by `key` itself.
  bool sign(const std::string& cn, const std::string& key, const std::string& out,
            const std::string& ext_text, std::string_view serial_hex, const CertFiles* ca);
  // Renames the .tmp files of a pair into place.
  std::optional<CertFiles> publish(const std::string& base);
  std::string path(std::string_view name) const;

  std::string dir_;
  std::string error_;
};

}  // namespace sluice::testing
