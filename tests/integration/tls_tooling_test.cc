// The TLS test tooling checked on its own, against `openssl s_server`: the
// generated certificates load and verify, and the client negotiates what it
// is asked to, so that a failing tls_test points at sluice, not at the tools.

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <regex>
#include <string>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/tls_certs.h"
#include "tests/integration/tls_client.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class TlsTooling : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok()) << certs_.error();
    auto ca = certs_.makeCa("ca");
    ASSERT_TRUE(ca) << certs_.error();
    ca_ = *ca;
    auto server =
        certs_.makeLeaf("server", ca_, {"DNS:a.test", "DNS:*.b.test", "IP:127.0.0.1"}, "1001");
    ASSERT_TRUE(server) << certs_.error();
    server_ = *server;
  }

  // Starts `openssl s_server -www` on 127.0.0.1:0 with the server certificate
  // and `extra` arguments; port_ is the port it reports.
  ::testing::AssertionResult startServer(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"s_server",   "-accept", "127.0.0.1:0", "-cert",
                                     server_.cert, "-key",    server_.key,   "-www"};
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ChildProcess>(CertFactory::opensslPath(), args);
    if (!process_->started()) return ::testing::AssertionFailure() << process_->error();
    auto m = process_->waitForOutput(Stream::kStdout, std::regex("ACCEPT 127\\.0\\.0\\.1:(\\d+)"),
                                     deadlineIn(seconds(10)));
    if (!m) {
      return ::testing::AssertionFailure() << "s_server did not report ACCEPT; stderr:\n"
                                           << process_->stderrText();
    }
    port_ = std::stoi(m->groups[0]);
    return ::testing::AssertionSuccess();
  }

  TlsOptions verified() const {
    TlsOptions o;
    o.sni = "a.test";
    o.ca_file = ca_.cert;
    o.verify_host = "a.test";
    return o;
  }

  CertFactory certs_;
  CertFiles ca_;
  CertFiles server_;
  std::unique_ptr<ChildProcess> process_;  // destroyed first: SIGTERM to that pid only
  int port_ = 0;
};

TEST_F(TlsTooling, CertificatesAndClientWorkAgainstOpensslServer) {
  ASSERT_TRUE(startServer({"-alpn", "http/1.1"}));
  TlsOptions o = verified();
  o.alpn = {"h2", "http/1.1"};
  TlsConn conn(port_, o);
  ASSERT_TRUE(conn.connected()) << conn.error();
  EXPECT_EQ(conn.version(), "TLSv1.3");
  EXPECT_EQ(conn.alpn(), "http/1.1");
  EXPECT_EQ(conn.peerSerial(), "1001");
  EXPECT_EQ(conn.peerSubject(), "/CN=server");
  EXPECT_THAT(conn.peerSans(), ElementsAre("DNS:a.test", "DNS:*.b.test", "IP:127.0.0.1"));
  ASSERT_TRUE(conn.send(requestText("GET", "/", port_))) << conn.error();
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_TRUE(r->complete) << r->error;
  EXPECT_THAT(r->body, HasSubstr("TLSv1.3"));
  EXPECT_TRUE(conn.isClosedByPeer(deadlineIn(seconds(5))));  // -www closes after one answer
}

TEST_F(TlsTooling, VerificationFailsAgainstAnotherCaOrAnotherName) {
  // s_server serves one connection at a time: each client is closed before the next.
  ASSERT_TRUE(startServer());
  auto other = certs_.makeCa("other-ca");
  ASSERT_TRUE(other) << certs_.error();
  {
    TlsOptions wrong_ca = verified();
    wrong_ca.ca_file = other->cert;
    TlsConn conn(port_, wrong_ca);
    EXPECT_FALSE(conn.connected());
    EXPECT_THAT(conn.error(), HasSubstr("unable to get local issuer certificate"));
  }
  {
    TlsOptions wrong_name = verified();
    wrong_name.verify_host = "c.test";
    TlsConn conn(port_, wrong_name);
    EXPECT_FALSE(conn.connected());
    EXPECT_THAT(conn.error(), HasSubstr("hostname mismatch"));
  }
  {
    TlsOptions wildcard = verified();
    wildcard.sni = wildcard.verify_host = "x.b.test";
    TlsConn conn(port_, wildcard);
    EXPECT_TRUE(conn.connected()) << conn.error();
  }
}

