// CUDA embedding gather and scatter-add (see kernels/embedding.h for the contract).
//
// The backward sums, for each vocabulary row, the rows of grad_out whose id is that row, in
// increasing position, without float atomics: a stable radix sort of the (id, position) pairs
// groups the positions of each id in increasing order, and one thread per element of grad_weight
// walks its id's group.
#include "kernels/embedding.h"

#include <cub/device/device_radix_sort.cuh>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

constexpr Device kGPU{DeviceType::cuda, 0};

// ids: (n). The smallest position whose id is outside [0, vocab) ends in *first (an integer
// atomicMin, so the answer does not depend on the schedule); *first is untouched when all are
// valid.
__global__ void first_bad_id_kernel(const int64_t* ids, int64_t n, int64_t vocab,
                                    long long* first) {
  GRADUS_CUDA_LOOP(i, n) {
    if (ids[i] < 0 || ids[i] >= vocab) atomicMin(first, static_cast<long long>(i));
  }
}

// weight: (vocab, cols_u), out: (n, cols_u), in units U (an element, or a 16-byte pack of them).
// out[r] = weight[ids[r]]; rows with a bad id are skipped (the caller reports them and out is then
// unspecified), so nothing is read out of range.
template <class U>
__global__ void embedding_gather_kernel(const U* weight, const int64_t* ids, U* out, int64_t n,
                                        int64_t vocab, int64_t cols_u) {
  GRADUS_CUDA_LOOP(idx, n * cols_u) {
    const int64_t r = idx / cols_u, c = idx % cols_u;
    const int64_t id = ids[r];
    if (id < 0 || id >= vocab) continue;
    out[idx] = weight[id * cols_u + c];
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <class T>
int64_t embedding_forward(const void* weight, const int64_t* ids, void* out, int64_t n,
                          int64_t vocab, int64_t cols) {
  if (n == 0) return -1;
  long long* first = reinterpret_cast<long long*>(scratch_i64(1));
  // 0x7f in every byte: a positive value above any position, meaning "none".
  GRADUS_CUDA_CHECK(cudaMemsetAsync(first, 0x7f, sizeof(long long), stream()));
  first_bad_id_kernel<<<elementwise_blocks(n), kThreads, 0, stream()>>>(ids, n, vocab, first);
  GRADUS_CUDA_CHECK_LAUNCH("embedding_first_bad_id");
  if (cols > 0) {
    // The gather runs before the check is read back (one synchronisation, not two).
    if ((cols * sizeof(T)) % 16 == 0 && aligned16(weight) && aligned16(out)) {
      const int64_t cols_u = cols * static_cast<int64_t>(sizeof(T)) / 16;
      embedding_gather_kernel<int4><<<elementwise_blocks(n * cols_u), kThreads, 0, stream()>>>(
          static_cast<const int4*>(weight), ids, static_cast<int4*>(out), n, vocab, cols_u);
    } else {
      embedding_gather_kernel<T><<<elementwise_blocks(n * cols), kThreads, 0, stream()>>>(
          static_cast<const T*>(weight), ids, static_cast<T*>(out), n, vocab, cols);
    }
    GRADUS_CUDA_CHECK_LAUNCH("embedding_gather");
  }
  long long bad = 0;
  GRADUS_CUDA_CHECK(cudaMemcpyAsync(&bad, first, sizeof(bad), cudaMemcpyDeviceToHost, stream()));
  synchronize();
  return bad < n ? static_cast<int64_t>(bad) : -1;
}

// values: (n), values[i] = i.
__global__ void iota_kernel(int64_t* values, int64_t n) { GRADUS_CUDA_LOOP(i, n) values[i] = i; }

// keys: (n) sorted ascending; start: (vocab + 1), start[v] = the first place whose key is >= v, so
// the positions of id v are order[start[v] .. start[v + 1]). A binary search per v keeps every
// start within [0, n] whatever the keys hold.
__global__ void bucket_start_kernel(const int64_t* keys, int64_t n, int64_t vocab, int64_t* start) {
  GRADUS_CUDA_LOOP(v, vocab + 1) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < v)
        lo = mid + 1;
      else
        hi = mid;
    }
    start[v] = lo;
  }
}

