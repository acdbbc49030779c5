#include "experiments/lib/report_doc.h"

#include <fmt/format.h>

#include <cctype>
#include <cstdlib>

#include "core/error.h"
#include "experiments/lib/svg_plot.h"

namespace gradus::experiments::report {

namespace {

// Laptop-sized, printable, and nothing loaded from elsewhere (system fonts only).
constexpr const char* kStyle = R"(
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
       max-width: 1180px; margin: 24px auto; padding: 0 20px; color: #1f2328; line-height: 1.45; }
h1 { font-size: 1.55em; margin-bottom: 0.2em; border-bottom: 3px solid #4e79a7; padding-bottom: 6px; }
h2 { font-size: 1.2em; margin-top: 1.8em; border-bottom: 1px solid #d8dee4; padding-bottom: 3px; }
p { margin: 0.5em 0; }
p.note { background: #fff8e6; border-left: 4px solid #e0a800; padding: 6px 10px; }
table { border-collapse: collapse; margin: 8px 0 14px; font-size: 0.9em; display: block;
        max-width: 100%; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
tr:nth-child(even) td { background: #f8fafc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; border-radius: 4px; padding: 10px 12px;
      overflow: auto; max-height: 520px; font-size: 0.82em; line-height: 1.35; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 14px; }
.charts figure { margin: 0; border: 1px solid #e1e4e8; border-radius: 4px; padding: 4px; }
.charts svg { display: block; width: 100%; height: auto; }
)";

std::string esc(const std::string& s) { return svg::escape_xml(s); }

// Right-aligned cells: numbers, and "mean ± std (n)" cells that start with one.
bool looks_numeric(const std::string& s) {
  if (s.empty()) return false;
  const char* begin = s.c_str();
  char* end = nullptr;
  std::strtod(begin, &end);
  return end != begin && (*end == '\0' || *end == ' ');
}

// An SVG inside HTML needs no namespace declaration; dropping it leaves the page without a
// single URL.
std::string inline_svg(const std::string& svg) {
  const std::string ns = " xmlns=\"http://www.w3.org/2000/svg\"";
  std::string out = svg;
  if (auto at = out.find(ns); at != std::string::npos) out.erase(at, ns.size());
  return out;
}

std::string md_cell(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|')
      out += "\\|";
    else if (c == '\n')
      out += ' ';
    else
      out += c;
  }
  return out;
}

}  // namespace

void Document::table(Table t) {
  for (const auto& row : t.rows)
    GRADUS_CHECK(row.size() == t.header.size(), "report table", "a row has {} cells, the header {}",
                 row.size(), t.header.size());
  Block b{Block::Kind::table};
  b.table = std::move(t);
  blocks_.push_back(std::move(b));
}

void Document::charts(std::vector<Chart> charts) {
  if (charts.empty()) return;
  Block b{Block::Kind::charts};
  b.charts = std::move(charts);
  blocks_.push_back(std::move(b));
}

void Document::append(const Document& other, const std::string& heading_prefix,
                      const std::string& key_prefix) {
  heading(other.title_);
  for (Block b : other.blocks_) {
    if (b.kind == Block::Kind::heading) b.text = heading_prefix + b.text;
    for (Chart& chart : b.charts) chart.key = key_prefix + chart.key;
    blocks_.push_back(std::move(b));
  }
}

std::vector<Chart> Document::all_charts() const {
  std::vector<Chart> out;
  for (const Block& b : blocks_) out.insert(out.end(), b.charts.begin(), b.charts.end());
  return out;
}

std::string Document::html() const {
  std::string out = fmt::format(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n"
      "<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
      esc(title_), kStyle, esc(title_));
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::heading: out += fmt::format("<h2>{}</h2>\n", esc(b.text)); break;
      case Block::Kind::paragraph: out += fmt::format("<p>{}</p>\n", esc(b.text)); break;
      case Block::Kind::note: out += fmt::format("<p class=\"note\">{}</p>\n", esc(b.text)); break;
      case Block::Kind::code: out += fmt::format("<pre>{}</pre>\n", esc(b.text)); break;
      case Block::Kind::table: {
        out += "<table>\n<tr>";
        for (const auto& h : b.table.header) out += fmt::format("<th>{}</th>", esc(h));
        out += "</tr>\n";
        for (const auto& row : b.table.rows) {
          out += "<tr>";
          for (const auto& cell : row)
            out += (looks_numeric(cell) ? "<td class=\"num\">" : "<td>") + esc(cell) + "</td>";
          out += "</tr>\n";
        }
        out += "</table>\n";
        break;
      }
      case Block::Kind::charts:
        out += "<div class=\"charts\">\n";
        for (const Chart& c : b.charts) out += "<figure>\n" + inline_svg(c.svg) + "</figure>\n";
        out += "</div>\n";
        break;
    }
  }
  return out + "</body>\n</html>\n";
}

std::string Document::markdown(const std::string& svg_prefix) const {
  std::string out = fmt::format("# {}\n", title_);
  for (const Block& b : blocks_) {
    switch (b.kind) {
      case Block::Kind::heading: out += fmt::format("\n## {}\n", b.text); break;
      case Block::Kind::paragraph: out += fmt::format("\n{}\n", b.text); break;
      case Block::Kind::note: out += fmt::format("\n> {}\n", b.text); break;
      case Block::Kind::code: out += fmt::format("\n```{}\n{}\n```\n", b.language, b.text); break;
      case Block::Kind::table: {
        out += "\n|";
        for (const auto& h : b.table.header) out += " " + md_cell(h) + " |";
        out += "\n|";
        for (size_t i = 0; i < b.table.header.size(); ++i) out += "---|";
        out += "\n";
        for (const auto& row : b.table.rows) {
          out += "|";
          for (const auto& cell : row) out += " " + md_cell(cell) + " |";
          out += "\n";
        }
        break;
      }
      case Block::Kind::charts:
        out += "\n";
        for (const Chart& c : b.charts)
          out += fmt::format("![{}]({}{}.svg)\n", c.title, svg_prefix, c.key);
        break;
    }
  }
  return out;
}

}  // namespace gradus::experiments::report
