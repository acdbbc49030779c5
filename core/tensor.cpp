#include "core/tensor.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/bfloat16.h"
#include "core/element_convert.h"
#include "core/kernel_census.h"
#include "core/strided_loop.h"

namespace gradus {

namespace {
std::atomic<bool> g_poison{false};
DeviceCopyHooks g_hooks[kNumDeviceTypes];

template <class Fn>
void dispatch_cpu_dtype(DType t, const char* op, Fn&& fn) {
  switch (t) {
    case DType::f32: fn(float{}); return;
    case DType::f64: fn(double{}); return;
    case DType::i64: fn(int64_t{}); return;
    case DType::bf16: fn(bfloat16{}); return;  // storage and conversion only: no CPU kernel
  }
  GRADUS_FAIL(op, "unknown dtype {}", static_cast<int>(t));
}

}  // namespace

void set_poison_uninitialized(bool on) { g_poison = on; }
bool poison_uninitialized() { return g_poison; }
void set_device_hooks(DeviceType type, DeviceCopyHooks hooks) {
  g_hooks[static_cast<int>(type)] = hooks;
}

// ---------------------------------------------------------------- Storage
Storage::Storage(size_t nbytes, Device device)
    : nbytes_(nbytes), device_(device), allocator_(&allocator_for(device.type)) {
  GRADUS_CHECK(device.index == 0, "Tensor",
               "{}: this version uses one device of each type, index 0 "
               "(cuda:0); found index {}",
               device.str(), device.index);
  data_ = allocator_->allocate(std::max<size_t>(nbytes, 1));
}
// Back to the allocator that made the block, even if another was installed since.
Storage::~Storage() { allocator_->deallocate(data_, std::max<size_t>(nbytes_, 1)); }

// ---------------------------------------------------------------- factories
Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t s : shape)
    GRADUS_CHECK(s >= 0, "Tensor::empty", "negative size in shape {}", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(shape_numel(shape) * dtype_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  Tensor t(std::move(impl));
  if (g_poison && dtype != DType::i64) raw_fill_(t, std::numeric_limits<double>::quiet_NaN());
  return t;
}

Tensor Tensor::full(const Shape& shape, double value, DType dtype, Device device) {
  bool poison = g_poison.exchange(false);
  Tensor t = empty(shape, dtype, device);
  g_poison = poison;
  raw_fill_(t, value);
  return t;
}
Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor Tensor::ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::from_vector(const std::vector<double>& values, const Shape& shape, DType dtype) {
  GRADUS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector",
               "{} values given for shape {} ({} elements)", values.size(), shape_str(shape),
               shape_numel(shape));
  Tensor t = empty(shape, dtype);
  dispatch_cpu_dtype(dtype, "Tensor::from_vector", [&](auto zero) {
    using T = decltype(zero);
    T* p = t.data<T>();
    for (size_t i = 0; i < values.size(); ++i) p[i] = static_cast<T>(values[i]);
  });
  return t;
}

Tensor Tensor::from_vector(const std::vector<float>& values, const Shape& shape) {
  GRADUS_CHECK(static_cast<int64_t>(values.size()) == shape_numel(shape), "Tensor::from_vector",
               "{} values given for shape {} ({} elements)", values.size(), shape_str(shape),
               shape_numel(shape));
  Tensor t = empty(shape, DType::f32);
  std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(float));
  return t;
}

Tensor Tensor::arange(int64_t n, DType dtype) {
  std::vector<double> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[i] = static_cast<double>(i);
  return from_vector(v, {n}, dtype);
}

