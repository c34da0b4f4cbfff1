#pragma once
// A plain text table: columns sized to their widest cell, two spaces apart.
// Cells may carry ANSI colour; widths count only visible characters.

#include <string>
#include <vector>

namespace gpuwarm {

class TextTable {
 public:
  explicit TextTable(std::vector<std::string> header) : m_header(std::move(header)) {}
  void add_row(std::vector<std::string> row) { m_rows.push_back(std::move(row)); }
  // Header line first (as given; callers style it), then the rows.
  std::string render(const std::string& indent = "") const;

 private:
  std::vector<std::string> m_header;
  std::vector<std::vector<std::string>> m_rows;
};

// Visible width: ANSI escapes skipped, UTF-8 continuation bytes not counted.
std::size_t visible_width(const std::string& s);

}  // namespace gpuwarm
