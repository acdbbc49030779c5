#include "experiments/lib/run_dir.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"
#include "experiments/lib/descriptor.h"
#include "models/io/atomic_file.h"

namespace gradus::experiments {

namespace fs = std::filesystem;

std::string create_run_dir(const std::string& base_dir, const std::string& name) {
  fs::path parent = fs::path(base_dir) / name;
  std::error_code ec;
  fs::create_directories(parent, ec);
  GRADUS_CHECK(!ec, "run directory", "cannot create {}: {}", parent.string(), ec.message());
  std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  char stamp[32];
  std::strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &local);
  // mkdir fails when the directory exists, so two runs started in the same second (or at once)
  // never share a directory.
  for (int n = 1; n < 1000; ++n) {
    fs::path dir = parent / (n == 1 ? std::string(stamp) : fmt::format("{}-{}", stamp, n));
    if (::mkdir(dir.c_str(), 0777) == 0) return dir.string();
    GRADUS_CHECK(errno == EEXIST, "run directory", "cannot create {}: {}", dir.string(),
                 std::strerror(errno));
  }
  GRADUS_FAIL("run directory", "too many runs named {} started at {}", parent.string(), stamp);
}

std::string find_project_root() {
  auto is_root = [](const fs::path& p) {
    std::error_code ec;
    return fs::is_directory(p / "data-excerpts", ec) &&
           fs::exists(p / "scripts" / "fetch-data", ec);
  };
  std::vector<fs::path> starts;
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  if (!ec) starts.push_back(cwd);
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) starts.push_back(exe.parent_path());
  for (fs::path p : starts) {
    for (; !p.empty(); p = p.parent_path()) {
      if (is_root(p)) return p.string();
      if (p == p.parent_path()) break;
    }
  }
  return "";
}

std::vector<std::string> corpus_names() { return {"moby_dick", "moby_dick_excerpt"}; }

bool is_corpus_name(const std::string& corpus) {
  for (const auto& n : corpus_names())
    if (n == corpus) return true;
  return false;
}

std::string resolve_corpus(const std::string& corpus, const std::string& project_root) {
  std::error_code ec;
  if (is_corpus_name(corpus)) {
    std::string root = project_root.empty() ? find_project_root() : project_root;
    const char* env = std::getenv("GRADUS_DATA_DIR");
    if (root.empty() && !(corpus == "moby_dick" && env && *env)) {
      GRADUS_FAIL("data.corpus",
                  "\"{}\" is a named corpus, but the Gradus source tree (with data-excerpts/ and "
                  "scripts/) was not found from the current directory or the executable; run from "
                  "inside it, or give the text file's path",
                  corpus);
    }
    if (corpus == "moby_dick_excerpt") {
      fs::path p = fs::path(root) / "data-excerpts" / "moby_dick_excerpt.txt";
      GRADUS_CHECK(fs::is_regular_file(p, ec), "data.corpus", "\"{}\": {} is missing", corpus,
                   p.string());
      return p.string();
    }
    fs::path dir = env && *env ? fs::path(env) : fs::path(root) / "data";
    fs::path p = dir / "moby_dick.txt";
    GRADUS_CHECK(fs::is_regular_file(p, ec), "data.corpus",
                 "\"moby_dick\" has not been downloaded yet: run scripts/fetch-data moby-dick "
                 "(it writes {}), or use \"moby_dick_excerpt\", the excerpt in data-excerpts/",
                 p.string());
    return p.string();
  }
  GRADUS_CHECK(fs::is_regular_file(corpus, ec), "data.corpus", "no file \"{}\"{}", corpus, [&] {
    std::string near = closest_match(corpus, corpus_names());
    return near.empty() ? fmt::format(" (nor a corpus name: {})", fmt::join(corpus_names(), ", "))
                        : fmt::format(" (did you mean the corpus \"{}\"?)", near);
  }());
  return fs::absolute(corpus).lexically_normal().string();
}

void MetricsLog::load(int64_t max_step) {
  lines_.clear();
  std::ifstream in(path_);
  if (!in) return;
  std::string line;
  int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {  // parse_error, or out_of_range for 1e999
      GRADUS_FAIL("metrics", "{} line {} is not JSON: {}", path_, number, e.what());
    }
    GRADUS_CHECK(j.is_object() && j.contains("step") && j["step"].is_number_integer(), "metrics",
                 "{} line {} has no integer \"step\"", path_, number);
    if (j["step"].get<int64_t>() <= max_step) lines_.push_back(std::move(j));
  }
}

void MetricsLog::append(const nlohmann::json& line) {
  lines_.push_back(line);
  write_file_atomic(path_, [&](std::ostream& out) {
    for (const auto& l : lines_) out << l.dump() << '\n';
  });
}

}  // namespace gradus::experiments
