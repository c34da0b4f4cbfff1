#pragma once
// Findings, the rule registry and the verdict. Rules are pure functions of a
// Snapshot; they do no I/O, so a snapshot recorded anywhere diagnoses the same.

#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/exit_codes.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

enum class Severity { info, warning, critical };

// Which branch of the runbook's decision tree a finding puts the node on.
enum class Route {
  note,            // informational: changes no verdict
  fix,             // the runbook applies: manage nvidia-persistenced (gpuwarm fix)
  reboot,          // driver updated without reboot: finish the update first
  driver_install,  // driver or daemon missing: a driver-install problem
  ras,             // thermal/power or a lost GPU: RAS path, persistence will not help
  clocks,          // application clocks pinned: reset clocks, not a persistence problem
  unknown,         // a fact the verdict needs could not be read: cannot tell
  optional,        // persistence is not wanted here (a GPU meant to power down when idle)
};

struct Finding {
  std::string rule_id;
  Severity severity = Severity::info;
  Route route = Route::note;
  std::optional<unsigned> gpu;  // NVML index for per-GPU findings
  std::string message;
  std::string next_step;
  std::vector<std::string> evidence;
  std::string tag;  // a few words for one-line renderings (a check line): "GPUs timed (probe, watch --load)"
};

using RuleFn = std::vector<Finding> (*)(const Snapshot&);

struct RuleInfo {
  const char* id;       // stable forever once released
  const char* name;     // kebab-case, for humans and docs
  Severity severity;
  Route route;
  const char* summary;  // one line for --list-rules
  RuleFn check;
};

// All rules, in the order the runbook takes its decisions.
std::span<const RuleInfo> rules();
const RuleInfo* find_rule(const std::string& id);

struct Verdict {
  Route route = Route::note;  // note = healthy
  std::string code;           // "healthy", "action-needed", "reboot-pending", "driver-install", "ras",
                              // "pinned-clocks", "cannot-tell", "persistence-optional"
  std::string rule_id;        // the finding that decided it ("OK000" when healthy)
  std::string title;
  std::string next_step;
  ExitCode exit_code = ExitCode::healthy;
};

struct Diagnosis {
  Verdict verdict;
  std::vector<Finding> findings;  // rule order, then GPU index
};

// Runs every rule and picks the verdict: the first finding, in runbook order,
// whose route is not a note.
Diagnosis diagnose(const Snapshot& snapshot);

const char* to_string(Severity s);
const char* to_string(Route r);

}  // namespace gpuwarm
