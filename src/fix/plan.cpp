#include "fix/plan.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/strings.h"
#include "rules/helpers.h"
#include "systemd/unit_file.h"

namespace gpuwarm {

namespace {

// "PATH sets ..." for the last drop-in after gpuwarm's that sets ExecStart= with --no-persistence-mode or
// StopWhenUnneeded=yes (systemd's order: the one applied last wins), or "" when none does or they are unread.
std::string later_dropin_undoing(const ServiceFacts& service) {
  if (!service.later_dropins.has() || !service.drop_in_paths.has()) {
    return "";
  }
  std::string exec_start_file;
  std::string stop_file;
  for (const auto& path : *service.drop_in_paths) {
    auto it = service.later_dropins->find(path);
    if (it == service.later_dropins->end()) {
      continue;
    }
    const auto settings = parse_unit_file(it->second);
    if (auto argv = unit_exec_start(settings); !argv.empty()) {
      exec_start_file = has_arg(argv, k_no_pm_flag) ? path : "";
    }
    if (auto stop = unit_value(settings, "Unit", "StopWhenUnneeded"); !stop.empty()) {
      stop_file = unit_boolean_true(stop) ? path : "";
    }
  }
  if (!exec_start_file.empty()) {
    return fmt::format("{} sets ExecStart= with {}", exec_start_file, k_no_pm_flag);
  }
  return stop_file.empty() ? "" : stop_file + " sets StopWhenUnneeded=yes";
}

// What a word's $ means: a word gpuwarm made (a path) is literal; a word systemd reported over D-Bus still
// holds the unit's $VARIABLES, which expand when the command runs (its %specifiers were expanded at load).
enum class Dollar { literal, variable };

// One command-line word as systemd reads it in ExecStart= (systemd.service(5),
// "Command lines"; systemd.unit(5), specifiers): % starts a specifier and $ a
// variable, so both are doubled where literal; a word with blanks, quotes,
// backslashes or control characters is double-quoted with C escapes.
std::string systemd_word(const std::string& a, Dollar dollar) {
  std::string escaped;
  bool quote = a.empty();
  for (char ch : a) {
    auto c = static_cast<unsigned char>(ch);
    if (ch == '%' || (ch == '$' && dollar == Dollar::literal)) {
      escaped += ch;
      escaped += ch;
    } else if (ch == '"' || ch == '\\') {
      escaped += '\\';
      escaped += ch;
      quote = true;
    } else if (c < 0x20 || c == 0x7f) {
      escaped += fmt::format("\\x{:02x}", c);
      quote = true;
    } else {
      quote = quote || ch == ' ' || ch == '\'' || ch == ';';
      escaped += ch;
    }
  }
  return quote ? "\"" + escaped + "\"" : escaped;
}

std::string quote_args(const std::vector<std::string>& argv, Dollar dollar) {
  std::string out;
  for (const auto& a : argv) {
    if (!out.empty()) {
      out += ' ';
    }
    out += systemd_word(a, dollar);  // appended, not "literal" + temporary: GCC 12 -O3 warns (-Wrestrict) on that
  }
  return out;
}

// `command` (an ExecStart= value as written) without the word `word` (quoted or not): every other word, its quotes,
// $VARIABLES and %specifiers stay exactly as the vendor wrote them.
std::string without_word(const std::string& command, const std::string& word) {
  std::string out;
  std::size_t i = 0;
  while (i < command.size()) {
    while (i < command.size() && (command[i] == ' ' || command[i] == '\t')) {
      ++i;
    }
    std::size_t start = i;
    char quote = 0;
    while (i < command.size() && (quote != 0 || (command[i] != ' ' && command[i] != '\t'))) {
      if (command[i] == '\\') {
        i += unescape_at(command, i).length;  // an escaped quote or blank neither opens, closes nor splits
        continue;
      }
      if (quote == 0 && (command[i] == '"' || command[i] == '\'')) {
        quote = command[i];
      } else if (command[i] == quote) {
        quote = 0;
      }
      ++i;
    }
    std::string_view token(command.data() + start, i - start);
    if (!token.empty() && split_command_line(token) != std::vector<std::string>{word}) {
      out += (out.empty() ? "" : " ") + std::string(token);
    }
  }
  return out;
}

// Ends the plan without steps: why, and the exit code that means.
FixPlan refuse(FixPlan plan, FixOutcome outcome, ExitCode code, std::string reason) {
  plan.outcome = outcome;
  plan.exit_code = code;
  plan.reason = std::move(reason);
  return plan;
}

std::string render_unit(const std::string& binary, bool with_user) {
  return fmt::format(
      "# Written by gpuwarm fix: no unit for nvidia-persistenced was installed.\n"
      "[Unit]\n"
      "Description=NVIDIA Persistence Daemon\n"
      "Wants=syslog.target\n"
      "StopWhenUnneeded=no\n\n"
      "[Service]\n"
      "Type=forking\n"
      "ExecStart={}{}\n"
      "ExecStopPost=/bin/rm -rf /run/nvidia-persistenced\n"
      "PIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid\n"
      "Restart=on-failure\n\n"
      "[Install]\n"
      "WantedBy=multi-user.target\n",
      systemd_word(binary, Dollar::literal), with_user ? " --user nvidia-persistenced" : "");
}

}  // namespace

std::string render_dropin(const std::string& vendor_unit_text, const std::vector<std::string>& effective_exec_start,
                          const std::vector<std::pair<std::string, std::string>>& earlier_dropins) {
  auto settings = parse_unit_file(vendor_unit_text);
  for (const auto& [path, text] : earlier_dropins) {
    auto more = parse_unit_file(text);
    settings.insert(settings.end(), more.begin(), more.end());
  }
  // From the vendor unit, not the effective state: once our drop-in is in
  // place the effective state looks fine, and the drop-in must not change.
  const bool from_vendor_text = !vendor_unit_text.empty();
  std::vector<std::string> exec = from_vendor_text ? unit_exec_start(settings) : effective_exec_start;
  const bool has_flag = has_arg(exec, k_no_pm_flag);
  const bool stop_when_unneeded = unit_boolean_true(unit_value(settings, "Unit", "StopWhenUnneeded"));
  const std::string restart = unit_value(settings, "Service", "Restart");
  const bool no_restart = restart.empty() || restart == "no";
  const std::string pid_file = unit_value(settings, "Service", "PIDFile");
  const bool legacy_pid_dir = starts_with(pid_file, "/var/run/");
  if (!has_flag && !stop_when_unneeded && !no_restart && !legacy_pid_dir) {
    return {};
  }
  std::string out = "# Written by gpuwarm fix: keep nvidia-persistenced running with persistence on.\n";
  out += "[Unit]\nStopWhenUnneeded=no\n\n[Service]\n";
  if (restart != "always" && restart != "on-failure") {
    out += "Restart=on-failure\n";  // a policy that restarts at least as often is the unit's to keep
  }
  if (legacy_pid_dir) {
    out += "PIDFile=/run/" + pid_file.substr(std::string("/var/run/").size()) + "\n";
  }
  if (has_flag && from_vendor_text) {
    out += "ExecStart=\nExecStart=" + without_word(unit_exec_start_text(settings), k_no_pm_flag) + "\n";
  } else if (has_flag) {
    std::vector<std::string> without;
    std::copy_if(exec.begin(), exec.end(), std::back_inserter(without),
                 [](const std::string& a) { return a != k_no_pm_flag; });
    out += "ExecStart=\nExecStart=" + quote_args(without, Dollar::variable) + "\n";
  }
  return out;
}

FixInputs fix_inputs(const Snapshot& s, std::vector<std::string>& assumed) {
  FixInputs in;
  if (s.service.unit_text.has()) {
    in.vendor_unit_text = *s.service.unit_text;
    // The drop-ins applied before gpuwarm's, in systemd's order: what they set (an ExecStart= of the site's
    // own) is what gpuwarm's drop-in starts from, as if they were part of the unit's file.
    if (s.service.earlier_dropins.has()) {
      for (const auto& path : s.service.drop_in_paths.value_or({})) {
        if (auto it = s.service.earlier_dropins->find(path); it != s.service.earlier_dropins->end()) {
          in.earlier_dropins.emplace_back(path, it->second);
        }
      }
    } else if (s.service.reachable) {
      assumed.push_back("the drop-ins applied before gpuwarm's are not recorded (" +
                        s.service.earlier_dropins.missing +
                        "): the drop-in is derived from the unit's file alone, and an ExecStart= of theirs is "
                        "replaced by it");
    }
  } else if (s.service.reachable) {
    assumed.push_back("the unit file's text is not recorded (" + s.service.unit_text.missing +
                      "): the drop-in is derived from the unit's ExecStart as systemd reported it");
  }
  in.dropin_exists = s.service.gpuwarm_dropin_exists;
  in.current_dropin_text = s.service.gpuwarm_dropin_text.value_or("");
  if (s.service.reachable && !s.service.gpuwarm_dropin_text.has()) {
    in.dropin_exists = true;  // there, unread: rewritten whole, and systemd reloaded after
    assumed.push_back("gpuwarm's drop-in could not be read (" + s.service.gpuwarm_dropin_text.missing +
                      "): it is taken as there but unknown, so a plan that needs it writes it whole");
  }
  in.daemon_user_exists = s.daemon.user_exists.value_or(false);
  if (!s.daemon.user_exists.has() && s.service.load_state.is("not-found")) {  // only a unit gpuwarm writes asks
    assumed.push_back("whether an nvidia-persistenced account exists could not be read (" +
                      s.daemon.user_exists.missing + "): a unit gpuwarm writes runs the daemon as root");
  }
  return in;
}

FixPlan plan_fix(const Snapshot& s, const Diagnosis& d, const FixInputs& in) {
  FixPlan plan;
  const bool some_off = std::any_of(s.nvml.gpus.begin(), s.nvml.gpus.end(),
                                    [](const GpuFacts& g) { return g.persistence.is(false); });
  if (std::any_of(d.findings.begin(), d.findings.end(), [](const Finding& f) { return f.rule_id == "PM002"; })) {
    plan.notes.push_back(
        std::string(some_off ? "Where persistence reads Enabled, it is on" : "Persistence is currently on") +
        " only through the legacy flag (nvidia-smi -pm 1). gpuwarm never runs `nvidia-smi -pm`; remove `-pm 1` "
        "from node-init scripts and config management so the daemon stays the only source of truth.");
  }
  switch (d.verdict.route) {
    case Route::note:
    case Route::optional:
      plan.reason = "nothing to do: " + d.verdict.title;
      return plan;
    case Route::fix:
      break;
    case Route::unknown:
    case Route::reboot:
    case Route::driver_install:
    case Route::ras:
    case Route::clocks:
      return refuse(std::move(plan), FixOutcome::refused, d.verdict.exit_code,
                    fmt::format("refusing to change anything: {} [{}]. {}", d.verdict.title, d.verdict.rule_id,
                                d.verdict.next_step));
  }
  if (s.service.not_asked) {
    // --no-systemd on a node that may well run systemd: the advice for a node without it would be LINT005's
    // anti-pattern there.
    return refuse(std::move(plan), FixOutcome::no_service_manager, ExitCode::no_service_manager,
                  "systemd was not asked (--no-systemd), so nothing was changed: fix acts only through systemd. "
                  "Run it (or record the snapshot) again without --no-systemd.");
  }
  if (!s.service.reachable && manager_may_run(s.service)) {
    // systemd runs here: the unit's state is unknown (UNK008), and a daemon started by other means would be a
    // second, unmanaged one beside the unit.
    return refuse(std::move(plan), FixOutcome::refused, ExitCode::cannot_tell,
                  fmt::format("{} ({}), so nothing was changed: fix acts "
                              "only through systemd. Check the system bus (`systemctl status dbus.service`) and run "
                              "fix again.",
                              manager_unanswered(s.service), s.service.unreachable));
  }
  if (!s.service.reachable) {
    return refuse(std::move(plan), FixOutcome::no_service_manager, ExitCode::no_service_manager,
                  fmt::format("systemd is not reachable ({}), so nothing was changed. Without systemd, start the "
                              "daemon from this node's init system at boot: `{} --user nvidia-persistenced` (it "
                              "forks, and persistence is on by default; a comment `gpuwarm: ignore LINT005` on that "
                              "line or the one above tells `gpuwarm lint` it is meant). Do not use `nvidia-smi -pm 1`.",
                              s.service.unreachable,
                              s.daemon.binary.has() ? *s.daemon.binary : "nvidia-persistenced"));
  }
  if (s.service.load_state.is("masked") ||
      (s.service.unit_file_state.has() && s.service.unit_file_state->starts_with("masked"))) {
    // masked-runtime too: EnableUnitFiles would fail on it after the drop-in was written and loaded.
    const bool runtime = s.service.unit_file_state.is("masked-runtime");
    const std::string unmask = unmask_command(s.service);
    return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                  fmt::format("nvidia-persistenced.service is masked{}: someone disabled it on purpose. Unmask it "
                              "({}) if that is no longer wanted, then run fix again. Nothing was changed.",
                              runtime ? " until the next reboot (masked-runtime)" : "", unmask));
  }
  if (s.service.load_state.is("bad-setting") || s.service.load_state.is("error")) {
    return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                  fmt::format("systemd cannot load nvidia-persistenced.service (LoadState={}): a drop-in would not "
                              "make it start. `systemctl status nvidia-persistenced.service` names the file and line "
                              "it refused; correct it, then run fix again. Nothing was changed.",
                              *s.service.load_state));
  }

  // The unit's start would fail on that daemon's PID-file lock, and the unit's ExecStopPost would then delete
  // the running daemon's socket and PID file -- again at every Restart=on-failure (PD010).
  if (auto outside = daemon_outside_unit(s)) {
    return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                  fmt::format("nvidia-persistenced runs (pid {}) outside systemd, so the unit cannot start beside "
                              "it: its start would fail, and the unit's clean-up would delete the running daemon's "
                              "socket and PID file. Stop that daemon (kill {}; find what starts it, e.g. rc.local "
                              "or a node-init script, and remove it there), then run fix again. Nothing was "
                              "changed.",
                              *outside, *outside));
  }

  bool config_changed = false;
  bool exec_start_changed = false;  // only a new ExecStart needs the running daemon restarted
  // The daemon systemd started runs systemd's ExecStart: with the flag there (or unread), a drop-in that
  // replaces ExecStart changes the running daemon only at a restart.
  const bool started_with_flag = !s.service.exec_start.has() || has_arg(*s.service.exec_start, k_no_pm_flag);
  auto replaces_exec_start = [](const std::string& dropin) { return dropin.find("\nExecStart=\n") != std::string::npos; };
  if (s.service.load_state.is("not-found")) {
    if (!s.daemon.binary.has()) {
      return refuse(std::move(plan), FixOutcome::refused, ExitCode::routed_elsewhere,
                    "no nvidia-persistenced binary to write a unit for: a driver-install problem");
    }
    if (daemon_from_driver_container(s)) {
      return refuse(std::move(plan), FixOutcome::refused, ExitCode::routed_elsewhere,
                    fmt::format("{} belongs to the GPU Operator's driver container, which starts it: a host unit "
                                "would run a second daemon beside it. Look at the driver pod (kubectl -n "
                                "gpu-operator logs on this node's nvidia-driver-daemonset pod) instead.",
                                *s.daemon.binary));
    }
    plan.steps.push_back({StepKind::write_file, "no unit is installed", k_unit_path,
                          render_unit(*s.daemon.binary, in.daemon_user_exists)});
    config_changed = true;
  } else {
    // A drop-in applied after gpuwarm's that sets the flag or StopWhenUnneeded=yes again would undo the fix: said
    // now, before anything is written, not after a restart that changed nothing.
    if (auto overriding = later_dropin_undoing(s.service); !overriding.empty()) {
      plan.steps.clear();
      return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                    fmt::format("{}, which systemd applies after gpuwarm's {}, so a fix would be undone at once. "
                                "Remove the setting there (`systemctl cat {}` shows each file), then run fix again. "
                                "Nothing was changed.",
                                overriding, k_dropin_path, k_unit_name));
    }
    std::vector<std::string> effective = s.service.exec_start.value_or({});
    std::string dropin = render_dropin(in.vendor_unit_text, effective, in.earlier_dropins);
    if (!dropin.empty() && (!in.dropin_exists || in.current_dropin_text != dropin)) {
      if (in.dropin_exists) {
        // The file is gpuwarm's, but config management may have added to it: say what the rewrite drops.
        std::vector<std::string> dropped;
        for (const auto& line : split_lines(in.current_dropin_text)) {
          std::string_view t = trim(line);
          // Keys gpuwarm writes itself (an older ExecStart= after a package update) are its own, not site content.
          const std::string_view key = trim(t.substr(0, t.find('=')));
          const bool ours = key == "ExecStart" || key == "StopWhenUnneeded" || key == "Restart" || key == "PIDFile";
          if (!t.empty() && t.front() != '#' && t.front() != ';' && t.front() != '[' && !ours &&
              dropin.find("\n" + std::string(t) + "\n") == std::string::npos) {
            dropped.emplace_back(t);
          }
        }
        if (!dropped.empty()) {
          plan.notes.push_back(fmt::format("{} is rewritten whole; these lines of it are not gpuwarm's and go: {} "
                                           "(keep site settings in a drop-in of their own)",
                                           k_dropin_path, fmt::join(dropped, "; ")));
        }
      }
      plan.steps.push_back({StepKind::write_file,
                            "the unit needs overrides (--no-persistence-mode, StopWhenUnneeded, Restart, PIDFile)",
                            k_dropin_path, dropin});
      config_changed = true;
      exec_start_changed = started_with_flag && replaces_exec_start(dropin);
    } else if (s.service.need_daemon_reload.is(false) && (has_arg(effective, k_no_pm_flag) ||
                                                           s.service.stop_when_unneeded.is(true))) {
      // systemd has loaded what is on disk, gpuwarm's drop-in included, and still runs the unit that way:
      // another file sets it after ours. Restarting would change nothing, at every run.
      std::string files = s.service.drop_in_paths.has() ? "" : " (its drop-ins unread: " + s.service.drop_in_paths.missing + ")";
      for (const auto& f : s.service.drop_in_paths.value_or({})) {
        files += (files.empty() ? ": " : ", ") + f;
      }
      return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                    fmt::format("systemd has loaded every file of {} and still runs it with {}: another file "
                                "overrides gpuwarm's {}{}. Drop-ins apply in name order, so a later one (such as "
                                "`systemctl edit`'s override.conf) wins. Remove the setting there (`systemctl cat "
                                "{}` shows each file), then run fix again. Nothing was changed.",
                                k_unit_name,
                                has_arg(effective, k_no_pm_flag) ? k_no_pm_flag : "StopWhenUnneeded=yes",
                                in.dropin_exists ? k_dropin_path : "settings", files, k_unit_name));
    }
  }
  if (config_changed) {
    plan.steps.push_back({StepKind::reload, "load the new unit configuration", "", ""});
  } else if (s.service.need_daemon_reload.is(true) || (!s.service.need_daemon_reload.has() && in.dropin_exists)) {
    // Written by an earlier run whose daemon-reload failed or never ran (a kill, a D-Bus timeout): without
    // it, systemd keeps the old configuration and every later run would restart into it.
    plan.steps.push_back({StepKind::reload,
                          s.service.need_daemon_reload.has()
                              ? "systemd has not loaded the unit files changed on disk (NeedDaemonReload)"
                              : "whether systemd loaded the files on disk is unknown (" +
                                    s.service.need_daemon_reload.missing + ")",
                          "", ""});
    exec_start_changed = started_with_flag && replaces_exec_start(in.current_dropin_text);
  }

  const std::string file_state = s.service.unit_file_state.value_or("");
  std::string boot_why;
  const std::optional<bool> at_boot = unit_starts_at_boot(s.service, &boot_why);
  if (file_state == "static" && !at_boot.value_or(true)) {
    // No [Install] section to enable: multi-user.target wants it instead (systemctl add-wants).
    plan.steps.push_back({StepKind::add_wants, "start at boot (" + boot_why + ")", "", ""});
    plan.steps.push_back({StepKind::reload, "as systemctl add-wants does", "", ""});
  } else if (!at_boot.value_or(false) && file_state != "static") {
    plan.steps.push_back({StepKind::enable, "start at boot (UnitFileState=" + (file_state.empty() ? "unknown" : file_state) + ")", "", ""});
    plan.steps.push_back({StepKind::reload, "as systemctl enable does", "", ""});
  }
  if (s.service.active_state.is("failed")) {
    plan.steps.push_back({StepKind::reset_failed, "clear the failed state and its start counter", "", ""});
  }
  // A restart ends persistence for a moment: every GPU no process holds is torn down and loses its power limit
  // and application clocks. Restart=, StopWhenUnneeded= and PIDFile= apply at the reload; only a daemon that
  // runs with the flag, or an ExecStart that drops it, needs one.
  bool running_with_flag = false;
  for (const auto& p : s.daemon.processes) {
    running_with_flag = running_with_flag || has_arg(p.argv, k_no_pm_flag);
  }
  // The flag in the daemon's arguments but in none of ExecStart's words may come through a variable ($OPTS from
  // Environment= or EnvironmentFile=), which gpuwarm's drop-in cannot take out: a restart would bring it back at
  // every run. Refused only on evidence, an Environment= line with the flag in the files read (the unit,
  // gpuwarm's drop-in, those after it): a `$` word alone may carry anything, and a daemon not restarted since an
  // earlier drop-in was loaded is the usual reason for the flag (review-s48-diff M1).
  const std::vector<std::string> exec_start = s.service.exec_start.value_or({});
  auto variable = std::find_if(exec_start.begin(), exec_start.end(),
                               [](const std::string& w) { return w.find('$') != std::string::npos; });
  if (running_with_flag && !exec_start_changed && !has_arg(exec_start, k_no_pm_flag) &&
      variable != exec_start.end()) {
    std::vector<std::pair<std::string, std::string>> files = {{s.service.fragment_path.value_or("the unit file"),
                                                               in.vendor_unit_text}};
    files.insert(files.end(), in.earlier_dropins.begin(), in.earlier_dropins.end());
    files.emplace_back(k_dropin_path, in.current_dropin_text);
    for (const auto& [path, text] : s.service.later_dropins.value_or({})) {
      files.emplace_back(path, text);
    }
    std::string carried_by;
    std::string env_files;
    for (const auto& [path, text] : files) {
      for (const auto& setting : parse_unit_file(text)) {
        if (setting.key == "Environment" && setting.value.find(k_no_pm_flag) != std::string::npos) {
          carried_by = fmt::format("{}:{}: Environment={}", path, setting.line, setting.value);
        } else if (setting.key == "EnvironmentFile" && !setting.value.empty()) {
          env_files += (env_files.empty() ? "" : ", ") + setting.value;
        }
      }
    }
    if (!carried_by.empty()) {
      plan.steps.clear();
      return refuse(std::move(plan), FixOutcome::refused, ExitCode::action_needed,
                    fmt::format("nvidia-persistenced runs with {}, which reaches it through {} in ExecStart, set at "
                                "{}: a drop-in of gpuwarm's cannot take it out, and a restart would bring it back. "
                                "Remove {} there, then run fix again. Nothing was changed.",
                                k_no_pm_flag, *variable, carried_by, k_no_pm_flag));
    }
    if (!env_files.empty()) {
      plan.notes.push_back(fmt::format("ExecStart passes {} and reads EnvironmentFile={} (not read by gpuwarm): if "
                                       "that file sets {}, the restart brings it back and verification fails",
                                       *variable, env_files, k_no_pm_flag));
    }
  }
  if (!s.service.active_state.is("active")) {
    plan.steps.push_back({StepKind::start, "the daemon is not running under systemd", "", ""});
  } else if (running_with_flag || exec_start_changed) {
    plan.steps.push_back({StepKind::restart,
                          exec_start_changed
                              ? fmt::format("the running daemon was started with {}: the new ExecStart applies at "
                                            "a restart",
                                            k_no_pm_flag)
                              : fmt::format("the running daemon was started with {}, which the unit's ExecStart no "
                                            "longer has: it applies at a restart",
                                            k_no_pm_flag),
                          "", ""});
  }

  if (plan.steps.empty()) {
    plan.reason = "configuration already as wanted; " + d.verdict.next_step;
    return plan;
  }
  plan.outcome = FixOutcome::act;
  return plan;
}

