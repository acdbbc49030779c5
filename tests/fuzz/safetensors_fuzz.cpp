// Fuzz target: the safetensors reader (models/io/safetensors.h) and the readers built on it: the
// LM checkpoint's configuration and weights (models/checkpoint/checkpoint.h) and the hardmax model
// (models/hardmax/model.h), on arbitrary bytes.
//
// Expected outcome of bad input: a gradus::Error naming the file. Checked on success: every tensor
// is a defined contiguous CPU tensor whose bytes fit the file.
#include <string>
#include <vector>

#include "fuzz/fuzz_support.h"
#include "models/checkpoint/checkpoint.h"
#include "models/hardmax/dataset.h"
#include "models/hardmax/forward.h"
#include "models/hardmax/model.h"
#include "models/io/safetensors.h"

namespace {

// Building an LM allocates its parameters: a hostile configuration (vocab_size 10^12) is a valid
// request for too much memory, not a bug, so only small ones are built.
bool small_enough_to_build(const gradus::ModelConfig& c) {
  const double h = static_cast<double>(c.hidden_size);
  const double per_layer = 4.0 * h * h + 3.0 * h * static_cast<double>(c.intermediate_size);
  const double params = 2.0 * static_cast<double>(c.vocab_size) * h +
                        static_cast<double>(c.num_hidden_layers) * per_layer;
  return params <= 1e6 && c.max_position_embeddings <= 4096;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = gradus::fuzz::write_input(data, size, ".safetensors");

  gradus::fuzz::expect_only_gradus_errors("safetensors_fuzz", [&] {
    const gradus::SafetensorsFile f = gradus::load_safetensors(path);
    for (const auto& [name, t] : f.tensors) {
      if (!t.defined() || !t.is_contiguous() || !t.device().is_cpu() || t.nbytes() > size)
        gradus::fuzz::finding("safetensors_fuzz",
                              "tensor '" + name + "' was loaded as " + t.describe());
    }
  });
  gradus::fuzz::expect_only_gradus_errors("safetensors_fuzz", [&] {
    const gradus::ModelConfig config = gradus::read_model_config(path);
    if (small_enough_to_build(config)) gradus::load_model(path);
  });
  gradus::fuzz::expect_only_gradus_errors("safetensors_fuzz", [&] {
    // A model that loads is valid (load_net validates it), so it must classify a sequence.
    const gradus::hardmax::Net net = gradus::hardmax::load_net(path);
    gradus::hardmax::Dataset one;
    one.d = net.d;
    one.add(std::vector<double>(static_cast<size_t>(net.d), 0.5), 0);
    gradus::hardmax::classify(net, one);
  });
  return 0;
}
