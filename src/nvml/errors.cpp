#include "nvml/errors.h"

#include <array>

namespace gpuwarm::nvml {

namespace {

using M = Meaning;

// Meanings from NVML's documentation of each code (FACTS.md §1.4): codes that
// name a sick GPU (lost, needs reset, timed out, IRQ, power, InfoROM) are RAS;
// NO_PERMISSION and OPERATING_SYSTEM are access, never a driver install.
constexpr std::array<ReturnInfo, 32> k_returns{{
    {0, "SUCCESS", M::ok, "success"},
    {1, "UNINITIALIZED", M::other, "NVML was not initialized when this was asked"},
    {2, "INVALID_ARGUMENT", M::other, "NVML rejected an argument"},
    {3, "NOT_SUPPORTED", M::not_supported, "this GPU or driver does not offer this"},
    {4, "NO_PERMISSION", M::permission, "access refused: device-file modes or not root"},
    {5, "ALREADY_INITIALIZED", M::other, "already initialized (deprecated code)"},
    {6, "NOT_FOUND", M::other, "the object asked for was not found"},
    {7, "INSUFFICIENT_SIZE", M::other, "a buffer was too small"},
    {8, "INSUFFICIENT_POWER", M::gpu_fault, "the GPU's power cables are not attached properly"},
    {9, "DRIVER_NOT_LOADED", M::driver_not_loaded, "the NVIDIA kernel driver is not running"},
    {10, "TIMEOUT", M::gpu_fault, "the GPU did not answer in time"},
    {11, "IRQ_ISSUE", M::gpu_fault, "the kernel found an interrupt problem with the GPU"},
    {12, "LIBRARY_NOT_FOUND", M::library, "a library NVML needs could not be found"},
    {13, "FUNCTION_NOT_FOUND", M::library, "a function NVML needs is missing from its library"},
    {14, "CORRUPTED_INFOROM", M::gpu_fault, "the GPU's InfoROM is corrupted"},
    {15, "GPU_IS_LOST", M::gpu_fault, "the GPU fell off the bus or is otherwise inaccessible"},
    {16, "RESET_REQUIRED", M::gpu_fault, "the GPU needs a reset before it can be used again"},
    {17, "OPERATING_SYSTEM", M::permission, "blocked by the operating system or cgroups"},
    {18, "LIB_RM_VERSION_MISMATCH", M::version_mismatch, "user-space library and kernel module versions differ"},
    {19, "IN_USE", M::other, "the resource is in use"},
    {20, "MEMORY", M::other, "out of memory"},
    {21, "NO_DATA", M::other, "no data"},
    {22, "VGPU_ECC_NOT_SUPPORTED", M::not_supported, "not supported with ECC on vGPU"},
    {23, "INSUFFICIENT_RESOURCES", M::other, "not enough resources"},
    {24, "FREQ_NOT_SUPPORTED", M::not_supported, "frequency not supported"},
    {25, "ARGUMENT_VERSION_MISMATCH", M::other, "a struct version this library does not know"},
    {26, "DEPRECATED", M::not_supported, "deprecated in this NVML"},
    {27, "NOT_READY", M::other, "not ready yet"},
    {28, "GPU_NOT_FOUND", M::other, "no GPUs were found"},
    {29, "INVALID_STATE", M::other, "the GPU is in a state that does not allow this"},
    {30, "RESET_TYPE_NOT_SUPPORTED", M::not_supported, "reset type not supported"},
    {999, "UNKNOWN", M::other, "an unknown internal error"},
}};

}  // namespace

std::span<const ReturnInfo> return_table() { return k_returns; }

const char* return_name(Return r) {
  for (const auto& info : k_returns) {
    if (info.code == r) {
      return info.name;
    }
  }
  return nullptr;
}

Meaning meaning_of(Return r) {
  for (const auto& info : k_returns) {
    if (info.code == r) {
      return info.meaning;
    }
  }
  return Meaning::other;
}

Meaning meaning_of_reason(std::string_view reason) {
  if (reason == k_reason_symbol_absent) {
    return Meaning::not_supported;  // the driver predates (or dropped) the query
  }
  if (reason == k_reason_not_read || reason == k_reason_not_read_by_check) {
    return Meaning::not_supported;  // not asked for; no rule needs it unasked
  }
  for (const auto& info : k_returns) {
    if (reason == info.name) {
      // A fact missing "because" of SUCCESS (an edited or converted snapshot) was not read: never "ok".
      return info.meaning == Meaning::ok ? Meaning::other : info.meaning;
    }
  }
  return Meaning::other;
}

Effect effect(Entry entry, Meaning meaning) {
  const bool structural = entry == Entry::init || entry == Entry::count || entry == Entry::handle;
  switch (meaning) {
    case Meaning::ok: return Effect::none;
    case Meaning::gpu_fault: return Effect::ras;
    case Meaning::driver_not_loaded:
      return structural ? Effect::driver_install : entry == Entry::optional ? Effect::none : Effect::cannot_tell;
    case Meaning::version_mismatch:
      return structural ? Effect::reboot : entry == Entry::optional ? Effect::none : Effect::cannot_tell;
    case Meaning::library:
      if (entry == Entry::init) {
        return Effect::driver_install;
      }
      [[fallthrough]];
    case Meaning::not_supported:
      // An answer for facts a rule uses only where the GPU has them.
      return entry == Entry::optional || entry == Entry::conditional ? Effect::none : Effect::cannot_tell;
    case Meaning::permission:
    case Meaning::other:
      return entry == Entry::optional ? Effect::none : Effect::cannot_tell;
  }
  return Effect::cannot_tell;
}

const char* to_string(Meaning m) {
  switch (m) {
    case Meaning::ok: return "ok";
    case Meaning::driver_not_loaded: return "driver-not-loaded";
    case Meaning::version_mismatch: return "version-mismatch";
    case Meaning::library: return "library";
    case Meaning::gpu_fault: return "gpu-fault";
    case Meaning::permission: return "permission";
    case Meaning::not_supported: return "not-supported";
    case Meaning::other: return "other";
  }
  return "other";
}

const char* to_string(Entry e) {
  switch (e) {
    case Entry::init: return "init";
    case Entry::count: return "count";
    case Entry::handle: return "handle";
    case Entry::needed: return "needed";
    case Entry::conditional: return "conditional";
    case Entry::optional: return "optional";
  }
  return "optional";
}

const char* to_string(Effect e) {
  switch (e) {
    case Effect::none: return "-";
    case Effect::driver_install: return "driver-install";
    case Effect::reboot: return "reboot";
    case Effect::ras: return "ras";
    case Effect::cannot_tell: return "cannot-tell";
  }
  return "cannot-tell";
}

}  // namespace gpuwarm::nvml
