// The multi-tensor ("foreach") optimiser path: the kernels adam_multi_step, norm_pow_sum_multi and
// scale_inplace_multi give, for every array of a list, the same bits as the per-array kernels
// (sizes around the chunk and block boundaries, misaligned arrays, different coefficients per
// array, more arrays than one CUDA launch holds); and a whole optimiser step, grad_norm and
// clip_grad_norm give the same bits with GRADUS_FUSED_OPTIMIZER on and off.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/random.h"
#include "kernels/optim.h"
#include "kernels/registry.h"
#include "models/optim/adam.h"
#include "models/optim/clip.h"

namespace gradus {
namespace {

using kernels::KernelRef;

constexpr DType kDTypes[] = {DType::f32, DType::f64};
// Sizes around the CPU's chunk (16384) and norm block (4096) and the CUDA packs (4 or 2 elements).
const std::vector<int64_t> kSizes = {0, 1, 3, 7, 4097, 100003};
constexpr double kInf = std::numeric_limits<double>::infinity();

// Restores the process-wide switch at the end of a test.
class FusedOptimizerGuard {
 public:
  FusedOptimizerGuard() : previous_(fused_optimizer_enabled()) {}
  ~FusedOptimizerGuard() { set_fused_optimizer(previous_); }

 private:
  bool previous_;
};

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// Arrays of T with room for one element in front, so that an array may start misaligned.
template <class T>
struct Arrays {
  std::vector<std::vector<T>> storage;
  std::vector<int64_t> offset;  // 0 or 1 element
  T* at(size_t i) { return storage[i].data() + offset[i]; }
};

template <class T>
Arrays<T> random_arrays(const std::vector<int64_t>& sizes, const std::vector<int64_t>& offsets,
                        std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  Arrays<T> a;
  for (size_t i = 0; i < sizes.size(); ++i) {
    a.storage.emplace_back(static_cast<size_t>(sizes[i] + 1));
    for (T& x : a.storage.back()) x = static_cast<T>(u(rng));
    a.offset.push_back(offsets[i]);
  }
  return a;
}

// Every size twice (aligned and shifted by one element) and then again, so that the list holds
// more arrays (24) than one CUDA launch (kMultiTensors = 24) plus a few.
void list_of_sizes(std::vector<int64_t>& sizes, std::vector<int64_t>& offsets) {
  for (int rep = 0; rep < 3; ++rep)
    for (int64_t n : kSizes)
      for (int64_t off : {0, 1}) {
        if (rep == 2 && n > 4097) continue;  // keep the test fast
        sizes.push_back(n);
        offsets.push_back(off);
      }
}

// Different coefficients per array: lr, decoupled or L2 weight decay, step count.
kernels::AdamStepParams params_for(size_t i) {
  kernels::AdamStepParams p;
  p.lr = 1e-3 * static_cast<double>(1 + i % 5);
  p.beta1 = i % 4 == 3 ? 0.8 : 0.9;
  p.beta2 = 0.999;
  p.eps = 1e-8;
  p.weight_decay = i % 3 == 0 ? 0.0 : 0.01 * static_cast<double>(i % 3);
  p.decoupled_weight_decay = i % 2 == 0;
  const double t = static_cast<double>(1 + i % 7);
  p.step_size = p.lr / (1.0 - std::pow(p.beta1, t));
  p.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(p.beta2, t));
  return p;
}

template <class T>
void check_adam_multi(DType dt) {
  std::vector<int64_t> sizes, offsets;
  list_of_sizes(sizes, offsets);
  ASSERT_GT(sizes.size(), 24u);
  std::mt19937_64 rng(7);
  Arrays<T> param = random_arrays<T>(sizes, offsets, rng, -1, 1);
  Arrays<T> grad = random_arrays<T>(sizes, offsets, rng, -1, 1);
  Arrays<T> m = random_arrays<T>(sizes, offsets, rng, -0.1, 0.1);
  Arrays<T> v = random_arrays<T>(sizes, offsets, rng, 0, 0.01);
  const Arrays<T> initial = param;
  Arrays<T> ref_param = param, ref_m = m, ref_v = v;

  static const KernelRef<kernels::AdamStepFn> single(kernels::kAdamStep);
  static const KernelRef<kernels::AdamMultiStepFn> multi(kernels::kAdamMultiStep);
  for (int step = 0; step < 3; ++step) {
    std::vector<kernels::AdamMultiTensor> list;
    for (size_t i = 0; i < sizes.size(); ++i) {
      kernels::AdamStepParams p = params_for(i + step);
      single(kCPU, dt)(ref_param.at(i), grad.at(i), ref_m.at(i), ref_v.at(i), sizes[i], p);
      list.push_back({param.at(i), grad.at(i), m.at(i), v.at(i), sizes[i], p});
    }
    multi(kCPU, dt)(list.data(), static_cast<int64_t>(list.size()));
  }
  for (size_t i = 0; i < sizes.size(); ++i) {
    const size_t bytes = static_cast<size_t>(sizes[i]) * sizeof(T);
    const std::string what =
        fmt::format("{} array {} (n {}, offset {})", dtype_name(dt), i, sizes[i], offsets[i]);
    EXPECT_EQ(std::memcmp(param.at(i), ref_param.at(i), bytes), 0) << what << " param";
    EXPECT_EQ(std::memcmp(m.at(i), ref_m.at(i), bytes), 0) << what << " exp_avg";
    EXPECT_EQ(std::memcmp(v.at(i), ref_v.at(i), bytes), 0) << what << " exp_avg_sq";
    // The element in front of a shifted array is never written.
    EXPECT_EQ(std::memcmp(param.storage[i].data(), ref_param.storage[i].data(), sizeof(T)), 0);
  }
  // And the steps did something.
  EXPECT_NE(param.storage[9][5], initial.storage[9][5]);
}

TEST(OptimMulti, KernelsRegisteredForCpuF32AndF64) {
  for (const char* name :
       {kernels::kAdamMultiStep, kernels::kNormPowSumMulti, kernels::kScaleInplaceMulti})
    for (DType dt : kDTypes)
      EXPECT_TRUE(kernels::supports(name, DeviceType::cpu, dt)) << name << " " << dtype_name(dt);
}

TEST(OptimMulti, AdamMultiStepIsBitIdenticalToAdamStepPerArray) {
  check_adam_multi<float>(DType::f32);
  check_adam_multi<double>(DType::f64);
}

template <class T>
void check_norm_and_scale_multi(DType dt) {
  std::vector<int64_t> sizes, offsets;
  list_of_sizes(sizes, offsets);
  std::mt19937_64 rng(11);
  Arrays<T> x = random_arrays<T>(sizes, offsets, rng, -2, 2);
  static const KernelRef<kernels::NormPowSumFn> norm(kernels::kNormPowSum);
  static const KernelRef<kernels::NormPowSumMultiFn> norm_multi(kernels::kNormPowSumMulti);
  static const KernelRef<kernels::ScaleInplaceFn> scale(kernels::kScaleInplace);
  static const KernelRef<kernels::ScaleInplaceMultiFn> scale_multi(kernels::kScaleInplaceMulti);

  // A NaN in one large array (in its third block) and an infinity in a small one.
  ASSERT_EQ(sizes[10], 100003);
  ASSERT_EQ(sizes[5], 3);
  x.at(10)[2 * 4096 + 5] = std::numeric_limits<T>::quiet_NaN();
  x.at(5)[1] = -std::numeric_limits<T>::infinity();

  std::vector<kernels::ConstArray> list;
  for (size_t i = 0; i < sizes.size(); ++i) list.push_back({x.at(i), sizes[i]});
  for (double p : {1.0, 2.0, 3.0, kInf}) {
    std::vector<double> out(sizes.size(), -1.0), one_thread(sizes.size(), -1.0);
    norm_multi(kCPU, dt)(list.data(), static_cast<int64_t>(list.size()), p, out.data());
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    norm_multi(kCPU, dt)(list.data(), static_cast<int64_t>(list.size()), p, one_thread.data());
    omp_set_num_threads(threads);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const double expected = norm(kCPU, dt)(x.at(i), sizes[i], p);
      EXPECT_TRUE(same_bits(out[i], expected))
          << dtype_name(dt) << " p " << p << " array " << i << " (n " << sizes[i] << "): got "
          << out[i] << ", expected " << expected;
      EXPECT_TRUE(same_bits(one_thread[i], expected)) << "one thread, array " << i;
    }
    EXPECT_TRUE(std::isnan(out[10])) << "p " << p;
    EXPECT_EQ(out[5], kInf) << "p " << p;
    EXPECT_EQ(out[0], 0.0) << "an empty array";
  }

