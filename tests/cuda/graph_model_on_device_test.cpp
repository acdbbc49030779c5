// Graph-aware language models on the GPU: tiny DecoderLMs with attention kinds "gin" and "pna"
// (models/graph) give the CPU's loss and the CPU's gradient of every parameter, so they train on
// the GPU as they do on the CPU. f64, so that no argmax of PNA's max / min aggregators or top-k
// selection can flip between the backends over rounding (the products differ in their last bits:
// cuBLAS sums in another order); GRADUS_PARITY_ON_CPU=1 runs the comparison with the CPU standing
// in for the GPU.
#include "autodiff/tape.h"
#include "core/random.h"
#include "models/nn/lm.h"
#include "support/cuda_parity.h"

namespace gradus {
namespace {

using testing::all_close;
using testing::Tolerance;

struct GraphCase {
  const char* name;
  void (*configure)(ModelConfig&);
};

ModelConfig tiny_graph_config(const GraphCase& gc) {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.max_position_embeddings = 8;
  c.attention_dropout = 0.0;
  c.gin_mlp_dropout = 0.0;  // no dropout: the two runs see one function
  gc.configure(c);
  return c;
}

const GraphCase kCases[] = {
    {"gin, top-k adjacency",
     [](ModelConfig& c) {
       c.attention_kind = "gin";
       c.gin_threshold_mode = "topk";
       c.graph_topk_fraction = 0.5;
     }},
    {"gin, binary adjacency",
     [](ModelConfig& c) {
       c.attention_kind = "gin";
       c.gin_threshold_mode = "binary";
       c.graph_threshold = 0.1;
     }},
    {"pna, every aggregator and scaler",
     [](ModelConfig& c) {
       c.attention_kind = "pna";
       c.pna_aggregators = "sum,mean,max,min,var,std";
       c.pna_scalers = "identity,amplification,attenuation";
     }},
};

TEST(GraphModelOnDevice, GinAndPnaGiveTheCpuLossAndGradients) {
  GRADUS_REQUIRE_PARITY_DEVICE();
  const Device device = testing::parity_device();
  const Tensor ids =
      Tensor::from_vector({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5}, {2, 8}, DType::i64);
  const Tensor targets =
      Tensor::from_vector({2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, 6}, {2, 8}, DType::i64);
  // f64 on both sides: the backends' products differ by a few ulps, compounded over two layers.
  const Tolerance tol{1e-9, 1e-11};
  for (const GraphCase& gc : kCases) {
    SCOPED_TRACE(gc.name);
    const ModelConfig c = tiny_graph_config(gc);
    Generator init_cpu(21), init_dev(21);
    DecoderLM cpu(c, init_cpu), dev(c, init_dev);
    cpu.to(DType::f64);
    dev.to(DType::f64);
    dev.to(device);

    const Tensor loss_cpu = cpu.loss(ids, targets);
    const Tensor loss_dev = dev.loss(raw_to_device(ids, device), raw_to_device(targets, device));
    EXPECT_EQ(loss_dev.device(), device);
    EXPECT_TRUE(all_close(loss_dev, loss_cpu, tol)) << "loss";
    backward(loss_cpu);
    backward(loss_dev);

    const auto a = cpu.named_parameters(), b = dev.named_parameters();
    ASSERT_EQ(a.size(), b.size());
    int with_gradient = 0;
    for (size_t i = 0; i < a.size(); ++i) {
      SCOPED_TRACE(a[i].first);
      const Tensor gc_cpu = a[i].second.grad(), gc_dev = b[i].second.grad();
      ASSERT_EQ(gc_dev.defined(), gc_cpu.defined());
      if (!gc_cpu.defined()) continue;
      ++with_gradient;
      EXPECT_EQ(gc_dev.device(), device);
      EXPECT_TRUE(all_close(gc_dev, gc_cpu, tol)) << "gradient";
    }
    EXPECT_GT(with_gradient, 10);
  }
}

}  // namespace
}  // namespace gradus
