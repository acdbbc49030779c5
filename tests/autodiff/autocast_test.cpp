// Mixed precision (autodiff/autocast.h). On the CPU the narrow dtype is f32 and the wide one f64
// (the same code path as bf16 / f32 on the GPU): products run narrow, norms, softmax and the loss
// wide, mixed operands promote, gradients reach every parameter in its own dtype; whole models of
// every attention kind give the wide model's loss and gradients within the narrow dtype's
// precision and train. On a GPU, bf16 compute with f32 parameters trains std and gin.
#include "autodiff/autocast.h"

#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <utility>

#include "autodiff/ops/attention.h"
#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/linear_cross_entropy.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "core/kernel_census.h"
#include "models/nn/lm.h"
#include "models/optim/adam.h"
#include "support/census.h"
#include "support/cuda.h"
#include "support/gradcheck_util.h"

namespace gradus {
namespace {

using testing::census_of;
using testing::randn_leaf;

TEST(Autocast, GuardsNestAndRestore) {
  EXPECT_FALSE(autocast_state().has_value());
  {
    AutocastGuard outer(DType::f32, DType::f64);
    ASSERT_TRUE(autocast_state().has_value());
    EXPECT_EQ(autocast_state()->compute, DType::f32);
    {
      AutocastGuard inner(DType::bf16, DType::f32);
      EXPECT_EQ(autocast_state()->compute, DType::bf16);
      EXPECT_EQ(autocast_state()->wide, DType::f32);
    }
    EXPECT_EQ(autocast_state()->compute, DType::f32);
    EXPECT_EQ(autocast_state()->wide, DType::f64);
  }
  EXPECT_FALSE(autocast_state().has_value());
  EXPECT_THROW(AutocastGuard(DType::f64, DType::f32), Error);  // compute wider than wide
  EXPECT_THROW(AutocastGuard(DType::i64, DType::f32), Error);
}

TEST(Autocast, EachOpRunsInItsDtype) {
  Tensor x = randn_leaf({3, 8}, 1);  // f64: the parameters' dtype
  Tensor w = randn_leaf({5, 8}, 2);
  Tensor g = randn_leaf({8}, 3);
  Tensor q = randn_leaf({1, 2, 4, 8}, 4);
  const Tensor targets = Tensor::from_vector({0.0, 4.0, 2.0}, {3}, DType::i64);
  AutocastGuard mixed(DType::f32, DType::f64);
  EXPECT_EQ(linear(x, w).dtype(), DType::f32);
  EXPECT_EQ(matmul(x, transpose(w, 0, 1)).dtype(), DType::f32);
  EXPECT_EQ(scaled_dot_product_attention(q, q, q).dtype(), DType::f32);
  EXPECT_EQ(rms_norm(linear(x, w), Tensor()).dtype(), DType::f64);
  EXPECT_EQ(softmax(linear(x, w), -1).dtype(), DType::f64);
  EXPECT_EQ(cross_entropy(linear(x, w), targets).dtype(), DType::f64);
  EXPECT_EQ((linear(x, w) + rms_norm(linear(x, w), Tensor())).dtype(), DType::f64);  // promoted
  EXPECT_EQ(rms_norm(x, g).dtype(), DType::f64);
  EXPECT_EQ(silu(linear(x, w)).dtype(), DType::f32);  // elementwise: the input's dtype
}

// A 0-dim operand takes the dtype of an operand with dimensions (PyTorch's rule), either side:
// the product stays narrow, and the scalar's gradient still arrives in its own (wide) dtype.
TEST(Autocast, ZeroDimOperandsTakeTheOtherOperandsDtype) {
  Tensor x = randn_leaf({3, 8}, 1), w = randn_leaf({5, 8}, 2);
  Tensor alpha = randn_leaf({}, 3);  // f64, 0-dim: a scalar parameter
  Tensor bias = randn_leaf({5}, 4);  // f64, 1-dim: still promotes
  Tensor left, right, widened;
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    const Tensor y = linear(x, w);  // f32
    left = alpha * y;
    right = y * alpha;
    widened = y + bias;
  }
  EXPECT_EQ(left.dtype(), DType::f32);
  EXPECT_EQ(right.dtype(), DType::f32);
  EXPECT_EQ(widened.dtype(), DType::f64);
  backward(sum(to_dtype(left, DType::f64)) + sum(to_dtype(right, DType::f64)));
  ASSERT_EQ(alpha.grad().dtype(), DType::f64);
  // d/d alpha of sum(2 alpha y) = 2 sum(y), computed from the f32 y.
  Tensor x32 = raw_to_dtype(x, DType::f32), w32 = raw_to_dtype(w, DType::f32);
  const double want = 2.0 * sum(to_dtype(linear(x32, w32), DType::f64)).item();
  EXPECT_NEAR(alpha.grad().item(), want, 1e-5 * std::max(1.0, std::abs(want)));
  // Two 0-dim operands of different dtypes still meet in the wider one.
  AutocastGuard mixed(DType::f32, DType::f64);
  EXPECT_EQ((alpha * Tensor::scalar(2.0, DType::f32)).dtype(), DType::f64);
}

TEST(Autocast, MixedDtypesOutsideAGuardAreStillAnError) {
  EXPECT_THROW(Tensor::zeros({2}, DType::f32) + Tensor::zeros({2}, DType::f64), Error);
}

// The gradient of a wide parameter used by a narrow product is the narrow product's gradient,
// cast: in the parameter's dtype, and equal to the narrow computation's gradient.
TEST(Autocast, GradientsArriveInTheParametersDtype) {
  Tensor x = randn_leaf({4, 6}, 5), w = randn_leaf({3, 6}, 6), g = randn_leaf({3}, 7);
  Tensor loss;
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    loss = sum(rms_norm(linear(x, w), g));
  }
  backward(loss);
  ASSERT_EQ(w.grad().dtype(), DType::f64);
  ASSERT_EQ(x.grad().dtype(), DType::f64);
  ASSERT_EQ(g.grad().dtype(), DType::f64);
  // The same in plain f32, leaves cast once.
  Tensor x32 = raw_to_dtype(x, DType::f32), w32 = raw_to_dtype(w, DType::f32);
  w32.set_requires_grad(true);
  Tensor y = linear(x32, w32);
  backward(sum(rms_norm(to_dtype(y, DType::f64), detach(g))));  // wide norm, as above
  const std::vector<double> want = w32.grad().to_vector(), got = w.grad().to_vector();
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << i;
}

