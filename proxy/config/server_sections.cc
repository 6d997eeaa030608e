// The sections about the listening side: server: and clients:.

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/names.h"
#include "proxy/config/sections.h"

namespace sluice::config {
namespace {

constexpr std::int64_t kMaxWorkers = 1024;

constexpr std::string_view kServerKeys[] = {
    "listen",       "admin_listen",      "workers",          "max_connections", "header_timeout",
    "idle_timeout", "body_timeout",      "max_header_bytes", "max_body_bytes",  "shutdown_grace",
    "access_log",   "access_log_format", "normalize_path",   "tls_listen",      "tunnel_idle_timeout"};
constexpr std::string_view kClientsKeys[] = {"trusted_proxies", "ipv4_prefix", "ipv6_prefix",
                                             "api_key"};
constexpr std::string_view kApiKeyKeys[] = {"header", "query"};

// workers: auto (0) or 1..kMaxWorkers. Anything not an integer gets a message
// naming auto, not readInt's "expected an integer".
void readWorkers(Reader& reader, const Entry& e, int& out) {
  if (e.value.IsScalar() && e.value.Scalar() == "auto") {
    out = 0;
  } else if (e.value.IsScalar()) {
    auto text = e.value.Scalar();
    std::int64_t value = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || ptr != text.data() + text.size()) {
      reader.error(e, "expected auto or a positive integer, got '" + text + "'");
    } else {
      reader.readInt(e, out, 1, kMaxWorkers);
    }
  } else {
    reader.error(e, "expected auto or a positive integer, got " + describe(e.value));
  }
}

// clients.api_key: the header (a token) and the query parameter it may come in.
void loadApiKey(Reader& reader, const Entry& entry, ApiKeyConfig& out) {
  MapView view = reader.openMap(entry, kApiKeyKeys);
  if (const Entry* h = view.find("header")) {
    if (auto text = reader.readString(*h)) {
      if (isToken(*text)) {
        out.header = *text;
      } else {
        reader.error(*h, "'" + *text + "' is not a valid header name");
      }
    }
  }
  if (const Entry* q = view.find("query")) {
    if (auto text = reader.readString(*q)) {
      bool plain = std::all_of(text->begin(), text->end(),
                               [](char ch) { return isTokenChar(ch) && ch != '&' && ch != '#'; });
      if (plain) {
        out.query = *text;
      } else {
        reader.error(*q, "'" + *text + "' is not a valid query parameter name");
      }
    }
  }
}

// tls_listen: "" (none, the default) or HOST:PORT, apart from the others.
void readTlsListen(Reader& reader, const Entry& e, ServerConfig& s) {
  if (e.value.IsNull() || (e.value.IsScalar() && e.value.Scalar().empty())) return;
  Address a;
  if (!reader.readAddress(e, a, Port::kZeroAllowed)) return;
  if (a.port != 0 && ((s.cleartext && a == s.listen) || a == s.admin_listen)) {
    reader.error(e, "must differ from server.listen and server.admin_listen");
    return;
  }
  s.tls_listen = a;
}

}  // namespace

void loadServer(Reader& reader, const Entry& entry, ServerConfig& s) {
  MapView view = reader.openMap(entry, kServerKeys);
  if (const Entry* e = view.find("listen")) {
    if (e->value.IsScalar() && e->value.Scalar().empty()) {
      s.cleartext = false;  // TLS only; checked against tls_listen once it is read
    } else {
      reader.readAddress(*e, s.listen, Port::kZeroAllowed);
    }
  }
  if (const Entry* e = view.find("admin_listen")) {
    if (reader.readAddress(*e, s.admin_listen, Port::kZeroAllowed) && s.admin_listen.port != 0 &&
        s.cleartext && s.admin_listen == s.listen) {
      reader.error(*e, "must differ from server.listen (" + s.listen.toString() + ")");
    }
  }
  if (const Entry* e = view.find("workers")) readWorkers(reader, *e, s.workers);
  if (const Entry* e = view.find("max_connections")) {
    reader.readInt(*e, s.max_connections, 1, std::numeric_limits<std::int64_t>::max());
  }
  if (const Entry* e = view.find("header_timeout")) reader.readDuration(*e, s.header_timeout);
  if (const Entry* e = view.find("idle_timeout")) reader.readDuration(*e, s.idle_timeout);
  if (const Entry* e = view.find("body_timeout")) reader.readDuration(*e, s.body_timeout);
  if (const Entry* e = view.find("max_header_bytes")) reader.readSize(*e, s.max_header_bytes, 1);
  if (const Entry* e = view.find("max_body_bytes")) reader.readSize(*e, s.max_body_bytes, 0);
  if (const Entry* e = view.find("shutdown_grace")) {
    reader.readDuration(*e, s.shutdown_grace, Zero::kAllowed);
  }
  if (const Entry* e = view.find("access_log")) {
    if (auto text = reader.readString(*e)) s.access_log = *text;
  }
  if (const Entry* e = view.find("access_log_format")) {
    const std::vector<std::string> formats = {"logfmt", "json"};
    if (auto index = reader.readChoice(*e, formats)) s.access_log_format = formats[*index];
  }
  if (const Entry* e = view.find("normalize_path")) reader.readBool(*e, s.normalize_path);
  if (const Entry* e = view.find("tls_listen")) readTlsListen(reader, *e, s);
  if (const Entry* e = view.find("tunnel_idle_timeout")) {
    reader.readDuration(*e, s.tunnel_idle_timeout);
  }
  if (!s.cleartext && !s.tls_listen) {
    reader.error(*view.find("listen"), "\"\" (no cleartext listener) needs server.tls_listen");
  }
}

void loadClients(Reader& reader, const Entry& entry, ClientsConfig& c) {
  MapView view = reader.openMap(entry, kClientsKeys);
  if (const Entry* e = view.find("trusted_proxies")) reader.readCidrs(*e, c.trusted_proxies);
  if (const Entry* e = view.find("ipv4_prefix")) reader.readInt(*e, c.ipv4_prefix, 0, 32);
  if (const Entry* e = view.find("ipv6_prefix")) reader.readInt(*e, c.ipv6_prefix, 0, 128);
  if (const Entry* e = view.find("api_key")) loadApiKey(reader, *e, c.api_key);
}

}  // namespace sluice::config
