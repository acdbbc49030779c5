// CPU/GPU parity of the shape and view ops: concat, split, stack, index_select, gather (with
// repeated indices, whose gradients accumulate), reshape, permute, slice, expand, contiguous,
// to_dtype and to_device. Copies and selections are exact; only gradients that add repeated
// contributions get a summation tolerance.
#include <string>

#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::expect_same_error;
using testing::kExact;
using testing::ParityOptions;
using testing::ParityRun;
using testing::sum_tolerance;

ParityOptions exact() {
  ParityOptions o;
  o.forward = kExact;
  o.backward = kExact;
  return o;
}
// Exact forward; a backward that adds up to `terms` contributions per element.
ParityOptions exact_forward(int64_t terms) {
  ParityOptions o;
  o.forward = kExact;
  o.backward = sum_tolerance(DType::f32, terms);
  return o;
}

TEST(CudaParity, concat) {
  GRADUS_PARITY_SETUP(run);
  run.check("axis 1, a transposed piece and an empty one", [](const std::vector<Tensor>& in) {
    return concat({in[0], transpose(in[1], 0, 1), in[2], in[3]}, 1);
  }, {run.normal({3, 2}), run.normal({4, 3}), run.normal({3, 0}), run.normal({3, 1})}, exact());
  run.check("axis 0 of rank 3", [](const std::vector<Tensor>& in) { return concat(in, -3); },
            {run.normal({1, 2, 3}), run.normal({2, 2, 3})}, exact());
  run.check("axis 2, long", [](const std::vector<Tensor>& in) { return concat(in, 2); },
            {run.normal({4, 33, 100}), run.normal({4, 33, 257})}, exact());
  // i64 pieces (no gradient).
  run.check("i64", [](const std::vector<Tensor>& in) { return concat(in, 0); },
            {run.ids({5, 3}, 100), run.ids({2, 3}, 100)}, exact());
  ParityOptions f64 = exact();
  f64.dtype = DType::f64;
  run.check("axis 0 of rank 3", [](const std::vector<Tensor>& in) { return concat(in, -3); },
            {run.normal({1, 2, 3}), run.normal({2, 2, 3})}, f64);
}

TEST(CudaParity, split) {
  GRADUS_PARITY_SETUP(run);
  // All pieces (one of them empty) take gradients.
  run.check_multi("all pieces", [](const std::vector<Tensor>& in) {
    return split(in[0], {2, 0, 3, 1}, 1);
  }, {run.normal({4, 6})}, exact());
  // Unused pieces contribute zeros to the input's gradient.
  run.check_multi("pieces 0 and 2 of a transposed input", [](const std::vector<Tensor>& in) {
    std::vector<Tensor> p = split(transpose(in[0], 0, 1), {1, 2, 3, 4}, 0);
    return std::vector<Tensor>{p[0], p[2]};
  }, {run.normal({5, 10})}, exact());
  run.check_multi("last axis, long", [](const std::vector<Tensor>& in) {
    return split(in[0], {100, 157}, -1);
  }, {run.normal({3, 11, 257})}, exact());
}

TEST(CudaParity, stack) {
  GRADUS_PARITY_SETUP(run);
  for (int64_t axis : {0, 1, 2, -1})
    run.check(fmt::format("axis {}", axis), [axis](const std::vector<Tensor>& in) {
      return stack({in[0], transpose(in[1], 0, 1), in[2]}, axis);
    }, {run.normal({3, 4}), run.normal({4, 3}), run.normal({3, 4})}, exact());
  run.check("i64", [](const std::vector<Tensor>& in) { return stack(in, 0); },
            {run.ids({7}, 50), run.ids({7}, 50)}, exact());
}

TEST(CudaParity, index_select) {
  GRADUS_PARITY_SETUP(run);
  // 10 indices into 7 (or 5, 3) positions: repeats whose gradients are added.
  for (int64_t axis : {0, 1, -1}) {
    const Shape shape{5, 7, 3};
    const int64_t n = shape[axis < 0 ? axis + 3 : axis];
    run.check(fmt::format("axis {}", axis), [axis](const std::vector<Tensor>& in) {
      return index_select(in[0], axis, in[1]);
    }, {run.normal(shape), run.ids({10}, n)}, exact_forward(10));
  }
  run.check("transposed input", [](const std::vector<Tensor>& in) {
    return index_select(transpose(in[0], 0, 1), 0, in[1]);
  }, {run.normal({40, 30}), run.ids({100}, 30)}, exact_forward(100));
  run.check("no indices", [](const std::vector<Tensor>& in) {
    return index_select(in[0], 1, in[1]);
  }, {run.normal({4, 6}), run.ids({0}, 6)}, exact());
  Tensor bad = ParityRun::with_values(ParityRun::with_values(run.ids({12}, 6), {5}, 6), {9}, -1);
  expect_same_error("index out of range", [](const std::vector<Tensor>& in) {
    index_select(in[0], 1, in[1]);
  }, {rand_normal({4, 6}, run.generator()), bad});
}

TEST(CudaParity, gather) {
  GRADUS_PARITY_SETUP(run);
  run.check("x (3, 4) axis 1, index (2, 5)", [](const std::vector<Tensor>& in) {
    return gather(in[0], 1, in[1]);
  }, {run.normal({3, 4}), run.ids({2, 5}, 4)}, exact_forward(5));
  run.check("axis 0 of rank 3, transposed x", [](const std::vector<Tensor>& in) {
    return gather(transpose(in[0], 0, 2), 0, in[1]);
  }, {run.normal({2, 3, 2}), run.ids({3, 2, 2}, 2)}, exact_forward(3));
  run.check("x (64, 100) axis 1, index (64, 300)", [](const std::vector<Tensor>& in) {
    return gather(in[0], 1, in[1]);
  }, {run.normal({64, 100}), run.ids({64, 300}, 100)}, exact_forward(300));
  Tensor bad = ParityRun::with_values(ParityRun::with_values(run.ids({3, 5}, 4), {7}, 4), {11}, -2);
  expect_same_error("index out of range", [](const std::vector<Tensor>& in) {
    gather(in[0], 1, in[1]);
  }, {rand_normal({3, 4}, run.generator()), bad});
}