// grad_out: (n, cols); order: (n) positions grouped by id; start: (vocab + 1);
// grad_weight: (vocab, cols). One thread per element of grad_weight adds its id's rows in
// increasing position (accumulating in the compute type, rounded once); absent ids give zero.
template <class T>
__global__ void embedding_backward_kernel(const T* grad_out, const int64_t* order,
                                          const int64_t* start, T* grad_weight, int64_t vocab,
                                          int64_t cols) {
  GRADUS_CUDA_LOOP(idx, vocab * cols) {
    const int64_t v = idx / cols, c = idx % cols;
    acc_t<T> acc = 0;
    for (int64_t k = start[v], end = start[v + 1]; k < end; ++k)
      acc += to_acc(grad_out[order[k] * cols + c]);
    grad_weight[idx] = from_acc<T>(acc);
  }
}

// Bits that hold every id in [0, vocab): the radix sort looks at these only.
int key_bits(int64_t vocab) {
  int bits = 1;
  while (bits < 63 && ((vocab - 1) >> bits) != 0) ++bits;
  return bits;
}

template <class T>
void embedding_backward(const void* grad_out, const int64_t* ids, void* grad_weight, int64_t n,
                        int64_t vocab, int64_t cols) {
  if (vocab == 0 || cols == 0) return;
  if (n == 0) {  // all-zero bytes are +0 in every float type
    GRADUS_CUDA_CHECK(cudaMemsetAsync(grad_weight, 0, vocab * cols * sizeof(T), stream()));
    return;
  }
  Tensor positions = Tensor::empty({n}, DType::i64, kGPU);
  Tensor keys = Tensor::empty({n}, DType::i64, kGPU);
  Tensor order = Tensor::empty({n}, DType::i64, kGPU);
  Tensor start = Tensor::empty({vocab + 1}, DType::i64, kGPU);
  int64_t* positions_p = static_cast<int64_t*>(positions.raw_data());
  int64_t* keys_p = static_cast<int64_t*>(keys.raw_data());
  int64_t* order_p = static_cast<int64_t*>(order.raw_data());
  int64_t* start_p = static_cast<int64_t*>(start.raw_data());

  iota_kernel<<<elementwise_blocks(n), kThreads, 0, stream()>>>(positions_p, n);
  GRADUS_CUDA_CHECK_LAUNCH("embedding_iota");
  // LSD radix sort is stable: equal ids keep their increasing positions.
  const int bits = key_bits(vocab);
  size_t temp_bytes = 0;
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, keys_p, positions_p,
                                                    order_p, n, 0, bits, stream()));
  Tensor temp = Tensor::empty({static_cast<int64_t>((temp_bytes + 7) / 8) + 1}, DType::i64, kGPU);
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, ids, keys_p,
                                                    positions_p, order_p, n, 0, bits, stream()));
  bucket_start_kernel<<<elementwise_blocks(vocab + 1), kThreads, 0, stream()>>>(keys_p, n, vocab,
                                                                                start_p);
  GRADUS_CUDA_CHECK_LAUNCH("embedding_bucket_start");
  embedding_backward_kernel<T><<<elementwise_blocks(vocab * cols), kThreads, 0, stream()>>>(
      static_cast<const T*>(grad_out), order_p, start_p, static_cast<T*>(grad_weight), vocab, cols);
  GRADUS_CUDA_CHECK_LAUNCH("embedding_backward");
  // The temporaries go back to the caching allocator now; the stream is in order, so whatever
  // reuses them runs after these kernels.
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kEmbeddingForward, embedding_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kEmbeddingBackward, embedding_backward);

}  // namespace gradus::cuda
