// CUDA reductions over x: (outer, reduce, inner) -> (outer, inner): sum/mean/max/min, max/min with
// their positions, variance and logsumexp (see kernels/reduce.h for the contract; the semantics
// mirror kernels/cpu/reduce.cpp).
//
// One engine serves every kernel: a reduction is an Op (identity, combine), a Map (element ->
// state, reading at most one per-output parameter such as the mean) and a Finish (state ->
// outputs). inner == 1: a warp (short rows) or a block per row. inner > 1 (or rows of at most 16):
// a thread per output walking the reduced axis, neighbouring threads on neighbouring columns
// (coalesced). When there are too few outputs to fill the GPU (a full sum: outer = inner = 1), the
// reduced axis is cut into fixed chunks reduced in parallel, and a second kernel combines each
// output's chunk states in a fixed order. Every choice depends on the shape alone, so results are
// bit-for-bit reproducible.
#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/tensor.h"
#include "kernels/cuda/common.cuh"
#include "kernels/reduce.h"

namespace gradus::cuda {
namespace {

using kernels::ReduceOp;

constexpr int64_t kTinyRow = 16;             // rows up to this long: a thread each (column kernel)
constexpr int64_t kShortRow = 1024;          // rows up to this long are reduced by one warp
constexpr int64_t kRowChunk = 16384;         // elements per chunk of a split row (a multiple of 8)
constexpr int64_t kSplitRows = 1024;         // fewer rows than this (and long ones): split them
constexpr int64_t kColumnThreads = 1 << 17;  // inner > 1: split until about this many threads
constexpr int64_t kColumnMinChunk = 64;      // ... but never below this many rows per chunk

// ---- reduction states, ops and shuffles ----
template <class A>
struct ArgState {
  A v;
  int64_t i;  // position along the reduced axis; kNoIndex for the identity
};
constexpr int64_t kNoIndex = INT64_MAX;

template <class A>
__device__ __forceinline__ A shfl_xor(A v, int off) {
  return __shfl_xor_sync(0xffffffffu, v, off);
}
template <class A>
__device__ __forceinline__ ArgState<A> shfl_xor(ArgState<A> s, int off) {
  return {__shfl_xor_sync(0xffffffffu, s.v, off),
          static_cast<int64_t>(__shfl_xor_sync(0xffffffffu, static_cast<long long>(s.i), off))};
}

template <class A>
struct SumOp {
  using State = A;
  __device__ A identity() const { return A(0); }
  __device__ A combine(A a, A b) const { return a + b; }
};
// The shift of logsumexp: the maximum ignoring NaN (a NaN reaches the result through the sum).
template <class A>
struct MaxIgnoreNanOp {
  using State = A;
  __device__ A identity() const { return A(-INFINITY); }
  __device__ A combine(A a, A b) const { return fmax(a, b); }
};
// The first position of the extreme, a NaN winning (the first NaN). Commutative and associative
// (ties go to the lower position), so any combination tree gives the CPU's answer exactly.
template <class A, bool kMax>
struct ExtremeOp {
  using State = ArgState<A>;
  __device__ State identity() const { return {kMax ? A(-INFINITY) : A(INFINITY), kNoIndex}; }
  __device__ State combine(State a, State b) const {
    const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
    if (a_nan || b_nan) {
      if (a_nan && b_nan) return b.i < a.i ? b : a;
      return a_nan ? a : b;
    }
    if (kMax ? b.v > a.v : b.v < a.v) return b;
    if (kMax ? a.v > b.v : a.v < b.v) return a;
    return b.i < a.i ? b : a;
  }
};

// Butterfly over the warp: every lane ends with the same state (the ops are commutative).
template <class Op>
__device__ __forceinline__ typename Op::State warp_reduce(const Op& op, typename Op::State s) {
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) s = op.combine(s, shfl_xor(s, off));
  return s;
}
// Warps first, then the warp states in warp order (fixed for a fixed blockDim); every thread of
// warp 0 ends with the result. `shared` holds 32 states.
template <class Op>
__device__ typename Op::State block_reduce(const Op& op, typename Op::State s,
                                           typename Op::State* shared) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  s = warp_reduce(op, s);
  __syncthreads();  // `shared` may still be read by the previous unit
  if (lane == 0) shared[warp] = s;
  __syncthreads();
  s = lane < warps ? shared[lane] : op.identity();
  return warp_reduce(op, s);
}

