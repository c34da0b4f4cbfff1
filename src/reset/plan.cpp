#include "reset/plan.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>

#include <fmt/format.h>

#include "fix/plan.h"  // k_unit_name
#include "nvml/errors.h"

namespace gpuwarm {

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "00000000:06:00.0" (NVML) and "0000:06:00.0" (the kernel) name the same device.
std::string short_bus_id(const std::string& id) {
  std::string l = lower(id);
  auto colon = l.find(':');
  if (colon == 8 && l.compare(0, 4, "0000") == 0) {
    return l.substr(4);
  }
  return l;
}

const GpuFacts* gpu_by_index(const Snapshot& s, unsigned index) {
  for (const auto& g : s.nvml.gpus) {
    if (g.index == index) {
      return &g;
    }
  }
  return nullptr;
}

const KernelGpu* kernel_gpu(const Snapshot& s, const GpuFacts& g) {
  if (!g.pci_bus_id.has()) {
    return nullptr;
  }
  for (const auto& k : s.driver.kernel_gpus) {
    if (short_bus_id(k.bus_id) == short_bus_id(*g.pci_bus_id)) {
      return &k;
    }
  }
  return nullptr;
}

// "500" for 500000 mW, "312.5" for 312500: nvidia-smi -pl takes watts.
std::string watts(unsigned mw) {
  if (mw % 1000 == 0) {
    return std::to_string(mw / 1000);
  }
  std::string w = fmt::format("{:.3f}", mw / 1000.0);
  while (w.back() == '0') {
    w.pop_back();
  }
  return w;
}

// The commands that set again what a reset returns to its default (application clocks, the power limit), one
// per setting; each setting that cannot be set again (or will not be: --no-restore) is named in `notes`.
std::vector<std::vector<std::string>> restore_commands(const Snapshot& s, const std::vector<GpuSettingsBefore>& settings,
                                                       const ResetInputs& in, std::vector<std::string>& notes) {
  std::vector<std::vector<std::string>> out;
  for (const auto& b : settings) {
    const GpuFacts* g = gpu_by_index(s, b.index);
    if (b.app_sm_mhz) {
      // -ac takes <memory,graphics>; graphics and SM move together, so the SM clock stands in when graphics
      // was not read.
      unsigned graphics = g->app_clocks.graphics.value_or(*b.app_sm_mhz);
      std::string command = fmt::format("{} -i {} -ac {},{}", in.nvidia_smi, b.pci_bus_id,
                                        b.app_mem_mhz ? std::to_string(*b.app_mem_mhz) : "<memory MHz>", graphics);
      if (!in.restore_settings) {
        notes.push_back(fmt::format("GPU {}: application clocks {} MHz (SM) are set; the reset returns them to the "
                                    "default and --no-restore leaves them there ({} sets them again)",
                                    b.index, *b.app_sm_mhz, command));
      } else if (!b.app_mem_mhz) {
        notes.push_back(fmt::format("GPU {}: application clocks {} MHz (SM) are set, but the memory application "
                                    "clock could not be read ({}): gpuwarm cannot set them again after the reset "
                                    "({})",
                                    b.index, *b.app_sm_mhz, g->app_clocks.mem.missing, command));
      } else {
        out.push_back({in.nvidia_smi, "-i", b.pci_bus_id, "-ac", fmt::format("{},{}", *b.app_mem_mhz, graphics)});
      }
    }
    if (b.requested_power_limit_mw) {
      if (!in.restore_settings) {
        notes.push_back(fmt::format("GPU {}: power limit {} W is set (default {} W); the reset returns it to the "
                                    "default and --no-restore leaves it there ({} -i {} -pl {} sets it again)",
                                    b.index, watts(*b.requested_power_limit_mw), watts(*g->default_power_limit_mw),
                                    in.nvidia_smi, b.pci_bus_id, watts(*b.requested_power_limit_mw)));
      } else {
        out.push_back({in.nvidia_smi, "-i", b.pci_bus_id, "-pl", watts(*b.requested_power_limit_mw)});
      }
    } else {
      // Unknown is not "at its default": say a reset may lose it. NOT_SUPPORTED means no limit to manage.
      for (const Fact<unsigned>* f : {&g->requested_power_limit_mw, &g->default_power_limit_mw}) {
        if (!f->has() && nvml::meaning_of_reason(f->missing) != nvml::Meaning::not_supported) {
          notes.push_back(fmt::format("GPU {}: whether its power limit was set away from the default could not be "
                                      "read ({}): if it was, the reset returns it to the default",
                                      b.index, f->missing));
          break;
        }
      }
    }
  }
  return out;
}

ResetPlan refuse(ResetPlan plan, ExitCode code, std::string reason) {
  plan.outcome = ResetOutcome::refused;
  plan.exit_code = code;
  plan.reason = std::move(reason);
  plan.steps.clear();
  return plan;
}

}  // namespace

