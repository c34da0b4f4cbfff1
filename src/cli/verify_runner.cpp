#include "cli/verify_runner.h"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <optional>
#include <thread>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/collect_options.h"
#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "core/fs.h"
#include "core/signal_shield.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

DcgmOutcome run_dcgm(int level, bool live) {
  DcgmOutcome out;
  // From the system directories only, never $PATH; run with argv, no shell.
  auto dcgmi = find_system_executable("/", "dcgmi");
  if (!dcgmi) {
    out.detail = dcgmi.error().message + " (install DCGM to fold its diagnostic in)";
    return out;
  }
  if (!live) {
    out.detail = "not run: --root reads another tree, and DCGM would test this host's GPUs";
    return out;
  }
  out.available = true;
  // Level 4 runs for about an hour; the cap keeps a hung DCGM from hanging verify.
  auto run = run_child({*dcgmi, "diag", "-r", std::to_string(level), "--json"}, 2 * 3600 * 1000, 16u << 20);
  if (!run) {
    out.detail = "could not run " + *dcgmi + ": " + run.error().message;
    return out;
  }
  return judge_dcgm_diag(level, run->exit_code, run->output, run->truncated);
}

// Sleeps `s` seconds, or less once a stop signal was caught (fix and reset catch them while they verify).
void sleep_seconds(double s) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(s));
  while (StopSignalsCaught::signal() == 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
  }
}

}  // namespace

void add_verify_options(CLI::App& app, VerifyOptions& options) {
  const char* group = "Verification";
  app.add_option("--settle", options.settle_seconds, "Seconds to wait before reading persistence again (0-600)")
      ->check(finite_range(0.0, 600.0))
      ->type_name("SECONDS")
      ->capture_default_str()
      ->group(group);
  app.add_option("--samples", options.samples, "Clock samples to take, the reading after --settle included (1-1000; 1 leaves the clocks unchecked, and they pass only where every sample read every GPU)")
      ->check(whole_number_range(1, 1000))
      ->type_name("N")
      ->capture_default_str()
      ->group(group);
  app.add_option("--sample-interval", options.sample_interval_seconds, "Seconds between clock samples (0-60)")
      ->check(finite_range(0.0, 60.0))
      ->type_name("SECONDS")
      ->capture_default_str()
      ->group(group);
  app.add_option("--dcgm-level", options.dcgm_level,
                 "Also run `dcgmi diag -r N --json` (1 quick .. 4 extra long) where DCGM is installed")
      ->check(whole_number_range(1, 4))
      ->type_name("N")
      ->group(group);
}

VerifyInputs gather_verify_inputs(const CollectOptions& collect, const VerifyOptions& options, Snapshot before) {
  VerifyInputs in;
  in.before = std::move(before);
  sleep_seconds(options.settle_seconds);
  in.after = collect_from_options(collect);
  // The first sample is the "after" snapshot; each sample opens NVML afresh,
  // so a GPU that de-initializes between samples shows up as a swing.
  in.samples.push_back(in.after);
  CollectOptions sample_opts = collect;
  sample_opts.use_systemd = false;
  for (unsigned i = 1; i < options.samples && StopSignalsCaught::signal() == 0; ++i) {
    sleep_seconds(options.sample_interval_seconds);
    in.samples.push_back(collect_from_options(sample_opts));
  }
  if (options.dcgm_level > 0 && StopSignalsCaught::signal() == 0) {
    // dcgmi diag initializes and loads every GPU (up to hours): a reading stands aside for it as for NVML.
    std::optional<ReadingLocks> reading;
    if (collect.stand_aside) {
      reading.emplace(Paths(collect.root));
    }
    if (reading && !reading->busy.empty()) {
      in.dcgm = DcgmOutcome{false, "not run: " + reading->busy, false};
    } else {
      in.dcgm = run_dcgm(options.dcgm_level, Paths(collect.root).is_live());
    }
  }
  return in;
}

}  // namespace gpuwarm
