#pragma once
// Results of `gpuwarm probe` and the same-node before/after comparison the
// runbook asks for. Pure data and rendering; spawning lives in cli/.
//
// Two views of a cold start:
//  - per GPU: a child limited to one GPU, one GPU at a time by default
//    ("isolated"). Children started together contend inside the driver (it
//    serializes initialization across processes), so "parallel" per-GPU
//    stages measure the contention as much as the GPU.
//  - per job ("what a job pays"): from launch until every GPU has a context
//    and a synchronized allocation, started the two ways multi-GPU jobs start:
//    one process that starts every GPU, and a process per GPU launched
//    together (torchrun, MPI).

#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "cuda/cold_start.h"

namespace gpuwarm {

constexpr const char* k_default_probe_baseline = "/var/lib/gpuwarm/probe-baseline.json";
// 2 added the method of the per-GPU table and the job starts; schema 1 files are still read. Fields added
// since (rounds, samples, persistence) are optional: a file without them reads as one round, not recorded.
constexpr int k_probe_schema_version = 2;

constexpr const char* k_method_isolated = "isolated";  // per GPU, one child at a time
constexpr const char* k_method_parallel = "parallel";  // per GPU, every child at once
constexpr const char* k_job_one_process = "one-process";
constexpr const char* k_job_process_per_gpu = "process-per-gpu";  // each process sees only its GPU
// Each process sees every GPU (torchrun's default: set_device(LOCAL_RANK)) and starts only its own, so each
// cuInit meets every GPU.
constexpr const char* k_job_process_per_gpu_all_visible = "process-per-gpu-all-visible";

struct GpuProbe {
  unsigned index = 0;   // NVML index (of the first GPU, for a process that starts several)
  std::string uuid;     // what CUDA_VISIBLE_DEVICES was set to (GPU-<uuid>, comma-separated for several)
  std::string pci_bus_id;
  unsigned context_devices = 0;  // the child starts only the first N of the GPUs it sees (0: all of them)
  cuda::ColdStart result;
  bool timed_out = false;
  std::string child_error;  // the child died or printed nothing usable
  double wall_ms = 0;       // spawn to exit, as the parent saw it
  // Launch (this child's spawn, or its group's first spawn for a job start) until every device it starts was
  // ready; unset when it never got there.
  std::optional<double> launch_to_ready_ms;
  // Over several rounds: the totals of the rounds that succeeded, in round order (this result is the round
  // with the median total), or, when any failed, the first failed round (1-based, whose result this is) and
  // how many failed.
  std::vector<double> total_samples_ms;
  unsigned failed_round = 0;
  unsigned failed_rounds = 0;
};

// A multi-GPU job's start, measured one way.
struct JobStart {
  std::string method;                 // k_job_one_process or k_job_process_per_gpu
  unsigned gpus = 0;                  // GPUs the job started
  std::vector<GpuProbe> processes;    // one, or one per GPU
  double wall_ms = 0;                 // launch until every process exited
  std::vector<unsigned> gpu_indices;  // NVML indices of the GPUs, in CUDA_VISIBLE_DEVICES order
  // Over several rounds: the READY of the rounds that succeeded (this start is the round with the median
  // READY), or, when any failed, the first failed round (1-based, whose start this is) and how many failed.
  std::vector<double> ready_samples_ms;
  unsigned failed_round = 0;
  unsigned failed_rounds = 0;
  // Its processes held their contexts until every one was ready, as a job's ranks do. False in baselines saved
  // before gpuwarm held them (each let go once ready, and the driver's serialized release of the first counted
  // in the READY of the last): such a READY is not compared with a held one.
  bool ranks_held = false;
};

// A probed GPU's persistence mode, read through NVML before the probe (Enabled: the daemon or the legacy
// flag holds it). What separates a cold-start figure from a warm one.
struct GpuPersistence {
  unsigned index = 0;
  std::string uuid;
  std::optional<bool> enabled;
  std::string unread;  // why `enabled` is unset
  // Of a GPU that reads Disabled: other processes holding it open ("dcgm-exporter (pid 812)"), which keep it
  // initialized whatever persistence reads, or why that could not be told (then it may be warm too).
  std::vector<std::string> held_by;
  std::string holders_unread;
};

// A GPU that reads persistence Disabled and yet may be kept warm by another process holding it open.
bool may_be_held_warm(const GpuPersistence& p);

struct ProbeRun {
  std::string hostname;
  std::string taken_at;
  double wall_ms = 0;  // the whole probe
  std::string method;  // of `gpus`: k_method_isolated or k_method_parallel; "" when no per-GPU table was taken
  std::vector<GpuProbe> gpus;
  std::vector<JobStart> jobs;  // empty when the job starts were not measured
  std::string jobs_skipped;    // why they were not, when they would have been
  unsigned rounds = 1;         // rounds the per-GPU table (or, without one, the job starts) was measured in
  unsigned job_rounds = 0;     // rounds the job starts were measured in (fewer once a GPU timed out alone)
  std::string job_rounds_short;  // why job_rounds < rounds
  // Empty in baselines saved before it was recorded.
  std::vector<GpuPersistence> persistence;
};

bool probe_ok(const GpuProbe& g);
double total_ms(const cuda::ColdStart& c);
bool job_ok(const JobStart& j);
// Launch until every GPU of the job was ready (the slowest process); unset when any process failed.
std::optional<double> job_ready_ms(const JobStart& j);
// The job's stages in probe order, from the last of its processes to be ready (the one the job waited
// for), each summed over that process's GPUs; of a failed job, the failed process's, with the time its failed
// stage ran unless `with_failed_stage` is false (a comparison: a stage cut short is not one to compare).
std::vector<cuda::Stage> job_stages(const JobStart& j, bool with_failed_stage = true);
// The slowest GPU probed alone (isolated method only): launch to ready.
std::optional<double> slowest_isolated_ready_ms(const ProbeRun& run);

// The round with the median total (the lower of the two middle ones for an even count: a round that
// happened) with every round's total, or the first failed round: a GPU that failed once is not shown as
// healthy.
GpuProbe median_round(const std::vector<GpuProbe>& rounds);
// The same for a job start, by READY.
JobStart median_round(const std::vector<JobStart>& rounds);

// "enabled", "disabled", "mixed" (some of each), "unknown" (any GPU unread) or "not recorded".
std::string persistence_summary(const ProbeRun& run);

nlohmann::json probe_to_json(const ProbeRun& run);
Result<ProbeRun> probe_from_json(const nlohmann::json& j);

std::string render_probe_text(const ProbeRun& run);
// Per GPU (matched by UUID, then bus id) and stage, then per job start method: before, after, change.
// Per-GPU figures taken one at a time and in parallel are not compared as if alike (no change shown).
std::string render_compare_text(const ProbeRun& before, const ProbeRun& after);
nlohmann::json compare_json(const ProbeRun& before, const ProbeRun& after);
// Whether the per-GPU figures of the two runs were measured alike (same method, or one GPU each).
bool per_gpu_comparable(const ProbeRun& before, const ProbeRun& after);
nlohmann::json compare_jobs_json(const ProbeRun& before, const ProbeRun& after);
// Persistence before and after; "changed" is null when either side is not known on every GPU.
nlohmann::json compare_persistence_json(const ProbeRun& before, const ProbeRun& after);
// Whether two sets of round figures overlap (min to max): a change between them is within their spread.
// False when either has fewer than 2 figures.
bool within_spread(const std::vector<double>& before, const std::vector<double>& after);

}  // namespace gpuwarm
