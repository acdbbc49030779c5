// CUDA embedding gather and scatter-add (see kernels/embedding.h for the contract).
//
// An embedding is index_select on a (1, vocab, cols) table, so both directions use the shared row
// helpers of index_sort.cuh. The backward sums, for each vocabulary row, the rows of grad_out whose
// id is that row, in increasing position, without float atomics: a stable radix sort of the
// (id, position) pairs groups the positions of each id in increasing order, and one thread per
// element of grad_weight walks its id's group.
#include "kernels/embedding.h"

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/index_sort.cuh"

namespace gradus::cuda {
namespace {

// weight: (vocab, cols); ids: (n); out: (n, cols).
template <class T>
int64_t embedding_forward(const void* weight, const int64_t* ids, void* out, int64_t n,
                          int64_t vocab, int64_t cols) {
  if (n == 0) return -1;
  long long* first = reset_first_bad();
  check_indices(ids, n, vocab, first, "embedding_first_bad_id");
  // The gather runs before the check is read back (one synchronisation, not two); rows with a bad
  // id are skipped.
  gather_rows(static_cast<const T*>(weight), ids, static_cast<T*>(out), 1, vocab, n, cols,
              "embedding_gather");
  return read_first_bad(first, n);
}

// grad_out: (n, cols); ids: (n), each in [0, vocab); grad_weight: (vocab, cols), fully written.
template <class T>
void embedding_backward(const void* grad_out, const int64_t* ids, void* grad_weight, int64_t n,
                        int64_t vocab, int64_t cols) {
  scatter_add_rows(static_cast<const T*>(grad_out), ids, static_cast<T*>(grad_weight), 1, vocab, n,
                   cols, "embedding_backward");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kEmbeddingForward, embedding_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kEmbeddingBackward, embedding_backward);

}  // namespace gradus::cuda