TEST_F(TlsTooling, ClientReallyOffersTls11WhenAllowedTo) {
  // So a sluice that refuses TLS 1.1 is what fails the handshake in tls_test.
  ASSERT_TRUE(startServer({"-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"}));
  {
    TlsOptions o;
    o.max_version = TlsVersion::k1_1;
    TlsConn old(port_, o);
    ASSERT_TRUE(old.connected()) << old.error();
    EXPECT_EQ(old.version(), "TLSv1.1");
  }
  TlsOptions modern;
  modern.min_version = TlsVersion::k1_2;
  TlsConn refused(port_, modern);
  EXPECT_FALSE(refused.connected());
  EXPECT_THAT(refused.error(), HasSubstr("handshake: error"));  // an alert, not the deadline
}

TEST_F(TlsTooling, ClientCertificateIsPresentedAndItsAbsenceIsDetected) {
  auto client_ca = certs_.makeCa("client-ca");
  ASSERT_TRUE(client_ca) << certs_.error();
  auto good = certs_.makeLeaf("client", *client_ca, {"DNS:client.test"}, "C1", CertUse::kClient);
  ASSERT_TRUE(good) << certs_.error();
  ASSERT_TRUE(startServer({"-Verify", "1", "-CAfile", client_ca->cert}));

  TlsOptions with_cert;
  with_cert.cert_file = good->cert;
  with_cert.key_file = good->key;
  std::string error;
  auto r = httpsGet(port_, with_cert, "/", &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(r->status, 200);

  // TLS 1.3: the client's handshake ends before the server checks its
  // certificate; the refusal arrives as an alert on the first read.
  auto refused = httpsGet(port_, TlsOptions{}, "/", &error);
  EXPECT_FALSE(refused) << refused->status;
  EXPECT_THAT(error, HasSubstr("certificate required"));
}

TEST_F(TlsTooling, BrokenFilesAreReallyBroken) {
  auto client_ca = certs_.makeCa("client-ca");
  ASSERT_TRUE(client_ca) << certs_.error();
  auto good = certs_.makeLeaf("client", *client_ca, {"DNS:client.test"}, "C1", CertUse::kClient);
  auto stray_key = certs_.makeKey("stray");
  auto not_pem = certs_.writeFile("not-pem.crt", "this is not a certificate\n");
  auto self_signed = certs_.makeSelfSigned("self", {"DNS:a.test"});
  ASSERT_TRUE(good && stray_key && not_pem && self_signed) << certs_.error();
  ASSERT_TRUE(startServer());
  {
    TlsOptions mismatched;  // the client loads its key pair before the handshake
    mismatched.cert_file = good->cert;
    mismatched.key_file = *stray_key;
    TlsConn conn(port_, mismatched);
    EXPECT_FALSE(conn.connected());
    EXPECT_THAT(conn.error(), HasSubstr("key values mismatch"));
  }
  {
    TlsOptions garbage_ca;
    garbage_ca.ca_file = *not_pem;
    TlsConn conn(port_, garbage_ca);
    EXPECT_FALSE(conn.connected());
    EXPECT_THAT(conn.error(), HasSubstr("load CA"));
  }
  {
    TlsOptions self_as_ca = verified();  // a self-signed leaf is no CA for the server's chain
    self_as_ca.ca_file = self_signed->cert;
    TlsConn conn(port_, self_as_ca);
    EXPECT_FALSE(conn.connected());
    EXPECT_THAT(conn.error(), HasSubstr("verify"));
  }
}

}  // namespace
}  // namespace sluice::testing
