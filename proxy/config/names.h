#pragma once
// What the names in a config file may contain.

#include <string>
#include <string_view>

namespace sluice::config {

class Reader;
struct Entry;

// RFC 9110 §5.6.2 tchar.
bool isTokenChar(char c);
// RFC 9110 §5.6.2 token: header names and methods.
bool isToken(std::string_view text);
// Names of upstreams and limits end up in metric labels and in the quoted
// RateLimit-Policy item (SPEC §4), so they stay plain: letters, digits, '_', '-', '.'.
bool isPlainName(std::string_view text);
// Reports `name`, the key of `entry` in upstreams: or limits: (`kind` "upstream"
// or "limit"), unless it is plain.
void checkPlainName(Reader& reader, const Entry& entry, const std::string& name,
                    std::string_view kind);

}  // namespace sluice::config