TargetResolution resolve_reset_targets(const Snapshot& s, const std::vector<std::string>& ids) {
  TargetResolution out;
  // No GPU can be named where there is no driver, or where NVML could not list them: say which.
  if (s.nvml.gpus.empty() && !s.driver.module_loaded) {
    out.code = ExitCode::routed_elsewhere;
    out.error = "no NVIDIA driver is present (no kernel module loaded): there is no GPU to reset";
    return out;
  }
  if (s.nvml.gpus.empty() && !s.nvml.device_count.has()) {
    out.code = ExitCode::cannot_tell;
    out.error = "NVML could not list the GPUs (" +
                (s.nvml.device_count.missing.empty() ? s.nvml.init_error : s.nvml.device_count.missing) +
                "), so none can be named: run `gpuwarm diagnose`";
    return out;
  }
  std::set<unsigned> chosen;
  for (const auto& id : ids) {
    const GpuFacts* hit = nullptr;
    for (const auto& g : s.nvml.gpus) {
      bool index_match = std::to_string(g.index) == id;
      bool uuid_match = g.uuid.has() && lower(*g.uuid) == lower(id);
      bool bus_match = g.pci_bus_id.has() && short_bus_id(*g.pci_bus_id) == short_bus_id(id);
      if (index_match || uuid_match || bus_match) {
        hit = &g;
        break;
      }
    }
    if (hit == nullptr) {
      std::string known;
      for (const auto& g : s.nvml.gpus) {
        known += fmt::format("{}{} ({}, {})", known.empty() ? "" : "; ", g.index, g.uuid.has() ? *g.uuid : "?",
                             g.pci_bus_id.has() ? *g.pci_bus_id : "?");
      }
      out.error = fmt::format("no GPU \"{}\": NVML sees {}", id, known.empty() ? "none" : known);
      return out;
    }
    chosen.insert(hit->index);
  }
  out.indices.assign(chosen.begin(), chosen.end());
  return out;
}

std::vector<GpuClient> reset_blockers(const Snapshot& s, const std::vector<unsigned>& targets) {
  std::set<unsigned> minors;
  for (unsigned t : targets) {
    const GpuFacts* g = gpu_by_index(s, t);
    if (g != nullptr && g->minor.has()) {
      minors.insert(*g->minor);
    }
  }
  std::set<int> daemon_pids;
  for (const auto& p : s.daemon.processes) {
    daemon_pids.insert(p.pid);
  }
  std::vector<GpuClient> out;
  if (!s.host.gpu_clients.has()) {
    return out;
  }
  for (const auto& c : *s.host.gpu_clients) {
    if (daemon_pids.count(c.pid) != 0) {
      continue;  // the daemon: stopping it is the point
    }
    if (std::any_of(c.minors.begin(), c.minors.end(), [&](unsigned m) { return minors.count(m) != 0; })) {
      out.push_back(c);
    }
  }
  return out;
}

HoldersNow holders_now(const Snapshot& now, const std::vector<unsigned>& targets) {
  if (auto still = reset_blockers(now, targets); !still.empty()) {
    std::string text = "the GPUs are held:";
    for (const auto& c : still) {
      text += fmt::format("\npid {} ({})", c.pid, c.comm);
    }
    return {text, ExitCode::action_needed};
  }
  if (!now.host.gpu_clients.has()) {
    return {"the processes could not be listed (" + now.host.gpu_clients.missing + "): the GPUs may be held",
            ExitCode::cannot_tell};
  }
  if (now.host.unreadable_processes > 0) {
    return {fmt::format("{} processes' open files could not be read: the GPUs may be held",
                        now.host.unreadable_processes),
            ExitCode::cannot_tell};
  }
  return {};
}

