// Persistence branch: is every GPU persistent, and through the daemon rather
// than the legacy kernel flag?

#include <algorithm>

#include <fmt/format.h>

#include "rules/checks.h"
#include "core/strings.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm::checks {

namespace {

// True when the daemon's open files were read and include this GPU's node.
bool daemon_holds(const Snapshot& s, const GpuFacts& gpu) {
  auto held = daemon_held_minors(s);
  auto minor = gpu_minor(s, gpu);
  return held && minor && std::find(held->begin(), held->end(), *minor) != held->end();
}

std::string client_text(const GpuClient& c) { return fmt::format("pid {} ({})", c.pid, c.comm); }

// Known to run no systemd (not booted with it, its bus absent; not merely unasked): `gpuwarm fix` answers 6 there,
// and the daemon starts from the node's own init system.
bool known_without_systemd(const Snapshot& s) {
  return !s.service.reachable && !s.service.not_asked && !manager_may_run(s.service);
}

std::string start_from_init_system(const Snapshot& s) {
  // --user only for an account that exists (or was not looked for): the daemon refuses to start as a missing one.
  return fmt::format("Start nvidia-persistenced from this node's init system at boot: `{}{}` (no systemd here, so "
                     "`gpuwarm fix` cannot)",
                     s.daemon.binary.has() ? *s.daemon.binary : "nvidia-persistenced",
                     s.daemon.user_exists.is(false) ? "" : " --user nvidia-persistenced");
}

}  // namespace

