// Multi-tensor ("foreach") launches: one launch covers up to kMultiTensors arrays. Their pointers,
// lengths and block ranges travel in a struct passed by value (a kernel parameter, below 4 KB, so
// no copy and no host wait), and block b of the grid works on the array t with
// block_start[t] <= b < block_start[t + 1], as the per-array kernel's block b - block_start[t] in a
// grid of that array's own size would. Used by the optimiser kernels (optim.cu) and cast_multi
// (copy.cu).
#pragma once

#include <cstdint>
#include <vector>

namespace gradus::cuda {

constexpr int kMultiTensors = 24;

// The array of the block (block_start: (count + 1), ascending). Uniform within a block.
__device__ __forceinline__ int multi_tensor_of_block(const int* block_start, int count) {
  int t = 0;
  while (t + 1 < count && static_cast<int>(blockIdx.x) >= block_start[t + 1]) ++t;
  return t;
}

// Calls launch(batch) for consecutive runs of the `total` items, at most kMultiTensors each,
// skipping the items that have_work(i) says are empty; batch holds the items' indices.
template <class HasWork, class Launch>
void multi_tensor_batches(int64_t total, HasWork&& has_work, Launch&& launch) {
  std::vector<int64_t> batch;
  batch.reserve(kMultiTensors);
  for (int64_t i = 0; i < total; ++i) {
    if (!has_work(i)) continue;
    batch.push_back(i);
    if (static_cast<int>(batch.size()) == kMultiTensors) {
      launch(batch);
      batch.clear();
    }
  }
  if (!batch.empty()) launch(batch);
}

}  // namespace gradus::cuda
