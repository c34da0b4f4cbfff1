#include "gather/collect.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include <fmt/format.h>

#include "core/deadline.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/strings.h"
#include "nvml/collect_nvml.h"
#include "nvml/nvml_library.h"
#include "sysfs/daemon.h"
#include "sysfs/driver.h"
#include "sysfs/host.h"
#include "sysfs/kernel_log.h"
#include "sysfs/processes.h"

#ifndef GPUWARM_VERSION
#define GPUWARM_VERSION "0.0.0"
#endif

namespace gpuwarm {

namespace {

using Clock = std::chrono::steady_clock;

// Where NVML stuck earlier in this process. Once it has hung, a new call would
// only queue behind the stuck one (NVML serializes inside the library), so
// later collections (verify's samples) fail fast instead of waiting again.
std::string g_stuck_at;  // set and read on the calling thread only

std::optional<BackgroundCall<NvmlFacts>> start_nvml(const CollectOptions& options) {
  if (abandoned_calls() > 0 || !options.nvml_not_opened.empty()) {
    return std::nullopt;
  }
  nvml::CollectOptions nvml_options{options.nvml_library, options.root,
                                    options.check_only ? nvml::Depth::check
                                    : options.full     ? nvml::Depth::full
                                                       : nvml::Depth::decision,
                                    options.one_shot};
  nvml_options.root_trusted = options.root_trusted;
  return BackgroundCall<NvmlFacts>([nvml_options](Progress& progress) mutable {
    nvml_options.progress = &progress;
    return nvml::collect(nvml_options);
  });
}

NvmlFacts unread_facts(const CollectOptions& options, const std::string& why) {
  NvmlFacts facts;
  facts.timeout_s = options.nvml_timeout_s;
  for (auto* f : {&facts.library_path, &facts.library_file_version, &facts.nvml_version, &facts.user_space_version,
                  &facts.system_driver_version}) {
    *f = Fact<std::string>::unknown(why);
  }
  facts.cuda_driver_version = Fact<int>::unknown(why);
  facts.init_code = Fact<int>::unknown(why);
  facts.device_count = Fact<unsigned>::unknown(why);
  return facts;
}

NvmlFacts timed_out_facts(const CollectOptions& options, const std::string& why) {
  NvmlFacts facts = unread_facts(options, why);
  facts.timed_out_at = g_stuck_at;
  return facts;
}

NvmlFacts finish_nvml(std::optional<BackgroundCall<NvmlFacts>>& call, const CollectOptions& options,
                      Clock::time_point started) {
  if (!options.nvml_not_opened.empty()) {
    NvmlFacts facts = unread_facts(options, "NVML not opened: " + options.nvml_not_opened);
    facts.not_opened = options.nvml_not_opened;
    facts.not_opened_by = options.nvml_not_opened_by;
    return facts;
  }
  // One wording for one hang, whichever collection first waited for it: the exporter's unknown-fact label stays one
  // series from scrape to scrape.
  auto hung = [&options] {
    return fmt::format("NVML did not answer within {:g} s (stuck in {}): not called again by this process",
                       options.nvml_timeout_s, g_stuck_at);
  };
  if (!call) {
    return timed_out_facts(options, hung());
  }
  auto deadline = started + std::chrono::duration_cast<Clock::duration>(
                                std::chrono::duration<double>(options.nvml_timeout_s));
  auto result = call->wait_until(deadline);
  if (result.value) {
    result.value->timeout_s = options.nvml_timeout_s;
    return std::move(*result.value);
  }
  g_stuck_at = result.stuck_at.empty() ? "loading libnvidia-ml" : result.stuck_at;
  return timed_out_facts(options, hung());
}

// The drop-ins systemd applies after gpuwarm's (`later`: those whose file names sort after its; systemd orders
// drop-ins by file name across every folder) or before it, read as they are on disk (64 KiB each). One
// unreadable leaves them all unknown.
Fact<std::map<std::string, std::string>> read_other_dropins(const Paths& paths,
                                                            const Fact<std::vector<std::string>>& drop_in_paths,
                                                            bool later) {
  if (!drop_in_paths.has()) {
    return Fact<std::map<std::string, std::string>>::unknown("drop-ins unread: " + drop_in_paths.missing);
  }
  const std::string_view ours = std::string_view(k_gpuwarm_dropin_path).substr(
      std::string_view(k_gpuwarm_dropin_path).rfind('/') + 1);
  std::map<std::string, std::string> found;
  for (const auto& path : *drop_in_paths) {
    const std::string_view name = std::string_view(path).substr(path.rfind('/') + 1);
    if (path == k_gpuwarm_dropin_path || name == ours || (name > ours) != later) {
      continue;
    }
    auto text = read_file(paths.host(path), 64u << 10);
    if (!text) {
      return Fact<std::map<std::string, std::string>>::unknown(paths.display(text.error().message));
    }
    found.emplace(path, *text);
  }
  return Fact<std::map<std::string, std::string>>::known(std::move(found));
}

}  // namespace

NvmlFacts collect_nvml_with_deadline(const CollectOptions& options) {
  auto started = Clock::now();
  auto call = start_nvml(options);
  return finish_nvml(call, options, started);
}

Snapshot collect_snapshot(const CollectOptions& asked, ServiceManager* services) {
  auto start = std::chrono::steady_clock::now();
  CollectOptions options = asked;
  // As root, a --root tree's libnvidia-ml is loaded only where the caller vouched for the tree: one that may be a
  // container's is left closed and says why, a "cannot tell" (UNK011), not a missing driver (DRV002). Only where
  // there is code to refuse: a tree with none reads as before. A library named with --nvml is a host path, loaded
  // as it always is, unless it lies in the tree.
  if (options.nvml_not_opened.empty()) {
    const nvml::LibrarySearch search{options.nvml_library, options.root, options.root_trusted};
    if (std::string why = nvml::refused_as_root(search, ::geteuid() == 0);
        !why.empty() && !nvml::library_files(search).empty()) {
      options.nvml_not_opened =
          (options.nvml_library.empty() ? "its libnvidia-ml" : "--nvml " + options.nvml_library + ", in the tree,") +
          " would run as root: " + why;
      options.nvml_not_opened_by = k_untrusted_root;
    }
  }
  Paths paths(options.root);
  Snapshot snap;
  snap.gpuwarm_version = GPUWARM_VERSION;
  snap.hostname = host_name();
  snap.collected_at = utc_now_iso8601();
  snap.root = ::geteuid() == 0;

  auto timed = [&snap](const char* stage, auto&& fn) {
    auto t = Clock::now();
    fn();
    snap.stage_ms[stage] = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  };

  // NVML init and the first handle dominate; the OS reads overlap with them.
  auto nvml_started = Clock::now();
  auto nvml_call = start_nvml(options);

  timed("driver", [&] {
    snap.driver = read_driver(paths);
    // Also without the module: GPUs on the bus with no driver, or another driver than NVIDIA's, make a node a
    // GPU node whose driver is missing, not a CPU-only one.
    auto without_driver = read_gpus_without_nvidia_driver(paths);
    snap.driver.unbound_gpus = std::move(without_driver.unbound);
    snap.driver.gpus_on_other_drivers = std::move(without_driver.other_driver);
    if (options.pci_switches) {
      snap.driver.nvswitches = read_nvswitches(paths);
    }
  });
  Result<std::vector<ProcessName>> processes = tl::unexpected(Error{"/proc not listed"});
  timed("daemon", [&] {
    processes = list_processes(paths);  // one walk of /proc, for the schedulers (host) too
    snap.daemon = read_daemon(paths, processes);
    if (!options.fix_inputs) {
      snap.daemon.user_exists = Fact<bool>::unknown("not read by this command (only fix plans from it)");
    } else if (auto passwd = read_file(paths.host("/etc/passwd"), 4u << 20)) {
      // The file, not NSS: a lookup may load code or wait on a directory server. The packages' account is local.
      snap.daemon.user_exists = Fact<bool>::known(passwd->find("\nnvidia-persistenced:") != std::string::npos ||
                                                  passwd->rfind("nvidia-persistenced:", 0) == 0);
    } else {
      snap.daemon.user_exists = Fact<bool>::unknown(paths.display(passwd.error().message));
    }
  });
  timed("kernel_log", [&] { snap.kernel_log = read_kernel_log(paths, options.kernel_log); });

  if (options.use_systemd && services != nullptr) {
    timed("service", [&] {
      snap.service = services->unit_status(snap.service.unit);
      // Under --root the systemd on the bus may not be the tree's (an image built on another host): whether
      // it knows ExecCondition= says nothing of the tree's then (review-s46 M4; the guard goes in).
      if (!paths.is_live() && snap.service.exec_condition.has() && snap.service.manager_version.has()) {
        const auto tree = tree_systemd_version(paths);
        const auto bus = parse_u64(std::string_view(*snap.service.manager_version)
                                       .substr(0, snap.service.manager_version->find_first_not_of("0123456789")));
        if (tree && bus && *bus != *tree) {
          snap.service.exec_condition = Fact<bool>::unknown(fmt::format(
              "the tree's systemd is {}, the one on the bus {}: not asked of the tree's", *tree, *bus));
        }
      }
      // Only on the live tree: a --root tree's /run is another host's (a container's view of its node).
      struct stat booted {};
      if (!paths.is_live()) {
        snap.service.manager_booted = Fact<bool>::known(false);
      } else if (::stat("/run/systemd/system", &booted) == 0) {
        snap.service.manager_booted = Fact<bool>::known(S_ISDIR(booted.st_mode));
      } else if (errno == ENOENT || errno == ENOTDIR) {
        snap.service.manager_booted = Fact<bool>::known(false);
      } else {
        snap.service.manager_booted = Fact<bool>::unknown(std::string("/run/systemd/system: ") + std::strerror(errno));
      }
      // What `fix` plans from, recorded so a fix can be planned from this snapshot anywhere.
      if (!options.fix_inputs) {
        snap.service.unit_text = snap.service.gpuwarm_dropin_text =
            Fact<std::string>::unknown("not read by this command (only fix plans from it)");
        snap.service.later_dropins = snap.service.earlier_dropins =
            Fact<std::map<std::string, std::string>>::unknown("not read by this command (only fix plans from it)");
        return;
      }
      if (!snap.service.reachable) {
        snap.service.unit_text = snap.service.gpuwarm_dropin_text = Fact<std::string>::unknown(snap.service.unreachable);
        snap.service.later_dropins = snap.service.earlier_dropins =
            Fact<std::map<std::string, std::string>>::unknown(snap.service.unreachable);
        return;
      }
      snap.service.later_dropins = read_other_dropins(paths, snap.service.drop_in_paths, /*later=*/true);
      snap.service.earlier_dropins = read_other_dropins(paths, snap.service.drop_in_paths, /*later=*/false);
      if (snap.service.fragment_path.has() && !snap.service.fragment_path->empty()) {
        auto text = read_file(paths.host(*snap.service.fragment_path), 64u << 10);
        snap.service.unit_text = text ? Fact<std::string>::known(*text)
                                      : Fact<std::string>::unknown(paths.display(text.error().message));
      } else {
        snap.service.unit_text = Fact<std::string>::unknown("no unit file (FragmentPath empty or unread)");
      }
      // Absent is a fact; a drop-in that is there but unreadable (too big, not a file, EIO) is not "absent".
      const std::string dropin_path = paths.host(k_gpuwarm_dropin_path);
      struct stat st {};
      if (::lstat(dropin_path.c_str(), &st) != 0 && errno == ENOENT) {
        snap.service.gpuwarm_dropin_exists = false;
        snap.service.gpuwarm_dropin_text = Fact<std::string>::known("");
      } else {
        auto dropin = read_file(dropin_path, 64u << 10);
        snap.service.gpuwarm_dropin_exists = true;
        snap.service.gpuwarm_dropin_text = dropin ? Fact<std::string>::known(*dropin)
                                                  : Fact<std::string>::unknown(paths.display(dropin.error().message));
      }
    });
  } else {
    snap.service.unreachable = options.systemd_not_asked;
    snap.service.not_asked = true;
    mark_unit_unknown(snap.service, snap.service.unreachable);
  }

  // Before anyone counts clients: a process set apart here holds GPUs as a client, not as the daemon.
  set_apart_daemons_outside_the_unit(snap.daemon, snap.service);

  timed("host", [&] {
    snap.host.chassis_type = read_chassis_type(paths);
    snap.host.schedulers = find_schedulers(paths, processes);
  });

  snap.nvml = finish_nvml(nvml_call, options, nvml_started);
  snap.stage_ms["nvml"] = std::chrono::duration<double, std::milli>(Clock::now() - nvml_started).count();

  // Who else keeps GPUs initialized matters only where persistence is off:
  // then it masks the problem. Scanning every process's fds costs, so only then.
  bool any_disabled = false;
  for (const auto& gpu : snap.nvml.gpus) {
    any_disabled = any_disabled || gpu.persistence.is(false);
  }
  if (any_disabled || options.scan_clients) {
    timed("gpu_clients", [&] {
      std::vector<int> skip;
      if (auto self = own_pid(paths)) {
        skip.push_back(*self);  // NVML stays open to a one-shot command's exit: gpuwarm holds GPUs too
      }
      for (const auto& p : snap.daemon.processes) {
        skip.push_back(p.pid);
      }
      ClientScan scan = scan_gpu_clients(paths, skip);
      snap.host.gpu_clients = scan.unlisted.empty()
                                  ? Fact<std::vector<GpuClient>>::known(std::move(scan.clients))
                                  : Fact<std::vector<GpuClient>>::unknown("processes not listed: " + scan.unlisted);
      snap.host.unreadable_processes = scan.unreadable;
    });
    if (snap.host.unreadable_processes > 0) {
      snap.needs_root.push_back(std::to_string(snap.host.unreadable_processes) +
                                " processes' open files: which other clients keep GPUs initialized not fully checked");
    }
  } else {
    snap.host.gpu_clients =
        Fact<std::vector<GpuClient>>::unknown(k_clients_not_scanned);
  }

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
