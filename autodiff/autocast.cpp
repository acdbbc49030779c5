#include "autodiff/autocast.h"

#include <algorithm>
#include <memory>
#include <unordered_map>

#include "autodiff/ops/view.h"
#include "core/env_switch.h"
#include "core/error.h"
#include "core/float_width.h"
#include "kernels/copy.h"
#include "kernels/registry.h"

namespace gradus {

namespace {

thread_local std::optional<AutocastState> t_state;

// The untaped casts of one guard, shared: a tensor read by several products (q, k and v read one
// normed input, gate and up another) is cast once, which saves the launches and the narrow copies
// the records would keep until the backward; and the casts ops offer of their own outputs (the
// norms write the bf16 copy in their pass). Only op outputs are shared (non-leaves, and offered
// outputs, which are leaves in no-grad mode): the engine never writes them in place, so a cast is
// valid while both exist. A shared cast is referenced weakly, so the table keeps it alive no
// longer than the records that saved it (in no-grad inference it dies after its product, as
// without the table); an offered one is held while its source lives (released by the next offer
// after the source has gone, or when the guard ends). One table per guard, innermost last.
// A cast is remembered by its storage and its view: the products keep views of it (reshaped
// rows), not the cast's own handle.
struct SharedCast {
  std::weak_ptr<TensorImpl> source;
  std::weak_ptr<Storage> storage;
  TensorImpl view;  // the cast's shape, strides, offset and dtype; its storage is not held here
  Tensor offered;   // a cast an op offered (autocast_offer_cast), held while its source lives
};
using CastTable = std::unordered_map<const TensorImpl*, SharedCast>;

// A parameter cast on a guard's entry (AutocastWeights), held until the guard ends.
struct WeightCast {
  std::weak_ptr<TensorImpl> source;
  Tensor cast;
};

// What one guard knows of its casts.
struct GuardCasts {
  CastTable shared;
  std::unordered_map<const TensorImpl*, WeightCast> weights_cast;
  AutocastWeights* weights = nullptr;
};
thread_local std::vector<GuardCasts> t_casts;

bool is_float(DType d) { return d == DType::f32 || d == DType::f64 || d == DType::bf16; }

int width(DType d) { return d == DType::f64 ? 3 : d == DType::f32 ? 2 : 1; }

Tensor cast_if_float(const Tensor& x, DType to) {
  if (!x.defined() || !is_float(x.dtype()) || x.dtype() == to) return x;
  return to_dtype(x, to);
}

EnvSwitch& lean_autocast_switch() {
  static EnvSwitch on("GRADUS_LEAN_AUTOCAST");
  return on;
}

}  // namespace

void set_lean_autocast(bool on) { lean_autocast_switch().set(on); }
bool lean_autocast_enabled() { return lean_autocast_switch().on(); }

AutocastGuard::AutocastGuard(DType compute, DType wide, AutocastWeights* weights)
    : previous_(t_state) {
  GRADUS_CHECK(is_float(compute) && is_float(wide), "AutocastGuard",
               "compute and wide must be floating dtypes, found {} and {}", dtype_name(compute),
               dtype_name(wide));
  GRADUS_CHECK(width(compute) <= width(wide), "AutocastGuard",
               "the compute dtype ({}) must not be wider than the wide dtype ({})",
               dtype_name(compute), dtype_name(wide));
  t_state = AutocastState{compute, wide};
  t_casts.emplace_back();
  if (!lean_autocast_enabled()) weights = nullptr;  // every use casts afresh
  t_casts.back().weights = weights;
  if (weights == nullptr) return;
  try {
    cast_on_entry(*weights, compute, &t_casts.back());
  } catch (...) {  // no destructor will run: leave the thread's state as it was
    t_casts.pop_back();
    t_state = previous_;
    throw;
  }
}

// Everything `weights` remembers that is still alive, contiguous and not yet in `compute`, cast in
// one cast_multi call per (device, source dtype). Forgets the freed parameters; a different compute
// dtype forgets them all.
void AutocastGuard::cast_on_entry(AutocastWeights& weights, DType compute, void* guard_casts) {
  GuardCasts& guard = *static_cast<GuardCasts*>(guard_casts);
  if (weights.compute_ != compute) {
    weights.params_.clear();
    weights.compute_ = compute;
    return;
  }
  struct Group {
    Device device;
    DType dtype;
    std::vector<kernels::CastArray> arrays;
  };
  std::vector<Group> groups;
  for (auto it = weights.params_.begin(); it != weights.params_.end();) {
    std::shared_ptr<TensorImpl> impl = it->second.lock();
    if (!impl) {
      it = weights.params_.erase(it);
      continue;
    }
    ++it;
    const Tensor source(impl);
    if (!is_float(source.dtype()) || source.dtype() == compute || !source.is_contiguous()) continue;
    Tensor cast = Tensor::empty(source.shape(), compute, source.device());
    auto group = std::find_if(groups.begin(), groups.end(), [&](const Group& g) {
      return g.device == source.device() && g.dtype == source.dtype();
    });
    if (group == groups.end())
      group = groups.insert(groups.end(), {source.device(), source.dtype(), {}});
    group->arrays.push_back({source.raw_data(), cast.raw_data(), source.numel()});
    guard.weights_cast[impl.get()] = WeightCast{impl, cast};
  }
  static const kernels::KernelRef<kernels::CastMultiFn> cast_multi(kernels::kCastMulti);
  for (const Group& g : groups)
    cast_multi(g.device, g.dtype)(g.arrays.data(), static_cast<int64_t>(g.arrays.size()), compute);
}

AutocastGuard::~AutocastGuard() {
  t_state = previous_;
  t_casts.pop_back();
}

std::optional<AutocastState> autocast_state() { return t_state; }

namespace detail {

Tensor autocast_compute(const Tensor& x) {
  return t_state ? cast_if_float(x, t_state->compute) : x;
}

Tensor autocast_compute_untaped(const Tensor& x) {
  if (!t_state || !x.defined() || !is_float(x.dtype()) || x.dtype() == t_state->compute) return x;
  GuardCasts& guard = t_casts.back();
  const std::shared_ptr<TensorImpl>& source = x.impl_ptr();
  CastTable& table = guard.shared;
  // A cast already made of this very tensor (shared, or offered by the op that produced it).
  if (auto it = table.find(source.get()); it != table.end() && it->second.source.lock() == source)
    if (std::shared_ptr<Storage> storage = it->second.storage.lock()) {
      auto impl = std::make_shared<TensorImpl>(it->second.view);
      impl->storage = std::move(storage);
      return Tensor(std::move(impl));
    }
  if (x.is_leaf()) {
    if (auto it = guard.weights_cast.find(source.get());
        it != guard.weights_cast.end() && it->second.source.lock() == source)
      return it->second.cast;
    if (guard.weights != nullptr && x.requires_grad()) {  // a parameter: cast it on entry next time
      guard.weights->compute_ = t_state->compute;
      guard.weights->params_[source.get()] = source;
    }
    return raw_to_dtype(x, t_state->compute);
  }
  Tensor cast = raw_to_dtype(x, t_state->compute);
  if (table.size() >= 64)  // drop the entries whose source or cast has gone
    std::erase_if(table, [](const auto& e) {
      return e.second.source.expired() || e.second.storage.expired();
    });
  SharedCast& entry = table[source.get()];
  entry.source = source;
  entry.storage = cast.storage();
  entry.view = TensorImpl{nullptr, cast.shape(), cast.strides(), cast.offset(), cast.dtype(), {}};
  return cast;
}

ProductOperand autocast_product_operand(const Tensor& x) {
  if (!lean_autocast_enabled()) {
    Tensor cast = autocast_compute(x);
    return {cast, cast};
  }
  return {autocast_compute_untaped(x), x};
}

std::optional<DType> autocast_narrow_copy_dtype(DType output) {
  if (!t_state || !lean_autocast_enabled()) return std::nullopt;
  if (is_next_narrower(t_state->compute, output)) return t_state->compute;
  return std::nullopt;
}

void autocast_offer_cast(const Tensor& source, const Tensor& cast) {
  if (!t_state || t_casts.empty()) return;
  CastTable& table = t_casts.back().shared;
  // The offers (and shared casts) whose source has gone: their copies are released here.
  std::erase_if(table, [](const auto& e) { return e.second.source.expired(); });
  SharedCast& entry = table[source.impl_ptr().get()];
  entry.source = source.impl_ptr();
  entry.storage = cast.storage();
  entry.view = TensorImpl{nullptr, cast.shape(), cast.strides(), cast.offset(), cast.dtype(), {}};
  entry.offered = cast;
}

void autocast_drop_weight_casts() {
  for (GuardCasts& guard : t_casts) guard.weights_cast.clear();
}

Tensor autocast_wide(const Tensor& x) { return t_state ? cast_if_float(x, t_state->wide) : x; }

void autocast_promote(Tensor& a, Tensor& b) {
  if (!t_state || !a.defined() || !b.defined() || a.dtype() == b.dtype()) return;
  if (!is_float(a.dtype()) || !is_float(b.dtype())) return;
  // A 0-dim operand (a scalar parameter: gin's sharpening alpha, Sparse-GIN's eps) takes the other
  // operand's dtype, as in PyTorch's type promotion: q * alpha stays bf16 rather than widening the
  // whole of q to f32 and back for the attention product that reads it.
  if (a.dim() == 0 && b.dim() != 0) {
    a = to_dtype(a, b.dtype());
    return;
  }
  if (b.dim() == 0 && a.dim() != 0) {
    b = to_dtype(b, a.dtype());
    return;
  }
  if (width(a.dtype()) < width(b.dtype()))
    a = to_dtype(a, b.dtype());
  else
    b = to_dtype(b, a.dtype());
}

std::vector<Tensor> autocast_promote_all(const std::vector<Tensor>& xs) {
  if (!t_state) return xs;
  int widest = 0;
  for (const Tensor& x : xs)
    if (x.defined() && is_float(x.dtype())) widest = std::max(widest, width(x.dtype()));
  const DType to = widest == 3 ? DType::f64 : widest == 2 ? DType::f32 : DType::bf16;
  std::vector<Tensor> out;
  out.reserve(xs.size());
  for (const Tensor& x : xs) out.push_back(widest == 0 ? x : cast_if_float(x, to));
  return out;
}

}  // namespace detail

}  // namespace gradus
