#include <iostream>
#include <memory>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/verify_runner.h"
#include "core/exit_codes.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {
struct VerifyCommandOptions {
  CollectOptions collect;
  VerifyOptions verify;
  bool json = false;
};
}  // namespace

std::function<int()> setup_verify(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<VerifyCommandOptions>();
  opts->collect.full = false;
  opts->collect.stand_aside = true;  // NVML stays closed while a probe or a change holds the node
  add_collect_options(sub, opts->collect);
  add_verify_options(sub, opts->verify);
  sub.add_flag("--json", opts->json, "Print the checks as JSON");
  sub.footer(
      "Checks, each reported on its own: the unit is active and enabled for boot; nvidia-persistenced runs\n"
      "(arguments shown) without --no-persistence-mode; after --settle seconds every GPU reads persistence\n"
      "Enabled (before/after table); the daemon holds every GPU (needs root); clocks sampled --samples times\n"
      "sit at a steady floor with benign event reasons; optionally `dcgmi diag`. A check that cannot run\n"
      "here (no systemd, no root, no DCGM) is SKIP with the reason, never a silent pass.\n\n"
      "Exit codes: 0 every check passed or was skipped, 1 gpuwarm failed, 2 bad command line,\n"
      "8 a check failed, 9 cannot tell: another gpuwarm command (probe or watch --load timing the GPUs;\n"
      "fix, reset or reload-modules changing the node) held the node, so NVML was left closed and only\n"
      "checks that need it failed; verify again once it has finished. A --dcgm-level diagnostic is not run\n"
      "then either (SKIP, with what held the node). Also 9 where, as root, --root names a tree not vouched\n"
      "for with --trust-root: its libnvidia-ml is not loaded (UNK011).\n\n"
      "Examples:\n"
      "  gpuwarm verify\n"
      "  gpuwarm verify --settle 30 --samples 10 --dcgm-level 1 --json");
  return [opts]() -> int {
    Snapshot before = collect_from_options(opts->collect);
    VerifyInputs in = gather_verify_inputs(opts->collect, opts->verify, std::move(before));
    VerifyReport report = evaluate_verify(in);
    const ExitCode code = report.passed                         ? ExitCode::healthy
                          : !report.nvml_not_opened.empty() ? ExitCode::cannot_tell
                                                            : ExitCode::verify_failed;
    if (opts->json) {
      nlohmann::json out = render_verify_json(in, report);
      out["exit_code"] = to_int(code);
      std::cout << dump_json(out) << "\n";
    } else {
      std::cout << render_verify_text(in, report);
    }
    return to_int(code);
  };
}

}  // namespace gpuwarm
