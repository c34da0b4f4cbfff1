#pragma once
// What `gpuwarm fix` would do, computed from a snapshot alone (no I/O), so
// --dry-run prints exactly what a real run executes.

#include <string>
#include <vector>

#include "core/exit_codes.h"
#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

constexpr const char* k_unit_name = "nvidia-persistenced.service";
constexpr const char* k_unit_path = "/etc/systemd/system/nvidia-persistenced.service";
constexpr const char* k_dropin_path = k_gpuwarm_dropin_path;

enum class StepKind { write_file, reload, enable, add_wants, reset_failed, start, restart };

struct FixStep {
  StepKind kind;
  std::string why;
  std::string path;     // write_file: host path
  std::string content;  // write_file: the whole file
};

enum class FixOutcome { act, nothing_to_do, refused, no_service_manager };

struct FixPlan {
  FixOutcome outcome = FixOutcome::nothing_to_do;
  std::string reason;  // refusal or "nothing to do" explanation
  ExitCode exit_code = ExitCode::healthy;  // for refused / no_service_manager
  std::vector<FixStep> steps;
  std::vector<std::string> notes;
};

// Files the planner reads, handed in by the caller (empty when absent).
struct FixInputs {
  std::string vendor_unit_text;     // the unit's FragmentPath content
  std::string current_dropin_text;  // k_dropin_path's content
  bool dropin_exists = false;
  bool daemon_user_exists = false;  // a "nvidia-persistenced" account exists
  // The drop-ins systemd applies before gpuwarm's, (path, text) in its order: with the unit file, what gpuwarm's
  // drop-in starts from (a site's ExecStart= there is kept, less the flag).
  std::vector<std::pair<std::string, std::string>> earlier_dropins;
};

// What the planner reads besides the facts, as the snapshot recorded it. What a recording lacks (an older
// gpuwarm, systemd unreachable) is said in `assumed`, with what the plan takes instead.
FixInputs fix_inputs(const Snapshot& snapshot, std::vector<std::string>& assumed);

FixPlan plan_fix(const Snapshot& snapshot, const Diagnosis& diagnosis, const FixInputs& inputs);

// The drop-in for a vendor unit, or "" when the unit needs none.
// Each earlier drop-in is read as systemd reads it, a file of its own (a line before its first section header
// belongs to none), applied after the unit file.
std::string render_dropin(const std::string& vendor_unit_text, const std::vector<std::string>& effective_exec_start,
                          const std::vector<std::pair<std::string, std::string>>& earlier_dropins = {});

const char* to_string(StepKind kind);
// One line for --dry-run and reports: "EnableUnitFiles([nvidia-persistenced.service], runtime=false, force=false)".
std::string describe(const FixStep& step);

}  // namespace gpuwarm
