#pragma once
// Probe planning (SPEC §3 steps 3-4): who the request is to the limits, and
// which bucket of each limit it draws from. Pure: the data path and
// `sluice explain` both plan with this, so explain cannot drift from what the
// proxy does.
//
//   Identity id(cfg.clients, view);
//   for (const config::LimitConfig& lc : route's limits) {
//     const LimitKey k = limitKey(lc, id);
//     if (k.kind == KeyKind::kSkip) continue;            // missing: skip
//     if (int status = localAnswer(k.kind)) return status;  // 400 / 401
//     probe lc's bucket k.key (k.exempt: not evaluated)
//   }

#include <optional>

#include "proxy/admission/admission.h"
#include "proxy/client/api_key.h"
#include "proxy/client/client_ip.h"
#include "proxy/client/key_hash.h"
#include "proxy/config/config.h"

namespace sluice::admission {

// The identifying parts of one request, each computed on first use: a route
// without a per: ip limit never parses X-Forwarded-For.
class Identity {
 public:
  Identity(const config::ClientsConfig& clients, const RequestView& req)
      : clients_(clients), req_(req) {}

  // The client address: the peer, or X-Forwarded-For's from a trusted peer.
  const client::ClientIp& clientIp() {
    if (!ip_) ip_ = client::clientIp(req_.peer, req_.xff, clients_.trusted_proxies);
    return *ip_;
  }
  // The client's network (ipv4_prefix / ipv6_prefix), the per: ip key.
  const client::IpAddr& network() {
    if (!network_)
      network_ = client::ipKey(clientIp().ip, clients_.ipv4_prefix, clients_.ipv6_prefix);
    return *network_;
  }
  const client::KeyHash& ipKey() {
    if (!ip_key_) ip_key_ = client::hashIpKey(network());
    return *ip_key_;
  }
  // The API key: the configured header, else the configured query parameter.
  const client::ApiKey& apiKey() {
    if (!api_key_) {
      api_key_ = client::apiKey(req_.has_api_key_header
                                    ? std::optional<std::string_view>(req_.api_key_header)
                                    : std::nullopt,
                                req_.query, clients_.api_key.query);
    }
    return *api_key_;
  }

 private:
  const config::ClientsConfig& clients_;
  const RequestView& req_;
  std::optional<client::ClientIp> ip_;
  std::optional<client::IpAddr> network_;
  std::optional<client::KeyHash> ip_key_;
  std::optional<client::ApiKey> api_key_;
};

// Which bucket of a limit a request draws from.
enum class KeyKind {
  kGlobal,      // per: global: the one bucket
  kIp,          // per: ip: the client's network
  kApiKey,      // per: api_key: the key's
  kIpNoKey,     // per: api_key without a key, missing: ip: the client's network
  kSkip,        // per: api_key without a key, missing: skip: the limit does not apply
  kReject,      // per: api_key without a key, missing: reject: answered 401
  kKeyTooLong,  // per: api_key with a key over 256 bytes: answered 400
};

struct LimitKey {
  KeyKind kind = KeyKind::kGlobal;
  bool exempt = false;  // client in the limit's exempt CIDRs: not evaluated
  client::KeyHash key;  // the bucket (kIp, kApiKey, kIpNoKey and not exempt)
};

// The local answer a key kind forces: 400, 401, else 0.
constexpr int localAnswer(KeyKind kind) {
  return kind == KeyKind::kKeyTooLong ? 400 : kind == KeyKind::kReject ? 401 : 0;
}

// Plans limit `lc` for the request `id` describes.
inline LimitKey limitKey(const config::LimitConfig& lc, Identity& id) {
  LimitKey k;
  if (!lc.exempt.empty() && client::inAny(id.clientIp().ip, lc.exempt)) k.exempt = true;
  switch (lc.per) {
    case config::LimitScope::kGlobal:
      k.kind = KeyKind::kGlobal;
      return k;
    case config::LimitScope::kIp:
      k.kind = KeyKind::kIp;
      break;
    case config::LimitScope::kApiKey: {
      const client::ApiKey& key = id.apiKey();
      if (key.status == client::ApiKeyStatus::kTooLong) {
        k.kind = KeyKind::kKeyTooLong;
        return k;
      }
      if (key.status == client::ApiKeyStatus::kFound) {
        k.kind = KeyKind::kApiKey;
        k.key = client::hashApiKey(key.value);
        return k;
      }
      k.kind = lc.missing == config::MissingKey::kSkip     ? KeyKind::kSkip
               : lc.missing == config::MissingKey::kReject ? KeyKind::kReject
                                                           : KeyKind::kIpNoKey;
      if (k.kind != KeyKind::kIpNoKey) return k;
      break;
    }
  }
  if (!k.exempt) k.key = id.ipKey();
  return k;
}

}  // namespace sluice::admission