ResetPlan plan_reset(const Snapshot& s, const std::vector<unsigned>& targets, const ResetInputs& in) {
  ResetPlan plan;
  plan.targets = targets;
  if (targets.empty()) {
    return refuse(std::move(plan), ExitCode::usage, "no GPU to reset: name one with --gpu");
  }
  // Facts a safe reset needs; without them nothing is done (unknown is never "free to reset").
  if (!s.host.gpu_clients.has()) {
    return refuse(std::move(plan), ExitCode::cannot_tell,
                  "cannot tell which processes hold the GPUs (" + s.host.gpu_clients.missing +
                      "): run as root so every process's open files can be read");
  }
  if (s.host.unreadable_processes > 0) {
    return refuse(std::move(plan), ExitCode::cannot_tell,
                  fmt::format("{} processes' open files could not be read: one of them may hold the GPU; run as root",
                              s.host.unreadable_processes));
  }
  for (unsigned t : targets) {
    const GpuFacts* g = gpu_by_index(s, t);
    if (g == nullptr) {
      return refuse(std::move(plan), ExitCode::usage, fmt::format("no GPU {}", t));
    }
    if (!g->handle_error.empty() && g->handle_error == "GPU_IS_LOST") {
      return refuse(std::move(plan), ExitCode::routed_elsewhere,
                    fmt::format("GPU {} has fallen off the bus (GPU_IS_LOST): a reset cannot reach it. Check the "
                                "kernel log for Xid 79, then power-cycle the node (or reseat the GPU).",
                                t));
    }
    if (!g->pci_bus_id.has()) {
      return refuse(std::move(plan), ExitCode::cannot_tell,
                    fmt::format("GPU {}'s PCI bus id could not be read ({}): nothing to name in the reset", t,
                                g->pci_bus_id.missing));
    }
    if (!g->minor.has()) {
      // Holders are matched by /dev/nvidiaN: without N, a job on this GPU would look like no holder at all.
      return refuse(std::move(plan), ExitCode::cannot_tell,
                    fmt::format("GPU {}'s minor number (its /dev/nvidiaN) could not be read ({}): gpuwarm cannot "
                                "tell which processes hold it, so it does not reset it",
                                t, g->minor.missing));
    }
    if (const KernelGpu* k = kernel_gpu(s, *g); k != nullptr && k->excluded) {
      return refuse(std::move(plan), ExitCode::routed_elsewhere,
                    fmt::format("GPU {} ({}) is excluded by the driver (NVreg_ExcludedGpus or an RmExcludedGpus "
                                "decision): a reset does not bring it back; remove the exclusion and reload the "
                                "driver or reboot",
                                t, *g->pci_bus_id));
    }
  }
  // NVSwitch systems: the sequence depends on the architecture and on Fabric Manager (Ampere needs it running
  // for an individual reset; Hopper and later want it stopped around the reset and restarted, or CUDA jobs
  // fail after the reset) -- NVIDIA Fabric Manager User Guide r2.3, "GPU Reset" and "Initializing NVSwitch
  // and NVLink"; nvidia-smi(1) on -r. gpuwarm does not manage Fabric Manager, so it refuses here.
  // An NVSwitch shows as a PCI device whether or not its driver made /dev nodes; unknown is a refusal too.
  std::string switch_seen;
  for (const auto& node : s.driver.device_nodes) {
    if (node.path.rfind("/dev/nvidia-nvswitch", 0) == 0 && switch_seen.empty()) {
      switch_seen = node.path;
    }
  }
  if (switch_seen.empty() && s.driver.nvswitches.has() && !s.driver.nvswitches->empty()) {
    switch_seen = "PCI " + s.driver.nvswitches->front() + ", class 0x0680";
  }
  if (switch_seen.empty() && !s.driver.nvswitches.has()) {
    return refuse(std::move(plan), ExitCode::cannot_tell,
                  "whether this node has NVSwitches could not be read (" + s.driver.nvswitches.missing +
                      "): on an NVSwitch system a reset needs Fabric Manager's procedure, so gpuwarm does not "
                      "reset blind");
  }
  if (!switch_seen.empty()) {
    return refuse(std::move(plan), ExitCode::routed_elsewhere,
                  "this node has NVSwitches (" + switch_seen +
                      "): a reset there depends on the architecture and on Fabric Manager (stop it around the "
                      "reset on Hopper and later, keep it running on Ampere; see NVIDIA's Fabric Manager User "
                      "Guide, \"GPU Reset\"). Follow that procedure; gpuwarm does not drive Fabric Manager.");
  }
  // MIG: a reset destroys the GPU's GPU and compute instances; they must be recreated afterwards (NVIDIA MIG
  // User Guide, "Getting Started with MIG").
  for (unsigned t : targets) {
    const GpuFacts* g = gpu_by_index(s, t);
    if (!g->mig_mode.has() && nvml::meaning_of_reason(g->mig_mode.missing) != nvml::Meaning::not_supported) {
      return refuse(std::move(plan), ExitCode::cannot_tell,
                    fmt::format("GPU {}'s MIG mode could not be read ({}): a reset would destroy MIG instances "
                                "if there are any",
                                t, g->mig_mode.missing));
    }
    if (g->mig_mode.is(1)) {
      return refuse(std::move(plan), ExitCode::routed_elsewhere,
                    fmt::format("GPU {} has MIG enabled: a reset destroys its GPU and compute instances, which "
                                "must be recreated (nvidia-smi mig, or the MIG manager) -- drain it and reset "
                                "with nvidia-smi by hand if that is intended",
                                t));
    }
    // A reset is what applies a pending MIG mode change: the GPU would come back in the other mode (with no
    // instances, its CUDA jobs failing), and the verification would not notice.
    if (g->mig_mode.has() && g->mig_mode_pending.has() && *g->mig_mode_pending != *g->mig_mode) {
      return refuse(std::move(plan), ExitCode::routed_elsewhere,
                    fmt::format("GPU {} has a MIG mode change pending (now {}, {} after a reset): a reset applies "
                                "it. Cancel it (nvidia-smi -i {} -mig {}) or apply it on purpose, with the MIG "
                                "instances that follow, by hand",
                                t, *g->mig_mode == 1 ? "enabled" : "disabled",
                                *g->mig_mode_pending == 1 ? "enabled" : "disabled", t, *g->mig_mode));
    }
  }
  auto blockers = reset_blockers(s, targets);
  if (!blockers.empty()) {
    std::string who;
    if (in.holder_command_lines.size() == blockers.size()) {
      for (const auto& line : in.holder_command_lines) {
        who += "\n  " + line;
      }
    } else {
      for (const auto& b : blockers) {
        who += fmt::format("\n  pid {} ({})", b.pid, b.comm);
      }
    }
    return refuse(std::move(plan), ExitCode::action_needed,
                  "these processes hold the GPU; stop them (or drain the node) first, nothing was stopped:" + who);
  }
  if (in.nvidia_smi.empty()) {
    return refuse(std::move(plan), ExitCode::tool_error,
                  "nvidia-smi, which performs the reset, is not usable: " + in.nvidia_smi_missing);
  }

  // Stopping the daemon de-initializes every GPU nothing else holds, not only the targets: their application
  // clocks and power limits go back to the defaults too. Their settings are captured, set again and checked
  // like the targets'.
  const bool daemon_stops = !s.daemon.processes.empty() || !s.daemon.processes_unread.empty() ||
                            (s.service.reachable && s.service.active_state.is("active"));
  std::vector<unsigned> kept_in_step = targets;
  if (daemon_stops) {
    for (const auto& g : s.nvml.gpus) {
      if (std::find(targets.begin(), targets.end(), g.index) != targets.end() || !g.handle_error.empty()) {
        continue;
      }
      if (!g.pci_bus_id.has()) {
        plan.notes.push_back(fmt::format("GPU {} is not reset, but stopping nvidia-persistenced de-initializes it "
                                         "if nothing else holds it; its PCI bus id could not be read ({}), so its "
                                         "settings cannot be set again by gpuwarm",
                                         g.index, g.pci_bus_id.missing));
        continue;
      }
      kept_in_step.push_back(g.index);
    }
  }
  for (unsigned t : kept_in_step) {
    const GpuFacts* g = gpu_by_index(s, t);
    GpuSettingsBefore before;
    before.index = t;
    before.uuid = g->uuid.has() ? *g->uuid : "";
    before.pci_bus_id = *g->pci_bus_id;
    if (g->app_clocks.sm.has() && g->default_app_clocks.sm.has() && *g->app_clocks.sm != *g->default_app_clocks.sm) {
      before.app_sm_mhz = *g->app_clocks.sm;
      if (g->app_clocks.mem.has()) {
        before.app_mem_mhz = *g->app_clocks.mem;
      }
    }
    if (g->power_limit_mw.has()) {
      before.power_limit_mw = *g->power_limit_mw;
    }
    if (g->requested_power_limit_mw.has() && g->default_power_limit_mw.has() &&
        *g->requested_power_limit_mw != *g->default_power_limit_mw) {
      before.requested_power_limit_mw = *g->requested_power_limit_mw;
    }
    plan.settings.push_back(before);
  }

  plan.daemon_was_active = s.service.reachable && s.service.active_state.is("active");
  if (s.service.reachable && !plan.daemon_was_active && !s.daemon.processes.empty()) {
    return refuse(std::move(plan), ExitCode::action_needed,
                  fmt::format("nvidia-persistenced runs (pid {}) but not as {}: it would hold the GPUs through the "
                              "reset, and gpuwarm stops it only through systemd. Stop it (kill {}), run gpuwarm fix to start it "
                              "through systemd, then reset.",
                              s.daemon.processes.front().pid, k_unit_name, s.daemon.processes.front().pid));
  }
  std::vector<std::string> reset_argv = {in.nvidia_smi, "--gpu-reset", "-i"};
  std::string ids;
  for (unsigned t : targets) {
    ids += (ids.empty() ? "" : ",") + *gpu_by_index(s, t)->pci_bus_id;
  }
  reset_argv.push_back(ids);

  std::vector<std::vector<std::string>> restores = restore_commands(s, plan.settings, in, plan.notes);

  if (!s.service.reachable) {
    plan.outcome = ResetOutcome::no_service_manager;
    plan.exit_code = ExitCode::no_service_manager;
    plan.reason = "systemd is not reachable here (" + s.service.unreachable +
                  "): nothing was changed. The same steps by hand:";
    if (manager_may_run(s.service)) {
      // systemd runs here but did not answer: whether the unit runs is unknown (UNK008), not absent.
      plan.exit_code = ExitCode::cannot_tell;
      plan.reason = manager_unanswered(s.service) + " (" + s.service.unreachable +
                    "): nothing was changed. Check the system bus (systemctl status dbus.service) and run reset "
                    "again; the same steps by hand, with systemctl once it answers:";
    }
    // Where the processes could not be listed, the daemon may run: say so rather than leave the step out.
    bool daemon_running = !s.daemon.processes.empty() || !s.daemon.processes_unread.empty();
    if (daemon_running) {
      plan.manual.push_back(s.daemon.processes.empty()
                                ? "stop nvidia-persistenced if it runs (the processes could not be listed; the "
                                  "reset fails while it holds the GPUs)"
                                : "stop nvidia-persistenced (it holds every GPU open; the reset fails while it does)");
    }
    plan.manual.push_back(fmt::format("{}", fmt::join(reset_argv, " ")));
    if (daemon_running) {
      plan.manual.push_back(restores.empty() ? "start nvidia-persistenced again, also if the reset failed"
                                             : "start nvidia-persistenced again, also if the reset failed, and wait "
                                               "until it holds /dev/nvidiaN again (ls -l /proc/<its pid>/fd) before "
                                               "setting what follows: a setting made while nothing holds the GPU "
                                               "is lost");
    }
    for (const auto& argv : restores) {
      plan.manual.push_back(fmt::format("{}", fmt::join(argv, " ")));
    }
    plan.manual.push_back("gpuwarm verify");
    return plan;
  }

  if (plan.daemon_was_active && !in.stopped_with_unread.empty()) {
    return refuse(std::move(plan), ExitCode::cannot_tell,
                  fmt::format("which units stopping {} would stop too (those that Requires=, BindsTo= or PartOf= it) "
                              "could not be read: {}. They would stay stopped; check `systemctl list-dependencies "
                              "--reverse {}` and run reset again.",
                              k_unit_name, in.stopped_with_unread, k_unit_name));
  }
  plan.outcome = ResetOutcome::act;
  if (plan.daemon_was_active && !in.stopped_with.empty()) {
    plan.notes.push_back(fmt::format("stopping {} stops {} too (they Requires=, BindsTo= or PartOf= it): each is "
                                     "started again at the end",
                                     k_unit_name, fmt::join(in.stopped_with, ", ")));
  }
  if (plan.daemon_was_active) {
    plan.steps.push_back({ResetStepKind::stop_daemon,
                          "nvidia-persistenced holds every GPU open; the reset fails while it does", {}});
  } else {
    plan.notes.push_back(fmt::format("{} is not active: nothing to stop, and it is not started afterwards (run "
                                     "gpuwarm fix for that)",
                                     k_unit_name));
  }
  plan.steps.push_back({ResetStepKind::reset_gpus, "the reset itself", reset_argv});
  if (plan.daemon_was_active) {
    plan.steps.push_back({ResetStepKind::start_daemon,
                          "always, also after a failed or interrupted reset: persistence on every GPU depends on it",
                          {}});
  }
  for (auto& argv : restores) {
    plan.steps.push_back({ResetStepKind::restore_setting,
                          "a reset returns it to the default; set again once the daemon holds the GPU, so it stays",
                          std::move(argv)});
  }
  if (plan.daemon_was_active) {
    for (const auto& unit : in.stopped_with) {
      plan.steps.push_back({ResetStepKind::start_dependent,
                            "the daemon's stop stopped it, and its start does not start it again", {}, unit});
    }
  }
  if (!restores.empty() && !plan.daemon_was_active) {
    plan.notes.push_back("with nvidia-persistenced not running, settings set again last only while persistence "
                         "is on by other means or a process holds the GPU");
  }
  return plan;
}

