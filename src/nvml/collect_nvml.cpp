#include "nvml/collect_nvml.h"

#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "core/strings.h"
#include "nvml/errors.h"
#include "nvml/nvml_library.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm::nvml {

namespace {

// The library a one-shot collect leaves loaded for process exit to release. Written, never read: volatile, so
// an optimizing build keeps the store that shows leak checkers the library is held on purpose (at -O1 GCC
// dropped it and LeakSanitizer reported the library as leaked).
Library* volatile g_kept_until_exit = nullptr;
constexpr std::uint64_t k_thermal_or_power_bits = clock_reason::thermal_or_power;

// Field IDs of the clock-event counters. 269-271 (R590+ headers) and 251-253
// (R575/R580 headers) name the same counters; which set a driver answers is
// found by asking (FACTS.md §0 saw 269-271 on 580.159.04). 74-81 are stable.
struct CounterField {
  unsigned id;
  const char* reason;
};
constexpr CounterField k_counters_new[] = {
    {269, "SwThermalSlowdown"}, {270, "HwThermalSlowdown"}, {271, "HwPowerBrakeSlowdown"}};
constexpr CounterField k_counters_old[] = {
    {251, "SwThermalSlowdown"}, {252, "HwThermalSlowdown"}, {253, "HwPowerBrakeSlowdown"}};
constexpr CounterField k_counters_stable[] = {
    {74, "SwPowerCap"},      {75, "Thermal"},     {76, "SyncBoost"},        {77, "BoardLimit"},
    {78, "LowUtilization"},  {79, "Reliability"}, {80, "TotalAppClocks"},   {81, "TotalBaseClocks"}};

template <class T>
Fact<T> from_call(const Library& lib, Return r, T value) {
  if (r == ret::success) {
    return Fact<T>::known(value);
  }
  return Fact<T>::unknown(lib.error_name(r));
}

// Reads a counter set; returns true if any of them answered. A failed call
// leaves its return code in `call`.
template <std::size_t N>
bool read_counters(const Library& lib, Device dev, const CounterField (&set)[N],
                   std::vector<EventCounter>& out, Return& call) {
  FieldValue values[N] = {};
  for (std::size_t i = 0; i < N; ++i) {
    values[i].field_id = set[i].id;
  }
  call = lib.api().device_get_field_values(dev, static_cast<int>(N), values);
  if (call != ret::success) {
    return false;
  }
  bool any = false;
  for (std::size_t i = 0; i < N; ++i) {
    if (values[i].nvml_return == ret::success) {
      out.push_back({set[i].reason, set[i].id, values[i].value.ull});
      any = true;
    }
  }
  return any;
}

struct ClockTypes {
  bool sm;
  bool graphics;
  bool mem;
};
constexpr ClockTypes k_all_clocks{true, true, true};
constexpr ClockTypes k_no_clocks{false, false, false};

ClockSet read_clocks(const Library& lib, Device dev, Return (*fn)(Device, int, unsigned*), ClockTypes which) {
  ClockSet set;
  auto one = [&](bool wanted, ClockType type) {
    if (fn == nullptr) {
      return Fact<unsigned>::unknown(k_reason_symbol_absent);
    }
    if (!wanted) {
      return Fact<unsigned>::unknown(k_reason_not_read);
    }
    unsigned mhz = 0;
    Return r = fn(dev, type, &mhz);
    return from_call(lib, r, mhz);
  };
  set.sm = one(which.sm, clock_sm);
  set.graphics = one(which.graphics, clock_graphics);
  set.mem = one(which.mem, clock_mem);
  return set;
}

Fact<std::string> read_string(const Library& lib, Return (*fn)(Device, char*, unsigned), Device dev) {
  if (fn == nullptr) {
    return Fact<std::string>::unknown(k_reason_symbol_absent);
  }
  char buf[k_string_buffer] = {};
  Return r = fn(dev, buf, sizeof buf);
  buf[sizeof buf - 1] = '\0';
  return from_call(lib, r, printable(buf));
}

Fact<unsigned> read_uint(const Library& lib, Device dev, Return (*fn)(Device, unsigned*)) {
  if (fn == nullptr) {
    return Fact<unsigned>::unknown(k_reason_symbol_absent);
  }
  unsigned v = 0;
  Return r = fn(dev, &v);
  return from_call(lib, r, v);
}

// Temperature, power against its limit, and the clock-event counters.
void read_thermal_evidence(const Library& lib, Device dev, GpuFacts& gpu) {
  const Api& api = lib.api();
  gpu.power_mw = read_uint(lib, dev, api.device_get_power_usage);
  gpu.power_limit_mw = read_uint(lib, dev, api.device_get_enforced_power_limit);
  if (api.device_get_field_values != nullptr) {
    std::vector<EventCounter> counters;
    Return call = ret::success;
    if (read_counters(lib, dev, k_counters_new, counters, call)) {
      gpu.event_counter_ids = "269-271";
    } else if (read_counters(lib, dev, k_counters_old, counters, call)) {
      gpu.event_counter_ids = "251-253";
    } else {
      gpu.event_counter_ids = "74-81";
    }
    read_counters(lib, dev, k_counters_stable, counters, call);
    // A failed call is the reason (GPU_IS_LOST matters); else no field answered.
    gpu.event_counters = !counters.empty() ? Fact<std::vector<EventCounter>>::known(std::move(counters))
                         : call != ret::success
                             ? Fact<std::vector<EventCounter>>::unknown(lib.error_name(call))
                             : Fact<std::vector<EventCounter>>::unknown("no counter field answered");
  } else {
    gpu.event_counters = Fact<std::vector<EventCounter>>::unknown(k_reason_symbol_absent);
  }
  if (api.device_get_temperature != nullptr) {
    unsigned celsius = 0;
    Return r = api.device_get_temperature(dev, /*NVML_TEMPERATURE_GPU=*/0, &celsius);
    gpu.temperature_c = from_call(lib, r, static_cast<int>(celsius));
  } else {
    gpu.temperature_c = Fact<int>::unknown(k_reason_symbol_absent);
  }
}

void tell(Progress* progress, std::string stage) {
  if (progress != nullptr) {
    progress->set(std::move(stage));
  }
}

GpuFacts read_gpu(const Library& lib, unsigned index, Depth depth, Progress* progress) {
  const bool full = depth == Depth::full;
  const Api& api = lib.api();
  GpuFacts gpu;
  gpu.index = index;
  Device dev = nullptr;
  tell(progress, "GPU " + std::to_string(index) + ": nvmlDeviceGetHandleByIndex");
  const auto attach_start = std::chrono::steady_clock::now();
  Return r = api.device_get_handle_by_index(index, &dev);
  gpu.attach_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - attach_start).count();
  if (r != ret::success) {
    gpu.handle_error = lib.error_name(r);
    return gpu;
  }
  const std::string gpu_prefix = "GPU " + std::to_string(index) + ": ";
  tell(progress, gpu_prefix + "nvmlDeviceGetName and identity");
  gpu.name = read_string(lib, api.device_get_name, dev);
  gpu.uuid = read_string(lib, api.device_get_uuid, dev);

