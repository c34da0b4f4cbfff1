#include <algorithm>

#include <fmt/format.h>

#include "rules/checks.h"
#include "rules/helpers.h"
#include "rules/rule.h"

namespace gpuwarm {

namespace {

using S = Severity;
using R = Route;

// The runbook's decision order: driver first (nothing else is trustworthy
// without it), then the daemon binary, then clock causes persistence cannot
// fix, then the persistence fixes themselves, then notes.
constexpr RuleInfo k_rules[] = {
    // First: a recording that lacks facts this gpuwarm reads decides nothing else (their defaults read as fine).
    {"UNK010", "snapshot-incomplete", S::warning, R::unknown,
     "A saved snapshot lacks facts this gpuwarm reads (an older gpuwarm's, or edited): no verdict can rest on it",
     checks::snapshot_incomplete},
    {"DRV001", "driver-not-loaded", S::critical, R::driver_install,
     "No NVIDIA kernel module loaded, or NVML says the driver is not loaded", checks::driver_not_loaded},
    {"NVML001", "nvml-timeout", S::critical, R::unknown,
     "NVML did not answer within --nvml-timeout (a hung GPU or driver)", checks::nvml_timeout},
    {"DRV002", "nvml-unavailable", S::critical, R::driver_install,
     "Kernel module loaded but no libnvidia-ml.so.1 found anywhere known, a stub, or an incomplete install",
     checks::nvml_unavailable},
    // Before DRV003: its fix ends in a reboot, which also ends a pending one; the other way round takes two.
    {"DRV005", "gpus-on-other-driver", S::critical, R::driver_install,
     "The NVIDIA driver is loaded but another driver (nouveau, nova-core, ...) took some GPUs: jobs see fewer",
     checks::gpus_on_other_drivers},
    {"DRV003", "driver-version-mismatch", S::critical, R::reboot,
     "Kernel module and user-space driver versions differ (updated without reboot)",
     checks::driver_version_mismatch},
    {"DRV006", "user-space-older-than-module", S::critical, R::driver_install,
     "The loaded kernel module is newer than the user-space driver read: user space not upgraded with it, an "
     "older copy found first, or a downgrade not yet rebooted",
     checks::user_space_older_than_module},
    {"DRV004", "stale-client-mismatch", S::warning, R::note,
     "The kernel refused a client of another driver version although the host's halves agree",
     checks::stale_client_mismatch},
    {"GPU001", "gpu-fault", S::critical, R::ras,
     "NVML answers with a GPU fault (lost, reset required, timeout, ...), sees fewer GPUs than the kernel, or a "
     "GPU on the PCI bus was taken by no driver (it failed to probe)",
     checks::gpu_unreachable},
    {"PD001", "daemon-binary-missing", S::critical, R::driver_install, "nvidia-persistenced is not installed",
     checks::daemon_binary_missing},
    {"CLK001", "thermal-power-events", S::warning, R::ras,
     "Thermal or power clock-event reasons are active (RAS path)", checks::thermal_power_events},
    {"CLK002", "app-clocks-pinned", S::warning, R::clocks, "Application clocks differ from their defaults",
     checks::app_clocks_pinned},
    {"PM005", "persistence-optional", S::info, R::optional,
     "A GPU meant to power down when idle (RTD3, laptop, desktop display) and no job scheduler: persistence optional",
     checks::persistence_optional},
    {"PM001", "persistence-off", S::warning, R::fix, "Persistence mode is Disabled on a GPU",
     checks::persistence_off},
    {"PD002", "daemon-no-persistence-mode", S::warning, R::fix,
     "nvidia-persistenced runs, or is configured to run, with --no-persistence-mode",
     checks::daemon_no_persistence_mode},
    {"PD003", "unit-stop-when-unneeded", S::warning, R::fix, "The unit has StopWhenUnneeded=yes",
     checks::unit_stop_when_unneeded},
    {"PD006", "unit-failed", S::warning, R::fix, "nvidia-persistenced.service is in the failed state",
     checks::unit_failed},
    {"PD010", "daemon-outside-unit", S::warning, R::fix,
     "nvidia-persistenced runs although its unit is inactive or failed: started outside systemd",
     checks::daemon_outside_unit_runs},
    {"PD008", "unit-start-skipped", S::warning, R::note,
     "nvidia-persistenced.service is inactive because an ExecCondition (gpuwarm guard) skipped its last start",
     checks::unit_start_skipped},
    {"PD009", "guard-ignored", S::warning, R::note,
     "gpuwarm guard's drop-in is installed but this systemd does not know ExecCondition= (before 243; RHEL 8 before 8.3)",
     checks::guard_ignored},
    {"PD007", "unit-missing", S::warning, R::fix,
     "The daemon is installed but has no systemd unit, or one systemd cannot load (bad-setting, error)",
     checks::unit_missing},
    {"PM002", "legacy-persistence", S::warning, R::fix,
     "Persistence is on only through the legacy flag (daemon not running)", checks::legacy_persistence},
    {"PD004", "daemon-not-enabled", S::warning, R::fix, "nvidia-persistenced.service is not enabled for boot, or is masked",
     checks::daemon_not_enabled},
    {"PD005", "gpu-not-held", S::warning, R::fix, "A GPU NVML sees is not held open by the daemon",
     checks::gpu_not_held},
    {"UNK001", "nvml-init-unknown", S::critical, R::unknown,
     "nvmlInit failed for a reason that says nothing about the driver (permission, other): cannot tell",
     checks::nvml_init_unknown},
    {"UNK002", "gpu-count-unread", S::critical, R::unknown,
     "NVML could not count the GPUs, or saw none while the driver's GPU list was unread: cannot tell",
     checks::gpu_count_unread},
    {"UNK003", "gpu-handle-unread", S::critical, R::unknown, "NVML could not open a GPU (not a fault): cannot tell",
     checks::gpu_handle_unread},
    {"UNK004", "gpu-fact-unread", S::warning, R::unknown,
     "A per-GPU fact the verdict needs (persistence, event reasons, application clocks) could not be read",
     checks::gpu_fact_unread},
    {"UNK005", "unit-state-unread", S::warning, R::unknown,
     "systemd answered but the unit's load, active or enablement state could not be read", checks::unit_state_unread},
    {"UNK006", "process-list-unread", S::warning, R::unknown,
     "The process list could not be read (no /proc, or hidepid hides others' processes): is the daemon running?",
     checks::process_list_unread},
    {"UNK007", "kernel-log-unread", S::warning, R::unknown,
     "The kernel log named with --kernel-log could not be read (not a regular file, or in no format gpuwarm reads)",
     checks::named_kernel_log_unread},
    {"UNK008", "systemd-unanswered", S::warning, R::unknown,
     "systemd runs (or may run) on this host but did not answer on the system bus: the unit's state is unknown",
     checks::systemd_unanswered},
    {"UNK009", "nvml-not-opened", S::warning, R::unknown,
     "NVML was left closed: `gpuwarm probe` or `watch --load` was timing the GPUs, or `fix`, `reset` or "
     "`reload-modules` was changing the node (opening it would have spoiled the timing or held a GPU)",
     checks::nvml_not_opened},
    // Not UNK009: nothing ends by itself here, so no helper or alert may wait for it as for a busy node.
    {"UNK011", "root-not-trusted", S::warning, R::unknown,
     "As root, --root names a tree not vouched for with --trust-root: its libnvidia-ml was not loaded, so no GPU "
     "fact was read",
     checks::root_not_trusted},
    {"PM003", "persistence-masked", S::warning, R::note,
     "Persistence is off but other clients hold the GPU open now: masked, not fixed", checks::persistence_masked},
    {"PM004", "persistence-views-disagree", S::warning, R::note,
     "NVML says persistence Disabled while nvidia-persistenced holds the GPU (the verdict trusts the daemon)",
     checks::persistence_views_disagree},
    {"NOTE001", "needs-root", S::info, R::note, "Facts that need root were not checked", checks::needs_root},
    {"NOTE002", "no-service-manager", S::info, R::note, "systemd was not reachable", checks::no_service_manager},
    {"NOTE003", "kmsg-unread", S::info, R::note, "The kernel log could not be read", checks::kernel_log_unread},
};

struct RouteText {
  Route route;
  const char* code;
  const char* title;
  ExitCode exit_code;
};

constexpr RouteText k_route_text[] = {
    {R::note, "healthy", "Healthy: nvidia-persistenced keeps every GPU initialized", ExitCode::healthy},
    {R::fix, "action-needed", "Action needed: the persistence runbook applies", ExitCode::action_needed},
    {R::reboot, "reboot-pending", "Reboot pending: kernel module and user-space driver differ",
     ExitCode::reboot_pending},
    {R::driver_install, "driver-install", "Driver-install problem: not a persistence issue",
     ExitCode::routed_elsewhere},
    {R::ras, "ras", "Thermal/power or GPU fault (RAS): not a persistence issue", ExitCode::routed_elsewhere},
    {R::clocks, "pinned-clocks", "Application clocks pinned: not a persistence issue", ExitCode::routed_elsewhere},
    {R::unknown, "cannot-tell", "Cannot tell: a fact the verdict needs could not be read", ExitCode::cannot_tell},
    {R::optional, "persistence-optional", "Persistence optional: this GPU is meant to power down when idle",
     ExitCode::healthy},
};

const RouteText& route_text(Route r) {
  for (const auto& t : k_route_text) {
    if (t.route == r) {
      return t;
    }
  }
  return k_route_text[0];
}

Finding healthy_finding(const Snapshot& s) {
  Finding f;
  f.rule_id = "OK000";
  f.severity = Severity::info;
  f.route = Route::note;
  auto gpus = reachable_gpus(s);
  // Say "held" only where the daemon's open files were read (they need root); otherwise say what was.
  const bool held_read = !s.daemon.processes.empty() &&
                         std::all_of(s.daemon.processes.begin(), s.daemon.processes.end(),
                                     [](const DaemonProcess& p) { return p.held_minors.has(); });
  f.message = held_read ? fmt::format("{} GPU(s) persistent, held by nvidia-persistenced", gpus.size())
              : s.daemon.processes.empty()
                  ? fmt::format("{} GPU(s) persistent", gpus.size())
                  : fmt::format("{} GPU(s) persistent, nvidia-persistenced running (which GPUs it holds was not "
                                "read: {})",
                                gpus.size(), s.daemon.processes.front().held_minors.missing);
  // The verdict is about persistence now; whether the daemon comes back after a reboot is the unit's to say,
  // and where systemd could not be asked that stays unread, so the next step says so rather than "nothing".
  f.next_step = s.service.reachable
                    ? "Nothing to do."
                    : "Nothing to do now. Whether nvidia-persistenced starts at boot was not checked (NOTE002): "
                      "run `gpuwarm verify` where systemd can be reached.";
  // The readings the verdict rests on, each GPU's and the unit's, beside the daemon's process.
  auto held = daemon_held_minors(s);
  for (const GpuFacts* g : gpus) {
    auto minor = gpu_minor(s, *g);
    std::string line = fmt::format("GPU {}: nvmlDeviceGetPersistenceMode: {}", g->index,
                                   g->persistence.is(true) ? "Enabled" : "Disabled");
    if (held && minor) {
      line += fmt::format(", /dev/nvidia{} {}held by nvidia-persistenced", *minor,
                          std::find(held->begin(), held->end(), *minor) != held->end() ? "" : "not ");
    }
    f.evidence.push_back(std::move(line));
  }
  if (gpus.empty()) {
    f.evidence.push_back(fmt::format("nvmlDeviceGetCount: {}", s.nvml.device_count.value_or(0)));
  }
  for (const auto& p : s.daemon.processes) {
    f.evidence.push_back(describe_daemon_process(p));
  }
  if (s.service.reachable) {
    f.evidence.push_back(fmt::format("ActiveState={} UnitFileState={}", s.service.active_state.value_or("unread"),
                                     s.service.unit_file_state.value_or("unread")));
  }
  return f;
}

}  // namespace

std::span<const RuleInfo> rules() { return k_rules; }

const RuleInfo* find_rule(const std::string& id) {
  for (const auto& r : k_rules) {
    if (id == r.id) {
      return &r;
    }
  }
  return nullptr;
}

Diagnosis diagnose(const Snapshot& snapshot) {
  Diagnosis d;
  for (const auto& rule : k_rules) {
    auto found = rule.check(snapshot);
    std::stable_sort(found.begin(), found.end(), [](const Finding& a, const Finding& b) {
      return a.gpu.value_or(0) < b.gpu.value_or(0);
    });
    for (auto& f : found) {
      f.rule_id = rule.id;
      f.severity = rule.severity;
      // A rule that could not read what it decides on says so: its finding asks for no action but "cannot tell".
      f.route = f.route == Route::unknown ? Route::unknown : rule.route;
      d.findings.push_back(std::move(f));
    }
  }
  // Where persistence is optional (PM005), the persistence runbook's findings
  // ask for nothing: they stay as notes, and PM005 decides only if one fired.
  auto optional = std::find_if(d.findings.begin(), d.findings.end(),
                               [](const Finding& f) { return f.route == Route::optional; });
  if (optional != d.findings.end()) {
    bool demoted = false;
    for (auto& f : d.findings) {
      if (f.route == Route::fix) {
        f.route = Route::note;
        f.severity = Severity::info;
        f.next_step = "Optional here (PM005): " + f.next_step;
        demoted = true;
      }
    }
    // Unknown is never healthy, and "optional" exits 0: a fact that could not
    // be read still decides (cannot tell).
    const bool unknown = std::any_of(d.findings.begin(), d.findings.end(),
                                     [](const Finding& f) { return f.route == Route::unknown; });
    if (!demoted || unknown) {
      optional->route = Route::note;
    }
  }
  auto decisive = std::find_if(d.findings.begin(), d.findings.end(),
                               [](const Finding& f) { return f.route != Route::note; });
  const Finding healthy = healthy_finding(snapshot);
  const Finding& decider = decisive != d.findings.end() ? *decisive : healthy;
  const RouteText& text = route_text(decider.route);
  d.verdict.route = decider.route;
  d.verdict.code = text.code;
  d.verdict.title = text.title;
  d.verdict.rule_id = decider.rule_id;
  d.verdict.next_step = decider.next_step;
  d.verdict.exit_code = text.exit_code;
  if (decisive == d.findings.end()) {
    d.findings.insert(d.findings.begin(), healthy);
  }
  return d;
}

const char* to_string(Severity s) {
  switch (s) {
    case Severity::info: return "info";
    case Severity::warning: return "warning";
    case Severity::critical: return "critical";
  }
  return "info";
}

const char* to_string(Route r) {
  switch (r) {
    case Route::note: return "note";
    case Route::fix: return "fix";
    case Route::reboot: return "reboot";
    case Route::driver_install: return "driver-install";
    case Route::ras: return "ras";
    case Route::clocks: return "clocks";
    case Route::unknown: return "unknown";
    case Route::optional: return "optional";
  }
  return "note";
}

}  // namespace gpuwarm
