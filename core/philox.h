// Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11): a
// counter-based generator. Output block = philox(counter, key); no state beyond (seed, offset), so the
// CPU and CUDA backends draw the same numbers for the same (seed, offset) and any element can be
// computed independently (which is what makes parallel and GPU dropout reproducible).
//
// Stream layout used throughout Gradus, for a draw of n values at generator offset `o`:
//   f32 uniform element i: block (o + i/4), lane i%4, 24 high bits  -> [0, 1)
//   f64 uniform element i: block (o + i/2), lanes 2(i%2), 2(i%2)+1, 53 bits -> [0, 1)
//   normals: Box-Muller on consecutive pairs of those uniforms (cos for even i, sin for odd i)
// and the generator advances by the number of blocks used (ceil(n/4) for f32, ceil(n/2) for f64).
#pragma once

#include <array>
#include <cstdint>

#if defined(__CUDACC__)
#define GRADUS_HD __host__ __device__ __forceinline__
#else
#define GRADUS_HD inline
#endif

namespace gradus {

struct PhiloxBlock {
  uint32_t v[4];
};

GRADUS_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  uint64_t p = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
}

// One Philox-4x32-10 evaluation. counter: 4 words, key: 2 words.
GRADUS_HD PhiloxBlock philox4x32_10(PhiloxBlock ctr, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    uint32_t lo0 = philox_mulhilo(kM0, ctr.v[0], &hi0);
    uint32_t lo1 = philox_mulhilo(kM1, ctr.v[2], &hi1);
    PhiloxBlock next;
    next.v[0] = hi1 ^ ctr.v[1] ^ k0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ k1;
    next.v[3] = lo0;
    ctr = next;
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The block for (seed, block index): key = seed, counter = (index lo, index hi, 0, 0).
GRADUS_HD PhiloxBlock philox_block(uint64_t seed, uint64_t index) {
  PhiloxBlock c{{static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u}};
  return philox4x32_10(c, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

GRADUS_HD float philox_to_unit_float(uint32_t x) {  // [0, 1), 24 bits
  return static_cast<float>(x >> 8) * (1.0f / 16777216.0f);
}
GRADUS_HD double philox_to_unit_double(uint32_t a, uint32_t b) {  // [0, 1), 53 bits
  uint64_t bits = (static_cast<uint64_t>(a) << 21) ^ (static_cast<uint64_t>(b) >> 11);
  return static_cast<double>(bits & ((1ull << 53) - 1)) * (1.0 / 9007199254740992.0);
}

// Element i of a uniform f32 stream starting at block `offset`.
GRADUS_HD float philox_uniform_f32(uint64_t seed, uint64_t offset, uint64_t i) {
  PhiloxBlock b = philox_block(seed, offset + i / 4);
  return philox_to_unit_float(b.v[i % 4]);
}
GRADUS_HD double philox_uniform_f64(uint64_t seed, uint64_t offset, uint64_t i) {
  PhiloxBlock b = philox_block(seed, offset + i / 2);
  int lane = static_cast<int>(i % 2) * 2;
  return philox_to_unit_double(b.v[lane], b.v[lane + 1]);
}

// Counter-based generator state: a seed and how many blocks have been consumed.
struct Generator {
  uint64_t seed = 0;
  uint64_t offset = 0;  // in Philox blocks
  explicit Generator(uint64_t s = 0, uint64_t o = 0) : seed(s), offset(o) {}
  // Reserves the blocks for n elements of the given per-block yield; returns the starting offset.
  uint64_t reserve(uint64_t n, uint64_t per_block) {
    uint64_t start = offset;
    offset += (n + per_block - 1) / per_block;
    return start;
  }
};

}  // namespace gradus
