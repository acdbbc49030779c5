// Graph ops: neighbourhood extrema over a dense adjacency, adjacency masks, and CSR products.
#include "autodiff/ops/graph.h"

#include <numeric>

#include "autodiff/autocast.h"
#include "autodiff/ops/common.h"
#include "kernels/graph.h"

namespace gradus {

namespace {

// ------------------------------------------------------------------ neighbour_max / neighbour_min

void extremum_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // saved: [arg (batch..., L, d) i64]; attrs.ints: [S]. inputs: [adj, x].
  if (!r.input_requires_grad(1)) return;
  const Tensor& arg = r.saved[0];
  const int64_t L = arg.size(-2), d = arg.size(-1), S = r.attrs.ints[0];
  const int64_t batch = L * d > 0 ? arg.numel() / (L * d) : 0;
  Shape gx_shape(arg.shape().begin(), arg.shape().end() - 2);  // the broadcast batch
  gx_shape.push_back(S);
  gx_shape.push_back(d);
  Tensor g = raw_contiguous(go[0]);
  Tensor gx = detail::empty_like(gx_shape, g);
  static const kernels::KernelRef<kernels::NeighbourExtremumBackwardFn> k(
      kernels::kNeighbourExtremumBackward);
  k(g.device(), g.dtype())(g.raw_data(), arg.data<int64_t>(), gx.raw_data(), batch, L, S, d);
  gi[1] = gx;  // in the broadcast shape; the engine sums it back to x's
}

const OpDef& kNeighbourMax = register_op({.name = "neighbour_max",
                                          .family = "graph",
                                          .backward = extremum_backward,
                                          .forward_kernels = {kernels::kNeighbourExtremumForward},
                                          .backward_kernels = {kernels::kNeighbourExtremumBackward},
                                          .gradcheck = "Gradcheck.neighbour_max"});
const OpDef& kNeighbourMin = register_op({.name = "neighbour_min",
                                          .family = "graph",
                                          .backward = extremum_backward,
                                          .forward_kernels = {kernels::kNeighbourExtremumForward},
                                          .backward_kernels = {kernels::kNeighbourExtremumBackward},
                                          .gradcheck = "Gradcheck.neighbour_min"});

Tensor neighbour_extremum(const Tensor& adj_in, const Tensor& x_in, bool is_min) {
  const char* name = is_min ? "neighbour_min" : "neighbour_max";
  Tensor adj = adj_in, x = x_in;
  detail::autocast_promote(adj, x);  // under autocast: a wide adjacency meets narrow features
  detail::expect_float_compatible(name, {&adj, &x});
  GRADUS_CHECK(adj.dim() >= 2 && x.dim() >= 2, name,
               "expected adj: (..., L, S) and x: (..., S, d), found adj {} and x {}",
               adj.describe(), x.describe());
  const int64_t L = adj.size(-2), S = adj.size(-1), d = x.size(-1);
  GRADUS_CHECK(x.size(-2) == S, name,
               "adj {} has S = {} senders (its last axis) but x {} has {} rows (expected adj: "
               "(..., L, S), x: (..., S, d))",
               adj.describe(), S, x.describe(), x.size(-2));
  const Shape batch = broadcast_shapes(Shape(adj.shape().begin(), adj.shape().end() - 2),
                                       Shape(x.shape().begin(), x.shape().end() - 2), name);
  auto full = [&](int64_t a, int64_t b) {
    Shape s = batch;
    s.push_back(a);
    s.push_back(b);
    return s;
  };
  // Broadcast operands are materialised: the kernel reads one contiguous (batch, ., .) block.
  Tensor ac = raw_contiguous(raw_expand(adj, full(L, S)));
  Tensor xc = raw_contiguous(raw_expand(x, full(S, d)));
  Tensor out = detail::empty_like(full(L, d), x);
  Tensor arg = Tensor::empty(full(L, d), DType::i64, x.device());
  const int64_t nb = L * d > 0 ? out.numel() / (L * d) : 0;
  static const kernels::KernelRef<kernels::NeighbourExtremumFn> k(
      kernels::kNeighbourExtremumForward);
  k(x.device(), x.dtype())(ac.raw_data(), xc.raw_data(), out.raw_data(), arg.data<int64_t>(), nb, L,
                           S, d, is_min);
  finish_op(is_min ? kNeighbourMin : kNeighbourMax, {adj, x}, {out}, {arg}, Attrs{.ints = {S}});
  return out;
}

// ------------------------------------------------------------------------------------- masks

const OpDef& kGreaterMask = register_op(
    {.name = "greater_mask", .family = "graph", .forward_kernels = {kernels::kGreaterMask}});
const OpDef& kTopkMask =
    register_op({.name = "topk_mask", .family = "graph", .forward_kernels = {kernels::kTopkMask}});

// ------------------------------------------------------------------------------------- CSR

const OpDef& kDenseToCsr =
    register_op({.name = "dense_to_csr",
                 .family = "graph",
                 .forward_kernels = {kernels::kCsrCount, kernels::kCsrFill}});

void csr_matmul_backward(const Record& r, const std::vector<Tensor>& go, std::vector<Tensor>& gi) {
  // saved: [row_ptr, col, values, x]; attrs.ints: [rows, cols]. inputs: [values, x].
  const Tensor &row_ptr = r.saved[0], &col = r.saved[1], &values = r.saved[2], &x = r.saved[3];
  const int64_t rows = r.attrs.ints[0], cols = r.attrs.ints[1], d = x.size(1);
  Tensor g = raw_contiguous(go[0]);
  if (r.input_requires_grad(0)) {  // d values[e] = <g[row(e)], x[col(e)]>
    Tensor gv = detail::empty_like(values);
    static const kernels::KernelRef<kernels::CsrMatmulBackwardValuesFn> k(
        kernels::kCsrMatmulBackwardValues);
    k(g.device(), g.dtype())(row_ptr.data<int64_t>(), col.data<int64_t>(), g.raw_data(),
                             x.raw_data(), gv.raw_data(), rows, d);
    gi[0] = gv;
  }
  if (r.input_requires_grad(1)) {  // dx = A^T g, through the transposed structure
    const int64_t nnz = col.numel();
    Tensor col_ptr = Tensor::empty({cols + 1}, DType::i64, x.device());
    Tensor edge = Tensor::empty({nnz}, DType::i64, x.device());
    Tensor edge_row = Tensor::empty({nnz}, DType::i64, x.device());
    static const kernels::KernelRef<kernels::CsrTransposeFn> kt(kernels::kCsrTranspose);
    kt(g.device(), g.dtype())(row_ptr.data<int64_t>(), col.data<int64_t>(), col_ptr.data<int64_t>(),
                              edge.data<int64_t>(), edge_row.data<int64_t>(), rows, cols, nnz);
    Tensor gx = detail::empty_like(x);
    static const kernels::KernelRef<kernels::CsrMatmulBackwardXFn> k(kernels::kCsrMatmulBackwardX);
    k(g.device(), g.dtype())(col_ptr.data<int64_t>(), edge.data<int64_t>(),
                             edge_row.data<int64_t>(), values.raw_data(), g.raw_data(),
                             gx.raw_data(), cols, d);
    gi[1] = gx;
  }
}

const OpDef& kCsrMatmul =
    register_op({.name = "csr_matmul",
                 .family = "graph",
                 .backward = csr_matmul_backward,
                 .forward_kernels = {kernels::kCsrMatmul},
                 .backward_kernels = {kernels::kCsrTranspose, kernels::kCsrMatmulBackwardX,
                                      kernels::kCsrMatmulBackwardValues},
                 .gradcheck = "Gradcheck.csr_matmul"});

}  // namespace

