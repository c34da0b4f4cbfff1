#pragma once
// A healthy two-GPU node as a Snapshot: the daemon runs under systemd, holds
// both GPUs, versions agree. Rule tests start here and break one thing.

#include "snapshot/snapshot.h"

namespace gpuwarm::test {

inline GpuFacts healthy_gpu(unsigned index) {
  GpuFacts g;
  g.index = index;
  g.name = Fact<std::string>::known("NVIDIA H100 80GB HBM3");
  g.uuid = Fact<std::string>::known("GPU-00000000-0000-0000-0000-00000000000" + std::to_string(index));
  g.pci_bus_id = Fact<std::string>::known("00000000:0" + std::to_string(index + 6) + ":00.0");
  g.minor = Fact<unsigned>::known(index);
  g.persistence = Fact<bool>::known(true);
  g.pstate = Fact<unsigned>::known(0);
  g.clocks = {Fact<unsigned>::known(1980), Fact<unsigned>::known(1980), Fact<unsigned>::known(2619)};
  g.max_clocks = g.clocks;
  g.app_clocks = g.clocks;
  g.default_app_clocks = g.clocks;
  g.event_reasons_active = Fact<std::uint64_t>::known(0x1);
  g.event_reasons_supported = Fact<std::uint64_t>::known(0x1ff);
  g.temperature_c = Fact<int>::known(35);
  g.power_mw = Fact<unsigned>::known(70000);
  g.power_limit_mw = Fact<unsigned>::known(700000);
  g.requested_power_limit_mw = g.default_power_limit_mw = g.power_limit_mw;
  g.mig_mode = Fact<unsigned>::known(0);
  g.compute_processes = Fact<unsigned>::known(0);
  g.display_active = Fact<bool>::known(false);
  return g;
}

// A GPU NVML could not open: only the index and the error are known.
inline GpuFacts lost_gpu(unsigned index, const char* error) {
  GpuFacts g;
  g.index = index;
  g.handle_error = error;
  return g;
}

inline Snapshot healthy_snapshot() {
  Snapshot s;
  s.hostname = "node1";
  s.root = true;
  s.driver.module_loaded = true;
  s.driver.kernel_version = Fact<std::string>::known("580.159.04");
  s.driver.sys_module_version = Fact<std::string>::known("580.159.04");
  s.driver.open_kernel_module = Fact<bool>::known(true);
  s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({});  // every NVIDIA GPU on the bus is nvidia's
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({});
  const auto d3 = Fact<std::string>::known("Disabled by default");
  s.driver.kernel_gpus_unread = "";  // listed
  s.driver.kernel_gpus = {{"0000:06:00.0", "NVIDIA H100 80GB HBM3", "GPU-0", Fact<unsigned>::known(0), false, d3},
                          {"0000:07:00.0", "NVIDIA H100 80GB HBM3", "GPU-1", Fact<unsigned>::known(1), false, d3}};
  s.nvml.library_path = Fact<std::string>::known("/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.580.159.04");
  s.nvml.library_file_version = Fact<std::string>::known("580.159.04");
  s.nvml.nvml_version = Fact<std::string>::known("13.580.159.04");
  s.nvml.user_space_version = Fact<std::string>::known("580.159.04");
  s.nvml.init_code = Fact<int>::known(0);
  s.nvml.init_error = "SUCCESS";
  s.nvml.device_count = Fact<unsigned>::known(2);
  s.nvml.gpus = {healthy_gpu(0), healthy_gpu(1)};
  s.daemon.binary = Fact<std::string>::known("/usr/bin/nvidia-persistenced");
  DaemonProcess p;
  p.pid = 1234;
  p.argv = {"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"};
  p.uid = Fact<unsigned>::known(0);
  p.held_minors = Fact<std::vector<unsigned>>::known({0, 1});
  s.daemon.processes = {p};
  s.daemon.runtime_dir = true;
  s.daemon.socket = true;
  s.daemon.pid_file_pid = Fact<int>::known(1234);
  s.kernel_log.source = Fact<std::string>::known("/dev/kmsg");
  s.kernel_log.records = 100;
  s.kernel_log.loaded_version = Fact<std::string>::known("580.159.04");
  s.host.schedulers = Fact<std::vector<std::string>>::known({});
  s.service.reachable = true;
  s.service.load_state = Fact<std::string>::known("loaded");
  s.service.active_state = Fact<std::string>::known("active");
  s.service.sub_state = Fact<std::string>::known("running");
  s.service.unit_file_state = Fact<std::string>::known("enabled");
  s.service.exec_start =
      Fact<std::vector<std::string>>::known({"/usr/bin/nvidia-persistenced", "--user", "nvidia-persistenced"});
  s.service.stop_when_unneeded = Fact<bool>::known(false);
  s.service.restart = Fact<std::string>::known("on-failure");
  s.service.fragment_path = Fact<std::string>::known("/lib/systemd/system/nvidia-persistenced.service");
  s.service.need_daemon_reload = Fact<bool>::known(false);
  s.service.drop_in_paths = Fact<std::vector<std::string>>::known({});
  s.service.wanted_by = Fact<std::vector<std::string>>::known({"multi-user.target"});
  return s;
}

// NVML left closed because, as root, --root named a tree not vouched for (UNK011): what collect leaves then.
inline void nvml_refused_for_untrusted_root(Snapshot& s) {
  s.nvml = NvmlFacts{};
  s.nvml.not_opened = "its libnvidia-ml would run as root: --root /srv/tree may be a container's or an image's tree";
  s.nvml.not_opened_by = k_untrusted_root;
  s.nvml.init_code = Fact<int>::unknown("NVML not opened");
  s.nvml.device_count = Fact<unsigned>::unknown("NVML not opened");
}

}  // namespace gpuwarm::test
