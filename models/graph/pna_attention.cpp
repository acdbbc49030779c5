#include "models/graph/pna_attention.h"

#include <algorithm>
#include <cmath>

#include "autodiff/ops/dropout.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/graph.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/rope.h"
#include "autodiff/ops/shape.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/error.h"
#include "models/nn/attention_heads.h"

namespace gradus::graph {

namespace {

std::vector<std::string> split_names(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    out.push_back(
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) return out;
    start = comma + 1;
  }
}

template <class E>
std::vector<E> parse_list(const char* key, const std::string& text,
                          const std::vector<std::string>& names) {
  std::vector<E> out;
  for (const std::string& n : split_names(text)) {
    auto it = std::find(names.begin(), names.end(), n);
    GRADUS_CHECK(it != names.end(), "ModelConfig",
                 "{} must be a comma-separated list of {}, found \"{}\"", key,
                 fmt::join(names, ", "), text);
    const E e = static_cast<E>(it - names.begin());
    GRADUS_CHECK(std::find(out.begin(), out.end(), e) == out.end(), "ModelConfig",
                 "{} lists \"{}\" twice in \"{}\"", key, n, text);
    out.push_back(e);
  }
  return out;
}

}  // namespace

std::vector<PnaAggregator> parse_pna_aggregators(const std::string& text) {
  return parse_list<PnaAggregator>("pna_aggregators", text,
                                   {"sum", "mean", "max", "min", "var", "std"});
}

std::vector<PnaScaler> parse_pna_scalers(const std::string& text) {
  return parse_list<PnaScaler>("pna_scalers", text, {"identity", "amplification", "attenuation"});
}

namespace {
static_assert(static_cast<int>(ThresholdMode::none) ==
                      static_cast<int>(kernels::PnaThreshold::none) &&
                  static_cast<int>(ThresholdMode::binary) ==
                      static_cast<int>(kernels::PnaThreshold::binary),
              "the streamable threshold modes share kernels::PnaThreshold's numbering");
bool contains(const std::vector<PnaAggregator>& list, PnaAggregator g) {
  return std::find(list.begin(), list.end(), g) != list.end();
}
}  // namespace

PnaMomentsOptions pna_moment_options(const std::vector<PnaAggregator>& aggregators) {
  PnaMomentsOptions o;
  o.with_square =
      contains(aggregators, PnaAggregator::var) || contains(aggregators, PnaAggregator::std);
  o.with_max = contains(aggregators, PnaAggregator::max);
  o.with_min = contains(aggregators, PnaAggregator::min);
  return o;
}

PnaMomentBlocks pna_moments_dense(const Tensor& a, const Tensor& v,
                                  const PnaMomentsOptions& wanted) {
  const int64_t D = v.size(-1);
  PnaMomentBlocks m;
  if (wanted.with_square) {  // A' v and A' v^2: one product over [v | v^2]
    std::vector<Tensor> parts = split(matmul(a, concat({v, v * v}, -1)), {D, D}, -1);
    m.sum = parts[0];
    m.square = parts[1];
  } else {
    m.sum = matmul(a, v);
  }
  if (wanted.with_max) m.max = neighbour_max(a, v);
  if (wanted.with_min) m.min = neighbour_min(a, v);
  m.degree = sum(a, {-1}, true);
  return m;
}

Tensor pna_features_from_moments(const PnaMomentBlocks& m,
                                 const std::vector<PnaAggregator>& aggregators,
                                 const std::vector<PnaScaler>& scalers, double delta,
                                 double* delta_used) {
  GRADUS_CHECK(!aggregators.empty() && !scalers.empty(), "pna_features",
               "expected at least one aggregator and one scaler");
  const bool second_moment =
      contains(aggregators, PnaAggregator::var) || contains(aggregators, PnaAggregator::std);
  const bool need_degree = second_moment || contains(aggregators, PnaAggregator::mean) ||
                           std::any_of(scalers.begin(), scalers.end(),
                                       [](PnaScaler sc) { return sc != PnaScaler::identity; });
  Tensor deg;  // (B, H, T, 1), a zero degree replaced by 1 (an isolated token divides by 1)
  if (need_degree) deg = m.degree + (1.0 - greater_mask(m.degree, 0.0));
  Tensor agg_mean, agg_var;
  if (contains(aggregators, PnaAggregator::mean) || second_moment) agg_mean = m.sum / deg;
  if (second_moment) agg_var = relu(m.square / deg - agg_mean * agg_mean);

  std::vector<Tensor> blocks;
  for (PnaAggregator g : aggregators) {
    switch (g) {
      case PnaAggregator::sum: blocks.push_back(m.sum); break;
      case PnaAggregator::mean: blocks.push_back(agg_mean); break;
      case PnaAggregator::max: blocks.push_back(m.max); break;
      case PnaAggregator::min: blocks.push_back(m.min); break;
      case PnaAggregator::var: blocks.push_back(agg_var); break;
      case PnaAggregator::std: blocks.push_back(sqrt(agg_var + 1e-5)); break;
    }
  }
  Tensor features = blocks.size() == 1 ? blocks[0] : concat(blocks, -1);  // (..., L, n d)
  if (scalers.size() > 1 || scalers[0] != PnaScaler::identity) {
    Tensor log_deg = log(deg + 1.0);                       // (B, H, T, 1)
    if (delta <= 0) delta = mean(detach(log_deg)).item();  // a constant, as PNA's delta
    if (delta_used != nullptr) *delta_used = delta;
    std::vector<Tensor> scaled;
    for (PnaScaler sc : scalers) {
      switch (sc) {
        case PnaScaler::identity: scaled.push_back(features); break;
        case PnaScaler::amplification: scaled.push_back(features * (log_deg / delta)); break;
        case PnaScaler::attenuation: scaled.push_back(features * (delta / log_deg)); break;
      }
    }
    features = scaled.size() == 1 ? scaled[0] : concat(scaled, -1);
  }
  return features;
}

