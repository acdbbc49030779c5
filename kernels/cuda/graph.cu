// CUDA graph kernels (contracts: kernels/graph.h; mirrors kernels/cpu/graph.cpp).
//
// Agreement with the CPU: every kernel here reproduces the CPU's order of operations, so f32 and
// f64 results equal the CPU's bit for bit. The extrema and masks do no arithmetic (compares and
// copies); the CSR products add their terms in the CPU's ascending order (edges of a row, edges
// into a column by ascending row, channels of a dot product) with explicitly rounded intrinsics
// (rounded.cuh), so nvcc cannot contract a product and a sum into an FMA the host build does not
// form (-ffp-contract=off). bf16 loads convert to f32, compute, and round once on store.
//
// No float atomics: every output element has a single writer that runs its own sum. The integer
// counts of topk_mask's radix select use shared-memory integer atomics (exact, order-free).
#include <cub/device/device_radix_sort.cuh>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/index_sort.cuh"
#include "kernels/cuda/rounded.cuh"
#include "kernels/graph.h"

namespace gradus::cuda {
namespace {

// ---------------------------------------------------------------- neighbourhood extrema

// adj: (batch, L, S), x: (batch, S, d) -> out, arg: (batch, L, d). One thread per (b, i, c),
// streaming over j: consecutive threads share the row (b, i), so their adjacency reads are one
// broadcast and their reads of x[b, j, :] one coalesced row. The first neighbour initialises (so
// infinities compare like any value) and a later one replaces the best only when strictly better:
// the first among ties wins, and a NaN best stays (no compare with it is true), as on the CPU.
template <class T, bool kMin>
__global__ void neighbour_extremum_kernel(const T* adj, const T* x, T* out, int64_t* arg, int64_t L,
                                          int64_t S, int64_t d, int64_t total) {
  using A = acc_t<T>;
  GRADUS_CUDA_LOOP(idx, total) {
    const int64_t r = idx / d, c = idx % d;  // r = b * L + i
    const T* a = adj + r * S;
    const T* xc = x + (r / L) * S * d + c;
    int64_t best_j = -1;
    A best = 0;
    for (int64_t j = 0; j < S; ++j) {
      if (!(to_acc(a[j]) > A(0))) continue;
      const A v = to_acc(xc[j * d]);
      const bool take = best_j < 0 || (kMin ? v < best : v > best);
      best = take ? v : best;
      best_j = take ? j : best_j;
    }
    out[idx] = best_j < 0 ? from_acc<T>(A(0)) : xc[best_j * d];  // the value copied, not rounded
    arg[idx] = best_j;
  }
}

template <class T>
void neighbour_extremum_forward(const void* adj, const void* x, void* out, int64_t* arg,
                                int64_t batch, int64_t L, int64_t S, int64_t d, bool is_min) {
  // The CPU tracks indices in 32 bits; the same limit keeps the backends' contracts alike.
  GRADUS_CHECK(S < (int64_t{1} << 31), "neighbour_extremum", "{} senders exceed 2^31", S);
  const int64_t total = batch * L * d;
  if (total == 0) return;
  const T* a = static_cast<const T*>(adj);
  const T* xs = static_cast<const T*>(x);
  T* o = static_cast<T*>(out);
  const int blocks = elementwise_blocks(total);
  if (is_min)
    neighbour_extremum_kernel<T, true>
        <<<blocks, kThreads, 0, stream()>>>(a, xs, o, arg, L, S, d, total);
  else
    neighbour_extremum_kernel<T, false>
        <<<blocks, kThreads, 0, stream()>>>(a, xs, o, arg, L, S, d, total);
  GRADUS_CUDA_CHECK_LAUNCH("neighbour_extremum_forward");
}

// grad_out, arg: (batch, L, d) -> grad_x: (batch, S, d), every element written. One thread per
// (b, j, c) gathers the receivers i whose extremum came from j, in ascending i as the CPU adds
// them (from 0, in the compute type): one writer per element, no atomics. The scan costs L reads
// of arg per element, the forward's own O(L S d).
template <class T>
__global__ void neighbour_extremum_backward_kernel(const T* grad_out, const int64_t* arg, T* grad_x,
                                                   int64_t L, int64_t S, int64_t d, int64_t total) {
  GRADUS_CUDA_LOOP(idx, total) {
    const int64_t c = idx % d, j = (idx / d) % S, b = idx / (S * d);
    const int64_t* a = arg + b * L * d + c;
    const T* g = grad_out + b * L * d + c;
    acc_t<T> acc = 0;
    for (int64_t i = 0; i < L; ++i)
      if (a[i * d] == j) acc = add_rn(acc, to_acc(g[i * d]));
    grad_x[idx] = from_acc<T>(acc);
  }
}

template <class T>
void neighbour_extremum_backward(const void* grad_out, const int64_t* arg, void* grad_x,
                                 int64_t batch, int64_t L, int64_t S, int64_t d) {
  const int64_t total = batch * S * d;
  if (total == 0) return;
  neighbour_extremum_backward_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
      static_cast<const T*>(grad_out), arg, static_cast<T*>(grad_x), L, S, d, total);
  GRADUS_CUDA_CHECK_LAUNCH("neighbour_extremum_backward");
}

// ---------------------------------------------------------------- masks

// x, out: (n,). The threshold is compared in the compute type (f32 for f32 and bf16, f64 for f64):
// for f32 and f64 that is the CPU's static_cast<T>(threshold).
template <class T>
__global__ void greater_mask_kernel(const T* x, T* out, int64_t n, acc_t<T> threshold) {
  GRADUS_CUDA_LOOP(i, n) {
    out[i] = from_acc<T>(to_acc(x[i]) > threshold ? acc_t<T>(1) : acc_t<T>(0));
  }
}

template <class T>
void greater_mask(const void* x, void* out, int64_t n, double threshold) {
  if (n == 0) return;
  greater_mask_kernel<T><<<elementwise_blocks(n), kThreads, 0, stream()>>>(
      static_cast<const T*>(x), static_cast<T*>(out), n, static_cast<acc_t<T>>(threshold));
  GRADUS_CUDA_CHECK_LAUNCH("greater_mask");
}

// topk_mask's order as unsigned keys: a larger key is "before" in the CPU's strict order, up to the
// index tie-break. Every NaN maps to 0 (below -inf's key: NaNs rank last and tie with each other),
// and -0 to +0 (the CPU finds them equal, so they tie too). Other values: the sign bit flipped for
// positives, all bits for negatives (the usual order-preserving map of IEEE floats).
template <class T>
struct OrderKey {
  using type = uint32_t;  // f32 and bf16 (bf16 is exact in f32)
  __device__ static uint32_t of(T v) {
    float f = to_acc(v);
    if (isnan(f)) return 0u;
    if (f == 0.0f) f = 0.0f;
    const uint32_t bits = __float_as_uint(f);
    return (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);
  }
};
template <>
struct OrderKey<double> {
  using type = unsigned long long;
  __device__ static unsigned long long of(double v) {
    if (isnan(v)) return 0ull;
    if (v == 0.0) v = 0.0;
    const unsigned long long bits = static_cast<unsigned long long>(__double_as_longlong(v));
    return (bits & 0x8000000000000000ull) ? ~bits : (bits | 0x8000000000000000ull);
  }
};

constexpr int kTopkThreads = 256;  // a multiple of 32: whole warps for the ballots

// x, out: (rows, n), one block per row (grid-stride over rows). A radix select, 8 key bits per
// pass from the top, finds the key K of the k-th entry and how many entries equal to K are still
// needed (`need`); then out = 1 where key > K, and at the first `need` entries with key == K in
// index order (the lower index first among ties), found by a block-wide running count. O(n) per
// pass; the counts are integers, so their shared-memory atomics are exact.
template <class T>
__global__ void __launch_bounds__(kTopkThreads)
    topk_mask_kernel(const T* x, T* out, int64_t rows, int64_t n, int64_t k) {
  using K = typename OrderKey<T>::type;
  constexpr int kBits = static_cast<int>(sizeof(K)) * 8;
  __shared__ unsigned long long hist[256];
  __shared__ int64_t chosen_bin, remaining;
  __shared__ int64_t warp_counts[kTopkThreads / 32];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * n;
    T* o = out + r * n;
    K prefix = 0, mask = 0;
    if (tid == 0) remaining = k;
    for (int shift = kBits - 8; shift >= 0; shift -= 8) {
      for (int b = tid; b < 256; b += blockDim.x) hist[b] = 0;
      __syncthreads();
      for (int64_t p = tid; p < n; p += blockDim.x) {
        const K key = OrderKey<T>::of(xr[p]);
        if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 0xff], 1ull);
      }
      __syncthreads();
      if (tid == 0) {  // the bin holding the remaining-th largest, from the top bin down
        int64_t need = remaining;
        int bin = 255;
        for (; bin > 0; --bin) {
          const int64_t h = static_cast<int64_t>(hist[bin]);
          if (h >= need) break;
          need -= h;
        }
        chosen_bin = bin;
        remaining = need;
      }
      __syncthreads();
      prefix |= static_cast<K>(chosen_bin) << shift;
      mask |= static_cast<K>(0xff) << shift;
    }
    const K kth = prefix;
    const int64_t need = remaining;  // entries equal to kth to keep, the lowest indices first
    int64_t taken = 0;               // equal entries in the chunks before this one
    for (int64_t base = 0; base < n; base += blockDim.x) {
      const int64_t p = base + tid;
      const K key = p < n ? OrderKey<T>::of(xr[p]) : K(0);
      const bool eq = p < n && key == kth;
      const unsigned ballot = __ballot_sync(0xffffffffu, eq);
      __syncthreads();  // warp_counts may still be read for the previous chunk
      if (lane == 0) warp_counts[warp] = __popc(ballot);
      __syncthreads();
      int64_t before = taken + __popc(ballot & ((1u << lane) - 1u));
      int64_t chunk = 0;
      for (int w = 0; w < static_cast<int>(blockDim.x >> 5); ++w) {
        if (w < warp) before += warp_counts[w];
        chunk += warp_counts[w];
      }
      if (p < n) o[p] = from_acc<T>(key > kth || (eq && before < need) ? 1.0f : 0.0f);
      taken += chunk;
    }
    __syncthreads();  // `remaining` is reset for the next row only after every thread read it
  }
}

