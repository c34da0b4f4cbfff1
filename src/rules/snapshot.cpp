// UNK010: a saved snapshot that lacks keys this gpuwarm writes (snapshot_json.cpp lists them on reading).
// Cannot tell, first of all rules: the defaults standing in for the missing keys read as "looked, nothing wrong".

#include <algorithm>
#include <cstddef>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "rules/checks.h"

namespace gpuwarm::checks {

// A snapshot read back without keys this gpuwarm writes: the defaults standing in for them read as "looked,
// nothing wrong" (no hang, the process list whole, not a named log), so no verdict can rest on it.
std::vector<Finding> snapshot_incomplete(const Snapshot& s) {
  if (s.absent_keys.empty()) {
    return {};
  }
  constexpr std::size_t k_named = 4;
  constexpr std::size_t k_listed = 12;
  const auto& keys = s.absent_keys;
  Finding f;
  f.route = Route::unknown;
  f.message = fmt::format(
      "This snapshot lacks {} fact(s) this gpuwarm reads ({}{}): it was saved by an older gpuwarm, or edited, and "
      "their defaults would stand in for readings",
      keys.size(), fmt::join(keys.begin(), keys.begin() + static_cast<std::ptrdiff_t>(std::min(keys.size(), k_named)), ", "),
      keys.size() > k_named ? ", ..." : "");
  f.next_step = "Record the node again with this gpuwarm (`gpuwarm snapshot -o FILE` there) and diagnose that "
                "recording.";
  for (std::size_t i = 0; i < keys.size() && i < k_listed; ++i) {
    f.evidence.push_back("not in this snapshot: " + keys[i]);
  }
  if (keys.size() > k_listed) {
    f.evidence.push_back(fmt::format("and {} more", keys.size() - k_listed));
  }
  return {f};
}

}  // namespace gpuwarm::checks
