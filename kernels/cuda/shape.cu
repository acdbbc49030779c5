// CUDA indexing kernels: index_select and gather, forward and backward (see kernels/shape.h for
// the layouts and the determinism contract).
//
// Forwards validate the indices and gather in the same stream before one read-back, skipping bad
// indices so that nothing is read out of range. Backwards use no float atomics:
// - index_select: a stable radix sort of (index, position) groups the positions of each source row
//   in ascending order; one thread per element of grad_x walks its row's group.
// - gather: the index differs per column, so one thread owns a column (o, i) of grad_x and adds
//   grad_out[o, k, i] in ascending k, as the CPU's column tasks do.
#include "kernels/shape.h"

#include <cub/device/device_radix_sort.cuh>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"

namespace gradus::cuda {
namespace {

constexpr Device kGPU{DeviceType::cuda, 0};

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The report slot for a first bad position: 0x7f in every byte is a positive value above any
// position ("none"), set in stream order before the kernels that lower it.
long long* reset_first_bad() {
  long long* first = reinterpret_cast<long long*>(scratch_i64(1));
  GRADUS_CUDA_CHECK(cudaMemsetAsync(first, 0x7f, sizeof(long long), stream()));
  return first;
}
// Reads the slot back (synchronising): the first bad position, or -1.
int64_t read_first_bad(const long long* first, int64_t count) {
  long long bad = 0;
  GRADUS_CUDA_CHECK(cudaMemcpyAsync(&bad, first, sizeof(bad), cudaMemcpyDeviceToHost, stream()));
  synchronize();
  return bad < count ? static_cast<int64_t>(bad) : -1;
}

// index: (count). The smallest position whose index is outside [0, n) ends in *first (an integer
// atomicMin: the answer does not depend on the schedule).
__global__ void first_bad_index_kernel(const int64_t* index, int64_t count, int64_t n,
                                       long long* first) {
  GRADUS_CUDA_LOOP(p, count) {
    if (index[p] < 0 || index[p] >= n) atomicMin(first, static_cast<long long>(p));
  }
}

// ---- index_select ----

// x: (outer, n, inner_u), index: (K), out: (outer, K, inner_u), in units U (an element, or a
// 16-byte pack of them). out[o, k] = x[o, index[k]]; rows with a bad index are skipped.
template <class U>
__global__ void index_select_kernel(const U* x, const int64_t* index, U* out, int64_t outer,
                                    int64_t n, int64_t K, int64_t inner_u) {
  GRADUS_CUDA_LOOP(idx, outer * K * inner_u) {
    const int64_t r = idx / inner_u, i = idx % inner_u;
    const int64_t o = r / K, k = r % K;
    const int64_t j = index[k];
    if (j < 0 || j >= n) continue;
    out[idx] = x[(o * n + j) * inner_u + i];
  }
}

template <class T>
int64_t index_select(const void* x, const int64_t* index, void* out, int64_t outer, int64_t n,
                     int64_t K, int64_t inner) {
  if (K == 0) return -1;
  long long* first = reset_first_bad();
  first_bad_index_kernel<<<elementwise_blocks(K), kThreads, 0, stream()>>>(index, K, n, first);
  GRADUS_CUDA_CHECK_LAUNCH("index_select_first_bad");
  if (const int64_t total = outer * K * inner; total > 0) {
    if ((inner * sizeof(T)) % 16 == 0 && aligned16(x) && aligned16(out)) {
      const int64_t inner_u = inner * static_cast<int64_t>(sizeof(T)) / 16;
      index_select_kernel<int4><<<elementwise_blocks(outer * K * inner_u), kThreads, 0, stream()>>>(
          static_cast<const int4*>(x), index, static_cast<int4*>(out), outer, n, K, inner_u);
    } else {
      index_select_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
          static_cast<const T*>(x), index, static_cast<T*>(out), outer, n, K, inner);
    }
    GRADUS_CUDA_CHECK_LAUNCH("index_select");
  }
  return read_first_bad(first, K);
}

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
int key_bits(int64_t n) {
  int bits = 1;
  while (bits < 63 && ((n - 1) >> bits) != 0) ++bits;
  return bits;
}

// grad_out: (outer, K, inner); order: (K) positions grouped by index; start: (n + 1);
// grad_x: (outer, n, inner). One thread per element of grad_x adds its row's positions in
// ascending k (accumulating in the compute type, rounded once); rows never selected get zero.
template <class T>
__global__ void index_select_backward_kernel(const T* grad_out, const int64_t* order,
                                             const int64_t* start, T* grad_x, int64_t outer,
                                             int64_t n, int64_t K, int64_t inner) {
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

template <class T>
void index_select_backward(const void* grad_out, const int64_t* index, void* grad_x, int64_t outer,
                           int64_t n, int64_t K, int64_t inner) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  if (K == 0) {  // all-zero bytes are +0 in every float type
    GRADUS_CUDA_CHECK(cudaMemsetAsync(grad_x, 0, total * sizeof(T), stream()));
    return;
  }
  Tensor positions = Tensor::empty({K}, DType::i64, kGPU);
  Tensor keys = Tensor::empty({K}, DType::i64, kGPU);
  Tensor order = Tensor::empty({K}, DType::i64, kGPU);
  Tensor start = Tensor::empty({n + 1}, DType::i64, kGPU);
  int64_t* positions_p = static_cast<int64_t*>(positions.raw_data());
  int64_t* keys_p = static_cast<int64_t*>(keys.raw_data());
  int64_t* order_p = static_cast<int64_t*>(order.raw_data());
  int64_t* start_p = static_cast<int64_t*>(start.raw_data());

  iota_kernel<<<elementwise_blocks(K), kThreads, 0, stream()>>>(positions_p, K);
  GRADUS_CUDA_CHECK_LAUNCH("index_select_iota");
  // LSD radix sort is stable: equal indices keep their ascending positions.
  const int bits = key_bits(n);
  size_t temp_bytes = 0;
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, index, keys_p, positions_p,
                                                    order_p, K, 0, bits, stream()));
  Tensor temp = Tensor::empty({static_cast<int64_t>((temp_bytes + 7) / 8) + 1}, DType::i64, kGPU);
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, index, keys_p,
                                                    positions_p, order_p, K, 0, bits, stream()));
  bucket_start_kernel<<<elementwise_blocks(n + 1), kThreads, 0, stream()>>>(keys_p, K, n, start_p);
  GRADUS_CUDA_CHECK_LAUNCH("index_select_bucket_start");
  index_select_backward_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
      static_cast<const T*>(grad_out), order_p, start_p, static_cast<T*>(grad_x), outer, n, K,
      inner);
  GRADUS_CUDA_CHECK_LAUNCH("index_select_backward");
  // The temporaries return to the caching allocator now: the stream is in order, so whatever
  // reuses them runs after these kernels.
}

