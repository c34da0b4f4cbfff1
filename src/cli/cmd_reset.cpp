// `gpuwarm reset`: stop nvidia-persistenced, reset GPUs with nvidia-smi, start the daemon again (always,
// also after a failed or interrupted reset), then verify. Plans first; acts only with --yes.

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "cli/step_report.h"
#include "cli/verify_runner.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/signal_shield.h"
#include "core/strings.h"
#include "fix/plan.h"
#include "output/diagnosis_output.h"
#include "reset/plan.h"
#include "snapshot/snapshot_json.h"
#include "sysfs/daemon.h"
#include "sysfs/host.h"
#include "systemd/service_manager.h"

namespace gpuwarm {

namespace {

struct ResetOptions {
  CollectOptions collect;
  VerifyOptions verify;
  std::vector<std::string> gpus;
  bool yes = false;
  bool dry_run = false;
  bool json = false;
  bool no_restore = false;
  double job_timeout_seconds = 90;
  double reset_timeout_seconds = 120;
};

// nvidia-smi -ac / -pl answer in well under a second; a GPU that does not answer in 30 s is reported.
constexpr int k_restore_timeout_ms = 30'000;

struct ResetStepRecord {
  const ResetStep* step;
  std::string status = "planned";  // planned, done, failed, not-run
  std::string detail;
};

// "pid 4242 (python3): python3 train.py --lr 3e-4", for the processes that block a reset: the operator must
// know which job to stop. Read only for those, before anything is changed, escaped, bounded in size and in
// time (read_cmdline: the process holding the GPU may be stuck in the driver; past the deadline the command
// name stands alone).
std::vector<std::string> command_lines(const Paths& paths, const std::vector<GpuClient>& clients) {
  std::vector<std::string> out;
  for (const auto& c : clients) {
    std::string args = read_cmdline(paths, c.pid).text.value_or("");
    if (args.size() > 4096) {
      args.resize(4096);
      args += "...";
    }
    std::replace(args.begin(), args.end(), '\0', ' ');
    while (!args.empty() && args.back() == ' ') {
      args.pop_back();
    }
    out.push_back(fmt::format("pid {} ({}): {}", c.pid, escape_control(c.comm),
                              args.empty() ? "(command line unreadable)" : escape_control(args)));
  }
  return out;
}

std::vector<StepReport> reports(const std::vector<ResetStepRecord>& records) {
  std::vector<StepReport> out;
  for (const auto& r : records) {
    out.push_back({to_string(r.step->kind), describe(*r.step), r.step->why, r.status, r.detail, {}, {}});
  }
  return out;
}

std::string steps_text(const std::vector<ResetStepRecord>& records) { return render_steps_text(reports(records)); }
nlohmann::json steps_json(const std::vector<ResetStepRecord>& records) { return render_steps_json(reports(records)); }

const GpuFacts* by_bus_id(const Snapshot& s, const std::string& bus_id) {
  for (const auto& g : s.nvml.gpus) {
    if (g.pci_bus_id.is(bus_id)) {
      return &g;
    }
  }
  return nullptr;
}

// How long the daemon may take, after its start job, to open the GPUs whose settings are set again.
constexpr auto k_daemon_hold_timeout = std::chrono::seconds(10);

struct AwaitedHold {
  DaemonHold hold;
  double waited_s = 0;
};

// Polls the daemon's open files until it holds every awaited GPU, or the timeout. Bounded: each /proc read is.
// A GPU whose /dev/nvidiaN is unknown cannot be waited for; the others are.
AwaitedHold await_daemon_hold(const Paths& paths, const HoldWanted& wanted) {
  const auto start = std::chrono::steady_clock::now();
  AwaitedHold out;
  for (;;) {
    out.hold = daemon_hold(read_daemon(paths), wanted);
    out.waited_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (out.hold.not_held.empty() || std::chrono::steady_clock::now() - start >= k_daemon_hold_timeout) {
      return out;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

std::string device_nodes(const std::vector<unsigned>& minors) {
  std::vector<std::string> names;
  for (unsigned m : minors) {
    names.push_back(fmt::format("/dev/nvidia{}", m));
  }
  return fmt::format("{}", fmt::join(names, ", "));
}

nlohmann::json hold_json(const AwaitedHold& a) {
  return {{"awaited_minors", a.hold.awaited},
          {"held", a.hold.unknown.empty() ? nlohmann::json(a.hold.not_held.empty()) : nlohmann::json(nullptr)},
          {"not_held_minors", a.hold.not_held},
          {"unknown", a.hold.unknown},
          {"waited_s", std::round(a.waited_s * 1000) / 1000}};
}

std::string hold_text(const AwaitedHold& a) {
  if (a.hold.held()) {
    return fmt::format("nvidia-persistenced held {} after {:.2f} s; the settings were set again then.\n",
                       device_nodes(a.hold.awaited), a.waited_s);
  }
  if (!a.hold.unknown.empty()) {
    return fmt::format("Whether nvidia-persistenced holds every GPU whose settings are set again could not be told "
                       "({}); they were set again after {:.2f} s all the same: the checks below say whether they "
                       "stayed.\n",
                       escape_control(a.hold.unknown), a.waited_s);
  }
  return fmt::format("nvidia-persistenced did not hold {} within {} s (does it run with --no-persistence-mode?); the "
                     "settings were set again all the same: the checks below say whether they stayed.\n",
                     device_nodes(a.hold.not_held), k_daemon_hold_timeout.count());
}

struct AfterCheck {
  std::string name;
  bool passed;
  std::string detail;
};

// What only a reset can break: the GPU comes back as itself; settings that do not survive a reset are
// named (restored or lost), never passed over.
std::vector<AfterCheck> reset_checks(const ResetPlan& plan, const Snapshot& after, bool no_restore) {
  std::vector<AfterCheck> out;
  for (const auto& b : plan.settings) {
    const GpuFacts* g = by_bus_id(after, b.pci_bus_id);
    if (g == nullptr || !g->uuid.has()) {
      out.push_back({fmt::format("GPU {} ({}) is back", b.index, b.pci_bus_id), false,
                     g == nullptr ? "NVML does not list it after the reset" : "its UUID could not be read"});
      continue;
    }
    out.push_back({fmt::format("GPU {} ({}) is back with the same UUID", b.index, b.pci_bus_id), *g->uuid == b.uuid,
                   *g->uuid == b.uuid ? *g->uuid : fmt::format("was {}, now {}", b.uuid, *g->uuid)});
    // With --no-restore the defaults are what was asked for: a setting back at its default passes, and says
    // how to set it again.
    const char* lost = no_restore ? "at the default, as --no-restore asked" : "lost";
    if (b.app_sm_mhz) {
      bool kept = g->app_clocks.sm.is(*b.app_sm_mhz);
      bool at_default = g->app_clocks.sm.has() && g->default_app_clocks.sm.is(*g->app_clocks.sm);
      out.push_back({fmt::format("GPU {} application clocks", b.index), kept || (no_restore && at_default),
                     kept ? fmt::format("still {} MHz (SM)", *b.app_sm_mhz)
                          : fmt::format("{}: were {} MHz (SM), now {}; set them again: nvidia-smi -i {} -ac {},{}", lost,
                                        *b.app_sm_mhz, g->app_clocks.sm.has() ? std::to_string(*g->app_clocks.sm) : "?",
                                        b.pci_bus_id, b.app_mem_mhz.value_or(0), *b.app_sm_mhz)});
    }
    // The requested limit is what -pl set; the enforced one can also move for other reasons, so it is
    // compared only when no limit was set away from its default.
    if (b.requested_power_limit_mw) {
      bool kept = g->requested_power_limit_mw.is(*b.requested_power_limit_mw);
      bool at_default = g->requested_power_limit_mw.has() && g->default_power_limit_mw.is(*g->requested_power_limit_mw);
      out.push_back({fmt::format("GPU {} power limit", b.index), kept || (no_restore && at_default),
                     kept ? fmt::format("still {:g} W", *b.requested_power_limit_mw / 1000.0)
                          : fmt::format("{}: was {:g} W, now {}; set it again: nvidia-smi -i {} -pl {:g}", lost,
                                        *b.requested_power_limit_mw / 1000.0,
                                        g->requested_power_limit_mw.has()
                                            ? fmt::format("{:g} W", *g->requested_power_limit_mw / 1000.0)
                                            : "unread (" + g->requested_power_limit_mw.missing + ")",
                                        b.pci_bus_id, *b.requested_power_limit_mw / 1000.0)});
    } else if (b.power_limit_mw && g->power_limit_mw.has() && *g->power_limit_mw != *b.power_limit_mw) {
      out.push_back({fmt::format("GPU {} power limit", b.index), false,
                     fmt::format("lost: was {:g} W, now {:g} W; set it again: nvidia-smi -i {} -pl {:g}",
                                 *b.power_limit_mw / 1000.0, *g->power_limit_mw / 1000.0, b.pci_bus_id,
                                 *b.power_limit_mw / 1000.0)});
    }
  }
  return out;
}

}  // namespace

std::function<int()> setup_reset(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<ResetOptions>();
  opts->collect.full = true;          // application clocks and power limits, to say what a reset loses
  opts->collect.scan_clients = true;  // every process holding a GPU, persistence on or off
  opts->collect.pci_switches = true;  // NVSwitches change the reset procedure
  add_collect_options(sub, opts->collect);
  add_verify_options(sub, opts->verify);
  sub.add_option("--gpu", opts->gpus, "GPU to reset: NVML index, UUID (GPU-...) or PCI bus id; repeatable")
      ->required()
      ->type_name("ID");
  sub.add_flag("--yes", opts->yes, "Act: without it gpuwarm only prints the plan");
  sub.add_flag("--dry-run", opts->dry_run, "Print the exact steps (D-Bus calls, the reset command) and change nothing");
  sub.add_flag("--json", opts->json, "Print the plan, each step's result and the verification as JSON");
  sub.add_flag("--no-restore", opts->no_restore,
               "Leave application clocks and power limits at the defaults a reset returns them to");
  sub.add_option("--job-timeout", opts->job_timeout_seconds, "Seconds to wait for each systemd job (1-3600)")
      ->check(finite_range(1.0, 3600.0))
      ->type_name("SECONDS")
      ->capture_default_str();
  sub.add_option("--reset-timeout", opts->reset_timeout_seconds, "Seconds nvidia-smi --gpu-reset may take (1-3600)")
      ->check(finite_range(1.0, 3600.0))
      ->type_name("SECONDS")
      ->capture_default_str();
  sub.footer(
      "nvidia-persistenced holds every GPU open, so `nvidia-smi --gpu-reset` fails while it runs. gpuwarm\n"
      "refuses while any other process holds a GPU to reset (pid and command line listed), or when a reset\n"
      "cannot help (GPU lost from the bus, excluded), on NVSwitch systems (Fabric Manager's own procedure\n"
      "applies), on MIG-enabled GPUs (a reset destroys their instances) and on GPUs with a MIG mode change\n"
      "pending (a reset would apply it); otherwise it stops\n"
      "nvidia-persistenced through systemd\n"
      "(StopUnit, waiting for the job), checks the GPUs are free, runs nvidia-smi --gpu-reset -i <bus ids>\n"
      "from a system directory with a deadline, and starts the daemon again -- always, also when the reset\n"
      "failed or a signal arrived (signals wait until the daemon is back). A reset returns application clocks\n"
      "and power limits to their defaults: those set away from the default are set again with nvidia-smi -ac\n"
      "and -pl once the daemon is started again and holds those GPUs (waited for up to 10 s, then set all the\n"
      "same; --no-restore leaves the defaults); stopping the daemon alone\n"
      "costs them on every GPU nothing else holds, so they are set again also when the reset did not run.\n"
      "Units that Requires=, BindsTo= or PartOf= the daemon (a site's slurmd, say) stop with it: the plan\n"
      "names the active ones and starts each again last (cannot tell, 9, where they cannot be read).\n"
      "Then it verifies every GPU: Enabled and held by the daemon, the reset GPUs back with the same UUID,\n"
      "application clocks and power limits as before (a check that fails says how to set them again).\n"
      "Without systemd it prints the same steps to run by hand and changes nothing. Shares fix's lock.\n\n"
      "Exit codes: 0 reset and verified (or the plan printed), 1 a step failed (the report says whether\n"
      "the daemon runs), nvidia-smi is not usable or --yes without root, 2 bad command line or unknown GPU, 3 refused: another process\n"
      "holds the GPU, 5 refused: a reset cannot help (or no driver), 6 no systemd here (steps printed,\n"
      "nothing changed), 7 another fix, reset or reload-modules runs, or probe or watch --load was still\n"
      "timing the GPUs after 60 s (the node's lock; a reading by diagnose, check, metrics, snapshot or verify\n"
      "is waited for), 8 reset but verification failed, 9 refused: cannot\n"
      "tell (who holds the GPUs, which GPUs exist; systemd runs here but its bus did not answer: steps\n"
      "printed), 128+N signal N arrived (every step ran to its end, the\n"
      "daemon was started again; one before the reset skipped it: the text says so, and \"reset_ran\" is false\n"
      "in the JSON; verification skipped or cut short).\n\n"
      "Examples:\n"
      "  gpuwarm reset --gpu 0 --dry-run\n"
      "  gpuwarm reset --gpu 00000000:3B:00.0 --yes");

  return [opts]() -> int {
    if (opts->yes && opts->dry_run) {  // as reload-modules: which one was meant cannot be guessed
      return usage_error("reset", "--dry-run and --yes contradict each other: choose one");
    }
    Paths paths(opts->collect.root);
    const bool acting = opts->yes && !opts->dry_run;
    // Refusals known from the command line alone come before the lock: a lock file is not written into a
    // recorded tree, and a user without root hears why, not that a lock could not be opened.
    if (acting && !paths.is_live()) {
      return usage_error("reset", "--root reads another tree: a reset acts on this host's GPUs, so --yes runs only "
                                  "without --root (--dry-run --root prints the plan)");
    }
    if (acting) {
      Result<std::string> lock = ::geteuid() != 0
                                     ? fail("resetting GPUs needs root: run it as root (or with sudo)")
                                     : hold_node_lock(paths, "reset");
      if (!lock || !lock->empty()) {
        const std::string why = !lock ? lock.error().message : *lock;
        const ExitCode code = !lock ? ExitCode::tool_error : ExitCode::locked;
        if (opts->json) {  // every outcome of --json is a report on stdout
          std::cout << dump_json({{"kind", "gpuwarm-reset"}, {"schema_version", 1}, {"hostname", host_name()},
                                  {"taken_at", utc_now_iso8601()},
                                  {"outcome", !lock ? "error" : "locked"}, {"reason", why},
                                  {"steps", nlohmann::json::array()}, {"exit_code", to_int(code)}})
                    << "\n";
        }
        (!lock ? std::cerr : (opts->json ? std::cerr : std::cout))
            << (!lock ? "gpuwarm reset: " : "") << why << "\nNothing was changed.\n";
        return to_int(code);
      }
    }
    opts->collect.stand_aside = !acting;  // only printing the plan, without the lock: read as diagnose does
    Snapshot before = collect_from_options(opts->collect);
    TargetResolution targets = resolve_reset_targets(before, opts->gpus);
    if (!targets.error.empty()) {
      if (opts->json) {  // every outcome of --json is a report on stdout
        std::cout << dump_json({{"kind", "gpuwarm-reset"}, {"schema_version", 1}, {"hostname", before.hostname},
                                {"taken_at", before.collected_at}, {"outcome", "refused"}, {"reason", targets.error}, {"steps", nlohmann::json::array()},
                                {"exit_code", to_int(targets.code)}})
                  << "\n";
      }
      std::cerr << "gpuwarm reset: " << escape_control(targets.error) << "\n";
      return to_int(targets.code);
    }
    ResetInputs inputs;
    // Only this host's nvidia-smi may reset this host's GPUs: with --root the plan can be read, not run.
    if (auto smi = find_system_executable("/", "nvidia-smi"); smi) {
      inputs.nvidia_smi = *smi;
    } else {
      inputs.nvidia_smi_missing = smi.error().message;
    }
    inputs.holder_command_lines = command_lines(paths, reset_blockers(before, targets.indices));
    inputs.restore_settings = !opts->no_restore;
    // Units that Requires=, BindsTo= or PartOf= the daemon stop with it (a site's slurmd, say) and its start does
    // not start them: asked where the plan will stop it, so that they are named and started again.
    std::unique_ptr<ServiceManager> services;
    if (before.service.reachable && before.service.active_state.is("active")) {
      services = make_systemd_manager();
      if (auto dependents = services->active_dependents(k_unit_name)) {
        inputs.stopped_with = std::move(*dependents);
      } else {
        inputs.stopped_with_unread = dependents.error().message;
      }
    }
    ResetPlan plan = plan_reset(before, targets.indices, inputs);

    std::vector<ResetStepRecord> records;
    for (const auto& step : plan.steps) {
      records.push_back({&step, "planned", ""});
    }
    nlohmann::json report = {{"kind", "gpuwarm-reset"}, {"schema_version", 1}, {"hostname", before.hostname},
                             {"taken_at", before.collected_at}, {"targets", plan.targets},
                             {"dry_run", !acting}, {"notes", plan.notes}, {"reason", plan.reason},
                             {"manual_steps", plan.manual}};
    auto finish = [&](int code, const std::string& text) {
      report["steps"] = steps_json(records);
      report["exit_code"] = code;
      if (opts->json) {
        std::cout << dump_json(report) << "\n";
      } else {
        std::cout << text;
      }
      return code;
    };
    std::string head = fmt::format("gpuwarm reset · GPU {}\n", fmt::join(plan.targets, ", "));
    for (const auto& note : plan.notes) {
      head += "note: " + escape_control_lines(note) + "\n";
    }
    if (plan.outcome == ResetOutcome::refused) {
      report["outcome"] = "refused";
      return finish(to_int(plan.exit_code), head + "Refused: " + escape_control_lines(plan.reason) +
                                                 "\nNothing was changed.\n");
    }
    if (plan.outcome == ResetOutcome::no_service_manager) {
      report["outcome"] = "no-service-manager";
      std::string text = head + escape_control_lines(plan.reason) + "\n";
      int n = 0;
      for (const auto& m : plan.manual) {
        text += fmt::format("  {}. {}\n", ++n, escape_control(m));
      }
      return finish(to_int(plan.exit_code), text);
    }
    if (!acting) {
      report["outcome"] = "planned";
      return finish(to_int(ExitCode::healthy),
                    head + "Plan:\n" + steps_text(records) +
                        (opts->dry_run ? "Dry run: nothing was changed.\n"
                                       : "Nothing was changed: add --yes to reset (--dry-run only prints).\n"));
    }

    report["outcome"] = "act";
    if (!services) {
      services = make_systemd_manager();
    }
    auto job_timeout = std::chrono::milliseconds(static_cast<long long>(opts->job_timeout_seconds * 1000));
    bool failed = false;
    bool daemon_down = false;  // stopped and not started again: the report must say so loudly
    bool stop_failed = false;
    bool start_failed = false;
    bool reset_ran = false;  // the reset command ran, whatever it answered
    std::optional<AwaitedHold> hold;
    // Set when the look right before the reset finds the GPUs taken and nothing was changed yet: a refusal.
    std::optional<HoldersNow> refused_since_plan;
    int signal_number = 0;
    // Caught from here on, so that none falls between the shield below and the verification after it: one that
    // comes while verifying ends the verification, not the report (the GPUs were reset by then).
    StopSignalsCaught stop_signals;
#ifdef GPUWARM_TEST_HOOKS
    if (const char* hook = std::getenv("GPUWARM_TEST_SIGNAL_BEFORE_STEPS"); hook != nullptr && *hook == '1') {
      ::raise(SIGTERM);  // a stop signal between the catcher's start and the first step, which no test can time
    }
#endif
    bool stopped_before_first_step = false;
    {
      // Ctrl-C, SIGTERM, SIGHUP and SIGQUIT wait until the daemon is started again: never a node left without it.
      SignalShield shield("gpuwarm reset",
                          "the steps run to their end first, and nvidia-persistenced is started again before "
                          "gpuwarm exits (kill -9 now would leave the node without it)");
      bool skip_reset = false;
      // Settings may be lost once the reset ran (whatever it answered) or the daemon was stopped (or may have
      // been: a stop that timed out): with nothing holding a GPU, the driver de-initializes it.
      bool settings_at_risk = false;
      bool hold_awaited = false;  // the daemon is waited for once, before the first setting is set again
      // A step that is a command (the reset, a setting set again): run under a deadline, its output kept.
      auto run_command = [&failed](ResetStepRecord& rec, int timeout_ms) {
        auto r = run_child(rec.step->argv, timeout_ms, 64u << 10);
        bool ok = r && r->exit_code == 0;
        rec.status = ok ? "done" : "failed";
        rec.detail = !r ? r.error().message
                        : fmt::format("exit {}{}{}", r->exit_code, r->output.empty() ? "" : ": ", r->output);
        failed = failed || !ok;
        return ok;
      };
      // Who holds the target GPUs now (holders_now): pid and command name only, as the daemon may be stopped and
      // nothing may block before it is started again.
      auto held_now = [&]() -> HoldersNow {
        Snapshot now;
        ClientScan scan = scan_gpu_clients(paths, {static_cast<int>(::getpid())});
        now.nvml = before.nvml;
        now.host.gpu_clients = scan.unlisted.empty()
                                   ? Fact<std::vector<GpuClient>>::known(std::move(scan.clients))
                                   : Fact<std::vector<GpuClient>>::unknown(scan.unlisted);
        now.host.unreadable_processes = scan.unreadable;
        return holders_now(now, plan.targets);
      };
      bool holders_checked = false;  // since the plan: after the daemon's stop, or right before the reset
      // A stop signal before the first step changes nothing, as in fix and reload-modules: stopping the daemon only
      // to start it again would de-initialize the idle GPUs and lose their settings, for no reset.
      stopped_before_first_step = shield.pending() || StopSignalsCaught::signal() != 0;
      for (auto& rec : records) {
        if (stopped_before_first_step) {
          rec.status = "not-run";
          rec.detail = "a stop signal arrived before the first step";
          continue;
        }
        const ResetStep& step = *rec.step;
        if (step.kind == ResetStepKind::stop_daemon) {
          auto r = services->stop(k_unit_name, job_timeout);
          if (!r || *r != "done") {
            rec.status = "failed";
            rec.detail = r ? fmt::format("job ended with result \"{}\" (journalctl -u {})", *r, k_unit_name)
                           : r.error().message;
            failed = skip_reset = stop_failed = true;
            settings_at_risk = true;  // a timed-out stop may still have stopped it
            continue;
          }
          rec.status = "done";
          rec.detail = "job done";
          daemon_down = settings_at_risk = true;
          // The daemon must have let go: a reset while it (or anything) still holds a GPU fails half-way.
          holders_checked = true;
          if (HoldersNow held = held_now(); !held.why.empty()) {
            rec.status = "failed";
            rec.detail = "stopped, but " + held.why;
            failed = skip_reset = true;
          }
        } else if (step.kind == ResetStepKind::reset_gpus) {
          // A signal the catcher took before the shield began counts as one the shield holds.
          if (skip_reset || shield.pending() || StopSignalsCaught::signal() != 0) {
            rec.status = "not-run";
            rec.detail = stop_failed  ? "the daemon could not be stopped"
                         : skip_reset ? "the GPUs may still be held (above)"
                                      : "a signal arrived before the reset";
            continue;
          }
          // With no stop before it, the last look at the holders was the snapshot, seconds old after the NVML
          // collection: a job or a restarting daemon may have opened a GPU since (review-s53-root L9).
          // Nothing was changed before this look (no stop ran): what it finds is a refusal, as in the plan.
          if (!holders_checked) {
            holders_checked = true;
            if (HoldersNow held = held_now(); !held.why.empty()) {
              rec.status = "not-run";
              rec.detail = "since the plan, " + held.why;
              refused_since_plan = std::move(held);
              continue;
            }
          }
          reset_ran = settings_at_risk = true;
          run_command(rec, static_cast<int>(opts->reset_timeout_seconds * 1000));
        } else if (step.kind == ResetStepKind::restore_setting) {
          // After any reset that ran (one of several GPUs may have reset even when the command failed, and
          // setting an unchanged value is harmless) or any stop of the daemon (every GPU it alone held was
          // de-initialized, the reset's or not), also after a signal: a lowered power cap must not stay at its
          // default. Not while the daemon is down: nothing would hold the GPU to keep the setting.
          // Neither its stop nor its start answered "done": whether it runs (and would keep the setting) is unknown.
          if (!settings_at_risk || daemon_down || (stop_failed && start_failed)) {
            rec.status = "not-run";
            rec.detail = !settings_at_risk ? "neither the reset nor a stop of the daemon ran: nothing was lost"
                         : daemon_down     ? "nvidia-persistenced is not running again, so the setting would not "
                                             "stay: run this once it runs"
                                           : "whether nvidia-persistenced runs is unknown (its stop and its start "
                                             "failed), so the setting may not stay: run this once it runs";
            failed = failed || settings_at_risk;
            continue;
          }
          if (!hold_awaited) {
            hold_awaited = true;
            if (HoldWanted wanted = minors_to_hold(before, plan); plan.daemon_was_active && !wanted.empty()) {
              hold = await_daemon_hold(paths, wanted);
            }
          }
          run_command(rec, k_restore_timeout_ms);
        } else if (step.kind == ResetStepKind::start_dependent) {
          // Also after a failed reset or a signal, as the daemon's start. Not while the daemon is down: a unit
          // that Requires= it would start it again behind the report's back, or fail.
          if (daemon_down) {
            rec.status = "not-run";
            rec.detail = fmt::format("nvidia-persistenced is not running again: start it, then this unit "
                                     "(systemctl start {} {})",
                                     k_unit_name, step.unit);
            failed = true;
            continue;
          }
          auto r = services->start(step.unit, job_timeout);
          if (!r || *r != "done") {
            rec.status = "failed";
            rec.detail = r ? fmt::format("job ended with result \"{}\" (journalctl -u {})", *r, step.unit)
                           : r.error().message;
            failed = true;
          } else {
            rec.status = "done";
            rec.detail = "job done";
          }
        } else {
          auto r = services->start(k_unit_name, job_timeout);
          if (!r || *r != "done") {
            rec.status = "failed";
            rec.detail = r ? fmt::format("job ended with result \"{}\" (journalctl -u {})", *r, k_unit_name)
                           : r.error().message;
            failed = start_failed = true;
          } else {
            rec.status = "done";
            rec.detail = "job done";
            daemon_down = false;
          }
        }
      }
      signal_number = shield.take();
      if (signal_number == 0) {
        signal_number = StopSignalsCaught::signal();  // caught before the shield began
      }
      report["reset_ran"] = reset_ran;
    }
    std::string text = head + steps_text(records);
    report["daemon_hold"] = hold ? hold_json(*hold) : nlohmann::json(nullptr);  // null: nothing was waited for
    if (hold) {
      text += hold_text(*hold);
    }
    // Neither its stop nor its start answered "done": whether it runs now is not known.
    const bool state_unknown = !daemon_down && stop_failed && start_failed;
    // A daemon that was not running before was neither stopped nor started: it runs no more than it did.
    report["daemon_running_after"] = state_unknown || !plan.daemon_was_active ? nlohmann::json(nullptr)
                                                                             : nlohmann::json(!daemon_down);
    if (daemon_down) {
      text += fmt::format("nvidia-persistenced is NOT running: start it (systemctl start {}); until then no GPU "
                          "keeps persistence.\n",
                          k_unit_name);
    } else if (state_unknown) {
      text += fmt::format("Whether nvidia-persistenced runs is unknown (its stop and its start both failed): check "
                          "`systemctl status {}` and start it if it is down.\n",
                          k_unit_name);
    }
    if (signal_number != 0) {
      report["interrupted"] = signal_name(signal_number);
      report["interrupted_during"] = "steps";
    }
    // A failed step outranks the signal: 128+N promises that every step ran and the daemon runs again.
    if (refused_since_plan && !failed) {
      report["outcome"] = "refused";
      report["reason"] = "since the plan, " + refused_since_plan->why;
      std::string end = "Refused: since the plan, " + escape_control_lines(refused_since_plan->why) +
                        "\nNothing was changed.\n";
      if (signal_number != 0) {
        end += fmt::format("{} arrived meanwhile.\n", signal_name(signal_number));
      }
      return finish(to_int(refused_since_plan->code), text + end);
    }
    if (failed) {
      std::string end = daemon_down || state_unknown
                            ? "A step failed.\n"
                            : "A step failed; the daemon was started again where it had been stopped.\n";
      if (signal_number != 0) {
        end += fmt::format("{} arrived meanwhile: every step above ran to its end first.\n",
                           signal_name(signal_number));
      }
      return finish(to_int(ExitCode::tool_error), text + end);
    }
    if (signal_number != 0 && stopped_before_first_step) {
      return finish(128 + signal_number,
                    text + fmt::format("Interrupted ({}) before the first step: nothing was changed.\n",
                                       signal_name(signal_number)));
    }
    if (signal_number != 0) {
      // A signal before the reset skipped it: said first, since the GPUs were not reset.
      return finish(128 + signal_number,
                    text + fmt::format("Interrupted ({}){}: every step above ran to its end{}; verification "
                                       "skipped.\n",
                                       signal_name(signal_number),
                                       reset_ran ? "" : " before the reset, so the GPUs were NOT reset",
                                       daemon_down || !plan.daemon_was_active ? "" : " and the daemon runs again"));
    }

    VerifyInputs in = gather_verify_inputs(opts->collect, opts->verify, before);
    if (int sig = StopSignalsCaught::signal(); sig != 0) {
      report["interrupted"] = signal_name(sig);
      report["interrupted_during"] = "verification";
      return finish(128 + sig, text + fmt::format("Interrupted ({}) while verifying: every step above ran to its "
                                                  "end and the daemon runs again; verification not finished.\n",
                                                  signal_name(sig)));
    }
    VerifyReport verify = evaluate_verify(in);
    auto checks = reset_checks(plan, in.after, opts->no_restore);
    bool passed = verify.passed;
    text += "\n" + render_verify_text(in, verify);
    nlohmann::json checks_json = nlohmann::json::array();
    for (const auto& c : checks) {
      text += fmt::format("  {} {}: {}\n", c.passed ? "PASS" : "FAIL", c.name, escape_control(c.detail));
      checks_json.push_back({{"check", c.name}, {"passed", c.passed}, {"detail", c.detail}});
      passed = passed && c.passed;
    }
    report["verify"] = render_verify_json(in, verify);
    report["reset_checks"] = checks_json;
    return finish(to_int(passed ? ExitCode::healthy : ExitCode::verify_failed), text);
  };
}

}  // namespace gpuwarm
