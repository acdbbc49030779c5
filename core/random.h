// Random tensors drawn from a Philox Generator (see core/philox.h for the stream layout).
#pragma once

#include "core/philox.h"
#include "core/tensor.h"

namespace gradus {

// Uniform on [low, high). Advances gen by the blocks used.
Tensor rand_uniform(const Shape& shape, Generator& gen, DType dtype = DType::f32, double low = 0.0,
                    double high = 1.0);
// Normal(mean, std) by Box-Muller on pairs of uniforms. Advances gen by the blocks used.
Tensor rand_normal(const Shape& shape, Generator& gen, DType dtype = DType::f32, double mean = 0.0,
                   double std = 1.0);

// Element i of the normal stream (the CUDA backend must draw the same numbers). Defined in
// random.cpp for float and double; not inline, since other files call it without its definition.
template <class T> T philox_normal(uint64_t seed, uint64_t offset, uint64_t i);

}  // namespace gradus
