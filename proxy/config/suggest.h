#pragma once
// Did-you-mean for misspelt keys, choices and names in the config file.

#include <cstddef>
#include <string>
#include <string_view>

namespace sluice::config {

// Optimal string alignment distance: an adjacent swap ("lsiten") costs one.
std::size_t editDistance(std::string_view a, std::string_view b);

// " (did you mean 'listen'?)" when one candidate is a likely typo of `word`, else "".
template <typename Range>
std::string suggestion(std::string_view word, const Range& candidates) {
  std::string best;
  std::size_t best_distance = 3;
  for (const auto& candidate : candidates) {
    std::size_t distance = editDistance(word, candidate);
    if (distance < best_distance && distance < word.size()) {
      best_distance = distance;
      best = std::string(candidate);
    }
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

}  // namespace sluice::config