  if (api.device_get_pci_info != nullptr) {
    PciInfo pci{};
    r = api.device_get_pci_info(dev, &pci);
    pci.bus_id[sizeof pci.bus_id - 1] = '\0';
    gpu.pci_bus_id = from_call(lib, r, printable(pci.bus_id));
  } else {
    gpu.pci_bus_id = Fact<std::string>::unknown(k_reason_symbol_absent);
  }

  gpu.minor = read_uint(lib, dev, api.device_get_minor_number);

  tell(progress, gpu_prefix + "nvmlDeviceGetPersistenceMode");
  if (api.device_get_persistence_mode != nullptr) {
    int mode = 0;
    r = api.device_get_persistence_mode(dev, &mode);
    gpu.persistence = from_call(lib, r, mode == 1);
    if (gpu.persistence.has() && mode != 0 && mode != 1) {  // nvmlEnableState_t has only these two
      gpu.persistence = Fact<bool>::unknown(
          fmt::format("answered {}, neither Enabled (1) nor Disabled (0)", mode));
    }
  } else {
    gpu.persistence = Fact<bool>::unknown(k_reason_symbol_absent);
  }
  if (depth == Depth::check) {
    // `gpuwarm check` decides on persistence and the daemon only (thermal events and pinned clocks are not
    // a scheduler's problem): P-state, clocks, event reasons and thermal evidence are left to diagnose.
    const std::string why = k_reason_not_read_by_check;
    gpu.pstate = Fact<unsigned>::unknown(why);
    for (ClockSet* set : {&gpu.clocks, &gpu.max_clocks, &gpu.app_clocks, &gpu.default_app_clocks}) {
      set->sm = set->graphics = set->mem = Fact<unsigned>::unknown(why);
    }
    gpu.event_reasons_active = gpu.event_reasons_supported = Fact<std::uint64_t>::unknown(why);
    gpu.power_mw = gpu.power_limit_mw = Fact<unsigned>::unknown(why);
    gpu.temperature_c = Fact<int>::unknown(why);
    gpu.event_counters = Fact<std::vector<EventCounter>>::unknown(why);
  } else {
    if (api.device_get_performance_state != nullptr) {
      int pstate = 0;
      r = api.device_get_performance_state(dev, &pstate);
      gpu.pstate = from_call(lib, r, static_cast<unsigned>(pstate));
    } else {
      gpu.pstate = Fact<unsigned>::unknown(k_reason_symbol_absent);
    }

    // `nvidia-smi -ac MEM,GR` pins graphics and SM together, so decision depth
    // compares the SM application clock with its default and nothing more.
    constexpr ClockTypes sm_and_mem{true, false, true};
    constexpr ClockTypes sm_only{true, false, false};
    tell(progress, gpu_prefix + "clock queries");
    gpu.clocks = read_clocks(lib, dev, api.device_get_clock_info, full ? k_all_clocks : sm_and_mem);
    gpu.max_clocks = read_clocks(lib, dev, api.device_get_max_clock_info, full ? k_all_clocks : k_no_clocks);
    gpu.app_clocks = read_clocks(lib, dev, api.device_get_applications_clock, full ? k_all_clocks : sm_only);
    gpu.default_app_clocks =
        read_clocks(lib, dev, api.device_get_default_applications_clock, full ? k_all_clocks : sm_only);

    auto read_mask = [&](Return (*fn)(Device, unsigned long long*)) {
      if (fn == nullptr) {
        return Fact<std::uint64_t>::unknown(k_reason_symbol_absent);
      }
      unsigned long long mask = 0;
      Return rc = fn(dev, &mask);
      return from_call(lib, rc, static_cast<std::uint64_t>(mask));
    };
    tell(progress, gpu_prefix + "nvmlDeviceGetCurrentClocksEventReasons");
    gpu.event_reasons_active = read_mask(api.device_get_current_clocks_event_reasons);
    gpu.event_reasons_supported = read_mask(api.device_get_supported_clocks_event_reasons);

    // Temperature, power and the counters are evidence for the thermal/power
    // finding; at decision depth they are read only when it will fire.
    const bool thermal_evidence = full || (gpu.event_reasons_active.has() &&
                                           (*gpu.event_reasons_active & k_thermal_or_power_bits) != 0);
    if (thermal_evidence) {
      tell(progress, gpu_prefix + "temperature, power and field values");
      read_thermal_evidence(lib, dev, gpu);
    } else {
      gpu.power_mw = gpu.power_limit_mw = Fact<unsigned>::unknown(k_reason_not_read);
      gpu.temperature_c = Fact<int>::unknown(k_reason_not_read);
      gpu.event_counters = Fact<std::vector<EventCounter>>::unknown(k_reason_not_read);
    }
  }
  // The limit an operator set and its default: what `reset` must set again after a reset.
  if (full) {
    gpu.requested_power_limit_mw = read_uint(lib, dev, api.device_get_power_management_limit);
    gpu.default_power_limit_mw = read_uint(lib, dev, api.device_get_power_management_default_limit);
  } else {
    gpu.requested_power_limit_mw = gpu.default_power_limit_mw =
        Fact<unsigned>::unknown(depth == Depth::check ? k_reason_not_read_by_check : k_reason_not_read);
  }
  // Whether a display is up on it: one sign of a workstation, where
  // persistence may be unwanted. Asked only where persistence is off.
  tell(progress, gpu_prefix + "display, MIG and process queries");
  if (!full && !gpu.persistence.is(false)) {
    gpu.display_active = Fact<bool>::unknown(k_reason_not_read);
  } else if (api.device_get_display_active != nullptr) {
    int active = 0;
    r = api.device_get_display_active(dev, &active);
    gpu.display_active = from_call(lib, r, active == 1);
  } else {
    gpu.display_active = Fact<bool>::unknown(k_reason_symbol_absent);
  }
  if (api.device_get_mig_mode != nullptr) {
    unsigned current = 0;
    unsigned pending = 0;
    r = api.device_get_mig_mode(dev, &current, &pending);
    gpu.mig_mode = from_call(lib, r, current);
    gpu.mig_mode_pending = from_call(lib, r, pending);
  } else {
    gpu.mig_mode = Fact<unsigned>::unknown(k_reason_symbol_absent);
    gpu.mig_mode_pending = Fact<unsigned>::unknown(k_reason_symbol_absent);
  }
  if (api.device_get_compute_running_processes != nullptr) {
    // Asking with room for none returns SUCCESS (none) or INSUFFICIENT_SIZE with the count.
    unsigned count = 0;
    r = api.device_get_compute_running_processes(dev, &count, nullptr);
    gpu.compute_processes =
        (r == ret::success || r == ret::insufficient_size) ? Fact<unsigned>::known(r == ret::success ? 0 : count)
                                                           : Fact<unsigned>::unknown(lib.error_name(r));
  } else {
    gpu.compute_processes = Fact<unsigned>::unknown(k_reason_symbol_absent);
  }
  return gpu;
}

}  // namespace

