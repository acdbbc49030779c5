// CPU hardmax self-attention (see kernels/hardmax.h). One sequence per OpenMP iteration; every sum
// runs in a fixed order, so the bits do not depend on the thread count, and they equal the
// evaluator's in models/hardmax/forward.cpp (tests/models/hardmax_attention_test.cpp checks).
#include "kernels/hardmax.h"

#include <limits>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallel = 1 << 14;  // elements below which one thread does everything

template <class T>
T dot(const T* a, const T* x, int64_t C) {
  T acc = 0;
  for (int64_t c = 0; c < C; ++c) acc = acc + a[c] * x[c];
  return acc;
}

// The selected set of every token of one sequence: sets[i] (ascending indices).
// x: (L, C) of this sequence; rank-1 when A == nullptr.
template <class T>
void select(const T* x, const T* q, const T* k, const T* A, int64_t L, int64_t C,
            std::vector<std::vector<int64_t>>& sets) {
  sets.assign(static_cast<size_t>(L), {});
  std::vector<T> score(static_cast<size_t>(L));
  if (A == nullptr) {
    std::vector<T> s(static_cast<size_t>(L));
    for (int64_t j = 0; j < L; ++j) s[j] = dot(k, x + j * C, C);
    for (int64_t i = 0; i < L; ++i) {
      const T ci = dot(q, x + i * C, C);
      for (int64_t j = 0; j < L; ++j) score[j] = ci > 0 ? s[j] : ci < 0 ? -s[j] : T(0);
      T best = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < L; ++j)
        if (score[j] > best) best = score[j];
      for (int64_t j = 0; j < L; ++j)
        if (score[j] == best) sets[i].push_back(j);
      if (sets[i].empty())
        for (int64_t j = 0; j < L; ++j) sets[i].push_back(j);
    }
    return;
  }
  std::vector<T> z(static_cast<size_t>(L * C));
  for (int64_t j = 0; j < L; ++j)
    for (int64_t r = 0; r < C; ++r) z[j * C + r] = dot(A + r * C, x + j * C, C);
  for (int64_t i = 0; i < L; ++i) {
    T best = -std::numeric_limits<T>::infinity();
    for (int64_t j = 0; j < L; ++j) {
      score[j] = dot(x + i * C, &z[j * C], C);
      if (score[j] > best) best = score[j];
    }
    for (int64_t j = 0; j < L; ++j)
      if (score[j] == best) sets[i].push_back(j);
    if (sets[i].empty())
      for (int64_t j = 0; j < L; ++j) sets[i].push_back(j);
  }
}

template <class T>
void mean_of(const T* x, int64_t C, const std::vector<int64_t>& set, T* m) {
  const int64_t j0 = set[0];
  for (int64_t c = 0; c < C; ++c) {
    T acc = 0;
    for (int64_t j : set) acc = acc + (x[j * C + c] - x[j0 * C + c]);
    m[c] = x[j0 * C + c] + acc / static_cast<T>(set.size());
  }
}

template <class T>
void forward_impl(const void* x_, const void* q_, const void* k_, const void* A_,
                  const void* alpha_, const int64_t* lengths, void* y_, int64_t B, int64_t T_,
                  int64_t C) {
  const T* x = static_cast<const T*>(x_);
  const T* q = static_cast<const T*>(q_);
  const T* k = static_cast<const T*>(k_);
  const T* A = static_cast<const T*>(A_);
  T* y = static_cast<T*>(y_);
  const T alpha = *static_cast<const T*>(alpha_);
  const T oma = T(1) - alpha;
#pragma omp parallel for schedule(dynamic, 1) if (B * T_ * C > kParallel && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * T_ * C;
    T* yb = y + b * T_ * C;
    const int64_t L = lengths ? lengths[b] : T_;
    for (int64_t i = 0; i < T_ * C; ++i) yb[i] = xb[i];
    if (alpha == T(0)) continue;
    std::vector<std::vector<int64_t>> sets;
    select(xb, q, k, A, L, C, sets);
    std::vector<T> m(static_cast<size_t>(C));
    for (int64_t i = 0; i < L; ++i) {
      mean_of(xb, C, sets[i], m.data());
      for (int64_t c = 0; c < C; ++c) yb[i * C + c] = oma * xb[i * C + c] + alpha * m[c];
    }
  }
}