template <class T>
void topk_mask(const void* x, void* out, int64_t rows, int64_t n, int64_t k) {
  if (rows * n == 0) return;
  topk_mask_kernel<T><<<grid_for(rows), kTopkThreads, 0, stream()>>>(
      static_cast<const T*>(x), static_cast<T*>(out), rows, n, k);
  GRADUS_CUDA_CHECK_LAUNCH("topk_mask");
}

// ---------------------------------------------------------------- CSR from dense

__device__ __forceinline__ bool keep_position(int64_t i, int64_t j, int64_t len, bool causal) {
  return i < len && j < len && (!causal || j <= i);
}

constexpr int kWarpsPerBlock = kThreads / 32;

// adj: (batch, L, S) -> counts: (batch * L,). A warp per row: the lanes read 32 consecutive
// entries at a time (coalesced) and their ballots are counted (integers: exact).
template <class T>
__global__ void csr_count_kernel(const T* adj, const int64_t* lengths, int64_t* counts, int64_t L,
                                 int64_t S, int64_t rows, acc_t<T> threshold, bool causal) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < rows;
       r += warps) {
    const int64_t b = r / L, i = r % L;
    const int64_t len = lengths ? lengths[b] : (L > S ? L : S);
    const T* a = adj + r * S;
    int64_t n = 0;
    for (int64_t j0 = 0; j0 < S; j0 += 32) {
      const int64_t j = j0 + lane;
      const bool keep = j < S && keep_position(i, j, len, causal) && to_acc(a[j]) > threshold;
      n += __popc(__ballot_sync(0xffffffffu, keep));
    }
    if (lane == 0) counts[r] = n;
  }
}

