// TLS termination (SPEC §9) through the real sluice binary in front of the
// demo upstream: what a client of the TLS listener observes. Certificates are
// made at test time (tls_certs.h), valid 30 days; the client is tls_client.h.
// The TLS port is read from the `msg="listening" listener=tls addr=HOST:PORT`
// log line, like the proxy and admin ports.

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/prom_scrape.h"
#include "tests/integration/tls_certs.h"
#include "tests/integration/tls_client.h"

namespace sluice::testing {
namespace {

using std::chrono::seconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The values of header `name` in the request head the demo upstream echoed
// back (`?echo=1`): what sluice forwarded.
std::vector<std::string> echoedValues(std::string_view echo, std::string_view name) {
  std::vector<std::string> out;
  std::string_view head = echo.substr(0, echo.find("\r\n\r\n"));
  std::string wanted = std::string(name) + ":";
  auto lower = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  };
  while (!head.empty()) {
    size_t next = head.find("\r\n");
    std::string line(head.substr(0, next));
    head = next == std::string_view::npos ? std::string_view() : head.substr(next + 2);
    if (lower(line.substr(0, wanted.size())) != lower(wanted)) continue;
    size_t start = line.find_first_not_of(' ', wanted.size());
    out.push_back(start == std::string::npos ? "" : line.substr(start));
  }
  return out;
}

// The 1-based line of `yaml` that contains `needle`; 0 when none does.
int lineOf(std::string_view yaml, std::string_view needle) {
  size_t at = yaml.find(needle);
  if (at == std::string_view::npos) return 0;
  return 1 + static_cast<int>(std::count(yaml.begin(), yaml.begin() + static_cast<long>(at), '\n'));
}

// Sum of every sample `name` whose labels include all of `labels`.
double sumSamples(std::string_view metrics, std::string_view name, const Headers& labels) {
  double sum = 0;
  for (const auto& s : parsePromText(metrics)) {
    if (s.name != name) continue;
    bool all = std::all_of(labels.begin(), labels.end(), [&](const auto& want) {
      return std::find(s.labels.begin(), s.labels.end(), want) != s.labels.end();
    });
    if (all) sum += s.value;
  }
  return sum;
}

// The tls: block of a config.
struct TlsBlock {
  TlsBlock(std::vector<CertFiles> certs) : certificates(std::move(certs)) {}  // NOLINT: implicit
  std::vector<CertFiles> certificates;
  std::string min_version;  // "" = left out
  std::string client_ca;    // "" = left out
};

std::string tlsYaml(const TlsBlock& tls) {
  std::string y = "tls:\n  certificates:\n";
  for (const auto& c : tls.certificates) {
    y += "    - cert: " + c.cert + "\n";
    y += "      key: " + c.key + "\n";
  }
  if (!tls.min_version.empty()) y += "  min_version: \"" + tls.min_version + "\"\n";
  if (!tls.client_ca.empty()) y += "  client_ca: " + tls.client_ca + "\n";
  return y;
}

class TlsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(certs_.ok()) << certs_.error();
    auto ca = certs_.makeCa("ca");
    ASSERT_TRUE(ca) << certs_.error();
    ca_ = *ca;
    auto a = certs_.makeLeaf("a", ca_, {"DNS:a.test", "IP:127.0.0.1"}, "A1");
    ASSERT_TRUE(a) << certs_.error();
    a_ = *a;
    ASSERT_TRUE(upstream_.start());
  }

  // The whole config: listeners on 127.0.0.1:0 (proxy, admin, TLS), upstream
  // `demo`, route `/` with `route` keys, `tls`, then `top` (limits:).
  std::string config(const TlsBlock& tls, ConfigOptions options = {}) const {
    options.server = "tls_listen: 127.0.0.1:0\n" + options.server;
    options.top = tlsYaml(tls) + options.top;
    return minimalConfig(upstream_.port(), options);
  }

  // Starts sluice and reads the TLS listener's port from its log.
  ::testing::AssertionResult start(const std::string& yaml) {
    auto started = sluice_.start(yaml);
    if (!started) return started;
    auto m = sluice_.process().waitForOutput(
        Stream::kStderr, std::regex("msg=\"listening\"[^\\n]*listener=tls[^\\n]*addr=\\S*:(\\d+)"),
        deadlineIn(seconds(10)));
    if (!m) return ::testing::AssertionFailure() << "no listener=tls listening line";
    tls_port_ = std::stoi(m->groups[0]);
    return ::testing::AssertionSuccess();
  }

  // Verifies the chain against the test CA; SNI and name checked when given.
  TlsOptions verified(std::string_view name = "a.test") const {
    TlsOptions o;
    o.sni = o.verify_host = std::string(name);
    o.ca_file = ca_.cert;
    return o;
  }

  // GET `path` on a fresh TLS connection: the status, 0 when none arrived.
  int status(const TlsOptions& o, std::string_view path = "/") {
    std::string error;
    auto r = httpsGet(tls_port_, o, path, &error);
    return r ? r->status : 0;
  }

  // The serial of the certificate a fresh handshake gets; "" when it failed.
  std::string servedSerial(const TlsOptions& o) {
    TlsConn conn(tls_port_, o);
    return conn.connected() ? conn.peerSerial() : "";
  }

  double metric(std::string_view name, const Headers& labels = {}) {
    return scrapeValue(sluice_.adminPort(), name, labels).value_or(-1);
  }

  ::testing::AssertionResult reloadCounted(std::string_view result) {
    if (!sluice_.process().signal(SIGHUP)) return ::testing::AssertionFailure() << "SIGHUP failed";
    Headers labels = {{"result", std::string(result)}};
    if (waitUntil([&] { return metric("sluice_config_reloads_total", labels) >= 1; },
                  deadlineIn(seconds(5)))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure() << "no reload counted with result=" << result;
  }

  struct CheckResult {
    std::optional<int> exit_code;
    std::string output;            // stdout then stderr
    std::vector<int> error_lines;  // LINE of each `FILE:LINE:COL: message` naming the file
  };
  // `sluice --check-config` on `yaml` written to a file.
  CheckResult checkConfig(const std::string& yaml) {
    CheckResult out;
    auto path = certs_.writeFile("check.yaml", yaml);
    if (!path) return {std::nullopt, certs_.error(), {}};
    ChildProcess check(Sluice::binaryPath(), {"--check-config", *path});
    if (!check.started()) return {std::nullopt, check.error(), {}};
    out.exit_code = check.waitExit(deadlineIn(seconds(10)));
    // Waiting for a string that never comes returns once the pipe is drained and closed.
    check.waitForOutput(Stream::kStdout, "\x01", deadlineIn(seconds(5)));
    check.waitForOutput(Stream::kStderr, "\x01", deadlineIn(seconds(5)));
    out.output = check.stdoutText() + check.stderrText();
    std::regex position(std::regex_replace(*path, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                        R"(:(\d+):(\d+): )");
    for (std::sregex_iterator it(out.output.begin(), out.output.end(), position), end; it != end;
         ++it) {
      out.error_lines.push_back(std::stoi((*it)[1]));
    }
    return out;
  }

  CertFactory certs_;
  CertFiles ca_;
  CertFiles a_;  // the default certificate: DNS:a.test, IP:127.0.0.1, serial A1
  DemoUpstream upstream_;
  Sluice sluice_;
  int tls_port_ = 0;
};

// ---- Serving ---------------------------------------------------------------------------

TEST_F(TlsTest, HttpsRoundTrip) {
  ASSERT_TRUE(start(config({{a_}})));
  TlsOptions o = verified();
  o.alpn = {"http/1.1"};
  TlsConn conn(tls_port_, o);
  ASSERT_TRUE(conn.connected()) << conn.error();
  EXPECT_EQ(conn.alpn(), "http/1.1");
  EXPECT_EQ(conn.peerSerial(), "A1");
  // A client's own X-Forwarded-Proto is not believed.
  ASSERT_TRUE(
      conn.send(requestText("GET", "/?echo=1", tls_port_, {{"X-Forwarded-Proto", "http"}})));
  auto r = conn.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << conn.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_THAT(echoedValues(r->body, "X-Forwarded-Proto"), ElementsAre("https")) << r->body;

  auto plain = httpGet(sluice_.port(), "/?echo=1");  // the cleartext listener is unchanged
  ASSERT_TRUE(plain);
  EXPECT_THAT(echoedValues(plain->body, "X-Forwarded-Proto"), ElementsAre("http")) << plain->body;
}

TEST_F(TlsTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  ASSERT_TRUE(start(config({{a_}})));
  TlsConn conn(tls_port_, verified());
  ASSERT_TRUE(conn.connected()) << conn.error();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/?size=20000", tls_port_))) << conn.error();
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << "request " << i << ": " << conn.error();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body_bytes, 20000u);
    EXPECT_TRUE(isDemoBodyPattern(r->body));
  }
}

