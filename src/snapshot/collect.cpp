#include "snapshot/collect.h"

#include <unistd.h>

#include <chrono>
#include <future>
#include <cstdlib>

#include "core/host.h"
#include "nvml/collect_nvml.h"
#include "sysfs/daemon.h"
#include "sysfs/driver.h"
#include "sysfs/kernel_log.h"

#ifndef GPUWARM_VERSION
#define GPUWARM_VERSION "0.0.0"
#endif

namespace gpuwarm {


Snapshot collect_snapshot(const CollectOptions& options, ServiceManager* services) {
  auto start = std::chrono::steady_clock::now();
  Paths paths(options.root);
  Snapshot snap;
  snap.gpuwarm_version = GPUWARM_VERSION;
  snap.hostname = host_name();
  snap.collected_at = utc_now_iso8601();
  snap.root = ::geteuid() == 0;

  using Clock = std::chrono::steady_clock;
  auto timed = [&snap](const char* stage, auto&& fn) {
    auto t = Clock::now();
    fn();
    snap.stage_ms[stage] = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };

  // NVML init and the first handle dominate; the OS reads overlap with them.
  double nvml_ms = 0;
  auto nvml_future = std::async(std::launch::async, [&options, &nvml_ms] {
    auto t = Clock::now();
    NvmlFacts facts = nvml::collect(
        {options.nvml_library, options.full ? nvml::Depth::full : nvml::Depth::decision, options.one_shot});
    nvml_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    return facts;
  });

  timed("driver", [&] { snap.driver = read_driver(paths); });
  const char* path_env = std::getenv("PATH");
  timed("daemon", [&] { snap.daemon = read_daemon(paths, path_env != nullptr ? path_env : ""); });
  timed("kernel_log", [&] { snap.kernel_log = read_kernel_log(paths, options.kernel_log); });

  if (options.use_systemd && services != nullptr) {
    timed("service", [&] { snap.service = services->unit_status(snap.service.unit); });
  } else {
    snap.service.unreachable = "--no-systemd: service manager not asked";
    for (auto* f : {&snap.service.load_state, &snap.service.active_state, &snap.service.sub_state,
                    &snap.service.unit_file_state, &snap.service.restart, &snap.service.fragment_path}) {
      *f = Fact<std::string>::unknown(snap.service.unreachable);
    }
    snap.service.exec_start = Fact<std::vector<std::string>>::unknown(snap.service.unreachable);
    snap.service.stop_when_unneeded = Fact<bool>::unknown(snap.service.unreachable);
  }

  snap.nvml = nvml_future.get();
  snap.stage_ms["nvml"] = nvml_ms;

  if (!snap.kernel_log.source.has() && snap.kernel_log.source.missing.rfind("needs root", 0) == 0) {
    snap.needs_root.push_back("kernel log (/dev/kmsg): mismatch and legacy-flag lines not checked");
  }
  for (const auto& proc : snap.daemon.processes) {
    if (!proc.held_minors.has() && proc.held_minors.missing == "needs root") {
      snap.needs_root.push_back("open files of nvidia-persistenced (pid " + std::to_string(proc.pid) +
                                "): which GPUs it holds not checked");
    }
  }

  snap.collect_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return snap;
}

}  // namespace gpuwarm
