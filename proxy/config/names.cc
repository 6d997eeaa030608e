#include "proxy/config/names.h"

#include <algorithm>
#include <cctype>

#include "proxy/config/reader.h"

namespace sluice::config {

bool isTokenChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool isToken(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

bool isPlainName(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-' || c == '.';
  });
}

void checkPlainName(Reader& reader, const Entry& entry, const std::string& name,
                    std::string_view kind) {
  if (isPlainName(name)) return;
  reader.error(entry.anchor, std::string(kind) + " name '" + name +
                                 "' may only contain letters, digits, '_', '-' and '.'");
}

}  // namespace sluice::config