ModelConfig tiny(const std::string& kind) {
  ModelConfig c;
  c.vocab_size = 13;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 24;
  c.attention_kind = kind;
  return c;
}

Tensor tokens(uint64_t seed, int64_t vocab, const Device& device = kCPU) {
  Generator gen(seed);
  Tensor u = rand_uniform({2, 24}, gen, DType::f64, 0.0, static_cast<double>(vocab));
  std::vector<double> v = u.to_vector();
  for (double& x : v) x = std::floor(x);
  return raw_to_device(Tensor::from_vector(v, {2, 24}, DType::i64), device);
}

double relative_error(const std::vector<double>& got, const std::vector<double>& want) {
  double worst = 0, scale = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    worst = std::max(worst, std::abs(got[i] - want[i]));
    scale = std::max(scale, std::abs(want[i]));
  }
  return worst / std::max(scale, 1e-30);
}

// The products record their wide operands and write those operands' gradients in the wide dtype
// themselves (kernels::kGemmWideOutput): the backward of linear, of a batched matmul whose weight
// is broadcast over the batch, and of linear_cross_entropy converts no dtype, and each gradient
// is the narrow computation's, widened.
TEST(Autocast, ProductsWriteWideGradientsWithoutACast) {
  struct Product {
    std::string name;
    Shape x_shape, w_shape;
    std::function<Tensor(const Tensor&, const Tensor&)> fn;
  };
  const Tensor targets = Tensor::from_vector({0, 1, 2, 3, 4, 5, 6, 0}, {8}, DType::i64);
  const std::vector<Product> products = {
      {"linear", {2, 4, 6}, {5, 6}, [](const Tensor& x, const Tensor& w) { return linear(x, w); }},
      {"matmul, w broadcast",
       {2, 4, 6},
       {6, 5},
       [](const Tensor& x, const Tensor& w) { return matmul(x, w); }},
      {"linear_cross_entropy", {8, 6}, {7, 6}, [&](const Tensor& x, const Tensor& w) {
         return linear_cross_entropy(x, w, targets);
       }}};
  for (const Product& p : products) {
    SCOPED_TRACE(p.name);
    const Tensor x = randn_leaf(p.x_shape, 21), w = randn_leaf(p.w_shape, 22);
    Tensor y;
    {
      AutocastGuard mixed(DType::f32, DType::f64);
      y = p.fn(x, w);
    }
    const Tensor seed = Tensor::ones(y.shape(), y.dtype());
    census::open();
    backward(y, seed);
    const auto calls = census::close();
    for (const auto& [kernel, count] : calls) EXPECT_NE(kernel, "copy (dtype conversion)");
    ASSERT_EQ(x.grad().dtype(), DType::f64);
    ASSERT_EQ(w.grad().dtype(), DType::f64);

    Tensor x32 = raw_to_dtype(x, DType::f32), w32 = raw_to_dtype(w, DType::f32);
    x32.set_requires_grad(true);
    w32.set_requires_grad(true);
    const Tensor y32 = p.fn(x32, w32);
    backward(y32, raw_to_dtype(seed, y32.dtype()));
    EXPECT_LT(relative_error(x.grad().to_vector(), x32.grad().to_vector()), 1e-6);
    EXPECT_LT(relative_error(w.grad().to_vector(), w32.grad().to_vector()), 1e-6);
  }
}

