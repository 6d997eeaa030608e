// Certificate-name matching and SNI selection (SPEC §9) on arbitrary bytes:
// no crash, no UB, and agreement with a plain label-by-label reading of the
// rule: equal ignoring case and one trailing dot, or "*." + a suffix of at
// least two labels matching all but exactly one non-empty left-most label.
// The input is "pattern\nhost\nname\nname...": the names form two
// certificates (split at an empty line) for pickCertificate.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/fuzz_util.h"
#include "proxy/tls/names.h"

namespace {

using sluice::tls::nameMatches;
using sluice::tls::pickCertificate;

std::string folded(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  }
  if (!out.empty() && out.back() == '.') out.pop_back();
  return out;
}

std::vector<std::string> labels(const std::string& s) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = s.find('.', start);
    out.push_back(s.substr(start, dot - start));
    if (dot == std::string::npos) return out;
    start = dot + 1;
  }
}

bool reference(std::string_view pattern, std::string_view host) {
  const std::string p = folded(pattern);
  const std::string h = folded(host);
  if (h.empty()) return false;
  if (p.find('*') == std::string::npos) return p == h;
  const std::vector<std::string> pl = labels(p);
  const std::vector<std::string> hl = labels(h);
  if (pl.front() != "*" || pl.size() < 3 || pl.size() != hl.size() || hl.front().empty()) {
    return false;
  }
  for (std::size_t i = 1; i < pl.size(); ++i) {
    if (pl[i].find('*') != std::string::npos || pl[i] != hl[i]) return false;
  }
  return true;
}

std::vector<std::string_view> lines(std::string_view in) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= in.size()) {
    const std::size_t nl = in.find('\n', start);
    out.push_back(in.substr(start, nl == std::string_view::npos ? nl : nl - start));
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::vector<std::string_view> ls = lines(in);
  const std::string_view pattern = ls[0];
  const std::string_view host = ls.size() > 1 ? ls[1] : std::string_view();
  FUZZ_CHECK(nameMatches(pattern, host) == reference(pattern, host));
  std::vector<std::vector<std::string>> certs(1);
  for (std::size_t i = 2; i < ls.size(); ++i) {
    if (ls[i].empty()) {
      certs.emplace_back();
    } else {
      certs.back().emplace_back(ls[i]);
    }
  }
  const std::size_t picked = pickCertificate(certs, host);
  FUZZ_CHECK(picked < certs.size());
  bool any = false;
  for (const auto& names : certs) {
    for (const std::string& n : names) any = any || nameMatches(n, host);
  }
  if (picked != 0) {
    bool matches = false;
    for (const std::string& n : certs[picked]) matches = matches || nameMatches(n, host);
    FUZZ_CHECK(matches);
  }
  if (!any) FUZZ_CHECK(picked == 0);
  return 0;
}
