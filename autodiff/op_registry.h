// The op registry: one OpDef per differentiable (or not) operation, registered by the file that
// implements it (autodiff/ops/<family>.cpp). `gradus ops` prints this table; the test suite checks that
// every differentiable op names a gradcheck test that exists.
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace gradus {

struct Record;

// Computes the gradient of each input from the gradients of the outputs. grad_outputs[k] is undefined
// when output k received no gradient; leave grad_inputs[i] undefined for inputs that take none. A
// gradient may have the input's shape or the broadcast shape it was expanded to: the engine reduces
// it back (autodiff/engine.cpp, the one place that does).
using BackwardFn = void (*)(const Record& record, const std::vector<Tensor>& grad_outputs,
                            std::vector<Tensor>& grad_inputs);

struct OpDef {
  std::string name;                           // "softmax"
  std::string family;                         // file family: autodiff/ops/<family>.cpp
  BackwardFn backward = nullptr;              // nullptr: not differentiable
  std::vector<std::string> forward_kernels;   // kernels the forward needs (for the support table)
  std::vector<std::string> backward_kernels;  // kernels the backward needs
  std::string gradcheck;                      // GoogleTest full name, e.g. "Gradcheck.softmax"
  bool differentiable() const { return backward != nullptr; }
};

// Registers an op; returns a reference that stays valid for the program's life.
const OpDef& register_op(OpDef def);
const OpDef* find_op(const std::string& name);
std::vector<const OpDef*> all_ops();  // sorted by name

// True when every kernel the op lists (forward, or backward) exists for (device, dtype).
bool op_supports_forward(const OpDef& op, DeviceType device, DType dtype);
bool op_supports_backward(const OpDef& op, DeviceType device, DType dtype);

}  // namespace gradus
