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

// /dev/kmsg unread for a reason other than not being root (NOTE001's) and not named by the caller (UNK007's):
// root in a container without CAP_SYSLOG, a /dev without it. The verdict stands on the other facts, but the
// driver's own lines (an API mismatch a failed daemon start logged) were not seen, and the report says so.
std::vector<Finding> kernel_log_unread(const Snapshot& s) {
  if (s.kernel_log.source.has() || s.kernel_log.named || s.kernel_log.source.missing.rfind("needs root", 0) == 0) {
    return {};
  }
  Finding f;
  f.message = "The kernel log could not be read: the driver's lines in it (an API mismatch, the legacy flag's "
              "notice) were not checked";
  f.next_step = "Let gpuwarm read /dev/kmsg (root with CAP_SYSLOG; in a container, the host's /dev/kmsg), or name "
                "a saved log with --kernel-log.";
  f.evidence.push_back("kernel log not read: " + s.kernel_log.source.missing);
  return {f};
}

}  // namespace gpuwarm::checks
