#pragma once
// Reading sluice's /metrics (Prometheus text exposition 0.0.4) in integration
// tests: scrape the admin listener, find one sample by name and exact label set.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/integration/harness.h"

namespace sluice::testing {

// One sample line: `name{label="value",...} value`.
struct PromSample {
  std::string name;
  Headers labels;  // in order, values unescaped
  double value = 0;
};

// Every sample line of an exposition; comment lines and unparsable lines are
// skipped.
std::vector<PromSample> parsePromText(std::string_view text);

// The value of the sample `name` whose label set is exactly `labels` (any
// order); nullopt when there is none.
std::optional<double> promValue(std::string_view text, std::string_view name,
                                const Headers& labels = {});

// GET /metrics on the admin listener at `admin_port`; nullopt unless it answered 200.
std::optional<Response> scrapeMetrics(int admin_port,
                                      Deadline deadline = deadlineIn(std::chrono::seconds(5)));

// scrapeMetrics() + promValue(): nullopt when the scrape failed or the sample is absent.
std::optional<double> scrapeValue(int admin_port, std::string_view name,
                                  const Headers& labels = {});

}  // namespace sluice::testing
