// Inverted dropout driven by a Philox Generator (see kernels/dropout.h for the keep rule).
#pragma once

#include "core/philox.h"
#include "core/tensor.h"

namespace gradus {

// x: (...) -> (...): each element kept with probability 1 - p and scaled by 1 / (1 - p), zeroed
// otherwise. p must be in [0, 1). With p == 0 or !training this is the identity and returns x
// itself (gen is not advanced). Otherwise reserves ceil(numel / 4) Philox blocks from gen; the mask
// is a function of (gen.seed, starting offset) alone, so the same generator state gives the same
// mask. The backward does not store the mask: it re-draws it from the (seed, offset) saved in the
// record.
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);

}  // namespace gradus
