#include "snapshot/clock_reasons.h"

#include <fmt/format.h>

namespace gpuwarm {

std::vector<std::string> clock_reason_names(std::uint64_t mask) {
  std::vector<std::string> names;
  if (mask == 0) {
    names.emplace_back("None");
    return names;
  }
  std::uint64_t known = 0;
  for (const auto& r : k_clock_reason_names) {
    known |= r.bit;
    if ((mask & r.bit) != 0) {
      names.emplace_back(r.name);
    }
  }
  for (int bit = 0; bit < 64; ++bit) {
    std::uint64_t b = std::uint64_t{1} << bit;
    if ((mask & b) != 0 && (known & b) == 0) {
      names.push_back(fmt::format("{:#x}", b));
    }
  }
  return names;
}

std::string clock_reason_list(std::uint64_t mask) {
  return fmt::format("{}", fmt::join(clock_reason_names(mask), ", "));
}

}  // namespace gpuwarm