// ---- maps: element (value, position r, per-output parameter p) -> state ----
struct Identity {
  template <class A>
  __device__ A operator()(A v, int64_t, A) const {
    return v;
  }
};
struct WithIndex {
  template <class A>
  __device__ ArgState<A> operator()(A v, int64_t r, A) const {
    return {v, r};
  }
};
struct SquaredDeviation {  // p: the mean
  template <class A>
  __device__ A operator()(A v, int64_t, A p) const {
    return (v - p) * (v - p);
  }
};
struct ExpShifted {  // p: the shift
  template <class A>
  __device__ A operator()(A v, int64_t, A p) const {
    return dexp(v - p);
  }
};

// ---- finishes: (output position, state) -> outputs ----
template <class T>
struct WriteScaled {
  T* out;
  acc_t<T> scale;
  __device__ void operator()(int64_t at, acc_t<T> s) const { out[at] = from_acc<T>(s * scale); }
};
template <class T>
struct WriteValue {
  T* out;
  __device__ void operator()(int64_t at, ArgState<acc_t<T>> s) const { out[at] = from_acc<T>(s.v); }
};
template <class T>
struct WriteArg {
  T* out;
  int64_t* index;
  __device__ void operator()(int64_t at, ArgState<acc_t<T>> s) const {
    out[at] = from_acc<T>(s.v);
    index[at] = s.i;
  }
};
// The mean, also kept in the compute type for the second pass (n == 0 gives NaN, as the CPU).
template <class T>
struct WriteMean {
  T* mean;
  acc_t<T>* mean_acc;
  acc_t<T> n;
  __device__ void operator()(int64_t at, acc_t<T> s) const {
    const acc_t<T> m = s / n;
    mean[at] = from_acc<T>(m);
    mean_acc[at] = m;
  }
};
template <class T>
struct WriteVar {
  T* var;
  acc_t<T> divisor;
  __device__ void operator()(int64_t at, acc_t<T> s) const { var[at] = from_acc<T>(s / divisor); }
};
// The logsumexp shift: the maximum, or 0 when it is infinite (an all -inf or empty row then sums to
// 0 and gives -inf; a row holding +inf gives +inf).
template <class A>
struct WriteShift {
  A* shift;
  __device__ void operator()(int64_t at, A m) const { shift[at] = isinf(m) ? A(0) : m; }
};
template <class T>
struct WriteLogSumExp {
  T* out;
  const acc_t<T>* shift;
  __device__ void operator()(int64_t at, acc_t<T> s) const {
    out[at] = from_acc<T>(dlog(s) + shift[at]);
  }
};

// ---- kernels ----

