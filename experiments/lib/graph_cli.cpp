// `gradus graph-adapters`: the trainable parameters of Sparse-GIN on a frozen decoder and the LoRA
// rank that matches them (models/graph, docs/graph_attention.md), without building the model.
#include <cmath>
#include <iostream>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/commands.h"
#include "experiments/lib/graph_finetune.h"
#include "models/graph/lora.h"
#include "models/graph/sparse_gin.h"

namespace gradus::experiments {
namespace {

std::vector<std::string> split_commas(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string part; std::getline(ss, part, ',');) out.push_back(part);
  return out;
}

// An integer >= minimum (1 for counts, 0 for a seed); `command` names the command in the error.
int64_t parse_integer(const char* command, const std::string& option, const std::string& text,
                      int64_t minimum) {
  size_t used = 0;
  int64_t v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  GRADUS_CHECK(used == text.size() && !text.empty() && v >= minimum, command,
               "{} expects {} integer, found \"{}\"", option,
               minimum >= 1 ? "a positive" : "a non-negative", text);
  return v;
}

int64_t parse_count(const std::string& option, const std::string& text) {
  return parse_integer("graph-adapters", option, text, 1);
}

// Parameters of a plain decoder (Llama layout, no biases).
int64_t decoder_parameters(const ModelConfig& c) {
  const int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  return V * C + c.num_hidden_layers * (4 * C * C + 3 * C * F + 2 * C) + C +
         (c.tie_word_embeddings ? 0 : V * C);
}

int graph_adapters(const std::vector<std::string>& args) {
  std::string preset = "small";
  graph::SparseGinOptions gin;
  std::vector<std::string> targets = graph::LoraOptions().targets;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      GRADUS_CHECK(i + 1 < args.size(), "graph-adapters", "{} expects a value", a);
      return args[++i];
    };
    if (a == "--preset") {
      preset = value();
    } else if (a == "--rank") {
      gin.rank = parse_count(a, value());
    } else if (a == "--targets") {
      targets = split_commas(value());
    } else if (a == "--fixed-gate") {
      gin.trainable_gate = false;
    } else {
      GRADUS_FAIL("graph-adapters",
                  "unknown option \"{}\" (expected --preset small|medium, --rank R, --targets "
                  "q_proj,k_proj,..., --fixed-gate)",
                  a);
    }
  }
  const ModelConfig c = ModelConfig::preset(preset);
  graph::check_lora_targets(targets);
  const int64_t base = decoder_parameters(c);
  const int64_t per_layer = graph::sparse_gin_layer_parameters(c.hidden_size, gin);
  const int64_t sparse = per_layer * c.num_hidden_layers;
  const int64_t rank = graph::lora_rank_matching(c, targets, sparse);
  const int64_t lora = graph::lora_parameter_count(c, targets, rank);
  std::cout << fmt::format("base ({}): {} parameters, frozen\n", preset, base);
  std::cout << fmt::format(
      "Sparse-GIN rank {}: {} layers x {} = {} trainable ({:.3f}% of the base; gate {})\n",
      gin.rank, c.num_hidden_layers, per_layer, sparse,
      100.0 * static_cast<double>(sparse) / static_cast<double>(base),
      gin.trainable_gate ? "trainable" : "fixed");
  std::cout << fmt::format(
      "LoRA rank {} on {}: {} trainable ({:+.1f}% against Sparse-GIN)\n", rank,
      fmt::join(targets, ","), lora,
      100.0 * static_cast<double>(lora - sparse) / static_cast<double>(sparse));
  return 0;
}

double parse_number(const std::string& option, const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  GRADUS_CHECK(used == text.size() && !text.empty() && std::isfinite(v), "graph-finetune",
               "{} expects a number, found \"{}\"", option, text);
  return v;
}

int graph_finetune(const std::vector<std::string>& args) {
  GraphFinetuneOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> std::string {
      GRADUS_CHECK(i + 1 < args.size(), "graph-finetune", "{} expects a value", a);
      return args[++i];
    };
    if (a == "--base")
      o.base = value();
    else if (a == "--corpus")
      o.corpus = value();
    else if (a == "--adapter")
      o.adapter = value();
    else if (a == "--rank")
      o.sparse_gin.rank = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--lora-rank")
      o.lora_rank = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--lora-targets")
      o.lora.targets = split_commas(value());
    else if (a == "--lora-alpha")
      o.lora.alpha = parse_number(a, value());
    else if (a == "--graph")
      o.sparse_gin.graph = value();
    else if (a == "--adjacency")
      o.sparse_gin.adjacency = value();
    else if (a == "--threshold")
      o.sparse_gin.threshold = parse_number(a, value());
    else if (a == "--fixed-gate")
      o.sparse_gin.trainable_gate = false;
    else if (a == "--steps")
      o.steps = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--batch")
      o.batch_size = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--context")
      o.context = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--lr")
      o.lr = parse_number(a, value());
    else if (a == "--warmup")
      o.warmup_steps = parse_integer("graph-finetune", a, value(), 0);
    else if (a == "--eval-every")
      o.eval_every = parse_integer("graph-finetune", a, value(), 1);
    else if (a == "--eval-batches")
      o.eval_batches = parse_integer("graph-finetune", a, value(), 0);
    else if (a == "--seed")
      o.seed = static_cast<uint64_t>(parse_integer("graph-finetune", a, value(), 0));
    else if (a == "--out")
      o.out = value();
    else
      GRADUS_FAIL("graph-finetune", "unknown option \"{}\" (see gradus help)", a);
  }
  nlohmann::json r = run_graph_finetune(o, std::cout);
  std::cout << fmt::format("final val loss {:.4f} (ppl {:.3f}), {} trainable\n",
                           r["evals"].back()["val_loss"].get<double>(),
                           r["evals"].back()["val_ppl"].get<double>(),
                           r["trainable"].get<int64_t>());
  return 0;
}

const bool kFinetune = register_command(
    {"graph-finetune",
     "graph-finetune --base CHECKPOINT --corpus NAME|FILE [--adapter sparse_gin|lora] [options]\n"
     "  Fine-tunes a frozen \"std\" model (a gradus run checkpoint) with Sparse-GIN (--rank R,\n"
     "  --graph intended|as_released|identity, --adjacency threshold|sigmoid, --threshold T,\n"
     "  --fixed-gate) or LoRA (--lora-rank R, default the rank matching Sparse-GIN's count;\n"
     "  --lora-targets, --lora-alpha); --steps, --batch, --context, --lr (2e-4), --warmup,\n"
     "  --eval-every, --eval-batches, --seed, --out RESULT.json (docs/graph_attention.md).",
     graph_finetune});

const bool kRegistered = register_command(
    {"graph-adapters",
     "graph-adapters [--preset small|medium] [--rank R] [--targets q_proj,...] [--fixed-gate]\n"
     "  Trainable parameters of Sparse-GIN (bottleneck rank R, default 16) on a frozen decoder\n"
     "  of the preset, and the LoRA rank on the targets (default all of q, k, v, o, gate, up,\n"
     "  down) whose count is closest (docs/graph_attention.md).",
     graph_adapters});

}  // namespace
}  // namespace gradus::experiments