  Arrays<T> y = x;
  std::vector<kernels::MutableArray> mutable_list;
  for (size_t i = 0; i < sizes.size(); ++i) {
    mutable_list.push_back({x.at(i), sizes[i]});
    scale(kCPU, dt)(y.at(i), sizes[i], 0.3);
  }
  scale_multi(kCPU, dt)(mutable_list.data(), static_cast<int64_t>(mutable_list.size()), 0.3);
  for (size_t i = 0; i < sizes.size(); ++i)
    EXPECT_EQ(
        std::memcmp(x.storage[i].data(), y.storage[i].data(), x.storage[i].size() * sizeof(T)), 0)
        << dtype_name(dt) << " scale, array " << i;
}

TEST(OptimMulti, NormAndScaleMultiAreBitIdenticalPerArray) {
  check_norm_and_scale_multi<float>(DType::f32);
  check_norm_and_scale_multi<double>(DType::f64);
}

// ------------------------------------------------------------------ whole optimiser

// Parameters of a small model in three groups: a contiguous matrix and bias (f64), a transposed
// view (non-contiguous) and a large vector crossing chunk boundaries, an f32 parameter sharing a
// group with f64 ones, and one parameter that never gets a gradient.
struct SmallModel {
  Tensor w, b, wt_base, wt, big, half, frozen;
  explicit SmallModel(uint64_t seed) {
    Generator gen(seed);
    w = rand_uniform({8, 16}, gen, DType::f64, -1, 1);
    b = rand_uniform({16}, gen, DType::f64, -1, 1);
    wt_base = rand_uniform({6, 5}, gen, DType::f64, -1, 1);
    wt = raw_transpose(wt_base, 0, 1);  // (5, 6), strides (1, 5)
    big = rand_uniform({40001}, gen, DType::f64, -1, 1);
    half = rand_uniform({3, 7}, gen, DType::f32, -1, 1);
    frozen = rand_uniform({4}, gen, DType::f64, -1, 1);
    for (Tensor* t : {&w, &b, &wt, &big, &half, &frozen}) t->set_requires_grad(true);
  }
  std::vector<ParamGroup> groups() const {
    return {ParamGroup{{w, b}, 1e-2, 0.1, "dense"},
            ParamGroup{{wt, big, frozen}, 3e-3, 0.0, "views"},
            ParamGroup{{half}, 5e-3, 0.02, "f32"}};
  }
  std::vector<Tensor> with_grad() const { return {w, b, wt, big, half}; }
  std::vector<Tensor> all() const { return {w, b, wt, big, half, frozen}; }
};

