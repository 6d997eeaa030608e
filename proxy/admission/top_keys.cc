#include "proxy/admission/top_keys.h"

#include "proxy/client/client_ip.h"

namespace sluice::admission {
namespace {

bool looksLikeIpKey(const client::IpAddr& ip, int v4, int v6) {
  if (client::isIpv4(ip)) return client::ipKey(ip, v4, v6) == ip;
  if (v6 >= 128) return false;
  return client::ipKey(ip, v4, v6) == ip;
}

}  // namespace

std::string keyText(config::LimitScope scope, const client::KeyHash& key, int ipv4_prefix,
                    int ipv6_prefix) {
  if (scope == config::LimitScope::kGlobal) return "global";
  const client::IpAddr ip = client::ipFromKey(key);
  if (scope == config::LimitScope::kIp || looksLikeIpKey(ip, ipv4_prefix, ipv6_prefix)) {
    return client::ipKeyText(ip, ipv4_prefix, ipv6_prefix);
  }
  return client::fingerprint(key);
}

void appendTopKeysJson(const limiter::Limit& limit, std::size_t top, limiter::Nanos now,
                       const config::ClientsConfig& clients, std::string* json) {
  json->append("{\"limit\":\"");
  json->append(limit.name());
  json->append("\",\"per\":\"");
  json->append(config::toString(limit.scope()));
  json->append("\",\"keys\":[");
  bool first = true;
  for (const limiter::KeyStats& k : limit.topDenied(top, now)) {
    if (!first) json->push_back(',');
    first = false;
    json->append("{\"key\":\"");
    json->append(keyText(limit.scope(), k.key, clients.ipv4_prefix, clients.ipv6_prefix));
    json->append("\",\"tokens\":");
    json->append(std::to_string(k.remaining));
    json->append(",\"allowed\":");
    json->append(std::to_string(k.allowed));
    json->append(",\"denied\":");
    json->append(std::to_string(k.denied));
    json->push_back('}');
  }
  json->append("]}\n");
}

}  // namespace sluice::admission
