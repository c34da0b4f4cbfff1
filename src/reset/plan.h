#pragma once
// `gpuwarm reset`: the runbook's stop-daemon / reset / start-daemon sequence as data, from a snapshot alone
// (no I/O), so --dry-run prints exactly what a real run executes and a refusal changes nothing.

#include <optional>
#include <string>
#include <vector>

#include "core/exit_codes.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// restore_setting: `nvidia-smi -i BUS -ac MEM,GR` or `-pl W`, after the daemon holds the GPU again (a setting
// applied with no client holding the GPU would be lost as nvidia-smi exits).
// start_dependent: a unit the daemon's stop stopped too (it Requires=, BindsTo= or PartOf= the daemon), started
// again last, once the settings are back (a scheduler's node daemon would otherwise take jobs before).
enum class ResetStepKind { stop_daemon, reset_gpus, start_daemon, restore_setting, start_dependent };

struct ResetStep {
  ResetStepKind kind;
  std::string why;
  std::vector<std::string> argv;  // reset_gpus, restore_setting: the exact command
  std::string unit{};             // start_dependent: the unit
};

enum class ResetOutcome { act, refused, no_service_manager };

// What a reset loses: settings that do not survive it, read before it (NVML, MHz and mW).
struct GpuSettingsBefore {
  unsigned index = 0;
  std::string uuid;
  std::string pci_bus_id;
  std::optional<unsigned> app_sm_mhz;          // set away from the default, else empty
  std::optional<unsigned> app_mem_mhz;
  std::optional<unsigned> power_limit_mw;      // the enforced limit before, when read (compared after)
  std::optional<unsigned> requested_power_limit_mw;  // set away from its default, else empty
};

struct ResetPlan {
  ResetOutcome outcome = ResetOutcome::refused;
  std::string reason;                   // a refusal, or what no_service_manager means
  ExitCode exit_code = ExitCode::healthy;
  std::vector<unsigned> targets;        // NVML indices, ascending
  std::vector<ResetStep> steps;
  std::vector<std::string> manual;      // no_service_manager: the same steps by hand
  std::vector<GpuSettingsBefore> settings;
  std::vector<std::string> notes;
  bool daemon_was_active = false;
};

struct ResetInputs {
  std::string nvidia_smi;  // trusted absolute path, or "" with why in nvidia_smi_missing
  std::string nvidia_smi_missing;
  std::vector<std::string> holder_command_lines;  // "pid 4242 (python3): python3 train.py", for a refusal
  bool restore_settings = true;  // false (--no-restore): leave clocks and power limits at their defaults
  // ServiceManager::active_dependents of the daemon's unit, asked where it is active: units its stop stops too.
  std::vector<std::string> stopped_with{};
  std::string stopped_with_unread{};  // why they could not be read ("" when they were)
};

// Each ID is an NVML index, a UUID (GPU-...) or a PCI bus id (any case, 4- or 8-digit domain). Unknown IDs
// are an error naming what exists.
struct TargetResolution {
  std::vector<unsigned> indices;
  std::string error;
  ExitCode code = ExitCode::usage;  // with an error: usage (no such GPU), routed_elsewhere (no driver) or
                                    // cannot_tell (NVML could not list the GPUs)
};
TargetResolution resolve_reset_targets(const Snapshot& snapshot, const std::vector<std::string>& ids);

// Processes (other than the daemon) holding any target GPU: refuse unless this is empty.
std::vector<GpuClient> reset_blockers(const Snapshot& snapshot, const std::vector<unsigned>& targets);

// Whether the targets may be reset now, from a fresh look at the GPUs' holders (`now.host`: gpu_clients, unknown
// when the processes could not be listed, and unreadable_processes; `now.daemon`: processes not counted): `why`
// is "" when no one holds them, else why not, with the answer's code: action needed for a holder found, cannot
// tell where some processes could not be read.
struct HoldersNow {
  std::string why;
  ExitCode code = ExitCode::healthy;
};
HoldersNow holders_now(const Snapshot& now, const std::vector<unsigned>& targets);

ResetPlan plan_reset(const Snapshot& snapshot, const std::vector<unsigned>& targets, const ResetInputs& inputs);

// Before a setting is set again, the daemon must hold its GPU: a setting made while nothing holds the GPU is
// lost when nvidia-smi lets go of it. A forking daemon's start job ends when its parent exits, which may be
// before its child has opened /dev/nvidiaN.
struct HoldWanted {
  // GPUs with a setting to set again that the daemon held before the reset (all of them where that was not
  // read): it will hold them again. One it did not hold (--no-persistence-mode, a device list) is not waited for.
  std::vector<unsigned> minors;
  std::vector<std::string> unknown;  // GPUs with a setting whose /dev/nvidiaN could not be read, and why
  bool empty() const { return minors.empty() && unknown.empty(); }
};
struct DaemonHold {
  std::vector<unsigned> awaited;
  std::vector<unsigned> not_held;  // of awaited, those no daemon process holds open
  std::string unknown;             // why that could not be read ("" when it was)
  bool held() const { return unknown.empty() && not_held.empty(); }
};
HoldWanted minors_to_hold(const Snapshot& before, const ResetPlan& plan);
DaemonHold daemon_hold(const DaemonFacts& daemon, const HoldWanted& wanted);

const char* to_string(ResetStepKind kind);
// "StopUnit(nvidia-persistenced.service, replace)", "/usr/bin/nvidia-smi --gpu-reset -i 00000000:06:00.0"
// or "/usr/bin/nvidia-smi -i 00000000:06:00.0 -pl 500".
std::string describe(const ResetStep& step);

}  // namespace gpuwarm
