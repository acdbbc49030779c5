// Differentiable views: no data is copied (except by contiguous(), and by reshape() when the strides
// do not allow a view). The backward of each maps the gradient back to the input's layout.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace gradus {

// x: (...) -> shape (one -1 allowed). A view when strides allow it, else a copy.
Tensor reshape(const Tensor& x, const Shape& shape);
// Like reshape, but throws instead of copying when x's strides do not allow a view.
Tensor view(const Tensor& x, const Shape& shape);
Tensor flatten(const Tensor& x, int64_t start_axis = 0, int64_t end_axis = -1);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
// Elements start, start+step, ... < end along `axis` (negative start/end count from the end).
Tensor slice(const Tensor& x, int64_t axis, int64_t start, int64_t end, int64_t step = 1);
// x: (...) -> shape, size-1 axes repeated with stride 0 (-1 keeps a size).
Tensor expand(const Tensor& x, const Shape& shape);
Tensor unsqueeze(const Tensor& x, int64_t axis);
Tensor squeeze(const Tensor& x, int64_t axis);
// A contiguous tensor with x's values (x itself when already contiguous).
Tensor contiguous(const Tensor& x);
// Same values, cut from the tape: the result never requires gradients.
Tensor detach(const Tensor& x);
// Converts dtype (differentiable: the gradient is converted back).
Tensor to_dtype(const Tensor& x, DType dtype);
// A contiguous copy on `device` (x itself when already there). Differentiable: the gradient is
// copied back to x's device. Host <-> GPU copies synchronise (the host waits for the transfer).
Tensor to_device(const Tensor& x, Device device);

}  // namespace gradus
