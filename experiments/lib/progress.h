// The progress display of a training run: step, loss, learning rate, tokens/s and the estimated
// time left. On a terminal one line is redrawn in place (carriage return) with a bar; when the
// output is a file or a pipe, plain lines are printed at the logged steps only, so logs stay
// readable.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace gradus::experiments {

struct ProgressState {
  int64_t step = 0;  // steps done
  int64_t total_steps = 1;
  double loss = 0.0;
  double lr = 0.0;
  double tokens_per_s = 0.0;
  double eta_s = -1.0;  // < 0: unknown yet
};

// "step 450/1000  loss 2.1234  lr 3.00e-04  12.3k tok/s  ETA 1m05s", with a bar after the step
// count when `bar` is set.
std::string format_progress(const ProgressState& state, bool bar);
// "42s", "3m07s", "2h05m".
std::string format_duration(double seconds);
// Whether standard output is a terminal.
bool stdout_is_tty();

class Progress {
 public:
  // `start_step`: the step the run starts (or resumes) from, so the ETA uses this session's pace.
  Progress(std::ostream& out, bool tty, int64_t total_steps, int64_t start_step);
  // After every step. A terminal redraws at most about ten times a second and always when `log`
  // is set; other outputs print one line when `log` is set.
  void update(int64_t step, double loss, double lr, double tokens_per_s, bool log);
  // A permanent line (an evaluation, a message) printed above the bar.
  void note(const std::string& line);
  // Ends the bar's line (terminal).
  void finish();

 private:
  void clear_bar();

  std::ostream& out_;
  bool tty_;
  int64_t total_steps_;
  int64_t start_step_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  size_t bar_width_ = 0;  // characters of the bar line on screen (0: none)
};

}  // namespace gradus::experiments
