#include "proxy/upstream/upstream_conn.h"

#include <unistd.h>

namespace sluice::upstream {

UpstreamConn::~UpstreamConn() {
  if (read_ev != nullptr) event_free(read_ev);
  if (write_ev != nullptr) event_free(write_ev);
  if (fd >= 0) ::close(fd);
}

}  // namespace sluice::upstream
