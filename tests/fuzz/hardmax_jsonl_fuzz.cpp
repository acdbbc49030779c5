// Fuzz target: the hardmax data loader (models/hardmax/dataset.h, JSON Lines) on an arbitrary
// file, and what runs on a loaded data set before any model is built (the separability check and
// the point index).
//
// Expected outcome of bad input: a gradus::Error naming FILE:LINE. Checked on success: the data
// set validates (every label within kMaxLabel, finite coordinates), and it survives a round trip
// through save_jsonl bit for bit.
#include <cmath>
#include <cstdio>
#include <string>

#include "fuzz/fuzz_support.h"
#include "models/hardmax/dataset.h"

using gradus::hardmax::Dataset;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = gradus::fuzz::write_input(data, size, ".jsonl");

  gradus::fuzz::expect_only_gradus_errors("hardmax_jsonl_fuzz", [&] {
    const Dataset ds = gradus::hardmax::load_jsonl(path);
    ds.validate();
    for (int64_t label : ds.labels)
      // Compared without std::llabs, which is undefined for INT64_MIN.
      if (label > gradus::hardmax::kMaxLabel || label < -gradus::hardmax::kMaxLabel)
        gradus::fuzz::finding("hardmax_jsonl_fuzz",
                              "label " + std::to_string(label) + " was accepted");
    gradus::hardmax::find_label_conflicts(ds);
    const gradus::hardmax::PointIndex index = gradus::hardmax::index_points(ds);
    if (static_cast<int64_t>(index.point_id.size()) != ds.num_tokens())
      gradus::fuzz::finding("hardmax_jsonl_fuzz", "the point index misses tokens");

    const std::string copy = path + ".copy.jsonl";
    gradus::hardmax::save_jsonl(ds, copy);
    const Dataset again = gradus::hardmax::load_jsonl(copy);
    std::remove(copy.c_str());
    if (again.d != ds.d || again.tokens != ds.tokens || again.offsets != ds.offsets ||
        again.labels != ds.labels)
      gradus::fuzz::finding("hardmax_jsonl_fuzz", "save_jsonl + load_jsonl changed the data set");
  });
  return 0;
}
