#pragma once
// Options every command that looks at the node shares.

#include <CLI/CLI.hpp>

#include "gather/collect.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// Registers --root, --kernel-log, --nvml and --no-systemd, all in one group.
void add_collect_options(CLI::App& app, CollectOptions& options);

// Collects with the real service manager unless --no-systemd.
Snapshot collect_from_options(const CollectOptions& options);

}  // namespace gpuwarm
