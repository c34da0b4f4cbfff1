// A stand-in libcuda.so.1 for tests without a GPU. The devices it exposes are
// the ones CUDA_VISIBLE_DEVICES names (GPU-<uuid>, comma-separated, in that
// order, as gpuwarm probe sets it); their behaviour comes from $FAKE_CUDA_SCENARIO:
//   {"GPU-<uuid>": {"delay_ms": {"cuInit": 300}, "returns": {"cuDevicePrimaryCtxRetain": 2}},
//    "*": {...defaults for any device}}
// cuInit pays every visible device's cuInit delay, one after another (it
// initializes each of them). "serialize": P makes cuInit,
// cuDevicePrimaryCtxRetain and cuDevicePrimaryCtxRelease_v2 hold an exclusive
// lock on file P while they wait, as the real driver serializes those stages
// across processes: probes started together then inflate each other's stages.
// For `watch --load`: cuModuleLoadData accepts only PTX that defines
// gpuwarm_spin (else INVALID_PTX); each cuLaunchKernel "runs" for
// "launch_ms" (default 5); "busy_file" names a file that exists from the first
// launch until the context is released, so the fake NVML can show the GPU busy.
// "fail_after_launches": N makes launch N+1 of this process fail: it returns
// "fail_with" (default 719, LAUNCH_FAILED), or with "fail_with": "SIGKILL" the
// process is killed there (a load child that dies mid-load), or with "FLOOD"
// the process writes to its stdout from then on, as fast as it is read.
// "when_file_exists": {"path": P, "set": {...}} applies `set` over the entry
// while P exists (a GPU the started daemon keeps warm initializes fast).
// A delay may be a list: with "count_file": P, the Nth call of that function
// across processes (counted in P.<function>) waits the Nth entry, cycling, so
// rounds of a probe see different delays.
// "log_file": P (in "*"): each cuInit appends "cuInit PID" to P, as the fake NVML's init "log_file" logs its
// inits and shutdowns.
// "exit_linger_ms": N: once the device's context is released, the process's exit closes its stdout and then
// waits N ms, as the kernel's teardown of a process's GPU files runs after its pipes are closed.
// No exception leaves this library.

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cuda/cuda_api.h"

using gpuwarm::cuda::CuResult;
using json = nlohmann::json;

namespace {

constexpr int k_max_devices = 64;

bool visibility_set() { return std::getenv("CUDA_VISIBLE_DEVICES") != nullptr; }

const std::vector<std::string>& visible() {
  static const std::vector<std::string> list = [] {
    std::vector<std::string> out;
    const char* v = std::getenv("CUDA_VISIBLE_DEVICES");
    std::string text = v != nullptr ? v : "";
    std::size_t start = 0;
    // An empty (invalid) entry hides every entry after it, as CUDA does with any invalid entry.
    while (start < text.size() && out.size() < k_max_devices) {
      std::size_t comma = text.find(',', start);
      std::string entry = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (entry.empty()) {
        break;
      }
      out.push_back(entry);
      if (comma == std::string::npos) {
        break;
      }
      start = comma + 1;
    }
    return out;
  }();
  return list;
}

int device_count() { return static_cast<int>(visible().size()); }

const json& scenario() {
  static const json s = [] {
    const char* path = std::getenv("FAKE_CUDA_SCENARIO");
    if (path == nullptr) {
      return json::object();
    }
    std::ifstream in(path);
    std::stringstream buf;
    buf << in.rdbuf();
    json parsed = json::parse(buf.str(), nullptr, false);
    return parsed.is_object() ? parsed : json::object();
  }();
  return s;
}

// The scenario entry of device `ordinal` ("*" updated by its UUID's entry, then by when_file_exists).
const json& device_entry(int ordinal = 0) {
  static std::map<int, json> cache;
  auto it = cache.find(ordinal);
  if (it != cache.end()) {
    return it->second;
  }
  json out = json::object();
  const json& s = scenario();
  if (s.contains("*")) {
    out = s["*"];
  }
  if (ordinal >= 0 && ordinal < device_count() && s.contains(visible()[static_cast<std::size_t>(ordinal)])) {
    out.update(s[visible()[static_cast<std::size_t>(ordinal)]]);
  }
  if (out.contains("when_file_exists")) {
    const json& when = out["when_file_exists"];
    std::ifstream probe(when.value("path", ""));
    if (probe.good() && when.contains("set")) {
      json patch = when["set"];
      out.update(patch);
    }
  }
  return cache.emplace(ordinal, std::move(out)).first->second;
}

// How many earlier calls of `fn` every process made, counted in `path`.<fn> under an exclusive lock.
long bump_call_count(const std::string& path, const char* fn) {
  int fd = ::open((path + "." + fn).c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    return 0;
  }
  ::flock(fd, LOCK_EX);
  char buf[32] = {};
  long seen = ::pread(fd, buf, sizeof buf - 1, 0) > 0 ? std::strtol(buf, nullptr, 10) : 0;
  std::string next = std::to_string(seen + 1);
  if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, next.data(), next.size(), 0) < 0) {
    seen = 0;
  }
  ::close(fd);  // releases the flock
  return seen;
}

