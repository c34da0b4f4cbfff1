#include "cli/command.h"

#include <iostream>

#include "core/exit_codes.h"
#include "core/host.h"
#include "core/strings.h"
#include "probe/probe.h"
#include "watch/watch.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {
const CommandSpec k_commands[] = {
    {"diagnose", "Check this node against the persistence runbook and say what to do", setup_diagnose, "gpuwarm-diagnosis"},
    {"fix", "Enable and start nvidia-persistenced through systemd where the runbook applies, then verify",
     setup_fix, "gpuwarm-fix"},
    {"verify", "Check the runbook's verification list: unit, daemon, every GPU, stable clocks", setup_verify, "gpuwarm-verify"},
    {"probe", "Time each GPU's cold start (first CUDA call) in a fresh process; save and compare baselines",
     setup_probe, "gpuwarm-probe", k_probe_schema_version, true},
    {"watch", "Sample clocks over time (optionally under a built-in load) and attribute swings: de-init, "
              "thermal/power, pinned clocks",
     setup_watch, "gpuwarm-watch", watch::k_schema_version, true},
    {"guard", "ExecCondition= for nvidia-persistenced: skip the unit cleanly (not fail it) while the driver is "
              "half-updated",
     setup_guard, "gpuwarm-guard"},
    {"reload-modules", "Swap the loaded NVIDIA kernel modules for an updated driver's, when nothing holds the GPUs",
     setup_reload_modules, "gpuwarm-reload-modules"},
    {"lint", "Find persistence anti-patterns (nvidia-smi -pm 1, --no-persistence-mode, unit pitfalls) in configs",
     setup_lint, "gpuwarm-lint"},
    {"fleet-summary", "Fold many nodes' saved reports into one fleet table: verdicts, GPUs not Enabled, reboots "
                      "pending, cold start before/after",
     setup_fleet_summary, "gpuwarm-fleet-summary"},
    {"snapshot", "Print the raw facts gpuwarm collects, as JSON (for fixtures and other nodes)", setup_snapshot,
     nullptr},  // its output is a snapshot: an error document in its place would be read as a malformed one
    {"metrics", "Print this node's persistence facts and verdict as Prometheus metrics (or write a textfile)",
     setup_metrics, nullptr},
    {"check", "One-line health check for schedulers: exit 0 ok, 1 problem (drain), 2 unknown", setup_check, "gpuwarm-check"},
    {"reset", "Reset GPUs the runbook's way: stop nvidia-persistenced, nvidia-smi --gpu-reset, start it again",
     setup_reset, "gpuwarm-reset"},
    {"completion", "Print a bash or zsh completion script for gpuwarm", setup_completion, nullptr},
};
}  // namespace

std::span<const CommandSpec> commands() { return k_commands; }

namespace {
const CommandSpec* g_usage_json_command = nullptr;
}  // namespace

void answer_usage_errors_in_json(const CommandSpec& command) {
  g_usage_json_command = command.json_kind != nullptr ? &command : nullptr;
}

int usage_error_text(std::string_view command, std::string_view message) {
  // The message may quote what was typed (a value, a path): escaped like any text gpuwarm did not write.
  std::cerr << "gpuwarm: error: " << escape_control(message) << "\nRun `gpuwarm " << command << " --help` for its options.\n";
  return to_int(ExitCode::usage);
}

void usage_error_json(std::string_view message) {
  if (g_usage_json_command == nullptr) {
    return;
  }
  const CommandSpec& c = *g_usage_json_command;
  nlohmann::json out = {{"kind", c.json_kind}, {"schema_version", c.json_schema_version}, {"hostname", host_name()},
                        {"error", std::string(message)}, {"exit_code", to_int(ExitCode::usage)}};
  if (c.json_lists_gpus) {
    out["gpus"] = nlohmann::json::array();
  }
  std::cout << dump_json(out) << "\n";
}

int usage_error(std::string_view command, std::string_view message) {
  usage_error_json(message);
  return usage_error_text(command, message);
}

}  // namespace gpuwarm
