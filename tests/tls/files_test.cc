// The TLS files a config names: problems reported at their YAML positions,
// and the contexts built from good files.

#include "proxy/tls/files.h"

#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "proxy/config/loader.h"
#include "proxy/tls/context.h"
#include "tests/tls/test_certs.h"

namespace sluice::tls {
namespace {

using testing::KeyPair;
using testing::makeCertificate;
using testing::TempDir;

// A config with one certificate (cert on line 9, key on line 10, both at column 13).
std::string tlsYaml(const std::string& cert, const std::string& key) {
  return "server:\n"
         "  tls_listen: 127.0.0.1:0\n"
         "upstreams:\n"
         "  api: {targets: [127.0.0.1:9]}\n"
         "routes:\n"
         "  - {path_prefix: /, upstream: api}\n"
         "tls:\n"
         "  certificates:\n"
         "    - cert: " +
         cert +
         "\n"
         "      key: " +
         key + "\n";
}

std::vector<config::ConfigError> problems(const std::string& yaml) {
  config::LoadResult r = config::loadConfigString(yaml, "tls.yaml");
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.errors.front().toString());
  return r.ok() ? checkFiles(*r.config) : std::vector<config::ConfigError>{};
}

class TlsFilesTest : public ::testing::Test {
 protected:
  TempDir dir_;
  KeyPair good_ = makeCertificate(dir_, "good", {"a.test", "*.b.test"});
  KeyPair other_ = makeCertificate(dir_, "other", {"other.test"});
};

TEST_F(TlsFilesTest, MatchingPairHasNoProblem) {
  EXPECT_TRUE(problems(tlsYaml(good_.cert, good_.key)).empty());
}

TEST_F(TlsFilesTest, MissingCertificateIsReportedAtTheCertLine) {
  const auto errors = problems(tlsYaml(dir_.file("nope.crt"), good_.key));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 9);
  EXPECT_EQ(errors[0].column, 13);
  EXPECT_NE(errors[0].message.find("tls.certificates[0].cert: cannot read"), std::string::npos)
      << errors[0].message;
}

TEST_F(TlsFilesTest, FileThatIsNotPemIsReportedAtItsLine) {
  const std::string junk = dir_.file("junk.crt");
  std::ofstream(junk) << "not a certificate\n";
  auto errors = problems(tlsYaml(junk, good_.key));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 9);
  EXPECT_NE(errors[0].message.find("holds no PEM certificate"), std::string::npos);
  errors = problems(tlsYaml(good_.cert, junk));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 10);
  EXPECT_NE(errors[0].message.find("holds no PEM private key"), std::string::npos);
}

TEST_F(TlsFilesTest, KeyOfAnotherCertificateIsReportedAtTheKeyLine) {
  const auto errors = problems(tlsYaml(good_.cert, other_.key));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].line, 10);
  EXPECT_EQ(errors[0].column, 12);
  EXPECT_NE(errors[0].message.find("does not match the certificate"), std::string::npos)
      << errors[0].message;
}

TEST_F(TlsFilesTest, ServerContextNamesEachCertificate) {
  config::LoadResult r = config::loadConfigString(tlsYaml(good_.cert, good_.key), "tls.yaml");
  ASSERT_TRUE(r.ok());
  std::string error;
  auto server = ServerTls::create(r.config->tls, &error);
  ASSERT_NE(server, nullptr) << error;
  ASSERT_EQ(server->certificates().size(), 1u);
  const CertificateInfo& info = server->certificates()[0];
  EXPECT_EQ(info.name, "a.test");
  EXPECT_EQ(info.dns_names, (std::vector<std::string>{"a.test", "*.b.test"}));
  const auto now = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_GT(info.not_after, now + 29 * 24 * 3600);
  EXPECT_LT(info.not_after, now + 31 * 24 * 3600);
}

TEST(TlsConfig, TlsListenWithoutACertificateIsAnError) {
  config::LoadResult r = config::loadConfigString(
      "server: {tls_listen: 127.0.0.1:8443}\nupstreams: {api: {targets: [127.0.0.1:9]}}\n"
      "routes: [{path_prefix: /, upstream: api}]\n",
      "t.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("needs at least one entry in tls.certificates"),
            std::string::npos);
}

TEST(TlsConfig, NoCleartextListenerNeedsTheTlsOne) {
  config::LoadResult r = config::loadConfigString(
      "server: {listen: \"\"}\nupstreams: {api: {targets: [127.0.0.1:9]}}\n"
      "routes: [{path_prefix: /, upstream: api}]\n",
      "t.yaml");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 1);
  EXPECT_NE(r.errors[0].message.find("needs server.tls_listen"), std::string::npos)
      << r.errors[0].message;
}

TEST(TlsConfig, MinVersionIsOneTwoOrOneThree) {
  const std::string base =
      "upstreams: {api: {targets: [127.0.0.1:9]}}\nroutes: [{path_prefix: /, upstream: api}]\n";
  config::LoadResult ok =
      config::loadConfigString(base + "tls: {min_version: \"1.3\"}\n", "t.yaml");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.config->tls.min_version, config::TlsVersion::k13);
  config::LoadResult bad =
      config::loadConfigString(base + "tls: {min_version: \"1.1\"}\n", "t.yaml");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].message.find("1.2"), std::string::npos) << bad.errors[0].message;
}

}  // namespace
}  // namespace sluice::tls
