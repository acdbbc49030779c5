// CPU embedding gather and scatter-add (see kernels/embedding.h for the contract).
#include "kernels/embedding.h"

#include <algorithm>
#include <vector>

#include "kernels/registry.h"

namespace gradus::kernels::cpu {
namespace {

constexpr int64_t kParallelWork = 1 << 14;  // elements below which a loop stays on one thread

template <class T>
int64_t embedding_forward(const void* weight_, const int64_t* ids, void* out_, int64_t n,
                          int64_t vocab, int64_t cols) {
  const T* weight = static_cast<const T*>(weight_);
  T* out = static_cast<T*>(out_);
  // A serial check first: the first bad position is then well defined, and the gather below can
  // trust every id.
  for (int64_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab) return i;
#pragma omp parallel for if (n * cols > kParallelWork) schedule(static)
  for (int64_t i = 0; i < n; ++i) std::copy_n(weight + ids[i] * cols, cols, out + i * cols);
  return -1;
}

// Buckets the positions by id (a stable counting sort), then each vocabulary row sums its own
// positions in increasing order: rows are disjoint, so threads never share an output element.
template <class T>
void embedding_backward(const void* grad_out_, const int64_t* ids, void* grad_weight_, int64_t n,
                        int64_t vocab, int64_t cols) {
  const T* grad_out = static_cast<const T*>(grad_out_);
  T* grad_weight = static_cast<T*>(grad_weight_);
  std::vector<int64_t> start(static_cast<size_t>(vocab + 1), 0);
  for (int64_t i = 0; i < n; ++i) ++start[static_cast<size_t>(ids[i] + 1)];
  for (int64_t v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<int64_t> order(static_cast<size_t>(n));
  {
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(next[ids[i]]++)] = i;
  }
#pragma omp parallel for if ((n + vocab) * cols > kParallelWork) schedule(static)
  for (int64_t v = 0; v < vocab; ++v) {
    T* row = grad_weight + v * cols;
    std::fill_n(row, cols, T(0));
    for (int64_t k = start[v]; k < start[v + 1]; ++k) {
      const T* g = grad_out + order[k] * cols;
      for (int64_t c = 0; c < cols; ++c) row[c] += g[c];
    }
  }
}

}  // namespace

GRADUS_REGISTER_CPU_KERNEL(kEmbeddingForward, embedding_forward);
GRADUS_REGISTER_CPU_KERNEL(kEmbeddingBackward, embedding_backward);

}  // namespace gradus::kernels::cpu
