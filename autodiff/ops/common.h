// Helpers shared by the op files: argument checks with messages that name the op, the shapes and
// what was expected, and the conversion from scalars to tensors.
#pragma once

#include "autodiff/op_registry.h"
#include "autodiff/tape.h"
#include "core/tensor.h"
#include "kernels/registry.h"

namespace gradus::detail {

// Checks that every tensor is defined, floating point (f32 / f64 / bf16) and shares dtype and
// device with the first.
void expect_float_compatible(const char* op, std::initializer_list<const Tensor*> tensors);
void expect_defined(const char* op, const Tensor& t, const char* what);
void expect_rank(const char* op, const Tensor& t, int64_t rank, const char* what);
void expect_dtype(const char* op, const Tensor& t, DType dtype, const char* what);

// A rank-0 tensor holding `value` in `like`'s dtype on `like`'s device.
Tensor scalar_like(double value, const Tensor& like);

// A contiguous tensor of `shape` viewed as (outer, n, inner) around `axis`: outer = d0 ... d_{a-1},
// n = d_a, inner = d_{a+1} ... d_{k-1}. A rank-0 shape is one row of one element.
struct AxisLayout {
  int64_t outer = 1, n = 1, inner = 1;
};
AxisLayout axis_layout(const Shape& shape, int64_t axis);

// The multi-index of row-major position `flat` in `shape` (for error messages).
Shape unravel_index(int64_t flat, const Shape& shape);
// Element `pos` of a contiguous i64 tensor, read through a one-element CPU copy (any device).
int64_t read_i64(const Tensor& contiguous_ids, int64_t pos);

// A fresh contiguous tensor on like's device with like's dtype.
inline Tensor empty_like(const Tensor& like) {
  return Tensor::empty(like.shape(), like.dtype(), like.device());
}
inline Tensor empty_like(const Shape& shape, const Tensor& like) {
  return Tensor::empty(shape, like.dtype(), like.device());
}

// The dtype a product of `compute` operands is written in when `wanted` is asked for: `wanted`
// when a gemm can write it there (the same dtype, or wanted is compute's wide dtype and the device
// has kernels::kGemmWideOutput), else `compute`, which in_dtype then casts to `wanted`. This is how
// a mixed-precision product writes the gradient of an operand that arrived wide (operands cast by
// autocast_product_operand), and the head its f32 logits.
DType gemm_output_dtype(DType wanted, DType compute, Device device);
inline Tensor in_dtype(const Tensor& t, DType wanted) {
  return t.dtype() == wanted ? t : raw_to_dtype(t, wanted);
}

}  // namespace gradus::detail
