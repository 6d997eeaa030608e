#include "tests/integration/tls_certs.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace sluice::testing {
namespace {

namespace fs = std::filesystem;

// Starts `argv` with stdin from /dev/null and stdout+stderr into `log`; its
// exit code (-N when killed by signal N), or -1000 when it could not start
// or did not finish within 30 s (then it is killed).
int runLogged(const std::vector<std::string>& argv, const std::string& log) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  std::vector<char*> args;
  std::vector<std::string> store = argv;
  for (auto& a : store) args.push_back(a.data());
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return -1000;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (;;) {
    int status = 0;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1000;
    }
    poll(nullptr, 0, 5);
  }
}

std::string readAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

bool writeAll(const std::string& path, std::string_view content) {
  std::ofstream out(path, std::ios::trunc | std::ios::binary);
  out << content;
  return static_cast<bool>(out.flush());
}

std::string join(const std::vector<std::string>& parts, std::string_view sep) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += sep;
    out += p;
  }
  return out;
}

// A minimal openssl config for `req`, so that the system's openssl.cnf adds nothing.
constexpr std::string_view kReqConfig =
    "[req]\n"
    "distinguished_name = dn\n"
    "prompt = no\n"
    "[dn]\n"
    "CN = unused\n";

}  // namespace

CertFactory::CertFactory() {
  std::string tmpl = (fs::temp_directory_path() / "sluice-certs-XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr) {
    error_ = "mkdtemp failed";
    return;
  }
  if (!writeAll(tmpl + "/req.cnf", kReqConfig)) {
    error_ = "cannot write req.cnf";
    return;
  }
  dir_ = tmpl;
}

CertFactory::~CertFactory() {
  if (dir_.empty()) return;
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

std::string CertFactory::opensslPath() {
  const char* env = std::getenv("SLUICE_OPENSSL_BIN");
  if (env != nullptr && *env != '\0') return env;
  const char* path_env = std::getenv("PATH");
  std::stringstream dirs(path_env != nullptr ? path_env : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    fs::path candidate = fs::path(d.empty() ? "." : d) / "openssl";
    if (access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return "/usr/bin/openssl";
}

std::string CertFactory::path(std::string_view name) const {
  return dir_ + "/" + std::string(name);
}

bool CertFactory::openssl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {opensslPath()};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string log = path("openssl.log");
  int code = runLogged(argv, log);
  if (code == 0) return true;
  error_ = join(argv, " ") + " -> exit " + std::to_string(code) + ": " + readAll(log);
  return false;
}

bool CertFactory::newKey(const std::string& key_path) {
  return openssl(
      {"genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key_path});
}

bool CertFactory::sign(const std::string& cn, const std::string& key, const std::string& out,
                       const std::string& ext_text, std::string_view serial_hex,
                       const CertFiles* ca) {
  std::string csr = out + ".csr";
  std::string ext = out + ".ext";
  if (!writeAll(ext, "[ext]\n" + ext_text)) {
    error_ = "cannot write " + ext;
    return false;
  }
  if (!openssl({"req", "-new", "-config", path("req.cnf"), "-key", key, "-subj", "/CN=" + cn,
                "-out", csr})) {
    return false;
  }
  std::vector<std::string> args = {
      "x509", "-req",        "-in", csr,           "-out",
      out,    "-days",       "30",  "-sha256",     "-extfile",
      ext,    "-extensions", "ext", "-set_serial", "0x" + std::string(serial_hex)};
  if (ca != nullptr) {
    args.insert(args.end(), {"-CA", ca->cert, "-CAkey", ca->key});
  } else {
    args.insert(args.end(), {"-signkey", key});
  }
  return openssl(args);
}

std::optional<CertFiles> CertFactory::publish(const std::string& base) {
  std::error_code ec;
  fs::rename(base + ".key.tmp", base + ".key", ec);
  if (!ec) fs::rename(base + ".crt.tmp", base + ".crt", ec);
  if (ec) {
    error_ = "rename " + base + ": " + ec.message();
    return std::nullopt;
  }
  return CertFiles{base + ".crt", base + ".key"};
}

std::optional<CertFiles> CertFactory::makeCa(std::string_view name) {
  std::string base = path(name);
  const std::string ext =
      "basicConstraints = critical,CA:TRUE\n"
      "keyUsage = critical,keyCertSign,cRLSign\n"
      "subjectKeyIdentifier = hash\n";
  if (!newKey(base + ".key.tmp") ||
      !sign(std::string(name), base + ".key.tmp", base + ".crt.tmp", ext, "01", nullptr)) {
    return std::nullopt;
  }
  return publish(base);
}

std::optional<CertFiles> CertFactory::makeLeaf(std::string_view name, const CertFiles& ca,
                                               const std::vector<std::string>& sans,
                                               std::string_view serial_hex, CertUse use) {
  std::string base = path(name);
  std::string ext =
      "basicConstraints = critical,CA:FALSE\n"
      "keyUsage = critical,digitalSignature\n"
      "extendedKeyUsage = " +
      std::string(use == CertUse::kServer ? "serverAuth" : "clientAuth") +
      "\n"
      "subjectKeyIdentifier = hash\n"
      "authorityKeyIdentifier = keyid\n";
  if (!sans.empty()) ext += "subjectAltName = " + join(sans, ",") + "\n";
  if (!newKey(base + ".key.tmp") ||
      !sign(std::string(name), base + ".key.tmp", base + ".crt.tmp", ext, serial_hex, &ca)) {
    return std::nullopt;
  }
  return publish(base);
}

std::optional<CertFiles> CertFactory::makeSelfSigned(std::string_view name,
                                                     const std::vector<std::string>& sans,
                                                     std::string_view serial_hex) {
  std::string base = path(name);
  std::string ext =
      "basicConstraints = critical,CA:FALSE\n"
      "keyUsage = critical,digitalSignature\n";
  if (!sans.empty()) ext += "subjectAltName = " + join(sans, ",") + "\n";
  if (!newKey(base + ".key.tmp") ||
      !sign(std::string(name), base + ".key.tmp", base + ".crt.tmp", ext, serial_hex, nullptr)) {
    return std::nullopt;
  }
  return publish(base);
}

std::optional<std::string> CertFactory::makeKey(std::string_view name) {
  std::string key = path(std::string(name) + ".key");
  if (!newKey(key + ".tmp")) return std::nullopt;
  std::error_code ec;
  fs::rename(key + ".tmp", key, ec);
  if (ec) {
    error_ = "rename " + key + ": " + ec.message();
    return std::nullopt;
  }
  return key;
}

std::optional<std::string> CertFactory::writeFile(std::string_view name, std::string_view content) {
  std::string p = path(name);
  if (!writeAll(p + ".tmp", content)) {
    error_ = "cannot write " + p;
    return std::nullopt;
  }
  std::error_code ec;
  fs::rename(p + ".tmp", p, ec);
  if (ec) {
    error_ = "rename " + p + ": " + ec.message();
    return std::nullopt;
  }
  return p;
}

}  // namespace sluice::testing