template <class T>
void backward_impl(const void* x_, const void* q_, const void* k_, const void* A_,
                   const void* alpha_, const int64_t* lengths, const void* gy_, void* gx_,
                   void* galpha_, int64_t B, int64_t T_, int64_t C) {
  const T* x = static_cast<const T*>(x_);
  const T* q = static_cast<const T*>(q_);
  const T* k = static_cast<const T*>(k_);
  const T* A = static_cast<const T*>(A_);
  const T* gy = static_cast<const T*>(gy_);
  T* gx = static_cast<T*>(gx_);
  T* galpha = static_cast<T*>(galpha_);
  const T alpha = *static_cast<const T*>(alpha_);
  const T oma = T(1) - alpha;
#pragma omp parallel for schedule(dynamic, 1) if (B * T_ * C > kParallel && B > 1)
  for (int64_t b = 0; b < B; ++b) {
    const T* xb = x + b * T_ * C;
    const T* gb = gy + b * T_ * C;
    T* gxb = gx + b * T_ * C;
    const int64_t L = lengths ? lengths[b] : T_;
    for (int64_t i = 0; i < T_ * C; ++i) gxb[i] = i < L * C ? oma * gb[i] : gb[i];
    std::vector<std::vector<int64_t>> sets;
    select(xb, q, k, A, L, C, sets);
    std::vector<T> m(static_cast<size_t>(C));
    T ga = 0;
    for (int64_t i = 0; i < L; ++i) {
      mean_of(xb, C, sets[i], m.data());
      const T share = alpha / static_cast<T>(sets[i].size());
      for (int64_t c = 0; c < C; ++c) ga = ga + gb[i * C + c] * (m[c] - xb[i * C + c]);
      for (int64_t j : sets[i])
        for (int64_t c = 0; c < C; ++c) gxb[j * C + c] = gxb[j * C + c] + share * gb[i * C + c];
    }
    galpha[b] = ga;
  }
}

template <class T>
void hardmax_rank1_forward(const void* x, const void* q, const void* k, const void* alpha,
                           const int64_t* lengths, void* y, int64_t B, int64_t T_, int64_t C) {
  forward_impl<T>(x, q, k, nullptr, alpha, lengths, y, B, T_, C);
}
template <class T>
void hardmax_general_forward(const void* x, const void* A, const void* alpha,
                             const int64_t* lengths, void* y, int64_t B, int64_t T_, int64_t C) {
  forward_impl<T>(x, nullptr, nullptr, A, alpha, lengths, y, B, T_, C);
}
template <class T>
void hardmax_rank1_backward(const void* x, const void* q, const void* k, const void* alpha,
                            const int64_t* lengths, const void* gy, void* gx, void* galpha,
                            int64_t B, int64_t T_, int64_t C) {
  backward_impl<T>(x, q, k, nullptr, alpha, lengths, gy, gx, galpha, B, T_, C);
}
template <class T>
void hardmax_general_backward(const void* x, const void* A, const void* alpha,
                              const int64_t* lengths, const void* gy, void* gx, void* galpha,
                              int64_t B, int64_t T_, int64_t C) {
  backward_impl<T>(x, nullptr, nullptr, A, alpha, lengths, gy, gx, galpha, B, T_, C);
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kHardmaxRank1Forward, hardmax_rank1_forward);
GRADUS_REGISTER_CPU_KERNEL(kHardmaxRank1Backward, hardmax_rank1_backward);
GRADUS_REGISTER_CPU_KERNEL(kHardmaxGeneralForward, hardmax_general_forward);
GRADUS_REGISTER_CPU_KERNEL(kHardmaxGeneralBackward, hardmax_general_backward);

}  // namespace gradus::kernels::cpu
