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

}  // namespace gpuwarm
