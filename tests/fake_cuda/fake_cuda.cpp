// A stand-in libcuda.so.1 for tests without a GPU. The device it exposes is
// the one named by CUDA_VISIBLE_DEVICES (as gpuwarm probe sets it); its
// behaviour comes from $FAKE_CUDA_SCENARIO:
//   {"GPU-<uuid>": {"delay_ms": {"cuInit": 300}, "returns": {"cuDevicePrimaryCtxRetain": 2}},
//    "*": {...defaults for any device}}
// For `watch --load`: cuModuleLoadData accepts only PTX that defines
// gpuwarm_spin (else INVALID_PTX); each cuLaunchKernel "runs" for
// "launch_ms" (default 5); "busy_file" names a file that exists from the first
// launch until the context is released, so the fake NVML can show the GPU busy.
// "when_file_exists": {"path": P, "set": {...}} applies `set` over the entry
// while P exists (a GPU the started daemon keeps warm initializes fast).
// No exception leaves this library.

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cuda/cuda_api.h"

using gpuwarm::cuda::CuResult;
using json = nlohmann::json;

namespace {

std::string visible() {
  const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
  return v != nullptr ? v : "";
}

const json& device_entry() {
  static json entry = [] {
    json out = json::object();
    const char* path = std::getenv("FAKE_CUDA_SCENARIO");
    if (path == nullptr) {
      return out;
    }
    std::ifstream in(path);
    std::stringstream buf;
    buf << in.rdbuf();
    json s = json::parse(buf.str(), nullptr, false);
    if (!s.is_object()) {
      return out;
    }
    if (s.contains("*")) {
      out = s["*"];
    }
    if (s.contains(visible())) {
      out.update(s[visible()]);
    }
    if (out.contains("when_file_exists")) {
      const json& when = out["when_file_exists"];
      std::ifstream probe(when.value("path", ""));
      if (probe.good() && when.contains("set")) {
        json patch = when["set"];
        out.update(patch);
      }
    }
    return out;
  }();
  return entry;
}

// Applies the scenario's delay and forced return code for `fn`; -1 = carry on.
CuResult behave(const char* fn) {
  try {
    const json& e = device_entry();
    if (e.contains("delay_ms") && e["delay_ms"].contains(fn)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(e["delay_ms"][fn].get<int>()));
    }
    if (e.contains("returns") && e["returns"].contains(fn)) {
      return e["returns"][fn].get<CuResult>();
    }
  } catch (const std::exception&) {
    return 999;
  }
  return -1;
}

bool initialized = false;
int fake_context = 0;
int fake_module = 0;
int fake_function = 0;

