#include "tests/integration/prom_scrape.h"

#include <algorithm>
#include <cstdlib>

namespace sluice::testing {
namespace {

// Parses `{k="v",...}` starting at text[pos] == '{'; advances pos past '}'.
bool parseLabels(std::string_view text, size_t& pos, Headers* out) {
  ++pos;  // '{'
  while (pos < text.size()) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == ',')) ++pos;
    if (pos < text.size() && text[pos] == '}') {
      ++pos;
      return true;
    }
    size_t eq = text.find('=', pos);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::string name(text.substr(pos, eq - pos));
    std::string value;
    pos = eq + 2;
    for (; pos < text.size() && text[pos] != '"'; ++pos) {
      if (text[pos] == '\\' && pos + 1 < text.size()) {
        ++pos;
        value += text[pos] == 'n' ? '\n' : text[pos];
      } else {
        value += text[pos];
      }
    }
    if (pos >= text.size()) return false;
    ++pos;  // closing quote
    out->emplace_back(std::move(name), std::move(value));
  }
  return false;
}

bool sameLabels(Headers a, Headers b) {
  std::sort(a.begin(), a.end());
  std::sort(b.begin(), b.end());
  return a == b;
}

}  // namespace

std::vector<PromSample> parsePromText(std::string_view text) {
  std::vector<PromSample> out;
  while (!text.empty()) {
    size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.empty() || line.front() == '#') continue;
    PromSample s;
    size_t pos = line.find_first_of("{ ");
    if (pos == std::string_view::npos) continue;
    s.name = std::string(line.substr(0, pos));
    if (line[pos] == '{' && !parseLabels(line, pos, &s.labels)) continue;
    while (pos < line.size() && line[pos] == ' ') ++pos;
    std::string value(line.substr(pos, line.find(' ', pos) - pos));
    char* end = nullptr;
    s.value = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size()) continue;
    out.push_back(std::move(s));
  }
  return out;
}

std::optional<double> promValue(std::string_view text, std::string_view name,
                                const Headers& labels) {
  for (const PromSample& s : parsePromText(text)) {
    if (s.name == name && sameLabels(s.labels, labels)) return s.value;
  }
  return std::nullopt;
}

std::optional<Response> scrapeMetrics(int admin_port, Deadline deadline) {
  auto r = httpGet(admin_port, "/metrics", {}, deadline);
  if (!r || r->status != 200 || !r->complete) return std::nullopt;
  return r;
}

std::optional<double> scrapeValue(int admin_port, std::string_view name, const Headers& labels) {
  auto r = scrapeMetrics(admin_port);
  if (!r) return std::nullopt;
  return promValue(r->body, name, labels);
}

}  // namespace sluice::testing