// Conversions counted by the census while `work` runs.
int64_t conversions_in(const std::function<void()>& work) {
  const auto calls = census_of(work);
  const auto it = calls.find("copy (dtype conversion)");
  return it == calls.end() ? 0 : it->second;
}

// Within a guard, products reading the same op-produced tensor share one cast of it (q, k and v
// read one normed input); leaves are cast at each use (they may be written in place between uses),
// as is everything in no-grad mode (op outputs are leaves there) and in a nested guard.
TEST(Autocast, ProductsReadingOneTensorShareItsCast) {
  const Tensor x = randn_leaf({4, 6}, 41), g = randn_leaf({6}, 42);
  const Tensor wq = randn_leaf({5, 6}, 43), wk = randn_leaf({5, 6}, 44),
               wv = randn_leaf({5, 6}, 45);
  Tensor loss;
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    const Tensor h = rms_norm(x, g) * 1.5;  // f64, produced by an op (not a norm: no offer)
    ASSERT_FALSE(h.is_leaf());
    Tensor q, k, v;
    EXPECT_EQ(conversions_in([&] {
                q = linear(h, wq);
                k = linear(h, wk);
                v = linear(h, wv);
              }),
              1 + 3)
        << "h once, each weight once";
    EXPECT_EQ(conversions_in([&] {
                linear(x, wq);
                linear(x, wk);
              }),
              2 + 2)
        << "a leaf each time";
    {
      AutocastGuard inner(DType::f32, DType::f64);
      EXPECT_EQ(conversions_in([&] { linear(h, wq); }), 1 + 1) << "a nested guard casts afresh";
    }
    {
      NoGradGuard no_grad;
      const Tensor h_eval = x * 1.5;
      EXPECT_EQ(conversions_in([&] {
                  linear(h_eval, wq);
                  linear(h_eval, wk);
                }),
                2 + 2);
    }
    loss = sum(q * k + v);
  }
  backward(loss);
  // The shared cast changes no value: the same gradients as three separate casts of h, computed in
  // f32 by hand.
  Tensor h32 = raw_to_dtype(rms_norm(detach(x), detach(g)) * 1.5, DType::f32);
  h32.set_requires_grad(true);
  const Tensor q32 = linear(h32, raw_to_dtype(wq, DType::f32)),
               k32 = linear(h32, raw_to_dtype(wk, DType::f32)),
               v32 = linear(h32, raw_to_dtype(wv, DType::f32));
  EXPECT_NEAR(loss.item(), sum(q32 * k32 + v32).item(), 1e-5 * std::abs(loss.item()) + 1e-6);
  ASSERT_TRUE(x.grad().defined());
  ASSERT_TRUE(wv.grad().defined());
}

