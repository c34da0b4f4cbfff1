// A stand-in libnvidia-ml.so.1 for tests on machines without a GPU. It is
// loaded by gpuwarm's real dlopen path and answers from the JSON scenario
// named by $FAKE_NVML_SCENARIO (format: tests/fake_nvml/README.md). Any entry
// point can be made to return any NVML code; init can be slowed down; the
// "legacy" build hides newer symbols through a linker version script.
//
// No exception may leave this library: every entry point catches.

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "nvml/errors.h"

using gpuwarm::nvml::Return;
using json = nlohmann::json;

struct nvmlDevice_st {
  unsigned index;
};

namespace {

constexpr Return k_success = 0;
constexpr Return k_uninitialized = 1;
constexpr Return k_invalid_argument = 2;
constexpr Return k_not_supported = 3;
constexpr Return k_insufficient_size = 7;
constexpr Return k_unknown = 999;

struct State {
  std::mutex mutex;
  json scenario = json::object();
  bool loaded = false;
  bool load_failed = false;
  int init_count = 0;
  int inits_done = 0;  // every successful init of this process (init_count falls again at each shutdown)
  std::vector<nvmlDevice_st> handles;
  // De-init model: which GPUs this process has attached since its last
  // nvmlShutdown, and which have lost their settings to a de-initialization.
  std::vector<bool> attached;
  std::vector<bool> reverted;
  std::chrono::system_clock::time_point timeline_start;
  std::string log_file;  // init's "log_file": where this process's inits and shutdowns are logged
};

// One line ("nvmlInit 4242") appended with O_APPEND, so lines of several processes never interleave.
void log_call(const std::string& path, const char* what) {
  if (path.empty()) {
    return;
  }
  const std::string line = std::string(what) + " " + std::to_string(::getpid()) + "\n";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd >= 0) {
    [[maybe_unused]] ssize_t w = ::write(fd, line.data(), line.size());
    ::close(fd);
  }
}

State& state() {
  static State s;  // destroyed at dlclose, so leak checkers see nothing lost
  return s;
}

// (Re)reads the scenario. Called at init and by pre-init queries, so a test
// can change the file between runs of the same process.
void load_scenario(State& s) {
  s.loaded = true;
  s.load_failed = false;
  s.scenario = json::object();
  const char* path = std::getenv("FAKE_NVML_SCENARIO");
  if (path == nullptr || path[0] == '\0') {
    return;  // empty scenario: no GPUs
  }
  std::ifstream in(path);
  if (!in) {
    std::cerr << "fake-nvml: cannot open scenario " << path << "\n";
    s.load_failed = true;
    return;
  }
  std::stringstream buf;
  buf << in.rdbuf();
  json j = json::parse(buf.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    std::cerr << "fake-nvml: " << path << ": not a JSON object\n";
    s.load_failed = true;
    return;
  }
  s.scenario = std::move(j);
  std::size_t n = s.scenario.contains("gpus") && s.scenario["gpus"].is_array() ? s.scenario["gpus"].size() : 0;
  s.handles.resize(n);
  for (unsigned i = 0; i < n; ++i) {
    s.handles[i].index = i;
  }
  s.attached.resize(n, false);
  s.reverted.resize(n, false);
  // The timeline starts when the scenario was written, so every process of
  // a test (and every sample of a watch) sees the same clock.
  struct stat st {};
  s.timeline_start = std::chrono::system_clock::now();
  if (::stat(path, &st) == 0) {
    s.timeline_start = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(
            std::chrono::seconds(st.st_mtim.tv_sec) + std::chrono::nanoseconds(st.st_mtim.tv_nsec)));
  }
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