// Gradients of step s, the same for both models (a strided one for wt).
void set_step_grads(const SmallModel& m, int s) {
  Generator gen(1000 + s);
  for (const Tensor* p : {&m.w, &m.b, &m.big, &m.half})
    p->set_grad(rand_normal(p->shape(), gen, p->dtype()));
  Tensor g = rand_normal({6, 5}, gen, DType::f64);
  m.wt.set_grad(raw_transpose(g, 0, 1));
}

bool same_tensor_bits(const Tensor& a, const Tensor& b) {
  const Tensor ca = raw_contiguous(a), cb = raw_contiguous(b);
  return a.shape() == b.shape() && a.dtype() == b.dtype() &&
         std::memcmp(ca.raw_data(), cb.raw_data(), ca.nbytes()) == 0;
}

void check_fused_switch_gives_the_same_bits(bool decoupled) {
  FusedOptimizerGuard guard;
  SmallModel fused(5), reference(5);
  AdamOptions options;
  options.decoupled_weight_decay = decoupled;
  Adam opt_fused(fused.groups(), options), opt_reference(reference.groups(), options);
  for (int s = 0; s < 4; ++s) {
    set_step_grads(fused, s);
    set_step_grads(reference, s);
    set_fused_optimizer(true);
    const double norm_fused = clip_grad_norm(fused.all(), 4.0);
    opt_fused.step();
    set_fused_optimizer(false);
    const double norm_reference = clip_grad_norm(reference.all(), 4.0);
    opt_reference.step();
    EXPECT_TRUE(same_bits(norm_fused, norm_reference)) << "step " << s;
    EXPECT_GT(norm_fused, 4.0) << "the clip must scale, to test the scaling";
  }
  const std::vector<Tensor> a = fused.all(), b = reference.all();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(same_tensor_bits(a[i], b[i])) << "param " << i;
  EXPECT_TRUE(same_tensor_bits(fused.wt_base, reference.wt_base));
  EXPECT_TRUE(fused.wt.shares_storage(fused.wt_base));
  const auto sa = opt_fused.state_tensors(), sb = opt_reference.state_tensors();
  ASSERT_EQ(sa.size(), sb.size());
  for (size_t i = 0; i < sa.size(); ++i) {
    EXPECT_EQ(sa[i].first, sb[i].first);
    EXPECT_TRUE(same_tensor_bits(sa[i].second, sb[i].second)) << sa[i].first;
  }
  // The parameter without a gradient was skipped: no step, no state, unchanged.
  EXPECT_EQ(opt_fused.state(1, 2).step, 0);
  EXPECT_TRUE(opt_fused.state(1, 2).buffers.empty());
  EXPECT_TRUE(same_tensor_bits(fused.frozen, SmallModel(5).frozen));
  EXPECT_EQ(opt_fused.state(0, 0).step, 4);
  // And the parameters moved.
  EXPECT_FALSE(same_tensor_bits(fused.big, SmallModel(5).big));
  EXPECT_FALSE(same_tensor_bits(fused.wt_base, SmallModel(5).wt_base));
}

