// Shape and strides: runtime vectors of int64 (sizes in elements; strides in elements, not bytes).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gradus {

using Shape = std::vector<int64_t>;
using Strides = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Strides contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "(2, 3, 4)"; "()" for a scalar

// Normalises a possibly negative axis against ndim; throws naming `op` if it is out of range.
int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op);

// NumPy broadcasting of two shapes; throws naming `op` and both shapes when they do not broadcast.
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

}  // namespace gradus
