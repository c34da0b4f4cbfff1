#pragma once
// `gpuwarm check`: the diagnosis as a scheduler's health check sees it (node-problem-detector's custom-plugin
// contract, Slurm's HealthCheckProgram, NHC): a status and one short line, rendered from the same findings as
// diagnose. A node is a problem only where jobs suffer now: GPUs without persistence, a driver that cannot
// serve CUDA (not loaded, halves differ, NVML missing), a GPU fault. Configuration debts that do not hurt the
// next job (legacy flag, unit not enabled, ...), thermal or power events, pinned clocks and a GPU meant to
// power down are reported in the line but keep the node in service (on a live node check reads neither clocks
// nor the unit; a recorded snapshot may carry them). Unknown is never healthy: it is its own status, never 0.

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

enum class HealthStatus { ok = 0, problem = 1, unknown = 2 };  // node-problem-detector's exit codes

// What a rule's finding means to a scheduler.
enum class SchedulerImpact {
  drain,    // jobs on this node suffer now: take it out of service
  unknown,  // a fact the verdict needs could not be read
  keep,     // worth fixing, but the next job runs as well as anywhere
};

struct RuleImpact {
  const char* rule_id;
  SchedulerImpact impact;
  const char* why;
};

// Every rule of the registry, with its impact and why (a test keeps the two tables in step).
std::span<const RuleImpact> scheduler_impacts();

struct HealthCheck {
  HealthStatus status = HealthStatus::unknown;
  std::string rule_id;  // the rule that decided (also one that keeps the node: "OK PM002 ..."), "" when healthy
  std::string line;     // "PM001 persistence off: GPU 3,5", at most max_length bytes
  std::size_t more = 0;  // other rules that drain or cannot tell beside the deciding one (the line's "+N more")
};

// What check answers where diagnose would say healthy (no draining rule fired on what check reads) and the
// healthy finding is missing (a recorded diagnosis without it); otherwise "OK " and that finding's message.
constexpr const char* k_check_ok_line = "OK persistence on, driver consistent";

// Rules check never evaluates: their facts (clocks and event reasons, the unit's state from systemd) are left to
// diagnose, so on a live node they cannot fire there.
constexpr std::string_view k_rules_check_does_not_read[] = {"CLK001", "CLK002", "PD003", "PD004", "PD006",
                                                            "PD007",  "PD008",  "PD009",  "UNK005"};

constexpr std::size_t k_default_check_length = 80;
constexpr std::size_t k_min_check_length = 16;

// `only_rules` (empty: all) limits which rules can make a problem, for one condition per check (a
// node-problem-detector condition per rule set); an unknown always counts, whichever rule it came from.
// Where not every GPU was read (`every_gpu_read` false), a rule that left them unread (no driver, no usable
// NVML, a lost GPU) also answers unknown for the selected rules: they could not be judged.
HealthCheck health_check(const Diagnosis& diagnosis, std::size_t max_length = k_default_check_length,
                         const std::vector<std::string>& only_rules = {}, bool every_gpu_read = true);

// Every GPU the kernel lists was opened by NVML and its persistence read.
bool every_gpu_read(const Snapshot& s);

// Cuts a line to max_length bytes (at least k_min_check_length), "..." marking the cut.
std::string fit_check_line(std::string line, std::size_t max_length);

const char* to_string(HealthStatus s);

}  // namespace gpuwarm
