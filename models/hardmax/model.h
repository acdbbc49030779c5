// A hardmax transformer as plain data: the blocks that the constructive builder
// (models/hardmax/builder.h) produces, the evaluator (models/hardmax/forward.h) runs and the
// checkpoint format stores. The tape version for training is models/hardmax/modules.h.
//
// Block = FF then SA (no positional encoding: the model is permutation equivariant).
//   FF(x) = x + sum_r w_r * max(0, a_r . x + b_r)           token-wise, width h (h = 0: identity)
//   SA(X)_i = (1 - alpha) x_i + alpha * mean_{j in C_i} x_j  (alpha = 0 or no scores: identity)
//     rank-1 scores (q, k):  C_i = argmax_j (q . x_i)(k . x_j): the k-maximal tokens when
//                            q . x_i > 0, the k-minimal ones when q . x_i < 0, all when it is 0
//     general scores (A):    C_i = argmax_j x_i . (A x_j)
//   Ties are averaged (the tau -> 0 limit of softmax attention).
// Readout: the class of a sequence is round(e . T(X)_0) (after the construction every token of a
// sequence is the code point of its class, whose e-coordinate is the label).
//
// Arithmetic (one order for every token, so that copies of a point stay bitwise equal and the
// builder, the evaluator and a reloaded checkpoint agree to the last bit):
//   dot(a, x)   = ((0 + a_0 x_0) + a_1 x_1) + ... + a_{d-1} x_{d-1}, each product rounded
//   unit r      = z > 0 ? z : 0 with z = dot(a_r, x) + b_r; units with value 0 are skipped, the
//                 others added in order r = 0, 1, ...: y_c = y_c + w_r[c] * h_r
//   mean over C = x_{j0} + (sum over j in C, in index order, of (x_j - x_{j0})) / |C|, j0 = min C
//                 (copies of one point give exactly that point)
//   update      = (1 - alpha) * x + alpha * mean, with (1 - alpha) rounded first (alpha = 1 gives
//                 exactly the mean)
// Every parameter is stored exactly in the model's dtype (f64 or f32) and the arithmetic runs in
// that dtype.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/dtype.h"

namespace gradus::hardmax {

enum class Scores : int64_t { none = 0, rank1 = 1, general = 2 };
const char* scores_name(Scores s);

struct FeedForward {
  int64_t width = 0;
  std::vector<double> in_weight;   // (width, d): a_r
  std::vector<double> in_bias;     // (width): b_r
  std::vector<double> out_weight;  // (width, d): w_r, the vector unit r adds
  int64_t num_parameters(int64_t d) const { return width * (2 * d + 1); }
};

struct SelfAttention {
  Scores scores = Scores::none;
  std::vector<double> q, k;    // (d) each, rank-1 scores
  std::vector<double> matrix;  // (d, d) row-major, general scores x_i . (A x_j)
  double alpha = 0.0;
  int64_t num_parameters(int64_t d) const {
    return scores == Scores::rank1 ? 2 * d + 1 : scores == Scores::general ? d * d + 1 : 0;
  }
};

// What a block does in the construction (for reports; the arithmetic ignores it).
enum class BlockRole : int64_t { other = 0, shift = 1, split = 2, collapse = 3, label = 4 };
const char* role_name(BlockRole r);

struct Block {
  FeedForward ff;
  SelfAttention sa;
  BlockRole role = BlockRole::other;
};

struct Net {
  int64_t d = 0;
  DType dtype = DType::f64;  // f64 or f32: every parameter is exact in it
  std::vector<Block> blocks;
  std::vector<double> readout;              // (d): e
  std::map<std::string, std::string> info;  // build summary, saved as checkpoint metadata

  int64_t num_blocks() const { return static_cast<int64_t>(blocks.size()); }
  // Parameters of the blocks (FF and SA as counted in the spec; the readout's d are extra).
  int64_t num_parameters() const;
  // Throws naming the block and field when a size is inconsistent or a value is not finite or not
  // exact in `dtype`.
  void validate() const;
  // Rounds every parameter to `dtype` (values already exact stay bitwise the same).
  void round_to(DType dtype);
};

// Saves as safetensors (atomically), every block packed into a few tensors in the net's dtype:
//   ff.offsets (L + 1) i64       units of block b are rows [offsets[b], offsets[b + 1])
//   ff.in_weight (U, d), ff.in_bias (U), ff.out_weight (U, d)
//   sa.scores (L) i64 (0 none, 1 rank-1, 2 general), sa.alpha (L), sa.q (L, d), sa.k (L, d)
//   sa.matrix (G, d, d) with sa.matrix_index (L) i64 (-1: none)
//   block.role (L) i64, readout.e (d)
// and metadata {"format": "gradus-hardmax", "version": "1", "d", "dtype", "blocks", ...info}.
void save_net(const Net& net, const std::string& path);
// Loads and validates; errors name the file and the tensor.
Net load_net(const std::string& path);

}  // namespace gradus::hardmax