// inner == 1. x: (outer, n); each row is cut into `chunks` segments of `seg` elements (seg a
// multiple of the vector width, so every segment keeps its row's alignment). kRowThreads threads (a
// warp, or the whole block) reduce one (row, segment) unit: thread t takes the element groups t,
// t + kRowThreads, ... in order, then the fixed warp/block tree. The unit's state goes to finish
// (chunks == 1) or to partial: (outer, chunks). param: (outer) or nullptr.
template <int kRowThreads, class T, class Op, class Map, class Finish>
__global__ void __launch_bounds__(kThreads)
    reduce_rows_kernel(const T* x, int64_t outer, int64_t n, int64_t chunks, int64_t seg,
                       const acc_t<T>* param, Op op, Map map, Finish finish,
                       typename Op::State* partial) {
  using A = acc_t<T>;
  using S = typename Op::State;
  constexpr int V = kVec<T>;
  constexpr int kUnitsPerBlock = kThreads / kRowThreads;
  const int t = threadIdx.x % kRowThreads;
  const int64_t units = outer * chunks;
  // The loop bound is uniform over the block, so the block-wide reduction below is reached by all.
  for (int64_t u0 = static_cast<int64_t>(blockIdx.x) * kUnitsPerBlock; u0 < units;
       u0 += static_cast<int64_t>(gridDim.x) * kUnitsPerBlock) {
    const int64_t u = u0 + threadIdx.x / kRowThreads;
    S s = op.identity();
    if (u < units) {
      const int64_t o = u / chunks, begin = (u % chunks) * seg;
      const int64_t len = n - begin < seg ? n - begin : seg;
      const T* p = x + o * n + begin;
      const A prm = param != nullptr ? param[o] : A(0);
      const bool aligned = aligned16(p);
      const int64_t groups = (len + V - 1) / V;
      for (int64_t g = t; g < groups; g += kRowThreads) {
        A v[V];
        const int count = load_group(p, g * V, len, aligned, v);
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (j < count) s = op.combine(s, map(v[j], begin + g * V + j, prm));
      }
    }
    if constexpr (kRowThreads == 32) {
      s = warp_reduce(op, s);
    } else {
      __shared__ S shared[32];
      s = block_reduce(op, s, shared);
    }
    if (t == 0 && u < units) {
      if (chunks == 1)
        finish(u, s);
      else
        partial[u] = s;
    }
  }
}

// inner > 1, or tiny rows. x: (outer, reduce, inner); the reduced axis is cut into `chunks`
// segments of `seg` rows; one thread per (o, c, i) walks its segment in order. Neighbouring threads
// read neighbouring columns (coalesced). The state goes to finish (chunks == 1) or to partial:
// (outer, chunks, inner). param: (outer, inner) or nullptr.
template <class T, class Op, class Map, class Finish>
__global__ void reduce_columns_kernel(const T* x, int64_t outer, int64_t reduce, int64_t inner,
                                      int64_t chunks, int64_t seg, const acc_t<T>* param, Op op,
                                      Map map, Finish finish, typename Op::State* partial) {
  using A = acc_t<T>;
  using S = typename Op::State;
  GRADUS_CUDA_LOOP(u, outer * chunks * inner) {
    const int64_t i = u % inner, c = (u / inner) % chunks, o = u / (inner * chunks);
    const int64_t at = o * inner + i;
    const A prm = param != nullptr ? param[at] : A(0);
    const int64_t r0 = c * seg, r1 = reduce < r0 + seg ? reduce : r0 + seg;
    const T* p = x + o * reduce * inner + i;
    S s = op.identity();
#pragma unroll 4
    for (int64_t r = r0; r < r1; ++r) s = op.combine(s, map(load(p + r * inner), r, prm));
    if (chunks == 1)
      finish(at, s);
    else
      partial[u] = s;
  }
}

// partial: (outer, chunks, inner) -> finish(o * inner + i, the chunks' states combined). One warp
// per output: lane l folds chunks l, l + 32, ... in order, then the fixed butterfly.
template <class Op, class Finish>
__global__ void combine_chunks_kernel(const typename Op::State* partial, int64_t outputs,
                                      int64_t chunks, int64_t inner, Op op, Finish finish) {
  using S = typename Op::State;
  const int lane = threadIdx.x & 31;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * (blockDim.x >> 5);
  for (int64_t w = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) >> 5; w < outputs;
       w += warps) {
    const S* p = partial + (w / inner) * chunks * inner + w % inner;
    S s = op.identity();
    for (int64_t c = lane; c < chunks; c += 32) s = op.combine(s, p[c * inner]);
    s = warp_reduce(op, s);
    if (lane == 0) finish(w, s);
  }
}

// Device scratch from the caching allocator for `count` states. The allocator is stream-ordered
// (everything runs on stream()), so the block may be released when `holder` goes out of scope
// right after the launches that use it.
template <class S>
S* workspace(Tensor& holder, int64_t count) {
  const int64_t words = ceil_div(count * static_cast<int64_t>(sizeof(S)), 8);
  holder = Tensor::empty({std::max<int64_t>(words, 1)}, DType::i64, kGPU);
  return static_cast<S*>(holder.raw_data());
}