// GPU `index` as it stands now: the scenario's entry, then every timeline
// step already reached, then the patch of a "when_file_exists" whose file
// exists, then the defaults a de-initialization restored (JSON merge patches).
json effective_gpu(const State& s, unsigned index) {
  json gpu = s.scenario["gpus"][index];
  if (s.scenario.contains("timeline")) {
    double elapsed_ms =
        std::chrono::duration<double, std::milli>(std::chrono::system_clock::now() - s.timeline_start).count();
    for (const auto& step : s.scenario["timeline"]) {
      const bool reached = step.contains("after_inits") ? s.inits_done >= step.value("after_inits", 0)
                                                        : step.value("after_ms", 0.0) <= elapsed_ms;
      if (reached && step.contains("gpus") && index < step["gpus"].size()) {
        gpu.merge_patch(step["gpus"][index]);
      }
    }
  }
  // Lets a test model the daemon: persistence reads Enabled once this file exists.
  if (gpu.contains("enabled_when_file_exists")) {
    gpu["persistence"] = file_exists(gpu["enabled_when_file_exists"].get<std::string>()) ? 1 : 0;
  }
  if (gpu.contains("when_file_exists")) {
    const json& when = gpu["when_file_exists"];
    if (file_exists(when.at("path").get<std::string>())) {
      gpu.merge_patch(when.at("set"));
    }
  }
  if (index < s.reverted.size() && s.reverted[index]) {
    if (gpu.contains("default_app_clocks")) {
      gpu["app_clocks"] = gpu["default_app_clocks"];
    }
    if (gpu.contains("default_power_limit_mw")) {
      gpu["power_limit_mw"] = gpu["default_power_limit_mw"];
      if (gpu.contains("requested_power_limit_mw")) {
        gpu["requested_power_limit_mw"] = gpu["default_power_limit_mw"];
      }
    }
  }
  return gpu;
}

// A forced return code for `fn`, first per GPU, then global; -1 if none.
Return forced(const json& where, const char* fn) {
  if (where.is_object() && where.contains("returns") && where["returns"].is_object() &&
      where["returns"].contains(fn)) {
    return where["returns"][fn].get<Return>();
  }
  return -1;
}

template <class F>
Return guarded(F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::cerr << "fake-nvml: bad scenario: " << e.what() << "\n";
    return k_unknown;
  }
}

json gpu_of(nvmlDevice_st* dev) { return effective_gpu(state(), dev->index); }

// Common prologue of device queries: initialized, valid handle, forced code.
Return device_prologue(nvmlDevice_st* dev, const char* fn) {
  State& s = state();
  if (s.init_count == 0) {
    return k_uninitialized;
  }
  if (dev == nullptr || dev->index >= s.handles.size()) {
    return k_invalid_argument;
  }
  Return r = forced(gpu_of(dev), fn);
  if (r < 0) {
    r = forced(s.scenario, fn);
  }
  return r < 0 ? k_success : r;
}

Return copy_string(const std::string& value, char* out, unsigned len) {
  if (out == nullptr || value.size() + 1 > len) {
    return k_insufficient_size;
  }
  std::memcpy(out, value.c_str(), value.size() + 1);
  return k_success;
}

// Reads gpu[key] (or gpu[key][sub]); NOT_SUPPORTED when absent.
template <class T>
Return read_value(nvmlDevice_st* dev, const char* fn, const char* key, const char* sub, T* out) {
  return guarded([&] {
    Return r = device_prologue(dev, fn);
    if (r != k_success) {
      return r;
    }
    const json gpu = gpu_of(dev);
    if (!gpu.contains(key)) {
      return k_not_supported;
    }
    const json& v = gpu[key];
    if (sub != nullptr) {
      if (!v.is_object() || !v.contains(sub)) {
        return k_not_supported;
      }
      *out = v[sub].get<T>();
    } else {
      *out = v.get<T>();
    }
    return k_success;
  });
}

