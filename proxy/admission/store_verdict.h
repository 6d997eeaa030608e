#pragma once
// The verdict of the limits a shared store decides (SPEC §13): the store's
// reply read per limit, or, when the store failed or was too slow, each
// limit's fallback policy (`on_store_error`). Pure: counting and the local
// fallback decision are the caller's.

#include <cstdint>
#include <span>
#include <vector>

#include "proxy/admission/headers.h"
#include "proxy/limiter/decide.h"
#include "proxy/store/redis_store.h"

namespace sluice::admission {

enum class RemoteOutcome {
  kAllowed,
  kDenied,
  kDecideLocally,  // store failed, on_store_error: local: the worker's own bucket decides
};

struct RemoteVerdict {
  bool store_failed = false;            // error, timeout or a reply of the wrong shape
  std::vector<RemoteOutcome> outcomes;  // parallel to the remote probes
  std::vector<BucketView> views;        // parallel to the remote probes; empty when failed
  // Denied by the store: the denying limit with the longest wait (index into
  // views) and that wait in whole seconds (>= 1). -1 / 1 otherwise.
  int headline = -1;
  std::int64_t retry_after = 1;
};

// Reads `reply` for the probes `remote` sent to the store. The probes carry
// the burst, window and interval the request was sent with.
RemoteVerdict readStoreReply(std::span<const limiter::Probe> remote, const store::Reply& reply);

// The fallback policy of one limit when the store failed.
RemoteOutcome fallbackOutcome(config::StoreErrorPolicy policy);

}  // namespace sluice::admission
