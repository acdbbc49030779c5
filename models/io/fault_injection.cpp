#include "models/io/fault_injection.h"

#include <atomic>
#include <cstdlib>
#include <optional>

#include "core/error.h"

namespace gradus {

namespace {

constexpr const char* kExpected = "expected kill|enospc:SUBSTRING:N (N >= 1)";

// The environment's spec, parsed once; a parse error is kept and thrown at every write.
struct InjectionState {
  InjectionState() {
    const char* env = std::getenv(kFaultInjectEnv);
    if (env == nullptr || *env == '\0') return;
    active = true;
    try {
      spec = parse_fault_spec(env);
    } catch (const Error& e) {
      error = e.what();
    }
  }
  bool active = false;
  FaultSpec spec;
  std::optional<std::string> error;
  std::atomic<int64_t> matches{0};
};

InjectionState& state() {
  static InjectionState s;
  return s;
}

}  // namespace

FaultSpec parse_fault_spec(const std::string& text) {
  FaultSpec spec;
  if (text.empty()) return spec;
  const size_t first = text.find(':');
  const size_t last = text.rfind(':');
  GRADUS_CHECK(first != std::string::npos && last != first, kFaultInjectEnv,
               "{}, found \"{}\" (it needs two ':')", kExpected, text);
  const std::string action = text.substr(0, first);
  if (action == "kill")
    spec.action = FaultAction::kill;
  else if (action == "enospc")
    spec.action = FaultAction::enospc;
  else
    GRADUS_FAIL(kFaultInjectEnv, "{}, found the action \"{}\" in \"{}\"", kExpected, action, text);
  spec.name_substring = text.substr(first + 1, last - first - 1);
  GRADUS_CHECK(!spec.name_substring.empty(), kFaultInjectEnv,
               "{}, found an empty file name substring in \"{}\"", kExpected, text);
  const std::string count = text.substr(last + 1);
  char* end = nullptr;
  const long long n = count.empty() ? 0 : std::strtoll(count.c_str(), &end, 10);
  GRADUS_CHECK(!count.empty() && *end == '\0' && n >= 1, kFaultInjectEnv,
               "{}, found the count \"{}\" in \"{}\"", kExpected, count, text);
  spec.nth = n;
  return spec;
}

FaultAction fault_for_atomic_write(const std::string& file_name) {
  InjectionState& s = state();
  if (!s.active) [[likely]]
    return FaultAction::none;
  if (s.error) throw Error(*s.error);
  if (file_name.find(s.spec.name_substring) == std::string::npos) return FaultAction::none;
  return s.matches.fetch_add(1) + 1 == s.spec.nth ? s.spec.action : FaultAction::none;
}

}  // namespace gradus
