#include "proxy/http/head_rewrite.h"

#include <vector>

namespace sluice::http {
namespace {

constexpr std::string_view kCrlf = "\r\n";
constexpr int kInlineConnectionFields = 8;

std::string_view field(const char* buf, Span s) { return {buf + s.off, s.len}; }

std::string_view trimOws(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
  return v;
}

// The field names a message's Connection lines list (RFC 9110 §7.6.1):
// the first few inline, any beyond them in a vector (allocates only then).
struct ConnectionFields {
  std::string_view names[kInlineConnectionFields];
  int count = 0;
  std::vector<std::string_view> more;
  void addList(std::string_view v) {
    std::size_t pos = 0;
    while (pos < v.size()) {
      std::size_t comma = v.find(',', pos);
      if (comma == std::string_view::npos) comma = v.size();
      std::string_view item = trimOws(v.substr(pos, comma - pos));
      if (!item.empty()) {
        if (count < kInlineConnectionFields) {
          names[count++] = item;
        } else {
          more.push_back(item);
        }
      }
      pos = comma + 1;
    }
  }
  bool named(std::string_view name) const {
    for (int k = 0; k < count; ++k) {
      if (equalsIgnoreCase(name, names[k])) return true;
    }
    for (std::string_view m : more) {
      if (equalsIgnoreCase(name, m)) return true;
    }
    return false;
  }
};

// Inlined: this runs for every field of every proxied request and response.
[[gnu::always_inline]] inline void appendField(std::string* out, std::string_view name,
                                               std::string_view value) {
  out->append(name.data(), name.size());
  out->append(": ", 2);
  out->append(value.data(), value.size());
  out->append("\r\n", 2);
}

}  // namespace

bool isRequestHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection",        "keep-alive",        "proxy-connection", "te",
      "trailer",           "transfer-encoding", "upgrade",          "proxy-authorization",
      "x-forwarded-proto", "x-forwarded-host",  "x-forwarded-for"};
  for (std::string_view n : kNames) {
    if (equalsIgnoreCase(name, n)) return true;
  }
  return false;
}

bool isResponseHopByHop(std::string_view name) {
  static constexpr std::string_view kNames[] = {
      "connection", "keep-alive",        "proxy-connection", "te",
      "trailer",    "transfer-encoding", "upgrade",          "proxy-authenticate"};
  for (std::string_view n : kNames) {
    if (equalsIgnoreCase(name, n)) return true;
  }
  return false;
}

bool isIdempotent(std::uint8_t method) {
  switch (method) {
    case HTTP_GET:
    case HTTP_HEAD:
    case HTTP_OPTIONS:
    case HTTP_TRACE:
    case HTTP_PUT:
    case HTTP_DELETE:
      return true;
    default:
      return false;
  }
}

// flatten: inlines the string appends (GCC otherwise calls an out-of-line
// clone for each piece of every field).
[[gnu::flatten]] void buildUpstreamHead(const MessageHead& h, const char* buf,
                                        const UpstreamHeadInput& in, std::string* out) {
  out->reserve(out->size() + (h.end - h.start) + in.peer_text.size() + 256);
  out->append(buf + h.method_span.off, h.method_span.len);
  out->push_back(' ');
  out->append(in.target);
  // An HTTP/1.0 client's request goes upstream as 1.0 so that the answer
  // comes back in a framing the client understands (no chunked).
  out->append(in.http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
  ConnectionFields connection;
  std::string_view xff;    // the first non-empty X-Forwarded-For line
  bool multi_xff = false;  // another line follows it: copy every line
  std::string_view host;
  for (int i = 0; i < h.header_count; ++i) {
    const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    std::string_view name = field(buf, f.name);
    if (equalsIgnoreCase(name, "connection")) {
      connection.addList(field(buf, f.value));
    } else if (equalsIgnoreCase(name, "x-forwarded-for")) {
      if (!xff.empty()) multi_xff = true;
      if (xff.empty()) xff = field(buf, f.value);
    } else if (equalsIgnoreCase(name, "host")) {
      host = field(buf, f.value);
    }
  }
  for (int i = 0; i < h.header_count; ++i) {
    const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    std::string_view name = field(buf, f.name);
    if (isRequestHopByHop(name) || equalsIgnoreCase(name, "x-request-id")) continue;
    if (connection.named(name)) continue;
    appendField(out, name, field(buf, f.value));
  }
  out->append("X-Forwarded-For: ");
  if (multi_xff) {
    for (int i = 0; i < h.header_count; ++i) {
      const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
      if (equalsIgnoreCase(field(buf, f.name), "x-forwarded-for")) {
        out->append(field(buf, f.value));
        out->append(", ");
      }
    }
  } else if (!xff.empty()) {
    out->append(xff);
    out->append(", ");
  }
  out->append(in.peer_text);
  out->append(kCrlf);
  appendField(out, "X-Forwarded-Proto", in.proto);
  if (!host.empty()) appendField(out, "X-Forwarded-Host", host);
  appendField(out, "X-Request-Id", in.request_id);
  if (h.chunked) out->append("Transfer-Encoding: chunked\r\n");
  if (!in.upgrade.empty()) {
    out->append("Connection: upgrade\r\n");
    appendField(out, "Upgrade", in.upgrade);
  }
  out->append(kCrlf);
}

ResponseFraming responseFraming(const MessageHead& h, bool head_request, bool client_http10,
                                bool close) {
  ResponseFraming f;
  f.no_body = head_request || h.status == 204 || h.status == 304;
  const bool eof_body = !f.no_body && !h.chunked && !h.has_content_length;
  f.rechunk = eof_body && !client_http10;
  f.close = close || client_http10;
  return f;
}

[[gnu::flatten]] void buildResponseHead(const MessageHead& h, const char* buf,
                                        const ResponseHeadInput& in, std::string* out) {
  out->reserve(out->size() + (h.end - h.start) + in.extra_headers.size() + 128);
  std::string_view start_line(buf + h.start, h.line_end - h.start);
  std::size_t sp = start_line.find(' ');
  out->append("HTTP/1.1");
  out->append(sp == std::string_view::npos ? std::string_view(" 502\r\n") : start_line.substr(sp));
  ConnectionFields connection;  // every Connection line of the response
  for (int i = 0; i < h.header_count; ++i) {
    const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    if (equalsIgnoreCase(field(buf, f.name), "connection")) connection.addList(field(buf, f.value));
  }
  for (int i = 0; i < h.header_count; ++i) {
    const HeaderField& f = h.headers[static_cast<std::size_t>(i)];
    std::string_view name = field(buf, f.name);
    if (isResponseHopByHop(name) || equalsIgnoreCase(name, "x-request-id")) continue;
    if (connection.named(name)) continue;
    appendField(out, name, field(buf, f.value));
  }
  const ResponseFraming& fr = in.framing;
  if (!fr.no_body && (h.chunked || fr.rechunk)) out->append("Transfer-Encoding: chunked\r\n");
  if (fr.close) out->append("Connection: close\r\n");
  if (!in.upgrade.empty()) {
    out->append("Connection: upgrade\r\n");
    appendField(out, "Upgrade", in.upgrade);
  }
  appendField(out, "X-Request-Id", in.request_id);
  out->append(in.extra_headers);
  out->append(kCrlf);
}

}  // namespace sluice::http