// A norm writes the compute-dtype copy of its output in its own pass and offers it to the guard:
// the products reading the norm's output cast nothing (in no-grad mode too), and read the same
// values a cast would give. Outside lean autocast nothing is offered.
TEST(Autocast, NormsOfferTheCopyTheProductsRead) {
  const Tensor x = randn_leaf({4, 6}, 51), g = randn_leaf({6}, 52), delta = randn_leaf({4, 6}, 53);
  const Tensor w = randn_leaf({5, 6}, 54);
  const Tensor delta32 = raw_to_dtype(delta, DType::f32);
  for (bool grad_mode : {true, false}) {
    SCOPED_TRACE(grad_mode ? "grad mode" : "no-grad mode");
    std::optional<NoGradGuard> no_grad;
    if (!grad_mode) no_grad.emplace();
    Tensor n, m, yn, ym;
    {
      AutocastGuard mixed(DType::f32, DType::f64);
      n = rms_norm(x, g);
      m = add_rms_norm(x, delta32, g).norm;
      EXPECT_EQ(conversions_in([&] {
                  yn = linear(n, w);
                  ym = linear(m, w);
                }),
                2)
          << "the weight, twice: neither norm output is cast";
    }
    const Tensor w32 = raw_to_dtype(w, DType::f32);
    EXPECT_EQ(yn.to_vector(), linear(raw_to_dtype(n, DType::f32), w32).to_vector());
    EXPECT_EQ(ym.to_vector(), linear(raw_to_dtype(m, DType::f32), w32).to_vector());
  }
  set_lean_autocast(false);
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    const Tensor n = rms_norm(x, g);
    EXPECT_EQ(conversions_in([&] { linear(n, w); }), 2) << "plain autocast casts both";
  }
  set_lean_autocast(true);
}