TEST_F(TlsTest, TlsOnlyConfigServesOverTlsAlone) {
  std::string yaml = config({{a_}});
  const std::string cleartext = "  listen: 127.0.0.1:0\n";
  ASSERT_NE(yaml.find(cleartext), std::string::npos);
  yaml.replace(yaml.find(cleartext), cleartext.size(), "  listen: \"\"\n");
  ASSERT_TRUE(start(yaml));
  EXPECT_EQ(status(verified()), 200);
  EXPECT_THAT(sluice_.process().stderrText(), Not(HasSubstr("listener=proxy")));
}

TEST_F(TlsTest, SniPicksTheMatchingCertificate) {
  auto b = certs_.makeLeaf("b", ca_, {"DNS:*.b.test"}, "B1");
  ASSERT_TRUE(b) << certs_.error();
  ASSERT_TRUE(start(config({{a_, *b}})));

  TlsConn wildcard(tls_port_, verified("x.b.test"));
  ASSERT_TRUE(wildcard.connected()) << wildcard.error();
  EXPECT_EQ(wildcard.peerSerial(), "B1");
  EXPECT_THAT(wildcard.peerSans(), ElementsAre("DNS:*.b.test"));

  TlsOptions other;  // unverified: the default certificate does not name these
  other.sni = "other.test";
  EXPECT_EQ(servedSerial(other), "A1");
  other.sni = "b.test";  // a wildcard covers exactly one label (RFC 6125 §6.4.3)
  EXPECT_EQ(servedSerial(other), "A1");
  other.sni = "deep.x.b.test";
  EXPECT_EQ(servedSerial(other), "A1");
  EXPECT_EQ(servedSerial(TlsOptions{}), "A1");  // no SNI at all
  EXPECT_EQ(servedSerial(verified("a.test")), "A1");
}