Tensor pna_features(const Tensor& a, const Tensor& v, const std::vector<PnaAggregator>& aggregators,
                    const std::vector<PnaScaler>& scalers, double delta, double* delta_used) {
  GRADUS_CHECK(!aggregators.empty() && !scalers.empty(), "pna_features",
               "expected at least one aggregator and one scaler");
  return pna_features_from_moments(pna_moments_dense(a, v, pna_moment_options(aggregators)),
                                   aggregators, scalers, delta, delta_used);
}

PnaAttention::PnaAttention(const ModelConfig& c, Generator& gen)
    : hidden_size_(c.hidden_size),
      num_heads_(c.num_attention_heads),
      head_dim_(c.head_dim()),
      mlp_dim_(static_cast<int64_t>(c.graph_mlp_multiplier * static_cast<double>(c.head_dim()))),
      rope_theta_(c.rope_theta),
      attention_dropout_(c.attention_dropout),
      temperature_(c.graph_temperature),
      delta_(c.pna_delta),
      softmax_adjacency_(c.pna_adjacency == "softmax") {
  c.validate();
  threshold_ = {parse_threshold_mode("pna_threshold_mode", c.pna_threshold_mode), c.graph_threshold,
                c.graph_beta, c.graph_topk_fraction};
  aggregators_ = parse_pna_aggregators(c.pna_aggregators);
  scalers_ = parse_pna_scalers(c.pna_scalers);
  const int64_t C = hidden_size_, H = num_heads_, D = head_dim_;
  q_proj_ = add_projection(*this, "q_proj", C, gen);
  k_proj_ = add_projection(*this, "k_proj", C, gen);
  v_proj_ = add_projection(*this, "v_proj", C, gen);
  o_proj_ = add_projection(*this, "o_proj", C, gen);
  mlp_in_ = register_module(
      "mlp_in", std::make_shared<HeadLinear>(H, feature_blocks() * D, mlp_dim_, false, gen));
  mlp_out_ = register_module("mlp_out", std::make_shared<HeadLinear>(H, mlp_dim_, D, false, gen));
}

Tensor PnaAttention::forward(const Tensor& x, int64_t position_offset) {
  check_attention_input("PnaAttention", x, hidden_size_);
  Tensor q = rope_heads(q_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor k = rope_heads(k_proj_->forward(x), num_heads_, rope_theta_, position_offset);
  Tensor v = split_heads(v_proj_->forward(x), num_heads_);  // (B, H, T, D)
  const double scale =
      1.0 / (std::sqrt(static_cast<double>(head_dim_)) * (softmax_adjacency_ ? temperature_ : 1.0));
  PnaMomentsOptions options = pna_moment_options(aggregators_);
  const bool dropout_active = attention_dropout_ > 0 && is_training();
  last_streamed_ =
      fused_attention_enabled() && !dropout_active && threshold_.mode != ThresholdMode::topk;
  PnaMomentBlocks moments;
  if (last_streamed_) {  // the adjacency is rebuilt block by block, never stored
    options.adjacency =
        softmax_adjacency_ ? kernels::PnaAdjacency::softmax : kernels::PnaAdjacency::relu;
    // ThresholdMode's first five modes are the streamable ones, in kernels::PnaThreshold's order.
    options.threshold = static_cast<kernels::PnaThreshold>(static_cast<int>(threshold_.mode));
    options.scale = scale;
    options.tau = threshold_.tau;
    options.beta = threshold_.beta;
    moments = split_pna_moments(pna_moments(q, k, v, options), options);
  } else {
    Tensor s = matmul(q * scale, transpose(k, -2, -1));  // (B, H, T, T)
    Tensor a =
        softmax_adjacency_ ? softmax(causal_masked_fill(s), -1) : relu(causal_masked_fill(s, 0.0));
    a = gradus::dropout(a, attention_dropout_, *rng(), is_training());
    a = threshold_adjacency(a, threshold_);
    moments = pna_moments_dense(a, v, options);
  }
  // The features and the per-head MLP run heads first, on (H, B T, .), as gin's do: the ops that
  // build the features read the moments through transposed views and write (H, B, T, .), so each
  // head's rows are one matrix and every product of the MLP is one strided-batched call over the
  // heads (batch-first, each made one call per batch entry).
  const int64_t B = x.size(0), T = x.size(1), H = num_heads_;
  for (Tensor* m : {&moments.sum, &moments.square, &moments.max, &moments.min, &moments.degree})
    if (m->defined()) *m = transpose(*m, 0, 1);
  Tensor features =  // (H, B, T, F D)
      pna_features_from_moments(moments, aggregators_, scalers_, delta_, &last_delta_);
  features = reshape(features, {H, B * T, features.size(-1)});
  Tensor h = mlp_out_->forward(silu(mlp_in_->forward(features)));  // (H, B T, D)
  Tensor out = merge_heads_first(h, B);                            // (B, T, C)
  return o_proj_->forward(out);
}

namespace {
const AttentionKindRegistrar kPna("pna", [](const ModelConfig& config, int64_t /*layer_index*/,
                                            Generator& init) {
  return std::make_shared<PnaAttention>(config, init);
});
}  // namespace

}  // namespace gradus::graph