TEST(CudaParity, reshape) {
  GRADUS_PARITY_SETUP(run);
  run.check("view", [](const std::vector<Tensor>& in) { return reshape(in[0], {3, -1}); },
            {run.normal({4, 6})}, exact());
  // A transposed input cannot be viewed: reshape copies.
  run.check("copy of a transposed input", [](const std::vector<Tensor>& in) {
    return reshape(transpose(in[0], 0, 1), {-1});
  }, {run.normal({33, 17})}, exact());
  run.check("to rank 0", [](const std::vector<Tensor>& in) { return reshape(in[0], {}); },
            {run.normal({1})}, exact());
}

TEST(CudaParity, permute) {
  GRADUS_PARITY_SETUP(run);
  run.check("(2, 3, 4) -> (4, 2, 3)", [](const std::vector<Tensor>& in) {
    return permute(in[0], {2, 0, 1});
  }, {run.normal({2, 3, 4})}, exact());
  run.check("permute of a permute, then contiguous", [](const std::vector<Tensor>& in) {
    return contiguous(permute(permute(in[0], {1, 0, 2}), {2, 1, 0}));
  }, {run.normal({5, 7, 9})}, exact());
}

TEST(CudaParity, slice) {
  GRADUS_PARITY_SETUP(run);
  run.check("step 2", [](const std::vector<Tensor>& in) { return slice(in[0], 1, 1, -1, 2); },
            {run.normal({4, 11})}, exact());
  run.check("negative start, end past the size", [](const std::vector<Tensor>& in) {
    return slice(in[0], 0, -3, 100);
  }, {run.normal({8, 5})}, exact());
  run.check("step 3 of a transposed input", [](const std::vector<Tensor>& in) {
    return slice(transpose(in[0], 0, 1), -1, 0, 40, 3);
  }, {run.normal({40, 6})}, exact());
  run.check("slice of a slice", [](const std::vector<Tensor>& in) {
    return slice(slice(in[0], 2, 1, 30, 2), 0, 1, 3);
  }, {run.normal({4, 3, 30})}, exact());
}

TEST(CudaParity, expand) {
  GRADUS_PARITY_SETUP(run);
  // The gradient sums the expanded copies (up to 16 terms).
  run.check("(3, 1, 5) -> (3, 4, 5)", [](const std::vector<Tensor>& in) {
    return expand(in[0], {3, 4, 5});
  }, {run.normal({3, 1, 5})}, exact_forward(4));
  run.check("(5) -> (2, 3, 5)", [](const std::vector<Tensor>& in) {
    return expand(in[0], {2, 3, 5});
  }, {run.normal({5})}, exact_forward(6));
  run.check("() -> (4, 4), made contiguous", [](const std::vector<Tensor>& in) {
    return contiguous(expand(in[0], {4, 4}));
  }, {run.normal({})}, exact_forward(16));
}

TEST(CudaParity, contiguous) {
  GRADUS_PARITY_SETUP(run);
  run.check("transposed", [](const std::vector<Tensor>& in) {
    return contiguous(transpose(in[0], 0, 1));
  }, {run.normal({129, 65})}, exact());
  run.check("sliced rank 3", [](const std::vector<Tensor>& in) {
    return contiguous(slice(in[0], 2, 0, 9, 2));
  }, {run.normal({3, 4, 9})}, exact());
  run.check("already contiguous", [](const std::vector<Tensor>& in) { return contiguous(in[0]); },
            {run.normal({3, 4})}, exact());
}

TEST(CudaParity, to_dtype) {
  GRADUS_PARITY_SETUP(run);
  // Conversions round the same way on both backends (bf16: to nearest, ties to even), and the
  // gradient is converted back.
  run.check("f32 -> f64, transposed", [](const std::vector<Tensor>& in) {
    return to_dtype(transpose(in[0], 0, 1), DType::f64);
  }, {run.normal({17, 33})}, exact());
  ParityOptions from_f64 = exact();
  from_f64.dtype = DType::f64;
  run.check("f64 -> f32", [](const std::vector<Tensor>& in) { return to_dtype(in[0], DType::f32); },
            {run.normal({1031}, 0, 1e3)}, from_f64);
  run.check("f32 -> bf16", [](const std::vector<Tensor>& in) { return to_dtype(in[0], DType::bf16); },
            {run.normal({1031}, 0, 100)}, exact());
}

TEST(CudaParity, to_device) {
  GRADUS_PARITY_SETUP(run);
  // On the device run: a GPU -> CPU copy of a transposed view, its gradient copied back to the GPU.
  // (On the CPU run to_device(x, cpu) is x itself.)
  ParityOptions to_cpu = exact();
  to_cpu.output_device = kCPU;
  run.check("device -> cpu", [](const std::vector<Tensor>& in) {
    return to_device(transpose(in[0], 0, 1), kCPU);
  }, {run.normal({5, 7})}, to_cpu);
  // A round trip back to the inputs' device.
  run.check("round trip", [](const std::vector<Tensor>& in) {
    return to_device(to_device(slice(in[0], 0, 0, 9, 2), kCPU), in[0].device());
  }, {run.normal({9, 4})}, exact());
}

}  // namespace
}  // namespace gradus