// ---- Versions --------------------------------------------------------------------------

TEST_F(TlsTest, Tls10And11AreRefused) {
  ASSERT_TRUE(start(config({{a_}})));
  for (TlsVersion v : {TlsVersion::k1_0, TlsVersion::k1_1}) {
    TlsOptions o;
    o.max_version = v;  // the client really offers it (tls_tooling_test)
    TlsConn old(tls_port_, o);
    EXPECT_FALSE(old.connected()) << "negotiated " << old.version();
  }
  EXPECT_EQ(status(verified()), 200);  // refusing them harmed nothing else
}

TEST_F(TlsTest, DefaultMinVersionAcceptsTls12AndTls13) {
  ASSERT_TRUE(start(config({{a_}})));
  TlsOptions o12 = verified();
  o12.max_version = TlsVersion::k1_2;
  TlsConn conn12(tls_port_, o12);
  ASSERT_TRUE(conn12.connected()) << conn12.error();
  EXPECT_EQ(conn12.version(), "TLSv1.2");
  TlsConn conn13(tls_port_, verified());
  ASSERT_TRUE(conn13.connected()) << conn13.error();
  EXPECT_EQ(conn13.version(), "TLSv1.3");
  EXPECT_EQ(status(o12), 200);
}

TEST_F(TlsTest, MinVersion13RefusesTls12) {
  TlsBlock tls{{a_}};
  tls.min_version = "1.3";
  ASSERT_TRUE(start(config(tls)));
  TlsOptions o12 = verified();
  o12.max_version = TlsVersion::k1_2;
  TlsConn conn12(tls_port_, o12);
  EXPECT_FALSE(conn12.connected()) << "negotiated " << conn12.version();

  TlsOptions o13 = verified();
  o13.min_version = TlsVersion::k1_3;
  TlsConn conn13(tls_port_, o13);
  ASSERT_TRUE(conn13.connected()) << conn13.error();
  EXPECT_EQ(conn13.version(), "TLSv1.3");
  EXPECT_EQ(status(o13), 200);
}

