#include "output/metrics.h"

#include <algorithm>
#include <array>
#include <map>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "core/strings.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm {

std::string prometheus_label_value(const std::string& value) {
  std::string out;
  out.reserve(value.size());
  // Controls first, as in every other output (a label holds a hostname, a version, a reason read from the
  // node): `metrics` on a terminal must not obey them. That takes newlines too; the exposition's escapes of
  // backslash and quote then apply on top.
  for (char c : escape_control(value)) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Families in the order first seen, each with its samples kept together (the exposition format wants
// one HELP/TYPE and contiguous samples per family).
class Exposition {
 public:
  void family(const std::string& name, const std::string& help) {
    if (m_index.count(name) == 0) {
      m_index[name] = m_families.size();
      m_families.push_back({name, help, {}});
    }
  }
  void sample(const std::string& name, const Labels& labels, double value) {
    std::string line = name;
    if (!labels.empty()) {
      line += '{';
      for (std::size_t i = 0; i < labels.size(); ++i) {
        line += fmt::format("{}{}=\"{}\"", i == 0 ? "" : ",", labels[i].first, prometheus_label_value(labels[i].second));
      }
      line += '}';
    }
    line += ' ' + fmt::format("{}", value);
    m_families[m_index.at(name)].samples.push_back(std::move(line));
  }
  std::string text() const {
    std::string out;
    for (const auto& f : m_families) {
      out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n", f.name, f.help, f.name);
      for (const auto& s : f.samples) {
        out += s + '\n';
      }
    }
    return out;
  }

 private:
  struct Family {
    std::string name;
    std::string help;
    std::vector<std::string> samples;
  };
  std::vector<Family> m_families;
  std::map<std::string, std::size_t> m_index;
};

constexpr std::array<const char*, 8> k_verdicts = {"healthy",       "action-needed", "reboot-pending",
                                                   "driver-install", "ras",           "pinned-clocks",
                                                   "cannot-tell",   "persistence-optional"};

std::string value_or_empty(const Fact<std::string>& f) { return f.has() ? *f : std::string{}; }

}  // namespace

std::string render_metrics(const Snapshot& s, const Diagnosis& d, const MetricsRun& run) {
  Exposition e;
  e.family("gpuwarm_build_info", "gpuwarm's version and the commit it was built from (always 1).");
  e.sample("gpuwarm_build_info", {{"version", run.version}, {"commit", run.commit}}, 1);
  e.family("gpuwarm_last_run_timestamp_seconds", "When this collection finished (Unix time).");
  e.sample("gpuwarm_last_run_timestamp_seconds", {}, run.finished_at_seconds);
  e.family("gpuwarm_collect_duration_seconds", "How long reading the node took.");
  e.sample("gpuwarm_collect_duration_seconds", {}, s.collect_ms / 1000.0);

  e.family("gpuwarm_verdict", "The runbook's verdict for this node: 1 for the verdict given, 0 for the others.");
  for (const char* code : k_verdicts) {
    e.sample("gpuwarm_verdict", {{"verdict", code}}, d.verdict.code == code ? 1 : 0);
  }
  e.family("gpuwarm_finding", "Findings per rule (one per GPU for per-GPU rules); absent when the rule did not fire.");
  std::map<std::pair<std::string, std::string>, int> findings;
  for (const auto& f : d.findings) {
    ++findings[{f.rule_id, to_string(f.severity)}];
  }
  for (const auto& [key, count] : findings) {
    e.sample("gpuwarm_finding", {{"rule_id", key.first}, {"severity", key.second}}, count);
  }

  e.family("gpuwarm_fact_unknown", "A node fact gpuwarm could not read (1), with why: never read as healthy.");
  auto unknown = [&e](const char* fact, const std::string& why) {
    e.sample("gpuwarm_fact_unknown", {{"fact", fact}, {"reason", why}}, 1);
  };

  if (!s.kernel_log.source.has()) {
    unknown("kernel_log", s.kernel_log.source.missing);
  }

  std::string kernel = s.driver.kernel_version.has() ? *s.driver.kernel_version : value_or_empty(s.driver.sys_module_version);
  // The user-space version as diagnose shows it: NVML's, else the library file's name (an NVML without the query).
  const std::string user_space = user_space_version(s);
  e.family("gpuwarm_driver_info", "Loaded kernel module and user-space library versions (always 1; empty when unread).");
  e.sample("gpuwarm_driver_info", {{"kernel_module_version", kernel}, {"user_space_version", user_space}}, 1);
  // From the rule, not the verdict (an NVML hang decides the verdict first); 0 only when both halves were read.
  const bool mismatch = std::any_of(d.findings.begin(), d.findings.end(),
                                    [](const Finding& f) { return f.rule_id == "DRV003"; });
  if (mismatch || (!user_space.empty() && !kernel.empty())) {
    e.family("gpuwarm_driver_reboot_pending",
             "1 when kernel module and user space differ as after an update not yet rebooted into (DRV003); a user "
             "space older than the module (DRV006) is a driver-install problem, in gpuwarm_finding.");
    e.sample("gpuwarm_driver_reboot_pending", {}, mismatch ? 1 : 0);
  } else {
    unknown("driver_reboot_pending", user_space.empty() ? "user-space version: " + s.nvml.user_space_version.missing
                                                        : "kernel module version unread");
  }
  // What tells a GPU node without its driver from a CPU-only node (both say driver-install).
  if (s.driver.unbound_gpus.has() && s.driver.gpus_on_other_drivers.has()) {
    e.family("gpuwarm_gpus_without_driver",
             "NVIDIA GPUs on the PCI bus that the NVIDIA driver does not drive: no driver took them (the nvidia "
             "module is missing or failed to probe them) or another one did (nouveau, nova-core). GPUs passed through "
             "(vfio-pci, pci-stub, pciback) are not counted.");
    e.sample("gpuwarm_gpus_without_driver", {},
             static_cast<double>(s.driver.unbound_gpus->size() + s.driver.gpus_on_other_drivers->size()));
  } else {
    unknown("gpus_without_driver", !s.driver.unbound_gpus.has() ? s.driver.unbound_gpus.missing
                                                                : s.driver.gpus_on_other_drivers.missing);
  }
  if (s.nvml.init_code.has()) {
    e.family("gpuwarm_nvml_init_seconds", "How long nvmlInit took in this run (slow on de-initialized GPUs).");
    e.sample("gpuwarm_nvml_init_seconds", {}, s.nvml.init_ms / 1000.0);
  }

  if (s.daemon.processes_unread.empty() || daemon_running(s)) {
    e.family("gpuwarm_persistenced_running", "1 when an nvidia-persistenced process runs on this node.");
    e.sample("gpuwarm_persistenced_running", {}, daemon_running(s) ? 1 : 0);
  } else {
    unknown("persistenced_running", "processes not listed: " + s.daemon.processes_unread);
  }
  // The unit's state, when systemd answered; otherwise an unknown with why, never a 0.
  auto unit_state = [&](const char* metric, const char* fact, const char* help, const Fact<std::string>& state,
                        std::initializer_list<const char*> good) {
    if (s.service.reachable && state.has()) {
      e.family(metric, help);
      e.sample(metric, {}, std::any_of(good.begin(), good.end(), [&](const char* g) { return state.is(g); }) ? 1 : 0);
    } else {
      unknown(fact, s.service.reachable ? state.missing : s.service.unreachable);
    }
  };
  unit_state("gpuwarm_persistenced_unit_active", "persistenced_unit_active",
             "1 when nvidia-persistenced.service is active.", s.service.active_state, {"active"});
  // What PD004 accepts as "starts at boot".
  if (std::string decided; auto at_boot = unit_starts_at_boot(s.service, &decided)) {
    e.family("gpuwarm_persistenced_unit_enabled",
             "1 when nvidia-persistenced.service starts at boot (enabled, generated, an alias, or static and "
             "wanted by another unit).");
    e.sample("gpuwarm_persistenced_unit_enabled", {}, *at_boot ? 1 : 0);
  } else {
    unknown("persistenced_unit_enabled", decided);
  }

  // Per GPU.
  bool daemon_minors_known = std::all_of(s.daemon.processes.begin(), s.daemon.processes.end(),
                                         [](const DaemonProcess& p) { return p.held_minors.has(); });
  e.family("gpuwarm_gpu_persistence_mode", "Persistence mode of the GPU as NVML reads it (1 Enabled, 0 Disabled).");
  e.family("gpuwarm_gpu_held_by_persistenced", "1 when nvidia-persistenced holds the GPU's device node open.");
  e.family("gpuwarm_gpu_held_by_other_clients", "Processes other than gpuwarm holding the GPU open (they keep it "
                                                "initialized and can hide de-initialization); looked for only "
                                                "while some GPU reads persistence Disabled.");
  e.family("gpuwarm_gpu_sm_clock_hertz", "Current SM clock.");
  e.family("gpuwarm_gpu_clock_event_reason_active", "1 while the clock-event reason is active.");
  e.family("gpuwarm_gpu_attach_seconds", "How long getting the GPU's handle took in this run: seconds when it "
                                        "had de-initialized (persistence off, nothing holding it).");
  e.family("gpuwarm_gpu_app_sm_clock_hertz", "Application SM clock in force (back at the default after a "
                                            "de-initialization reset what was set).");
  e.family("gpuwarm_gpu_default_app_sm_clock_hertz", "The GPU's default application SM clock.");
  e.family("gpuwarm_gpu_fact_unknown", "A GPU fact gpuwarm could not read (1), with why.");
  for (const auto& g : s.nvml.gpus) {
    Labels gpu = {{"gpu", std::to_string(g.index)}, {"uuid", value_or_empty(g.uuid)},
                  {"pci_bus_id", value_or_empty(g.pci_bus_id)}};
    auto gpu_unknown = [&](const char* fact, const std::string& why) {
      Labels l = gpu;
      l.emplace_back("fact", fact);
      l.emplace_back("reason", why);
      e.sample("gpuwarm_gpu_fact_unknown", l, 1);
    };
    if (!g.handle_error.empty()) {
      gpu_unknown("handle", g.handle_error);
      continue;
    }
    if (g.attach_ms >= 0) {
      e.sample("gpuwarm_gpu_attach_seconds", gpu, g.attach_ms / 1000.0);
    }
    if (g.app_clocks.sm.has()) {
      e.sample("gpuwarm_gpu_app_sm_clock_hertz", gpu, static_cast<double>(*g.app_clocks.sm) * 1e6);
    }
    if (g.default_app_clocks.sm.has()) {
      e.sample("gpuwarm_gpu_default_app_sm_clock_hertz", gpu, static_cast<double>(*g.default_app_clocks.sm) * 1e6);
    }
    if (g.persistence.has()) {
      e.sample("gpuwarm_gpu_persistence_mode", gpu, *g.persistence ? 1 : 0);
    } else {
      gpu_unknown("persistence_mode", g.persistence.missing);
    }
    const std::optional<unsigned> minor = gpu_minor(s, g);
    if (!minor) {
      gpu_unknown("held_by_persistenced", "minor number unread: " + g.minor.missing);
    } else if (!s.daemon.processes_unread.empty()) {
      gpu_unknown("held_by_persistenced", "processes not listed: " + s.daemon.processes_unread);
    } else if (s.daemon.processes.empty() && !s.daemon.foreign.empty()) {
      // The GPU Operator's daemon, in its driver container: its open files are not read. No pid in the label: a
      // new series per GPU at every restart of the daemon.
      gpu_unknown("held_by_persistenced",
                  "the daemon runs in another mount namespace (a container): its open files are not read");
    } else if (!daemon_minors_known) {
      // A label of a few values, not the reason's text: that names /proc/PID/fd, a new series at every restart.
      const std::string why = daemon_held_minors_missing(s);
      gpu_unknown("held_by_persistenced",
                  why == k_open_files_need_root                            ? "the daemon's open files could not be read (needs root)"
                  : why.find("refused to root") != std::string::npos ? "the daemon's open files were refused to root"
                                                                      : "the daemon's open files could not be read");
    } else {
      bool held = std::any_of(s.daemon.processes.begin(), s.daemon.processes.end(), [&](const DaemonProcess& p) {
        return std::find(p.held_minors->begin(), p.held_minors->end(), *minor) != p.held_minors->end();
      });
      e.sample("gpuwarm_gpu_held_by_persistenced", gpu, held ? 1 : 0);
    }
    if (!s.host.gpu_clients.has() && s.host.gpu_clients.missing == k_clients_not_scanned) {
      // Not looked for, by design (nothing to mask): no series, as for any metric not collected. Not an
      // unknown: an alert on every fact_unknown would otherwise fire on every healthy node.
    } else if (!minor || !s.host.gpu_clients.has()) {
      gpu_unknown("held_by_other_clients",
                  minor ? s.host.gpu_clients.missing : "minor number unread: " + g.minor.missing);
    } else {
      // The host's daemon is left out of the scan already; a container's daemon is left out here, by pid (a
      // comm is cut at 15 characters, so it never reads "nvidia-persistenced").
      auto count = std::count_if(s.host.gpu_clients->begin(), s.host.gpu_clients->end(), [&](const GpuClient& c) {
        return std::find(c.minors.begin(), c.minors.end(), *minor) != c.minors.end() &&
               std::none_of(s.daemon.foreign.begin(), s.daemon.foreign.end(),
                            [&](const ForeignDaemon& f) { return f.pid == c.pid; });
      });
      e.sample("gpuwarm_gpu_held_by_other_clients", gpu, static_cast<double>(count));
    }
    if (g.clocks.sm.has()) {
      e.sample("gpuwarm_gpu_sm_clock_hertz", gpu, static_cast<double>(*g.clocks.sm) * 1e6);
    } else {
      gpu_unknown("sm_clock", g.clocks.sm.missing);
    }
    if (g.event_reasons_active.has()) {
      // Labelled as nvidia-smi's --query-gpu fields spell them: dcgm-exporter exports only the bitmask.
      for (const auto& r : k_clock_reason_names) {
        const bool active = (*g.event_reasons_active & r.bit) != 0;
        // A reason this GPU cannot report gets no series rather than a false 0; where which it can report is
        // unread, only the active ones are known.
        if (g.event_reasons_supported.has() ? (*g.event_reasons_supported & r.bit) == 0 : !active) {
          continue;
        }
        Labels l = gpu;
        l.emplace_back("reason", r.field);
        e.sample("gpuwarm_gpu_clock_event_reason_active", l, active ? 1 : 0);
      }
      if (!g.event_reasons_supported.has()) {
        gpu_unknown("clock_event_reasons_supported", g.event_reasons_supported.missing);
      }
    } else {
      gpu_unknown("clock_event_reasons", g.event_reasons_active.missing);
    }
  }
  if (!s.nvml.device_count.has()) {
    unknown("gpu_count", s.nvml.device_count.missing);
  }
  if (!run.cold_start.empty()) {
    e.family("gpuwarm_gpu_cold_start_seconds",
             "Cold start per stage from the saved gpuwarm probe baseline (a job's first CUDA call on that GPU).");
    for (const auto& c : run.cold_start) {
      e.sample("gpuwarm_gpu_cold_start_seconds",
               {{"gpu", std::to_string(c.gpu)}, {"uuid", c.uuid}, {"pci_bus_id", c.pci_bus_id}, {"stage", c.stage}},
               c.seconds);
    }
  }
  if (!run.job_start.empty()) {
    e.family("gpuwarm_job_start_seconds",
             "From the saved gpuwarm probe baseline: launch until every GPU probed (label gpus) has a context, "
             "for a job started as one process (one-process) or as a process per GPU, each limited to its GPU "
             "(process-per-gpu) or each seeing all (process-per-gpu-all-visible).");
    for (const auto& j : run.job_start) {
      e.sample("gpuwarm_job_start_seconds", {{"method", j.method}, {"gpus", std::to_string(j.gpus)}}, j.seconds);
    }
  }
  if (!run.probe_baseline_unreadable.empty()) {
    unknown("probe_baseline", run.probe_baseline_unreadable);
  }
  return e.text();
}

}  // namespace gpuwarm
