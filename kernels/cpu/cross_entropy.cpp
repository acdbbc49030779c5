// CPU fused cross-entropy (see kernels/cross_entropy.h for the contract).
#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>

#include "core/element_convert.h"
#include "kernels/cpu/same_or_narrower.h"
#include "kernels/cpu/vec_math.h"
#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 1 << 14;  // elements below which a loop stays on one thread

// log(sum_j exp(x[j])) with the maximum subtracted so no exp overflows; the exponentials are summed
// into 8 interleaved double partial sums (accurate in f32, in an order fixed by n). The row is read
// twice (maximum, then sum) while it is still in cache: cheaper than an online rescaling sweep,
// which cannot be vectorised.
template <class T>
double row_logsumexp(const T* x, int64_t n) {
  T m = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < n; ++j) m = x[j] > m ? x[j] : m;
  if (std::isinf(m)) m = 0;  // all -inf (the sum is then 0, log -inf) or +inf (the sum is inf)
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(vexp(x[j + k] - m));
  for (int k = 0; j < n; ++j, ++k) acc[k] += static_cast<double>(vexp(x[j] - m));
  const double s =
      ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  return static_cast<double>(m) + std::log(s);
}

// The first bad row in order (well defined on any thread count), and the valid rows.
template <class T>
int64_t cross_entropy_check_targets(const int64_t* targets, int64_t rows, int64_t vocab,
                                    int64_t ignore_index, int64_t* valid_count) {
  int64_t count = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = targets[r];
    if (t == ignore_index) continue;
    if (t < 0 || t >= vocab) return r;
    ++count;
  }
  *valid_count = count;
  return -1;
}

template <class T>
void cross_entropy_forward(const void* logits_, const int64_t* targets, void* loss_, void* lse_,
                           int64_t rows, int64_t vocab, int64_t ignore_index) {
  const T* logits = static_cast<const T*>(logits_);
  T* loss = static_cast<T*>(loss_);
  T* lse = static_cast<T*>(lse_);
#pragma omp parallel for if (rows * vocab > kParallelWork) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = targets[r];
    if (t == ignore_index) {
      loss[r] = T(0);
      lse[r] = T(0);  // never read: the backward writes a zero row for ignored targets
      continue;
    }
    if (t < 0 || t >= vocab) continue;  // unchecked targets: unspecified, never read out of range
    const T* x = logits + r * vocab;
    const double l = row_logsumexp(x, vocab);
    lse[r] = static_cast<T>(l);
    loss[r] = static_cast<T>(l - static_cast<double>(x[t]));
  }
}

// grad_logits of G: T, or the next narrower dtype (each value computed in T, then converted).
template <class T, class G>
void cross_entropy_backward_rows(const T* logits, const int64_t* targets, const T* lse,
                                 const T* grad_loss, int64_t grad_stride, double scale, G* gx,
                                 int64_t rows, int64_t vocab, int64_t ignore_index) {
#pragma omp parallel for if (rows * vocab > kParallelWork) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    G* gr = gx + r * vocab;
    const int64_t t = targets[r];
    if (t == ignore_index) {
      std::fill_n(gr, vocab, convert_element<G, T>(T(0)));
      continue;
    }
    const T* x = logits + r * vocab;
    const T g = static_cast<T>(static_cast<double>(grad_loss[r * grad_stride]) * scale);
    const T l = lse[r];
    if constexpr (std::is_same_v<G, T>) {
      for (int64_t j = 0; j < vocab; ++j) gr[j] = vexp(x[j] - l) * g;
      gr[t] -= g;
    } else {
      for (int64_t j = 0; j < vocab; ++j) gr[j] = convert_element<G, T>(vexp(x[j] - l) * g);
      gr[t] = convert_element<G, T>(vexp(x[t] - l) * g - g);
    }
  }
}

template <class T>
void cross_entropy_backward(const void* logits, const int64_t* targets, const void* lse,
                            const void* grad_loss, int64_t grad_stride, double scale,
                            void* grad_logits, DType grad_dtype, int64_t rows, int64_t vocab,
                            int64_t ignore_index) {
  dispatch_same_or_narrower<T>(grad_dtype, kCrossEntropyBackward, [&](auto gz) {
    using G = decltype(gz);
    cross_entropy_backward_rows<T, G>(static_cast<const T*>(logits), targets,
                                      static_cast<const T*>(lse), static_cast<const T*>(grad_loss),
                                      grad_stride, scale, static_cast<G*>(grad_logits), rows, vocab,
                                      ignore_index);
  });
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kCrossEntropyCheckTargets, cross_entropy_check_targets);
GRADUS_REGISTER_CPU_KERNEL(kCrossEntropyForward, cross_entropy_forward);
GRADUS_REGISTER_CPU_KERNEL(kCrossEntropyBackward, cross_entropy_backward);

}  // namespace gradus::kernels::cpu
