#include "core/kernel_census.h"

#include <algorithm>
#include <map>
#include <mutex>

namespace gradus::census {

namespace {
struct Table {
  std::mutex mutex;
  std::map<std::string, int64_t> counts;
};
Table& table() {
  static Table t;
  return t;
}
}  // namespace

void detail::record(const char* name) {
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  ++t.counts[name];
}

void open() {
  Table& t = table();
  {
    std::lock_guard<std::mutex> lock(t.mutex);
    t.counts.clear();
  }
  detail::open_flag().store(true, std::memory_order_relaxed);
}

std::vector<std::pair<std::string, int64_t>> close() {
  detail::open_flag().store(false, std::memory_order_relaxed);
  Table& t = table();
  std::lock_guard<std::mutex> lock(t.mutex);
  std::vector<std::pair<std::string, int64_t>> out(t.counts.begin(), t.counts.end());
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

}  // namespace gradus::census