// AutocastWeights: the first guard casts each weight at its use and remembers it; every later
// guard casts them all on entry in one cast_multi call, with bit-identical losses and gradients.
// An optimiser step inside a guard drops the casts (the products then cast the updated weights),
// another compute dtype starts afresh, and a freed model is forgotten.
TEST(Autocast, WeightsAreCastOnEntryInOneCall) {
  const ModelConfig c = tiny("std");
  Generator gen(4);
  auto lm = std::make_unique<DecoderLM>(c, gen);
  lm->to(DType::f64);
  auto opt = std::make_unique<AdamW>(lm->parameters(), 1e-2, 0.0);
  const Tensor ids = tokens(5, c.vocab_size), targets = tokens(6, c.vocab_size);
  AutocastWeights weights;
  // One training step's loss and gradients, under a guard with or without `weights`.
  auto run = [&](AutocastWeights* w, std::map<std::string, int64_t>* calls) {
    opt->zero_grad();
    Tensor loss;
    const auto forward = [&] {
      AutocastGuard mixed(DType::f32, DType::f64, w);
      loss = lm->loss(ids, targets);
    };
    if (calls != nullptr)
      *calls = census_of(forward);
    else
      forward();
    backward(loss);
    std::vector<std::vector<double>> grads;
    for (const Tensor& p : lm->parameters()) grads.push_back(p.grad().to_vector());
    return std::make_pair(loss.item(), grads);
  };
  const int64_t products_per_layer = 7;  // q, k, v, o, gate, up, down
  const int64_t weights_cast = c.num_hidden_layers * products_per_layer + 1;  // and the head

  std::map<std::string, int64_t> first, later;
  run(&weights, &first);
  EXPECT_EQ(weights.size(), weights_cast);
  EXPECT_EQ(first.count("cast_multi"), 0u);
  const auto with = run(&weights, &later);
  EXPECT_EQ(later["cast_multi"], 1);
  EXPECT_EQ(later["copy (dtype conversion)"], first["copy (dtype conversion)"] - weights_cast);
  const auto without = run(nullptr, nullptr);
  EXPECT_EQ(with.first, without.first);
  EXPECT_EQ(with.second, without.second);

  // An optimiser step inside the guard: the products read the updated weights.
  double inside = 0;
  {
    AutocastGuard mixed(DType::f32, DType::f64, &weights);
    opt->step();
    NoGradGuard no_grad;
    inside = lm->loss(ids, targets).item();
  }
  double fresh = 0;
  {
    AutocastGuard mixed(DType::f32, DType::f64);
    NoGradGuard no_grad;
    fresh = lm->loss(ids, targets).item();
  }
  EXPECT_EQ(inside, fresh);
  EXPECT_NE(inside, without.first) << "the step changed the weights";

  { AutocastGuard same_dtype(DType::f64, DType::f64, &weights); }
  EXPECT_EQ(weights.size(), 0) << "another compute dtype starts afresh";
  run(&weights, nullptr);
  EXPECT_EQ(weights.size(), weights_cast);
  opt.reset();
  lm.reset();
  { AutocastGuard after(DType::f32, DType::f64, &weights); }
  EXPECT_EQ(weights.size(), 0) << "a freed model is forgotten";
}

// GRADUS_LEAN_AUTOCAST=0 (set_lean_autocast(false)) runs autocast as torch.autocast does (recorded
// casts, cast back in the backward, every use cast afresh): the same loss, the same gradients to
// f32 rounding (the head's gradient is scaled in f64 rather than f32), and more conversions.
TEST(Autocast, LeanAutocastMatchesThePlainOne) {
  const ModelConfig c = tiny("std");
  Generator gen(8);
  DecoderLM lm(c, gen);
  lm.to(DType::f64);
  const Tensor ids = tokens(9, c.vocab_size), targets = tokens(10, c.vocab_size);
  AutocastWeights weights;
  auto run = [&](bool lean) {
    set_lean_autocast(lean);
    for (const Tensor& p : lm.parameters()) p.zero_grad();
    Tensor loss;
    std::map<std::string, int64_t> calls = census_of([&] {
      AutocastGuard mixed(DType::f32, DType::f64, &weights);
      loss = lm.loss(ids, targets);
      backward(loss);
    });
    std::vector<std::vector<double>> grads;
    for (const Tensor& p : lm.parameters()) grads.push_back(p.grad().to_vector());
    set_lean_autocast(true);
    return std::make_tuple(loss.item(), grads, calls);
  };
  run(true);  // AutocastWeights remembers the weights
  const auto [lean_loss, lean_grads, lean_calls] = run(true);
  const auto [plain_loss, plain_grads, plain_calls] = run(false);
  EXPECT_EQ(lean_loss, plain_loss);
  for (size_t i = 0; i < lean_grads.size(); ++i)
    EXPECT_LT(relative_error(lean_grads[i], plain_grads[i]), 1e-6) << "parameter " << i;
  const auto count = [](const std::map<std::string, int64_t>& m, const char* k) {
    const auto it = m.find(k);
    return it == m.end() ? int64_t{0} : it->second;
  };
  EXPECT_EQ(count(plain_calls, "cast_multi"), 0);
  EXPECT_EQ(count(plain_calls, "gemm_wide_output"), 1) << "the head's wide logits only";
  EXPECT_EQ(count(lean_calls, "cast_multi"), 1);
  EXPECT_LT(count(lean_calls, "copy (dtype conversion)") + 1,
            count(plain_calls, "copy (dtype conversion)") - 2 * 15)
      << "plain: every weight cast and cast back";
  EXPECT_TRUE(lean_autocast_enabled());
}

