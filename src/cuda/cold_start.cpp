#include "cuda/cold_start.h"
#include "cuda/cuda_api.h"

#include <dlfcn.h>

#include <chrono>
#include <cstdio>

#include "core/dl.h"
#include "core/json_number.h"
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

double monotonic_ms() {
  return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count();
}

ColdStart time_cold_start(const std::string& libcuda, const std::string& libnvml, int expected_devices,
                          int context_devices, const std::function<void()>& when_ready) {
  ColdStart out;
  out.monotonic_start_ms = monotonic_ms();
  auto stage = [&out](const char* name, int device, auto&& body) -> bool {
    auto t = Clock::now();
    std::string err = body();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (!err.empty()) {
      out.failed_stage = name;
      out.failed_device = device;
      out.failed_ms = ms;
      out.error = err;
      return false;
    }
    out.stages.push_back({name, ms, device});
    return true;
  };

  Driver driver;
  const Api& api = driver.api;
  bool ok = stage("load_libcuda", -1, [&]() -> std::string { return load_driver(libcuda, driver); });

  // NVML's own init is part of a job's cold start too (monitoring agents, frameworks).
  ok = ok && stage("nvml_init", -1, [&]() -> std::string {
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

  std::vector<Device> devices;
  std::vector<Context> contexts;
  ok = ok && stage("cu_init", -1, [&]() -> std::string {
    CuResult r = api.init(0);
    return r == 0 ? std::string{} : error_name(api, r);
  });
  ok = ok && stage("device_get", -1, [&]() -> std::string {
    int count = 0;
    CuResult r = api.device_get_count(&count);
    if (r != 0) {
      return error_name(api, r);
    }
    if (count != expected_devices) {
      return "expected " + std::to_string(expected_devices) + " visible device" +
             (expected_devices == 1 ? "" : "s") + ", CUDA sees " + std::to_string(count);
    }
    for (int i = 0; i < count; ++i) {
      Device dev = 0;
      r = api.device_get(&dev, i);
      if (r != 0) {
        return error_name(api, r);
      }
      DeviceSeen seen;
      if (api.device_get_uuid != nullptr) {
        Uuid u{};
        if (api.device_get_uuid(&u, dev) == 0) {
          seen.uuid = format_uuid(u);
        }
      }
      if (api.device_get_pci_bus_id != nullptr) {
        char bus[32] = {};
        if (api.device_get_pci_bus_id(bus, sizeof bus, dev) == 0) {
          seen.pci_bus_id = bus;
        }
      }
      devices.push_back(dev);
      out.devices.push_back(std::move(seen));
    }
    return {};
  });
  // Device by device, as a job that starts all its GPUs from one process does.
  const std::size_t started = context_devices > 0 ? std::min(devices.size(), static_cast<std::size_t>(context_devices))
                                                  : devices.size();
  for (std::size_t i = 0; ok && i < started; ++i) {
    const int ordinal = static_cast<int>(i);
    Context ctx = nullptr;
    ok = stage("ctx_retain", ordinal, [&]() -> std::string {
      CuResult r = api.primary_ctx_retain(&ctx, devices[i]);
      return r == 0 ? std::string{} : error_name(api, r);
    });
    if (ok) {
      contexts.push_back(ctx);
    }
    ok = ok && stage("alloc_sync", ordinal, [&]() -> std::string {
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
  }
  if (ok) {
    out.monotonic_ready_ms = monotonic_ms();
    if (when_ready) {
      when_ready();
    }
  }
  for (std::size_t i = 0; ok && i < contexts.size(); ++i) {
    ok = stage("ctx_release", static_cast<int>(i), [&]() -> std::string {
      CuResult r = api.primary_ctx_release(devices[i]);
      return r == 0 ? std::string{} : error_name(api, r);
    });
  }
  // libcuda is left loaded: the child exits right after reporting.
  return out;
}

nlohmann::json to_json(const ColdStart& c) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : c.stages) {
    nlohmann::json j = {{"name", s.name}, {"ms", s.ms}};
    if (s.device >= 0) {
      j["device"] = s.device;
    }
    stages.push_back(std::move(j));
  }
  nlohmann::json devices = nlohmann::json::array();
  for (const auto& d : c.devices) {
    devices.push_back({{"uuid", d.uuid}, {"pci_bus_id", d.pci_bus_id}});
  }
  // cuda_uuid / cuda_pci_bus_id: the first device, as schema 1 had them.
  return {{"stages", stages},
          {"cuda_uuid", c.devices.empty() ? "" : c.devices.front().uuid},
          {"cuda_pci_bus_id", c.devices.empty() ? "" : c.devices.front().pci_bus_id},
          {"cuda_devices", devices},
          {"failed_stage", c.failed_stage},
          {"failed_device", c.failed_device},
          {"failed_ms", c.failed_ms},
          {"error", c.error},
          {"monotonic_start_ms", c.monotonic_start_ms},
          {"monotonic_ready_ms", c.monotonic_ready_ms}};
}

ColdStart cold_start_from_json(const nlohmann::json& j) {
  ColdStart c;
  for (const auto& s : j.at("stages")) {
    c.stages.push_back({s.at("name").get<std::string>(), s.at("ms").get<double>(), whole_number_or(s, "device", -1)});
  }
  if (j.contains("cuda_devices")) {
    for (const auto& d : j.at("cuda_devices")) {
      c.devices.push_back({d.value("uuid", ""), d.value("pci_bus_id", "")});
    }
  } else if (!j.value("cuda_uuid", "").empty() || !j.value("cuda_pci_bus_id", "").empty()) {
    c.devices.push_back({j.value("cuda_uuid", ""), j.value("cuda_pci_bus_id", "")});
  }
  c.failed_stage = j.value("failed_stage", "");
  c.failed_device = whole_number_or(j, "failed_device", -1);
  c.failed_ms = j.value("failed_ms", 0.0);
  c.error = j.value("error", "");
  c.monotonic_start_ms = j.value("monotonic_start_ms", 0.0);
  c.monotonic_ready_ms = j.value("monotonic_ready_ms", 0.0);
  return c;
}

}  // namespace gpuwarm::cuda
