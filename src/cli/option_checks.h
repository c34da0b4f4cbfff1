#pragma once
// Checks for numeric options that CLI11's own do not make: CLI::Range lets "nan" through (every comparison
// with NaN is false), and a deadline of NaN seconds is undefined behaviour once turned into a duration.

#include <cmath>
#include <string>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

namespace gpuwarm {

// A finite number from `min` to `max`, both included; the message reads like CLI11's own.
inline CLI::Validator finite_range(double min, double max) {
  return CLI::Validator(
      [min, max](std::string& input) -> std::string {
        double value = 0;
        if (!CLI::detail::lexical_cast(input, value) || !std::isfinite(value) || value < min || value > max) {
          return fmt::format("Value {} not in range [{} - {}]", input, min, max);
        }
        return {};
      },
      "");
}

}  // namespace gpuwarm
