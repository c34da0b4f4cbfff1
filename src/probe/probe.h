#pragma once
// Results of `gpuwarm probe` and the same-node before/after comparison the
// runbook asks for. Pure data and rendering; spawning lives in cli/.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "cuda/cold_start.h"

namespace gpuwarm {

constexpr const char* k_default_probe_baseline = "/var/lib/gpuwarm/probe-baseline.json";
constexpr int k_probe_schema_version = 1;

struct GpuProbe {
  unsigned index = 0;   // NVML index
  std::string uuid;     // what CUDA_VISIBLE_DEVICES was set to
  std::string pci_bus_id;
  cuda::ColdStart result;
  bool timed_out = false;
  std::string child_error;  // the child died or printed nothing usable
  double wall_ms = 0;       // spawn to exit, as the parent saw it
};

struct ProbeRun {
  std::string hostname;
  std::string taken_at;
  double wall_ms = 0;  // all GPUs
  bool sequential = false;
  std::vector<GpuProbe> gpus;
};

bool probe_ok(const GpuProbe& g);
double total_ms(const cuda::ColdStart& c);

nlohmann::json probe_to_json(const ProbeRun& run);
Result<ProbeRun> probe_from_json(const nlohmann::json& j);

std::string render_probe_text(const ProbeRun& run);
// Per GPU (matched by UUID, then bus id) and stage: before, after, change.
std::string render_compare_text(const ProbeRun& before, const ProbeRun& after);
nlohmann::json compare_json(const ProbeRun& before, const ProbeRun& after);

}  // namespace gpuwarm
