#include "experiments/lib/svg_plot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace gradus::experiments::svg {

namespace {

// Tableau 10: distinguishable, and readable for the common colour-vision deficiencies. After ten
// series the colours repeat with a dash pattern.
constexpr const char* kPalette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                    "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"};
constexpr int kPaletteSize = 10;
constexpr const char* kFont = "font-family=\"sans-serif\"";
// An estimate of a character's width at 12px, enough to lay out legends and labels.
constexpr double kCharWidth = 6.8;

std::string num(double v) { return fmt::format("{:.1f}", v); }

std::string colour(size_t i) { return kPalette[i % kPaletteSize]; }
std::string dash(size_t i) { return i / kPaletteSize == 0 ? "" : " stroke-dasharray=\"6 3\""; }

double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(target, 1);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double norm = raw / mag;
  return (norm < 1.5 ? 1.0 : norm < 3.0 ? 2.0 : norm < 7.0 ? 5.0 : 10.0) * mag;
}

// Widens a degenerate range (one value, or all values equal) so that it has a middle.
void widen_if_flat(double& lo, double& hi) {
  if (hi > lo) return;
  const double pad = lo == 0.0 ? 1.0 : std::abs(lo) * 0.1;
  lo -= pad;
  hi += pad;
}

std::string truncate_label(const std::string& s, size_t max_chars) {
  if (s.size() <= max_chars) return s;
  // Cut at a UTF-8 character boundary.
  size_t cut = max_chars - 1;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut) + "\xE2\x80\xA6";  // …
}

std::string svg_open(int width, int height) {
  return fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" style=\"max-width:100%;height:auto\" {2} font-size=\"12\">\n"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"#ffffff\"/>\n",
      width, height, kFont);
}

std::string text(double x, double y, const std::string& s, const std::string& extra = "") {
  return fmt::format("<text x=\"{}\" y=\"{}\"{}>{}</text>\n", num(x), num(y),
                     extra.empty() ? "" : " " + extra, escape_xml(s));
}

std::string skipped_note(int64_t skipped, bool log_y) {
  if (skipped == 0) return "";
  return fmt::format("{} value{} not drawn ({})", skipped, skipped == 1 ? "" : "s",
                     log_y ? "NaN, Inf, or not positive on the log axis" : "NaN or Inf");
}

}  // namespace

std::string escape_xml(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20 && c != '\t' && c != '\n') break;
        out += c;
    }
  }
  return out;
}

Axis nice_axis(double lo, double hi, int target) {
  widen_if_flat(lo, hi);
  Axis a;
  a.step = nice_step(lo, hi, target);
  const auto first = static_cast<int64_t>(std::floor(lo / a.step + 1e-9));
  const auto last = static_cast<int64_t>(std::ceil(hi / a.step - 1e-9));
  a.lo = static_cast<double>(first) * a.step;
  a.hi = static_cast<double>(last) * a.step;
  // Integer multiples of the step, so that no error accumulates along the axis.
  for (int64_t k = first; k <= last; ++k) a.ticks.push_back(k == 0 ? 0.0 : k * a.step);
  return a;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!std::isfinite(lo) || !std::isfinite(hi)) return {};
  if (lo == hi) return {lo};
  if (lo > hi) std::swap(lo, hi);
  const double step = nice_step(lo, hi, target);
  std::vector<double> ticks;
  // Integer multiples of the step, so that no error accumulates along the axis.
  const auto first = static_cast<int64_t>(std::ceil(lo / step - 1e-9));
  const auto last = static_cast<int64_t>(std::floor(hi / step + 1e-9));
  for (int64_t k = first; k <= last; ++k) {
    double t = static_cast<double>(k) * step;
    ticks.push_back(std::abs(t) < step * 1e-9 ? 0.0 : t);
  }
  return ticks;
}

