#include "proxy/transport/outbox.h"

namespace sluice::transport {

std::size_t Outbox::bytes() const {
  std::size_t n = 0;
  for (int i = 0; i < count; ++i) n += iov[static_cast<std::size_t>(i)].iov_len;
  return n;
}

void Outbox::consume(std::size_t n) {
  int i = 0;
  while (i < count && n >= iov[static_cast<std::size_t>(i)].iov_len) {
    n -= iov[static_cast<std::size_t>(i)].iov_len;
    ++i;
  }
  if (i > 0) {
    for (int k = i; k < count; ++k) {
      iov[static_cast<std::size_t>(k - i)] = iov[static_cast<std::size_t>(k)];
    }
    count -= i;
  }
  if (count > 0 && n > 0) {
    iov[0].iov_base = static_cast<char*>(iov[0].iov_base) + n;
    iov[0].iov_len -= n;
  }
}

}  // namespace sluice::transport
