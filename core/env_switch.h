// A process-wide on/off switch that starts from an environment variable ("0" turns it off; unset
// or any other value leaves it on) and can then be set from code. Thread-safe. The fused paths of
// the models (attention, PNA aggregation, the loss, SwiGLU) each have one, so that the readable
// composite they replace can be run and timed in the same binary.
//   bool fused_loss_enabled() { return fused_loss_switch().on(); }
#pragma once

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace gradus {

class EnvSwitch {
 public:
  explicit EnvSwitch(const char* variable) : on_(initially_on(variable)) {}
  bool on() const { return on_.load(); }
  void set(bool on) { on_.store(on); }

 private:
  static bool initially_on(const char* variable) {
    const char* value = std::getenv(variable);
    return value == nullptr || std::strcmp(value, "0") != 0;
  }
  std::atomic<bool> on_;
};

}  // namespace gradus
