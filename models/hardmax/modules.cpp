#include "models/hardmax/modules.h"

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/hardmax.h"
#include "autodiff/ops/matmul.h"
#include "autodiff/ops/view.h"
#include "core/error.h"

namespace gradus::hardmax {

HatFeedForward::HatFeedForward(int64_t d, int64_t width, DType dtype) {
  in_weight = register_parameter("in_weight", Tensor::zeros({width, d}, dtype));
  in_bias = register_parameter("in_bias", Tensor::zeros({width}, dtype));
  out_weight = register_parameter("out_weight", Tensor::zeros({width, d}, dtype));
}

Tensor HatFeedForward::forward(const Tensor& x) const {
  // x: (..., d) -> h: (..., width) -> x + h W: (..., d)
  return x + matmul(relu(linear(x, in_weight, in_bias)), out_weight);
}

HardmaxSelfAttention::HardmaxSelfAttention(int64_t d, Scores s, DType dtype) : scores(s) {
  GRADUS_CHECK(s != Scores::none, "HardmaxSelfAttention", "scores must be rank1 or general");
  if (s == Scores::rank1) {
    q = register_parameter("q", Tensor::zeros({d}, dtype));
    k = register_parameter("k", Tensor::zeros({d}, dtype));
  } else {
    matrix = register_parameter("matrix", Tensor::zeros({d, d}, dtype));
  }
  alpha = register_parameter("alpha", Tensor::zeros({}, dtype));
}

Tensor HardmaxSelfAttention::forward(const Tensor& x, const Tensor& lengths) const {
  return scores == Scores::rank1 ? hardmax_attention(x, q, k, alpha, lengths)
                                 : hardmax_attention_general(x, matrix, alpha, lengths);
}

HardmaxBlock::HardmaxBlock(int64_t d, int64_t ff_width, Scores scores, DType dtype) {
  if (ff_width > 0)
    ff = register_module("ff", std::make_shared<HatFeedForward>(d, ff_width, dtype));
  if (scores != Scores::none)
    sa = register_module("sa", std::make_shared<HardmaxSelfAttention>(d, scores, dtype));
}

Tensor HardmaxBlock::forward(const Tensor& x, const Tensor& lengths) const {
  Tensor y = ff ? ff->forward(x) : x;
  return sa ? sa->forward(y, lengths) : y;
}

namespace {
void fill(const Tensor& t, const std::vector<double>& v) {
  raw_copy_(t, Tensor::from_vector(v, t.shape(), t.dtype()));
}
}  // namespace

HardmaxTransformer::HardmaxTransformer(const Net& net) : d(net.d) {
  net.validate();
  const DType dt = net.dtype;
  auto list = register_module("blocks", std::make_shared<ModuleList>());
  for (size_t i = 0; i < net.blocks.size(); ++i) {
    const Block& b = net.blocks[i];
    auto blk = std::make_shared<HardmaxBlock>(net.d, b.ff.width, b.sa.scores, dt);
    if (blk->ff) {
      fill(blk->ff->in_weight, b.ff.in_weight);
      fill(blk->ff->in_bias, b.ff.in_bias);
      fill(blk->ff->out_weight, b.ff.out_weight);
    }
    if (blk->sa) {
      if (b.sa.scores == Scores::rank1) {
        fill(blk->sa->q, b.sa.q);
        fill(blk->sa->k, b.sa.k);
      } else {
        fill(blk->sa->matrix, b.sa.matrix);
      }
      fill(blk->sa->alpha, {b.sa.alpha});
    }
    blocks.push_back(list->push_back(blk));
    roles.push_back(b.role);
  }
  auto readout = register_module("readout", std::make_shared<Module>());
  e = readout->register_parameter("e", Tensor::from_vector(net.readout, {net.d}, dt));
}

Tensor HardmaxTransformer::forward(const Tensor& x, const Tensor& lengths) const {
  Tensor y = x;
  for (const auto& b : blocks) y = b->forward(y, lengths);
  return y;
}

Tensor HardmaxTransformer::readout(const Tensor& y) const {
  // y: (B, T, d) -> first token (B, d) -> (B)
  return matmul(squeeze(slice(y, 1, 0, 1), 1), e);
}

Net HardmaxTransformer::to_net() const {
  Net net;
  net.d = d;
  net.dtype = e.dtype();
  for (size_t i = 0; i < blocks.size(); ++i) {
    Block b;
    b.role = roles[i];
    const auto& blk = blocks[i];
    if (blk->ff) {
      b.ff.width = blk->ff->in_weight.size(0);
      b.ff.in_weight = blk->ff->in_weight.to_vector();
      b.ff.in_bias = blk->ff->in_bias.to_vector();
      b.ff.out_weight = blk->ff->out_weight.to_vector();
    }
    if (blk->sa) {
      b.sa.scores = blk->sa->scores;
      if (b.sa.scores == Scores::rank1) {
        b.sa.q = blk->sa->q.to_vector();
        b.sa.k = blk->sa->k.to_vector();
      } else {
        b.sa.matrix = blk->sa->matrix.to_vector();
      }
      b.sa.alpha = blk->sa->alpha.item();
    }
    net.blocks.push_back(std::move(b));
  }
  net.readout = e.to_vector();
  return net;
}

}  // namespace gradus::hardmax
