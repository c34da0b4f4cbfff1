#pragma once
// Small questions several rules ask of a snapshot.

#include <optional>
#include <string>
#include <vector>

#include "nvml/errors.h"
#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// "GPU 0 (NVIDIA H100 80GB HBM3, 00000000:06:00.0)"
std::string gpu_label(const GpuFacts& gpu);

// GPUs NVML could open.
std::vector<const GpuFacts*> reachable_gpus(const Snapshot& s);

// A daemon process of this host was seen (or the GPU Operator's, in its driver container). Not running is
// known only where daemon_processes_listed() too.
bool daemon_running(const Snapshot& s);
// Whether nvidia-persistenced.service starts at boot: enabled (or generated, an alias), or static (no
// [Install]) and pulled in by another unit. nullopt when systemd's answer is missing; `why` says what decided.
std::optional<bool> unit_starts_at_boot(const ServiceFacts& service, std::string* why = nullptr);
// The unit is inactive because an ExecCondition= (gpuwarm guard's drop-in) skipped its last start.
bool start_skipped(const ServiceFacts& service);
// The command that lifts the unit's mask: with --runtime for masked-runtime, both where which one is unread.
std::string unmask_command(const ServiceFacts& service);
// gpuwarm guard's drop-in (…/40-gpuwarm-guard.conf) among those systemd merged into the unit, or "".
std::string guard_dropin(const ServiceFacts& service);
bool daemon_processes_listed(const Snapshot& s);
// The daemon found is the GPU Operator's (under its driver container's root): the driver pod starts it, and
// the host has no unit for it by design.
bool daemon_from_driver_container(const Snapshot& s);
// The daemon's pid where it runs although its unit is inactive or failed: started outside the unit (rc.local, by
// hand, another unit). The unit cannot start beside it, and its clean-up would delete that daemon's socket and
// PID file. A process in the unit's own cgroup is the unit's, whatever the unit's state read a moment apart.
std::optional<int> daemon_outside_unit(const Snapshot& s);
// Not a GPU node: no nvidia module, the PCI bus was read and shows no NVIDIA GPU unbound or taken by another
// driver (one handed to a VM is the VM's), and NVML neither counted a GPU nor hung. An unread PCI list is never
// "no GPU".
bool not_a_gpu_node(const Snapshot& s);
// The GPU's /dev/nvidiaN minor: NVML's, else the kernel's entry for the same GPU (by UUID, then PCI bus ID);
// nullopt when neither was read.
std::optional<unsigned> gpu_minor(const Snapshot& s, const GpuFacts& gpu);
// GPUs the driver lists (not excluded) that NVML does not show, where it counts fewer than the driver: nothing
// was read of them, so no check may pass over them.
std::vector<const KernelGpu*> gpus_nvml_missed(const Snapshot& s);
// A finding whose answer is "cannot tell" although its rule's route is another: `tag` names what was unread in
// one-line renderings ("PD004 daemon not enabled: boot start unread").
Finding cannot_tell(std::string tag, std::string message, std::string next_step);
// /dev/nvidiaN, a GPU's device node (not nvidiactl, nvidia-uvm, nvidia-caps).
bool gpu_device_node(const DeviceNode& node);
// Signs of GPUs besides NVML's count: /dev/nvidiaN nodes, or the GPUs NVML shows plus the minors the daemon holds
// that none of them has.
std::size_t other_gpu_signs(const Snapshot& s);
// The driver's own GPU list unread while NVML sees none, or fewer than the other signs: GPUs NVML misses cannot be
// told from no GPU.
bool nvml_may_miss_gpus(const Snapshot& s);
// Minors of /dev/nvidiaN held by any daemon process; nullopt when no process's
// open files could be read (not root) or no daemon runs.
std::optional<std::vector<unsigned>> daemon_held_minors(const Snapshot& s);
// Why daemon_held_minors is empty: the first process's reason (k_open_files_need_root when not root).
std::string daemon_held_minors_missing(const Snapshot& s);
bool has_arg(const std::vector<std::string>& argv, const std::string& arg);
// nvidia-persistenced's flag that keeps the daemon running but leaves the GPUs uninitialized.
inline constexpr const char* k_no_pm_flag = "--no-persistence-mode";

// The loaded kernel module's version (/proc first, then /sys), or "".
std::string kernel_module_version(const Snapshot& s);
// The user-space driver version (NVML, then the library file name), or "".
std::string user_space_version(const Snapshot& s);

std::string join_args(const std::vector<std::string>& argv);
// "pid 4242: /usr/bin/nvidia-persistenced --verbose", or why its arguments are unknown.
std::string describe_daemon_process(const DaemonProcess& p);

// One per-GPU NVML fact: which query reads it, what the verdict asks of it,
// and why it is missing (nullptr when it was read).
struct GpuQuery {
  const char* fact;
  const char* query;
  nvml::Entry entry;
  const std::string* missing;
};
// Every per-GPU fact gpuwarm reads, in query order.
std::vector<GpuQuery> gpu_queries(const GpuFacts& gpu);

// The effect of a recorded reason at an entry point (the NVML return table).
nvml::Effect effect_of(nvml::Entry entry, const std::string& reason);

// NVML's answer at an entry point, for evidence: "nvmlInit: GPU_IS_LOST (the GPU fell off the bus ...)".
std::string nvml_evidence(const char* query, const std::string& reason);

// The loaded module's version as the kernel log would print it ("" if unknown).
// "NVRM: API mismatch" lines count only when logged by this module since it loaded.
std::vector<const ApiMismatch*> live_mismatches(const Snapshot& s);

// A user-space version the kernel refused, when NVML could not tell us one:
// the newest client version in live mismatch lines that differs from the module.
std::string logged_new_user_space(const Snapshot& s);

}  // namespace gpuwarm