// ---------------------------------------------------------------- metadata
TensorImpl& Tensor::impl() const {
  GRADUS_CHECK(impl_ != nullptr, "Tensor", "use of an undefined (default-constructed) tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t axis) const {
  // normalize_axis accepts axis 0 / -1 of a rank-0 tensor, which has no size to read.
  GRADUS_CHECK(dim() > 0, "Tensor::size", "{} has rank 0: it has no axis {}", describe(), axis);
  return impl().shape[normalize_axis(axis, dim(), "Tensor::size")];
}
int64_t Tensor::stride(int64_t axis) const {
  GRADUS_CHECK(dim() > 0, "Tensor::stride", "{} has rank 0: it has no axis {}", describe(), axis);
  return impl().strides[normalize_axis(axis, dim(), "Tensor::stride")];
}

bool Tensor::is_contiguous() const {
  const auto& s = impl().shape;
  const auto& st = impl().strides;
  int64_t expected = 1;
  for (size_t i = s.size(); i-- > 0;) {
    if (s[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= s[i];
  }
  return true;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return fmt::format("{} {}{} {}", dtype_name(dtype()), shape_str(shape()),
                     is_contiguous() ? "" : fmt::format(" strides {}", shape_str(strides())),
                     device().str());
}

void* Tensor::raw_data() const {
  return static_cast<char*>(impl().storage->data()) + impl().offset * dtype_size(impl().dtype);
}

double Tensor::item() const {
  GRADUS_CHECK(numel() == 1, "Tensor::item", "expected a tensor with one element but found {}",
               describe());
  return to_vector()[0];
}

double Tensor::at(std::initializer_list<int64_t> index) const {
  GRADUS_CHECK(static_cast<int64_t>(index.size()) == dim(), "Tensor::at", "{} indices given for {}",
               index.size(), describe());
  GRADUS_CHECK(device().is_cpu(), "Tensor::at", "tensor is on {}; copy it to the CPU first",
               device().str());
  int64_t off = 0, i = 0;
  for (int64_t v : index) {
    GRADUS_CHECK(v >= 0 && v < shape()[i], "Tensor::at", "index {} out of range for axis {} of {}",
                 v, i, describe());
    off += v * strides()[i++];
  }
  double out = 0;
  dispatch_cpu_dtype(dtype(), "Tensor::at", [&](auto zero) {
    using T = decltype(zero);
    out = static_cast<double>(static_cast<T*>(raw_data())[off]);
  });
  return out;
}

std::vector<double> Tensor::to_vector() const {
  // A device tensor is copied to the CPU first (a synchronising transfer).
  Tensor c = device().is_cpu() ? raw_contiguous(*this) : raw_to_device(*this, kCPU);
  std::vector<double> out(static_cast<size_t>(numel()));
  dispatch_cpu_dtype(dtype(), "Tensor::to_vector", [&](auto zero) {
    using T = decltype(zero);
    const T* p = static_cast<const T*>(c.raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<double>(p[i]);
  });
  return out;
}

std::vector<float> Tensor::to_float_vector() const {
  std::vector<double> d = to_vector();
  return std::vector<float>(d.begin(), d.end());
}

// ---------------------------------------------------------------- autodiff state
AutogradMeta& Tensor::autograd_meta() const {
  auto& i = impl();
  if (!i.autograd) i.autograd = std::make_shared<AutogradMeta>();
  return *i.autograd;
}

const Tensor& Tensor::set_requires_grad(bool value) const {
  if (value) {
    GRADUS_CHECK(is_floating(dtype()), "set_requires_grad",
                 "only floating-point tensors can require gradients, found {}", describe());
  }
  AutogradMeta& m = autograd_meta();
  GRADUS_CHECK(m.is_leaf || value, "set_requires_grad",
               "requires_grad can only be turned off on a leaf; use detach() on {}", describe());
  m.requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const {
  if (!impl_ || !impl_->autograd || !impl_->autograd->grad) return Tensor();
  return Tensor(impl_->autograd->grad);
}

void Tensor::set_grad(const Tensor& g) const {
  if (!g.defined()) {
    if (has_autograd_meta()) impl_->autograd->grad.reset();
    return;
  }
  GRADUS_CHECK(g.shape() == shape() && g.dtype() == dtype(), "Tensor::set_grad",
               "gradient {} does not match tensor {}", g.describe(), describe());
  autograd_meta().grad = g.impl_ptr();
}

void Tensor::zero_grad() const {
  if (has_autograd_meta()) impl_->autograd->grad.reset();
}

// ---------------------------------------------------------------- raw views
Tensor raw_view(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = x.storage();
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = x.dtype();
  return Tensor(std::move(impl));
}

Shape infer_reshape(const Shape& shape, int64_t numel, const char* op) {
  Shape out = shape;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      GRADUS_CHECK(infer_at < 0, op, "only one -1 is allowed in the new shape {}",
                   shape_str(shape));
      infer_at = static_cast<int64_t>(i);
    } else {
      GRADUS_CHECK(out[i] >= 0, op, "negative size in the new shape {}", shape_str(shape));
      known *= out[i];
    }
  }
  if (infer_at >= 0) {
    GRADUS_CHECK(known != 0 && numel % known == 0, op,
                 "cannot infer -1 in shape {} for {} elements", shape_str(shape), numel);
    out[infer_at] = numel / known;
  }
  GRADUS_CHECK(shape_numel(out) == numel, op, "shape {} has {} elements but the tensor has {}",
               shape_str(shape), shape_numel(out), numel);
  return out;
}

Tensor raw_try_reshape_view(const Tensor& x, const Shape& shape) {
  Shape target = infer_reshape(shape, x.numel(), "reshape");
  // Zero elements fit any layout (and the matching below would run past a size-0 axis).
  if (x.numel() == 0 || x.is_contiguous())
    return raw_view(x, target, contiguous_strides(target), x.offset());
  // General case (as numpy's _attempt_nocopy_reshape): match groups of old dims whose strides chain
  // contiguously with groups of new dims of the same element count.
  Shape old_s;
  Strides old_st;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (x.shape()[i] != 1) {
      old_s.push_back(x.shape()[i]);
      old_st.push_back(x.strides()[i]);
    }
  Strides new_st(target.size(), 0);
  size_t oi = 0, ni = 0;
  while (oi < old_s.size() && ni < target.size()) {
    int64_t np = target[ni], op = old_s[oi];
    size_t oj = oi + 1, nj = ni + 1;
    while (np != op) {
      if (np < op)
        np *= target[nj++];
      else
        op *= old_s[oj++];
    }
    for (size_t k = oi; k + 1 < oj; ++k)
      if (old_st[k] != old_s[k + 1] * old_st[k + 1]) return Tensor();
    new_st[nj - 1] = old_st[oj - 1];
    for (size_t k = nj - 1; k > ni; --k) new_st[k - 1] = new_st[k] * target[k];
    ni = nj;
    oi = oj;
  }
  for (size_t k = 0; k < target.size(); ++k)
    if (target[k] == 1 && new_st[k] == 0) new_st[k] = 1;
  return raw_view(x, target, new_st, x.offset());
}

Tensor raw_transpose(const Tensor& x, int64_t a, int64_t b) {
  a = normalize_axis(a, x.dim(), "transpose");
  b = normalize_axis(b, x.dim(), "transpose");
  if (x.dim() == 0) return raw_view(x, {}, {}, x.offset());  // axis 0 of a scalar is itself
  Shape s = x.shape();
  Strides st = x.strides();
  std::swap(s[a], s[b]);
  std::swap(st[a], st[b]);
  return raw_view(x, s, st, x.offset());
}

Tensor raw_permute(const Tensor& x, const std::vector<int64_t>& dims) {
  GRADUS_CHECK(static_cast<int64_t>(dims.size()) == x.dim(), "permute",
               "{} axes given for a tensor of rank {}", dims.size(), x.dim());
  Shape s(dims.size());
  Strides st(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (size_t i = 0; i < dims.size(); ++i) {
    int64_t d = normalize_axis(dims[i], x.dim(), "permute");
    GRADUS_CHECK(!seen[d], "permute", "axis {} repeated in {}", d, shape_str(dims));
    seen[d] = true;
    s[i] = x.shape()[d];
    st[i] = x.strides()[d];
  }
  return raw_view(x, s, st, x.offset());
}

Tensor raw_slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step) {
  GRADUS_CHECK(x.dim() > 0, "slice", "cannot slice {}: it has rank 0", x.describe());
  axis = normalize_axis(axis, x.dim(), "slice");
  GRADUS_CHECK(step > 0, "slice", "step must be positive, found {}", step);
  int64_t n = x.shape()[axis];
  if (start < 0) start += n;
  if (end < 0) end += n;
  start = std::clamp<int64_t>(start, 0, n);
  end = std::clamp<int64_t>(end, start, n);
  Shape s = x.shape();
  Strides st = x.strides();
  s[axis] = (end - start + step - 1) / step;
  st[axis] = x.strides()[axis] * step;
  return raw_view(x, s, st, x.offset() + start * x.strides()[axis]);
}

Tensor raw_expand(const Tensor& x, const Shape& shape) {
  GRADUS_CHECK(shape.size() >= x.shape().size(), "expand",
               "cannot expand {} to the smaller rank {}", x.describe(), shape_str(shape));
  size_t lead = shape.size() - x.shape().size();
  Strides st(shape.size(), 0);
  Shape out = shape;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i < lead) {
      GRADUS_CHECK(shape[i] >= 0, "expand", "cannot infer a new leading size in {}",
                   shape_str(shape));
      continue;
    }
    int64_t have = x.shape()[i - lead];
    if (shape[i] == -1) out[i] = have;
    GRADUS_CHECK(have == out[i] || have == 1, "expand",
                 "cannot expand {} to {}: axis {} has size {} (only size-1 axes expand)",
                 x.describe(), shape_str(shape), i, have);
    st[i] = have == out[i] ? x.strides()[i - lead] : 0;
  }
  return raw_view(x, out, st, x.offset());
}

Tensor raw_unsqueeze(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.dim() + 1, "unsqueeze");
  Shape s = x.shape();
  Strides st = x.strides();
  int64_t stride = axis < x.dim() ? x.strides()[axis] * x.shape()[axis] : 1;
  s.insert(s.begin() + axis, 1);
  st.insert(st.begin() + axis, stride);
  return raw_view(x, s, st, x.offset());
}