// Given row_ptr: (batch * L + 1,): col, source: (nnz,). A warp per row, 32 senders at a time: a
// kept edge's slot is the row's running count plus the kept lanes below it, so the edges of a row
// come out in ascending j.
template <class T>
__global__ void csr_fill_kernel(const T* adj, const int64_t* lengths, const int64_t* row_ptr,
                                int64_t* col, int64_t* source, int64_t L, int64_t S, int64_t rows,
                                acc_t<T> threshold, bool causal) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); r < rows;
       r += warps) {
    const int64_t b = r / L, i = r % L;
    const int64_t len = lengths ? lengths[b] : (L > S ? L : S);
    const T* a = adj + r * S;
    int64_t e = row_ptr[r];
    for (int64_t j0 = 0; j0 < S; j0 += 32) {
      const int64_t j = j0 + lane;
      const bool keep = j < S && keep_position(i, j, len, causal) && to_acc(a[j]) > threshold;
      const unsigned ballot = __ballot_sync(0xffffffffu, keep);
      if (keep) {
        const int64_t slot = e + __popc(ballot & ((1u << lane) - 1u));
        col[slot] = b * S + j;
        source[slot] = r * S + j;
      }
      e += __popc(ballot);
    }
  }
}

template <class T>
void csr_count(const void* adj, const int64_t* lengths, int64_t* counts, int64_t batch, int64_t L,
               int64_t S, double threshold, bool causal) {
  const int64_t rows = batch * L;
  if (rows == 0) return;
  csr_count_kernel<T><<<grid_for(ceil_div(rows, kWarpsPerBlock)), kThreads, 0, stream()>>>(
      static_cast<const T*>(adj), lengths, counts, L, S, rows, static_cast<acc_t<T>>(threshold),
      causal);
  GRADUS_CUDA_CHECK_LAUNCH("csr_count");
}

