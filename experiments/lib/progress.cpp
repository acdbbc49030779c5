#include "experiments/lib/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ostream>

namespace gradus::experiments {

namespace {

std::string format_rate(double tokens_per_s) {
  if (tokens_per_s >= 1e6) return fmt::format("{:.2f}M", tokens_per_s / 1e6);
  if (tokens_per_s >= 1e4) return fmt::format("{:.1f}k", tokens_per_s / 1e3);
  return fmt::format("{:.0f}", tokens_per_s);
}

}  // namespace

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  auto s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return fmt::format("{}s", s);
  if (s < 3600) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}h{:02}m", s / 3600, (s % 3600) / 60);
}

std::string format_progress(const ProgressState& st, bool bar) {
  std::string out = fmt::format("step {}/{}", st.step, st.total_steps);
  if (bar) {
    constexpr int kWidth = 20;
    double frac = st.total_steps > 0 ? static_cast<double>(st.step) / st.total_steps : 0.0;
    frac = std::clamp(frac, 0.0, 1.0);
    int filled = static_cast<int>(frac * kWidth);
    out += fmt::format(" [{}{}] {:3.0f}%", std::string(filled, '#'),
                       std::string(kWidth - filled, '.'), frac * 100.0);
  }
  out += fmt::format("  loss {:.4f}  lr {:.2e}  {} tok/s  ETA {}", st.loss, st.lr,
                     format_rate(st.tokens_per_s), st.eta_s < 0 ? "?" : format_duration(st.eta_s));
  return out;
}

bool stdout_is_tty() { return isatty(STDOUT_FILENO) == 1; }

Progress::Progress(std::ostream& out, bool tty, int64_t total_steps, int64_t start_step)
    : out_(out),
      tty_(tty),
      total_steps_(total_steps),
      start_step_(start_step),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void Progress::update(int64_t step, double loss, double lr, double tokens_per_s, bool log) {
  auto now = std::chrono::steady_clock::now();
  if (!log && (!tty_ || now - last_draw_ < std::chrono::milliseconds(100))) return;
  last_draw_ = now;
  ProgressState st{step, total_steps_, loss, lr, tokens_per_s, -1.0};
  int64_t done = step - start_step_;
  if (done > 0) {
    double elapsed = std::chrono::duration<double>(now - start_).count();
    st.eta_s = elapsed / static_cast<double>(done) * static_cast<double>(total_steps_ - step);
  }
  if (tty_) {
    std::string line = format_progress(st, /*bar=*/true);
    out_ << '\r' << line;
    if (line.size() < bar_width_) out_ << std::string(bar_width_ - line.size(), ' ');
    bar_width_ = line.size();
    out_.flush();
  } else {
    out_ << format_progress(st, /*bar=*/false) << '\n';
    out_.flush();
  }
}

void Progress::clear_bar() {
  if (tty_ && bar_width_ > 0) {
    out_ << '\r' << std::string(bar_width_, ' ') << '\r';
    bar_width_ = 0;
  }
}

void Progress::note(const std::string& line) {
  clear_bar();
  out_ << line << '\n';
  out_.flush();
}

void Progress::finish() {
  if (tty_ && bar_width_ > 0) {
    out_ << '\n';
    bar_width_ = 0;
  }
  out_.flush();
}

}  // namespace gradus::experiments
