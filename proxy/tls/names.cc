#include "proxy/tls/names.h"

namespace sluice::tls {
namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

bool equalFold(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view withoutTrailingDot(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  return s;
}

bool exactMatch(std::string_view pattern, std::string_view host) {
  pattern = withoutTrailingDot(pattern);
  host = withoutTrailingDot(host);
  return !host.empty() && pattern.find('*') == std::string_view::npos && equalFold(pattern, host);
}

bool wildcardMatch(std::string_view pattern, std::string_view host) {
  pattern = withoutTrailingDot(pattern);
  host = withoutTrailingDot(host);
  if (pattern.size() < 3 || pattern[0] != '*' || pattern[1] != '.') return false;
  const std::string_view suffix = pattern.substr(1);  // ".example.com"
  if (suffix.find('*') != std::string_view::npos) return false;
  // At least two labels after the wildcard: "*.com" covers nothing.
  if (suffix.find('.', 1) == std::string_view::npos) return false;
  const std::size_t dot = host.find('.');
  if (dot == 0 || dot == std::string_view::npos) return false;  // one non-empty first label
  return equalFold(host.substr(dot), suffix);
}

}  // namespace

bool nameMatches(std::string_view pattern, std::string_view host) {
  return exactMatch(pattern, host) || wildcardMatch(pattern, host);
}

std::size_t pickCertificate(const std::vector<std::vector<std::string>>& names,
                            std::string_view sni) {
  if (sni.empty()) return 0;
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const std::string& n : names[i]) {
      if (exactMatch(n, sni)) return i;
    }
  }
  for (std::size_t i = 0; i < names.size(); ++i) {
    for (const std::string& n : names[i]) {
      if (wildcardMatch(n, sni)) return i;
    }
  }
  return 0;
}

}  // namespace sluice::tls
