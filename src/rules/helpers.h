#pragma once
// Small questions several rules ask of a snapshot.

#include <optional>
#include <string>
#include <vector>

#include "snapshot/snapshot.h"

namespace gpuwarm {

// "GPU 0 (NVIDIA H100 80GB HBM3, 00000000:06:00.0)"
std::string gpu_label(const GpuFacts& gpu);

// GPUs NVML could open.
std::vector<const GpuFacts*> reachable_gpus(const Snapshot& s);

bool daemon_running(const Snapshot& s);
// Minors of /dev/nvidiaN held by any daemon process; nullopt when no process's
// open files could be read (not root) or no daemon runs.
std::optional<std::vector<unsigned>> daemon_held_minors(const Snapshot& s);
bool has_arg(const std::vector<std::string>& argv, const std::string& arg);

// The loaded kernel module's version (/proc first, then /sys), or "".
std::string kernel_module_version(const Snapshot& s);
// The user-space driver version (NVML, then the library file name), or "".
std::string user_space_version(const Snapshot& s);

std::string join_args(const std::vector<std::string>& argv);

}  // namespace gpuwarm