Tensor raw_squeeze(const Tensor& x, int64_t axis) {
  axis = normalize_axis(axis, x.dim(), "squeeze");
  if (x.dim() == 0) return raw_view(x, {}, {}, x.offset());  // as PyTorch: a scalar stays
  GRADUS_CHECK(x.shape()[axis] == 1, "squeeze", "axis {} of {} has size {}, not 1", axis,
               x.describe(), x.shape()[axis]);
  Shape s = x.shape();
  Strides st = x.strides();
  s.erase(s.begin() + axis);
  st.erase(st.begin() + axis);
  return raw_view(x, s, st, x.offset());
}

// ---------------------------------------------------------------- copies
void raw_copy_(const Tensor& dst, const Tensor& src) {
  GRADUS_CHECK(dst.shape() == src.shape(), "copy", "destination {} and source {} differ in shape",
               dst.describe(), src.describe());
  census::count(dst.dtype() == src.dtype() ? "copy" : "copy (dtype conversion)");
  if (!dst.device().is_cpu() || !src.device().is_cpu()) {
    DeviceType other = dst.device().is_cpu() ? src.device().type : dst.device().type;
    auto hook = g_hooks[static_cast<int>(other)].copy;
    GRADUS_CHECK(hook != nullptr, "copy", "no {} backend in this build", device_type_name(other));
    hook(dst, src);
    return;
  }
  auto copy_typed = [&](auto dst_zero, auto src_zero) {
    using D = decltype(dst_zero);
    using S = decltype(src_zero);
    if (dst.is_contiguous() && src.is_contiguous() && std::is_same_v<D, S>) {
      std::memcpy(dst.raw_data(), src.raw_data(), dst.nbytes());
      return;
    }
    D* d = static_cast<D*>(dst.raw_data());
    const S* s = static_cast<const S*>(src.raw_data());
    strided_loop_2(dst.shape(), dst.strides(), src.strides(),
                   [&](int64_t od, int64_t os) { d[od] = convert_element<D, S>(s[os]); });
  };
  dispatch_cpu_dtype(dst.dtype(), "copy", [&](auto dz) {
    dispatch_cpu_dtype(src.dtype(), "copy", [&](auto sz) { copy_typed(dz, sz); });
  });
}