TEST(OptimMulti, AdamWWithTheFusedSwitchOnAndOffGivesTheSameBits) {
  check_fused_switch_gives_the_same_bits(true);
}

TEST(OptimMulti, AdamL2WithTheFusedSwitchOnAndOffGivesTheSameBits) {
  check_fused_switch_gives_the_same_bits(false);
}

TEST(OptimMulti, ParametersFirstUpdatedLaterCountTheirOwnSteps) {
  FusedOptimizerGuard guard;
  set_fused_optimizer(true);
  Tensor a = Tensor::from_vector({1.0, -2.0, 3.0}, {3}, DType::f64);
  Tensor b = Tensor::from_vector({0.5, 0.25}, {2}, DType::f64);
  a.set_requires_grad(true);
  b.set_requires_grad(true);
  Tensor a_ref = raw_clone(a), b_ref = raw_clone(b);
  a_ref.set_requires_grad(true);
  b_ref.set_requires_grad(true);
  AdamW opt({a, b}, 0.1), ref({a_ref, b_ref}, 0.1);
  // Step 1: only a has a gradient; step 2: both (b at its own step 1, a at step 2).
  for (int s = 0; s < 2; ++s) {
    for (Tensor* p : {&a, &a_ref})
      p->set_grad(Tensor::from_vector({0.3, -0.2, 0.1}, {3}, DType::f64));
    if (s == 1)
      for (Tensor* p : {&b, &b_ref}) p->set_grad(Tensor::from_vector({0.7, -0.4}, {2}, DType::f64));
    set_fused_optimizer(true);
    opt.step();
    set_fused_optimizer(false);
    ref.step();
  }
  EXPECT_EQ(opt.state(0, 0).step, 2);
  EXPECT_EQ(opt.state(0, 1).step, 1);
  EXPECT_TRUE(same_tensor_bits(a, a_ref));
  EXPECT_TRUE(same_tensor_bits(b, b_ref));
}

