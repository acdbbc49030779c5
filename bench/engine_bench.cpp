// bench_engine: how close the engine's CPU paths come to what the machine allows.
//
//  1. matmul through gradus::matmul (f32, square n x n) against cblas_sgemm on the same buffers:
//     the engine's layer (checks, output allocation, kernel dispatch) should cost almost nothing.
//  2. memory-bound ops (add, exp, gelu, softmax, rms_norm) in GB/s, each as a fraction of the
//     machine's measured copy bandwidth (the most a streaming op can reach).
//
// Every time is the median of repeated runs after one warm-up run; engine and reference runs are
// interleaved so that a change of machine load affects both alike. Prints one table; the floors are
// explained in docs/benchmarks.md. Usage: bench_engine (thread count from OMP_NUM_THREADS).
#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/norm.h"
#include "autodiff/ops/softmax.h"
#include "autodiff/tape.h"
#include "core/random.h"
#include "kernels/backend_info.h"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_of(const std::function<void()>& fn) {
  const auto t0 = Clock::now();
  fn();
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Enough repeats for about `budget` seconds per function, at least 5 and at most 200.
int repeats_for(double one_run, double budget = 0.5) {
  return std::clamp(static_cast<int>(budget / std::max(one_run, 1e-9)), 5, 200);
}

// Median seconds of `a` and of `b`, run alternately after one warm-up run of each.
std::pair<double, double> paired_medians(const std::function<void()>& a,
                                         const std::function<void()>& b) {
  const int reps = repeats_for(std::max(seconds_of(a), seconds_of(b)));
  std::vector<double> ta, tb;
  for (int i = 0; i < reps; ++i) {
    ta.push_back(seconds_of(a));
    tb.push_back(seconds_of(b));
  }
  return {median(ta), median(tb)};
}

struct Row {
  std::string name, shape;
  double ms;
  std::string rate, reference;
  double ratio, floor;
};

void print_table(const std::vector<Row>& rows) {
  fmt::print("{:<22} {:>16} {:>10} {:>16} {:>24} {:>7} {:>6}  {}\n", "benchmark", "shape",
             "time ms", "engine", "reference", "ratio", "floor", "");
  fmt::print("{}\n", std::string(112, '-'));
  for (const Row& r : rows) {
    const bool has_floor = r.floor > 0;  // the reference row has none
    fmt::print("{:<22} {:>16} {:>10.3f} {:>16} {:>24} {:>7.3f} {:>6}  {}\n", r.name, r.shape, r.ms,
               r.rate, r.reference, r.ratio, has_floor ? fmt::format("{:.2f}", r.floor) : "-",
               !has_floor           ? ""
               : r.ratio >= r.floor ? "ok"
                                    : "BELOW");
  }
}

// ---- 1. matmul vs raw sgemm -------------------------------------------------------------------

Row matmul_row(int64_t n) {
  using namespace gradus;
  Generator gen(1);
  const Tensor a = rand_normal({n, n}, gen, DType::f32);
  const Tensor b = rand_normal({n, n}, gen, DType::f32);
  Tensor c = Tensor::empty({n, n}, DType::f32);
  const int ni = static_cast<int>(n);
  auto engine = [&] { Tensor out = matmul(a, b); };
  auto raw = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data<float>(), ni,
                b.data<float>(), ni, 0.0f, c.data<float>(), ni);
  };
  const auto [t_engine, t_raw] = paired_medians(engine, raw);
  const double flop = 2.0 * static_cast<double>(n) * n * n;
  return {fmt::format("matmul f32 n={}", n),
          fmt::format("({0}, {0})", n),
          t_engine * 1e3,
          fmt::format("{:.1f} GFLOP/s", flop / t_engine * 1e-9),
          fmt::format("sgemm {:.1f} GFLOP/s", flop / t_raw * 1e-9),
          t_raw / t_engine,
          0.97};
}

// ---- 2. memory bandwidth
// -------------------------------------------------------------------------

// The reference: copying 256 MiB across the threads, counting bytes read plus bytes written, by the
// faster of one memcpy per thread on its own chunk (glibc switches to non-temporal stores for large
// copies) and a plain parallel loop of float assignments (ordinary stores, as the engine's kernels
// make). Its time drifts with the machine's memory traffic, so each op below is timed alternately
// with it and compared with the copy measured alongside.
class CopyReference {
 public:
  static constexpr size_t kBytes = size_t{256} << 20;

