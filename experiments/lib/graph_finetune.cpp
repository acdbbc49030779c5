#include "experiments/lib/graph_finetune.h"

#include <cmath>
#include <ostream>

#include "autodiff/tape.h"
#include "core/error.h"
#include "experiments/lib/run_dir.h"
#include "models/checkpoint/checkpoint.h"
#include "models/data/text_dataset.h"
#include "models/io/atomic_file.h"
#include "models/optim/adam.h"
#include "models/optim/clip.h"

namespace gradus::experiments {

namespace {

// Mean next-token loss over the validation windows (at most max_batches batches; 0: all).
double validation_loss(graph::AdaptedLM& lm, SequentialWindows windows, int64_t max_batches) {
  NoGradGuard no_grad;
  lm.eval();
  double total = 0;
  int64_t tokens = 0, batches = 0;
  TokenBatch b;
  while ((max_batches == 0 || batches < max_batches) && windows.next(b)) {
    const int64_t n = b.targets.numel();
    total += lm.loss(b.inputs, b.targets).item() * static_cast<double>(n);
    tokens += n;
    ++batches;
  }
  lm.train();
  return tokens > 0 ? total / static_cast<double>(tokens) : NAN;
}

}  // namespace

nlohmann::json run_graph_finetune(const GraphFinetuneOptions& o, std::ostream& log) {
  constexpr const char* kWhere = "graph-finetune";
  GRADUS_CHECK(!o.base.empty(), kWhere, "--base CHECKPOINT is required");
  GRADUS_CHECK(!o.corpus.empty(), kWhere, "--corpus NAME|FILE is required");
  GRADUS_CHECK(o.adapter == "lora" || o.adapter == "sparse_gin", kWhere,
               "--adapter must be lora or sparse_gin, found \"{}\"", o.adapter);
  GRADUS_CHECK(o.steps >= 1 && o.batch_size >= 1 && o.eval_every >= 1 && o.lr > 0, kWhere,
               "steps, batch size, eval interval and lr must be positive");
  o.sparse_gin.validate();
  std::shared_ptr<DecoderLM> base = load_model(o.base);
  const ModelConfig& c = base->config();
  const int64_t T = o.context > 0 ? o.context : c.max_position_embeddings;
  GRADUS_CHECK(T <= c.max_position_embeddings, kWhere,
               "--context {} exceeds the base's max_position_embeddings ({})", T,
               c.max_position_embeddings);
  TextDataset ds = TextDataset::from_file(resolve_corpus(o.corpus, o.project_root), o.val_fraction);

  graph::AdapterOptions adapters;
  int64_t lora_rank = 0;
  const int64_t gin_count =
      graph::sparse_gin_layer_parameters(c.hidden_size, o.sparse_gin) * c.num_hidden_layers;
  if (o.adapter == "lora") {
    graph::LoraOptions lo = o.lora;
    lo.rank = o.lora_rank > 0 ? o.lora_rank : graph::lora_rank_matching(c, lo.targets, gin_count);
    lora_rank = lo.rank;
    adapters.lora = lo;
  } else {
    adapters.sparse_gin = o.sparse_gin;
  }
  Generator init(o.seed);
  graph::AdaptedLM lm(base, adapters, init);
  std::vector<ParamGroup> groups = {{lm.parameters(), o.lr, o.weight_decay, "adapters"}};
  AdamW opt(groups, AdamOptions{});
  Generator data(o.seed + 1);
  log << fmt::format("{}: {}\n", o.adapter, lm.parameter_report());

  nlohmann::json result = {{"adapter", o.adapter},
                           {"base", o.base},
                           {"corpus", o.corpus},
                           {"trainable", lm.num_parameters()},
                           {"frozen", base->num_parameters()},
                           {"sparse_gin_count_at_rank", gin_count},
                           {"steps", o.steps},
                           {"batch_size", o.batch_size},
                           {"context", T},
                           {"lr", o.lr},
                           {"seed", o.seed}};
  if (o.adapter == "lora") {
    result["lora_rank"] = lora_rank;
    result["lora_targets"] = adapters.lora->targets;
  } else {
    result["sparse_gin"] = {{"rank", o.sparse_gin.rank},
                            {"adjacency", o.sparse_gin.adjacency},
                            {"threshold", o.sparse_gin.threshold},
                            {"graph", o.sparse_gin.graph},
                            {"trainable_gate", o.sparse_gin.trainable_gate}};
  }
  nlohmann::json evals = nlohmann::json::array();
  auto evaluate = [&](int64_t step, double train_loss) {
    const double v =
        validation_loss(lm, ds.windows(Split::validation, o.batch_size, T), o.eval_batches);
    // The density of the graph on one training batch (the last forward's), per layer.
    nlohmann::json e = {{"step", step},
                        {"val_loss", v},
                        {"val_ppl", std::exp(v)},
                        {"gates", lm.gates()},
                        {"density", lm.last_densities()}};
    if (!std::isnan(train_loss)) e["train_loss"] = train_loss;
    evals.push_back(e);
    log << fmt::format("step {:>5}  val loss {:.4f}  ppl {:.3f}{}\n", step, v, std::exp(v),
                       lm.gates().empty()
                           ? std::string()
                           : fmt::format("  lambda [{:.3f}]", fmt::join(lm.gates(), ", ")));
  };
  evaluate(0, NAN);
  lm.train();
  for (int64_t s = 1; s <= o.steps; ++s) {
    const double lr = o.warmup_steps > 0 && s <= o.warmup_steps
                          ? o.lr * static_cast<double>(s) / static_cast<double>(o.warmup_steps)
                          : o.lr;
    opt.param_groups()[0].lr = lr;
    TokenBatch b = ds.sample(Split::train, o.batch_size, T, data);
    opt.zero_grad();
    Tensor loss = lm.loss(b.inputs, b.targets);
    backward(loss);
    if (o.clip_grad_norm > 0) clip_grad_norm(lm.parameters(), o.clip_grad_norm);
    opt.step();
    if (s % o.eval_every == 0 || s == o.steps) evaluate(s, loss.item());
  }
  result["evals"] = evals;
  if (!o.out.empty()) write_text_atomic(o.out, result.dump(2) + "\n");
  return result;
}

}  // namespace gradus::experiments
