// The document model behind `gradus report` (experiments/lib/report.h): headings, paragraphs,
// tables, charts and code blocks, rendered once as a self-contained HTML page (inline CSS and SVG,
// no scripts, nothing fetched) and once as Markdown (charts as SVG files beside it).
#pragma once

#include <string>
#include <vector>

namespace gradus::experiments::report {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;  // each as long as the header
};

struct Chart {
  std::string key;    // file-name part: report_<key>.svg
  std::string title;  // alt text in Markdown
  std::string svg;    // one <svg> element (experiments/lib/svg_plot.h)
};

struct Block {
  enum class Kind { heading, paragraph, note, table, charts, code };
  Kind kind = Kind::paragraph;
  std::string text;               // heading, paragraph, note (a highlighted paragraph), code
  std::string language = "json";  // code: the Markdown fence's language ("text" for logs)
  Table table;
  std::vector<Chart> charts;  // shown side by side where the page is wide enough
};

class Document {
 public:
  explicit Document(std::string title) : title_(std::move(title)) {}
  void heading(std::string text) { blocks_.push_back({Block::Kind::heading, std::move(text)}); }
  void paragraph(std::string text) { blocks_.push_back({Block::Kind::paragraph, std::move(text)}); }
  void note(std::string text) { blocks_.push_back({Block::Kind::note, std::move(text)}); }
  void table(Table t);
  void charts(std::vector<Chart> charts);
  void code(std::string text, std::string language = "json") {
    Block b{Block::Kind::code, std::move(text)};
    b.language = std::move(language);
    blocks_.push_back(std::move(b));
  }
  // Appends another document's blocks as a section of this one (a pipeline's step): its title
  // becomes a heading, its headings are prefixed with `heading_prefix`, and its charts' keys
  // with `key_prefix` (their SVG files must not collide).
  void append(const Document& other, const std::string& heading_prefix,
              const std::string& key_prefix);
  const std::string& title() const { return title_; }

  // The whole page. Text is escaped; each chart's SVG is inlined as it is.
  std::string html() const;
  // Markdown; a chart becomes ![title](<svg_prefix><key>.svg).
  std::string markdown(const std::string& svg_prefix) const;
  // Every chart, in order.
  std::vector<Chart> all_charts() const;

 private:
  std::string title_;
  std::vector<Block> blocks_;
};

}  // namespace gradus::experiments::report
