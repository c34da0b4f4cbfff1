// Persistence branch: is every GPU persistent, and through the daemon rather
// than the legacy kernel flag?

#include <fmt/format.h>

#include "rules/checks.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm::checks {

std::vector<Finding> persistence_off(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (!gpu->persistence.is(false)) {
      continue;
    }
    Finding f;
    f.gpu = gpu->index;
    f.message = fmt::format("{}: persistence mode is Disabled; the driver de-initializes it whenever it goes idle "
                            "(seconds of cold start per job, clocks and power limits reset)",
                            gpu_label(*gpu));
    f.next_step = "Enable and start nvidia-persistenced through systemd (gpuwarm fix, or systemctl enable --now "
                  "nvidia-persistenced.service). Not `nvidia-smi -pm 1`.";
    f.evidence.emplace_back("nvmlDeviceGetPersistenceMode: Disabled");
    if (gpu->event_reasons_active.has()) {
      f.evidence.push_back("clock-event reasons: " + clock_reason_list(*gpu->event_reasons_active));
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> legacy_persistence(const Snapshot& s) {
  if (daemon_running(s)) {
    return {};
  }
  std::vector<unsigned> enabled;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (gpu->persistence.is(true)) {
      enabled.push_back(gpu->index);
    }
  }
  if (enabled.empty()) {
    return {};
  }
  Finding f;
  f.message = fmt::format(
      "Persistence is on for GPU {} only through the legacy kernel flag (nvidia-smi -pm 1): nvidia-persistenced "
      "is not running, so nothing restores it after a reboot or driver reload, and NVIDIA is retiring the flag",
      fmt::join(enabled, ", "));
  f.next_step = "Enable and start nvidia-persistenced through systemd (gpuwarm fix), then remove `nvidia-smi -pm 1` "
                "from node-init scripts and config management.";
  f.evidence.emplace_back("persistence Enabled, but no nvidia-persistenced process");
  if (s.kernel_log.legacy_persistence_notice) {
    f.evidence.emplace_back(
        "kernel: NVRM: Persistence mode is deprecated and will be removed in a future release");
  } else if (!s.kernel_log.source.has()) {
    f.evidence.push_back("kernel log not read (" + s.kernel_log.source.missing + ")");
  }
  return {f};
}

}  // namespace gpuwarm::checks
