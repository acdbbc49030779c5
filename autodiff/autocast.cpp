#include "autodiff/autocast.h"

#include <algorithm>

#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus {

namespace {

thread_local std::optional<AutocastState> t_state;

bool is_float(DType d) { return d == DType::f32 || d == DType::f64 || d == DType::bf16; }

int width(DType d) { return d == DType::f64 ? 3 : d == DType::f32 ? 2 : 1; }

Tensor cast_if_float(const Tensor& x, DType to) {
  if (!x.defined() || !is_float(x.dtype()) || x.dtype() == to) return x;
  return to_dtype(x, to);
}

}  // namespace

AutocastGuard::AutocastGuard(DType compute, DType wide) : previous_(t_state) {
  GRADUS_CHECK(is_float(compute) && is_float(wide), "AutocastGuard",
               "compute and wide must be floating dtypes, found {} and {}", dtype_name(compute),
               dtype_name(wide));
  GRADUS_CHECK(width(compute) <= width(wide), "AutocastGuard",
               "the compute dtype ({}) must not be wider than the wide dtype ({})",
               dtype_name(compute), dtype_name(wide));
  t_state = AutocastState{compute, wide};
}

AutocastGuard::~AutocastGuard() { t_state = previous_; }

std::optional<AutocastState> autocast_state() { return t_state; }

namespace detail {

Tensor autocast_compute(const Tensor& x) {
  return t_state ? cast_if_float(x, t_state->compute) : x;
}

Tensor autocast_wide(const Tensor& x) { return t_state ? cast_if_float(x, t_state->wide) : x; }

void autocast_promote(Tensor& a, Tensor& b) {
  if (!t_state || !a.defined() || !b.defined() || a.dtype() == b.dtype()) return;
  if (!is_float(a.dtype()) || !is_float(b.dtype())) return;
  if (width(a.dtype()) < width(b.dtype()))
    a = to_dtype(a, b.dtype());
  else
    b = to_dtype(b, a.dtype());
}

std::vector<Tensor> autocast_promote_all(const std::vector<Tensor>& xs) {
  if (!t_state) return xs;
  int widest = 0;
  for (const Tensor& x : xs)
    if (x.defined() && is_float(x.dtype())) widest = std::max(widest, width(x.dtype()));
  const DType to = widest == 3 ? DType::f64 : widest == 2 ? DType::f32 : DType::bf16;
  std::vector<Tensor> out;
  out.reserve(xs.size());
  for (const Tensor& x : xs) out.push_back(widest == 0 ? x : cast_if_float(x, to));
  return out;
}

}  // namespace detail

}  // namespace gradus
