#include "proxy/client/api_key.h"

#include <algorithm>

namespace sluice::client {
namespace {

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Form decoding; stops early once the output passes `limit` bytes (the caller
// only needs to know it is too long).
std::string formDecode(std::string_view in, std::size_t limit) {
  std::string out;
  out.reserve(std::min(in.size(), limit + 1));
  for (std::size_t i = 0; i < in.size() && out.size() <= limit; ++i) {
    char c = in[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%' && i + 2 < in.size() && hexValue(in[i + 1]) >= 0 &&
               hexValue(in[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hexValue(in[i + 1]) * 16 + hexValue(in[i + 2])));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::optional<std::string> queryParamLimited(std::string_view query, std::string_view name,
                                             std::size_t limit) {
  while (true) {
    std::size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    std::size_t eq = pair.find('=');
    std::string_view key = pair.substr(0, eq);
    std::string_view value =
        eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1);
    if (!pair.empty() && (key == name || formDecode(key, name.size()) == name)) {
      return formDecode(value, limit);
    }
    if (amp == std::string_view::npos) return std::nullopt;
    query.remove_prefix(amp + 1);
  }
}

}  // namespace

std::optional<std::string> queryParam(std::string_view query, std::string_view name) {
  return queryParamLimited(query, name, query.size());
}

ApiKey apiKey(std::optional<std::string_view> header_value, std::string_view query,
              std::string_view param) {
  if (header_value) {
    std::string_view value = trim(*header_value);
    if (value.size() > kMaxApiKeyBytes) return {ApiKeyStatus::kTooLong, {}};
    if (!value.empty()) return {ApiKeyStatus::kFound, std::string(value)};
  }
  if (param.empty()) return {};
  auto value = queryParamLimited(query, param, kMaxApiKeyBytes);
  if (!value || value->empty()) return {};
  if (value->size() > kMaxApiKeyBytes) return {ApiKeyStatus::kTooLong, {}};
  return {ApiKeyStatus::kFound, std::move(*value)};
}

}  // namespace sluice::client
