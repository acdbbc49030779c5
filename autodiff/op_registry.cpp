#include "autodiff/op_registry.h"

#include <algorithm>
#include <deque>
#include <map>
#include <mutex>

#include "kernels/registry.h"

namespace gradus {

namespace {
struct OpTable {
  std::mutex mutex;
  std::deque<OpDef> defs;  // deque: references stay valid as it grows
  std::map<std::string, const OpDef*> by_name;
};
OpTable& op_table() {
  static OpTable* t = new OpTable();  // leaked on purpose: used during static initialisation
  return *t;
}
}  // namespace

const OpDef& register_op(OpDef def) {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  GRADUS_CHECK(!t.by_name.count(def.name), "register_op", "op \"{}\" is registered twice", def.name);
  t.defs.push_back(std::move(def));
  const OpDef& ref = t.defs.back();
  t.by_name[ref.name] = &ref;
  return ref;
}

const OpDef* find_op(const std::string& name) {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto it = t.by_name.find(name);
  return it == t.by_name.end() ? nullptr : it->second;
}

std::vector<const OpDef*> all_ops() {
  OpTable& t = op_table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::vector<const OpDef*> out;
  for (auto& [_, def] : t.by_name) out.push_back(def);
  return out;
}

static bool all_supported(const std::vector<std::string>& names, DeviceType device, DType dtype) {
  return std::all_of(names.begin(), names.end(),
                     [&](const std::string& n) { return kernels::supports(n, device, dtype); });
}

bool op_supports_forward(const OpDef& op, DeviceType device, DType dtype) {
  return all_supported(op.forward_kernels, device, dtype);
}
bool op_supports_backward(const OpDef& op, DeviceType device, DType dtype) {
  return op.differentiable() && op_supports_forward(op, device, dtype) &&
         all_supported(op.backward_kernels, device, dtype);
}

}  // namespace gradus
