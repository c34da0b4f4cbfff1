#pragma once
// A light, steady GPU load for `gpuwarm watch --load`: a built-in kernel
// shipped as PTX text and compiled by the driver's JIT (cuModuleLoadData),
// so building gpuwarm needs no CUDA compiler. Run it in a child process
// limited to one GPU (CUDA_VISIBLE_DEVICES=GPU-<uuid>).

#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace gpuwarm::cuda {

struct LoadResult {
  unsigned long long launches = 0;
  double busy_ms = 0;        // first launch to last synchronize
  std::string failed_step;   // empty on success: load_libcuda, cu_init, ctx, jit, launch
  std::string error;         // CUDA error name or dlerror() text
};

// The kernel's PTX (entry "gpuwarm_spin"): each thread runs a dependent FMA
// chain of `iterations` steps and stores the result.
extern const char* const k_spin_ptx;

// Keeps device 0 busy for `seconds`, one short launch after another, and calls
// `on_running` once the first launch has finished (the GPU is under load).
LoadResult run_load(const std::string& libcuda, double seconds, const std::function<void()>& on_running);

// Loads libcuda and finds what run_load calls, starting nothing (no cuInit): the question a watch asks of a
// child before its idle lead-in, so that a missing library fails at once, not after the lead-in.
LoadResult check_load_library(const std::string& libcuda);

nlohmann::json to_json(const LoadResult& r);
LoadResult load_result_from_json(const nlohmann::json& j);  // throws nlohmann::json::exception on bad input

}  // namespace gpuwarm::cuda