std::string format_tick(double value, double step) {
  if (value == 0.0) return "0";
  const double mag = std::max(std::abs(value), std::abs(step));
  if (step > 0 && std::abs(step) >= 1e-3 && mag < 1e6) {
    const int decimals = std::max(0, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
    return fmt::format("{:.{}f}", value, decimals);
  }
  return fmt::format("{:.3g}", value);
}

// ---- line chart ---------------------------------------------------------------------------------

std::string render(const LineChart& c) {
  const bool log_y = c.log_y;
  auto drawable_y = [&](double v) { return std::isfinite(v) && (!log_y || v > 0.0); };
  auto ty = [&](double v) { return log_y ? std::log10(v) : v; };

  // Data ranges over the drawable points (and bands); count what is skipped.
  double xlo = std::numeric_limits<double>::infinity(), xhi = -xlo, ylo = xlo, yhi = -xlo;
  int64_t skipped = 0, drawn = 0;
  for (const Series& s : c.series) {
    const size_t n = std::min(s.x.size(), s.y.size());
    const bool band = s.band_low.size() == n && s.band_high.size() == n && n > 0;
    for (size_t i = 0; i < n; ++i) {
      if (!std::isfinite(s.x[i]) || !drawable_y(s.y[i])) {
        ++skipped;
        continue;
      }
      ++drawn;
      xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
      ylo = std::min(ylo, ty(s.y[i])), yhi = std::max(yhi, ty(s.y[i]));
      if (band && drawable_y(s.band_low[i]) && drawable_y(s.band_high[i])) {
        ylo = std::min(ylo, ty(s.band_low[i]));
        yhi = std::max(yhi, ty(s.band_high[i]));
      }
    }
  }

  // Legend rows under the title.
  const double legend_left = 64.0, legend_right = c.width - 16.0;
  std::vector<std::pair<double, double>> legend_pos;  // (x, y) of each entry
  double lx = legend_left, ly = 40.0;
  for (const Series& s : c.series) {
    const double w = 28.0 + kCharWidth * static_cast<double>(std::min<size_t>(s.name.size(), 48));
    if (lx > legend_left && lx + w > legend_right) lx = legend_left, ly += 18.0;
    legend_pos.emplace_back(lx, ly);
    lx += w + 12.0;
  }
  const double top = c.series.empty() ? 36.0 : ly + 14.0;
  const std::string note = skipped_note(skipped, log_y);
  const double plot_h = c.height - 36.0 - 48.0;  // the plot keeps its size whatever the legend
  const int height = static_cast<int>(top + plot_h + 48.0 + (note.empty() ? 0.0 : 16.0));
  const double left = 64.0, right = c.width - 16.0, bottom = top + plot_h;

  std::string out = svg_open(c.width, height);
  out += text(c.width / 2.0, 20.0, c.title,
              "text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\"");
  for (size_t i = 0; i < c.series.size(); ++i) {
    auto [ex, ey] = legend_pos[i];
    out += fmt::format(
        "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{}\" stroke-width=\"2.5\"{}/>\n",
        num(ex), num(ey - 4), num(ex + 22), num(ey - 4), colour(i), dash(i));
    out += text(ex + 28, ey, truncate_label(c.series[i].name, 48));
  }
  out += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999999\"/>\n",
      num(left), num(top), num(right - left), num(plot_h));
  out += text(12.0, (top + bottom) / 2.0, c.y_label + (log_y ? " (log scale)" : ""),
              fmt::format("text-anchor=\"middle\" transform=\"rotate(-90 12 {})\"",
                          num((top + bottom) / 2.0)));
  out += text((left + right) / 2.0, bottom + 36.0, c.x_label, "text-anchor=\"middle\"");
  if (!note.empty()) out += text(left, bottom + 56.0, note, "fill=\"#b03030\"");

  if (drawn == 0) {
    out += text((left + right) / 2.0, (top + bottom) / 2.0, "no data",
                "text-anchor=\"middle\" fill=\"#777777\"");
    return out + "</svg>\n";
  }

  // Axes: nice linear ranges; a log axis gets decades when it spans two or more, else nice
  // linear ticks placed logarithmically.
  const Axis xaxis = nice_axis(xlo, xhi);
  xlo = xaxis.lo, xhi = xaxis.hi;
  std::vector<std::pair<double, std::string>> yticks;  // (transformed position, label)
  if (log_y && yhi - ylo >= 2.0) {
    ylo = std::floor(ylo), yhi = std::ceil(yhi);
    for (double e = ylo; e <= yhi + 1e-9; e += 1.0)
      yticks.emplace_back(e, fmt::format("{:g}", std::pow(10.0, e)));
  } else if (log_y) {
    // Under two decades: ticks at 1, 2 and 5 x 10^k (at every digit when that gives fewer than
    // four), the range widened to the nearest of them.
    if (yhi - ylo < 1e-9) ylo -= 0.25, yhi += 0.25;  // one value: half a decade around it
    const double lo = std::pow(10.0, ylo), hi = std::pow(10.0, yhi);
    std::vector<double> ticks;
    for (const std::vector<double>& digits :
         {std::vector<double>{1, 2, 5}, std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8, 9}}) {
      std::vector<double> candidates;
      for (int e = static_cast<int>(std::floor(ylo)) - 1; e <= static_cast<int>(std::ceil(yhi)) + 1;
           ++e)
        for (double d : digits) candidates.push_back(d * std::pow(10.0, e));
      size_t first = 0, last = candidates.size() - 1;
      while (first + 1 < candidates.size() && candidates[first + 1] <= lo * (1 + 1e-12)) ++first;
      while (last > 0 && candidates[last - 1] >= hi * (1 - 1e-12)) --last;
      ticks.assign(candidates.begin() + first, candidates.begin() + last + 1);
      if (ticks.size() >= 4) break;
    }
    ylo = std::log10(ticks.front()), yhi = std::log10(ticks.back());
    for (double v : ticks) yticks.emplace_back(std::log10(v), fmt::format("{:g}", v));
  } else {
    const Axis a = nice_axis(ylo, yhi);
    ylo = a.lo, yhi = a.hi;
    for (double v : a.ticks) yticks.emplace_back(v, format_tick(v, a.step));
  }
  auto px = [&](double x) { return left + (x - xlo) / (xhi - xlo) * (right - left); };
  auto py = [&](double t) { return bottom - (t - ylo) / (yhi - ylo) * plot_h; };

  for (double t : xaxis.ticks) {
    out += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#e4e4e4\"/>\n",
                       num(px(t)), num(top), num(bottom));
    out += text(px(t), bottom + 16.0, format_tick(t, xaxis.step),
                "text-anchor=\"middle\" fill=\"#333333\"");
  }
  for (const auto& [t, label] : yticks) {
    out += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{2}\" y2=\"{1}\" stroke=\"#e4e4e4\"/>\n",
                       num(left), num(py(t)), num(right));
    out += text(left - 6.0, py(t) + 4.0, label, "text-anchor=\"end\" fill=\"#333333\"");
  }

  for (size_t si = 0; si < c.series.size(); ++si) {
    const Series& s = c.series[si];
    const size_t n = std::min(s.x.size(), s.y.size());
    auto ok = [&](size_t i) { return std::isfinite(s.x[i]) && drawable_y(s.y[i]); };
    // Band: one polygon per run of points where the band is drawable.
    if (s.band_low.size() == n && s.band_high.size() == n) {
      size_t i = 0;
      while (i < n) {
        auto band_ok = [&](size_t k) {
          return ok(k) && drawable_y(s.band_low[k]) && drawable_y(s.band_high[k]);
        };
        if (!band_ok(i)) {
          ++i;
          continue;
        }
        size_t j = i;
        while (j < n && band_ok(j)) ++j;
        std::string pts;
        for (size_t k = i; k < j; ++k)
          pts += fmt::format("{},{} ", num(px(s.x[k])), num(py(ty(s.band_high[k]))));
        for (size_t k = j; k-- > i;)
          pts += fmt::format("{},{} ", num(px(s.x[k])), num(py(ty(s.band_low[k]))));
        pts.pop_back();
        out += fmt::format(
            "<polygon points=\"{}\" fill=\"{}\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", pts,
            colour(si));
        i = j;
      }
    }
    // Line: a new subpath after every skipped point.
    std::string d;
    bool pen_down = false;
    int64_t points = 0;
    for (size_t i = 0; i < n; ++i) {
      if (!ok(i)) {
        pen_down = false;
        continue;
      }
      d += fmt::format("{}{} {} ", pen_down ? "L" : "M", num(px(s.x[i])), num(py(ty(s.y[i]))));
      pen_down = true;
      ++points;
    }
    if (!d.empty()) {
      d.pop_back();
      out += fmt::format(
          "<path d=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\" "
          "stroke-linejoin=\"round\"{}/>\n",
          d, colour(si), dash(si));
    }
    // Markers where points are few enough to tell apart (and always for a lone point).
    if (points > 0 && points <= 40) {
      for (size_t i = 0; i < n; ++i)
        if (ok(i))
          out += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"2.8\" fill=\"{}\"/>\n",
                             num(px(s.x[i])), num(py(ty(s.y[i]))), colour(si));
    }
  }
  return out + "</svg>\n";
}

