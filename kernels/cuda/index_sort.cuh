// Index helpers shared by the gather / scatter-add kernels (embedding.cu, shape.cu): validation of
// i64 indices with a first-bad-position report, the row gather out[o, k] = x[o, index[k]], and a
// stable bucket sort of index positions that lets a scatter-add sum without float atomics.
//
// Everything here has internal linkage (an unnamed namespace): kernels defined in a header would
// otherwise give every including file its own external host stub, which clash at link time.
#pragma once

#include <cub/device/device_radix_sort.cuh>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

// ---- validation: the first position whose index is outside [0, n) ----

// The report slot for a first bad position: 0x7f in every byte is a positive value above any
// position ("none"), set in stream order before the kernels that lower it.
inline long long* reset_first_bad() {
  long long* first = reinterpret_cast<long long*>(scratch_i64(1));
  GRADUS_CUDA_CHECK(cudaMemsetAsync(first, 0x7f, sizeof(long long), stream()));
  return first;
}
// Reads the slot back (synchronising): the first bad position, or -1.
inline int64_t read_first_bad(const long long* first, int64_t count) {
  long long bad = 0;
  GRADUS_CUDA_CHECK(cudaMemcpyAsync(&bad, first, sizeof(bad), cudaMemcpyDeviceToHost, stream()));
  synchronize();
  return bad < count ? static_cast<int64_t>(bad) : -1;
}

// index: (count). The smallest position whose index is outside [0, n) ends in *first (an integer
// atomicMin: the answer does not depend on the schedule); *first is untouched when all are valid.
__global__ void first_bad_index_kernel(const int64_t* index, int64_t count, int64_t n,
                                       long long* first) {
  GRADUS_CUDA_LOOP(p, count) {
    if (index[p] < 0 || index[p] >= n) atomicMin(first, static_cast<long long>(p));
  }
}
// Queues the check of index: (count) against [0, n) into *first (from reset_first_bad).
inline void check_indices(const int64_t* index, int64_t count, int64_t n, long long* first,
                          const char* name) {
  first_bad_index_kernel<<<elementwise_blocks(count), kThreads, 0, stream()>>>(index, count, n,
                                                                               first);
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

// ---- row gather ----

// x: (outer, n, inner_u), index: (K), out: (outer, K, inner_u), in units U (an element, or a
// 16-byte pack of them). out[o, k] = x[o, index[k]]; rows with a bad index are skipped (the caller
// reports them and out is then unspecified), so nothing is read out of range.
template <class U>
__global__ void gather_rows_kernel(const U* x, const int64_t* index, U* out, int64_t outer,
                                   int64_t n, int64_t K, int64_t inner_u) {
  GRADUS_CUDA_LOOP(idx, outer * K * inner_u) {
    const int64_t r = idx / inner_u, i = idx % inner_u;
    const int64_t o = r / K, k = r % K;
    const int64_t j = index[k];
    if (j < 0 || j >= n) continue;
    out[idx] = x[(o * n + j) * inner_u + i];
  }
}
// The same for elements T: moved 16 bytes at a time when rows are whole 16-byte units and both
// pointers are aligned. Nothing to do when outer * K * inner == 0.
template <class T>
void gather_rows(const T* x, const int64_t* index, T* out, int64_t outer, int64_t n, int64_t K,
                 int64_t inner, const char* name) {
  const int64_t total = outer * K * inner;
  if (total == 0) return;
  if ((inner * static_cast<int64_t>(sizeof(T))) % 16 == 0 && aligned16(x) && aligned16(out)) {
    const int64_t inner_u = inner * static_cast<int64_t>(sizeof(T)) / 16;
    gather_rows_kernel<int4><<<elementwise_blocks(outer * K * inner_u), kThreads, 0, stream()>>>(
        reinterpret_cast<const int4*>(x), index, reinterpret_cast<int4*>(out), outer, n, K,
        inner_u);
  } else {
    gather_rows_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(x, index, out,
                                                                                outer, n, K, inner);
  }
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

// ---- stable bucket sort of positions by index ----

// values: (count), values[p] = p.
__global__ void iota_kernel(int64_t* values, int64_t count) {
  GRADUS_CUDA_LOOP(p, count) values[p] = p;
}

// keys: (count) sorted ascending; start: (n + 1), start[j] = the first place whose key is >= j, so
// the positions holding j are order[start[j] .. start[j + 1]). A binary search per j keeps every
// start within [0, count] whatever the keys hold.
__global__ void bucket_start_kernel(const int64_t* keys, int64_t count, int64_t n, int64_t* start) {
  GRADUS_CUDA_LOOP(j, n + 1) {
    int64_t lo = 0, hi = count;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (keys[mid] < j)
        lo = mid + 1;
      else
        hi = mid;
    }
    start[j] = lo;
  }
}

// Bits that hold every index in [0, n): the radix sort looks at these only.
inline int key_bits(int64_t n) {
  int bits = 1;
  while (bits < 63 && ((n - 1) >> bits) != 0) ++bits;
  return bits;
}

// The positions of index: (count), each in [0, n), grouped by value: order: (count) positions,
// start: (n + 1); the positions holding j are order[start[j] .. start[j + 1]), ascending (an LSD
// radix sort is stable). count >= 1, n >= 1. The temporaries go back to the caching allocator on
// return; the stream is in order, so whatever reuses them runs after these kernels.
struct IndexBuckets {
  Tensor order;
  Tensor start;
  const int64_t* order_data() const { return static_cast<const int64_t*>(order.raw_data()); }
  const int64_t* start_data() const { return static_cast<const int64_t*>(start.raw_data()); }
};
inline IndexBuckets bucket_positions(const int64_t* index, int64_t count, int64_t n,
                                     const char* name) {
  IndexBuckets b{Tensor::empty({count}, DType::i64, kGPU), Tensor::empty({n + 1}, DType::i64, kGPU)};
  Tensor positions = Tensor::empty({count}, DType::i64, kGPU);
  Tensor keys = Tensor::empty({count}, DType::i64, kGPU);
  int64_t* positions_p = static_cast<int64_t*>(positions.raw_data());
  int64_t* keys_p = static_cast<int64_t*>(keys.raw_data());
  int64_t* order_p = static_cast<int64_t*>(b.order.raw_data());
  int64_t* start_p = static_cast<int64_t*>(b.start.raw_data());

  iota_kernel<<<elementwise_blocks(count), kThreads, 0, stream()>>>(positions_p, count);
  GRADUS_CUDA_CHECK_LAUNCH(name);
  const int bits = key_bits(n);
  size_t temp_bytes = 0;
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, index, keys_p, positions_p,
                                                    order_p, count, 0, bits, stream()));
  Tensor temp = Tensor::empty({static_cast<int64_t>((temp_bytes + 7) / 8) + 1}, DType::i64, kGPU);
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, index, keys_p,
                                                    positions_p, order_p, count, 0, bits, stream()));
  bucket_start_kernel<<<elementwise_blocks(n + 1), kThreads, 0, stream()>>>(keys_p, count, n,
                                                                            start_p);
  GRADUS_CUDA_CHECK_LAUNCH(name);
  return b;
}