Tensor neighbour_max(const Tensor& adj, const Tensor& x) {
  return neighbour_extremum(adj, x, false);
}
Tensor neighbour_min(const Tensor& adj, const Tensor& x) {
  return neighbour_extremum(adj, x, true);
}

Tensor greater_mask(const Tensor& x, double threshold) {
  detail::expect_float_compatible("greater_mask", {&x});
  Tensor xc = raw_contiguous(x);
  Tensor out = detail::empty_like(x);
  static const kernels::KernelRef<kernels::GreaterMaskFn> k(kernels::kGreaterMask);
  k(x.device(), x.dtype())(xc.raw_data(), out.raw_data(), x.numel(), threshold);
  finish_op(kGreaterMask, {x}, {out});
  return out;
}

Tensor topk_mask(const Tensor& x, int64_t k) {
  detail::expect_float_compatible("topk_mask", {&x});
  GRADUS_CHECK(x.dim() >= 1, "topk_mask", "expected x: (..., n), found {}", x.describe());
  const int64_t n = x.size(-1);
  GRADUS_CHECK(k >= 1 && k <= n, "topk_mask",
               "k must be in [1, {}] (the last axis of {}), found {}", n, x.describe(), k);
  Tensor xc = raw_contiguous(x);
  Tensor out = detail::empty_like(x);
  static const kernels::KernelRef<kernels::TopkMaskFn> kr(kernels::kTopkMask);
  kr(x.device(), x.dtype())(xc.raw_data(), out.raw_data(), n > 0 ? x.numel() / n : 0, n, k);
  finish_op(kTopkMask, {x}, {out});
  return out;
}

