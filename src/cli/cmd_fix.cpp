#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "cli/step_report.h"
#include "cli/verify_runner.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/safe_write.h"
#include "core/signal_shield.h"
#include "core/strings.h"
#include "fix/plan.h"
#include "output/diagnosis_output.h"
#include "rules/rule.h"
#include "snapshot/snapshot_json.h"
#include "systemd/service_manager.h"

namespace gpuwarm {

namespace {

struct FixOptions {
  CollectOptions collect;
  std::string snapshot_file;
  VerifyOptions verify;
  bool dry_run = false;
  bool json = false;
  double job_timeout_seconds = 90;
};

struct FixStepRecord {
  const FixStep* step;
  std::string status;  // planned, done, unchanged, failed
  std::string detail;
};

Result<std::string> execute(const FixStep& step, const Paths& paths, ServiceManager& services,
                            std::chrono::milliseconds timeout) {
  switch (step.kind) {
    case StepKind::write_file: {
      // Units and drop-ins: 0644 in 0755 directories whatever the umask, no
      // symlink followed, durable and all-or-nothing (core/safe_write.h).
      WriteOptions where;
      where.root = paths.is_live() ? "/" : paths.root();
      auto r = write_file_atomically(step.path, step.content, where);
      if (!r) {
        return tl::unexpected(r.error());
      }
      return std::string("written");
    }
    case StepKind::reload: {
      auto r = services.reload();
      if (!r) {
        return tl::unexpected(r.error());
      }
      return std::string("reloaded");
    }
    case StepKind::enable:
    case StepKind::add_wants: {
      const bool enable = step.kind == StepKind::enable;
      auto r = enable ? services.enable(k_unit_name) : services.add_wants("multi-user.target", k_unit_name);
      if (!r) {
        return tl::unexpected(r.error());
      }
      std::string detail = !r->empty() ? "" : enable ? "already enabled" : "multi-user.target wanted it already";
      for (const auto& c : *r) {
        detail += (detail.empty() ? "" : "; ") + c.type + " " + c.path + " -> " + c.target;
      }
      return detail;
    }
    case StepKind::reset_failed: {
      auto r = services.reset_failed(k_unit_name);
      if (!r) {
        return tl::unexpected(r.error());
      }
      return std::string("reset");
    }
    case StepKind::start:
    case StepKind::restart: {
      auto r = step.kind == StepKind::start ? services.start(k_unit_name, timeout)
                                            : services.restart(k_unit_name, timeout);
      if (!r) {
        return tl::unexpected(r.error());
      }
      if (*r != "done") {
        return fail(fmt::format("job ended with result \"{}\" (see journalctl -u {})", *r, k_unit_name));
      }
      return std::string("job done");
    }
  }
  return fail("unknown step");
}

std::vector<StepReport> reports(const std::vector<FixStepRecord>& records) {
  std::vector<StepReport> out;
  for (const auto& r : records) {
    StepReport s{to_string(r.step->kind), describe(*r.step), r.step->why, r.status, r.detail, {}, {}};
    if (r.step->kind == StepKind::write_file) {
      s.path = r.step->path;
      s.content = r.step->content;
    }
    out.push_back(std::move(s));
  }
  return out;
}

std::string steps_text(const std::vector<FixStepRecord>& records) { return render_steps_text(reports(records)); }
nlohmann::json steps_json(const std::vector<FixStepRecord>& records) { return render_steps_json(reports(records)); }

const char* outcome_name(FixOutcome o) {
  switch (o) {
    case FixOutcome::act: return "act";
    case FixOutcome::nothing_to_do: return "nothing-to-do";
    case FixOutcome::refused: return "refused";
    case FixOutcome::no_service_manager: return "no-service-manager";
  }
  return "?";
}

}  // namespace

std::function<int()> setup_fix(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<FixOptions>();
  opts->collect.full = false;
  add_collect_options(sub, opts->collect);
  add_verify_options(sub, opts->verify);
  auto* dry = sub.add_flag("--dry-run", opts->dry_run, "Print the exact plan (files, D-Bus calls) and change nothing");
  auto* snap_opt =
      sub.add_option("--snapshot", opts->snapshot_file,
                     "Plan for a recorded node (`gpuwarm snapshot -o FILE`, `diagnose --json`): what fix would do "
                     "there, from the facts, unit text and drop-in it recorded; only with --dry-run")
          ->check(CLI::ExistingFile.description(""))
          ->type_name("FILE")
          ->needs(dry);
  for (const char* name : {"--root", "--kernel-log", "--nvml", "--nvml-timeout", "--no-systemd"}) {
    snap_opt->excludes(sub.get_option(name));
  }
  sub.add_flag("--json", opts->json, "Print the plan, what was done, and the verification as JSON");
  sub.add_option("--job-timeout", opts->job_timeout_seconds, "Seconds to wait for systemd's start or restart job (1-3600)")
      ->check(finite_range(1.0, 3600.0))
      ->type_name("SECONDS")
      ->capture_default_str();
  sub.footer(
      "Acts only when `gpuwarm diagnose` says the persistence runbook applies. Through systemd's D-Bus API\n"
      "(never `systemctl`, never `nvidia-smi -pm`) and only where needed, it writes\n"
      "  " + std::string(k_dropin_path) + "\n"
      "(drops --no-persistence-mode, StopWhenUnneeded=no, Restart=on-failure, PIDFile under /run), or the\n"
      "whole unit " + std::string(k_unit_path) + " where none is installed; reloads,\n"
      "enables the unit for boot (a unit without [Install]: multi-user.target wants it), clears a failed\n"
      "state, and starts it, or restarts it where the running daemon has --no-persistence-mode, waiting for\n"
      "the job's result. Then it runs `gpuwarm verify`. A second run after a verified one changes nothing\n"
      "(changed=false). A lock keeps two runs apart. Under --root, files go into that tree and systemd's\n"
      "calls to the bus DBUS_SYSTEM_BUS_ADDRESS names (unset: only --dry-run runs, exit 2).\n"
      "Driver-install, thermal/power, pinned-clock, reboot-pending and cannot-tell verdicts are refused unchanged.\n\n"
      "Exit codes: 0 fixed (or nothing to do) and verified, 1 a step failed (the report says which ran),\n"
      "2 bad command line, 3 refused: an action of yours first (the unit masked, a unit systemd cannot load,\n"
      "a daemon started outside systemd, another drop-in overriding gpuwarm's, --no-persistence-mode set\n"
      "through a variable), 4 refused: reboot pending, 5 refused: routed elsewhere,\n"
      "6 no systemd here (nothing changed), 7 another fix, reset or reload-modules is running, or probe or\n"
      "watch --load was still timing the GPUs after 60 s (the node's lock; a reading by diagnose, check,\n"
      "metrics, snapshot or verify is waited for),\n"
      "8 verification failed after the steps (changed says whether any step changed something),\n"
      "9 refused: cannot tell (a fact the verdict needs could not be read, or systemd runs here but its bus\n"
      "did not answer),\n"
      "128+N a signal N (SIGINT, SIGTERM, SIGHUP, SIGQUIT) arrived while changing the node or verifying:\n"
      "every step ran to its end, the report says which, verification was skipped or cut short. The lock\n"
      "is taken before anything is read.\n\n"
      "Examples:\n"
      "  gpuwarm fix --dry-run\n"
      "  gpuwarm fix --json > fix-report.json\n"
      "  gpuwarm fix --dry-run --snapshot node.json    # plan for a recorded node");

  return [opts]() -> int {
    Paths paths(opts->collect.root);
    // Files go into the tree, but Reload, enable and start go to whatever systemd the system bus reaches: by
    // default this host's. Acting needs the bus named for that tree (its container's systemd, a test's stand-in).
    const char* bus = std::getenv("DBUS_SYSTEM_BUS_ADDRESS");
    const std::string_view named = bus == nullptr ? "" : bus;
    // Exported by some shells and kept by `sudo -E`: the default socket named outright is still this host's bus.
    const bool this_hosts_bus = named.empty() || named == "unix:path=/run/dbus/system_bus_socket" ||
                                named == "unix:path=/var/run/dbus/system_bus_socket";
    if (!opts->dry_run && !paths.is_live() && opts->collect.use_systemd && this_hosts_bus) {
      return usage_error("fix", "--root writes into another tree, but systemd's calls would reach this host's system "
                                "bus and start this host's daemon: set DBUS_SYSTEM_BUS_ADDRESS to the bus of the "
                                "systemd that runs that tree, or use --dry-run (nothing was changed)");
    }
    // The lock comes first: two fixes must not both plan from the same old
    // state. A lock that cannot be opened at all is an error only if this run
    // goes on to change something (refusals and "no systemd" need none).
    Result<std::string> lock = std::string();
    if (!opts->dry_run) {
      lock = hold_node_lock(paths, "fix");
      if (lock && !lock->empty()) {
        const std::string why = *lock;
        int code = to_int(ExitCode::locked);
        if (opts->json) {
          std::cout << dump_json({{"kind", "gpuwarm-fix"}, {"schema_version", 1}, {"hostname", host_name()},
                                  {"taken_at", utc_now_iso8601()}, {"outcome", "locked"}, {"changed", false}, {"reason", why},
                                  {"steps", nlohmann::json::array()}, {"exit_code", code}})
                    << "\n";
        } else {
          std::cout << why << "\nNothing was changed.\n";
        }
        return code;
      }
    }
    // A dry run holds no lock, nor a run whose lock could not be opened (it may still end in a refusal): each
    // reads as diagnose does, leaving NVML closed while a probe or a change runs.
    opts->collect.stand_aside = opts->dry_run || !lock;
    auto loaded = snapshot_from_file_or_node(opts->snapshot_file, opts->collect);
    if (!loaded) {
      std::cerr << "gpuwarm fix: " << escape_control(loaded.error().message) << "\n";
      if (opts->json) {  // `| jq` gets a document either way
        std::cout << dump_json({{"kind", "gpuwarm-fix"}, {"schema_version", 1}, {"hostname", host_name()},
                                {"taken_at", utc_now_iso8601()}, {"outcome", "error"}, {"changed", false}, {"reason", loaded.error().message},
                                {"steps", nlohmann::json::array()}, {"exit_code", to_int(ExitCode::tool_error)}})
                  << "\n";
      }
      return to_int(ExitCode::tool_error);
    }
    Snapshot before = std::move(*loaded);
    Diagnosis diagnosis = diagnose(before);
    std::vector<std::string> assumed;
    FixPlan plan = plan_fix(before, diagnosis, fix_inputs(before, assumed));
    for (auto& a : assumed) {
      plan.notes.push_back(std::move(a));
    }
    if (!opts->snapshot_file.empty()) {
      // The recording's own strings on one line: notes keep their line breaks, these must not bring any.
      plan.notes.insert(plan.notes.begin(), "planned for the node recorded in " + escape_control(opts->snapshot_file) +
                                                " (" + escape_control(before.hostname) + ", " +
                                                escape_control(before.collected_at) + ")");
    }

    std::vector<FixStepRecord> records;
    std::string write_would_fail;
    for (const auto& step : plan.steps) {
      records.push_back({&step, "planned", ""});
      // A dry run of this node checks what the write would refuse (a link, a folder others may write, a
      // read-only /etc), so that it does not promise a plan whose first step fails. A recorded node has no tree.
      if (opts->dry_run && opts->snapshot_file.empty() && step.kind == StepKind::write_file) {
        WriteOptions where;
        where.root = paths.is_live() ? "/" : paths.root();
        if (auto ok = check_write_target(step.path, where); !ok) {
          records.back().detail = "would fail: " + ok.error().message;
          write_would_fail = write_would_fail.empty() ? ok.error().message : write_would_fail;
        }
      }
    }
    // Self-contained: the diagnosis the plan came from rides along, so a saved fix report is a node report
    // (the Ansible module's facts, `gpuwarm fleet-summary`).
    nlohmann::json report = {{"kind", "gpuwarm-fix"},
                             {"schema_version", 1},
                             {"hostname", before.hostname},
                             {"taken_at", before.collected_at},
                             {"outcome", outcome_name(plan.outcome)},
                             {"dry_run", opts->dry_run},
                             {"verdict", diagnosis.verdict.code},
                             {"reason", plan.reason},
                             {"notes", plan.notes},
                             {"diagnosis", render_diagnosis_json(before, diagnosis)}};
    auto finish = [&](int code, bool changed, const std::string& text_tail) {
      report["changed"] = changed;
      report["steps"] = steps_json(records);
      report["exit_code"] = code;
      if (opts->json) {
        std::cout << dump_json(report) << "\n";
      } else {
        std::cout << text_tail;
      }
      return code;
    };
    // Notes and reasons quote the snapshot (hostname, unit text, systemd's errors): escaped once, here.
    for (auto& note : plan.notes) {
      note = escape_control_lines(note);
    }
    plan.reason = escape_control_lines(plan.reason);

    std::string head = fmt::format("gpuwarm fix · verdict: {} [{}]\n", diagnosis.verdict.title,
                                   diagnosis.verdict.rule_id);
    for (const auto& note : plan.notes) {
      head += "note: " + note + "\n";
    }
    if (!before.service.reachable && !before.service.unreachable.empty() &&
        plan.outcome != FixOutcome::no_service_manager) {  // that outcome's reason says it already
      // Whatever the verdict, say why systemd could not be asked (a missing libsystemd names its package).
      head += "systemd: " + escape_control(before.service.unreachable) + "\n";
    }
    if (plan.outcome == FixOutcome::refused || plan.outcome == FixOutcome::no_service_manager) {
      return finish(to_int(plan.exit_code), false, head + plan.reason + "\nNothing was changed.\n");
    }
    if (opts->dry_run) {
      std::string text = head + (plan.steps.empty() ? plan.reason + "\n"
                                                    : "Plan:\n" + steps_text(records)) +
                         (write_would_fail.empty()
                              ? "Dry run: nothing was changed; verification would follow.\n"
                              : "Dry run: nothing was changed; a real run would stop at its first write: " +
                                    escape_control(write_would_fail) + "\n");
      return finish(0, false, text);
    }

    bool changed = false;
    std::string text = head;
    // Caught from here on, so that none falls between the shield below and the verification after it: one that
    // comes while verifying ends the verification, not the report (the node may be changed by then).
    StopSignalsCaught stop_signals;
    if (plan.outcome == FixOutcome::act) {
      if (!lock) {
        // The plan would act, but two runs could not be kept apart: the failure shape, said on stderr.
        report["outcome"] = "error";
        report["reason"] = lock.error().message;
        std::cerr << "gpuwarm fix: " << escape_control(lock.error().message) << "\n";
        return finish(to_int(ExitCode::tool_error), false, head + "Nothing was changed.\n");
      }
      auto services = make_systemd_manager();
      auto timeout = std::chrono::milliseconds(static_cast<long long>(opts->job_timeout_seconds * 1000));
      // Ctrl-C, SIGTERM, SIGHUP and SIGQUIT wait until every step has run (or one has
      // failed) and the report says so: never a drop-in without its reload,
      // a queued start job with no report.
      SignalShield shield("gpuwarm fix", "the steps run to their end first, then the report says what was done");
      if (int sig = StopSignalsCaught::signal(); sig != 0) {
        // Asked to stop before the first step: nothing is started rather than everything run.
        report["interrupted"] = signal_name(sig);
        report["interrupted_during"] = "before the steps";
        return finish(128 + sig, false,
                      head + fmt::format("Interrupted ({}) before any step: nothing was changed.\n", signal_name(sig)));
      }
      bool failed = false;
      for (auto& rec : records) {
        auto r = execute(*rec.step, paths, *services, timeout);
        if (!r) {
          rec.status = "failed";
          rec.detail = r.error().message;
          for (auto& later : records) {
            if (later.status == "planned") {
              later.status = "not-run";
            }
          }
          failed = true;
          break;
        }
        rec.status = "done";
        rec.detail = *r;
        changed = changed || rec.step->kind != StepKind::enable || *r != "already enabled";
      }
      if (int sig = shield.take(); sig != 0) {
        report["interrupted"] = signal_name(sig);
        report["interrupted_during"] = "steps";
        return finish(failed ? to_int(ExitCode::tool_error) : 128 + sig, changed,
                      text + steps_text(records) +
                          fmt::format("Interrupted ({}) while changing the node: every step above ran to its end; "
                                      "verification skipped.\n",
                                      signal_name(sig)));
      }
      if (failed) {
        return finish(to_int(ExitCode::tool_error), changed,
                      text + steps_text(records) +
                          (changed ? "Stopped at the failed step; the steps before it took effect.\n"
                                   : "Stopped at the failed step; nothing was changed.\n"));
      }
      text += steps_text(records);
    } else {
      text += plan.reason + "\n";
    }
    text += fmt::format("changed={}\n\n", changed ? "true" : "false");

    VerifyOptions vopts = opts->verify;
    if (!changed) {
      vopts.settle_seconds = 0;  // nothing to settle
    }
    VerifyInputs in = gather_verify_inputs(opts->collect, vopts, before);
    if (int sig = StopSignalsCaught::signal(); sig != 0) {
      report["interrupted"] = signal_name(sig);
      report["interrupted_during"] = "verification";
      return finish(128 + sig, changed,
                    text + fmt::format("Interrupted ({}) while verifying: verification not finished.\n",
                                       signal_name(sig)));
    }
    VerifyReport verify = evaluate_verify(in);
    report["verify"] = render_verify_json(in, verify);
    text += render_verify_text(in, verify);
    return finish(to_int(verify.passed ? ExitCode::healthy : ExitCode::verify_failed), changed, text);
  };
}

}  // namespace gpuwarm
