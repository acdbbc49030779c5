#include "experiments/lib/ops_table.h"

#include <fmt/format.h>

#include "autodiff/op_registry.h"

namespace gradus::experiments {

namespace {
constexpr DType kTableDTypes[] = {DType::f32, DType::f64, DType::bf16};
constexpr DeviceType kTableDevices[] = {DeviceType::cpu, DeviceType::cuda};

// "fb": forward and backward, "f-": forward only, "--": neither.
std::string cell(const OpDef& op, DeviceType d, DType t) {
  bool f = op_supports_forward(op, d, t);
  bool b = op_supports_backward(op, d, t);
  return std::string(f ? "f" : "-") + (op.differentiable() ? (b ? "b" : "-") : " ");
}
}  // namespace

nlohmann::json ops_json() {
  nlohmann::json out = nlohmann::json::array();
  for (const OpDef* op : all_ops()) {
    nlohmann::json backends = nlohmann::json::object();
    for (DeviceType d : kTableDevices) {
      nlohmann::json per_dtype = nlohmann::json::object();
      for (DType t : kTableDTypes)
        per_dtype[std::string(dtype_name(t))] = {{"forward", op_supports_forward(*op, d, t)},
                                                 {"backward", op_supports_backward(*op, d, t)}};
      backends[std::string(device_type_name(d))] = per_dtype;
    }
    out.push_back({{"name", op->name},
                   {"family", op->family},
                   {"differentiable", op->differentiable()},
                   {"gradcheck", op->gradcheck.empty() ? nlohmann::json(nullptr)
                                                       : nlohmann::json(op->gradcheck)},
                   {"backends", backends}});
  }
  return out;
}

std::string ops_table_text() {
  std::vector<const OpDef*> ops = all_ops();
  size_t name_w = 4, fam_w = 6, grad_w = 9;
  for (const OpDef* op : ops) {
    name_w = std::max(name_w, op->name.size());
    fam_w = std::max(fam_w, op->family.size());
    grad_w = std::max(grad_w, op->gradcheck.size());
  }
  std::string out = fmt::format("{:<{}}  {:<{}}  ", "op", name_w, "family", fam_w);
  for (DeviceType d : kTableDevices)
    for (DType t : kTableDTypes)
      out += fmt::format("{:<10}", fmt::format("{}/{}", device_type_name(d), dtype_name(t)));
  out += fmt::format("{}\n", "gradcheck");
  for (const OpDef* op : ops) {
    out += fmt::format("{:<{}}  {:<{}}  ", op->name, name_w, op->family, fam_w);
    for (DeviceType d : kTableDevices)
      for (DType t : kTableDTypes) out += fmt::format("{:<10}", cell(*op, d, t));
    out += fmt::format("{}\n", op->differentiable() ? (op->gradcheck.empty() ? "MISSING" : op->gradcheck)
                                                    : "(not differentiable)");
  }
  out += fmt::format(
      "\n{} ops. Cells: f = forward kernel present, b = backward present, - = missing.\n",
      ops.size());
  return out;
}

}  // namespace gradus::experiments