std::vector<Finding> persistence_off(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (!gpu->persistence.is(false) || daemon_holds(s, *gpu)) {
      continue;  // the daemon's open handle outranks NVML's flag (PM004)
    }
    if (daemon_held_minors(s) && !gpu_minor(s, *gpu)) {
      continue;  // the daemon's handles were read, but not which is this GPU's: PD005's cannot tell, not "off"
    }
    Finding f;
    f.gpu = gpu->index;
    f.message = fmt::format("{}: persistence mode is Disabled; the driver de-initializes it whenever it goes idle "
                            "(seconds of cold start per job, clocks and power limits reset)",
                            gpu_label(*gpu));
    // A masked unit starts neither way: unmasking comes first (PD004 says which unmask).
    f.next_step = known_without_systemd(s) ? start_from_init_system(s) + ". Not `nvidia-smi -pm 1`."
                  : s.service.load_state.is("masked")
                      ? "Its unit is masked (PD004): unmask it, then enable and start nvidia-persistenced through "
                        "systemd (gpuwarm fix). Not `nvidia-smi -pm 1`."
                      : "Enable and start nvidia-persistenced through systemd (gpuwarm fix, or systemctl enable --now "
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
  if (daemon_running(s) || !daemon_processes_listed(s)) {
    return {};  // running, or not known not to run (UNK006)
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
  f.next_step = (known_without_systemd(s) ? start_from_init_system(s)
                                          : std::string("Enable and start nvidia-persistenced through systemd (gpuwarm fix)")) +
                ", then remove `nvidia-smi -pm 1` from node-init scripts and config management.";
  f.evidence.emplace_back("persistence Enabled, but no nvidia-persistenced process");
  if (s.kernel_log.legacy_persistence_notice) {
    f.evidence.emplace_back(
        "kernel: NVRM: Persistence mode is deprecated and will be removed in a future release");
  } else if (!s.kernel_log.source.has()) {
    f.evidence.push_back("kernel log not read (" + s.kernel_log.source.missing + ")");
  }
  return {f};
}

std::vector<Finding> persistence_masked(const Snapshot& s) {
  if (!s.host.gpu_clients.has()) {
    return {};
  }
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    const std::optional<unsigned> minor = gpu_minor(s, *gpu);
    if (!gpu->persistence.is(false) || !minor || daemon_holds(s, *gpu)) {
      continue;
    }
    Finding f;
    for (const auto& c : *s.host.gpu_clients) {
      if (std::find(c.minors.begin(), c.minors.end(), *minor) != c.minors.end()) {
        f.evidence.push_back(fmt::format("{} holds /dev/nvidia{}", client_text(c), *minor));
      }
    }
    if (f.evidence.empty()) {
      continue;
    }
    f.gpu = gpu->index;
    f.message = fmt::format(
        "{}: persistence is off, but {} other client(s) keep it initialized right now: the problem is masked, not "
        "fixed; once they exit, the next idle period de-initializes the GPU",
        gpu_label(*gpu), f.evidence.size());
    f.next_step = "Do not read stable clocks or a fast start as proof: enable nvidia-persistenced (gpuwarm fix) so "
                  "persistence no longer depends on which exporter or job happens to run.";
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> persistence_views_disagree(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (!gpu->persistence.is(false) || !daemon_holds(s, *gpu)) {
      continue;
    }
    Finding f;
    f.gpu = gpu->index;
    f.message = fmt::format(
        "{}: NVML reports persistence Disabled, but nvidia-persistenced holds /dev/nvidia{}; the verdict trusts the "
        "daemon's open handle, because holding the device open is what keeps the GPU initialized",
        gpu_label(*gpu), gpu_minor(s, *gpu).value_or(0));  // daemon_holds: known
    f.next_step = "Nothing to fix for this GPU if the daemon stays up. NVML's flag has been seen to lag the daemon "
                  "(GB200); if it persists after a daemon restart, report it with `gpuwarm snapshot`.";
    f.evidence.emplace_back("NVML view: nvmlDeviceGetPersistenceMode = Disabled");
    f.evidence.push_back(fmt::format("daemon view: nvidia-persistenced holds minors [{}]",
                                     fmt::join(*daemon_held_minors(s), ", ")));
    out.push_back(std::move(f));
  }
  return out;
}

namespace {

// SMBIOS chassis types (DSP0134 7.4.1), grouped as systemd-hostnamed does.
bool portable_chassis(unsigned t) { return t == 8 || t == 9 || t == 10 || t == 11 || t == 14 || (t >= 30 && t <= 32); }
bool desktop_chassis(unsigned t) { return t == 3 || t == 4 || t == 6 || t == 7 || t == 13 || t == 35 || t == 36; }

}  // namespace

std::vector<Finding> persistence_optional(const Snapshot& s) {
  if (!s.host.schedulers.has() || !s.host.schedulers->empty()) {
    return {};  // jobs are scheduled here (or it could not be told): every job's cold start counts
  }
  Finding f;
  bool rtd3 = false;
  for (const auto& kg : s.driver.kernel_gpus) {
    if (kg.runtime_d3.has() && starts_with(*kg.runtime_d3, "Enabled")) {
      rtd3 = true;
      f.evidence.push_back(fmt::format("/proc/driver/nvidia/gpus/{}/power: Runtime D3 status: {}", kg.bus_id,
                                       *kg.runtime_d3));
    }
  }
  const bool portable = s.host.chassis_type.has() && portable_chassis(*s.host.chassis_type);
  const bool desktop = s.host.chassis_type.has() && desktop_chassis(*s.host.chassis_type);
  if (portable) {
    f.evidence.push_back(fmt::format("chassis_type {} (a portable machine)", *s.host.chassis_type));
  }
  bool display = false;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (gpu->display_active.is(true) && desktop) {
      display = true;
      f.evidence.push_back(fmt::format("GPU {} drives a display on a desktop chassis (type {})", gpu->index,
                                       *s.host.chassis_type));
    }
  }
  // A laptop or desktop whose GPU is meant to power down (RTD3) or drives a
  // display. A server's chassis, or none known (most VMs), never qualifies.
  if (!(portable || desktop) || !(rtd3 || display)) {
    return {};
  }
  if (desktop && !display) {
    f.evidence.push_back(fmt::format("chassis_type {} (a desktop)", *s.host.chassis_type));
  }
  f.evidence.emplace_back("no job scheduler's node daemon running (slurmd, kubelet, pbs_mom, ...)");
  f.message =
      "Persistence is optional on this node: its GPU is meant to power down when idle (a laptop or desktop, no "
      "job scheduler). Keeping it initialized costs idle power: a held GPU cannot drop into runtime D3 in "
      "coarse-grained mode, and the daemon's --uvm-persistence-mode disables RTD3 altogether";
  f.next_step = "Nothing needs doing. Enable nvidia-persistenced only if the first CUDA call's seconds of start-up "
                "matter more than idle power here; if its unit is enabled and failing, disabling it "
                "(systemctl disable --now nvidia-persistenced.service) is a valid fix.";
  return {f};
}

}  // namespace gpuwarm::checks
