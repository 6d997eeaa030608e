#pragma once
// Admission: client identity + every limit of the route (SPEC §3 steps 3-5).
// The data path hands over the request's identifying parts and gets back
// either "forward" or a local answer (429/401/400) with its headers.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/config/config.h"
#include "proxy/metrics/metrics.h"

struct event_base;

namespace sluice::admission {

// How often the app calls AdmissionContext::sweep.
inline constexpr std::int64_t kSweepTick = 100 * 1000 * 1000;

struct AdmissionResult;

// Receives the verdict of a decision that had to ask a shared store.
class AdmissionWaiter {
 public:
  virtual ~AdmissionWaiter() = default;
  // Called once on the worker's thread (unless the decision was cancelled).
  virtual void onAdmission(AdmissionResult& result) = 0;
};

// status value of a decision still waiting for the store.
inline constexpr int kAdmissionPending = -1;

struct RequestView {
  int worker = 0;                       // the deciding worker ...
  ::event_base* base = nullptr;         // ... and its loop (store I/O)
  AdmissionWaiter* waiter = nullptr;    // told when a pending decision ends
  std::array<std::uint8_t, 16> peer{};  // IPv4-mapped form
  std::string_view xff;                 // all X-Forwarded-For lines joined by ", "
  std::string_view api_key_header;      // value of clients.api_key.header, or empty
  bool has_api_key_header = false;
  std::string_view query;  // raw query string (after '?'), or empty
};

struct AdmissionResult {
  int status = 0;                          // 0: forward; kAdmissionPending; else answer locally
  std::uint64_t ticket = 0;                // with kAdmissionPending: for cancel()
  std::string headers;                     // extra header lines for the local answer
  std::string allowed_headers;             // rate-limit headers for an allowed response
  std::vector<std::string_view> violated;  // denying limit names (429)
};

// Per-route compiled limit list (opaque to the data path).
struct RouteLimits {
  std::vector<std::size_t> limit_indexes;
};

class AdmissionContext {
 public:
  virtual ~AdmissionContext() = default;
  // Decides one request on route `route`; fills `out`. Never throws.
  virtual void decide(const RouteLimits& route, const RequestView& req, std::int64_t now,
                      AdmissionResult* out) = 0;
  // Appends one sample per limit for /metrics.
  virtual void sample(std::vector<metrics::LimitSample>* out) const = 0;
  // A pending decision's request went away.
  virtual void cancel(int worker, std::uint64_t ticket) = 0;
  // JSON for /limits: the `top` keys of limit `name` with the most denials.
  // False when there is no such limit.
  virtual bool topKeys(std::string_view name, std::size_t top, std::int64_t now,
                       std::string* json) const = 0;
  // Sweeps a bounded slice of full buckets (called from a timer).
  virtual void sweep(std::int64_t now) = 0;
};

}  // namespace sluice::admission