// ---- Client certificates -------------------------------------------------------------

TEST_F(TlsTest, MutualTlsAcceptsSignedClientAndRefusesOthers) {
  auto client_ca = certs_.makeCa("client-ca");
  ASSERT_TRUE(client_ca) << certs_.error();
  auto good = certs_.makeLeaf("client", *client_ca, {"DNS:client.test"}, "C1", CertUse::kClient);
  // Signed by the server's CA, which is not the client CA.
  auto stranger = certs_.makeLeaf("stranger", ca_, {"DNS:stranger.test"}, "C2", CertUse::kClient);
  ASSERT_TRUE(good && stranger) << certs_.error();
  TlsBlock tls{{a_}};
  tls.client_ca = client_ca->cert;
  ASSERT_TRUE(start(config(tls)));

  // Refused in the handshake (TLS 1.2) or by an alert on the first read (1.3):
  // either way no HTTP response.
  std::string error;
  auto none = httpsGet(tls_port_, verified(), "/", &error);
  EXPECT_FALSE(none) << "no client certificate, yet status " << none->status;
  TlsOptions other = verified();
  other.cert_file = stranger->cert;
  other.key_file = stranger->key;
  auto refused = httpsGet(tls_port_, other, "/", &error);
  EXPECT_FALSE(refused) << "client certificate of another CA, yet status " << refused->status;
  TlsOptions other12 = other;
  other12.max_version = TlsVersion::k1_2;
  EXPECT_FALSE(TlsConn(tls_port_, other12).connected());

  TlsOptions signed_client = verified();
  signed_client.cert_file = good->cert;
  signed_client.key_file = good->key;
  auto r = httpsGet(tls_port_, signed_client, "/", &error);
  ASSERT_TRUE(r) << error;
  EXPECT_EQ(r->status, 200);
}

// ---- Misbehaving clients ---------------------------------------------------------------

TEST_F(TlsTest, CleartextToTheTlsPortIsClosedAndOtherConnectionsAreServed) {
  ASSERT_TRUE(start(config({{a_}})));
  TlsConn kept(tls_port_, verified());  // open before, used after
  ASSERT_TRUE(kept.connected()) << kept.error();

  const std::string junk[] = {requestText("GET", "/", tls_port_),
                              std::string("\x16\x03\x01\xff\xff not a handshake\r\n\r\n")};
  for (const std::string& bytes : junk) {
    HttpConn plain(tls_port_);
    ASSERT_TRUE(plain.connected()) << plain.error();
    ASSERT_TRUE(plain.send(bytes));
    EXPECT_TRUE(plain.isClosedByPeer(deadlineIn(seconds(5))));
    EXPECT_THAT(plain.readRaw(deadlineIn(std::chrono::milliseconds(0))),
                Not(StartsWith("HTTP/1.1 200")));
  }

  ASSERT_TRUE(kept.send(requestText("GET", "/", tls_port_))) << kept.error();
  auto r = kept.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(r) << kept.error();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(status(verified()), 200);
  EXPECT_EQ(httpGet(sluice_.port(), "/").value_or(Response{}).status, 200);
}

