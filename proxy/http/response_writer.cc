#include "proxy/http/response_writer.h"

#include <charconv>

namespace sluice::http {

std::string_view reasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 417: return "Expectation Failed";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
  }
}

void appendNumber(std::string& out, unsigned long long n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  (void)ec;
  out.append(buf, end);
}

void appendProblemResponse(std::string& out, const LocalResponse& r) {
  // Body first so Content-Length is known; the buffer is kept per thread, so
  // after the first answer nothing is allocated, and no list of violated
  // policies is too long for it.
  static thread_local std::string body;
  body.clear();
  auto put = [&](std::string_view s) { body.append(s); };
  if (r.status == 429) {
    put(R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":")");
  } else {
    put(R"({"type":"about:blank","title":")");
  }
  put(reasonPhrase(r.status));
  put(R"(","status":)");
  appendNumber(body, static_cast<unsigned long long>(r.status));
  if (r.status == 429) {
    put(R"(,"violated-policies":[)");
    bool first = true;
    for (std::string_view p : r.violated_policies) {
      if (!first) put(",");
      first = false;
      put("\"");
      put(p);  // limit names are validated YAML keys; no escaping needed
      put("\"");
    }
    put("]");
  }
  put("}\n");

  out.append("HTTP/1.1 ");
  appendNumber(out, static_cast<unsigned long long>(r.status));
  out.push_back(' ');
  out.append(reasonPhrase(r.status));
  out.append("\r\nContent-Type: application/problem+json\r\nContent-Length: ");
  appendNumber(out, body.size());
  out.append("\r\n");
  if (r.close) out.append("Connection: close\r\n");
  out.append(r.extra_headers);
  if (!r.request_id.empty()) {
    out.append("X-Request-Id: ");
    out.append(r.request_id);
    out.append("\r\n");
  }
  out.append("\r\n");
  if (!r.head_only) out.append(body);
}

}  // namespace sluice::http
