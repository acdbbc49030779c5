// hardmax_attention / hardmax_attention_general: one fused kernel each way (kernels/hardmax.h).
// The backward recomputes the selection from the saved input, so only x (and the parameters) are
// saved.
#include "autodiff/ops/hardmax.h"

#include "autodiff/ops/common.h"
#include "kernels/hardmax.h"

namespace gradus {

namespace {

// inputs: x, q, k, alpha (rank-1) or x, A, alpha (general); saved: the same (contiguous), then
// lengths when given; attrs.ints: [general, has_lengths].
void hardmax_backward_rule(const Record& r, const std::vector<Tensor>& go,
                           std::vector<Tensor>& gi) {
  const bool general = r.attrs.ints[0] != 0, has_lengths = r.attrs.ints[1] != 0;
  const Tensor& x = r.saved[0];
  const size_t n_params = general ? 1 : 2;
  const Tensor& alpha = r.saved[1 + n_params];
  const int64_t* lengths =
      has_lengths ? static_cast<const int64_t*>(r.saved[2 + n_params].raw_data()) : nullptr;
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  Tensor g = raw_contiguous(go[0]);
  Tensor gx = detail::empty_like(x);
  Tensor ga = Tensor::empty({B}, x.dtype(), x.device());
  if (general) {
    static const kernels::KernelRef<kernels::HardmaxGeneralBackwardFn> k(
        kernels::kHardmaxGeneralBackward);
    k(x.device(), x.dtype())(x.raw_data(), r.saved[1].raw_data(), alpha.raw_data(), lengths,
                             g.raw_data(), gx.raw_data(), ga.raw_data(), B, T, C);
  } else {
    static const kernels::KernelRef<kernels::HardmaxRank1BackwardFn> k(
        kernels::kHardmaxRank1Backward);
    k(x.device(), x.dtype())(x.raw_data(), r.saved[1].raw_data(), r.saved[2].raw_data(),
                             alpha.raw_data(), lengths, g.raw_data(), gx.raw_data(), ga.raw_data(),
                             B, T, C);
  }
  if (r.input_requires_grad(0)) gi[0] = gx;
  for (size_t p = 1; p <= n_params; ++p)
    if (r.input_requires_grad(p)) gi[p] = Tensor::zeros(r.input_shapes[p], x.dtype(), x.device());
  if (r.input_requires_grad(1 + n_params)) {
    // The per-sequence sums, added in order (deterministic for any thread count).
    double total = 0;
    const std::vector<double> parts = ga.to_vector();
    if (x.dtype() == DType::f32) {
      float t = 0;
      for (double p : parts) t += static_cast<float>(p);
      total = t;
    } else {
      for (double p : parts) total += p;
    }
    gi[1 + n_params] = Tensor::full(r.input_shapes[1 + n_params], total, x.dtype(), x.device());
  }
}

const OpDef& kHardmaxRank1 = register_op({.name = "hardmax_attention",
                                          .family = "hardmax",
                                          .backward = hardmax_backward_rule,
                                          .forward_kernels = {kernels::kHardmaxRank1Forward},
                                          .backward_kernels = {kernels::kHardmaxRank1Backward},
                                          .gradcheck = "Gradcheck.hardmax_attention"});
const OpDef& kHardmaxGeneral = register_op({.name = "hardmax_attention_general",
                                            .family = "hardmax",
                                            .backward = hardmax_backward_rule,
                                            .forward_kernels = {kernels::kHardmaxGeneralForward},
                                            .backward_kernels = {kernels::kHardmaxGeneralBackward},
                                            .gradcheck = "Gradcheck.hardmax_attention_general"});

void check_common(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& lengths) {
  detail::expect_defined(op, x, "x");
  detail::expect_defined(op, alpha, "alpha");
  GRADUS_CHECK(x.dim() == 3, op, "x must be (B, T, C), found {}", x.describe());
  GRADUS_CHECK(alpha.numel() == 1 && alpha.dim() <= 1, op, "alpha must be () or (1), found {}",
               alpha.describe());
  if (lengths.defined()) {
    detail::expect_dtype(op, lengths, DType::i64, "lengths");
    GRADUS_CHECK(lengths.dim() == 1 && lengths.size(0) == x.size(0), op,
                 "lengths must be ({}) for x {}, found {}", x.size(0), x.describe(),
                 lengths.describe());
    GRADUS_CHECK(lengths.device() == x.device(), op, "lengths {} and x {} are on different devices",
                 lengths.describe(), x.describe());
    const std::vector<double> l = lengths.to_vector();
    for (size_t b = 0; b < l.size(); ++b)
      GRADUS_CHECK(l[b] >= 1 && l[b] <= static_cast<double>(x.size(1)), op,
                   "lengths[{}] must lie in [1, {}], found {}", b, x.size(1), l[b]);
  }
}

}  // namespace

Tensor hardmax_attention(const Tensor& x, const Tensor& q, const Tensor& k, const Tensor& alpha,
                         const Tensor& lengths) {
  const char* op = "hardmax_attention";
  check_common(op, x, alpha, lengths);
  detail::expect_defined(op, q, "q");
  detail::expect_defined(op, k, "k");
  detail::expect_float_compatible(op, {&x, &q, &k, &alpha});
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  GRADUS_CHECK(q.shape() == Shape{C} && k.shape() == Shape{C}, op,
               "q and k must be ({}) for x {}, found q {} and k {}", C, x.describe(), q.describe(),
               k.describe());
  Tensor xc = raw_contiguous(x), qc = raw_contiguous(q), kc = raw_contiguous(k),
         ac = raw_contiguous(alpha);
  Tensor lc = lengths.defined() ? raw_contiguous(lengths) : Tensor();
  Tensor y = detail::empty_like(x);
  static const kernels::KernelRef<kernels::HardmaxRank1Fn> kern(kernels::kHardmaxRank1Forward);
  kern(x.device(), x.dtype())(xc.raw_data(), qc.raw_data(), kc.raw_data(), ac.raw_data(),
                              lc.defined() ? static_cast<const int64_t*>(lc.raw_data()) : nullptr,
                              y.raw_data(), B, T, C);
  std::vector<Tensor> saved = {xc, qc, kc, ac};
  if (lc.defined()) saved.push_back(lc);
  finish_op(kHardmaxRank1, {x, q, k, alpha}, {y}, std::move(saved),
            Attrs{.ints = {0, lc.defined() ? 1 : 0}});
  return y;
}

Tensor hardmax_attention_general(const Tensor& x, const Tensor& A, const Tensor& alpha,
                                 const Tensor& lengths) {
  const char* op = "hardmax_attention_general";
  check_common(op, x, alpha, lengths);
  detail::expect_defined(op, A, "A");
  detail::expect_float_compatible(op, {&x, &A, &alpha});
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  GRADUS_CHECK(A.shape() == (Shape{C, C}), op, "A must be ({}, {}) for x {}, found {}", C, C,
               x.describe(), A.describe());
  Tensor xc = raw_contiguous(x), Ac = raw_contiguous(A), ac = raw_contiguous(alpha);
  Tensor lc = lengths.defined() ? raw_contiguous(lengths) : Tensor();
  Tensor y = detail::empty_like(x);
  static const kernels::KernelRef<kernels::HardmaxGeneralFn> kern(kernels::kHardmaxGeneralForward);
  kern(x.device(), x.dtype())(xc.raw_data(), Ac.raw_data(), ac.raw_data(),
                              lc.defined() ? static_cast<const int64_t*>(lc.raw_data()) : nullptr,
                              y.raw_data(), B, T, C);
  std::vector<Tensor> saved = {xc, Ac, ac};
  if (lc.defined()) saved.push_back(lc);
  finish_op(kHardmaxGeneral, {x, A, alpha}, {y}, std::move(saved),
            Attrs{.ints = {1, lc.defined() ? 1 : 0}});
  return y;
}

}  // namespace gradus