// ---- point chart --------------------------------------------------------------------------------

std::string render(const PointChart& c) {
  constexpr double kRow = 26.0;
  size_t longest = 4;
  for (const Point& p : c.points) longest = std::max(longest, std::min<size_t>(p.label.size(), 40));
  const double left = std::min(16.0 + kCharWidth * static_cast<double>(longest), c.width * 0.45);
  const double right = c.width - 120.0;  // room for "mean ± error"
  const double top = 36.0;
  const double rows_h = kRow * static_cast<double>(std::max<size_t>(c.points.size(), 1));
  const double bottom = top + rows_h;

  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  int64_t skipped = 0;
  for (const Point& p : c.points) {
    if (!std::isfinite(p.value)) {
      ++skipped;
      continue;
    }
    const double e = std::isfinite(p.error) ? std::abs(p.error) : 0.0;
    lo = std::min(lo, p.value - e), hi = std::max(hi, p.value + e);
  }
  const std::string note = skipped_note(skipped, false);
  const int height = static_cast<int>(bottom + 44.0 + (note.empty() ? 0.0 : 16.0));

  std::string out = svg_open(c.width, height);
  out += text(c.width / 2.0, 20.0, c.title,
              "text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\"");
  out += fmt::format(
      "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999999\"/>\n",
      num(left), num(top), num(right - left), num(rows_h));
  out += text((left + right) / 2.0, bottom + 36.0, c.x_label, "text-anchor=\"middle\"");
  if (!note.empty()) out += text(left, bottom + 56.0, note, "fill=\"#b03030\"");
  if (skipped == static_cast<int64_t>(c.points.size())) {
    out += text((left + right) / 2.0, (top + bottom) / 2.0 + 4.0, "no data",
                "text-anchor=\"middle\" fill=\"#777777\"");
    return out + "</svg>\n";
  }

  const Axis axis = nice_axis(lo, hi, 5);
  lo = axis.lo, hi = axis.hi;
  auto px = [&](double v) { return left + (v - lo) / (hi - lo) * (right - left); };
  for (double t : axis.ticks) {
    out += fmt::format("<line x1=\"{0}\" y1=\"{1}\" x2=\"{0}\" y2=\"{2}\" stroke=\"#e4e4e4\"/>\n",
                       num(px(t)), num(top), num(bottom));
    out += text(px(t), bottom + 16.0, format_tick(t, axis.step),
                "text-anchor=\"middle\" fill=\"#333333\"");
  }
  for (size_t i = 0; i < c.points.size(); ++i) {
    const Point& p = c.points[i];
    const double y = top + kRow * (static_cast<double>(i) + 0.5);
    if (i % 2 == 1)
      out += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"#f4f6f9\"/>\n",
                         num(left + 0.5), num(y - kRow / 2.0), num(right - left - 1.0), num(kRow));
    out += text(left - 8.0, y + 4.0, truncate_label(p.label, 40), "text-anchor=\"end\"");
    if (!std::isfinite(p.value)) {
      out += text(right + 8.0, y + 4.0, "not finite", "fill=\"#b03030\"");
      continue;
    }
    const double e = std::isfinite(p.error) ? std::abs(p.error) : 0.0;
    const std::string col = colour(0);
    if (e > 0.0) {
      const double a = px(p.value - e), b = px(p.value + e);
      out += fmt::format(
          "<path d=\"M{0} {2} L{1} {2} M{0} {3} L{0} {4} M{1} {3} L{1} {4}\" stroke=\"{5}\" "
          "stroke-width=\"1.5\" fill=\"none\"/>\n",
          num(a), num(b), num(y), num(y - 5.0), num(y + 5.0), col);
    }
    out += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"4\" fill=\"{}\"/>\n", num(px(p.value)),
                       num(y), col);
    const std::string value = e > 0.0 ? fmt::format("{:.4g} \xC2\xB1 {:.2g}", p.value, e)
                                      : fmt::format("{:.4g}", p.value);
    out += text(right + 8.0, y + 4.0, value, "fill=\"#333333\"");
  }
  return out + "</svg>\n";
}

}  // namespace gradus::experiments::svg
