#pragma once
// Loading the one YAML document of a config file, with yaml-cpp kept on a leash:
// its syntax errors and exceptions become ConfigErrors, never escape.

#include <yaml-cpp/yaml.h>

#include <functional>
#include <string>

#include "proxy/config/reader.h"

namespace sluice::config {

// Runs `load_root` on the document in `yaml`. Syntax errors, a second document
// and any exception thrown on the way (by yaml-cpp or `load_root`) are
// recorded in `reader`; `load_root` is not run when nothing can be loaded.
void loadDocument(const std::string& yaml, Reader& reader,
                  const std::function<void(const YAML::Node&)>& load_root);

}  // namespace sluice::config