// ---- gather ----

// x: (outer, n, inner), index and out: (outer, K, inner). out[o, k, i] = x[o, index[o, k, i], i];
// validation in the same pass: a bad index lowers *first and its element is skipped.
template <class T>
__global__ void gather_kernel(const T* x, const int64_t* index, T* out, int64_t outer, int64_t n,
                              int64_t K, int64_t inner, long long* first) {
  GRADUS_CUDA_LOOP(p, outer * K * inner) {
    const int64_t j = index[p];
    if (j < 0 || j >= n) {
      atomicMin(first, static_cast<long long>(p));
      continue;
    }
    const int64_t o = p / (K * inner), i = p % inner;
    out[p] = x[(o * n + j) * inner + i];
  }
}

template <class T>
int64_t gather(const void* x, const int64_t* index, void* out, int64_t outer, int64_t n, int64_t K,
               int64_t inner) {
  const int64_t count = outer * K * inner;
  if (count == 0) return -1;
  long long* first = reset_first_bad();
  gather_kernel<T><<<elementwise_blocks(count), kThreads, 0, stream()>>>(
      static_cast<const T*>(x), index, static_cast<T*>(out), outer, n, K, inner, first);
  GRADUS_CUDA_CHECK_LAUNCH("gather");
  return read_first_bad(first, count);
}

// grad_out, index: (outer, K, inner); grad_x: (outer, n, inner) of the accumulation type A, zeroed
// beforehand. One thread per column (o, i) adds grad_out[o, k, i] into grad_x[o, index, i] for k
// ascending: the column is the thread's alone, so the order is fixed without atomics. Consecutive
// threads take consecutive i, so the reads of a row k coalesce. A bad index (the forward rejects
// them) is skipped rather than written out of range.
template <class T, class A>
__global__ void gather_backward_kernel(const T* grad_out, const int64_t* index, A* grad_x,
                                       int64_t outer, int64_t n, int64_t K, int64_t inner) {
  GRADUS_CUDA_LOOP(col, outer * inner) {
    const int64_t o = col / inner, i = col % inner;
    A* gx = grad_x + o * n * inner + i;
    for (int64_t k = 0; k < K; ++k) {
      const int64_t p = (o * K + k) * inner + i;
      const int64_t j = index[p];
      if (j < 0 || j >= n) continue;
      gx[j * inner] = gx[j * inner] + static_cast<A>(to_acc(grad_out[p]));
    }
  }
}

// dst: (count) bf16, src: (count) float; rounded once.
__global__ void round_to_bf16_kernel(bf16* dst, const float* src, int64_t count) {
  GRADUS_CUDA_LOOP(p, count) dst[p] = __float2bfloat16_rn(src[p]);
}

template <class T>
void gather_backward(const void* grad_out, const int64_t* index, void* grad_x, int64_t outer,
                     int64_t n, int64_t K, int64_t inner) {
  const int64_t total = outer * n * inner;
  if (total == 0) return;
  const T* go = static_cast<const T*>(grad_out);
  const int64_t columns = outer * inner;
  if constexpr (std::is_same_v<T, bf16>) {
    // bf16 accumulates in an f32 buffer and rounds once (the compute-type convention).
    Tensor sum = Tensor::empty({total}, DType::f32, kGPU);
    float* s = static_cast<float*>(sum.raw_data());
    GRADUS_CUDA_CHECK(cudaMemsetAsync(s, 0, total * sizeof(float), stream()));
    if (K > 0) {
      gather_backward_kernel<T, float><<<elementwise_blocks(columns), kThreads, 0, stream()>>>(
          go, index, s, outer, n, K, inner);
      GRADUS_CUDA_CHECK_LAUNCH("gather_backward");
    }
    round_to_bf16_kernel<<<elementwise_blocks(total), kThreads, 0, stream()>>>(
        static_cast<bf16*>(grad_x), s, total);
    GRADUS_CUDA_CHECK_LAUNCH("gather_backward_round");
  } else {
    // Zeros first (all-zero bytes are +0), then the sums in place, each rounded as on the CPU.
    GRADUS_CUDA_CHECK(cudaMemsetAsync(grad_x, 0, total * sizeof(T), stream()));
    if (K > 0) {
      gather_backward_kernel<T, T><<<elementwise_blocks(columns), kThreads, 0, stream()>>>(
          go, index, static_cast<T*>(grad_x), outer, n, K, inner);
      GRADUS_CUDA_CHECK_LAUNCH("gather_backward");
    }
  }
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kIndexSelect, index_select);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kIndexSelectBackward, index_select_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kGather, gather);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kGatherBackward, gather_backward);

}  // namespace gradus::cuda
