// The tape and the backward engine (see tape.h for the contract).
#include "autodiff/tape.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <unordered_map>

#include "autodiff/ops/elementwise.h"
#include "autodiff/ops/reduce.h"
#include "kernels/check.h"
#include "kernels/registry.h"

namespace gradus {

namespace {

struct TapeState {
  std::vector<Record> records;  // in increasing seq order
  size_t prune_at = 4096;
  bool grad_enabled = true;
};

// Sequence numbers are unique across threads, so a tensor recorded on another thread's tape is
// never mistaken for one of this tape's records.
std::atomic<uint64_t> g_next_seq{1};

TapeState& tape() {
  thread_local TapeState state;
  return state;
}

bool env_flag(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' && v[0] != '0';
}
bool g_detect_anomaly = env_flag("GRADUS_DEBUG_NAN");

// Drops records whose outputs can no longer be reached. Going from the newest record to the oldest,
// releasing a dead record's inputs can make an older record dead in the same pass.
void prune(TapeState& t) {
  for (size_t i = t.records.size(); i-- > 0;) {
    Record& r = t.records[i];
    bool alive = std::any_of(r.outputs.begin(), r.outputs.end(),
                             [](const std::weak_ptr<AutogradMeta>& w) { return !w.expired(); });
    if (!alive) r = Record{};
  }
  std::erase_if(t.records, [](const Record& r) { return r.op == nullptr; });
}

// A saved tensor must not keep its own autograd meta alive, or a record that saves its output
// would never be pruned. The alias shares storage, shape and strides.
Tensor detached_alias(const Tensor& t) {
  if (!t.defined() || !t.has_autograd_meta()) return t;
  return raw_view(t, t.shape(), t.strides(), t.offset());
}

std::string describe_all(const std::vector<Tensor>& ts) {
  std::string out;
  for (const Tensor& t : ts) out += (out.empty() ? "" : ", ") + t.describe();
  return out;
}

void check_finite(const Tensor& t, const char* what, const OpDef& op, uint64_t position,
                  size_t index, const std::vector<Tensor>& inputs = {}) {
  if (!t.defined() || t.dtype() == DType::bf16) return;
  static const kernels::KernelRef<kernels::CountNonfiniteFn> count_nonfinite("count_nonfinite");
  Tensor c = raw_contiguous(t);
  int64_t bad = count_nonfinite(c.device(), c.dtype())(c.raw_data(), c.numel());
  GRADUS_CHECK(bad == 0, "detect_anomaly",
               "op \"{}\" produced {} NaN/Inf value(s) in its {} {} ({}) at tape position {}{}",
               op.name, bad, what, index, t.describe(), position,
               inputs.empty() ? std::string() : "; inputs: " + describe_all(inputs));
}

}  // namespace

// ---------------------------------------------------------------- grad mode
bool grad_enabled() { return tape().grad_enabled; }
NoGradGuard::NoGradGuard() : previous_(tape().grad_enabled) { tape().grad_enabled = false; }
NoGradGuard::~NoGradGuard() { tape().grad_enabled = previous_; }

bool any_requires_grad(std::initializer_list<const Tensor*> inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor* t : inputs)
    if (t->defined() && t->requires_grad()) return true;
  return false;
}
bool any_requires_grad(const std::vector<Tensor>& inputs) {
  if (!grad_enabled()) return false;
  for (const Tensor& t : inputs)
    if (t.defined() && t.requires_grad()) return true;
  return false;
}

void set_detect_anomaly(bool on) { g_detect_anomaly = on; }
bool detect_anomaly() { return g_detect_anomaly; }
size_t tape_size() { return tape().records.size(); }
void clear_tape() { tape().records.clear(); }

void finish_op(const OpDef& op, const std::vector<Tensor>& inputs,
               const std::vector<Tensor>& outputs, std::vector<Tensor> saved, Attrs attrs) {
  TapeState& t = tape();
  if (g_detect_anomaly)
    for (size_t k = 0; k < outputs.size(); ++k)
      check_finite(outputs[k], "output", op, g_next_seq.load(), k, inputs);
  if (!op.differentiable() || !any_requires_grad(inputs)) return;

  Record r;
  r.op = &op;
  r.seq = g_next_seq++;
  r.inputs.reserve(inputs.size());
  for (const Tensor& in : inputs) {
    bool needs = in.defined() && in.requires_grad();
    r.inputs.push_back(needs ? in.impl().autograd : nullptr);
    r.input_shapes.push_back(in.defined() ? in.shape() : Shape{});
    r.input_dtypes.push_back(in.defined() ? in.dtype() : DType::f32);
  }
  for (const Tensor& out : outputs) {
    AutogradMeta& m = out.autograd_meta();
    m.requires_grad = true;
    m.is_leaf = false;
    m.graph_freed = false;
    m.producer = r.seq;
    r.outputs.push_back(out.impl().autograd);
    r.output_shapes.push_back(out.shape());
  }
  for (Tensor& s : saved) s = detached_alias(s);
  r.saved = std::move(saved);
  r.attrs = std::move(attrs);
  t.records.push_back(std::move(r));
  if (t.records.size() >= t.prune_at) {
    prune(t);
    t.prune_at = std::max<size_t>(4096, 2 * t.records.size());
  }
}

void retain_grad(const Tensor& t) {
  GRADUS_CHECK(t.requires_grad(), "retain_grad", "tensor {} does not require gradients",
               t.describe());
  t.autograd_meta().retains_grad = true;
}

