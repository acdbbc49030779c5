#include "autodiff/ops/common.h"

#include "kernels/gemm.h"

namespace gradus::detail {

DType gemm_output_dtype(DType wanted, DType compute, Device device) {
  if (wanted == compute) return wanted;
  if (wanted == kernels::gemm_wide_dtype(compute) &&
      kernels::supports(kernels::kGemmWideOutput, device.type, compute))
    return wanted;
  return compute;
}

void expect_defined(const char* op, const Tensor& t, const char* what) {
  GRADUS_CHECK(t.defined(), op, "{} is an undefined tensor", what);
}

void expect_float_compatible(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    GRADUS_CHECK(t->defined(), op, "an input is an undefined tensor");
    GRADUS_CHECK(is_floating(t->dtype()), op, "expected a floating-point tensor but found {}",
                 t->describe());
    if (first == nullptr) {
      first = t;
      continue;
    }
    GRADUS_CHECK(t->dtype() == first->dtype(), op,
                 "dtypes differ: {} vs {} (convert one with to_dtype)", first->describe(),
                 t->describe());
    GRADUS_CHECK(t->device() == first->device(), op, "devices differ: {} vs {}", first->describe(),
                 t->describe());
  }
}

void expect_rank(const char* op, const Tensor& t, int64_t rank, const char* what) {
  GRADUS_CHECK(t.dim() == rank, op, "expected {} of rank {} but found {}", what, rank,
               t.describe());
}

void expect_dtype(const char* op, const Tensor& t, DType dtype, const char* what) {
  GRADUS_CHECK(t.dtype() == dtype, op, "expected {} of dtype {} but found {}", what,
               dtype_name(dtype), t.describe());
}

Tensor scalar_like(double value, const Tensor& like) {
  Tensor s = Tensor::scalar(value, like.dtype() == DType::bf16 ? DType::f32 : like.dtype());
  if (!like.device().is_cpu() || like.dtype() == DType::bf16) {
    Tensor d = Tensor::empty({}, like.dtype(), like.device());
    raw_copy_(d, s);
    return d;
  }
  return s;
}

AxisLayout axis_layout(const Shape& shape, int64_t axis) {
  AxisLayout l;
  for (int64_t d = 0; d < static_cast<int64_t>(shape.size()); ++d) {
    if (d < axis)
      l.outer *= shape[d];
    else if (d == axis)
      l.n = shape[d];
    else
      l.inner *= shape[d];
  }
  return l;
}

Shape unravel_index(int64_t flat, const Shape& shape) {
  Shape index(shape.size(), 0);
  for (size_t d = shape.size(); d-- > 0;) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return index;
}

int64_t read_i64(const Tensor& contiguous_ids, int64_t pos) {
  Tensor flat = raw_try_reshape_view(contiguous_ids, {contiguous_ids.numel()});
  Tensor host = Tensor::empty({1}, DType::i64);
  raw_copy_(host, raw_slice(flat, 0, pos, pos + 1));
  return host.data<int64_t>()[0];
}

}  // namespace gradus::detail