  CopyReference() : src_(kBytes / sizeof(float), 1.0f), dst_(kBytes / sizeof(float), 0.0f) {
    const auto [t_memcpy, t_loop] =
        paired_medians([this] { copy_memcpy(); }, [this] { copy_loop(); });
    use_memcpy_ = t_memcpy <= t_loop;
    seconds_ = std::min(t_memcpy, t_loop);
  }
  void copy() { use_memcpy_ ? copy_memcpy() : copy_loop(); }
  const char* method() const { return use_memcpy_ ? "copy (memcpy)" : "copy (loop)"; }
  double seconds() const { return seconds_; }
  static double gbs(double seconds) { return 2.0 * static_cast<double>(kBytes) / seconds * 1e-9; }

 private:
  void copy_memcpy() {
    const size_t n = src_.size();
#pragma omp parallel
    {
      const size_t nt = static_cast<size_t>(omp_get_num_threads());
      const size_t t = static_cast<size_t>(omp_get_thread_num());
      const size_t lo = n * t / nt, hi = n * (t + 1) / nt;
      std::memcpy(dst_.data() + lo, src_.data() + lo, (hi - lo) * sizeof(float));
    }
  }
  void copy_loop() {
    const size_t n = src_.size();
    const float* s = src_.data();
    float* d = dst_.data();
#pragma omp parallel for simd schedule(static)
    for (size_t i = 0; i < n; ++i) d[i] = s[i];
  }
  std::vector<float> src_, dst_;
  bool use_memcpy_ = true;
  double seconds_ = 0;
};

// An op streaming `arrays` tensors of x's size (inputs read + output written), as a fraction of
// the copy bandwidth measured alternately with it.
Row bandwidth_row(const std::string& name, const gradus::Tensor& x, int arrays,
                  const std::function<void()>& op, CopyReference& ref, double floor) {
  const auto [t, t_copy] = paired_medians(op, [&] { ref.copy(); });
  const double gbs = arrays * static_cast<double>(x.nbytes()) / t * 1e-9;
  const double copy_gbs = CopyReference::gbs(t_copy);
  return {name,
          gradus::shape_str(x.shape()),
          t * 1e3,
          fmt::format("{:.1f} GB/s", gbs),
          fmt::format("copy {:.1f} GB/s", copy_gbs),
          gbs / copy_gbs,
          floor};
}

}  // namespace

int main() {
  using namespace gradus;
  NoGradGuard no_grad;
  fmt::print("bench_engine: {} thread(s), CPU {}\nBLAS: {}\n\n", kernels::cpu_threads(),
             kernels::cpu_model(), kernels::blas_description());

  std::vector<Row> rows;
  for (int64_t n : {256, 512, 1024, 2048}) rows.push_back(matmul_row(n));

  CopyReference ref;
  rows.push_back({ref.method(), "256 MiB", ref.seconds() * 1e3,
                  fmt::format("{:.1f} GB/s", CopyReference::gbs(ref.seconds())), "reference", 1.0,
                  0.0});

  // 64 MiB per f32 array: twice a 32 MiB last-level cache (one CCX of a current EPYC), so these
  // rows stream from memory as the copy does rather than from cache.
  const Shape shape = {16384, 1024};
  Generator gen(2);
  const Tensor x = rand_normal(shape, gen, DType::f32);
  const Tensor y = rand_normal(shape, gen, DType::f32);
  const Tensor w = Tensor::ones({shape[1]}, DType::f32);
  rows.push_back(bandwidth_row(
      "add", x, 3, [&] { Tensor o = x + y; }, ref, 0.80));
  rows.push_back(bandwidth_row(
      "exp", x, 2, [&] { Tensor o = exp(x); }, ref, 0.80));
  rows.push_back(bandwidth_row(
      "gelu (erf)", x, 2, [&] { Tensor o = gelu(x); }, ref, 0.50));
  rows.push_back(bandwidth_row(
      "softmax (last axis)", x, 2, [&] { Tensor o = softmax(x, -1); }, ref, 0.70));
  rows.push_back(bandwidth_row(
      "rms_norm (last axis)", x, 2, [&] { Tensor o = rms_norm(x, w); }, ref, 0.70));

  print_table(rows);
  return 0;
}