const char* clock_name(int type) {
  switch (type) {
    case 0: return "graphics";
    case 1: return "sm";
    case 2: return "mem";
    case 3: return "video";
    default: return "?";
  }
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) Return nvmlInit_v2() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  load_scenario(s);
  if (s.load_failed) {
    return k_unknown;
  }
  return guarded([&] {
    // The scenario's "init", then that of every timeline step already reached (a driver that hangs later).
    json init = s.scenario.value("init", json::object());
    if (s.scenario.contains("timeline")) {
      const double elapsed_ms =
          std::chrono::duration<double, std::milli>(std::chrono::system_clock::now() - s.timeline_start).count();
      for (const auto& step : s.scenario["timeline"]) {
        // A step is reached by time ("after_ms") or, where timing would race the process's start, by the
        // number of inits that succeeded before ("after_inits").
        const bool reached = step.contains("after_inits") ? s.inits_done >= step.value("after_inits", 0)
                                                          : step.value("after_ms", 0.0) <= elapsed_ms;
        if (reached && step.contains("init")) {
          init.merge_patch(step["init"]);
        }
      }
    }
    // Tells a test that this init has begun (so the process's signal handlers are in place) before it waits.
    if (std::string started = init.value("started_file", ""); !started.empty()) {
      std::ofstream(started, std::ios::app) << "init\n";
    }
    if (int delay = init.value("delay_ms", 0); delay > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    }
    Return r = init.value("return", 0);
    if (r == k_success) {
      ++s.init_count;
      ++s.inits_done;
      s.log_file = init.value("log_file", "");
      log_call(s.log_file, "nvmlInit");
    }
    return r;
  });
}

__attribute__((visibility("default"))) Return nvmlInit() { return nvmlInit_v2(); }

__attribute__((visibility("default"))) Return nvmlShutdown() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.init_count == 0) {
    return k_uninitialized;
  }
  log_call(s.log_file, "nvmlShutdown");
  if (--s.init_count == 0) {
    // The last client let go: a non-persistent GPU de-initializes.
    std::fill(s.attached.begin(), s.attached.end(), false);
  }
  return k_success;
}

__attribute__((visibility("default"))) const char* nvmlErrorString(Return r) {
  const char* name = gpuwarm::nvml::return_name(r);
  return name != nullptr ? name : "fake-nvml: unknown error";
}

__attribute__((visibility("default"))) Return nvmlSystemGetNVMLVersion(char* out, unsigned len) {
  State& s = state();
  if (!s.loaded) {
    load_scenario(s);
  }
  return guarded([&] {
    Return r = forced(s.scenario, "nvmlSystemGetNVMLVersion");
    if (r > 0) {
      return r;
    }
    return copy_string(s.scenario.value("nvml_version", std::string("13.580.159.04")), out, len);
  });
}

__attribute__((visibility("default"))) Return nvmlSystemGetDriverVersion(char* out, unsigned len) {
  State& s = state();
  if (s.init_count == 0) {
    return k_uninitialized;
  }
  return guarded([&] {
    Return r = forced(s.scenario, "nvmlSystemGetDriverVersion");
    if (r > 0) {
      return r;
    }
    return copy_string(s.scenario.value("driver_version", std::string("580.159.04")), out, len);
  });
}

__attribute__((visibility("default"))) Return nvmlSystemGetCudaDriverVersion_v2(int* out) {
  State& s = state();
  return guarded([&] {
    Return r = forced(s.scenario, "nvmlSystemGetCudaDriverVersion_v2");
    if (r > 0) {
      return r;
    }
    *out = s.scenario.value("cuda_driver_version", 13000);
    return k_success;
  });
}

__attribute__((visibility("default"))) Return nvmlDeviceGetCount_v2(unsigned* count) {
  State& s = state();
  if (s.init_count == 0) {
    return k_uninitialized;
  }
  return guarded([&] {
    Return r = forced(s.scenario, "nvmlDeviceGetCount_v2");
    if (r > 0) {
      return r;
    }
    *count = static_cast<unsigned>(s.handles.size());
    return k_success;
  });
}

