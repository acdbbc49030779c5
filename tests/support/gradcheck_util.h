// Shared helpers for the op tests: random f64 inputs and a gradcheck assertion.
#pragma once

#include <gtest/gtest.h>

#include "autodiff/gradcheck.h"
#include "autodiff/tape.h"
#include "core/random.h"

namespace gradus::testing {

// A fresh random leaf (normal, mean `mean`, std `std`) that requires gradients.
inline Tensor randn_leaf(const Shape& shape, uint64_t seed, double mean = 0.0, double std = 1.0,
                         DType dtype = DType::f64) {
  Generator gen(seed);
  Tensor t = rand_normal(shape, gen, dtype, mean, std);
  t.set_requires_grad(true);
  return t;
}

// A uniform leaf on [lo, hi) (for ops with restricted domains such as log and sqrt).
inline Tensor uniform_leaf(const Shape& shape, uint64_t seed, double lo, double hi,
                           DType dtype = DType::f64) {
  Generator gen(seed);
  Tensor t = rand_uniform(shape, gen, dtype, lo, hi);
  t.set_requires_grad(true);
  return t;
}

// A non-contiguous leaf with `shape`: the transpose of a contiguous (shape[1], shape[0]) tensor
// (rank 2), or a strided slice along the last axis (other ranks).
inline Tensor noncontiguous_leaf(const Shape& shape, uint64_t seed, double lo = -2.0,
                                 double hi = 2.0) {
  Generator gen(seed);
  Tensor t;
  if (shape.size() == 2) {
    Tensor base = rand_uniform({shape[1], shape[0]}, gen, DType::f64, lo, hi);
    t = raw_transpose(base, 0, 1);
  } else {
    Shape wide = shape;
    wide.back() *= 2;
    Tensor base = rand_uniform(wide, gen, DType::f64, lo, hi);
    t = raw_slice(base, -1, 0, wide.back(), 2);
  }
  t.set_requires_grad(true);
  return t;
}

}  // namespace gradus::testing

#define EXPECT_GRADCHECK(fn, inputs)                                          \
  do {                                                                        \
    ::gradus::GradcheckResult gc_result_ = ::gradus::gradcheck(fn, inputs);   \
    EXPECT_TRUE(gc_result_.ok) << gc_result_.message;                         \
    EXPECT_GT(gc_result_.elements_checked, 0);                                \
  } while (0)
