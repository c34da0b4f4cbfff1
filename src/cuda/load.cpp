#include "cuda/load.h"

#include <chrono>

#include "cuda/cuda_api.h"

namespace gpuwarm::cuda {

// PTX ISA 6.4 for sm_75 (Turing): the oldest target the CUDA 13 driver still
// builds for; the JIT compiles it for whatever newer GPU is present. One
// dependent FMA chain per thread keeps the SMs busy without touching memory
// until the single store at the end (which keeps the loop from being dead code).
const char* const k_spin_ptx = R"PTX(
.version 6.4
.target sm_75
.address_size 64

.visible .entry gpuwarm_spin(
	.param .u64 gpuwarm_spin_out,
	.param .u32 gpuwarm_spin_iterations
)
{
	.reg .pred %p<2>;
	.reg .b32 %r<4>;
	.reg .f32 %f<2>;
	.reg .b64 %rd<4>;

	ld.param.u64 %rd1, [gpuwarm_spin_out];
	ld.param.u32 %r1, [gpuwarm_spin_iterations];
	mov.u32 %r2, %tid.x;
	cvt.rn.f32.u32 %f1, %r2;
	mov.u32 %r3, 0;
$L_spin:
	fma.rn.f32 %f1, %f1, 0f3F7FFFFE, 0f3F800000;
	add.u32 %r3, %r3, 1;
	setp.lt.u32 %p1, %r3, %r1;
	@%p1 bra $L_spin;
	cvta.to.global.u64 %rd2, %rd1;
	mul.wide.u32 %rd3, %r2, 4;
	add.s64 %rd2, %rd2, %rd3;
	st.global.f32 [%rd2], %f1;
	ret;
}
)PTX";

namespace {

using Clock = std::chrono::steady_clock;

// A light load: two blocks of 128 threads per SM on an H100-sized GPU, launch
// after launch. Launches grow until each takes about k_target_launch_ms, so
// the loop checks the clock often enough to stop on time.
constexpr unsigned k_blocks = 264;
constexpr unsigned k_threads = 128;
constexpr double k_target_launch_ms = 20;
constexpr unsigned k_max_iterations = 1u << 30;

}  // namespace

namespace {

// libcuda loaded, with what the load calls; the reason in `error` when not.
std::string load_usable_driver(const std::string& libcuda, Driver& driver) {
  if (std::string err = load_driver(libcuda, driver); !err.empty()) {
    return err;
  }
  const Api& api = driver.api;
  if (api.module_load_data == nullptr || api.module_get_function == nullptr || api.launch_kernel == nullptr) {
    return "libcuda lacks cuModuleLoadData, cuModuleGetFunction or cuLaunchKernel";
  }
  return {};
}

}  // namespace

LoadResult check_load_library(const std::string& libcuda) {
  LoadResult out;
  Driver driver;
  if (std::string err = load_usable_driver(libcuda, driver); !err.empty()) {
    out.failed_step = "load_libcuda";
    out.error = std::move(err);
  }
  return out;
}

LoadResult run_load(const std::string& libcuda, double seconds, const std::function<void()>& on_running) {
  LoadResult out;
  auto failed = [&out](const char* step, std::string why) {
    out.failed_step = step;
    out.error = std::move(why);
    return out;
  };
  Driver driver;
  if (std::string err = load_usable_driver(libcuda, driver); !err.empty()) {
    return failed("load_libcuda", err);
  }
  const Api& api = driver.api;
  if (CuResult r = api.init(0); r != 0) {
    return failed("cu_init", error_name(api, r));
  }
  Device dev = 0;
  Context ctx = nullptr;
  if (CuResult r = api.device_get(&dev, 0); r != 0) {
    return failed("ctx", error_name(api, r));
  }
  if (CuResult r = api.primary_ctx_retain(&ctx, dev); r != 0) {
    return failed("ctx", error_name(api, r));
  }
  if (CuResult r = api.ctx_set_current(ctx); r != 0) {
    return failed("ctx", error_name(api, r));
  }
  Module module = nullptr;
  Function fn = nullptr;
  if (CuResult r = api.module_load_data(&module, k_spin_ptx); r != 0) {
    return failed("jit", error_name(api, r));
  }
  if (CuResult r = api.module_get_function(&fn, module, "gpuwarm_spin"); r != 0) {
    return failed("jit", error_name(api, r));
  }
  DevicePtr buffer = 0;
  if (CuResult r = api.mem_alloc(&buffer, k_threads * sizeof(float)); r != 0) {
    return failed("launch", error_name(api, r));
  }

  unsigned iterations = 1u << 16;
  const auto start = Clock::now();
  const auto until = start + std::chrono::duration<double>(seconds);
  while (Clock::now() < until) {
    void* params[] = {&buffer, &iterations};
    auto t = Clock::now();
    CuResult r = api.launch_kernel(fn, k_blocks, 1, 1, k_threads, 1, 1, 0, nullptr, params, nullptr);
    if (r == 0) {
      r = api.ctx_synchronize();
    }
    if (r != 0) {
      return failed("launch", error_name(api, r));
    }
    if (out.launches++ == 0 && on_running) {
      on_running();
    }
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (ms < k_target_launch_ms / 2 && iterations < k_max_iterations) {
      iterations *= 2;
    }
  }
  out.busy_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  (void)api.mem_free(buffer);
  if (api.module_unload != nullptr) {
    (void)api.module_unload(module);
  }
  (void)api.primary_ctx_release(dev);
  return out;
}

nlohmann::json to_json(const LoadResult& r) {
  return {{"launches", r.launches}, {"busy_ms", r.busy_ms}, {"failed_step", r.failed_step}, {"error", r.error}};
}

LoadResult load_result_from_json(const nlohmann::json& j) {
  LoadResult r;
  r.launches = j.at("launches").get<unsigned long long>();
  r.busy_ms = j.value("busy_ms", 0.0);
  r.failed_step = j.value("failed_step", "");
  r.error = j.value("error", "");
  return r;
}

}  // namespace gpuwarm::cuda