TEST_F(TlsTest, SilentClientIsClosedWithinHeaderTimeout) {
  ConfigOptions options;
  options.server = "header_timeout: 1s\n";
  ASSERT_TRUE(start(config({{a_}}, options)));
  // No ClientHello at all: the handshake counts against header_timeout.
  HttpConn silent(tls_port_);
  ASSERT_TRUE(silent.connected()) << silent.error();
  // Handshake done, no request head.
  TlsConn idle(tls_port_, verified());
  ASSERT_TRUE(idle.connected()) << idle.error();
  // 1 s plus timer slack; no tighter timing claim.
  EXPECT_TRUE(silent.isClosedByPeer(deadlineIn(seconds(3))));
  EXPECT_TRUE(idle.isClosedByPeer(deadlineIn(seconds(3))));
  EXPECT_EQ(status(verified()), 200);
}

// ---- Limits ------------------------------------------------------------------------------

TEST_F(TlsTest, RateLimitedRequestGets429OverTls) {
  ConfigOptions options;
  options.route = "limits: [per_ip]\n";
  options.top = "limits:\n  per_ip: {per: ip, rate: 1/m, burst: 1}\n";
  ASSERT_TRUE(start(config({{a_}}, options)));
  TlsConn conn(tls_port_, verified());
  ASSERT_TRUE(conn.connected()) << conn.error();
  std::vector<Response> answers;
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(conn.send(requestText("GET", "/", tls_port_))) << conn.error();
    auto r = conn.readResponse(deadlineIn(seconds(5)));
    ASSERT_TRUE(r) << conn.error();
    answers.push_back(*r);
  }
  EXPECT_EQ(answers[0].status, 200);
  EXPECT_EQ(answers[1].status, 429);
  EXPECT_GE(std::atoi(answers[1].header("Retry-After").c_str()), 1)
      << "Retry-After: " << answers[1].header("Retry-After");
  EXPECT_THAT(answers[1].header("Content-Type"), StartsWith("application/problem+json"));
  EXPECT_THAT(answers[1].body, HasSubstr("\"violated-policies\":[\"per_ip\"]"));
}

// ---- Reload ------------------------------------------------------------------------------

TEST_F(TlsTest, CertificateRotationBySighup) {
  ASSERT_TRUE(start(config({{a_}})));
  TlsConn kept(tls_port_, verified());
  ASSERT_TRUE(kept.connected()) << kept.error();
  ASSERT_TRUE(kept.send(requestText("GET", "/", tls_port_)));
  auto first = kept.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(first) << kept.error();
  EXPECT_EQ(first->status, 200);

  ASSERT_TRUE(certs_.makeLeaf("a", ca_, {"DNS:a.test", "IP:127.0.0.1"}, "A2"))
      << certs_.error();  // same paths, new key and serial
  ASSERT_TRUE(reloadCounted("success"));
  EXPECT_TRUE(waitUntil([&] { return servedSerial(verified()) == "A2"; }, deadlineIn(seconds(5))))
      << "still serving serial " << servedSerial(verified());

  ASSERT_TRUE(kept.send(requestText("GET", "/", tls_port_))) << kept.error();
  auto second = kept.readResponse(deadlineIn(seconds(5)));
  ASSERT_TRUE(second) << "the connection opened before the reload: " << kept.error();
  EXPECT_EQ(second->status, 200);
  EXPECT_EQ(kept.peerSerial(), "A1");
}

