// `gpuwarm check`: the health-check form of diagnose, for programs that run it every few seconds or before
// every job (node-problem-detector's custom plugins, Slurm's HealthCheckProgram and prolog, NHC). One line,
// exit 0 ok / 1 problem / 2 unknown; NVML reads only what that decision needs.

#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <string_view>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/option_checks.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/paths.h"
#include "core/strings.h"
#include "output/diagnosis_output.h"
#include "output/health_check.h"
#include "rules/helpers.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

struct CheckOptions {
  CollectOptions collect;
  std::string snapshot_file;
  bool json = false;
  std::size_t max_length = k_default_check_length;
  std::vector<std::string> only_rules;
  bool skip_without_gpu = false;
  double boot_grace_s = 0;
};

// What `--skip-without-gpu` answers on a node that has nothing to check.
constexpr const char* k_not_a_gpu_node_line = "OK not a GPU node: no nvidia module and no NVIDIA GPU needing one";

std::string impact_table() {
  std::string out;
  for (const auto& r : scheduler_impacts()) {
    const char* word = r.impact == SchedulerImpact::drain     ? "problem"
                       : r.impact == SchedulerImpact::unknown ? "unknown"
                                                              : "ok";
    const bool not_read = std::find(std::begin(k_rules_check_does_not_read), std::end(k_rules_check_does_not_read),
                                    r.rule_id) != std::end(k_rules_check_does_not_read);
    out += fmt::format("  {:<8} {:<8} {}{}\n", r.rule_id, word, r.why, not_read ? " [--snapshot only]" : "");
  }
  return out;
}

// check --json's "kind": its own, not diagnose's, since the facts it leaves unread would make a diagnosis claim
// more than was looked at (fleet-summary and --snapshot refuse it for that reason).
constexpr const char* k_check_kind = "gpuwarm-check";

// Unknown, not healthy and not a problem: the caller's health check must neither pass nor drain the node
// because gpuwarm itself could not look.
int cannot_tell(const std::string& why, const CheckOptions& opts) {
  const std::string line = fit_check_line("gpuwarm: cannot tell: " + escape_control(why), opts.max_length);
  if (opts.json) {
    // The same "check" object as every other answer, so `jq .check.status` works on this one too.
    std::cout << dump_json({{"kind", k_check_kind},
                            {"schema_version", 1},
                            {"hostname", host_name()},
                            {"error", why},
                            {"exit_code", static_cast<int>(HealthStatus::unknown)},
                            {"check",
                             {{"status", to_string(HealthStatus::unknown)},
                              {"exit_code", static_cast<int>(HealthStatus::unknown)},
                              {"rule_id", ""},
                              {"line", line}}}})
              << "\n";
  } else {
    std::cout << line << "\n";
  }
  return static_cast<int>(HealthStatus::unknown);
}

// Seconds since the node booted (/proc/uptime under the root: a pod's /host/proc is the host's); none unread.
std::optional<double> seconds_since_boot(const std::string& root) {
  auto text = read_first_line(Paths(root).proc("uptime"));
  if (!text) {
    return std::nullopt;
  }
  std::string_view line = *text;
  return parse_duration_seconds(line.substr(0, line.find(' ')));
}

int run_check(const CheckOptions& opts) {
  auto loaded = snapshot_from_file_or_node(opts.snapshot_file, opts.collect);
  if (!loaded) {
    return cannot_tell(loaded.error().message, opts);
  }
  Diagnosis diagnosis = diagnose(*loaded);
  // Whole first, cut to --max-length once the line is final.
  HealthCheck check = health_check(diagnosis, std::string::npos, opts.only_rules, every_gpu_read(*loaded));
  // Right after boot persistence reads off until nvidia-persistenced has taken the GPUs: not yet a problem,
  // not yet healthy either. Only PM001, and only alone: nothing else a starting daemon ends drains the node,
  // and another problem or unknown beside it must not hide behind a settling line.
  if (opts.boot_grace_s > 0 && check.status == HealthStatus::problem && check.rule_id == "PM001" &&
      check.more == 0) {
    if (auto up = seconds_since_boot(opts.collect.root); up && *up < opts.boot_grace_s) {
      std::string_view what = check.line;
      if (what.starts_with("PM001 ")) {
        what.remove_prefix(6);  // "persistence off: GPU 0"
      }
      check.status = HealthStatus::unknown;
      check.line = fmt::format("PM001 settling (up {:.0f} s): {}", *up, what);
    }
  }
  check.line = fit_check_line(std::move(check.line), opts.max_length);
  if (opts.skip_without_gpu && not_a_gpu_node(*loaded)) {
    check = HealthCheck{HealthStatus::ok, "", fit_check_line(k_not_a_gpu_node_line, opts.max_length)};
  }
  if (opts.json) {
    nlohmann::json out = render_diagnosis_json(*loaded, diagnosis);
    out["kind"] = k_check_kind;
    // The verdict was decided without clocks, event reasons or the unit: check's answer is the "check" object.
    out.erase("verdict");
    out["exit_code"] = static_cast<int>(check.status);
    out["check"] = {{"status", to_string(check.status)},
                    {"exit_code", static_cast<int>(check.status)},
                    {"rule_id", check.rule_id},
                    {"line", check.line}};
    std::cout << dump_json(out) << "\n";
  } else {
    std::cout << check.line << "\n";
  }
  return static_cast<int>(check.status);
}

}  // namespace