// Runs one reduction of x: (outer, reduce, inner): finish(o * inner + i, state) for every output.
template <class T, class Op, class Map, class Finish>
void run_reduction(const T* x, int64_t outer, int64_t reduce, int64_t inner, const acc_t<T>* param,
                   Op op, Map map, Finish finish, const char* name) {
  using S = typename Op::State;
  if (outer * inner == 0) return;
  Tensor holder;
  S* partial = nullptr;
  int64_t chunks = 1;
  if (inner == 1 && reduce > kTinyRow) {
    if (outer < kSplitRows && reduce > 2 * kRowChunk) chunks = ceil_div(reduce, kRowChunk);
    const int64_t seg = chunks > 1 ? kRowChunk : reduce;
    if (chunks > 1) partial = workspace<S>(holder, outer * chunks);
    const int64_t units = outer * chunks;
    if (reduce <= kShortRow) {
      reduce_rows_kernel<32, T>
          <<<grid_for(ceil_div(units, kThreads / 32)), kThreads, 0, stream()>>>(
              x, outer, reduce, chunks, seg, param, op, map, finish, partial);
    } else {
      reduce_rows_kernel<kThreads, T><<<grid_for(units), kThreads, 0, stream()>>>(
          x, outer, reduce, chunks, seg, param, op, map, finish, partial);
    }
    GRADUS_CUDA_CHECK_LAUNCH(name);
  } else {
    if (outer * inner < kColumnThreads && reduce >= 2 * kColumnMinChunk)
      chunks = std::min(ceil_div(kColumnThreads, outer * inner), reduce / kColumnMinChunk);
    const int64_t seg = ceil_div(reduce, chunks);
    if (seg > 0) chunks = ceil_div(reduce, seg);  // no empty chunk
    if (chunks > 1) partial = workspace<S>(holder, outer * chunks * inner);
    const int64_t threads = outer * chunks * inner;
    reduce_columns_kernel<T><<<elementwise_blocks(threads), kThreads, 0, stream()>>>(
        x, outer, reduce, inner, chunks, seg, param, op, map, finish, partial);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
  if (chunks > 1) {
    const int64_t outputs = outer * inner;
    combine_chunks_kernel<<<grid_for(ceil_div(outputs, kThreads / 32)), kThreads, 0, stream()>>>(
        partial, outputs, chunks, inner, op, finish);
    GRADUS_CUDA_CHECK_LAUNCH(name);
  }
}

// ---- reduce ----

template <class T>
void reduce(ReduceOp op, const void* x_, void* out_, int64_t outer, int64_t reduce, int64_t inner) {
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
  switch (op) {
    case ReduceOp::sum:
    case ReduceOp::mean: {
      // An empty mean is 0, as on the CPU (sum 0 times 1).
      const A scale =
          op == ReduceOp::mean ? A(1) / static_cast<A>(std::max<int64_t>(reduce, 1)) : A(1);
      run_reduction(x, outer, reduce, inner, nullptr, SumOp<A>{}, Identity{},
                    WriteScaled<T>{out, scale}, "reduce");
      return;
    }
    // max/min take the value of the first extreme (ties keep the first, a NaN wins), exactly the
    // CPU's answer; an empty reduction gives -inf / +inf.
    case ReduceOp::max:
      run_reduction(x, outer, reduce, inner, nullptr, ExtremeOp<A, true>{}, WithIndex{},
                    WriteValue<T>{out}, "reduce");
      return;
    case ReduceOp::min:
      run_reduction(x, outer, reduce, inner, nullptr, ExtremeOp<A, false>{}, WithIndex{},
                    WriteValue<T>{out}, "reduce");
      return;
  }
  GRADUS_FAIL("reduce", "unknown reduce op {}", static_cast<int>(op));
}

// ---- reduce_arg_extreme ----

template <class T>
void reduce_arg_extreme(bool is_max, const void* x_, void* out_, int64_t* index, int64_t outer,
                        int64_t reduce, int64_t inner) {
  if (reduce <= 0) return;  // the op layer rejects empty reductions (no identity for max/min)
  using A = acc_t<T>;
  const T* x = static_cast<const T*>(x_);
  T* out = static_cast<T*>(out_);
  if (is_max)
    run_reduction(x, outer, reduce, inner, nullptr, ExtremeOp<A, true>{}, WithIndex{},
                  WriteArg<T>{out, index}, "reduce_arg_extreme");
  else
    run_reduction(x, outer, reduce, inner, nullptr, ExtremeOp<A, false>{}, WithIndex{},
                  WriteArg<T>{out, index}, "reduce_arg_extreme");
}

// grad_out, index: (outer, inner) -> grad_x: (outer, reduce, inner), zero except
// grad_x[o, index[o, i], i] = grad_out[o, i]. One thread per element of grad_x (all are written).
template <class T>
__global__ void arg_extreme_backward_kernel(const T* grad_out, const int64_t* index, T* grad_x,
                                            int64_t reduce, int64_t inner, int64_t n) {
  GRADUS_CUDA_LOOP(k, n) {
    const int64_t i = k % inner, r = (k / inner) % reduce, o = k / (inner * reduce);
    const int64_t at = o * inner + i;
    grad_x[k] = index[at] == r ? grad_out[at] : from_acc<T>(acc_t<T>(0));
  }
}

template <class T>
void reduce_arg_extreme_backward(const void* grad_out, const int64_t* index, void* grad_x,
                                 int64_t outer, int64_t reduce, int64_t inner) {
  const int64_t n = outer * reduce * inner;
  if (n == 0) return;
  arg_extreme_backward_kernel<T><<<elementwise_blocks(n), kThreads, 0, stream()>>>(
      static_cast<const T*>(grad_out), index, static_cast<T*>(grad_x), reduce, inner, n);
  GRADUS_CUDA_CHECK_LAUNCH("reduce_arg_extreme_backward");
}

// ---- reduce_var: the mean, then the squared deviations from it (in the compute type) ----

template <class T>
void reduce_var(const void* x_, void* mean_, void* var_, int64_t outer, int64_t reduce,
                int64_t inner, double divisor) {
  using A = acc_t<T>;
  if (outer * inner == 0) return;
  const T* x = static_cast<const T*>(x_);
  Tensor holder = Tensor::empty({outer * inner}, acc_dtype<A>(), kGPU);
  A* mean_acc = static_cast<A*>(holder.raw_data());
  run_reduction(x, outer, reduce, inner, nullptr, SumOp<A>{}, Identity{},
                WriteMean<T>{static_cast<T*>(mean_), mean_acc, static_cast<A>(reduce)},
                "reduce_var");
  run_reduction(x, outer, reduce, inner, mean_acc, SumOp<A>{}, SquaredDeviation{},
                WriteVar<T>{static_cast<T*>(var_), static_cast<A>(divisor)}, "reduce_var");
}

// ---- reduce_logsumexp: the shift (maximum ignoring NaN, 0 when infinite), then the exp sum ----

template <class T>
void reduce_logsumexp(const void* x_, void* out_, int64_t outer, int64_t reduce, int64_t inner) {
  using A = acc_t<T>;
  if (outer * inner == 0) return;
  const T* x = static_cast<const T*>(x_);
  Tensor holder = Tensor::empty({outer * inner}, acc_dtype<A>(), kGPU);
  A* shift = static_cast<A*>(holder.raw_data());
  run_reduction(x, outer, reduce, inner, nullptr, MaxIgnoreNanOp<A>{}, Identity{},
                WriteShift<A>{shift}, "reduce_logsumexp");
  run_reduction(x, outer, reduce, inner, shift, SumOp<A>{}, ExpShifted{},
                WriteLogSumExp<T>{static_cast<T*>(out_), shift}, "reduce_logsumexp");
}

}  // namespace

GRADUS_REGISTER_CUDA_KERNEL(kernels::kReduce, reduce);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kReduceArgExtreme, reduce_arg_extreme);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kReduceArgExtremeBackward, reduce_arg_extreme_backward);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kReduceVar, reduce_var);
GRADUS_REGISTER_CUDA_KERNEL(kernels::kReduceLogSumExp, reduce_logsumexp);

}  // namespace gradus::cuda