TEST_F(TlsTest, ReloadWithABrokenCertificateKeepsServingTheOldOne) {
  ASSERT_TRUE(start(config({{a_}})));
  EXPECT_EQ(servedSerial(verified()), "A1");
  ASSERT_TRUE(certs_.writeFile("a.crt", "this is not a certificate\n")) << certs_.error();
  ASSERT_TRUE(reloadCounted("failure"));
  EXPECT_LT(metric("sluice_config_reloads_total", {{"result", "success"}}), 1);
  EXPECT_EQ(servedSerial(verified()), "A1");
  EXPECT_EQ(status(verified()), 200);
}

// ---- Config errors -----------------------------------------------------------------------

TEST_F(TlsTest, BadCertificateFilesAreConfigErrorsAtTheirPosition) {
  auto b = certs_.makeLeaf("b", ca_, {"DNS:b.test"}, "B1");
  auto stray_key = certs_.makeKey("stray");
  auto not_pem = certs_.writeFile("not-pem.pem", "this is not PEM\n");
  ASSERT_TRUE(b && stray_key && not_pem) << certs_.error();
  // The pair under test is the second certificate, after a good default one.
  auto check = [&](const CertFiles& second) {
    std::string yaml = config({{a_, second}});
    return std::make_pair(checkConfig(yaml), yaml);
  };
  auto [good, good_yaml] = check(*b);
  EXPECT_EQ(good.exit_code, 0) << good.output << "\n" << good_yaml;
  EXPECT_EQ(good.output, "ok\n");

  struct Case {
    std::string what;
    CertFiles files;
    std::vector<std::string> at;  // the lines (`cert:` / `key:`) the error may point at
  };
  const std::vector<Case> cases = {
      {"missing cert file", {certs_.dir() + "/missing.crt", b->key}, {"cert"}},
      {"cert not PEM", {*not_pem, b->key}, {"cert"}},
      {"key not PEM", {b->cert, *not_pem}, {"key"}},
      {"key file missing", {b->cert, certs_.dir() + "/missing.key"}, {"key"}},
      {"key does not match the cert", {b->cert, *stray_key}, {"key", "cert"}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto [result, yaml] = check(c.files);
    EXPECT_EQ(result.exit_code, 1) << result.output;
    std::vector<int> wanted;
    for (const auto& field : c.at) {
      wanted.push_back(lineOf(yaml, field + ": " + (field == "cert" ? c.files.cert : c.files.key)));
    }
    EXPECT_THAT(result.error_lines, Contains(::testing::AnyOfArray(wanted)))
        << result.output << "\n"
        << yaml;
  }
}

// ---- Metrics -----------------------------------------------------------------------------

TEST_F(TlsTest, HandshakeMetricsCountOkAndFailed) {
  ASSERT_TRUE(start(config({{a_}})));
  EXPECT_EQ(status(verified()), 200);
  TlsOptions old;
  old.max_version = TlsVersion::k1_1;
  EXPECT_FALSE(TlsConn(tls_port_, old).connected());

  const std::string name = "sluice_tls_handshakes_total";
  std::string text;
  bool counted = waitUntil(
      [&] {
        auto r = scrapeMetrics(sluice_.adminPort());
        text = r ? r->body : "";
        return sumSamples(text, name, {{"result", "ok"}, {"version", "TLSv1.3"}}) >= 1 &&
               sumSamples(text, name, {{"result", "failed"}}) >= 1;
      },
      deadlineIn(seconds(5)));
  EXPECT_TRUE(counted) << text;

  auto not_after =
      promValue(text, "sluice_tls_certificate_not_after_timestamp_seconds", {{"name", "a.test"}});
  ASSERT_TRUE(not_after) << text;
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const double day = 86400;
  EXPECT_GT(*not_after, now + 29 * day);  // the certificate is valid for 30 days
  EXPECT_LT(*not_after, now + 31 * day);
}

}  // namespace
}  // namespace sluice::testing
