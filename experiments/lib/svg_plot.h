// A small SVG chart writer for the reports (`gradus report`, docs/experiments.md): line charts of
// several series (legend, axes with nice ticks, optional log y, optional shaded mean ± std band)
// and a dot chart with error bars that compares configurations. Output is one <svg> element with
// no scripts, no ids and no external resources, so that several can be inlined in one HTML page;
// the same inputs always give the same bytes.
//
// Values that cannot be drawn (NaN, ±Inf; zero or negative ones on a log axis) are skipped, a line
// is broken where they were, and the chart says how many were skipped.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gradus::experiments::svg {

struct Series {
  std::string name;       // legend label
  std::vector<double> x;  // x[i], y[i]: one point; x and y have the same length
  std::vector<double> y;
  // Optional shaded band (e.g. mean ± std over seeds): empty, or the same length as y.
  std::vector<double> band_low;
  std::vector<double> band_high;
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  bool log_y = false;
  std::vector<Series> series;
  int width = 640;
  int height = 340;
};

// One row of a comparison chart: value ± error (error 0: no whisker).
struct Point {
  std::string label;
  double value = 0.0;
  double error = 0.0;
};

// A horizontal dot chart: one row per point (label on the left), the value on the x axis.
struct PointChart {
  std::string title;
  std::string x_label;
  std::vector<Point> points;
  int width = 640;
};

std::string render(const LineChart& chart);
std::string render(const PointChart& chart);

// Text for XML content and attribute values: & < > " ' escaped, control characters other than
// tab and newline dropped (they are not allowed in XML 1.0).
std::string escape_xml(std::string_view text);

// Ticks inside [lo, hi] at 1, 2 or 5 x 10^k steps, about `target` of them. lo == hi gives one
// tick; a non-finite end none.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// An axis for data in [lo, hi]: the range widened to multiples of a nice step (a flat range
// first widened around its value), with a tick at every step.
struct Axis {
  double lo = 0.0, hi = 1.0, step = 0.2;
  std::vector<double> ticks;
};
Axis nice_axis(double lo, double hi, int target = 5);

// A tick label: as few digits as tell the ticks apart given the step between them (e.g. 0.25 for
// step 0.05, 2000 for step 500, 1e-05 for small values).
std::string format_tick(double value, double step);

}  // namespace gradus::experiments::svg