CsrGraph dense_to_csr(const Tensor& adj, double threshold, bool causal, const Tensor& lengths) {
  constexpr const char* kName = "dense_to_csr";
  detail::expect_float_compatible(kName, {&adj});
  detail::expect_rank(kName, adj, 3, "adj (B, L, S)");
  const int64_t B = adj.size(0), L = adj.size(1), S = adj.size(2);
  Tensor len;
  if (lengths.defined()) {
    detail::expect_dtype(kName, lengths, DType::i64, "lengths");
    GRADUS_CHECK(lengths.dim() == 1 && lengths.size(0) == B, kName,
                 "expected lengths: ({}) i64 (one per sequence of adj {}), found {}", B,
                 adj.describe(), lengths.describe());
    const std::vector<double> values = lengths.to_vector();  // any device
    for (int64_t b = 0; b < B; ++b) {
      const double v = values[static_cast<size_t>(b)];
      GRADUS_CHECK(v >= 0 && v <= static_cast<double>(std::max(L, S)), kName,
                   "lengths[{}] = {} is outside [0, {}] (adj {})", b, v, std::max(L, S),
                   adj.describe());
    }
    // The kernels read the lengths where adj lives: B integers, copied there when they are not.
    len = raw_contiguous(raw_to_device(lengths, adj.device()));
  }
  const int64_t* lp = len.defined() ? len.data<int64_t>() : nullptr;
  Tensor ac = raw_contiguous(adj);
  CsrGraph g;
  g.rows = B * L;
  g.cols = B * S;
  Tensor counts = Tensor::empty({g.rows}, DType::i64, adj.device());
  static const kernels::KernelRef<kernels::CsrCountFn> kc(kernels::kCsrCount);
  kc(adj.device(), adj.dtype())(ac.raw_data(), lp, counts.data<int64_t>(), B, L, S, threshold,
                                causal);
  // The exclusive prefix sum of the counts runs on the host for every device: nnz sizes col and
  // source, so the host must learn it before the fill whatever runs the sum (one synchronising
  // copy either way), and the counts are only B L integers, a copy far cheaper than the fill's
  // scan of the B L S adjacency. A GPU adjacency thus costs one copy of the counts down and one of
  // row_ptr up.
  const Tensor host_counts = raw_contiguous(raw_to_device(counts, kCPU));
  Tensor host_row_ptr = Tensor::empty({g.rows + 1}, DType::i64, kCPU);
  int64_t* rp = host_row_ptr.data<int64_t>();
  rp[0] = 0;
  const int64_t* c = host_counts.data<int64_t>();
  for (int64_t r = 0; r < g.rows; ++r) rp[r + 1] = rp[r] + c[r];
  const int64_t nnz = rp[g.rows];
  g.row_ptr = raw_to_device(host_row_ptr, adj.device());
  g.col = Tensor::empty({nnz}, DType::i64, adj.device());
  g.source = Tensor::empty({nnz}, DType::i64, adj.device());
  static const kernels::KernelRef<kernels::CsrFillFn> kf(kernels::kCsrFill);
  kf(adj.device(), adj.dtype())(ac.raw_data(), lp, g.row_ptr.data<int64_t>(), g.col.data<int64_t>(),
                                g.source.data<int64_t>(), B, L, S, threshold, causal);
  finish_op(kDenseToCsr, {adj}, {});
  return g;
}

Tensor csr_matmul(const CsrGraph& graph, const Tensor& values_in, const Tensor& x_in) {
  constexpr const char* kName = "csr_matmul";
  Tensor values = values_in, x = x_in;
  detail::autocast_promote(values, x);
  detail::expect_float_compatible(kName, {&values, &x});
  detail::expect_rank(kName, values, 1, "values (nnz)");
  detail::expect_rank(kName, x, 2, "x (cols, d)");
  GRADUS_CHECK(graph.row_ptr.defined() && graph.row_ptr.numel() == graph.rows + 1, kName,
               "the graph's row_ptr must hold rows + 1 = {} entries", graph.rows + 1);
  GRADUS_CHECK(values.numel() == graph.nnz(), kName,
               "values {} must hold one weight per edge ({} edges)", values.describe(),
               graph.nnz());
  GRADUS_CHECK(x.size(0) == graph.cols, kName,
               "x {} must have one row per sender ({} columns in the graph)", x.describe(),
               graph.cols);
  GRADUS_CHECK(graph.row_ptr.device() == x.device() &&
                   (!graph.col.defined() || graph.col.device() == x.device()),
               kName,
               "the graph (row_ptr {}) and x {} are on different devices (build the graph from an "
               "adjacency on x's device)",
               graph.row_ptr.describe(), x.describe());
  Tensor vc = raw_contiguous(values), xc = raw_contiguous(x);
  Tensor out = detail::empty_like({graph.rows, x.size(1)}, x);
  static const kernels::KernelRef<kernels::CsrMatmulFn> k(kernels::kCsrMatmul);
  k(x.device(), x.dtype())(graph.row_ptr.data<int64_t>(), graph.col.data<int64_t>(), vc.raw_data(),
                           xc.raw_data(), out.raw_data(), graph.rows, x.size(1));
  finish_op(kCsrMatmul, {values, x}, {out}, {graph.row_ptr, graph.col, vc, xc},
            Attrs{.ints = {graph.rows, graph.cols}});
  return out;
}

}  // namespace gradus
