// The tape: a per-thread list of plain records, one per op that produced a tensor needing gradients.
// backward() walks it in reverse, dispatching each record to its op's backward rule; gradients of
// leaves accumulate into Tensor::grad(). The records of a backward pass are freed at its end unless
// retain_graph is set. Records whose outputs nobody can reach any more are pruned as the tape grows,
// so a forward pass that is never differentiated (evaluation without no_grad) does not leak.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "autodiff/op_registry.h"
#include "core/tensor.h"

namespace gradus {

// Non-tensor arguments of an op, kept as plain data.
struct Attrs {
  std::vector<int64_t> ints;
  std::vector<double> floats;
};

struct Record {
  const OpDef* op = nullptr;
  uint64_t seq = 0;                                    // position on the tape (monotonic)
  std::vector<std::shared_ptr<AutogradMeta>> inputs;   // null where the input takes no gradient
  std::vector<Shape> input_shapes;
  std::vector<DType> input_dtypes;
  std::vector<std::weak_ptr<AutogradMeta>> outputs;
  std::vector<Shape> output_shapes;
  std::vector<Tensor> saved;                           // what the backward rule needs
  Attrs attrs;
  bool input_requires_grad(size_t i) const { return inputs[i] != nullptr; }
};

// ---- grad mode ----
bool grad_enabled();
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

// True when an op on these inputs must be recorded (grad mode on and some input requires grad).
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Every op ends here: checks outputs for NaN/Inf in debug mode, and records the op when an input
// requires gradients. `saved` and `attrs` are moved into the record only when one is made.
void finish_op(const OpDef& op, const std::vector<Tensor>& inputs,
               const std::vector<Tensor>& outputs, std::vector<Tensor> saved = {},
               Attrs attrs = {});

// ---- backward ----
// Differentiates `root` (a scalar unless `grad` is given) with respect to every leaf that requires
// gradients and accumulates into their grad(). With retain_graph the records stay for another pass.
void backward(const Tensor& root, const Tensor& grad = Tensor(), bool retain_graph = false);

// Non-leaf tensors normally keep no gradient; this makes backward store it in grad().
void retain_grad(const Tensor& t);

// ---- tape inspection ----
size_t tape_size();       // records currently held by this thread's tape
void clear_tape();        // drops every record (graphs built so far can no longer be differentiated)

// ---- NaN/Inf debug mode (also enabled by GRADUS_DEBUG_NAN=1 in the environment) ----
// When on, the first op whose output (or, in backward, whose input gradient) holds a NaN or Inf
// throws gradus::Error naming the op, the shapes and the tape position.
void set_detect_anomaly(bool on);
bool detect_anomaly();

}  // namespace gradus
