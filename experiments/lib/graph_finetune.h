// Fine-tuning a frozen pretrained decoder with adapters (models/graph/adapted_lm.h): LoRA or
// Sparse-GIN on a corpus, evaluated on its validation split every few steps. The pieces of the
// spec's fine-tuning comparison (docs/graph_attention.md); `gradus graph-finetune` runs one
// configuration and prints (and optionally writes) what the tables need: validation loss and
// perplexity per evaluation, the gates lambda per layer, the graph's edge density.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>

#include "models/graph/adapted_lm.h"

namespace gradus::experiments {

struct GraphFinetuneOptions {
  std::string base;                    // checkpoint.safetensors of a "std" DecoderLM (gradus run)
  std::string corpus;                  // a corpus name or a text file (as data.corpus)
  std::string project_root;            // "" = find_project_root()
  std::string adapter = "sparse_gin";  // "lora" | "sparse_gin"
  graph::SparseGinOptions sparse_gin;
  graph::LoraOptions lora;
  int64_t lora_rank = 0;  // 0: the rank matching Sparse-GIN's count at sparse_gin.rank
  double val_fraction = 0.1;
  int64_t context = 0;  // 0: the base's max_position_embeddings
  int64_t batch_size = 16;
  int64_t steps = 200;
  double lr = 2e-4;  // the paper's fine-tuning rate; constant after a linear warm-up
  int64_t warmup_steps = 0;
  double weight_decay = 0.0;
  double clip_grad_norm = 1.0;
  int64_t eval_every = 50;
  int64_t eval_batches = 0;  // 0: the whole validation split
  uint64_t seed = 0;
  std::string out;  // a JSON file for the result (written atomically); "" = none
};

// Runs the fine-tuning; returns {"adapter", "trainable", "frozen", "evals": [{"step",
// "val_loss", "val_ppl", "gates", "density"}], ...} and logs one line per evaluation.
nlohmann::json run_graph_finetune(const GraphFinetuneOptions& options, std::ostream& log);

}  // namespace gradus::experiments
