#pragma once
// A cold start, timed stage by stage, in the calling process: what a CUDA job
// pays before its first kernel. Run it in a fresh child whose
// CUDA_VISIBLE_DEVICES names the GPUs to start (GPU-<uuid>[,GPU-<uuid>...]):
// CUDA initialization state is per process.

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpuwarm::cuda {

struct Stage {
  std::string name;  // load_libcuda, nvml_init, cu_init, device_get, ctx_retain, alloc_sync, ctx_release
  double ms = 0;
  int device = -1;   // CUDA ordinal for the per-device stages (ctx_retain, alloc_sync, ctx_release); -1 = process-wide
};

struct DeviceSeen {
  std::string uuid;        // as CUDA reports it (GPU-...), when read
  std::string pci_bus_id;  // as CUDA reports it
};

struct ColdStart {
  std::vector<Stage> stages;        // completed stages, in order
  std::vector<DeviceSeen> devices;  // in CUDA ordinal order
  std::string failed_stage;         // empty on success
  int failed_device = -1;           // CUDA ordinal the failed stage was working on; -1 = process-wide
  double failed_ms = 0;             // how long the failed stage took before it failed
  std::string error;                // CUDA error name or dlerror() text
  // CLOCK_MONOTONIC (the same clock in every process of the host), in ms: when timing began, and when every
  // device had a current context and a synchronized allocation (0 = never). A parent that recorded its
  // spawn time on the same clock gets "launch to ready" from it.
  double monotonic_start_ms = 0;
  double monotonic_ready_ms = 0;
};

// Starts every visible device, one after another in one process, as a multi-GPU job does: load libcuda,
// nvmlInit, cuInit once, get the `expected_devices` devices, then per device retain its primary context and
// make a synchronized 1 MiB allocation; then release them all. `libcuda` "" = libcuda.so.1; `libnvml` "" =
// libnvidia-ml.so.1.
// Creates a context on the first `context_devices` of the `expected_devices` CUDA sees (0: on every one): a
// torchrun rank sees every GPU and starts only its own.
// `when_ready`, when given, runs once every device is ready and before any context is released: a process of a
// group launched together waits there for the others, as a job's ranks hold their contexts. A rank that released
// and exited early would measure its teardown into the start of the ranks still initializing.
ColdStart time_cold_start(const std::string& libcuda, const std::string& libnvml, int expected_devices = 1,
                          int context_devices = 0, const std::function<void()>& when_ready = {});

// Milliseconds on CLOCK_MONOTONIC (std::chrono::steady_clock on Linux).
double monotonic_ms();

nlohmann::json to_json(const ColdStart& c);
ColdStart cold_start_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception on bad input

}  // namespace gpuwarm::cuda
