#include "kernels/registry.h"

#include <map>
#include <mutex>
#include <tuple>

namespace gradus::kernels {

namespace {
struct Table {
  std::mutex mutex;
  std::map<std::string, std::array<AnyKernel, kNumDeviceTypes * kNumDTypes>, std::less<>> entries;
};
Table& table() {
  static Table* t = new Table();  // leaked on purpose: registrars run during static initialisation
  return *t;
}
size_t slot(DeviceType d, DType t) {
  return static_cast<size_t>(d) * kNumDTypes + static_cast<size_t>(t);
}
}  // namespace

void register_kernel(std::string_view name, DeviceType device, DType dtype, AnyKernel fn) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto it = t.entries.find(name);
  if (it == t.entries.end()) it = t.entries.emplace(std::string(name), decltype(it->second){}).first;
  it->second[slot(device, dtype)] = fn;
}

AnyKernel find_kernel(std::string_view name, DeviceType device, DType dtype) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  auto it = t.entries.find(name);
  return it == t.entries.end() ? nullptr : it->second[slot(device, dtype)];
}

bool supports(std::string_view name, DeviceType device, DType dtype) {
  return find_kernel(name, device, dtype) != nullptr;
}

std::vector<std::string> kernel_names() {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::vector<std::string> out;
  for (auto& [name, _] : t.entries) out.push_back(name);
  return out;
}

}  // namespace gradus::kernels