__attribute__((visibility("default"))) Return nvmlDeviceGetCount(unsigned* count) {
  return nvmlDeviceGetCount_v2(count);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetHandleByIndex_v2(unsigned index, nvmlDevice_st** out) {
  State& s = state();
  if (s.init_count == 0) {
    return k_uninitialized;
  }
  if (index >= s.handles.size()) {
    return k_invalid_argument;
  }
  return guarded([&] {
    const json gpu = effective_gpu(s, index);
    Return r = gpu.value("handle_return", 0);
    if (r != k_success) {
      return r;
    }
    // Attaching initializes the GPU. One with a "deinit" model and persistence
    // off was de-initialized when its last client left: this attach is cold
    // (slow) and its non-persistent settings are back at their defaults.
    if (!s.attached[index] && gpu.contains("deinit") && gpu.value("persistence", 0) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(gpu["deinit"].value("attach_ms", 0)));
      s.reverted[index] = true;
    }
    s.attached[index] = true;
    *out = &s.handles[index];
    return k_success;
  });
}

__attribute__((visibility("default"))) Return nvmlDeviceGetHandleByIndex(unsigned index, nvmlDevice_st** out) {
  return nvmlDeviceGetHandleByIndex_v2(index, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetName(nvmlDevice_st* dev, char* out, unsigned len) {
  std::string v;
  Return r = read_value(dev, "nvmlDeviceGetName", "name", nullptr, &v);
  return r == k_success ? copy_string(v, out, len) : r;
}

__attribute__((visibility("default"))) Return nvmlDeviceGetUUID(nvmlDevice_st* dev, char* out, unsigned len) {
  std::string v;
  Return r = read_value(dev, "nvmlDeviceGetUUID", "uuid", nullptr, &v);
  return r == k_success ? copy_string(v, out, len) : r;
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPciInfo_v3(nvmlDevice_st* dev,
                                                                     gpuwarm::nvml::PciInfo* out) {
  std::string v;
  Return r = read_value(dev, "nvmlDeviceGetPciInfo_v3", "pci_bus_id", nullptr, &v);
  if (r != k_success) {
    return r;
  }
  std::memset(out, 0, sizeof *out);
  std::strncpy(out->bus_id, v.c_str(), sizeof out->bus_id - 1);
  return k_success;
}

__attribute__((visibility("default"))) Return nvmlDeviceGetMinorNumber(nvmlDevice_st* dev, unsigned* out) {
  return read_value(dev, "nvmlDeviceGetMinorNumber", "minor", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPersistenceMode(nvmlDevice_st* dev, int* out) {
  return read_value(dev, "nvmlDeviceGetPersistenceMode", "persistence", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetDisplayActive(nvmlDevice_st* dev, int* out) {
  return read_value(dev, "nvmlDeviceGetDisplayActive", "display_active", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPerformanceState(nvmlDevice_st* dev, int* out) {
  return read_value(dev, "nvmlDeviceGetPerformanceState", "pstate", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetClockInfo(nvmlDevice_st* dev, int type, unsigned* out) {
  return read_value(dev, "nvmlDeviceGetClockInfo", "clocks", clock_name(type), out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetMaxClockInfo(nvmlDevice_st* dev, int type,
                                                                       unsigned* out) {
  return read_value(dev, "nvmlDeviceGetMaxClockInfo", "max_clocks", clock_name(type), out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetApplicationsClock(nvmlDevice_st* dev, int type,
                                                                            unsigned* out) {
  return read_value(dev, "nvmlDeviceGetApplicationsClock", "app_clocks", clock_name(type), out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetDefaultApplicationsClock(nvmlDevice_st* dev, int type,
                                                                                   unsigned* out) {
  return read_value(dev, "nvmlDeviceGetDefaultApplicationsClock", "default_app_clocks", clock_name(type), out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetCurrentClocksEventReasons(nvmlDevice_st* dev,
                                                                                    unsigned long long* out) {
  return read_value(dev, "nvmlDeviceGetCurrentClocksEventReasons", "event_reasons", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetCurrentClocksThrottleReasons(nvmlDevice_st* dev,
                                                                                       unsigned long long* out) {
  return read_value(dev, "nvmlDeviceGetCurrentClocksThrottleReasons", "event_reasons", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetSupportedClocksEventReasons(nvmlDevice_st* dev,
                                                                                      unsigned long long* out) {
  return read_value(dev, "nvmlDeviceGetSupportedClocksEventReasons", "supported_event_reasons", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetSupportedClocksThrottleReasons(nvmlDevice_st* dev,
                                                                                         unsigned long long* out) {
  return read_value(dev, "nvmlDeviceGetSupportedClocksThrottleReasons", "supported_event_reasons", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetFieldValues(nvmlDevice_st* dev, int count,
                                                                      gpuwarm::nvml::FieldValue* values) {
  return guarded([&] {
    Return r = device_prologue(dev, "nvmlDeviceGetFieldValues");
    if (r != k_success) {
      return r;
    }
    const json gpu = gpu_of(dev);
    for (int i = 0; i < count; ++i) {
      auto& v = values[i];
      std::string key = std::to_string(v.field_id);
      if (gpu.contains("fields") && gpu["fields"].contains(key)) {
        v.nvml_return = k_success;
        v.value_type = gpuwarm::nvml::value_ulonglong;
        v.value.ull = gpu["fields"][key].get<unsigned long long>();
      } else {
        v.nvml_return = k_not_supported;
      }
    }
    return k_success;
  });
}

__attribute__((visibility("default"))) Return nvmlDeviceGetTemperature(nvmlDevice_st* dev, int /*sensor*/,
                                                                      unsigned* out) {
  return read_value(dev, "nvmlDeviceGetTemperature", "temperature", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPowerUsage(nvmlDevice_st* dev, unsigned* out) {
  return read_value(dev, "nvmlDeviceGetPowerUsage", "power_mw", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_st* dev, unsigned* out) {
  return read_value(dev, "nvmlDeviceGetEnforcedPowerLimit", "power_limit_mw", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPowerManagementLimit(nvmlDevice_st* dev, unsigned* out) {
  return read_value(dev, "nvmlDeviceGetPowerManagementLimit", "requested_power_limit_mw", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_st* dev,
                                                                                      unsigned* out) {
  return read_value(dev, "nvmlDeviceGetPowerManagementDefaultLimit", "default_power_limit_mw", nullptr, out);
}

__attribute__((visibility("default"))) Return nvmlDeviceGetMigMode(nvmlDevice_st* dev, unsigned* current,
                                                                  unsigned* pending) {
  // "mig_mode_pending" (default: the current mode) is a change that waits for the next reset.
  Return r = read_value(dev, "nvmlDeviceGetMigMode", "mig_mode", nullptr, current);
  if (r == k_success && read_value(dev, "nvmlDeviceGetMigMode", "mig_mode_pending", nullptr, pending) != k_success) {
    *pending = *current;
  }
  return r;
}

__attribute__((visibility("default"))) Return nvmlDeviceGetComputeRunningProcesses_v3(
    nvmlDevice_st* dev, unsigned* count, gpuwarm::nvml::ProcessInfo* infos) {
  unsigned running = 0;
  Return r = read_value(dev, "nvmlDeviceGetComputeRunningProcesses_v3", "compute_processes", nullptr, &running);
  if (r != k_success) {
    return r;
  }
  if (*count < running) {
    *count = running;
    return k_insufficient_size;
  }
  for (unsigned i = 0; i < running && infos != nullptr; ++i) {
    infos[i] = {1000 + i, 0, 0xFFFFFFFFu, 0xFFFFFFFFu};
  }
  *count = running;
  return k_success;
}

}  // extern "C"
