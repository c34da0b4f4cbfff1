// Notes: what this run could not see. They never change the verdict, but a
// verdict built on partial facts must say so.

#include <fmt/format.h>

#include "rules/checks.h"

namespace gpuwarm::checks {

std::vector<Finding> needs_root(const Snapshot& s) {
  Finding f;
  f.evidence = s.needs_root;
  for (const auto& gpu : s.nvml.gpus) {
    if (gpu.handle_error == "NO_PERMISSION") {
      f.evidence.push_back(fmt::format("GPU {}: NVML answered NO_PERMISSION", gpu.index));
    }
  }
  if (f.evidence.empty()) {
    return {};
  }
  f.message = "Some facts need root and were not checked";
  f.next_step = "Run `sudo gpuwarm diagnose` for the full picture.";
  return {f};
}

std::vector<Finding> no_service_manager(const Snapshot& s) {
  // On a host booted with systemd, an unanswered bus is UNK008's: not a host without systemd.
  if (s.service.reachable || (manager_may_run(s.service) && !s.service.not_asked)) {
    return {};
  }
  Finding f;
  if (s.service.not_asked) {
    f.message = "systemd was not asked: the nvidia-persistenced unit was not checked";
    f.next_step = "Run `gpuwarm diagnose` (without --no-systemd) where systemd can be reached to check the unit.";
  } else {
    f.message = "systemd was not reachable: the nvidia-persistenced unit was not checked";
    f.next_step = "On a systemd node, run gpuwarm where it can reach the system bus. Without systemd, start "
                  "nvidia-persistenced from this node's init system.";
  }
  f.evidence.push_back(s.service.unreachable);
  return {f};
}

}  // namespace gpuwarm::checks
