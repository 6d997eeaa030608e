#include "proxy/http/response_writer.h"

#include <charconv>
#include <cstring>

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
  // Body first into a small stack buffer so Content-Length is known.
  char body[1024];
  std::size_t n = 0;
  auto put = [&](std::string_view s) {
    if (n + s.size() < sizeof body) {
      std::memcpy(body + n, s.data(), s.size());
      n += s.size();
    }
  };
  if (r.status == 429) {
    put(R"({"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":")");
  } else {
    put(R"({"type":"about:blank","title":")");
  }
  put(reasonPhrase(r.status));
  put(R"(","status":)");
  char num[8];
  auto [end, ec] = std::to_chars(num, num + sizeof num, r.status);
  (void)ec;
  put(std::string_view(num, static_cast<std::size_t>(end - num)));
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
  appendNumber(out, n);
  out.append("\r\n");
  if (r.close) out.append("Connection: close\r\n");
  out.append(r.extra_headers);
  if (!r.request_id.empty()) {
    out.append("X-Request-Id: ");
    out.append(r.request_id);
    out.append("\r\n");
  }
  out.append("\r\n");
  if (!r.head_only) out.append(body, n);
}

}  // namespace sluice::http