Tensor raw_to_device(const Tensor& x, Device device) {
  if (x.device() == device) return x;
  bool poison = g_poison.exchange(false);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), device);
  g_poison = poison;
  raw_copy_(out, x);
  return out;
}

Tensor raw_contiguous(const Tensor& x) {
  if (x.is_contiguous()) return x;
  return raw_clone(x);
}

Tensor raw_clone(const Tensor& x) {
  bool poison = g_poison.exchange(false);
  Tensor out = Tensor::empty(x.shape(), x.dtype(), x.device());
  g_poison = poison;
  raw_copy_(out, x);
  return out;
}

Tensor raw_to_dtype(const Tensor& x, DType dtype) {
  if (x.dtype() == dtype) return x;
  bool poison = g_poison.exchange(false);
  Tensor out = Tensor::empty(x.shape(), dtype, x.device());
  g_poison = poison;
  raw_copy_(out, x);
  return out;
}

void raw_fill_(const Tensor& dst, double value) {
  census::count("fill");
  if (!dst.device().is_cpu()) {
    auto hook = g_hooks[static_cast<int>(dst.device().type)].fill;
    GRADUS_CHECK(hook != nullptr, "fill", "no {} backend in this build", dst.device().str());
    hook(dst, value);
    return;
  }
  dispatch_cpu_dtype(dst.dtype(), "fill", [&](auto zero) {
    using T = decltype(zero);
    T* d = static_cast<T*>(dst.raw_data());
    T v = static_cast<T>(value);
    if (dst.is_contiguous()) {
      int64_t n = dst.numel();
#pragma omp parallel for if (n > (1 << 16)) schedule(static)
      for (int64_t i = 0; i < n; ++i) d[i] = v;
      return;
    }
    strided_loop_1(dst.shape(), dst.strides(), [&](int64_t o) { d[o] = v; });
  });
}

}  // namespace gradus
