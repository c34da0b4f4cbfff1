#pragma once
// Options every command that looks at the node shares.

#include <CLI/CLI.hpp>

#include "core/result.h"
#include "gather/collect.h"
#include "probe/probe.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// Registers --root, --kernel-log, --nvml and --no-systemd, all in one group.
void add_collect_options(CLI::App& app, CollectOptions& options);

// Collects with the real service manager unless --no-systemd.
Snapshot collect_from_options(const CollectOptions& options);

// The recorded snapshot in `snapshot_file` when one is named (diagnose/metrics --snapshot), else this node.
Result<Snapshot> snapshot_from_file_or_node(const std::string& snapshot_file, const CollectOptions& options);

// A saved `gpuwarm probe --save` run (probe --compare, metrics' cold-start series).
Result<ProbeRun> load_probe_run(const std::string& path);

}  // namespace gpuwarm
