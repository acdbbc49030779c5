// CPU/GPU parity of the graph ops (autodiff/ops/graph.h, kernels/cuda/graph.cu). The CUDA kernels
// reproduce the CPU's order of operations (compares and copies for the extrema and masks, sums in
// ascending edge / row / channel order with rounded intrinsics for the CSR products), so every
// comparison here is exact in f32 and f64, forward and backward; the one exception is the sum a
// broadcast backward adds over its batch axes (the reduce kernels' order, not the graph kernels').
// Inputs include rows without neighbours, tied and infinite features, empty CSR rows, padding
// (lengths) and graphs without any edge.
#include "autodiff/ops/graph.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::kExact;
using testing::ParityOptions;
using testing::ParityRun;

ParityOptions exact(DType dtype, bool differentiate = true) {
  ParityOptions o;
  o.dtype = dtype;
  o.forward = kExact;
  o.backward = kExact;
  o.differentiate = differentiate;
  return o;
}

// A 0 / 1 adjacency (B, L, S) with P(edge) = p, whose row `empty_row` (flat over B L) has no
// neighbour; a constant (no gradient).
Tensor adjacency_with_empty_row(ParityRun& run, const Shape& shape, double p, int64_t empty_row) {
  const int64_t S = shape.back();
  std::vector<int64_t> row;
  for (int64_t j = 0; j < S; ++j) row.push_back(empty_row * S + j);
  return ParityRun::with_values(run.mask(shape, p), row, 0.0);
}

void check_extremum(ParityRun& run, const char* name, Tensor (*op)(const Tensor&, const Tensor&)) {
  auto fn = [op](const std::vector<Tensor>& in) { return op(in[0], in[1]); };
  for (DType dtype : {DType::f32, DType::f64}) {
    // Features on a coarse grid: many ties (the first neighbour among them wins, and takes the
    // whole gradient); d = 37 spans more than one warp per row.
    run.check(fmt::format("{}: ties, an isolated node, (2, 9, 11) x (2, 11, 37)", name), fn,
              {adjacency_with_empty_row(run, {2, 9, 11}, 0.4, 4), run.grid({2, 11, 37}, -2, 2, 1)},
              exact(dtype));
    // Soft weights (only their sign matters), infinite features, one sender.
    Tensor x = ParityRun::with_values(run.normal({3, 6, 5}), {0, 7, 12}, HUGE_VAL);
    x = ParityRun::with_values(x, {1, 8, 20}, -HUGE_VAL);
    run.check(fmt::format("{}: soft adjacency, infinities", name), fn, {run.normal({3, 4, 6}), x},
              exact(dtype));
    run.check(fmt::format("{}: one sender", name), fn,
              {run.normal({2, 3, 1}), run.normal({2, 1, 4})}, exact(dtype));
    // Features shared by three heads of adjacency: the engine sums the broadcast gradient over
    // the heads (the reduce kernels' order, not this op's: a sum tolerance).
    ParityOptions broadcast = exact(dtype);
    broadcast.backward = testing::sum_tolerance(dtype, 3);
    run.check(fmt::format("{}: broadcast features", name), fn,
              {run.mask({2, 3, 7, 7}, 0.5), run.normal({2, 1, 7, 4})}, broadcast);
    // One adjacency for three heads of features (no gradient to sum: exact).
    run.check(fmt::format("{}: broadcast adjacency", name), fn,
              {run.mask({2, 1, 7, 7}, 0.5), run.normal({2, 3, 7, 4})}, exact(dtype));
  }
}

TEST(CudaParity, neighbour_max) {
  GRADUS_PARITY_SETUP(run);
  check_extremum(run, "neighbour_max", &neighbour_max);
}

TEST(CudaParity, neighbour_min) {
  GRADUS_PARITY_SETUP(run);
  check_extremum(run, "neighbour_min", &neighbour_min);
}

