#pragma once
// Kernel-side driver facts from /proc/driver/nvidia, /sys/module and /dev.
// These work with no NVML at all, which is what tells "driver not loaded"
// apart from "user space broken".

#include <string>
#include <string_view>
#include <vector>

#include "core/paths.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

DriverFacts read_driver(const Paths& paths);

// NVSwitches by PCI class (see DriverFacts::nvswitches). Unknown when the PCI devices cannot be listed, or
// an NVIDIA device's class cannot be read.
Fact<std::vector<std::string>> read_nvswitches(const Paths& paths);

// NVIDIA GPUs the NVIDIA driver does not drive (see DriverFacts::unbound_gpus and gpus_on_other_drivers), from
// /proc/bus/pci/devices (one read: vendor, device and bound driver of every PCI function), then the class and
// driver link in /sys/bus/pci of only the candidates. Both unknown when anything on the way cannot be read:
// never "none" for a GPU that could not be looked at.
struct GpusWithoutNvidiaDriver {
  Fact<std::vector<std::string>> unbound;
  Fact<std::vector<PciGpu>> other_driver;
};
GpusWithoutNvidiaDriver read_gpus_without_nvidia_driver(const Paths& paths);

// An NVIDIA function (vendor 0x10de) of /proc/bus/pci/devices: "bb:dd.f" (bus, device, function; the file names
// no PCI domain) and the name of the driver bound to it, "" for none.
struct NvidiaPciFunction {
  std::string function;
  std::string driver;
  bool operator==(const NvidiaPciFunction&) const = default;
};
std::vector<NvidiaPciFunction> parse_nvidia_pci_functions(std::string_view proc_bus_pci_devices);

// The version in a /proc/driver/nvidia/version first line: the first version
// token after "Module" ("... Kernel Module  580.159.04  Release Build ...").
// Empty when the line has none.
std::string parse_proc_driver_version(const std::string& first_line);

// The "Runtime D3 status" value of a /proc/driver/nvidia/gpus/<bus>/power file.
Fact<std::string> parse_runtime_d3(const std::string& power_text);

// Parses one /proc/driver/nvidia/gpus/<bus>/information file.
KernelGpu parse_gpu_information(const std::string& bus_id, const std::string& text);

}  // namespace gpuwarm
