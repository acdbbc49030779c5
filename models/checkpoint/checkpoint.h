// Checkpoints of the language model, in safetensors (models/io/safetensors.h), laid out as Hugging
// Face writes a LlamaForCausalLM, so that a PyTorch model with the same configuration loads the
// weights as they are, and with everything a bit-exact resume of training needs.
//
// Model checkpoint (save_model):
//   tensors   model.named_parameters() under their Hugging Face Llama names
//             (model.embed_tokens.weight, model.layers.{i}.self_attn.q_proj.weight, ...,
//             lm_head.weight), in the parameter's dtype, Linear weights (out, in) as
//             torch.nn.Linear holds them. With tie_word_embeddings the head is the embedding table
//             and lm_head.weight is NOT written, as transformers' save_pretrained omits tied
//             weights; a loader (Gradus, transformers, scripts/gradus_torch.py) re-ties the head.
//   metadata  ModelConfig::to_map() (the LlamaConfig keys vocab_size, hidden_size,
//             intermediate_size, num_hidden_layers, num_attention_heads, rms_norm_eps, rope_theta,
//             max_position_embeddings, tie_word_embeddings, attention_dropout, and Gradus's
//             attention_kind), "format": "pt" (what transformers writes and checks), and
//             "gradus_checkpoint": "model"; plus the caller's extra entries.
//
// Training state (save_training_state): ONE file that is also a model checkpoint (the tensors and
// metadata above, "gradus_checkpoint": "training_state") plus
//   optimizer.<name>         every tensor of Optimizer::state_tensors() (optimizer.step_count,
//                            optimizer.group<g>.param<p>.step, .exp_avg, ...), as stored
//   training.step            () i64: the caller's step counter
//   training.model_rng       (2,) i64: the model's dropout generator (seed, offset), the u64 bits
//   training.rng.<name>      (2,) i64: each generator of TrainingState::generators (e.g. "data")
// and the metadata entries
//   gradus_optimizer         Optimizer::name() ("AdamW", ...)
//   gradus_optimizer_groups  JSON: per parameter group its name, lr, weight_decay (exact: 17
//                            significant digits) and the model names of its parameters
// Loading restores the weights, the optimiser state, lr and weight_decay of every group (as
// torch.optim.Optimizer.load_state_dict does), and the generators; training then continues bit for
// bit as if it had never stopped.
//
// Every check is made before anything is modified, so a failed load leaves the model and the
// optimiser as they were. Every error is a gradus::Error naming the file and, where there is one,
// the tensor.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"
#include "models/nn/config.h"
#include "models/nn/lm.h"
#include "models/nn/module.h"
#include "models/optim/optimizer.h"

namespace gradus {

// ---------------------------------------------------------------------------------- model weights

// Writes the model's weights and configuration to `path`, atomically (a crash leaves any previous
// file intact). `extra_metadata` entries are added to the header's __metadata__; a key that the
// checkpoint itself uses (a config key, "format", "gradus_*") is an error.
void save_model(const std::string& path, const DecoderLM& model,
                const std::map<std::string, std::string>& extra_metadata = {});

// The configuration in the checkpoint's metadata. The LlamaConfig keys vocab_size, hidden_size,
// intermediate_size, num_hidden_layers, num_attention_heads, rms_norm_eps, rope_theta,
// max_position_embeddings and tie_word_embeddings must be present (an error lists the missing
// ones); attention_dropout and attention_kind default to ModelConfig's defaults; other keys are
// ignored.
ModelConfig read_model_config(const std::string& path);

// A new model built from the checkpoint's configuration, holding its weights, in the checkpoint's
// dtype (the dtype of its tensors, which must all agree), in eval mode (as transformers'
// from_pretrained returns it). Works on a training-state file too (the training tensors are
// skipped).
std::shared_ptr<DecoderLM> load_model(const std::string& path);

// Copies the checkpoint's weights into `model` (its parameters keep their identity, so an optimiser
// holding them sees the new values). Checks, and reports all at once in one error naming the file:
// parameters missing from the file, tensors in the file that the model does not have, shape and
// dtype mismatches, and configuration keys of the metadata that describe a different architecture
// (vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// rms_norm_eps, rope_theta, tie_word_embeddings, attention_kind; attention_dropout and
// max_position_embeddings may differ, as they do not change what the weights compute). A tied model
// accepts a file that also holds lm_head.weight when it equals model.embed_tokens.weight bit for
// bit.
void load_into(const std::string& path, DecoderLM& model);

// The name/shape/dtype-checked copy behind load_into, for tensors already in memory (a fixture
// that holds other tensors too passes only the weights). `source` names them in messages. Names
// are those of module.named_parameters(); a name under which a tied parameter is registered a
// second time (module.named_parameters(false)) is accepted when it holds the same bits.
void load_parameters(Module& module, const std::vector<std::pair<std::string, Tensor>>& tensors,
                     const std::string& source);

// ---------------------------------------------------------------------------------- training state

struct TrainingState {
  int64_t step = 0;  // the caller's step counter (optimizer steps completed, say)
  // Generators the training loop draws from, by name ([A-Za-z0-9_-]+), e.g. {"data", batches}.
  // The model's dropout generator (model.rng()) is saved and restored on its own.
  std::map<std::string, Generator> generators;
  // Extra strings kept in the file's metadata (the run's name, its descriptor, ...). Keys the
  // checkpoint uses itself are refused, as for save_model.
  std::map<std::string, std::string> metadata;
};

// Writes the model, the optimiser's state, state.step, the model's dropout generator and
// state.generators to one file, atomically. Every optimiser parameter must be a parameter of
// `model` (its name is recorded).
void save_training_state(const std::string& path, const DecoderLM& model,
                         const Optimizer& optimizer, const TrainingState& state);

// Restores what save_training_state wrote into a model and an optimiser built as the saved ones
// were (same configuration, same optimiser kind, same parameter groups in the same order: each is
// checked, by name). Sets the model's dropout generator and returns the step, the generators and
// the extra metadata.
TrainingState load_training_state(const std::string& path, DecoderLM& model, Optimizer& optimizer);

}  // namespace gradus