TEST(CudaParity, greater_mask) {
  GRADUS_PARITY_SETUP(run);
  auto fn = [](const std::vector<Tensor>& in) { return greater_mask(in[0], 0.5); };
  for (DType dtype : {DType::f32, DType::f64}) {
    // A grid of halves puts entries exactly on the threshold (0: not greater); a NaN gives 0.
    Tensor x = ParityRun::with_values(run.grid({5, 203}, -2, 2, 0.5), {3}, NAN);
    run.check("grid with NaN", fn, {x}, exact(dtype, false));
    run.check(
        "transposed view",
        [](const std::vector<Tensor>& in) { return greater_mask(transpose(in[0], 0, 1), -0.25); },
        {run.normal({6, 4})}, exact(dtype, false));
  }
}

TEST(CudaParity, topk_mask) {
  GRADUS_PARITY_SETUP(run);
  for (DType dtype : {DType::f32, DType::f64}) {
    for (int64_t k : {1, 3, 17, 300, 601}) {
      // Rows of 601 entries span three chunks of the block-wide tie count; a grid of integers
      // makes hundreds of ties per row; NaN ranks last; -0 and +0 tie.
      Tensor x = run.grid({4, 601}, -5, 5, 1);
      x = ParityRun::with_values(x, {0, 5, 610, 1201}, NAN);
      x = ParityRun::with_values(x, {1, 2, 3}, -0.0);
      x = ParityRun::with_values(x, {4, 6}, 0.0);
      run.check(
          fmt::format("ties, k = {}", k),
          [k](const std::vector<Tensor>& in) { return topk_mask(in[0], k); }, {x},
          exact(dtype, false));
    }
    // Distinct values, a strided view, every k of a short row.
    for (int64_t k = 1; k <= 7; ++k)
      run.check(
          fmt::format("transposed (7, 5), k = {}", k),
          [k](const std::vector<Tensor>& in) { return topk_mask(transpose(in[0], 0, 1), k); },
          {run.normal({7, 5})}, exact(dtype, false));
    // A row of NaN only: the k lowest indices.
    Tensor nan_row = ParityRun::with_values(run.normal({2, 9}), {0, 1, 2, 3, 4, 5, 6, 7, 8}, NAN);
    run.check(
        "all NaN row", [](const std::vector<Tensor>& in) { return topk_mask(in[0], 4); }, {nan_row},
        exact(dtype, false));
  }
}

// The CSR tensors as outputs: row_ptr, col and source (i64, exact).
std::vector<Tensor> csr_parts(const CsrGraph& g) { return {g.row_ptr, g.col, g.source}; }

TEST(CudaParity, dense_to_csr) {
  GRADUS_PARITY_SETUP(run);
  const Tensor lengths = Tensor::from_vector(std::vector<double>{70, 33, 0}, {3}, DType::i64);
  for (DType dtype : {DType::f32, DType::f64}) {
    // S = 70 senders: three ballots of 32 per row; a grid puts entries on the threshold.
    for (bool causal : {false, true}) {
      run.check_multi(
          fmt::format("(3, 70, 70), causal {}", causal),
          [causal](const std::vector<Tensor>& in) {
            return csr_parts(dense_to_csr(in[0], 0.25, causal));
          },
          {run.grid({3, 70, 70}, -1, 1, 0.25)}, exact(dtype, false));
      run.check_multi(
          fmt::format("padded, causal {}", causal),
          [causal](const std::vector<Tensor>& in) {
            return csr_parts(dense_to_csr(in[0], 0.0, causal, in[1]));
          },
          {run.normal({3, 70, 70}), lengths}, exact(dtype, false));
    }
    // L != S, empty rows, and lengths left on the CPU for an adjacency on the device.
    run.check_multi(
        "(2, 5, 40), CPU lengths",
        [](const std::vector<Tensor>& in) {
          const Tensor len = Tensor::from_vector(std::vector<double>{5, 3}, {2}, DType::i64);
          return csr_parts(dense_to_csr(in[0], 0.5, false, len));
        },
        {adjacency_with_empty_row(run, {2, 5, 40}, 0.3, 2)}, exact(dtype, false));
    // No edge at all: nnz = 0.
    run.check_multi(
        "no edge",
        [](const std::vector<Tensor>& in) { return csr_parts(dense_to_csr(in[0], 10.0, true)); },
        {run.normal({2, 4, 4})}, exact(dtype, false));
  }
}