// grad_out: (outer, K, inner); buckets of index: (K) over [0, n); grad_x: (outer, n, inner).
// grad_x[o, j, i] = the sum of grad_out[o, k, i] over the positions k holding j, in ascending k
// (accumulated in the compute type, rounded once); rows never selected get zero. One thread per
// element of grad_x: each output has one writer, so no atomics.
template <class T>
__global__ void sum_buckets_kernel(const T* grad_out, const int64_t* order, const int64_t* start,
                                   T* grad_x, int64_t outer, int64_t n, int64_t K, int64_t inner) {
  GRADUS_CUDA_LOOP(idx, outer * n * inner) {
    const int64_t r = idx / inner, i = idx % inner;
    const int64_t o = r / n, j = r % n;
    const T* go = grad_out + o * K * inner + i;
    acc_t<T> acc = 0;
    for (int64_t k = start[j], end = start[j + 1]; k < end; ++k)
      acc += to_acc(go[order[k] * inner]);
    grad_x[idx] = from_acc<T>(acc);
  }
}

// The whole scatter-add: grad_x: (outer, n, inner), fully written (zeros where nothing was
// gathered), from grad_out: (outer, K, inner) and index: (K), each index in [0, n).
template <class T>
void scatter_add_rows(const T* grad_out, const int64_t* index, T* grad_x, int64_t outer, int64_t n,
                      int64_t K, int64_t inner, const char* name) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  if (K == 0) {  // all-zero bytes are +0 in every float type
    GRADUS_CUDA_CHECK(cudaMemsetAsync(grad_x, 0, total * sizeof(T), stream()));
    return;
  }
  const IndexBuckets b = bucket_positions(index, K, n, name);
  sum_buckets_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
      grad_out, b.order_data(), b.start_data(), grad_x, outer, n, K, inner);
  GRADUS_CUDA_CHECK_LAUNCH(name);
}

}  // namespace
}  // namespace gradus::cuda
