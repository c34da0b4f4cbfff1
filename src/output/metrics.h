#pragma once
// `gpuwarm metrics`: the same snapshot and findings `diagnose` renders, as
// Prometheus text exposition (version 0.0.4). Pure: facts in, text out.
// A fact gpuwarm could not read is never exported as 0: its series is left
// out and gpuwarm_gpu_fact_unknown / gpuwarm_fact_unknown says which and why.

#include <string>
#include <vector>

#include "rules/rule.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

// One GPU's stage of the saved `gpuwarm probe` baseline (the caller reads the file; output/ knows no probe).
struct ColdStartStage {
  unsigned gpu = 0;
  std::string uuid;
  std::string pci_bus_id;
  std::string stage;
  double seconds = 0;
};

// A job's start on the GPUs the baseline probed (`gpus` of them): launch until every one is ready.
struct JobStartSample {
  std::string method;  // one-process, process-per-gpu
  unsigned gpus = 0;
  double seconds = 0;
};

struct MetricsRun {
  std::string version;
  std::string commit;
  double finished_at_seconds = 0;  // Unix time the collection ended
  std::vector<ColdStartStage> cold_start;   // empty when no baseline was saved
  std::vector<JobStartSample> job_start;    // empty when the baseline has no job starts
  std::string probe_baseline_unreadable;    // why a baseline that exists could not be used
};

std::string render_metrics(const Snapshot& snapshot, const Diagnosis& diagnosis, const MetricsRun& run);

// A label value as the exposition format wants it: controls escaped as everywhere (escape_control), then
// backslash, double quote and newline.
std::string prometheus_label_value(const std::string& value);

}  // namespace gpuwarm
