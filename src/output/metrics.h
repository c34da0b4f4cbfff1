#pragma once
// `gpuwarm metrics`: the same snapshot and findings `diagnose` renders, as
// Prometheus text exposition (version 0.0.4). Pure: facts in, text out.
// A fact gpuwarm could not read is never exported as 0: its series is left
// out and gpuwarm_gpu_fact_unknown / gpuwarm_fact_unknown says which and why.

#include <string>

#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

struct MetricsRun {
  std::string version;
  std::string commit;
  double finished_at_seconds = 0;  // Unix time the collection ended
};

std::string render_metrics(const Snapshot& snapshot, const Diagnosis& diagnosis, const MetricsRun& run);

// A label value as the exposition format wants it: backslash, double quote and newline escaped.
std::string prometheus_label_value(const std::string& value);

}  // namespace gpuwarm