namespace {

// Every /dev/nvidiaN some daemon process holds; `unread` gets why a process's open files were not read (the
// last such), "" when every one was.
std::set<unsigned> held_by_daemon(const DaemonFacts& daemon, std::string& unread) {
  std::set<unsigned> held;
  for (const auto& p : daemon.processes) {
    if (!p.held_minors.has()) {
      unread = fmt::format("the open files of nvidia-persistenced (pid {}) could not be read: {}", p.pid,
                           p.held_minors.missing);
      continue;
    }
    held.insert(p.held_minors->begin(), p.held_minors->end());
  }
  return held;
}

}  // namespace

HoldWanted minors_to_hold(const Snapshot& before, const ResetPlan& plan) {
  // Which GPUs the daemon held before; nullopt where that was not read in full.
  std::string unread;
  std::optional<std::set<unsigned>> held_before = held_by_daemon(before.daemon, unread);
  if (!unread.empty() || !before.daemon.processes_unread.empty()) {
    held_before.reset();
  }
  std::set<unsigned> minors;
  std::set<std::string> unknown;
  for (const auto& step : plan.steps) {
    if (step.kind != ResetStepKind::restore_setting) {
      continue;
    }
    for (const auto& b : plan.settings) {
      // The step names its GPU by PCI bus id, as nvidia-smi is given it.
      if (std::find(step.argv.begin(), step.argv.end(), b.pci_bus_id) == step.argv.end()) {
        continue;
      }
      const GpuFacts* g = gpu_by_index(before, b.index);
      if (g == nullptr || !g->minor.has()) {
        unknown.insert(fmt::format("GPU {}'s /dev/nvidiaN could not be read ({})", b.index,
                                   g == nullptr ? "not listed" : g->minor.missing));
      } else if (!held_before || held_before->count(*g->minor) != 0) {
        minors.insert(*g->minor);
      }
    }
  }
  return {{minors.begin(), minors.end()}, {unknown.begin(), unknown.end()}};
}