template <class T>
void csr_fill(const void* adj, const int64_t* lengths, const int64_t* row_ptr, int64_t* col,
              int64_t* source, int64_t batch, int64_t L, int64_t S, double threshold, bool causal) {
  const int64_t rows = batch * L;
  if (rows == 0) return;
  csr_fill_kernel<T><<<grid_for(ceil_div(rows, kWarpsPerBlock)), kThreads, 0, stream()>>>(
      static_cast<const T*>(adj), lengths, row_ptr, col, source, L, S, rows,
      static_cast<acc_t<T>>(threshold), causal);
  GRADUS_CUDA_CHECK_LAUNCH("csr_fill");
}

// ---------------------------------------------------------------- CSR products

// row_ptr: (rows + 1,), col, values: (nnz,), x: (cols, d) -> out: (rows, d). One thread per
// (i, c): consecutive threads share row i (its edge list is read once per warp, broadcast) and
// read consecutive channels of x[col[e]] (coalesced); for d >= 32 a warp is a row's 32 channels.
// The edges are added in row order from 0 with rounded intrinsics: the CPU's o[c] += w x[c].
template <class T>
__global__ void csr_matmul_kernel(const int64_t* row_ptr, const int64_t* col, const T* values,
                                  const T* x, T* out, int64_t d, int64_t total) {
  GRADUS_CUDA_LOOP(idx, total) {
    const int64_t i = idx / d, c = idx % d;
    acc_t<T> acc = 0;
    for (int64_t e = row_ptr[i], end = row_ptr[i + 1]; e < end; ++e)
      acc = add_rn(acc, mul_rn(to_acc(values[e]), to_acc(x[col[e] * d + c])));
    out[idx] = from_acc<T>(acc);
  }
}