std::function<int()> setup_check(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<CheckOptions>();
  opts->collect.full = false;
  opts->collect.check_only = true;
  opts->collect.one_shot = true;
  opts->collect.stand_aside = true;  // NVML stays closed while a probe or a change holds the node
  opts->collect.fix_inputs = false;
  opts->collect.nvml_timeout_s = 10;  // a health check must answer well inside its caller's timeout
  // No rule that drains or answers unknown reads the unit's state (only keep-rules such as PD004 do), so
  // the health check does not ask systemd: less to wait for, nothing on the bus every few seconds.
  opts->collect.use_systemd = false;
  opts->collect.systemd_not_asked = "not asked by check: no rule that drains reads the unit (diagnose asks)";
  add_collect_options(sub, opts->collect);
  auto* snap_opt = sub.add_option("--snapshot", opts->snapshot_file,
                                  "Check a recorded snapshot (`gpuwarm snapshot --json` or `diagnose --json` "
                                  "output) instead of this node")
                       ->check(CLI::ExistingFile.description(""))
                       ->type_name("FILE");
  for (const char* name : {"--root", "--kernel-log", "--nvml", "--nvml-timeout", "--no-systemd"}) {
    snap_opt->excludes(sub.get_option(name));
  }
  sub.add_flag("--json", opts->json,
               "Print the answer as JSON (kind gpuwarm-check): a \"check\" object (status, exit_code, rule_id, "
               "line), and the facts and findings it was decided on, laid out as diagnose --json lays them out. "
               "Facts check does not read say so (\"not read by check\"): for a diagnosis, run diagnose --json");
  sub.add_option("--max-length", opts->max_length,
                 "Cut the line to BYTES (node-problem-detector's max_output_length; \"...\" marks a cut)")
      ->check(whole_number_range(k_min_check_length, 4096))
      ->capture_default_str()
      ->type_name("BYTES");
  sub.add_option("--rules", opts->only_rules,
                 "Only these rules make a problem (IDs, comma-separated), e.g. PM001 for a GPUPersistenceOff "
                 "condition, DRV003 for NvidiaDriverRebootPending; an unknown still answers 2")
      ->delimiter(',')
      ->check([](const std::string& id) {
        if (id.empty() || id.front() == '-') {
          return std::string("no rule ID given (IDs right after it, comma-separated: --rules PM001,DRV003)");
        }
        // Only rules that can make a problem: asking about one that never drains (or that check does not
        // read, such as the unit's or the clocks') would answer "not firing" without having looked.
        for (const auto& r : scheduler_impacts()) {
          if (id == r.rule_id && r.impact == SchedulerImpact::drain) {
            return std::string();
          }
        }
        std::string drains;
        for (const auto& r : scheduler_impacts()) {
          if (r.impact == SchedulerImpact::drain) {
            drains += (drains.empty() ? "" : ", ") + std::string(r.rule_id);
          }
        }
        return "--rules takes rules that can make a problem (" + drains + "), not " + escape_control(id);
      })
      ->type_name("ID[,ID...]");
  auto* grace_opt =
      sub.add_option("--boot-grace", opts->boot_grace_s,
                     "Within SECONDS of boot (/proc/uptime), persistence off (PM001) answers 2, unknown (\"PM001 "
                     "settling (up 45 s): persistence off: GPU 0\"), not 1: nvidia-persistenced may not have taken "
                     "the GPUs yet. For a checker with no wait of its own (node-problem-detector's plugins)")
          ->check(finite_range(0, 3600))
          ->type_name("SECONDS");
  snap_opt->excludes(grace_opt);
  sub.add_flag("--skip-without-gpu", opts->skip_without_gpu,
               "On a node that is not a GPU node (no nvidia module loaded, the PCI bus, read in full, shows no "
               "NVIDIA GPU without it, and NVML counted none) answer 0 \"OK not a GPU node\" instead of DRV001: for "
               "a checker that runs on every node (node-problem-detector's DaemonSet). A PCI bus that could not be "
               "read, or an NVML that answered with GPUs, was left closed or hung, still answers as without the "
               "flag");
  sub.footer(fmt::format(
      "Output: one line naming the deciding rule and its GPUs first, e.g. \"PM001 persistence off: GPU 3,5\",\n"
      "\"OK 8 GPU(s) persistent, held by nvidia-persistenced\" (what check confirmed: it reads neither clocks nor\n"
      "the unit, so it never says \"healthy\"), \"OK PM002 legacy persistence: GPU 0\" (kept in service, worth\n"
      "fixing).\n\n"
      "Exit codes (node-problem-detector's plugin contract): 0 ok, 1 problem (drain the node), 2 unknown\n"
      "(a fact the decision needs could not be read, NVML timed out, or gpuwarm itself failed; a bad command\n"
      "line also exits 2). A definite problem outranks an unknown.\n\n"
      "A problem is what makes the next job suffer now. What each rule means here:\n{}\n"
      "NVML is asked for identity, minor number and persistence only (diagnose reads clocks and event\n"
      "reasons), and systemd is not asked (no rule that drains reads the unit), so the rules marked\n"
      "[--snapshot only] fire only from a recorded diagnose --json; --nvml-timeout defaults to 10 s here.\n\n"
      "Examples:\n"
      "  gpuwarm check\n"
      "  gpuwarm check --max-length 60 --nvml-timeout 5\n"
      "  gpuwarm check --rules PM001 --boot-grace 300   # NPD's GPUPersistenceOff\n"
      "  gpuwarm check --json | jq .check",
      impact_table()));

  return [opts]() -> int {
    try {
      return run_check(*opts);
    } catch (const std::exception& e) {
      return cannot_tell(std::string("internal error: ") + e.what(), *opts);
    }
  };
}

}  // namespace gpuwarm