DaemonHold daemon_hold(const DaemonFacts& daemon, const HoldWanted& wanted) {
  DaemonHold out;
  out.awaited = wanted.minors;
  std::string unread;
  const std::set<unsigned> held = held_by_daemon(daemon, unread);
  for (unsigned m : wanted.minors) {
    if (held.count(m) == 0) {
      out.not_held.push_back(m);
    }
  }
  // A process that could not be read may be the one holding the rest; with every GPU held it does not matter.
  if (!out.not_held.empty()) {
    out.unknown = !daemon.processes_unread.empty() ? "the processes could not be listed: " + daemon.processes_unread
                                                   : unread;
  }
  if (!wanted.unknown.empty()) {
    out.unknown = fmt::format("{}{}{}", fmt::join(wanted.unknown, "; "), out.unknown.empty() ? "" : "; ", out.unknown);
  }
  return out;
}

const char* to_string(ResetStepKind kind) {
  switch (kind) {
    case ResetStepKind::stop_daemon: return "stop-daemon";
    case ResetStepKind::reset_gpus: return "reset";
    case ResetStepKind::start_daemon: return "start-daemon";
    case ResetStepKind::restore_setting: return "restore-setting";
    case ResetStepKind::start_dependent: return "start-unit";
  }
  return "?";
}

std::string describe(const ResetStep& step) {
  switch (step.kind) {
    case ResetStepKind::stop_daemon: return fmt::format("StopUnit({}, replace), wait for the job", k_unit_name);
    case ResetStepKind::start_daemon: return fmt::format("StartUnit({}, replace), wait for the job", k_unit_name);
    case ResetStepKind::start_dependent: return fmt::format("StartUnit({}, replace), wait for the job", step.unit);
    case ResetStepKind::reset_gpus:
    case ResetStepKind::restore_setting: return fmt::format("{}", fmt::join(step.argv, " "));
  }
  return "?";
}

}  // namespace gpuwarm
