#include "output/table.h"

#include <algorithm>

namespace gpuwarm {

std::size_t visible_width(const std::string& s) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c == 0x1b) {
      while (i < s.size() && s[i] != 'm') {
        ++i;
      }
      continue;
    }
    if ((c & 0xC0) != 0x80) {
      ++width;
    }
  }
  return width;
}

std::string TextTable::render(const std::string& indent) const {
  std::vector<std::size_t> widths(m_header.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], visible_width(row[i]));
    }
  };
  measure(m_header);
  for (const auto& row : m_rows) {
    measure(row);
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line = indent;
    for (std::size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line.append(widths[i] - visible_width(row[i]) + 2, ' ');
      }
    }
    while (!line.empty() && line.back() == ' ') {
      line.pop_back();
    }
    out += line + "\n";
  };
  emit(m_header);
  for (const auto& row : m_rows) {
    emit(row);
  }
  return out;
}

}  // namespace gpuwarm
