// nvidia-persistenced branch: is the daemon installed, running with
// persistence on, managed by systemd so it comes back at boot, and holding
// every GPU?

#include <algorithm>

#include <fmt/format.h>

#include "rules/checks.h"
#include "rules/helpers.h"

namespace gpuwarm::checks {

namespace {

// The LoadState values a rule judges (systemd.unit(5)); others (stub, merged: within a reload) say nothing yet.
bool known_load_state(std::string_view state) {
  return state == "loaded" || state == "not-found" || state == "masked" || state == "bad-setting" ||
         state == "error";
}

}  // namespace

std::vector<Finding> daemon_binary_missing(const Snapshot& s) {
  if (s.daemon.binary.has() || daemon_running(s)) {
    return {};
  }
  Finding f;
  f.message = "nvidia-persistenced is not installed";
  f.next_step =
      "A driver-install problem, not a persistence one: install the driver's utilities (the package that ships "
      "nvidia-persistenced, usually next to nvidia-smi), then diagnose again. Do not work around it with "
      "`nvidia-smi -pm 1`.";
  f.evidence.push_back(s.daemon.binary.missing);
  if (!daemon_processes_listed(s)) {
    // Not found where it is installed: that alone is the driver-install problem, whatever /proc would show.
    f.evidence.push_back("processes not listed: " + s.daemon.processes_unread);
  }
  return {f};
}

std::vector<Finding> daemon_no_persistence_mode(const Snapshot& s) {
  Finding f;
  for (const auto& p : s.daemon.processes) {
    if (has_arg(p.argv, k_no_pm_flag)) {
      f.evidence.push_back(describe_daemon_process(p));
    }
  }
  if (s.service.exec_start.has() && has_arg(*s.service.exec_start, k_no_pm_flag)) {
    f.evidence.push_back("ExecStart=" + join_args(*s.service.exec_start));
  }
  if (f.evidence.empty()) {
    // Its arguments unread, systemd's ExecStart unread and its open files unread: nothing tells a daemon that keeps
    // the GPUs from one that runs with the flag while the legacy flag (or a job) holds persistence now.
    const bool argv_unread = std::any_of(s.daemon.processes.begin(), s.daemon.processes.end(),
                                         [](const DaemonProcess& p) { return !p.argv_missing.empty(); });
    if (!argv_unread || s.service.exec_start.has() || daemon_held_minors(s)) {
      return {};
    }
    f = cannot_tell("arguments unread",
                    "Whether nvidia-persistenced runs with --no-persistence-mode cannot be told: its arguments, its "
                    "unit's ExecStart and its open files were all unread",
                    "Run gpuwarm as root where systemd can be asked (or `cat /proc/$(pidof nvidia-persistenced)/"
                    "cmdline | tr '\\0' ' '`), then diagnose again.");
    for (const auto& p : s.daemon.processes) {
      f.evidence.push_back(describe_daemon_process(p));
    }
    f.evidence.push_back("ExecStart unread: " + (s.service.reachable ? s.service.exec_start.missing : s.service.unreachable));
    return {f};
  }
  f.message = "nvidia-persistenced is set to run with --no-persistence-mode: the service can be active while "
              "persistence is off";
  f.next_step = "Override ExecStart= in a drop-in without --no-persistence-mode (gpuwarm fix writes one), then "
                "restart the service.";
  return {f};
}

std::vector<Finding> unit_stop_when_unneeded(const Snapshot& s) {
  if (!s.service.stop_when_unneeded.is(true)) {
    return {};
  }
  Finding f;
  f.message = "nvidia-persistenced.service has StopWhenUnneeded=yes: systemd stops the daemon once nothing needs "
              "it, and persistence ends with it";
  f.next_step = "Set StopWhenUnneeded=no in a drop-in (gpuwarm fix writes one).";
  f.evidence.emplace_back("StopWhenUnneeded=yes");
  if (s.service.fragment_path.has()) {
    f.evidence.push_back("unit file " + *s.service.fragment_path);
  }
  return {f};
}

std::vector<Finding> unit_missing(const Snapshot& s) {
  if (s.service.reachable && (s.service.load_state.is("bad-setting") || s.service.load_state.is("error"))) {
    // systemd read the unit and refused it: it starts neither at boot nor by hand, whatever it is enabled as.
    Finding f;
    f.message = fmt::format("systemd cannot load nvidia-persistenced.service (LoadState={}): it starts neither at "
                            "boot nor by hand",
                            *s.service.load_state);
    f.next_step = "`systemctl status nvidia-persistenced.service` names the file and line systemd refused; correct "
                  "it (`gpuwarm lint` on the unit folders finds known pitfalls), run `systemctl daemon-reload`, then "
                  "diagnose again.";
    f.tag = "cannot load";  // check's line: "PD007 unit missing: cannot load"
    f.evidence.push_back("LoadState=" + *s.service.load_state);
    if (s.service.fragment_path.has()) {
      f.evidence.push_back("unit file " + *s.service.fragment_path);
    }
    return {f};
  }
  if (!s.service.reachable || !s.service.load_state.is("not-found") || !s.daemon.binary.has() ||
      daemon_from_driver_container(s)) {
    return {};  // the GPU Operator's daemon is started by its driver pod, never by a host unit
  }
  Finding f;
  f.message = "nvidia-persistenced is installed but systemd has no nvidia-persistenced.service unit";
  f.next_step = fmt::format(
      "Install a unit (Type=forking, ExecStart={} --user nvidia-persistenced, WantedBy=multi-user.target), then "
      "enable and start it.",
      *s.daemon.binary);
  f.evidence.emplace_back("LoadState=not-found");
  f.evidence.push_back("binary " + *s.daemon.binary);
  return {f};
}

std::vector<Finding> unit_failed(const Snapshot& s) {
  if (!s.service.active_state.is("failed")) {
    return {};
  }
  Finding f;
  f.message = "nvidia-persistenced.service has failed";
  f.next_step =
      daemon_outside_unit(s)
          ? "A daemon started outside systemd runs (PD010): stop it first, or the unit's restart fails on it and its "
            "clean-up deletes that daemon's socket and PID file; then read `journalctl -u "
            "nvidia-persistenced.service` and run `gpuwarm fix`."
          : "Read `journalctl -u nvidia-persistenced.service`: \"Failed to query NVIDIA devices\" right after a "
            "driver update means a reboot is pending; otherwise fix the cause and restart the service.";
  f.evidence.push_back("ActiveState=failed" + (s.service.sub_state.has() ? " SubState=" + *s.service.sub_state : ""));
  return {f};
}

std::vector<Finding> daemon_outside_unit_runs(const Snapshot& s) {
  const std::optional<int> pid = daemon_outside_unit(s);
  if (!pid) {
    return {};
  }
  Finding f;
  f.message = fmt::format("nvidia-persistenced runs (pid {}) although its unit is {}: it was started outside the unit "
                          "(rc.local, by hand, another unit), which cannot start beside it, and at boot the two race",
                          *pid, *s.service.active_state);
  f.next_step = fmt::format("Stop that daemon (kill {}) and remove what starts it (rc.local, a node-init script), then "
                            "run `gpuwarm fix`. Do not start the unit beside it: the start fails, and the unit's "
                            "clean-up deletes the running daemon's socket and PID file.",
                            *pid);
  f.evidence.push_back("ActiveState=" + *s.service.active_state);
  for (const auto& p : s.daemon.processes) {
    f.evidence.push_back(describe_daemon_process(p) +
                         (p.cgroup.has() ? ", cgroup " + *p.cgroup : ", cgroup unread: " + p.cgroup.missing));
  }
  return {f};
}

std::vector<Finding> unit_start_skipped(const Snapshot& s) {
  if (!start_skipped(s.service)) {
    return {};
  }
  Finding f;
  const std::string guard = guard_dropin(s.service);
  const bool guarded = !guard.empty();
  f.message = guarded ? "nvidia-persistenced.service did not start: gpuwarm guard (its ExecCondition) skipped the "
                        "last start"
                      : "nvidia-persistenced.service did not start: an ExecCondition of the unit skipped the last start";
  f.next_step = guarded ? "`journalctl -u nvidia-persistenced.service -b` says why (the guard writes one line; "
                          "`gpuwarm guard --verbose` asks again). After a driver update without a reboot, reboot (or "
                          "`gpuwarm reload-modules`); once the cause is gone, `gpuwarm fix` starts the unit."
                        : "`systemctl cat nvidia-persistenced.service` shows the ExecCondition= lines and "
                          "`journalctl -u nvidia-persistenced.service -b` what they answered; once the cause is gone, "
                          "`gpuwarm fix` starts the unit.";
  f.evidence.push_back("ActiveState=" + *s.service.active_state + " Result=exec-condition");
  if (guarded) {
    f.evidence.push_back("drop-in " + guard);
  }
  return {f};
}

std::vector<Finding> guard_ignored(const Snapshot& s) {
  const std::string guard = guard_dropin(s.service);
  if (!s.service.reachable || guard.empty() || !s.service.exec_condition.is(false)) {
    return {};  // unread is not judged: the guard may well run
  }
  const std::string version = s.service.manager_version.has() ? *s.service.manager_version : "unread";
  Finding f;
  f.message = fmt::format(
      "This systemd ({}) does not know ExecCondition=, so gpuwarm guard never runs: after a driver update without a "
      "reboot nvidia-persistenced.service fails to start instead of being skipped",
      version);
  f.next_step =
      "Update systemd (ExecCondition= came with systemd 243, and with RHEL/Rocky 8.3), or leave the guard out on "
      "this node (the Ansible role does) and reboot after driver updates before starting the unit.";
  f.evidence.push_back("the unit's Service interface has no ExecCondition property");
  f.evidence.push_back("systemd Version=" + version);
  f.evidence.push_back("drop-in " + guard);
  return {f};
}

std::vector<Finding> unit_state_unread(const Snapshot& s) {
  if (!s.service.reachable) {
    return {};  // NOTE002 says systemd could not be asked at all
  }
  Finding f;
  auto unread = [&f](const char* property, const auto& fact) {
    if (!fact.has()) {
      f.evidence.push_back(fmt::format("{}: unread ({})", property, fact.missing));
    }
  };
  unread("LoadState", s.service.load_state);
  unread("ActiveState", s.service.active_state);
  if (s.service.load_state.has() && !known_load_state(*s.service.load_state)) {
    f.evidence.push_back("LoadState=" + *s.service.load_state + ": not a state gpuwarm can judge the unit in");
  }
  if (!s.service.load_state.has() || s.service.load_state.is("loaded")) {
    // A unit that is not there has none of these to read. StopWhenUnneeded and ExecStart decide PD003 and PD002.
    unread("UnitFileState", s.service.unit_file_state);
    unread("StopWhenUnneeded", s.service.stop_when_unneeded);
    unread("ExecStart", s.service.exec_start);
  }
  if (f.evidence.empty()) {
    return {};
  }
  // Whether the unit is failed, enabled, there at all, stopped when unneeded or started with persistence off
  // decides PD002-PD007: not "no finding".
  f.message = "systemd answered, but nvidia-persistenced.service's state could not be read";
  f.next_step = "Run `systemctl status nvidia-persistenced.service` as root; if it answers, run gpuwarm again "
                "(a D-Bus policy or a timeout may have refused the read).";
  return {f};
}

// On a host booted with systemd, a bus that does not answer (dbus stopped, a D-Bus policy, a timeout) is a
// fault: whether the unit is enabled, failed or there at all is unknown, not "no systemd here" (NOTE002).
std::vector<Finding> systemd_unanswered(const Snapshot& s) {
  if (s.service.reachable || s.service.not_asked || !manager_may_run(s.service)) {
    return {};
  }
  Finding f;
  f.message = manager_unanswered(s.service) + ": whether nvidia-persistenced.service is there, enabled "
              "or failed is unknown";
  f.next_step = "Act on the evidence (libsystemd missing: install it; the bus refused or timed out: `systemctl "
                "status dbus.service`, `busctl status`), then run gpuwarm again as root; `systemctl status "
                "nvidia-persistenced.service` shows the unit meanwhile.";
  f.evidence.push_back(s.service.unreachable);  // what failed: the library, the connection or a call
  if (!s.service.manager_booted.has()) {
    f.evidence.push_back("booted with systemd: " + s.service.manager_booted.missing);
  }
  return {f};
}

std::vector<Finding> process_list_unread(const Snapshot& s) {
  if (daemon_processes_listed(s) || daemon_running(s)) {
    return {};
  }
  // Whether the daemon runs decides PM002, the held-GPU checks and verify: an empty list is not "not running".
  Finding f;
  f.message = "The process list could not be read: whether nvidia-persistenced runs cannot be told";
  f.next_step = "Run gpuwarm as root on the host itself (in a container, share the host's PID namespace), then "
                "diagnose again.";
  f.evidence.push_back("processes not listed: " + s.daemon.processes_unread);
  return {f};
}

std::vector<Finding> daemon_not_enabled(const Snapshot& s) {
  const bool masked_file = s.service.unit_file_state.has() && s.service.unit_file_state->starts_with("masked");
  if (s.service.reachable && (s.service.load_state.is("masked") || (s.service.load_state.is("loaded") && masked_file)) &&
      !daemon_from_driver_container(s)) {  // the GPU Operator's driver pod starts its daemon, never a host unit
    // A mask (a link to /dev/null) stops nothing that runs, but nothing starts the unit again: persistence ends at
    // the next reboot or daemon exit.
    const std::string state = s.service.unit_file_state.value_or("masked; whether until reboot unread");
    const std::string unmask = unmask_command(s.service);
    Finding f;
    f.message = daemon_running(s) ? fmt::format("nvidia-persistenced runs now but its unit is masked ({}): it will "
                                                "not start again, at boot or by hand",
                                                state)
                                  : fmt::format("nvidia-persistenced.service is masked ({}): systemd will not start "
                                                "it, at boot or by hand",
                                                state);
    f.next_step = fmt::format("Someone masked it on purpose: if that is no longer wanted, unmask it ({}), then run "
                              "gpuwarm fix.",
                              unmask);
    f.evidence.push_back("LoadState=" + *s.service.load_state);
    f.evidence.push_back(s.service.unit_file_state.has() ? "UnitFileState=" + state
                                                         : "UnitFileState unread: " + s.service.unit_file_state.missing);
    if (s.service.active_state.has()) {
      f.evidence.push_back("ActiveState=" + *s.service.active_state);
    }
    return {f};
  }
  if (!s.service.reachable || !s.service.load_state.is("loaded") || !s.service.unit_file_state.has()) {
    return {};
  }
  const std::string& state = *s.service.unit_file_state;
  std::string decided;
  std::optional<bool> at_boot = unit_starts_at_boot(s.service, &decided);
  if (at_boot.value_or(false)) {
    return {};
  }
  Finding f;
  if (!at_boot) {
    // A static unit whose wanting units went unread: unknown, never "starts at boot".
    f = cannot_tell("boot start unread", "Whether nvidia-persistenced.service starts at boot cannot be told: " + decided,
                    "Run `systemctl show -p WantedBy,RequiredBy nvidia-persistenced.service`, then diagnose again.");
    f.evidence.push_back("UnitFileState=" + state);
    return {f};
  }
  f.message = daemon_running(s)
                  ? fmt::format("nvidia-persistenced runs now but will not start at boot (UnitFileState={})", state)
                  : fmt::format("nvidia-persistenced.service is not enabled for boot (UnitFileState={})", state);
  f.next_step = state == "static"
                    ? "Its unit has no [Install] section and nothing pulls it in: have multi-user.target want it "
                      "(gpuwarm fix, or systemctl add-wants multi-user.target nvidia-persistenced.service)."
                    : "Enable it: gpuwarm fix, or systemctl enable --now nvidia-persistenced.service.";
  f.evidence.push_back("UnitFileState=" + state);
  if (state == "static") {
    f.evidence.push_back(decided);
  }
  if (s.service.active_state.has()) {
    f.evidence.push_back("ActiveState=" + *s.service.active_state);
  }
  return {f};
}

std::vector<Finding> gpu_not_held(const Snapshot& s) {
  auto held_minors = daemon_held_minors(s);
  if (!held_minors) {
    return {};
  }
  const std::vector<unsigned>& held = *held_minors;
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    const std::optional<unsigned> minor = gpu_minor(s, *gpu);
    if (!minor) {
      // Which device node is this GPU's is unknown: whether the daemon holds it cannot be told, never "held".
      Finding f = cannot_tell("minor unread",
                              fmt::format("{}: whether nvidia-persistenced holds it cannot be told: its /dev/nvidiaN "
                                          "minor was read neither from NVML ({}) nor from /proc/driver/nvidia/gpus",
                                          gpu_label(*gpu), gpu->minor.missing),
                              "Run `nvidia-smi -q -i " + std::to_string(gpu->index) +
                                  " | grep -i minor` and compare with `ls -l /proc/$(pidof nvidia-persistenced)/fd`.");
      f.gpu = gpu->index;
      f.evidence.push_back("nvmlDeviceGetMinorNumber: " + gpu->minor.missing);
      f.evidence.push_back(fmt::format("daemon holds minors [{}]", fmt::join(held, ", ")));
      out.push_back(std::move(f));
      continue;
    }
    if (std::find(held.begin(), held.end(), *minor) != held.end()) {
      continue;
    }
    Finding f;
    f.gpu = gpu->index;
    f.message = fmt::format("{}: nvidia-persistenced does not hold /dev/nvidia{}", gpu_label(*gpu), *minor);
    f.next_step = "Restart nvidia-persistenced so it opens every GPU; if it keeps skipping this one, check the "
                  "daemon's log and the device node's permissions for its --user.";
    f.evidence.push_back(fmt::format("daemon holds minors [{}]", fmt::join(held, ", ")));
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace gpuwarm::checks
