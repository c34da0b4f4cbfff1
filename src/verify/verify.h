#pragma once
// The runbook's Verification section as separate checks over snapshots taken
// by the caller: one before, one after a settle window, and a few clock
// samples. Pure: the caller does the waiting and the reading.

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "snapshot/snapshot.h"

namespace gpuwarm {

enum class CheckStatus { pass, fail, skip };

struct CheckResult {
  std::string id;  // stable: unit-active, unit-enabled, daemon-running, persistence, daemon-holds-gpus, clocks, dcgm
  std::string title;
  CheckStatus status = CheckStatus::skip;
  std::string detail;
};

struct DcgmOutcome {  // from `dcgmi diag -r N --json`, when run
  bool available = false;
  std::string detail;  // why not available, or a summary
  bool passed = false;
};

// Judges `dcgmi diag -r LEVEL --json`'s answer: a pass needs exit 0, the whole output, JSON that parses and at
// least one test result, none of them "Fail". Anything less is not a pass, and the detail says which.
DcgmOutcome judge_dcgm_diag(int level, int exit_code, const std::string& output, bool truncated);

struct VerifyInputs {
  Snapshot before;
  Snapshot after;                  // after the settle window
  std::vector<Snapshot> samples;   // clock samples over a short window (after included or not)
  std::optional<DcgmOutcome> dcgm; // nullopt: not requested
};

struct VerifyReport {
  std::vector<CheckResult> checks;
  bool passed = false;
  // Why NVML was left closed in a reading (another gpuwarm command held the node), where only checks that need
  // NVML failed: "cannot tell", not a verdict on the node. "" otherwise.
  std::string nvml_not_opened;
  // What kept it closed: a lock's name ("timing", ...), which passes, or k_untrusted_root, which does not.
  std::string nvml_not_opened_by;
};

VerifyReport evaluate_verify(const VerifyInputs& in);

// Relative SM-clock spread above which an idle GPU's clocks "swing".
constexpr double k_idle_clock_swing = 0.15;

std::string render_verify_text(const VerifyInputs& in, const VerifyReport& report);
nlohmann::json render_verify_json(const VerifyInputs& in, const VerifyReport& report);
const char* to_string(CheckStatus s);

}  // namespace gpuwarm
