#include "experiments/lib/commands.h"

#include <algorithm>
#include <map>
#include <memory>

#include "core/error.h"

namespace gradus::experiments {
namespace {
std::map<std::string, std::unique_ptr<Command>>& command_table() {
  static auto* table = new std::map<std::string, std::unique_ptr<Command>>();
  return *table;
}
std::map<std::string, std::unique_ptr<VerifySuite>>& suite_table() {
  static auto* table = new std::map<std::string, std::unique_ptr<VerifySuite>>();
  return *table;
}
}  // namespace

bool register_command(Command command) {
  GRADUS_CHECK(command.run != nullptr && !command.name.empty(), "register_command",
               "a command needs a name and a function (\"{}\")", command.name);
  auto [it, inserted] = command_table().emplace(command.name, nullptr);
  GRADUS_CHECK(inserted, "register_command", "command \"{}\" registered twice", command.name);
  it->second = std::make_unique<Command>(std::move(command));
  return true;
}

const Command* find_command(const std::string& name) {
  auto it = command_table().find(name);
  return it == command_table().end() ? nullptr : it->second.get();
}

std::vector<const Command*> all_commands() {
  std::vector<const Command*> out;
  for (const auto& [name, c] : command_table()) out.push_back(c.get());
  return out;
}

bool register_verify_suite(VerifySuite suite) {
  GRADUS_CHECK(suite.run != nullptr && !suite.name.empty(), "register_verify_suite",
               "a suite needs a name and a function (\"{}\")", suite.name);
  auto [it, inserted] = suite_table().emplace(suite.name, nullptr);
  GRADUS_CHECK(inserted, "register_verify_suite", "suite \"{}\" registered twice", suite.name);
  it->second = std::make_unique<VerifySuite>(std::move(suite));
  return true;
}

const VerifySuite* find_verify_suite(const std::string& name) {
  auto it = suite_table().find(name);
  return it == suite_table().end() ? nullptr : it->second.get();
}

std::vector<const VerifySuite*> all_verify_suites() {
  std::vector<const VerifySuite*> out;
  for (const auto& [name, s] : suite_table()) out.push_back(s.get());
  return out;
}

}  // namespace gradus::experiments
