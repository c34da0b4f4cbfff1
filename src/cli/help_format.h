#pragma once
// Help pages that fit 80 columns: CLI11's default formatter puts "Excludes: ..." into the option column
// and never wraps descriptions. This one keeps the option column to the name, type and default, says
// "Not with ..." in the description instead, and wraps descriptions, command summaries and footers.

#include <cstddef>
#include <string>

#include <CLI/CLI.hpp>

namespace gpuwarm {

constexpr std::size_t k_help_width = 80;

class HelpFormatter : public CLI::Formatter {
 public:
  HelpFormatter() { column_width(30); }
  std::string make_option(const CLI::Option* opt, bool is_positional) const override;
  std::string make_option_opts(const CLI::Option* opt) const override;
  std::string make_subcommand(const CLI::App* sub) const override;
  std::string make_footer(const CLI::App* app) const override;
  std::string make_description(const CLI::App* app) const override;
};

// `text` wrapped at `width` columns: the first line starts at `first_indent`, the rest at `indent`
// (both counted from the line's start). Words longer than a line stay whole. Counts UTF-8 code points.
std::string wrap_text(const std::string& text, std::size_t first_indent, std::size_t indent,
                      std::size_t width = k_help_width);

}  // namespace gpuwarm
