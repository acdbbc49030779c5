// Tensor: a shared handle to (storage, shape, strides, offset, dtype). Copying a Tensor copies the
// handle, not the data (as in PyTorch). Views share storage and differ in shape/strides/offset.
//
// This layer records nothing for autodiff: the differentiable versions of the view functions below
// (reshape, transpose, permute, slice, expand, ...) are the free functions of autodiff/ops, and
// those are what models call. The raw_* functions here are the building blocks they use.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/allocator.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"

namespace gradus {

class Tensor;

// A block of memory on one device, returned to its allocator when the last user lets go.
class Storage {
 public:
  Storage(size_t nbytes, Device device);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  size_t nbytes_ = 0;
  Device device_;
  Allocator* allocator_ = nullptr;  // the one that allocated data_
};

// Autodiff bookkeeping carried by a tensor. Plain data: the autodiff layer owns its meaning.
struct AutogradMeta {
  bool requires_grad = false;
  bool is_leaf = true;          // false once an op recorded on the tape produced this tensor
  bool graph_freed = false;     // the record that produced it was freed by a backward pass
  bool retains_grad = false;    // non-leaf whose gradient should be kept in `grad` (retain_grad())
  uint64_t producer = 0;        // sequence number of the producing tape record (0: none)
  std::shared_ptr<class TensorImpl> grad;  // accumulated gradient (leaves, and retained non-leaves)
};

class TensorImpl {
 public:
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;
  int64_t offset = 0;  // in elements
  DType dtype = DType::f32;
  std::shared_ptr<AutogradMeta> autograd;  // created on first use
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (contiguous, on `device`) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = kCPU);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
                     Device device = kCPU);
  static Tensor scalar(double value, DType dtype = DType::f32);  // rank-0
  // Copies `values` (row-major) into a new tensor of `shape` converted to `dtype`.
  static Tensor from_vector(const std::vector<double>& values, const Shape& shape,
                            DType dtype = DType::f32);
  static Tensor from_vector(const std::vector<float>& values, const Shape& shape);
  static Tensor arange(int64_t n, DType dtype = DType::f32);

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t axis) const;
  int64_t stride(int64_t axis) const;
  int64_t offset() const { return impl().offset; }
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string describe() const;  // "f32 (2, 3) cpu"

  // Pointer to element 0 of this view (storage base + offset).
  void* raw_data() const;
  template <class T> T* data() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  bool shares_storage(const Tensor& other) const { return storage() == other.storage(); }

  // ---- element access (CPU; converts through double; for tests and small reads) ----
  double item() const;                               // requires numel() == 1; any device
  double at(std::initializer_list<int64_t> index) const;
  std::vector<double> to_vector() const;             // row-major, any strides, any device
  std::vector<float> to_float_vector() const;

  // ---- autodiff state (meaning defined in autodiff/) ----
  bool requires_grad() const { return impl_ && impl_->autograd && impl_->autograd->requires_grad; }
  // Marks a leaf as requiring gradients; returns *this for chaining.
  const Tensor& set_requires_grad(bool value = true) const;
  bool is_leaf() const { return !impl_->autograd || impl_->autograd->is_leaf; }
  Tensor grad() const;  // undefined Tensor when no gradient has been accumulated
  void set_grad(const Tensor& g) const;
  void zero_grad() const;  // drops the gradient (PyTorch's set_to_none)
  AutogradMeta& autograd_meta() const;  // creates it on first use
  bool has_autograd_meta() const { return impl_ && impl_->autograd != nullptr; }

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

template <class T> T* Tensor::data() const {
  GRADUS_CHECK(dtype() == dtype_of<T>(), "Tensor::data", "requested {} but the tensor is {}",
               dtype_name(dtype_of<T>()), describe());
  return static_cast<T*>(raw_data());
}

// ---- raw views and copies: no autodiff records (see autodiff/ops/view.h for the public ones) ----
Tensor raw_view(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset);
// Reshape as a view when strides allow it, otherwise nullptr-equivalent undefined Tensor.
Tensor raw_try_reshape_view(const Tensor& x, const Shape& shape);
Tensor raw_transpose(const Tensor& x, int64_t a, int64_t b);
Tensor raw_permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor raw_slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1);
Tensor raw_expand(const Tensor& x, const Shape& shape);
Tensor raw_unsqueeze(const Tensor& x, int64_t axis);
Tensor raw_squeeze(const Tensor& x, int64_t axis);
// Copies src into dst (same shape and dtype; any strides; same device). Parallel over elements.
void raw_copy_(const Tensor& dst, const Tensor& src);
Tensor raw_contiguous(const Tensor& x);  // x itself when already contiguous
Tensor raw_clone(const Tensor& x);       // always a fresh contiguous copy
Tensor raw_to_dtype(const Tensor& x, DType dtype);
// A contiguous copy on `device` (x itself when already there); same dtype.
Tensor raw_to_device(const Tensor& x, Device device);
// Resolves one -1 in `shape` against numel; throws naming `op` when sizes disagree.
Shape infer_reshape(const Shape& shape, int64_t numel, const char* op);

// Debug switch: when on, every new uninitialised tensor (Tensor::empty) is filled with NaN so a
// kernel that leaves an element unwritten cannot pass a test. Off by default (it costs a pass).
void set_poison_uninitialized(bool on);
bool poison_uninitialized();

// Cross-device copies and fills are supplied by backends other than the CPU.
struct DeviceCopyHooks {
  void (*copy)(const Tensor& dst, const Tensor& src) = nullptr;  // any device pair
  void (*fill)(const Tensor& dst, double value) = nullptr;
};
void set_device_hooks(DeviceType type, DeviceCopyHooks hooks);
void raw_fill_(const Tensor& dst, double value);

}  // namespace gradus
