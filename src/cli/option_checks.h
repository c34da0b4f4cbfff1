#pragma once
// Checks for numeric options that CLI11's own do not make: CLI::Range lets "nan" through (every comparison
// with NaN is false), and a deadline of NaN seconds is undefined behaviour once turned into a duration.

#include <cmath>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace gpuwarm {

// A finite number from `min` to `max`, both included; the message reads like CLI11's own.
inline CLI::Validator finite_range(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value)) {
          return fmt::format("{} is not a number (give one from {} to {})", input, min, max);
        }
        if (!std::isfinite(value) || value < min || value > max) {
          return fmt::format("{} is out of range (give one from {} to {})", input, min, max);
        }
        return {};
      },
      "");
}

// A whole number from `min` to `max`, both included, said the same way as finite_range.
inline CLI::Validator whole_number_range(unsigned long long min, unsigned long long max) {
  return CLI::Validator(
      [min, max](std::string& input) -> std::string {
        unsigned long long value = 0;
        const bool negative = input.size() > 1 && input[0] == '-' && input.find_first_not_of("0123456789", 1) == std::string::npos;
        if (!negative && (input.empty() || input.find_first_not_of("0123456789") != std::string::npos ||
                          !CLI::detail::lexical_cast(input, value))) {
          return fmt::format("{} is not a whole number (give one from {} to {})", input, min, max);
        }
        if (negative || value < min || value > max) {
          return fmt::format("{} is out of range (give one from {} to {})", input, min, max);
        }
        return {};
      },
      "");
}

// Makes a relative path option ("tf", "roots/node1") absolute from the working directory as it is parsed:
// gpuwarm's writer and its trusted-executable check take absolute paths only, and an option the shell
// completed relative must mean what it meant there. Joined as text; no link is resolved.
inline CLI::Validator from_working_directory() {
  return CLI::Validator(
      [](std::string& input) -> std::string {
        if (input.empty() || input.front() == '/') {
          return {};
        }
        std::error_code ec;
        std::filesystem::path absolute = std::filesystem::absolute(input, ec);
        if (ec) {
          return fmt::format("cannot tell where {} is: {}", input, ec.message());
        }
        // "." parts dropped ("." is the folder itself, so messages say /x/gpuwarm.prom, not /x/./gpuwarm.prom);
        // ".." kept: past a link it is not the folder the text says.
        std::filesystem::path cleaned;
        for (const auto& part : absolute) {
          if (part != ".") {
            cleaned /= part;
          }
        }
        input = cleaned.string();
        return {};
      },
      "");
}

// An option naming a file gpuwarm loads or runs (--nvml, --cuda, guard's --daemon): it must exist, or a typo
// would be judged as a fact about the node ("no driver", "driver-install problem") and drain it; a relative
// name is the working directory's file, never a search of the loader's path.
inline CLI::Option* existing_file_path(CLI::Option* option) {
  return option->check(CLI::ExistingFile.description(""))->transform(from_working_directory())->type_name("PATH");
}

// An option that takes one word of a fixed set: checked, and shown as "auto|always|never" in its help, where
// completion (cli/completion.cpp) also finds the words to offer.
inline CLI::Option* one_of(CLI::Option* option, const std::vector<std::string>& words) {
  std::string shown;
  for (const auto& w : words) {
    shown += (shown.empty() ? "" : "|") + w;
  }
  return option->check(CLI::IsMember(words).description(""))->type_name(shown);
}

}  // namespace gpuwarm
