#pragma once
// One GPU's cold start, timed stage by stage, in the calling process. Run it
// in a fresh child limited to one GPU (CUDA_VISIBLE_DEVICES=GPU-<uuid>): CUDA
// initialization state is per process.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace gpuwarm::cuda {

struct Stage {
  std::string name;  // load_libcuda, nvml_init, cu_init, device_get, ctx_retain, alloc_sync, ctx_release
  double ms = 0;
};

struct ColdStart {
  std::vector<Stage> stages;  // completed stages, in order
  std::string uuid;           // as CUDA reports it (GPU-...), when read
  std::string pci_bus_id;     // as CUDA reports it
  std::string failed_stage;   // empty on success
  std::string error;          // CUDA error name or dlerror() text
};

// `libcuda` "" = libcuda.so.1; `libnvml` "" = libnvidia-ml.so.1.
ColdStart time_cold_start(const std::string& libcuda, const std::string& libnvml);

nlohmann::json to_json(const ColdStart& c);
ColdStart cold_start_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception on bad input

}  // namespace gpuwarm::cuda
