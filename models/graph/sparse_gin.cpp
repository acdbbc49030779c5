#include "models/graph/sparse_gin.h"

#include <cmath>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus::graph {

namespace {
// The (n, n) identity matrix on `device` (the attention probabilities' device: a GPU model's
// graph is built on the GPU).
Tensor identity_matrix(int64_t n, DType dtype, Device device) {
  std::vector<double> v(static_cast<size_t>(n * n), 0.0);
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i * n + i)] = 1.0;
  Tensor eye = Tensor::from_vector(v, {n, n}, dtype);
  return device == eye.device() ? eye : to_device(eye, device);
}

// PReLU with one learnable slope a: relu(x) - a relu(-x).
Tensor prelu(const Tensor& x, const Tensor& a) { return relu(x) - a * relu(-x); }
}  // namespace

void SparseGinOptions::validate() const {
  constexpr const char* kWhere = "SparseGinOptions";
  GRADUS_CHECK(rank >= 1, kWhere, "rank must be >= 1, found {}", rank);
  GRADUS_CHECK(adjacency == "threshold" || adjacency == "sigmoid", kWhere,
               "adjacency must be \"threshold\" or \"sigmoid\", found \"{}\"", adjacency);
  GRADUS_CHECK(graph == "intended" || graph == "as_released" || graph == "identity", kWhere,
               "graph must be \"intended\", \"as_released\" or \"identity\", found \"{}\"", graph);
  GRADUS_CHECK(std::isfinite(threshold) && threshold >= 0 && threshold < 1, kWhere,
               "threshold must be in [0, 1), found {}", threshold);
  GRADUS_CHECK(std::isfinite(lambda_first) && std::isfinite(lambda_last), kWhere,
               "lambda_first and lambda_last must be finite, found {} and {}", lambda_first,
               lambda_last);
  GRADUS_CHECK(dropout >= 0 && dropout < 1, kWhere, "dropout must be in [0, 1), found {}", dropout);
}

SparseAdjacency build_sparse_adjacency(const Tensor& p, const SparseGinOptions& o,
                                       const Tensor& lengths) {
  GRADUS_CHECK(p.dim() == 4 && p.size(2) == p.size(3), "build_sparse_adjacency",
               "expected attention probabilities (B, H, T, T), found {}", p.describe());
  const int64_t B = p.size(0), T = p.size(2);
  SparseAdjacency out;
  if (o.graph == "identity") {
    // One self-loop of weight 1 per token: the control without the attention graph.
    Tensor eye =
        raw_contiguous(raw_expand(raw_unsqueeze(identity_matrix(T, p.dtype(), p.device()), 0), {B, T, T}));
    out.graph = dense_to_csr(eye, 0.5, true, lengths);
    out.weights = Tensor::ones({out.graph.nnz()}, p.dtype(), p.device());
  } else {
    Tensor a = clamp(sum(p, {1}), 0.0, 1.0);  // (B, T, T): min(sum_h P^h, 1)
    double keep = o.threshold;
    if (o.adjacency == "sigmoid") {
      a = sigmoid((a - 0.1) * 10.0);
      keep = 0.6;
    }
    if (o.graph == "as_released") {
      a = a * identity_matrix(T, p.dtype(), p.device());  // only self-loops survive
    }
    out.graph = dense_to_csr(detach(a), keep, true, lengths);
    out.weights = index_select(reshape(a, {-1}), 0, out.graph.source);
  }
  out.density = static_cast<double>(out.graph.nnz()) /
                (static_cast<double>(B) * static_cast<double>(T * (T + 1) / 2));
  return out;
}

SparseGinLayer::SparseGinLayer(int64_t C, int64_t layer_index, int64_t num_layers,
                               const SparseGinOptions& o, Generator& gen)
    : dropout_(o.dropout) {
  o.validate();
  GRADUS_CHECK(C > 0 && num_layers > 0 && layer_index >= 0 && layer_index < num_layers,
               "SparseGinLayer", "layer {} of {} with hidden size {} is out of range", layer_index,
               num_layers, C);
  const int64_t r = o.rank;
  in_proj_ = register_module("in_proj", std::make_shared<Linear>(C, r, true, gen));
  mlp_1_ = register_module("mlp_1", std::make_shared<Linear>(r, r, true, gen));
  mlp_2_ = register_module("mlp_2", std::make_shared<Linear>(r, r, true, gen));
  out_proj_ = register_module("out_proj", std::make_shared<Linear>(r, C, true, gen));
  norm_ = register_module("norm", std::make_shared<RMSNorm>(C, o.rms_norm_eps));
  eps_ = register_parameter("eps", Tensor::scalar(0.0));
  prelu_1_ = register_parameter("prelu_1", Tensor::scalar(0.25));
  prelu_2_ = register_parameter("prelu_2", Tensor::scalar(0.25));
  const double frac =
      num_layers > 1 ? static_cast<double>(layer_index) / static_cast<double>(num_layers - 1) : 0.0;
  const double lambda = o.lambda_first + (o.lambda_last - o.lambda_first) * frac;
  if (o.trainable_gate) {
    lambda_ = register_parameter("lambda", Tensor::scalar(lambda));
  } else {
    lambda_ = Tensor::scalar(lambda);  // fixed: not a parameter
  }
}

Tensor SparseGinLayer::forward(const Tensor& h1, const SparseAdjacency& adj) const {
  GRADUS_CHECK(h1.dim() == 3 && adj.graph.rows == h1.size(0) * h1.size(1), "SparseGinLayer",
               "expected h1 (B, T, C) with B T = {} tokens (the graph's rows), found {}",
               adj.graph.rows, h1.describe());
  const int64_t B = h1.size(0), T = h1.size(1), C = h1.size(2);
  Tensor u = reshape(in_proj_->forward(h1), {B * T, -1});       // (B T, r)
  Tensor z = csr_matmul(adj.graph, adj.weights, u) + eps_ * u;  // (B T, r)
  Tensor g = mlp_2_->forward(prelu(mlp_1_->forward(z), prelu_1_)) + z;
  g = gradus::dropout(prelu(g, prelu_2_), dropout_, *rng(), is_training());
  Tensor out = reshape(out_proj_->forward(g), {B, T, C});
  Tensor gate = lambda_.dtype() == out.dtype() ? lambda_ : raw_to_dtype(lambda_, out.dtype());
  return norm_->forward(out) * gate;
}

int64_t sparse_gin_layer_parameters(int64_t C, const SparseGinOptions& o) {
  const int64_t r = o.rank;
  return (C * r + r) + 1 + 2 * (r * r + r) + 2 + (r * C + C) + C + (o.trainable_gate ? 1 : 0);
}

}  // namespace gradus::graph
