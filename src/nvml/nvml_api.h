#pragma once
// gpuwarm's own declarations of the small part of NVML it uses. Names, numeric
// values and struct layouts are interface facts (see shared/design/FACTS.md §1);
// nothing here is copied from nvml.h. Every function is reached through
// dlsym, so none of these symbols is linked.

#include <cstdint>
#include <type_traits>

namespace gpuwarm::nvml {

using Return = int;               // nvmlReturn_t
struct DeviceOpaque;              // nvmlDevice_t points to an opaque struct
using Device = DeviceOpaque*;

namespace ret {
constexpr Return success = 0;
constexpr Return uninitialized = 1;
constexpr Return invalid_argument = 2;
constexpr Return not_supported = 3;
constexpr Return no_permission = 4;
constexpr Return not_found = 6;
constexpr Return insufficient_size = 7;
constexpr Return driver_not_loaded = 9;
constexpr Return library_not_found = 12;
constexpr Return function_not_found = 13;
constexpr Return timeout = 10;
constexpr Return gpu_is_lost = 15;
constexpr Return reset_required = 16;
constexpr Return lib_rm_version_mismatch = 18;
constexpr Return unknown = 999;
}  // namespace ret


enum ClockType : int { clock_graphics = 0, clock_sm = 1, clock_mem = 2 };

struct PciInfo {  // nvmlPciInfo_t as filled by nvmlDeviceGetPciInfo_v3: 68 bytes
  char bus_id_legacy[16];
  unsigned domain;
  unsigned bus;
  unsigned device;
  unsigned pci_device_id;
  unsigned pci_subsystem_id;
  char bus_id[32];
};
static_assert(sizeof(PciInfo) == 68);

union Value {  // nvmlValue_t
  double d;
  unsigned ui;
  unsigned long ul;
  unsigned long long ull;
  long long sll;
  int si;
  unsigned short us;
};

enum ValueType : int { value_double = 0, value_uint = 1, value_ulong = 2, value_ulonglong = 3, value_sll = 4,
                       value_sint = 5, value_ushort = 6 };

struct FieldValue {  // nvmlFieldValue_t: 40 bytes
  unsigned field_id;
  unsigned scope_id;
  long long timestamp;
  long long latency_usec;
  int value_type;
  Return nvml_return;
  Value value;
};
static_assert(sizeof(FieldValue) == 40);

struct ProcessInfo {  // nvmlProcessInfo_t (v2/v3 layout): 24 bytes
  unsigned pid;
  unsigned long long used_gpu_memory;
  unsigned gpu_instance_id;
  unsigned compute_instance_id;
};
static_assert(sizeof(ProcessInfo) == 24);

constexpr unsigned k_string_buffer = 96;  // covers name, UUID (v2 sizes) and version strings (80)

// X-macro: member, C signature, then symbol names tried in order (newest
// first). REQUIRED entries must resolve or the library is unusable; OPTIONAL
// ones may be absent (deprecated in 13.x, or added after the driver was built).
#define GPUWARM_NVML_FUNCTIONS(REQUIRED, OPTIONAL)                                                         \
  REQUIRED(init, Return (*)(), "nvmlInit_v2", "nvmlInit")                                                  \
  REQUIRED(shutdown, Return (*)(), "nvmlShutdown", nullptr)                                                \
  OPTIONAL(error_string, const char* (*)(Return), "nvmlErrorString", nullptr)                              \
  OPTIONAL(system_get_nvml_version, Return (*)(char*, unsigned), "nvmlSystemGetNVMLVersion", nullptr)       \
  OPTIONAL(system_get_driver_version, Return (*)(char*, unsigned), "nvmlSystemGetDriverVersion", nullptr)   \
  OPTIONAL(system_get_cuda_driver_version, Return (*)(int*), "nvmlSystemGetCudaDriverVersion_v2",           \
           "nvmlSystemGetCudaDriverVersion")                                                               \
  REQUIRED(device_get_count, Return (*)(unsigned*), "nvmlDeviceGetCount_v2", "nvmlDeviceGetCount")         \
  REQUIRED(device_get_handle_by_index, Return (*)(unsigned, Device*), "nvmlDeviceGetHandleByIndex_v2",     \
           "nvmlDeviceGetHandleByIndex")                                                                   \
  OPTIONAL(device_get_name, Return (*)(Device, char*, unsigned), "nvmlDeviceGetName", nullptr)             \
  OPTIONAL(device_get_uuid, Return (*)(Device, char*, unsigned), "nvmlDeviceGetUUID", nullptr)             \
  OPTIONAL(device_get_pci_info, Return (*)(Device, PciInfo*), "nvmlDeviceGetPciInfo_v3", nullptr)          \
  OPTIONAL(device_get_minor_number, Return (*)(Device, unsigned*), "nvmlDeviceGetMinorNumber", nullptr)    \
  OPTIONAL(device_get_persistence_mode, Return (*)(Device, int*), "nvmlDeviceGetPersistenceMode", nullptr) \
  OPTIONAL(device_get_performance_state, Return (*)(Device, int*), "nvmlDeviceGetPerformanceState",        \
           nullptr)                                                                                        \
  OPTIONAL(device_get_clock_info, Return (*)(Device, int, unsigned*), "nvmlDeviceGetClockInfo", nullptr)   \
  OPTIONAL(device_get_max_clock_info, Return (*)(Device, int, unsigned*), "nvmlDeviceGetMaxClockInfo",     \
           nullptr)                                                                                        \
  OPTIONAL(device_get_applications_clock, Return (*)(Device, int, unsigned*),                              \
           "nvmlDeviceGetApplicationsClock", nullptr)                                                      \
  OPTIONAL(device_get_default_applications_clock, Return (*)(Device, int, unsigned*),                      \
           "nvmlDeviceGetDefaultApplicationsClock", nullptr)                                               \
  OPTIONAL(device_get_current_clocks_event_reasons, Return (*)(Device, unsigned long long*),               \
           "nvmlDeviceGetCurrentClocksEventReasons", "nvmlDeviceGetCurrentClocksThrottleReasons")          \
  OPTIONAL(device_get_supported_clocks_event_reasons, Return (*)(Device, unsigned long long*),             \
           "nvmlDeviceGetSupportedClocksEventReasons", "nvmlDeviceGetSupportedClocksThrottleReasons")      \
  OPTIONAL(device_get_field_values, Return (*)(Device, int, FieldValue*), "nvmlDeviceGetFieldValues",      \
           nullptr)                                                                                        \
  OPTIONAL(device_get_temperature, Return (*)(Device, int, unsigned*), "nvmlDeviceGetTemperature", nullptr) \
  OPTIONAL(device_get_power_usage, Return (*)(Device, unsigned*), "nvmlDeviceGetPowerUsage", nullptr)      \
  OPTIONAL(device_get_enforced_power_limit, Return (*)(Device, unsigned*), "nvmlDeviceGetEnforcedPowerLimit", \
           nullptr)                                                                                        \
  OPTIONAL(device_get_power_management_limit, Return (*)(Device, unsigned*), "nvmlDeviceGetPowerManagementLimit", \
           nullptr)                                                                                        \
  OPTIONAL(device_get_power_management_default_limit, Return (*)(Device, unsigned*),                       \
           "nvmlDeviceGetPowerManagementDefaultLimit", nullptr)                                            \
  OPTIONAL(device_get_display_active, Return (*)(Device, int*), "nvmlDeviceGetDisplayActive", nullptr)        \
  OPTIONAL(device_get_mig_mode, Return (*)(Device, unsigned*, unsigned*), "nvmlDeviceGetMigMode", nullptr) \
  OPTIONAL(device_get_compute_running_processes, Return (*)(Device, unsigned*, ProcessInfo*),              \
           "nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2")

struct Api {
#define GPUWARM_NVML_MEMBER(member, type, ...) std::type_identity_t<type> member = nullptr;
  GPUWARM_NVML_FUNCTIONS(GPUWARM_NVML_MEMBER, GPUWARM_NVML_MEMBER)
#undef GPUWARM_NVML_MEMBER
};

}  // namespace gpuwarm::nvml