int delay_of(const json& e, const char* fn) {
  const json& d = e["delay_ms"][fn];
  if (!d.is_array()) {
    return d.get<int>();
  }
  if (d.empty()) {
    return 0;
  }
  long n = bump_call_count(e.value("count_file", "/nonexistent/fake-cuda"), fn);
  return d[static_cast<std::size_t>(n) % d.size()].get<int>();
}

// Applies device `ordinal`'s scenario delay and forced return code for `fn`; -1 = carry on.
CuResult behave(const char* fn, int ordinal = 0) {
  try {
    const json& e = device_entry(ordinal);
    if (e.contains("delay_ms") && e["delay_ms"].contains(fn)) {
      const int delay = delay_of(e, fn);
      int lock = -1;
      bool serialized = std::strcmp(fn, "cuInit") == 0 || std::strcmp(fn, "cuDevicePrimaryCtxRetain") == 0 ||
                        std::strcmp(fn, "cuDevicePrimaryCtxRelease_v2") == 0;
      if (serialized && e.contains("serialize")) {
        lock = ::open(e["serialize"].get<std::string>().c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (lock >= 0) {
          ::flock(lock, LOCK_EX);
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(delay));
      if (lock >= 0) {
        ::close(lock);  // releases the flock
      }
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
int fake_contexts[k_max_devices] = {};
int current_device = 0;
int fake_module = 0;
int fake_function = 0;

std::string busy_file(int ordinal) {
  try {
    return device_entry(ordinal).value("busy_file", "");
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

bool valid_device(int dev) { return dev >= 0 && dev < device_count(); }

}  // namespace

#define FAKE_API extern "C" __attribute__((visibility("default")))
#define BEHAVE_ON(fn, device)                     \
  if (CuResult r = behave(fn, device); r >= 0) { \
    return r;                                    \
  }
#define BEHAVE(fn) BEHAVE_ON(fn, current_device)

FAKE_API CuResult cuInit(unsigned flags) {
  if (const std::string log = scenario().value("*", json::object()).value("log_file", ""); !log.empty()) {
    const std::string line = "cuInit " + std::to_string(::getpid()) + "\n";
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      [[maybe_unused]] ssize_t w = ::write(fd, line.data(), line.size());
      ::close(fd);
    }
  }
  // Each visible device is initialized in turn; with none visible, the "*" entry still applies.
  for (int d = 0; d < (device_count() > 0 ? device_count() : 1); ++d) {
    BEHAVE_ON("cuInit", d);
  }
  if (flags != 0) return 1;
  initialized = true;
  return visible().empty() && visibility_set() ? 100 : 0;
}
FAKE_API CuResult cuDriverGetVersion(int* v) {
  *v = 13000;
  return 0;
}
FAKE_API CuResult cuDeviceGetCount(int* count) {
  BEHAVE("cuDeviceGetCount");
  if (!initialized) return 3;
  *count = device_count();
  return 0;
}
FAKE_API CuResult cuDeviceGet(int* dev, int ordinal) {
  BEHAVE_ON("cuDeviceGet", ordinal);
  if (!initialized) return 3;
  if (!valid_device(ordinal)) return 101;
  *dev = ordinal;
  return 0;
}
FAKE_API CuResult cuDeviceGetPCIBusId(char* out, int len, int dev) {
  if (!valid_device(dev)) return 101;
  std::snprintf(out, static_cast<std::size_t>(len), "0000:%02x:00.0", 6 + dev);
  return 0;
}
FAKE_API CuResult cuDeviceGetUuid_v2(gpuwarm::cuda::Uuid* uuid, int dev) {
  if (!valid_device(dev)) return 101;
  // Echo the UUID we were limited to, as the real driver reports the visible
  // GPU's, unless the scenario says the driver picked another one.
  std::string v = device_entry(dev).value("report_uuid", visible()[static_cast<std::size_t>(dev)]);
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
FAKE_API CuResult cuDevicePrimaryCtxRetain(gpuwarm::cuda::Context* ctx, int dev) {
  if (!valid_device(dev)) return 101;
  BEHAVE_ON("cuDevicePrimaryCtxRetain", dev);
  *ctx = reinterpret_cast<gpuwarm::cuda::Context>(&fake_contexts[dev]);
  return 0;
}
FAKE_API CuResult cuDevicePrimaryCtxRelease_v2(int dev) {
  if (!valid_device(dev)) return 101;
  BEHAVE_ON("cuDevicePrimaryCtxRelease_v2", dev);
  if (const json& e = device_entry(dev); e.contains("exit_linger_ms") && e["exit_linger_ms"].is_number_integer()) {
    static int linger_ms = 0;
    if (linger_ms == 0) {
      std::atexit([] {
        std::fflush(nullptr);
        std::cout.flush();  // what the probe printed is written before its pipe closes
        ::close(STDOUT_FILENO);
        std::this_thread::sleep_for(std::chrono::milliseconds(linger_ms));
      });
    }
    linger_ms = std::max(linger_ms, e["exit_linger_ms"].get<int>());
  }
  if (std::string busy = busy_file(dev); !busy.empty()) {
    std::remove(busy.c_str());
  }
  return 0;
}
FAKE_API CuResult cuCtxSetCurrent(gpuwarm::cuda::Context ctx) {
  if (ctx == nullptr) return 0;  // unbinds the current context
  auto* slot = reinterpret_cast<int*>(ctx);
  if (slot < &fake_contexts[0] || slot >= &fake_contexts[k_max_devices]) return 201;  // INVALID_CONTEXT
  current_device = static_cast<int>(slot - &fake_contexts[0]);
  return 0;
}
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
  if (std::string busy = busy_file(current_device); !busy.empty()) {
    if (std::FILE* f = std::fopen(busy.c_str(), "w")) {
      std::fclose(f);
    }
  }
  static long launches = 0;
  int ms = 5;
  try {
    const json& e = device_entry(current_device);
    ms = e.value("launch_ms", 5);
    if (e.contains("fail_after_launches") && launches++ >= e["fail_after_launches"].get<long>()) {
      const json& with = e.value("fail_with", json(719));
      if (with.is_string() && with.get<std::string>() == "SIGKILL") {
        ::kill(::getpid(), SIGKILL);
      }
      if (with.is_string() && with.get<std::string>() == "FLOOD") {
        static char chunk[1 << 16];  // big writes: the reader, taking less at a time, never finds the pipe empty
        std::memset(chunk, 'x', sizeof chunk);
        while (::write(STDOUT_FILENO, chunk, sizeof chunk) > 0) {
        }
        ::_exit(1);
      }
      return with.is_number_integer() ? with.get<CuResult>() : 719;
    }
  } catch (const std::exception&) {
    return 999;
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(ms));
  return 0;
}