TEST(CudaParity, csr_matmul) {
  GRADUS_PARITY_SETUP(run);
  for (DType dtype : {DType::f32, DType::f64}) {
    // The Sparse-GIN pattern: the graph of a thresholded adjacency, its kept entries gathered as
    // the edge weights (so the adjacency gets a gradient through them); padding empties rows.
    const Tensor lengths = Tensor::from_vector(std::vector<double>{9, 4}, {2}, DType::i64);
    for (int64_t d : {3, 40}) {
      run.check(
          fmt::format("weights from the adjacency, d = {}", d),
          [&lengths](const std::vector<Tensor>& in) {
            const CsrGraph g = dense_to_csr(detach(in[0]), 0.2, true, lengths);
            const Tensor w = index_select(reshape(in[0], {-1}), 0, g.source);
            return csr_matmul(g, w, in[1]);
          },
          {run.uniform({2, 9, 9}, 0, 1), run.normal({18, d})}, exact(dtype));
    }
    // Free edge weights on a graph with empty rows and empty columns, x a transposed view.
    run.check(
        "free values, transposed x",
        [](const std::vector<Tensor>& in) {
          const CsrGraph g = dense_to_csr(detach(in[0]), 0.5, false);
          const Tensor w = slice(reshape(in[1], {-1}), 0, 0, g.nnz());
          return csr_matmul(g, w, transpose(in[2], 0, 1));
        },
        {adjacency_with_empty_row(run, {3, 6, 5}, 0.3, 7), run.normal({90}), run.normal({7, 15})},
        exact(dtype));
    // No edge: the output and both gradients are zeros.
    run.check(
        "no edge",
        [](const std::vector<Tensor>& in) {
          const CsrGraph g = dense_to_csr(detach(in[0]), 10.0, false);
          const Tensor w = slice(reshape(in[0], {-1}), 0, 0, g.nnz());
          return csr_matmul(g, w, in[1]);
        },
        {run.normal({1, 3, 4}), run.normal({4, 2})}, exact(dtype));
  }
  if (!testing::parity_on_cpu()) {
    // A graph built on the CPU multiplying GPU features: a clear error, not a bad access.
    const CsrGraph g = dense_to_csr(Tensor::ones({1, 2, 2}), 0.5, false);
    const Tensor x = to_device(Tensor::ones({2, 3}), testing::kCUDA);
    const Tensor w = to_device(Tensor::ones({g.nnz()}), testing::kCUDA);
    testing::expect_error([&] { csr_matmul(g, w, x); }, {"csr_matmul", "different devices"});
  }
}

// bf16 forward (the GPU computes in f32 on bf16 inputs and rounds once, as the other families).
TEST(CudaParityBf16, graph_ops) {
  GRADUS_PARITY_SETUP(run);
  run.check_bf16_forward(
      "neighbour_max", [](const std::vector<Tensor>& in) { return neighbour_max(in[0], in[1]); },
      {adjacency_with_empty_row(run, {2, 9, 11}, 0.4, 3), run.normal({2, 11, 37})});
  run.check_bf16_forward("neighbour_min",
                         [](const std::vector<Tensor>& in) { return neighbour_min(in[0], in[1]); },
                         {run.mask({2, 9, 11}, 0.4), run.normal({2, 11, 5})});
  run.check_bf16_forward("greater_mask",
                         [](const std::vector<Tensor>& in) { return greater_mask(in[0], 0.5); },
                         {run.grid({5, 203}, -2, 2, 0.5)});
  run.check_bf16_forward("topk_mask",
                         [](const std::vector<Tensor>& in) { return topk_mask(in[0], 40); },
                         {run.grid({4, 601}, -5, 5, 1)});
  run.check_bf16_forward("csr_matmul",
                         [](const std::vector<Tensor>& in) {
                           const CsrGraph g = dense_to_csr(in[0], 0.2, true);
                           return csr_matmul(g, index_select(reshape(in[0], {-1}), 0, g.source),
                                             in[1]);
                         },
                         {run.uniform({2, 9, 9}, 0, 1), run.normal({18, 40})});
}

}  // namespace
}  // namespace gradus
