// The progress display: its line format, durations, and plain lines versus in-place redraws.
#include "experiments/lib/progress.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

namespace gradus::experiments {
namespace {

TEST(Progress, Durations) {
  EXPECT_EQ(format_duration(0), "0s");
  EXPECT_EQ(format_duration(42.4), "42s");
  EXPECT_EQ(format_duration(187), "3m07s");
  EXPECT_EQ(format_duration(7500), "2h05m");
  EXPECT_EQ(format_duration(-1), "?");
}

TEST(Progress, LineFormat) {
  ProgressState st{.step = 450,
                   .total_steps = 1000,
                   .loss = 2.12345,
                   .lr = 3e-4,
                   .tokens_per_s = 12345,
                   .eta_s = 65};
  EXPECT_EQ(format_progress(st, false),
            "step 450/1000  loss 2.1235  lr 3.00e-04  12.3k tok/s  ETA 1m05s");
  EXPECT_EQ(format_progress(st, true),
            "step 450/1000 [#########...........]  45%  loss 2.1235  lr 3.00e-04  12.3k tok/s  "
            "ETA 1m05s");
  st.eta_s = -1;
  st.tokens_per_s = 950;
  EXPECT_EQ(format_progress(st, false),
            "step 450/1000  loss 2.1235  lr 3.00e-04  950 tok/s  ETA ?");
}

TEST(Progress, PlainOutputPrintsLoggedStepsOnly) {
  std::ostringstream out;
  Progress p(out, /*tty=*/false, 10, 0);
  p.update(1, 5.0, 1e-3, 100, /*log=*/false);
  p.update(2, 4.0, 1e-3, 100, /*log=*/true);
  p.note("step 2: val loss 4.5");
  p.finish();
  std::string text = out.str();
  EXPECT_EQ(text.find('\r'), std::string::npos);
  EXPECT_EQ(text.find("step 1/10"), std::string::npos);
  EXPECT_EQ(text.rfind("step 2/10  loss 4.0000", 0), 0u) << text;
  EXPECT_NE(text.find("\nstep 2: val loss 4.5\n"), std::string::npos) << text;
}

TEST(Progress, TerminalRedrawsOneLine) {
  std::ostringstream out;
  Progress p(out, /*tty=*/true, 10, 0);
  p.update(1, 5.0, 1e-3, 100, /*log=*/true);
  p.update(2, 4.0, 1e-3, 100, /*log=*/true);
  p.finish();
  std::string text = out.str();
  EXPECT_EQ(text.rfind("\rstep 1/10 [##", 0), 0u) << text;
  EXPECT_NE(text.find("\rstep 2/10 [####"), std::string::npos) << text;
  EXPECT_EQ(text.back(), '\n');
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 1);
}

}  // namespace
}  // namespace gradus::experiments
