// Fuzz target: the experiment descriptor (experiments/lib/descriptor.h) on arbitrary text.
//
// The input is the descriptor file as `gradus run` reads it (JSON with comments). Lines of the form
// `//set PATH=VALUE` are also applied as `--set` overrides (to the JSON parser they are comments),
// so the fuzzer reaches apply_override with the same input. Expected outcome of bad input: a
// gradus::Error (DescriptorError for a document that parses). Checked on success: the resolved
// descriptor parses back to itself (descriptor.h promises it).
#include <sstream>
#include <string>
#include <vector>

#include "experiments/lib/descriptor.h"
#include "fuzz/fuzz_support.h"

using gradus::experiments::Descriptor;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> overrides;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("//set ", 0) == 0) overrides.push_back(line.substr(6));
  const std::string path = gradus::fuzz::write_input(data, size, "_descriptor.json");

  gradus::fuzz::expect_only_gradus_errors("descriptor_fuzz", [&] {
    const Descriptor d = gradus::experiments::load_descriptor(path, overrides);
    const nlohmann::json resolved = d.to_json();
    const Descriptor again =
        gradus::experiments::parse_descriptor(resolved, "resolved", {}, d.log.name);
    if (again.to_json() != resolved)
      gradus::fuzz::finding("descriptor_fuzz",
                            "the resolved descriptor does not parse back to "
                            "itself:\n" +
                                resolved.dump() + "\n" + again.to_json().dump());
  });
  return 0;
}
