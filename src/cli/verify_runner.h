#pragma once
// Takes the snapshots `verify` needs (before, after a settle window, clock
// samples) and runs dcgmi when asked. Used by `verify` and after `fix`.

#include <chrono>

#include <CLI/CLI.hpp>

#include "gather/collect.h"
#include "verify/verify.h"

namespace gpuwarm {

struct VerifyOptions {
  double settle_seconds = 3.0;
  unsigned samples = 5;
  double sample_interval_seconds = 0.5;
  int dcgm_level = 0;  // 0 = do not run dcgmi
};

// Adds --settle, --samples, --sample-interval and --dcgm-level.
void add_verify_options(CLI::App& app, VerifyOptions& options);

// `before` is the snapshot taken before any change (or now). Under a StopSignalsCaught, a caught signal
// cuts the settle wait, the samples and dcgmi short: the caller then reports an interrupted verification.
VerifyInputs gather_verify_inputs(const CollectOptions& collect, const VerifyOptions& options, Snapshot before);

}  // namespace gpuwarm
