#pragma once
// `sluice explain`: which route, client identity and limits a request would
// meet under a config, without running the proxy (SPEC §1).

#include <string>
#include <vector>

namespace sluice::app {

// Runs `sluice explain` with the arguments after "explain"; prints to
// stdout and returns the exit code (0, 1 on a config error, 2 on usage).
int explainMain(const std::vector<std::string>& args);

}  // namespace sluice::app
