// Module: the base of every neural building block. A module owns named parameters and named
// submodules; names compose with dots ("model.layers.0.self_attn.q_proj.weight"), in registration
// order, as torch.nn.Module's named_parameters() does. No forward signature is imposed here: each
// module declares its own forward (an interface such as AttentionKind may fix one for its family).
//
// Parameters are leaf tensors that require gradients. Modules keep handles to them (a Tensor is a
// shared handle), so code that holds a parameter (an optimiser, a checkpoint loader copying data
// in) sees the module's tensor itself. A tensor registered twice (a tied weight) is one parameter:
// parameters() and named_parameters() list it once, under its first name, as PyTorch does.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/philox.h"
#include "core/tensor.h"

namespace gradus {

class Module {
 public:
  Module();
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration (names: non-empty, no '.', unique among this module's parameters and
  // submodules; a violation throws naming the name) ----
  // t must be a defined floating-point leaf; it is marked as requiring gradients. Returns t.
  Tensor register_parameter(const std::string& name, Tensor t);
  // The child takes this module's training mode and dropout generator. Returns the child.
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> child) {
    add_child(name, child);
    return child;
  }

  // ---- parameters ----
  // Every parameter of this module and its submodules, depth first in registration order (own
  // parameters before the submodules'). With remove_duplicate a tensor reached twice is listed
  // once.
  std::vector<Tensor> parameters(bool remove_duplicate = true) const;
  std::vector<std::pair<std::string, Tensor>> named_parameters(bool remove_duplicate = true) const;
  // The parameter with this dotted name; throws naming the closest existing names otherwise.
  Tensor parameter(const std::string& dotted_name) const;
  // Number of scalars in the distinct parameters (a tied weight counts once).
  int64_t num_parameters() const;
  // Drops every parameter's gradient (PyTorch's zero_grad(set_to_none=True)).
  void zero_grad();
  void set_requires_grad(bool requires_grad);

  // ---- submodules ----
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& named_children() const {
    return children_;
  }
  // This module ("") and every descendant, with dotted paths, depth first (pointers valid while
  // this module lives).
  std::vector<std::pair<std::string, const Module*>> named_modules() const;
  // The descendant at a dotted path ("model.layers.1"); throws when there is none.
  std::shared_ptr<Module> submodule(const std::string& dotted_path) const;

  // ---- mode ----
  // Sets the mode of this module and every descendant (dropout is active only while training).
  // Modules start in training mode, as in PyTorch.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- conversion ----
  // Converts every parameter in place to `dtype` / onto `device`: each parameter keeps its identity
  // (the same Tensor handles, so ties survive), its storage is replaced and its gradient dropped.
  // Call before handing the parameters to an optimiser (its state would keep the old dtype).
  void to(DType dtype);
  void to(Device device);
  // The device of the first parameter (the CPU for a module without parameters).
  Device device() const;

  // ---- randomness used while running (dropout) ----
  // One generator shared by the whole tree, so a model's dropout state is a single (seed, offset)
  // pair that a checkpoint can save. set_rng applies to this module and every descendant.
  const std::shared_ptr<Generator>& rng() const { return rng_; }
  void set_rng(std::shared_ptr<Generator> gen);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> child);
  void check_new_name(const std::string& name, const char* what) const;
  void collect(const std::string& prefix, std::vector<std::pair<std::string, Tensor>>& out) const;
  void convert(std::optional<DType> dtype, std::optional<Device> device);

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
  std::shared_ptr<Generator> rng_;
};

// An ordered list of submodules named "0", "1", ... (torch.nn.ModuleList): the decoder's "layers".
class ModuleList : public Module {
 public:
  ModuleList() = default;
  // Registers `m` under the next index; returns it.
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> m) {
    register_module(std::to_string(items_.size()), m);
    items_.push_back(m);
    return m;
  }
  size_t size() const { return items_.size(); }
  const std::shared_ptr<Module>& operator[](size_t i) const { return items_.at(i); }
  // The i-th module as M; throws when it is not one.
  template <class M>
  std::shared_ptr<M> at(size_t i) const {
    auto m = std::dynamic_pointer_cast<M>(items_.at(i));
    if (!m) throw_wrong_type(i);
    return m;
  }

 private:
  [[noreturn]] void throw_wrong_type(size_t i) const;
  std::vector<std::shared_ptr<Module>> items_;
};

}  // namespace gradus