const char* to_string(StepKind kind) {
  switch (kind) {
    case StepKind::write_file: return "write-file";
    case StepKind::reload: return "reload";
    case StepKind::enable: return "enable";
    case StepKind::add_wants: return "add-wants";
    case StepKind::reset_failed: return "reset-failed";
    case StepKind::start: return "start";
    case StepKind::restart: return "restart";
  }
  return "?";
}

std::string describe(const FixStep& step) {
  switch (step.kind) {
    case StepKind::write_file: return "write " + step.path;
    case StepKind::reload: return "D-Bus Manager.Reload()";
    case StepKind::enable:
      return fmt::format("D-Bus Manager.EnableUnitFiles([{}], runtime=false, force=false)", k_unit_name);
    case StepKind::add_wants:
      return fmt::format("D-Bus Manager.AddDependencyUnitFiles([{}], multi-user.target, Wants, runtime=false, "
                         "force=false)",
                         k_unit_name);
    case StepKind::reset_failed: return fmt::format("D-Bus Manager.ResetFailedUnit({})", k_unit_name);
    case StepKind::start:
      return fmt::format("D-Bus Manager.Subscribe(); Manager.StartUnit({}, \"replace\"); wait for JobRemoved",
                         k_unit_name);
    case StepKind::restart:
      return fmt::format("D-Bus Manager.Subscribe(); Manager.RestartUnit({}, \"replace\"); wait for JobRemoved",
                         k_unit_name);
  }
  return "?";
}

}  // namespace gpuwarm
