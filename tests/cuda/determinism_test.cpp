// GPU determinism: the same seeded computation, run twice (with the caching allocator's state
// disturbed in between, so buffers land at other addresses), gives identical bits in every output
// and gradient. The computation is a small language-model step (embedding with repeated ids,
// rms_norm, linear + gelu, causal attention scores through matmul and softmax, cross_entropy) and
// reductions of 10^6 elements; the GPU kernels promise fixed reduction orders and no float atomics.
#include <cstring>
#include <string>
#include <vector>

#include "autodiff/ops/cross_entropy.h"
#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/embedding.h"
#include "autodiff/ops/mask.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/reduce.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/ops/view.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using testing::kCUDA;

// Named CPU copies of everything a run produced.
struct Snapshot {
  std::vector<std::string> names;
  std::vector<Tensor> values;
  void add(const std::string& name, const Tensor& t) {
    ASSERT_TRUE(t.defined()) << name;
    names.push_back(name);
    values.push_back(raw_contiguous(raw_to_device(t, kCPU)));
  }
};

Snapshot run_step(uint64_t seed) {
  Generator gen(seed);
  auto param = [&](const Shape& shape, double mean, double std) {
    Tensor t = raw_to_device(rand_normal(shape, gen, DType::f32, mean, std), kCUDA);
    t.set_requires_grad(true);
    return t;
  };
  auto ids = [&](const Shape& shape, int64_t n) {
    std::vector<double> v = rand_uniform(shape, gen, DType::f64, 0, static_cast<double>(n)).to_vector();
    for (double& x : v) x = std::min(std::floor(x), static_cast<double>(n - 1));
    return raw_to_device(Tensor::from_vector(v, shape, DType::i64), kCUDA);
  };
  const int64_t B = 4, T = 33, V = 50, C = 64, H = 256;
  Tensor emb = param({V, C}, 0, 1), norm_w = param({C}, 1, 0.1);
  Tensor w1 = param({H, C}, 0, 0.1), b1 = param({H}, 0, 0.1), w2 = param({C, H}, 0, 0.1);
  Tensor head = param({V, C}, 0, 0.1);
  Tensor big = param({1000, 1000}, 0, 1);
  const Tensor tokens = ids({B, T}, V);  // 132 ids into 50 rows: repeated
  const Tensor targets = ids({B, T}, V);

  Tensor x = rms_norm(embedding(emb, tokens), norm_w);                          // (B, T, C)
  Tensor scores = causal_masked_fill(matmul(x, transpose(x, 1, 2)) * 0.125);    // (B, T, T)
  Tensor attended = matmul(softmax(scores, -1), x);                             // (B, T, C)
  Tensor h = linear(gelu(linear(attended, w1, b1)), w2);                        // (B, T, C)
  Tensor logits = linear(add(x, h), head);                                      // (B, T, V)
  Tensor loss = cross_entropy(logits, targets);
  // Reductions over 10^6 elements: all of them, along each axis, a variance and a logsumexp.
  Tensor big_sum = sum(mul(big, big));
  Tensor big_rows = sum(big, {1});
  Tensor big_cols = mean(big, {0});
  Tensor big_var = var(big);
  Tensor big_lse = logsumexp(big, {0, 1});
  Tensor total = add(add(loss, big_sum * 1e-6), add(sum(big_rows) * 1e-3, add(big_var, big_lse)));
  total = add(total, sum(big_cols));
  backward(total);

  Snapshot s;
  s.add("loss", loss);
  s.add("logits", logits);
  s.add("attended", attended);
  s.add("big_sum", big_sum);
  s.add("big_rows", big_rows);
  s.add("big_cols", big_cols);
  s.add("big_var", big_var);
  s.add("big_lse", big_lse);
  s.add("grad emb", emb.grad());
  s.add("grad norm_w", norm_w.grad());
  s.add("grad w1", w1.grad());
  s.add("grad b1", b1.grad());
  s.add("grad w2", w2.grad());
  s.add("grad head", head.grad());
  s.add("grad big", big.grad());
  return s;
}

void expect_identical(const Snapshot& a, const Snapshot& b) {
  ASSERT_EQ(a.values.size(), b.values.size());
  for (size_t k = 0; k < a.values.size(); ++k) {
    const Tensor& x = a.values[k];
    const Tensor& y = b.values[k];
    ASSERT_EQ(x.shape(), y.shape()) << a.names[k];
    ASSERT_EQ(x.dtype(), y.dtype()) << a.names[k];
    EXPECT_EQ(std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()), 0)
        << a.names[k] << " " << x.describe() << " differs between two identical runs";
  }
}

TEST(CudaDeterminism, SameSeedSameBits) {
  GRADUS_REQUIRE_CUDA();
  const Snapshot first = run_step(2024);
  // Hold blocks of assorted sizes so that the second run's buffers come from other addresses.
  std::vector<Tensor> held;
  for (int64_t n : {int64_t{3}, int64_t{1000}, int64_t{4096}, int64_t{1} << 18, int64_t{1000003}})
    held.push_back(Tensor::empty({n}, DType::f32, kCUDA));
  const Snapshot second = run_step(2024);
  expect_identical(first, second);
  held.clear();
  const Snapshot third = run_step(2024);
  expect_identical(first, third);
}

}  // namespace
}  // namespace gradus
