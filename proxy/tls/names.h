#pragma once
// Certificate names (SPEC §9): which certificate a client's SNI picks, by its
// subjectAltName DNS names, wildcards included. Pure; fuzzed.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace sluice::tls {

// RFC 6125 §6.4.3, the way browsers read it: case-insensitive; a trailing
// dot on the host is ignored; "*" only as the whole left-most label, matching
// exactly one non-empty label ("*.example.com" matches "a.example.com", not
// "example.com" or "a.b.example.com"); a pattern with '*' anywhere else
// matches nothing.
bool nameMatches(std::string_view pattern, std::string_view host);

// The certificate for server name `sni`: the first whose names match it
// exactly, else the first matching by wildcard, else 0 (the default). An
// empty `sni` (no SNI sent) gets 0.
std::size_t pickCertificate(const std::vector<std::vector<std::string>>& names,
                            std::string_view sni);

}  // namespace sluice::tls
