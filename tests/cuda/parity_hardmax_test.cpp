// CPU/GPU parity of hardmax attention (rank-1 and general scores): the construction of
// models/hardmax is exact only when every backend rounds alike, so the GPU must equal the CPU bit
// for bit, forward and backward, in f32 and f64; padded sequences (lengths) and ties included.
#include "autodiff/ops/hardmax.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::kExact;
using testing::ParityOptions;

ParityOptions exact(DType dtype) {
  ParityOptions o;
  o.dtype = dtype;
  o.forward = kExact;
  o.backward = kExact;
  return o;
}

TEST(CudaParity, hardmax_attention) {
  GRADUS_PARITY_SETUP(run);
  const Tensor lengths = Tensor::from_vector(std::vector<double>{5, 1, 3}, {3}, DType::i64);
  for (DType dtype : {DType::f32, DType::f64}) {
    run.check("(3, 5, 4)", [](const std::vector<Tensor>& in) {
      return hardmax_attention(in[0], in[1], in[2], in[3]);
    }, {run.normal({3, 5, 4}), run.normal({4}), run.normal({4}), run.uniform({}, 0.2, 0.8)},
              exact(dtype));
    run.check("padded (3, 5, 4)", [&](const std::vector<Tensor>& in) {
      return hardmax_attention(in[0], in[1], in[2], in[3], in[4]);
    }, {run.normal({3, 5, 4}), run.normal({4}), run.normal({4}), run.uniform({}, 0.2, 0.8),
        lengths}, exact(dtype));
    // Repeated tokens on a coarse grid: tied maxima, averaged.
    run.check("ties", [](const std::vector<Tensor>& in) {
      return hardmax_attention(in[0], in[1], in[2], in[3]);
    }, {run.grid({2, 16, 3}, -1, 1, 1), run.normal({3}), run.normal({3}), run.uniform({1}, 0.2, 1.0)},
              exact(dtype));
  }
}

TEST(CudaParity, hardmax_attention_general) {
  GRADUS_PARITY_SETUP(run);
  const Tensor lengths = Tensor::from_vector(std::vector<double>{2, 6}, {2}, DType::i64);
  for (DType dtype : {DType::f32, DType::f64}) {
    run.check("(2, 6, 5)", [](const std::vector<Tensor>& in) {
      return hardmax_attention_general(in[0], in[1], in[2]);
    }, {run.normal({2, 6, 5}), run.normal({5, 5}), run.uniform({}, 0.2, 0.8)}, exact(dtype));
    run.check("padded, alpha 1", [&](const std::vector<Tensor>& in) {
      return hardmax_attention_general(in[0], in[1], in[2], in[3]);
    }, {run.normal({2, 6, 5}), run.normal({5, 5}), run.uniform({}, 1.0, 1.0), lengths},
              exact(dtype));
  }
}

}  // namespace
}  // namespace gradus