template <class T>
void csr_matmul_forward(const int64_t* row_ptr, const int64_t* col, const void* values,
                        const void* x, void* out, int64_t rows, int64_t d) {
  const int64_t total = rows * d;
  if (total == 0) return;
  csr_matmul_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
      row_ptr, col, static_cast<const T*>(values), static_cast<const T*>(x), static_cast<T*>(out),
      d, total);
  GRADUS_CUDA_CHECK_LAUNCH("csr_matmul_forward");
}

// The row of each edge: the last i in [0, rows) with row_ptr[i] <= e (rows without edges share
// their row_ptr value with the next row, and the last of them is the one that holds e).
__device__ __forceinline__ int64_t row_of_edge(const int64_t* row_ptr, int64_t rows, int64_t e) {
  int64_t lo = 0, hi = rows - 1;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo + 1) / 2;
    if (row_ptr[mid] <= e)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// edge: (nnz,) the edges sorted by column -> edge_row: (nnz,) their rows.
__global__ void edge_rows_kernel(const int64_t* row_ptr, const int64_t* edge, int64_t* edge_row,
                                 int64_t rows, int64_t nnz) {
  GRADUS_CUDA_LOOP(s, nnz) edge_row[s] = row_of_edge(row_ptr, rows, edge[s]);
}

// The transposed structure (kernels/graph.h): a stable LSD radix sort of the edge numbers by
// column (cub, the bucket pattern of index_sort.cuh) keeps the edges of a column in ascending edge
// number, i.e. ascending row, as the CPU's counting sort does; col_ptr[j] is the first sorted
// place whose column is >= j; edge_row looks each edge's row up in row_ptr.
template <class T>
void csr_transpose(const int64_t* row_ptr, const int64_t* col, int64_t* col_ptr, int64_t* edge,
                   int64_t* edge_row, int64_t rows, int64_t cols, int64_t nnz) {
  if (nnz == 0) {  // every column empty
    GRADUS_CUDA_CHECK(cudaMemsetAsync(col_ptr, 0, (cols + 1) * sizeof(int64_t), stream()));
    return;
  }
  Tensor positions = Tensor::empty({nnz}, DType::i64, kGPU);
  Tensor keys = Tensor::empty({nnz}, DType::i64, kGPU);
  int64_t* positions_p = static_cast<int64_t*>(positions.raw_data());
  int64_t* keys_p = static_cast<int64_t*>(keys.raw_data());
  iota_kernel<<<elementwise_blocks(nnz), kThreads, 0, stream()>>>(positions_p, nnz);
  GRADUS_CUDA_CHECK_LAUNCH("csr_transpose_iota");
  const int bits = key_bits(cols);
  size_t temp_bytes = 0;
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, col, keys_p, positions_p,
                                                    edge, nnz, 0, bits, stream()));
  Tensor temp = Tensor::empty({static_cast<int64_t>((temp_bytes + 7) / 8) + 1}, DType::i64, kGPU);
  GRADUS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, col, keys_p,
                                                    positions_p, edge, nnz, 0, bits, stream()));
  bucket_start_kernel<<<elementwise_blocks(cols + 1), kThreads, 0, stream()>>>(keys_p, nnz, cols,
                                                                               col_ptr);
  GRADUS_CUDA_CHECK_LAUNCH("csr_transpose_col_ptr");
  edge_rows_kernel<<<elementwise_blocks(nnz), kThreads, 0, stream()>>>(row_ptr, edge, edge_row,
                                                                       rows, nnz);
  GRADUS_CUDA_CHECK_LAUNCH("csr_transpose_edge_rows");
}