// Every kind: f64 parameters with f32 compute give the f64 model's loss and gradients within f32's
// precision (rounding compounds through two layers: 1e-4 of each gradient's largest element).
TEST(Autocast, ModelsOfEveryKindMatchTheWideModel) {
  for (const char* kind : {"std", "lgt", "egt", "gin", "pna", "pna softmax"}) {
    SCOPED_TRACE(kind);
    ModelConfig c = tiny(std::string(kind).substr(0, 3) == "pna" ? "pna" : kind);
    if (std::string(kind) == "pna softmax") {  // a wide (softmax) adjacency meets narrow features
      c.pna_adjacency = "softmax";
      c.pna_aggregators = "sum,mean,max,min,var";
    }
    Generator gen(3);
    DecoderLM lm(c, gen);
    lm.to(DType::f64);
    lm.train(false);  // no dropout (gin's MLP has some): both passes see the same function
    const Tensor ids = tokens(1, c.vocab_size), targets = tokens(2, c.vocab_size);
    Tensor wide_loss = lm.loss(ids, targets);
    backward(wide_loss);
    std::vector<std::vector<double>> wide_grads;
    for (const Tensor& p : lm.parameters()) {
      wide_grads.push_back(p.grad().to_vector());
      p.zero_grad();
    }
    Tensor mixed_loss;
    {
      AutocastGuard mixed(DType::f32, DType::f64);
      mixed_loss = lm.loss(ids, targets);
    }
    EXPECT_EQ(mixed_loss.dtype(), DType::f64);
    backward(mixed_loss);
    EXPECT_NEAR(mixed_loss.item(), wide_loss.item(), 1e-5 * wide_loss.item());
    size_t i = 0;
    for (const auto& [name, p] : lm.named_parameters()) {
      ASSERT_TRUE(p.grad().defined()) << name;
      EXPECT_EQ(p.grad().dtype(), DType::f64) << name;
      EXPECT_LT(relative_error(p.grad().to_vector(), wide_grads[i++]), 1e-4) << name;
    }
  }
}

// A few AdamW steps under autocast lower the loss of a fixed batch (the optimiser only ever sees
// the wide parameters and gradients).
void expect_mixed_training_learns(const std::string& kind, const Device& device, DType compute,
                                  DType wide) {
  SCOPED_TRACE(kind);
  const ModelConfig c = tiny(kind);
  Generator gen(4);
  DecoderLM lm(c, gen);
  lm.to(wide);
  lm.to(device);
  AdamW opt(lm.parameters(), 1e-2, 0.0);
  const Tensor ids = tokens(5, c.vocab_size, device), targets = tokens(6, c.vocab_size, device);
  double first = 0, last = 0;
  for (int step = 0; step < 30; ++step) {
    opt.zero_grad();
    Tensor loss;
    {
      AutocastGuard mixed(compute, wide);
      loss = lm.loss(ids, targets);
    }
    backward(loss);
    opt.step();
    (step == 0 ? first : last) = loss.item();
  }
  EXPECT_TRUE(std::isfinite(last));
  EXPECT_LT(last, 0.5 * first) << "first " << first << " last " << last;
  for (const Tensor& p : lm.parameters()) EXPECT_EQ(p.dtype(), wide);
}

TEST(Autocast, MixedPrecisionTrainingLearns) {
  for (const char* kind : {"std", "gin"})
    expect_mixed_training_learns(kind, kCPU, DType::f32, DType::f64);
}

TEST(Autocast, Bf16MixedPrecisionTrainsOnTheGpu) {
  GRADUS_REQUIRE_CUDA();
  for (const char* kind : {"std", "lgt", "gin", "pna"})
    expect_mixed_training_learns(kind, testing::kCUDA, DType::bf16, DType::f32);
}

}  // namespace
}  // namespace gradus
