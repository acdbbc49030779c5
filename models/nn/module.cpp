#include "models/nn/module.h"

#include <algorithm>
#include <optional>
#include <set>

#include "core/error.h"
#include "core/text.h"

namespace gradus {

namespace {
// Up to three of `names` closest to `wanted`, for "did you mean" messages.
std::string closest(const std::string& wanted, std::vector<std::string> names) {
  std::stable_sort(names.begin(), names.end(), [&](const std::string& a, const std::string& b) {
    return edit_distance(wanted, a) < edit_distance(wanted, b);
  });
  if (names.size() > 3) names.resize(3);
  return names.empty() ? std::string("(none)") : fmt::format("{}", fmt::join(names, ", "));
}

std::string join_name(const std::string& prefix, const std::string& name) {
  if (prefix.empty()) return name;
  return name.empty() ? prefix : prefix + "." + name;
}

}  // namespace

Module::Module() : rng_(std::make_shared<Generator>(0)) {}

void Module::check_new_name(const std::string& name, const char* what) const {
  GRADUS_CHECK(!name.empty(), "Module", "{} name must not be empty", what);
  GRADUS_CHECK(name.find('.') == std::string::npos, "Module",
               "{} name '{}' must not contain '.' (dots separate the levels of the tree)", what,
               name);
  for (const auto& [n, p] : params_)
    GRADUS_CHECK(n != name, "Module", "{} name '{}' is already a parameter of this module", what,
                 name);
  for (const auto& [n, c] : children_)
    GRADUS_CHECK(n != name, "Module", "{} name '{}' is already a submodule of this module", what,
                 name);
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_new_name(name, "parameter");
  GRADUS_CHECK(t.defined(), "Module", "parameter '{}' is an undefined tensor", name);
  GRADUS_CHECK(is_floating(t.dtype()), "Module", "parameter '{}' must be floating point, found {}",
               name, t.describe());
  GRADUS_CHECK(t.is_leaf(), "Module",
               "parameter '{}' must be a leaf tensor, found the output of an op", name);
  t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> child) {
  check_new_name(name, "submodule");
  GRADUS_CHECK(child != nullptr, "Module", "submodule '{}' is null", name);
  GRADUS_CHECK(child.get() != this, "Module", "submodule '{}' is the module itself", name);
  child->train(training_);
  child->set_rng(rng_);
  children_.emplace_back(name, std::move(child));
}

void Module::collect(const std::string& prefix,
                     std::vector<std::pair<std::string, Tensor>>& out) const {
  for (const auto& [name, p] : params_) out.emplace_back(join_name(prefix, name), p);
  for (const auto& [name, c] : children_) c->collect(join_name(prefix, name), out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(bool remove_duplicate) const {
  std::vector<std::pair<std::string, Tensor>> all;
  collect("", all);
  if (!remove_duplicate) return all;
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;
  for (auto& [name, p] : all)
    if (seen.insert(p.impl_ptr().get()).second) out.emplace_back(std::move(name), p);
  return out;
}

std::vector<Tensor> Module::parameters(bool remove_duplicate) const {
  std::vector<Tensor> out;
  for (auto& [name, p] : named_parameters(remove_duplicate)) out.push_back(p);
  return out;
}

Tensor Module::parameter(const std::string& dotted_name) const {
  std::vector<std::string> names;
  for (const auto& [name, p] : named_parameters(false)) {
    if (name == dotted_name) return p;
    names.push_back(name);
  }
  GRADUS_FAIL("Module", "no parameter named '{}'; closest: {}", dotted_name,
              closest(dotted_name, names));
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const Tensor& p : parameters()) n += p.numel();
  return n;
}

void Module::zero_grad() {
  for (const Tensor& p : parameters()) p.zero_grad();
}

void Module::set_requires_grad(bool requires_grad) {
  for (const Tensor& p : parameters()) p.set_requires_grad(requires_grad);
}

std::vector<std::pair<std::string, const Module*>> Module::named_modules() const {
  std::vector<std::pair<std::string, const Module*>> out{{"", this}};
  for (const auto& [name, c] : children_)
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(join_name(name, sub), m);
  return out;
}

std::shared_ptr<Module> Module::submodule(const std::string& dotted_path) const {
  const Module* at = this;
  std::shared_ptr<Module> found;
  size_t start = 0;
  while (start <= dotted_path.size()) {
    size_t dot = dotted_path.find('.', start);
    std::string part = dotted_path.substr(start, dot == std::string::npos ? dot : dot - start);
    found = nullptr;
    std::vector<std::string> names;
    for (const auto& [name, c] : at->children_) {
      if (name == part) found = c;
      names.push_back(name);
    }
    GRADUS_CHECK(found != nullptr, "Module", "no submodule '{}' in '{}'; closest: {}", part,
                 dotted_path, closest(part, names));
    at = found.get();
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return found;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, c] : children_) c->train(on);
}

void Module::set_rng(std::shared_ptr<Generator> gen) {
  GRADUS_CHECK(gen != nullptr, "Module", "set_rng needs a generator, found null");
  rng_ = gen;
  for (auto& [name, c] : children_) c->set_rng(gen);
}

void Module::convert(std::optional<DType> new_dtype, std::optional<Device> new_device) {
  // Each distinct tensor once: a tied weight must be converted a single time.
  for (const Tensor& p : parameters()) {
    DType dtype = new_dtype.value_or(p.dtype());
    Device target = new_device.value_or(p.device());
    if (p.dtype() == dtype && p.device() == target) continue;
    Tensor converted = raw_to_dtype(p, dtype);  // on the parameter's own device
    if (!(converted.device() == target)) {
      Tensor moved = Tensor::empty(converted.shape(), dtype, target);
      raw_copy_(moved, converted);
      converted = moved;
    }
    // Rewrite the shared TensorImpl so every holder of this handle sees the new data.
    TensorImpl& impl = p.impl();
    impl.storage = converted.storage();
    impl.shape = converted.shape();
    impl.strides = converted.strides();
    impl.offset = converted.offset();
    impl.dtype = dtype;
    p.zero_grad();
  }
}

void Module::to(DType dtype) {
  GRADUS_CHECK(is_floating(dtype), "Module::to",
               "parameters must stay floating point, asked for {}", dtype_name(dtype));
  convert(dtype, std::nullopt);
}

void Module::to(Device device) { convert(std::nullopt, device); }

Device Module::device() const {
  const std::vector<Tensor> params = parameters();
  return params.empty() ? kCPU : params.front().device();
}

void ModuleList::throw_wrong_type(size_t i) const {
  GRADUS_FAIL("ModuleList", "item {} is not of the requested module type", i);
}

}  // namespace gradus
