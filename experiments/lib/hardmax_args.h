// Option parsing shared by the hardmax commands (experiments/lib/hardmax_*.cpp): positional
// arguments and --name [value] options, every unknown option an error that lists the known ones.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace gradus::experiments {

class HardmaxArgs {
 public:
  // `valued`: options that take a value; `flags`: options that do not.
  HardmaxArgs(const std::string& command, const std::vector<std::string>& args,
              const std::set<std::string>& valued, const std::set<std::string>& flags)
      : command_(command) {
    for (size_t i = 0; i < args.size(); ++i) {
      const std::string& a = args[i];
      if (a.rfind("--", 0) != 0) {
        positional_.push_back(a);
        continue;
      }
      std::string name = a, value;
      const bool inline_value = a.find('=') != std::string::npos;
      if (inline_value) {
        name = a.substr(0, a.find('='));
        value = a.substr(a.find('=') + 1);
      }
      if (flags.count(name) != 0 && !inline_value) {
        values_[name] = "";
        continue;
      }
      if (valued.count(name) == 0) {
        std::string known;
        for (const auto& v : valued) known += " " + v + " VALUE";
        for (const auto& f : flags) known += " " + f;
        GRADUS_FAIL(command_, "unknown option {} (known:{})", name,
                    known.empty() ? " none" : known);
      }
      if (!inline_value) {
        GRADUS_CHECK(i + 1 < args.size(), command_, "option {} needs a value", name);
        value = args[++i];
      }
      values_[name] = value;
    }
  }
  const std::vector<std::string>& positional() const { return positional_; }
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string value(const std::string& name, const std::string& fallback) const {
    auto it = values_.find(name);
    return it == values_.end() ? fallback : it->second;
  }
  int64_t integer(const std::string& name, int64_t fallback) const {
    if (!has(name)) return fallback;
    const std::string v = value(name, "");
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used == v.size()) return x;
    } catch (...) {
    }
    GRADUS_FAIL(command_, "{} expects an integer, found \"{}\"", name, v);
  }
  double number(const std::string& name, double fallback) const {
    if (!has(name)) return fallback;
    const std::string v = value(name, "");
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used == v.size()) return x;
    } catch (...) {
    }
    GRADUS_FAIL(command_, "{} expects a number, found \"{}\"", name, v);
  }

 private:
  std::string command_;
  std::vector<std::string> positional_;
  std::map<std::string, std::string> values_;
};

}  // namespace gradus::experiments
