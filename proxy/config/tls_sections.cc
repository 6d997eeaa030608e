// The tls: section (SPEC §9): certificate and key files, the lowest
// protocol version, the client CA. The files themselves are read by the TLS
// room (proxy/tls); here only their names and positions are kept.

#include <string>
#include <string_view>

#include "proxy/config/enum_names.h"
#include "proxy/config/sections.h"

namespace sluice::config {
namespace {

constexpr std::string_view kTlsKeys[] = {"certificates", "min_version", "client_ca"};
constexpr std::string_view kCertificateKeys[] = {"cert", "key"};

// A file name: a non-empty string.
bool readFileName(Reader& reader, const Entry& e, std::string& out, Position& at) {
  auto text = reader.readString(e);
  if (!text) return false;
  if (text->empty()) {
    reader.error(e, "expected a file path, got an empty string");
    return false;
  }
  out = *text;
  at = Reader::positionOf(e);
  return true;
}

void loadCertificate(Reader& reader, const Entry& entry, TlsConfig& tls) {
  MapView view = reader.openMap(entry, kCertificateKeys);
  if (!view.valid) return;
  TlsCertificate c;
  bool ok = true;
  if (const Entry* e = reader.require(view, "cert")) {
    ok = readFileName(reader, *e, c.cert, c.cert_at) && ok;
  } else {
    ok = false;
  }
  if (const Entry* e = reader.require(view, "key")) {
    ok = readFileName(reader, *e, c.key, c.key_at) && ok;
  } else {
    ok = false;
  }
  if (ok) tls.certificates.push_back(std::move(c));
}

}  // namespace

void loadTls(Reader& reader, const Entry& entry, TlsConfig& tls) {
  MapView view = reader.openMap(entry, kTlsKeys);
  if (const Entry* e = view.find("certificates")) {
    reader.forEachItem(*e, [&](const Entry& item) { loadCertificate(reader, item, tls); });
  }
  if (const Entry* e = view.find("min_version")) {
    reader.readEnum(*e, tls.min_version, kTlsVersionNames);
  }
  if (const Entry* e = view.find("client_ca")) {
    if (auto text = reader.readString(*e)) {
      tls.client_ca = *text;
      tls.client_ca_at = Reader::positionOf(*e);
    }
  }
}

}  // namespace sluice::config