std::string busy_file() {
  try {
    return device_entry().value("busy_file", "");
  } catch (const std::exception&) {
    return "";
  }
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

#define FAKE_API extern "C" __attribute__((visibility("default")))
#define BEHAVE(fn)                 \
  if (CuResult r = behave(fn); r >= 0) { \
    return r;                      \
  }

FAKE_API CuResult cuInit(unsigned flags) {
  BEHAVE("cuInit");
  if (flags != 0) return 1;
  initialized = true;
  return visible().empty() && std::getenv("CUDA_VISIBLE_DEVICES") != nullptr ? 100 : 0;
}
FAKE_API CuResult cuDriverGetVersion(int* v) {
  *v = 13000;
  return 0;
}
FAKE_API CuResult cuDeviceGetCount(int* count) {
  BEHAVE("cuDeviceGetCount");
  if (!initialized) return 3;
  *count = visible().empty() ? 0 : 1;
  return 0;
}
FAKE_API CuResult cuDeviceGet(int* dev, int ordinal) {
  BEHAVE("cuDeviceGet");
  if (!initialized) return 3;
  if (ordinal != 0) return 101;
  *dev = 0;
  return 0;
}
FAKE_API CuResult cuDeviceGetPCIBusId(char* out, int len, int /*dev*/) {
  std::snprintf(out, static_cast<std::size_t>(len), "0000:06:00.0");
  return 0;
}
FAKE_API CuResult cuDeviceGetUuid_v2(gpuwarm::cuda::Uuid* uuid, int /*dev*/) {
  // Echo the UUID we were limited to, as the real driver reports the visible
  // GPU's, unless the scenario says the driver picked another one.
  std::string v = device_entry().value("report_uuid", visible());
  std::memset(uuid->bytes, 0, sizeof uuid->bytes);
  int n = 0;
  for (std::size_t i = 4; i + 1 < v.size() && n < 16; ++i) {
    int hi = hex(v[i]);
    int lo = hex(v[i + 1]);
    if (hi >= 0 && lo >= 0) {
      uuid->bytes[n++] = static_cast<unsigned char>(hi * 16 + lo);
      ++i;
    }
  }
  return 0;
}
FAKE_API CuResult cuDevicePrimaryCtxRetain(gpuwarm::cuda::Context* ctx, int /*dev*/) {
  BEHAVE("cuDevicePrimaryCtxRetain");
  *ctx = reinterpret_cast<gpuwarm::cuda::Context>(&fake_context);
  return 0;
}
FAKE_API CuResult cuDevicePrimaryCtxRelease_v2(int /*dev*/) {
  BEHAVE("cuDevicePrimaryCtxRelease_v2");
  if (std::string busy = busy_file(); !busy.empty()) {
    std::remove(busy.c_str());
  }
  return 0;
}
FAKE_API CuResult cuCtxSetCurrent(gpuwarm::cuda::Context /*ctx*/) { return 0; }
FAKE_API CuResult cuCtxSynchronize() {
  BEHAVE("cuCtxSynchronize");
  return 0;
}
FAKE_API CuResult cuMemAlloc_v2(gpuwarm::cuda::DevicePtr* ptr, std::size_t /*size*/) {
  BEHAVE("cuMemAlloc_v2");
  *ptr = 0x1000;
  return 0;
}
FAKE_API CuResult cuMemFree_v2(gpuwarm::cuda::DevicePtr /*ptr*/) { return 0; }
FAKE_API CuResult cuGetErrorName(CuResult /*r*/, const char** name) {
  *name = "CUDA_ERROR_FAKE";
  return 0;
}
FAKE_API CuResult cuModuleLoadData(gpuwarm::cuda::Module* module, const void* image) {
  BEHAVE("cuModuleLoadData");
  const char* text = static_cast<const char*>(image);
  if (text == nullptr || std::strstr(text, ".entry gpuwarm_spin") == nullptr || std::strstr(text, ".target") == nullptr) {
    return 218;  // INVALID_PTX
  }
  *module = reinterpret_cast<gpuwarm::cuda::Module>(&fake_module);
  return 0;
}
FAKE_API CuResult cuModuleGetFunction(gpuwarm::cuda::Function* fn, gpuwarm::cuda::Module /*module*/,
                                      const char* name) {
  BEHAVE("cuModuleGetFunction");
  if (std::strcmp(name, "gpuwarm_spin") != 0) {
    return 500;  // NOT_FOUND
  }
  *fn = reinterpret_cast<gpuwarm::cuda::Function>(&fake_function);
  return 0;
}
FAKE_API CuResult cuModuleUnload(gpuwarm::cuda::Module /*module*/) { return 0; }
FAKE_API CuResult cuLaunchKernel(gpuwarm::cuda::Function fn, unsigned, unsigned, unsigned, unsigned, unsigned,
                                 unsigned, unsigned, gpuwarm::cuda::Stream, void** params, void**) {
  BEHAVE("cuLaunchKernel");
  if (fn == nullptr || params == nullptr || params[0] == nullptr || params[1] == nullptr) {
    return 1;  // INVALID_VALUE
  }
  if (std::string busy = busy_file(); !busy.empty()) {
    if (std::FILE* f = std::fopen(busy.c_str(), "w")) {
      std::fclose(f);
    }
  }
  int ms = 5;
  try {
    ms = device_entry().value("launch_ms", 5);
  } catch (const std::exception&) {
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 0;
}