// ------------------------------------------------------------------ grad_norm / clip_grad_norm

// torch.nn.utils.clip_grad_norm_'s total, written out: the per-gradient kernel on each gradient,
// combined in parameter order.
double per_parameter_norm(const std::vector<Tensor>& params, double p) {
  static const KernelRef<kernels::NormPowSumFn> k(kernels::kNormPowSum);
  double acc = 0.0;
  for (const Tensor& param : params) {
    const Tensor g = param.grad();
    if (!g.defined()) continue;
    const Tensor c = raw_contiguous(g);
    const double part = k(c.device(), c.dtype())(c.raw_data(), c.numel(), p);
    if (std::isinf(p))
      acc = (std::isnan(part) || std::isnan(acc)) ? std::nan("") : std::max(acc, part);
    else
      acc += part;
  }
  if (std::isinf(p)) return acc;
  return p == 2.0 ? std::sqrt(acc) : p == 1.0 ? acc : std::pow(acc, 1.0 / p);
}

TEST(OptimMulti, GradNormIsBitIdenticalToThePerParameterSum) {
  FusedOptimizerGuard guard;
  set_fused_optimizer(true);
  SmallModel m(9);
  set_step_grads(m, 0);
  // f32 and f64 gradients interleaved: the kernel runs per dtype, the sum in parameter order.
  const std::vector<Tensor> params = {m.half, m.w, m.frozen, m.wt, m.big, m.b};
  for (double p : {1.0, 2.0, 3.0, kInf}) {
    const double expected = per_parameter_norm(params, p);
    EXPECT_TRUE(same_bits(grad_norm(params, p), expected)) << "p " << p;
    EXPECT_GT(expected, 0.0);
  }
  // NaN in one gradient propagates for every norm type.
  Tensor g = m.big.grad();
  Tensor nan_grad = raw_clone(g);
  static_cast<double*>(nan_grad.raw_data())[12345] = std::nan("");
  m.big.set_grad(nan_grad);
  for (double p : {1.0, 2.0, 3.0, kInf}) EXPECT_TRUE(std::isnan(grad_norm(params, p))) << p;
}

TEST(OptimMulti, ClipScalesEveryGradientAsThePerParameterKernel) {
  FusedOptimizerGuard guard;
  for (double p : {1.0, 2.0, kInf}) {
    SmallModel a(3), b(3);
    set_step_grads(a, 1);
    set_step_grads(b, 1);
    set_fused_optimizer(true);
    const double ta = clip_grad_norm(a.all(), 0.5, p);
    set_fused_optimizer(false);
    const double tb = clip_grad_norm(b.all(), 0.5, p);
    EXPECT_TRUE(same_bits(ta, tb)) << p;
    const std::vector<Tensor> pa = a.with_grad(), pb = b.with_grad();
    for (size_t i = 0; i < pa.size(); ++i)
      EXPECT_TRUE(same_tensor_bits(pa[i].grad(), pb[i].grad())) << "p " << p << " grad " << i;
    // The strided gradient was scaled in place: the clipped norm is now max_norm (up to the 1e-6).
    set_fused_optimizer(true);
    EXPECT_NEAR(grad_norm(a.all(), p), 0.5, 1e-6);
  }
}

}  // namespace
}  // namespace gradus
