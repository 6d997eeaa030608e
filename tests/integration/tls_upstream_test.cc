// TLS to upstreams (SPEC §9): a front sluice whose upstream has `tls: true`
// forwards to a back sluice's TLS listener, which serves the demo upstream.
// What a client of the front observes: 200 when the back's certificate
// verifies, 502 counted kind="tls" when it does not.

#include <gtest/gtest.h>

#include <chrono>
#include <optional>
#include <regex>
#include <string>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"
#include "tests/integration/tls_certs.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;

class TlsUpstreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok()) << certs_.error();
    auto ca = certs_.makeCa("ca");
    auto other = certs_.makeCa("other-ca");
    ASSERT_TRUE(ca && other) << certs_.error();
    ca_ = *ca;
    other_ca_ = *other;
    auto leaf = certs_.makeLeaf("back", ca_, {"DNS:back.test", "IP:127.0.0.1"}, "B1");
    ASSERT_TRUE(leaf) << certs_.error();
    ASSERT_TRUE(upstream_.start());
    ConfigOptions back;
    back.server = "tls_listen: 127.0.0.1:0\n";
    back.top =
        "tls:\n  certificates:\n    - cert: " + leaf->cert + "\n      key: " + leaf->key + "\n";
    ASSERT_TRUE(back_.start(minimalConfig(upstream_.port(), back)));
    auto m = back_.process().waitForOutput(
        Stream::kStderr, std::regex("msg=\"listening\"[^\\n]*listener=tls[^\\n]*addr=\\S*:(\\d+)"),
        deadlineIn(seconds(10)));
    ASSERT_TRUE(m) << "no listener=tls line";
    back_tls_port_ = std::stoi(m->groups[0]);
  }

  // Starts the front with upstream `demo` -> the back's TLS port and `keys`.
  ::testing::AssertionResult startFront(const std::string& keys) {
    ConfigOptions front;
    front.upstream = "tls: true\n" + keys;
    return front_.start(minimalConfig(back_tls_port_, front));
  }

  int status(std::string_view path = "/") {
    auto r = httpGet(front_.port(), path);
    return r ? r->status : 0;
  }

  double tlsErrors() {
    return scrapeValue(front_.adminPort(), "sluice_upstream_errors_total",
                       {{"upstream", "demo"}, {"kind", "tls"}})
        .value_or(-1);
  }

  CertFactory certs_;
  CertFiles ca_;
  CertFiles other_ca_;
  DemoUpstream upstream_;
  Sluice back_;
  Sluice front_;
  int back_tls_port_ = 0;
};

TEST_F(TlsUpstreamTest, VerifiedUpstreamServesTheRequestOverTls) {
  ASSERT_TRUE(startFront("tls_ca: " + ca_.cert + "\ntls_server_name: back.test\n"));
  auto r = httpGet(front_.port(), "/hello?echo=1");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("X-Forwarded-Proto: https"), std::string::npos)
      << "the back saw the front's request arrive over TLS:\n"
      << r->body;
  EXPECT_EQ(status(), 200) << "the pooled TLS connection is reused";
  EXPECT_EQ(tlsErrors(), 0);
}

TEST_F(TlsUpstreamTest, TargetAddressIsTheNameVerifiedByDefault) {
  ASSERT_TRUE(startFront("tls_ca: " + ca_.cert + "\n"));  // 127.0.0.1, in the IP SAN
  EXPECT_EQ(status(), 200);
}

TEST_F(TlsUpstreamTest, CertificateFromAnotherCaIs502KindTls) {
  ASSERT_TRUE(startFront("tls_ca: " + other_ca_.cert + "\ntls_server_name: back.test\n"));
  EXPECT_EQ(status(), 502);
  EXPECT_GE(tlsErrors(), 1);
}

TEST_F(TlsUpstreamTest, CertificateForAnotherNameIs502KindTls) {
  ASSERT_TRUE(startFront("tls_ca: " + ca_.cert + "\ntls_server_name: elsewhere.test\n"));
  EXPECT_EQ(status(), 502);
  EXPECT_GE(tlsErrors(), 1);
}

}  // namespace
}  // namespace sluice::testing
