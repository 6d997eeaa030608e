#include "proxy/config/document.h"

#include <yaml-cpp/eventhandler.h>

#include <cstddef>
#include <exception>
#include <sstream>

namespace sluice::config {
namespace {

constexpr int kMaxDocuments = 64;  // empty documents tolerated before giving up

// Records where a document starts and whether it holds anything but null;
// used to walk the documents of a stream without building them.
class DocumentScan : public YAML::EventHandler {
 public:
  const YAML::Mark& start() const { return start_; }
  bool hasContent() const { return content_; }

  void OnDocumentStart(const YAML::Mark& mark) override {
    start_ = mark;
    content_ = false;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override { content_ = true; }
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t,
                const std::string&) override {
    content_ = true;
  }
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    content_ = true;
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    content_ = true;
  }
  void OnMapEnd() override {}

 private:
  YAML::Mark start_;
  bool content_ = false;
};

// Checks the stream holds one document; false when it cannot be loaded.
// YAML::LoadAll is not used: on a stray ',' where a document should start,
// yaml-cpp 0.7 reports an empty document without consuming anything, and
// LoadAll collects empty documents until memory runs out.
bool scanDocuments(const std::string& yaml, Reader& reader) {
  std::istringstream in(yaml);
  YAML::Parser parser(in);
  DocumentScan scan;
  if (!parser.HandleNextDocument(scan)) return true;
  YAML::Mark previous = scan.start();
  for (int documents = 1; parser.HandleNextDocument(scan); ++documents) {
    if (scan.start().pos == previous.pos || documents > kMaxDocuments) {
      auto pos = static_cast<std::size_t>(scan.start().pos);
      std::string what = pos < yaml.size() ? "'" + std::string(1, yaml[pos]) + "'" : "content";
      reader.error(scan.start(), "YAML syntax error: unexpected " + what);
      return false;
    }
    if (scan.hasContent()) {
      reader.error(scan.start(), "a config file holds one YAML document; found a second one");
      return true;
    }
    previous = scan.start();
  }
  return true;
}

}  // namespace

void loadDocument(const std::string& yaml, Reader& reader,
                  const std::function<void(const YAML::Node&)>& load_root) {
  try {
    if (scanDocuments(yaml, reader)) load_root(YAML::Load(yaml));
  } catch (const YAML::Exception& e) {
    reader.error(e.mark, "YAML syntax error: " + e.msg);
  } catch (const std::exception& e) {
    reader.errorWithoutPosition(std::string("cannot load the config: ") + e.what());
  } catch (...) {
    reader.errorWithoutPosition("cannot load the config: unknown error");
  }
}

}  // namespace sluice::config