NvmlFacts collect(const CollectOptions& options) {
  NvmlFacts facts;
  auto not_loaded = [&](const std::string& why) {
    for (auto* f : {&facts.library_path, &facts.library_file_version, &facts.nvml_version,
                    &facts.user_space_version, &facts.system_driver_version}) {
      *f = Fact<std::string>::unknown(why);
    }
    facts.cuda_driver_version = Fact<int>::unknown(why);
    facts.init_code = Fact<int>::unknown(why);
    facts.device_count = Fact<unsigned>::unknown(why);
  };

  using Clock = std::chrono::steady_clock;
  auto ms_since = [](Clock::time_point t) {
    return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };
  auto load_start = Clock::now();
  tell(options.progress, "loading libnvidia-ml");
  auto lib = Library::open(LibrarySearch{options.library_path, options.root, options.root_trusted});
  facts.load_ms = ms_since(load_start);
  if (!lib) {
    not_loaded("NVML library not loaded: " + lib.error().message);
    return facts;
  }
  const Library& nvml = **lib;
  const Api& api = nvml.api();
  facts.library_path = Fact<std::string>::known(nvml.real_path());
  facts.library_found_by = nvml.found_by();
  facts.library_passed_over = nvml.passed_over();
  std::string file_version = version_from_library_name(nvml.real_path());
  facts.library_file_version = file_version.empty()
                                   ? Fact<std::string>::unknown("file name carries no version")
                                   : Fact<std::string>::known(file_version);

  // Works before init, so the user-space version is known even when init fails.
  if (api.system_get_nvml_version != nullptr) {
    char buf[k_string_buffer] = {};
    Return r = api.system_get_nvml_version(buf, sizeof buf);
    buf[sizeof buf - 1] = '\0';
    facts.nvml_version = from_call(nvml, r, printable(buf));
    facts.user_space_version = facts.nvml_version.has()
                                   ? Fact<std::string>::known(driver_version_from_nvml_version(*facts.nvml_version))
                                   : facts.nvml_version;
  } else {
    facts.nvml_version = facts.user_space_version = Fact<std::string>::unknown(k_reason_symbol_absent);
  }

  auto init_start = Clock::now();
  tell(options.progress, "nvmlInit");
  Return init = api.init();
  facts.init_ms = ms_since(init_start);
  facts.init_code = Fact<int>::known(init);
  facts.init_error = nvml.error_name(init);
  if (init != ret::success) {
    std::string why = "nvmlInit failed: " + facts.init_error;
    facts.system_driver_version = Fact<std::string>::unknown(why);
    facts.cuda_driver_version = Fact<int>::unknown(why);
    facts.device_count = Fact<unsigned>::unknown(why);
    return facts;
  }

  if (api.system_get_driver_version != nullptr) {
    char buf[k_string_buffer] = {};
    Return r = api.system_get_driver_version(buf, sizeof buf);
    buf[sizeof buf - 1] = '\0';
    facts.system_driver_version = from_call(nvml, r, printable(buf));
  } else {
    facts.system_driver_version = Fact<std::string>::unknown(k_reason_symbol_absent);
  }
  if (api.system_get_cuda_driver_version != nullptr) {
    int cuda = 0;
    Return r = api.system_get_cuda_driver_version(&cuda);
    facts.cuda_driver_version = from_call(nvml, r, cuda);
  } else {
    facts.cuda_driver_version = Fact<int>::unknown(k_reason_symbol_absent);
  }

  auto devices_start = Clock::now();
  unsigned count = 0;
  tell(options.progress, "nvmlDeviceGetCount");
  Return r = api.device_get_count(&count);
  facts.device_count = from_call(nvml, r, count);
  if (r == ret::success) {
    for (unsigned i = 0; i < count; ++i) {
      facts.gpus.push_back(read_gpu(nvml, i, options.depth, options.progress));
    }
  }
  facts.devices_ms = ms_since(devices_start);
  if (options.release_at_exit) {
    // Neither nvmlShutdown nor dlclose: the library stays initialized until
    // exit. Kept reachable from a global so leak checkers see it as intended.
    g_kept_until_exit = lib->release();
    return facts;
  }
  auto shutdown_start = Clock::now();
  tell(options.progress, "nvmlShutdown");
  api.shutdown();
  facts.shutdown_ms = ms_since(shutdown_start);
  return facts;
}

}  // namespace gpuwarm::nvml