// grad_out: (rows, d) -> grad_x: (cols, d), every element written. One thread per (j, c) walks
// the edges into column j in ascending row, as the CPU adds them: one writer, no atomics.
template <class T>
__global__ void csr_matmul_backward_x_kernel(const int64_t* col_ptr, const int64_t* edge,
                                             const int64_t* edge_row, const T* values,
                                             const T* grad_out, T* grad_x, int64_t d,
                                             int64_t total) {
  GRADUS_CUDA_LOOP(idx, total) {
    const int64_t j = idx / d, c = idx % d;
    acc_t<T> acc = 0;
    for (int64_t s = col_ptr[j], end = col_ptr[j + 1]; s < end; ++s)
      acc = add_rn(acc, mul_rn(to_acc(values[edge[s]]), to_acc(grad_out[edge_row[s] * d + c])));
    grad_x[idx] = from_acc<T>(acc);
  }
}

template <class T>
void csr_matmul_backward_x(const int64_t* col_ptr, const int64_t* edge, const int64_t* edge_row,
                           const void* values, const void* grad_out, void* grad_x, int64_t cols,
                           int64_t d) {
  const int64_t total = cols * d;
  if (total == 0) return;
  csr_matmul_backward_x_kernel<T><<<elementwise_blocks(total), kThreads, 0, stream()>>>(
      col_ptr, edge, edge_row, static_cast<const T*>(values), static_cast<const T*>(grad_out),
      static_cast<T*>(grad_x), d, total);
  GRADUS_CUDA_CHECK_LAUNCH("csr_matmul_backward_x");
}

// grad_out: (rows, d), x: (cols, d) -> grad_values: (nnz,). A warp per row i, a lane per edge of
// it (32 at a time): each lane sums its d products in channel order, one running sum as the CPU's
// (a tree over channels would be faster for large d but round differently; d is a head or adapter
// width, tens). The lanes read the same grad_out row (a broadcast). The grid follows the rows, so
// nnz (on the GPU, in row_ptr[rows]) is never needed on the host.
template <class T>
__global__ void csr_matmul_backward_values_kernel(const int64_t* row_ptr, const int64_t* col,
                                                  const T* grad_out, const T* x, T* grad_values,
                                                  int64_t rows, int64_t d) {
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + (threadIdx.x >> 5); i < rows;
       i += warps) {
    const T* g = grad_out + i * d;
    for (int64_t e = row_ptr[i] + lane, end = row_ptr[i + 1]; e < end; e += 32) {
      const T* xj = x + col[e] * d;
      acc_t<T> acc = 0;
      for (int64_t c = 0; c < d; ++c) acc = add_rn(acc, mul_rn(to_acc(g[c]), to_acc(xj[c])));
      grad_values[e] = from_acc<T>(acc);
    }
  }
}

template <class T>
void csr_matmul_backward_values(const int64_t* row_ptr, const int64_t* col, const void* grad_out,
                                const void* x, void* grad_values, int64_t rows, int64_t d) {
  if (rows == 0) return;
  csr_matmul_backward_values_kernel<T>
      <<<grid_for(ceil_div(rows, kWarpsPerBlock)), kThreads, 0, stream()>>>(
          row_ptr, col, static_cast<const T*>(grad_out), static_cast<const T*>(x),
          static_cast<T*>(grad_values), rows, d);
  GRADUS_CUDA_CHECK_LAUNCH("csr_matmul_backward_values");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kNeighbourExtremumForward, neighbour_extremum_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kNeighbourExtremumBackward, neighbour_extremum_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kGreaterMask, greater_mask);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kTopkMask, topk_mask);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrCount, csr_count);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrFill, csr_fill);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrMatmul, csr_matmul_forward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrTranspose, csr_transpose);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrMatmulBackwardX, csr_matmul_backward_x);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kCsrMatmulBackwardValues, csr_matmul_backward_values);

}  // namespace gradus::cuda
