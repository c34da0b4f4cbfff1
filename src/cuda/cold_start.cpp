#include "cuda/cold_start.h"
#include "cuda/cuda_api.h"

#include <dlfcn.h>

#include <chrono>
#include <cstdio>

#include "core/dl.h"
#include "nvml/nvml_library.h"

namespace gpuwarm::cuda {

const char* result_name(CuResult r) {
  switch (r) {
    case 0: return "CUDA_SUCCESS";
    case 1: return "CUDA_ERROR_INVALID_VALUE";
    case 2: return "CUDA_ERROR_OUT_OF_MEMORY";
    case 3: return "CUDA_ERROR_NOT_INITIALIZED";
    case 4: return "CUDA_ERROR_DEINITIALIZED";
    case 34: return "CUDA_ERROR_STUB_LIBRARY";
    case 46: return "CUDA_ERROR_DEVICE_UNAVAILABLE";
    case 100: return "CUDA_ERROR_NO_DEVICE";
    case 101: return "CUDA_ERROR_INVALID_DEVICE";
    case 304: return "CUDA_ERROR_OPERATING_SYSTEM";
    case 400: return "CUDA_ERROR_INVALID_HANDLE";
    case 801: return "CUDA_ERROR_NOT_SUPPORTED";
    case 802: return "CUDA_ERROR_SYSTEM_NOT_READY";
    case 803: return "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH";
    case 804: return "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE";
    case 200: return "CUDA_ERROR_INVALID_IMAGE";
    case 209: return "CUDA_ERROR_NO_BINARY_FOR_GPU";
    case 218: return "CUDA_ERROR_INVALID_PTX";
    case 221: return "CUDA_ERROR_JIT_COMPILER_NOT_FOUND";
    case 222: return "CUDA_ERROR_UNSUPPORTED_PTX_VERSION";
    case 500: return "CUDA_ERROR_NOT_FOUND";
    case 719: return "CUDA_ERROR_LAUNCH_FAILED";
    case 999: return "CUDA_ERROR_UNKNOWN";
    default: return nullptr;
  }
}

std::string error_name(const Api& api, CuResult r) {
  if (const char* name = result_name(r)) {
    return name;
  }
  const char* text = nullptr;
  if (api.get_error_name != nullptr && api.get_error_name(r, &text) == 0 && text != nullptr) {
    return text;
  }
  return "CUresult " + std::to_string(r);
}

std::string load_driver(const std::string& path, Driver& out) {
  out.handle = ::dlopen(path.empty() ? "libcuda.so.1" : path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (out.handle == nullptr) {
    const char* why = ::dlerror();
    return why != nullptr ? why : "cannot load libcuda.so.1";
  }
  std::string missing;
#define GPUWARM_CUDA_RESOLVE(member, type, primary, fallback) \
  out.api.member = reinterpret_cast<type>(resolve_symbol(out.handle, primary, fallback));
#define GPUWARM_CUDA_REQUIRE(member, type, primary, fallback)   \
  GPUWARM_CUDA_RESOLVE(member, type, primary, fallback)         \
  if (out.api.member == nullptr) {                              \
    missing += std::string(missing.empty() ? "" : ", ") + (primary); \
  }
  GPUWARM_CUDA_FUNCTIONS(GPUWARM_CUDA_REQUIRE, GPUWARM_CUDA_RESOLVE)
#undef GPUWARM_CUDA_REQUIRE
#undef GPUWARM_CUDA_RESOLVE
  return missing.empty() ? std::string{} : "libcuda lacks " + missing;
}

namespace {

using Clock = std::chrono::steady_clock;

std::string format_uuid(const Uuid& u) {
  char buf[48];
  const unsigned char* b = u.bytes;
  std::snprintf(buf, sizeof buf, "GPU-%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
                b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return buf;
}

}  // namespace

ColdStart time_cold_start(const std::string& libcuda, const std::string& libnvml) {
  ColdStart out;
  auto stage = [&out](const char* name, auto&& body) -> bool {
    auto t = Clock::now();
    std::string err = body();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (!err.empty()) {
      out.failed_stage = name;
      out.error = err;
      return false;
    }
    out.stages.push_back({name, ms});
    return true;
  };

  Driver driver;
  const Api& api = driver.api;
  bool ok = stage("load_libcuda", [&]() -> std::string { return load_driver(libcuda, driver); });

  // NVML's own init is part of a job's cold start too (monitoring agents, frameworks).
  ok = ok && stage("nvml_init", [&]() -> std::string {
    auto nvml = nvml::Library::open(libnvml);
    if (!nvml) {
      return nvml.error().message;
    }
    nvml::Return r = (*nvml)->api().init();
    if (r != nvml::ret::success) {
      return "nvmlInit: " + (*nvml)->error_name(r);
    }
    (*nvml)->api().shutdown();
    return {};
  });

  Device dev = 0;
  Context ctx = nullptr;
  ok = ok && stage("cu_init", [&]() -> std::string {
    CuResult r = api.init(0);
    return r == 0 ? std::string{} : error_name(api, r);
  });
  ok = ok && stage("device_get", [&]() -> std::string {
    int count = 0;
    CuResult r = api.device_get_count(&count);
    if (r != 0) {
      return error_name(api, r);
    }
    if (count != 1) {
      return "expected exactly one visible device, CUDA sees " + std::to_string(count);
    }
    r = api.device_get(&dev, 0);
    if (r != 0) {
      return error_name(api, r);
    }
    if (api.device_get_uuid != nullptr) {
      Uuid u{};
      if (api.device_get_uuid(&u, dev) == 0) {
        out.uuid = format_uuid(u);
      }
    }
    if (api.device_get_pci_bus_id != nullptr) {
      char bus[32] = {};
      if (api.device_get_pci_bus_id(bus, sizeof bus, dev) == 0) {
        out.pci_bus_id = bus;
      }
    }
    return {};
  });
  ok = ok && stage("ctx_retain", [&]() -> std::string {
    CuResult r = api.primary_ctx_retain(&ctx, dev);
    return r == 0 ? std::string{} : error_name(api, r);
  });
  ok = ok && stage("alloc_sync", [&]() -> std::string {
    CuResult r = api.ctx_set_current(ctx);
    DevicePtr ptr = 0;
    if (r == 0) {
      r = api.mem_alloc(&ptr, 1u << 20);
    }
    if (r == 0) {
      r = api.ctx_synchronize();
    }
    if (ptr != 0) {
      (void)api.mem_free(ptr);
    }
    return r == 0 ? std::string{} : error_name(api, r);
  });
  ok = ok && stage("ctx_release", [&]() -> std::string {
    CuResult r = api.primary_ctx_release(dev);
    return r == 0 ? std::string{} : error_name(api, r);
  });
  (void)ok;
  // libcuda is left loaded: the child exits right after reporting.
  return out;
}

nlohmann::json to_json(const ColdStart& c) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : c.stages) {
    stages.push_back({{"name", s.name}, {"ms", s.ms}});
  }
  return {{"stages", stages}, {"cuda_uuid", c.uuid}, {"cuda_pci_bus_id", c.pci_bus_id},
          {"failed_stage", c.failed_stage}, {"error", c.error}};
}

ColdStart cold_start_from_json(const nlohmann::json& j) {
  ColdStart c;
  for (const auto& s : j.at("stages")) {
    c.stages.push_back({s.at("name").get<std::string>(), s.at("ms").get<double>()});
  }
  c.uuid = j.value("cuda_uuid", "");
  c.pci_bus_id = j.value("cuda_pci_bus_id", "");
  c.failed_stage = j.value("failed_stage", "");
  c.error = j.value("error", "");
  return c;
}

}  // namespace gpuwarm::cuda
