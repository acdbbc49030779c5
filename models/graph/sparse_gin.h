// The Sparse-GIN adapter of Buehler (arXiv 2501.02393, section "Sparse-GIN fine-tuning") for a
// frozen pretrained decoder. Per layer l, between the frozen attention and the frozen MLP:
//   h1  = h + Attn(RMSNorm(h))                         frozen; yields the probabilities P^h
//   Adj = build(P)                                     sparse (CSR), rows receive
//   h2  = h1 + lambda_l RMSNorm_g(GNN(h1, Adj))
//   h3  = h2 + MLP(RMSNorm(h2))                        frozen
// GNN (a bottleneck GIN step of rank r):
//   u = W_in h1 + b                  (d -> r)
//   z = eps u + Adj u                eps learnable, from 0
//   g = W_2 PReLU(W_1 z + b_1) + b_2 + z;  g = Dropout(PReLU(g))
//   out = W_out g + b                (r -> d)
// build(P): A = min(sum_h P^h, 1), causal; edges with A > tau (weight A) ("threshold", the
// paper), or W = sigmoid(10 (A - 0.1)) kept where W > 0.6 ("sigmoid", the reference code).
// Graph modes: "intended" (the default: Adj lower-triangular, row = receiver); "as_released"
// (Adj := diag(Adj): what the released code computes, whose edge direction and causal filter
// leave only self-loops); "identity" (Adj = I, a control without the attention graph).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "autodiff/ops/graph.h"
#include "core/random.h"
#include "models/nn/linear.h"
#include "models/nn/module.h"
#include "models/nn/norm.h"

namespace gradus::graph {

struct SparseGinOptions {
  int64_t rank = 16;                    // r, the GNN's width
  std::string adjacency = "threshold";  // "threshold" (paper) | "sigmoid" (code)
  double threshold = 0.2;               // tau of "threshold"
  std::string graph = "intended";       // "intended" | "as_released" | "identity"
  bool trainable_gate = true;           // false: lambda fixed at its initial value
  double lambda_first = 0.0;            // lambda of the first layer; the last gets lambda_last,
  double lambda_last = 0.5;             // linear in between
  double dropout = 0.1;
  double rms_norm_eps = 1e-5;

  // Throws gradus::Error naming the option when a value is out of range.
  void validate() const;
};

// The sparse adjacency of one layer from its attention probabilities p: (B, H, T, T), with its
// edge weights (differentiable in p). lengths: (B,) i64 or undefined (no padding).
struct SparseAdjacency {
  CsrGraph graph;
  Tensor weights;  // (nnz,)
  // Kept edges / the causal pairs B T (T + 1) / 2 (the density the experiments report).
  double density = 0.0;
};
SparseAdjacency build_sparse_adjacency(const Tensor& p, const SparseGinOptions& options,
                                       const Tensor& lengths = Tensor());

// The per-layer adapter: GNN, gate and RMSNorm_g. Parameters (drawn in this order): in_proj,
// mlp_1, mlp_2, out_proj (Linear with biases); eps (0), prelu_1, prelu_2 (0.25, as
// torch.nn.PReLU), lambda, norm.weight (1) draw nothing.
class SparseGinLayer : public Module {
 public:
  SparseGinLayer(int64_t hidden_size, int64_t layer_index, int64_t num_layers,
                 const SparseGinOptions& options, Generator& gen);
  // h1: (B, T, C), adjacency of its B T tokens -> lambda RMSNorm_g(GNN(h1, Adj)): (B, T, C),
  // the update added to h1.
  Tensor forward(const Tensor& h1, const SparseAdjacency& adjacency) const;
  const Tensor& gate() const { return lambda_; }
  const Tensor& eps() const { return eps_; }

 private:
  double dropout_;
  std::shared_ptr<Linear> in_proj_, mlp_1_, mlp_2_, out_proj_;
  std::shared_ptr<RMSNorm> norm_;
  Tensor eps_, prelu_1_, prelu_2_, lambda_;
};

// Trainable parameters of one SparseGinLayer: in_proj (C r + r), eps, mlp_1 and mlp_2 (r^2 + r
// each), two PReLU slopes, out_proj (r C + C), norm (C), lambda (when trainable).
int64_t sparse_gin_layer_parameters(int64_t hidden_size, const SparseGinOptions& options);

}  // namespace gradus::graph