// ---------------------------------------------------------------- backward
namespace {

// Adds g into a gradient slot without ever writing into a tensor someone else may hold.
void accumulate(std::shared_ptr<TensorImpl>& slot, Tensor g) {
  if (!slot) {
    // Adopt g only if nothing else refers to it or its storage (a pass-through rule may hand the
    // same tensor to several inputs; an optimiser or clipping may later scale it in place).
    // A gradient that is a view (e.g. the transpose of a transposed leaf's gradient) is made
    // contiguous, so every accumulated gradient is a plain row-major tensor.
    bool unique = g.impl_ptr().use_count() == 1 && g.storage().use_count() == 1;
    slot = unique && g.is_contiguous() ? g.impl_ptr() : raw_clone(g).impl_ptr();
    return;
  }
  slot = add(Tensor(slot), g).impl_ptr();
}

}  // namespace

void backward(const Tensor& root, const Tensor& grad, bool retain_graph) {
  GRADUS_CHECK(root.defined(), "backward", "called on an undefined tensor");
  GRADUS_CHECK(root.requires_grad(), "backward",
               "{} does not require gradients: no input of the ops that produced it requires "
               "gradients, or it was computed under no_grad",
               root.describe());
  Tensor seed;
  if (grad.defined()) {
    GRADUS_CHECK(grad.shape() == root.shape() && grad.dtype() == root.dtype(), "backward",
                 "gradient {} does not match the root {}", grad.describe(), root.describe());
    seed = grad;
  } else {
    GRADUS_CHECK(root.numel() == 1, "backward",
                 "an implicit gradient needs a scalar root but found {}; pass the gradient",
                 root.describe());
    seed = Tensor::ones(root.shape(), root.dtype(), root.device());
  }

  NoGradGuard no_grad;
  AutogradMeta& root_meta = root.autograd_meta();
  if (root_meta.is_leaf) {
    accumulate(root_meta.grad, seed);
    return;
  }
  GRADUS_CHECK(!root_meta.graph_freed, "backward",
               "the graph of {} was freed by an earlier backward; pass retain_graph=true to the "
               "first backward to differentiate twice",
               root.describe());

  TapeState& t = tape();
  auto it = std::lower_bound(t.records.begin(), t.records.end(), root_meta.producer,
                             [](const Record& r, uint64_t seq) { return r.seq < seq; });
  GRADUS_CHECK(it != t.records.end() && it->seq == root_meta.producer, "backward",
               "the record that produced {} is no longer on this thread's tape (cleared, or "
               "produced on another thread)",
               root.describe());
  const size_t root_index = static_cast<size_t>(it - t.records.begin());

  std::unordered_map<AutogradMeta*, Tensor> grads;
  grads[&root_meta] = seed;
  std::vector<size_t> visited;
  std::vector<Tensor> grad_outputs, grad_inputs;

  for (size_t i = root_index + 1; i-- > 0;) {
    Record& r = t.records[i];
    if (r.op == nullptr) continue;
    grad_outputs.assign(r.outputs.size(), Tensor());
    bool any = false;
    for (size_t k = 0; k < r.outputs.size(); ++k) {
      std::shared_ptr<AutogradMeta> m = r.outputs[k].lock();
      if (!m) continue;
      auto g = grads.find(m.get());
      if (g == grads.end()) continue;
      grad_outputs[k] = std::move(g->second);
      grads.erase(g);
      if (m->retains_grad) accumulate(m->grad, grad_outputs[k]);
      any = true;
    }
    if (!any) continue;
    visited.push_back(i);

    grad_inputs.assign(r.inputs.size(), Tensor());
    r.op->backward(r, grad_outputs, grad_inputs);
    grad_outputs.clear();

    for (size_t j = 0; j < r.inputs.size(); ++j) {
      if (!r.inputs[j] || !grad_inputs[j].defined()) continue;
      Tensor g = std::move(grad_inputs[j]);
      if (g.shape() != r.input_shapes[j]) g = sum_to(g, r.input_shapes[j]);
      GRADUS_CHECK(g.shape() == r.input_shapes[j] && g.dtype() == r.input_dtypes[j],
                   r.op->name, "backward rule returned gradient {} for input {} of shape {} ({})",
                   g.describe(), j, shape_str(r.input_shapes[j]), dtype_name(r.input_dtypes[j]));
      if (g_detect_anomaly) check_finite(g, "input gradient", *r.op, r.seq, j);
      AutogradMeta* m = r.inputs[j].get();
      if (m->is_leaf) {
        accumulate(m->grad, std::move(g));
      } else {
        GRADUS_CHECK(!m->graph_freed, "backward",
                     "input {} of \"{}\" was produced by a graph already freed by an earlier "
                     "backward; pass retain_graph=true to the first backward",
                     j, r.op->name);
        auto slot = grads.find(m);
        if (slot == grads.end()) {
          // Its producer must be further down this tape, or the gradient would be dropped
          // silently and the leaves behind it would get none.
          auto end = t.records.begin() + static_cast<std::ptrdiff_t>(i);
          auto p = std::lower_bound(t.records.begin(), end, m->producer,
                                    [](const Record& rec, uint64_t seq) { return rec.seq < seq; });
          GRADUS_CHECK(p != end && p->seq == m->producer, "backward",
                       "input {} ({}) of \"{}\" was produced by a record no longer on this "
                       "thread's tape (cleared, or produced on another thread)",
                       j, shape_str(r.input_shapes[j]), r.op->name);
          grads.emplace(m, std::move(g));
        } else {
          slot->second = add(slot->second, g);
        }
      }
    }
  }

  if (!retain_graph) {
    for (size_t i : visited) {
      for (auto& w : t.records[i].outputs)
        if (auto m = w.lock()) m->graph_freed = true;
      t.records[i] = Record{};
    }
    std::erase_if(t.records, [](const Record& r) { return r.op == nullptr; });
  }
}

}  // namespace gradus
