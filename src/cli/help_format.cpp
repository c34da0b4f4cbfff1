#include "cli/help_format.h"

#include <sstream>
#include <vector>

namespace gpuwarm {

namespace {

std::size_t columns(const std::string& s) {
  std::size_t n = 0;
  for (char c : s) {
    n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;  // count code points, not bytes
  }
  return n;
}

std::vector<std::string> words_of(const std::string& text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  std::string w;
  while (in >> w) {
    words.push_back(w);
  }
  return words;
}

}  // namespace

std::string wrap_text(const std::string& text, std::size_t first_indent, std::size_t indent, std::size_t width) {
  std::string out;
  std::size_t col = first_indent;
  bool line_empty = true;
  for (const auto& w : words_of(text)) {
    std::size_t len = columns(w);
    if (!line_empty && col + 1 + len > width) {
      out += "\n" + std::string(indent, ' ');
      col = indent;
      line_empty = true;
    }
    if (!line_empty) {
      out += ' ';
      ++col;
    }
    out += w;
    col += len;
    line_empty = false;
  }
  return out;
}

std::string HelpFormatter::make_option_opts(const CLI::Option* opt) const {
  std::string out;
  if (!opt->get_option_text().empty()) {
    return " " + opt->get_option_text();
  }
  if (opt->get_type_size() != 0) {
    if (!opt->get_type_name().empty()) {
      out += " " + opt->get_type_name();
    }
    if (!opt->get_default_str().empty()) {
      out += "=" + opt->get_default_str();
    }
    if (opt->get_expected_max() == CLI::detail::expected_max_vector_size) {
      out += " ...";
    }
    if (opt->get_required()) {
      out += " (required)";
    }
  }
  return out;
}

std::string HelpFormatter::make_option(const CLI::Option* opt, bool is_positional) const {
  std::string left = "  " + make_option_name(opt, is_positional) + make_option_opts(opt);
  std::string desc = make_option_desc(opt);
  if (!opt->get_excludes().empty()) {
    std::string names;
    for (const CLI::Option* other : opt->get_excludes()) {
      names += (names.empty() ? "" : ", ") + other->get_name();
    }
    desc += (desc.empty() ? "" : ". ") + std::string("Not with ") + names + ".";
  }
  const std::size_t column = get_column_width();
  std::string out = left;
  if (desc.empty()) {
    return out + "\n";
  }
  if (columns(left) + 2 <= column) {
    out += std::string(column - columns(left), ' ');
  } else {
    out += "\n" + std::string(column, ' ');
  }
  return out + wrap_text(desc, column, column) + "\n";
}

std::string HelpFormatter::make_subcommand(const CLI::App* sub) const {
  std::string left = "  " + sub->get_display_name(true);
  const std::size_t column = 18;
  std::string out = left;
  if (columns(left) + 2 <= column) {
    out += std::string(column - columns(left), ' ');
  } else {
    out += "\n" + std::string(column, ' ');
  }
  return out + wrap_text(sub->get_description(), column, column) + "\n";
}

std::string HelpFormatter::make_description(const CLI::App* app) const {
  std::string desc = app->get_description();
  if (desc.empty()) {
    return {};
  }
  // One paragraph: the line breaks written into a description were for the old fixed-width output.
  return wrap_text(desc, 0, 0) + "\n";
}

// Footers are laid out by hand (tables, examples): a line that is too long is wrapped with its continuation
// indented past the line's own indentation.
std::string HelpFormatter::make_footer(const CLI::App* app) const {
  std::string footer = app->get_footer();
  if (footer.empty()) {
    return {};
  }
  // Lines that start at column 0 are prose: a run of them is one paragraph, re-wrapped at the help width
  // (their line breaks were written for a wider terminal). Indented lines are table rows and examples:
  // kept as written, a long one continued under its last column.
  std::string out;
  std::string paragraph;
  auto flush = [&]() {
    if (!paragraph.empty()) {
      out += wrap_text(paragraph, 0, 0) + "\n";
      paragraph.clear();
    }
  };
  std::istringstream lines(footer);
  std::string line;
  while (std::getline(lines, line)) {
    std::size_t lead = line.find_first_not_of(' ');
    if (lead == 0) {
      paragraph += (paragraph.empty() ? "" : " ") + line;
      continue;
    }
    flush();
    if (lead == std::string::npos || columns(line) <= k_help_width) {
      out += line + "\n";
      continue;
    }
    // Table rows ("  PM001    problem  why ..."): continue under the last column; else 4 deeper.
    std::size_t hang = lead;
    std::size_t indent = lead + 4;
    if (auto gap = line.rfind("  ", 40); gap != std::string::npos && gap > lead) {
      hang = indent = line.find_first_not_of(' ', gap);
    }
    // The row's first columns stay as written (their spacing aligns the table); the rest is wrapped.
    out += line.substr(0, hang) + wrap_text(line.substr(hang), hang, indent) + "\n";
  }
  flush();
  return out;
}

}  // namespace gpuwarm
