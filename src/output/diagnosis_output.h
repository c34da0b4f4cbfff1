#pragma once
// Renders a diagnosis. Text and JSON come from the same Snapshot + Diagnosis,
// so they can never disagree.

#include <string>

#include <nlohmann/json.hpp>

#include "output/style.h"
#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

constexpr int k_diagnosis_schema_version = 1;

std::string render_diagnosis_text(const Snapshot& snapshot, const Diagnosis& diagnosis, const Style& style);

// {"schema_version", "verdict", "gpus", "findings", "snapshot"}; the embedded
// snapshot lets `diagnose --snapshot` re-read a saved report.
nlohmann::json render_diagnosis_json(const Snapshot& snapshot, const Diagnosis& diagnosis);

// "Enabled" / "Disabled" / "unknown (<why>)"
std::string persistence_text(const Fact<bool>& persistence);

// Whether the daemon holds this GPU (its device node among the daemon's open files): "yes", "no", or "?" when not
// knowable. A GPU it holds stays initialized whatever NVML's persistence flag reads (PM004).
std::string held_by_daemon(const Snapshot& s, const GpuFacts& gpu);

}  // namespace gpuwarm
