#pragma once
// gpuwarm's own declarations of the few CUDA driver-API entry points the
// cold-start probe uses (facts from shared/design/FACTS.md §6; nothing copied
// from cuda.h). Reached through dlsym only.

#include <cstddef>
#include <string>
#include <type_traits>

namespace gpuwarm::cuda {

using CuResult = int;  // CUresult
using Device = int;  // CUdevice
struct ContextOpaque;
using Context = ContextOpaque*;
using DevicePtr = unsigned long long;  // CUdeviceptr
struct ModuleOpaque;
using Module = ModuleOpaque*;  // CUmodule
struct FunctionOpaque;
using Function = FunctionOpaque*;  // CUfunction
struct StreamOpaque;
using Stream = StreamOpaque*;  // CUstream; nullptr = the default stream

struct Uuid {
  unsigned char bytes[16];
};

// Name of a CUresult ("CUDA_ERROR_NO_DEVICE"), for the codes FACTS.md lists; nullptr otherwise.
const char* result_name(CuResult r);

#define GPUWARM_CUDA_FUNCTIONS(REQUIRED, OPTIONAL)                                                      \
  REQUIRED(init, CuResult (*)(unsigned), "cuInit", nullptr)                                               \
  OPTIONAL(driver_get_version, CuResult (*)(int*), "cuDriverGetVersion", nullptr)                          \
  REQUIRED(device_get_count, CuResult (*)(int*), "cuDeviceGetCount", nullptr)                              \
  REQUIRED(device_get, CuResult (*)(Device*, int), "cuDeviceGet", nullptr)                                 \
  OPTIONAL(device_get_pci_bus_id, CuResult (*)(char*, int, Device), "cuDeviceGetPCIBusId", nullptr)       \
  OPTIONAL(device_get_uuid, CuResult (*)(Uuid*, Device), "cuDeviceGetUuid_v2", "cuDeviceGetUuid")         \
  REQUIRED(primary_ctx_retain, CuResult (*)(Context*, Device), "cuDevicePrimaryCtxRetain", nullptr)       \
  REQUIRED(primary_ctx_release, CuResult (*)(Device), "cuDevicePrimaryCtxRelease_v2",                     \
           "cuDevicePrimaryCtxRelease")                                                                 \
  REQUIRED(ctx_set_current, CuResult (*)(Context), "cuCtxSetCurrent", nullptr)                            \
  REQUIRED(ctx_synchronize, CuResult (*)(), "cuCtxSynchronize", nullptr)                                  \
  REQUIRED(mem_alloc, CuResult (*)(DevicePtr*, std::size_t), "cuMemAlloc_v2", nullptr)                    \
  REQUIRED(mem_free, CuResult (*)(DevicePtr), "cuMemFree_v2", nullptr)                                    \
  OPTIONAL(get_error_name, CuResult (*)(CuResult, const char**), "cuGetErrorName", nullptr)              \
  OPTIONAL(module_load_data, CuResult (*)(Module*, const void*), "cuModuleLoadData", nullptr)            \
  OPTIONAL(module_get_function, CuResult (*)(Function*, Module, const char*), "cuModuleGetFunction",     \
           nullptr)                                                                                     \
  OPTIONAL(module_unload, CuResult (*)(Module), "cuModuleUnload", nullptr)                               \
  OPTIONAL(launch_kernel,                                                                               \
           CuResult (*)(Function, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, Stream, \
                        void**, void**),                                                                \
           "cuLaunchKernel", nullptr)

struct Api {
#define GPUWARM_CUDA_MEMBER(member, type, ...) std::type_identity_t<type> member = nullptr;
  GPUWARM_CUDA_FUNCTIONS(GPUWARM_CUDA_MEMBER, GPUWARM_CUDA_MEMBER)
#undef GPUWARM_CUDA_MEMBER
};

// The loaded driver library: dlopen'd once, never closed (the process that
// loads it is a short-lived child that exits right after).
struct Driver {
  void* handle = nullptr;
  Api api;
};

// Loads `path` ("" = libcuda.so.1) and resolves the table. Returns "" on
// success, else dlerror()'s text or the missing required symbols.
std::string load_driver(const std::string& path, Driver& out);

// A CUresult by name (result_name, else the driver's cuGetErrorName, else the number).
std::string error_name(const Api& api, CuResult r);

}  // namespace gpuwarm::cuda
