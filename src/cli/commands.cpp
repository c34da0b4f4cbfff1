#include "cli/command.h"

#include <iostream>

#include "core/exit_codes.h"

namespace gpuwarm {

namespace {
const CommandSpec k_commands[] = {
    {"diagnose", "Check this node against the persistence runbook and say what to do", setup_diagnose},
    {"fix", "Enable and start nvidia-persistenced through systemd where the runbook applies, then verify",
     setup_fix},
    {"verify", "Check the runbook's verification list: unit, daemon, every GPU, stable clocks", setup_verify},
    {"probe", "Time each GPU's cold start (first CUDA call) in a fresh process; save and compare baselines",
     setup_probe},
    {"watch", "Sample clocks over time (optionally under a built-in load) and attribute swings: de-init, "
              "thermal/power, pinned clocks",
     setup_watch},
    {"guard", "ExecCondition= for nvidia-persistenced: skip the unit cleanly (not fail it) while the driver is "
              "half-updated",
     setup_guard},
    {"reload-modules", "Swap the loaded NVIDIA kernel modules for an updated driver's, when nothing holds the GPUs",
     setup_reload_modules},
    {"lint", "Find persistence anti-patterns (nvidia-smi -pm 1, --no-persistence-mode, unit pitfalls) in configs",
     setup_lint},
    {"fleet-summary", "Fold many nodes' saved reports into one fleet table: verdicts, GPUs not Enabled, reboots "
                      "pending, cold start before/after",
     setup_fleet_summary},
    {"snapshot", "Print the raw facts gpuwarm collects, as JSON (for fixtures and other nodes)", setup_snapshot},
    {"metrics", "Print this node's persistence facts and verdict as Prometheus metrics (or write a textfile)",
     setup_metrics},
    {"check", "One-line health check for schedulers: exit 0 ok, 1 problem (drain), 2 unknown", setup_check},
    {"reset", "Reset GPUs the runbook's way: stop nvidia-persistenced, nvidia-smi --gpu-reset, start it again",
     setup_reset},
    {"completion", "Print a bash or zsh completion script for gpuwarm", setup_completion},
};
}  // namespace

std::span<const CommandSpec> commands() { return k_commands; }

int usage_error(std::string_view command, std::string_view message) {
  std::cerr << "gpuwarm: error: " << message << "\nRun `gpuwarm " << command << " --help` for its options.\n";
  return to_int(ExitCode::usage);
}

}  // namespace gpuwarm
