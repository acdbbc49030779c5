// The multi-tensor optimiser kernels on the GPU: adam_multi_step equals the CPU's adam_step on
// every array bit for bit (f32 and f64; the GPU rounds each operation as the CPU does) in
// ceil(count / 24) launches without a host wait; norm_pow_sum_multi equals the GPU's per-array
// norm_pow_sum bit for bit and the CPU's to 1e-12 relative (the block decompositions differ) with
// one host wait; scale_inplace_multi equals scale_inplace. Aligned and misaligned arrays, sizes
// around the packs and blocks, more arrays than one launch holds. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "kernels/backend_info.h"
#include "kernels/optim.h"
#include "kernels/registry.h"
#include "support/cuda.h"

namespace gradus {
namespace {

using kernels::KernelRef;
using testing::kCUDA;

constexpr DType kDTypes[] = {DType::f32, DType::f64};

// Arrays on one device, each with one spare element in front so that it may start misaligned.
struct DeviceArrays {
  std::vector<Tensor> storage;
  std::vector<int64_t> offset, n;
  void* at(size_t i) const {
    return static_cast<char*>(storage[i].raw_data()) + offset[i] * dtype_size(storage[i].dtype());
  }
};

// Sizes 0, 1, 3, 7, 4097, 100003, 1 << 20, each aligned and shifted by one element, and a tail of
// small ones: 30 arrays, more than one launch's 24.
void list_of_sizes(std::vector<int64_t>& sizes, std::vector<int64_t>& offsets) {
  for (int64_t n : {int64_t{0}, int64_t{1}, int64_t{3}, int64_t{7}, int64_t{4097}, int64_t{100003},
                    int64_t{1} << 20})
    for (int64_t off : {0, 1}) {
      sizes.push_back(n);
      offsets.push_back(off);
    }
  for (int64_t i = 0; i < 16; ++i) {
    sizes.push_back(5 + 37 * i);
    offsets.push_back(i % 2);
  }
}

DeviceArrays random_arrays(const std::vector<int64_t>& sizes, const std::vector<int64_t>& offsets,
                           DType dt, std::mt19937_64& rng, double lo, double hi) {
  std::uniform_real_distribution<double> u(lo, hi);
  DeviceArrays a;
  for (size_t i = 0; i < sizes.size(); ++i) {
    std::vector<double> v(static_cast<size_t>(sizes[i] + 1));
    for (double& x : v) x = u(rng);
    a.storage.push_back(Tensor::from_vector(v, {sizes[i] + 1}, dt));
    a.offset.push_back(offsets[i]);
    a.n.push_back(sizes[i]);
  }
  return a;
}

DeviceArrays to_device(const DeviceArrays& a, Device device) {
  DeviceArrays out = a;
  for (Tensor& t : out.storage) t = raw_to_device(t, device);
  return out;
}

bool same_bits(const DeviceArrays& a, const DeviceArrays& b, size_t i) {
  const Tensor x = raw_to_device(a.storage[i], kCPU), y = raw_to_device(b.storage[i], kCPU);
  return std::memcmp(x.raw_data(), y.raw_data(), x.nbytes()) == 0;
}

kernels::AdamStepParams params_for(size_t i) {
  kernels::AdamStepParams p;
  p.lr = 1e-3 * static_cast<double>(1 + i % 5);
  p.weight_decay = i % 3 == 0 ? 0.0 : 0.05;
  p.decoupled_weight_decay = i % 2 == 0;
  const double t = static_cast<double>(1 + i % 4);
  p.step_size = p.lr / (1.0 - std::pow(p.beta1, t));
  p.bias_correction2_sqrt = std::sqrt(1.0 - std::pow(p.beta2, t));
  return p;
}

TEST(CudaOptimMulti, AdamMultiStepMatchesTheCpuBitForBitWithoutAHostWait) {
  GRADUS_REQUIRE_CUDA();
  static const KernelRef<kernels::AdamStepFn> single(kernels::kAdamStep);
  static const KernelRef<kernels::AdamMultiStepFn> multi(kernels::kAdamMultiStep);
  for (DType dt : kDTypes) {
    std::vector<int64_t> sizes, offsets;
    list_of_sizes(sizes, offsets);
    std::mt19937_64 rng(21);
    DeviceArrays param = random_arrays(sizes, offsets, dt, rng, -1, 1);
    const DeviceArrays grad = random_arrays(sizes, offsets, dt, rng, -1, 1);
    DeviceArrays m = random_arrays(sizes, offsets, dt, rng, -0.1, 0.1);
    DeviceArrays v = random_arrays(sizes, offsets, dt, rng, 0, 0.01);
    DeviceArrays gp = to_device(param, kCUDA), gm = to_device(m, kCUDA), gv = to_device(v, kCUDA);
    const DeviceArrays gg = to_device(grad, kCUDA);
    int64_t launches = 0, waits = 0;
    for (int step = 0; step < 2; ++step) {
      std::vector<kernels::AdamMultiTensor> list;
      for (size_t i = 0; i < sizes.size(); ++i) {
        const kernels::AdamStepParams p = params_for(i + step);
        single(kCPU, dt)(param.at(i), grad.at(i), m.at(i), v.at(i), sizes[i], p);
        list.push_back({gp.at(i), gg.at(i), gm.at(i), gv.at(i), sizes[i], p});
      }
      const kernels::CudaActivity before = kernels::cuda_activity();
      multi(kCUDA, dt)(list.data(), static_cast<int64_t>(list.size()));
      const kernels::CudaActivity after = kernels::cuda_activity();
      launches += after.kernel_launches - before.kernel_launches;
      waits += after.host_syncs - before.host_syncs;
    }
    // 28 non-empty arrays: two launches per step, and no host wait.
    EXPECT_EQ(launches, 2 * 2);
    EXPECT_EQ(waits, 0);
    for (size_t i = 0; i < sizes.size(); ++i) {
      const std::string what =
          fmt::format("{} array {} (n {}, offset {})", dtype_name(dt), i, sizes[i], offsets[i]);
      EXPECT_TRUE(same_bits(gp, param, i)) << what << " param";
      EXPECT_TRUE(same_bits(gm, m, i)) << what << " exp_avg";
      EXPECT_TRUE(same_bits(gv, v, i)) << what << " exp_avg_sq";
    }
  }
}

TEST(CudaOptimMulti, NormPowSumMultiMatchesThePerArrayKernelWithOneHostWait) {
  GRADUS_REQUIRE_CUDA();
  static const KernelRef<kernels::NormPowSumFn> single(kernels::kNormPowSum);
  static const KernelRef<kernels::NormPowSumMultiFn> multi(kernels::kNormPowSumMulti);
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    std::vector<int64_t> sizes, offsets;
    list_of_sizes(sizes, offsets);
    std::mt19937_64 rng(5);
    const DeviceArrays cpu = random_arrays(sizes, offsets, DType::f64, rng, -2, 2);
    DeviceArrays gpu = cpu;
    for (Tensor& t : gpu.storage) t = raw_to_device(raw_to_dtype(t, dt), kCUDA);
    DeviceArrays cpu_rounded = cpu;  // the CPU reference sees the values the GPU holds
    for (Tensor& t : cpu_rounded.storage) t = raw_to_dtype(raw_to_dtype(t, dt), DType::f64);
    std::vector<kernels::ConstArray> list;
    for (size_t i = 0; i < sizes.size(); ++i) list.push_back({gpu.at(i), sizes[i]});
    for (double p : {1.0, 2.0, 3.0, std::numeric_limits<double>::infinity()}) {
      std::vector<double> out(sizes.size(), -1.0);
      const kernels::CudaActivity before = kernels::cuda_activity();
      multi(kCUDA, dt)(list.data(), static_cast<int64_t>(list.size()), p, out.data());
      EXPECT_EQ(kernels::cuda_activity().host_syncs - before.host_syncs, 1);
      for (size_t i = 0; i < sizes.size(); ++i) {
        const double gpu_single = single(kCUDA, dt)(gpu.at(i), sizes[i], p);
        EXPECT_EQ(std::memcmp(&out[i], &gpu_single, sizeof(double)), 0)
            << dtype_name(dt) << " p " << p << " array " << i << ": " << out[i] << " vs "
            << gpu_single;
        const double cpu_value = single(kCPU, DType::f64)(cpu_rounded.at(i), sizes[i], p);
        EXPECT_NEAR(out[i], cpu_value, 1e-12 * std::abs(cpu_value)) << "p " << p << " array " << i;
      }
    }
  }
}

TEST(CudaOptimMulti, NormPowSumMultiPropagatesNaN) {
  GRADUS_REQUIRE_CUDA();
  static const KernelRef<kernels::NormPowSumMultiFn> multi(kernels::kNormPowSumMulti);
  std::vector<double> values(100003, 0.5);
  values[70000] = std::nan("");
  const Tensor with_nan = raw_to_device(Tensor::from_vector(values, {100003}, DType::f32), kCUDA);
  const Tensor clean = raw_to_device(Tensor::ones({9}, DType::f32), kCUDA);
  const std::vector<kernels::ConstArray> list = {{clean.raw_data(), 9},
                                                 {with_nan.raw_data(), 100003}};
  for (double p : {1.0, 2.0, std::numeric_limits<double>::infinity()}) {
    double out[2] = {-1, -1};
    multi(kCUDA, DType::f32)(list.data(), 2, p, out);
    EXPECT_EQ(out[0], p == 2.0 || p == 1.0 ? 9.0 : 1.0) << p;
    EXPECT_TRUE(std::isnan(out[1])) << p;
  }
}

TEST(CudaOptimMulti, ScaleInplaceMultiMatchesScaleInplace) {
  GRADUS_REQUIRE_CUDA();
  static const KernelRef<kernels::ScaleInplaceFn> single(kernels::kScaleInplace);
  static const KernelRef<kernels::ScaleInplaceMultiFn> multi(kernels::kScaleInplaceMulti);
  for (DType dt : {DType::f32, DType::f64, DType::bf16}) {
    std::vector<int64_t> sizes, offsets;
    list_of_sizes(sizes, offsets);
    std::mt19937_64 rng(8);
    DeviceArrays a = random_arrays(sizes, offsets, DType::f64, rng, -3, 3);
    for (Tensor& t : a.storage) t = raw_to_device(raw_to_dtype(t, dt), kCUDA);
    DeviceArrays b = a;
    for (Tensor& t : b.storage) t = raw_clone(t);
    std::vector<kernels::MutableArray> list;
    for (size_t i = 0; i < sizes.size(); ++i) {
      list.push_back({a.at(i), sizes[i]});
      single(kCUDA, dt)(b.at(i), sizes[i], 0.37);
    }
    multi(kCUDA, dt)(list.data(), static_cast<int64_t>(list.size()), 0.37);
    for (size_t i = 0; i < sizes.size(); ++i)
      EXPECT_TRUE(same_bits(a, b, i)) << dtype_name(dt) << " array " << i;
  }
}

}  // namespace
}  // namespace gradus
