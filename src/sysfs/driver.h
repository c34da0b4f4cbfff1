#pragma once
// Kernel-side driver facts from /proc/driver/nvidia, /sys/module and /dev.
// These work with no NVML at all, which is what tells "driver not loaded"
// apart from "user space broken".

#include <string>

#include "core/paths.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

DriverFacts read_driver(const Paths& paths);

// NVSwitches by PCI class (see DriverFacts::nvswitches). Unknown when the PCI devices cannot be listed, or
// an NVIDIA device's class cannot be read.
Fact<std::vector<std::string>> read_nvswitches(const Paths& paths);

// The version in a /proc/driver/nvidia/version first line: the first version
// token after "Module" ("... Kernel Module  580.159.04  Release Build ...").
// Empty when the line has none.
std::string parse_proc_driver_version(const std::string& first_line);

// The "Runtime D3 status" value of a /proc/driver/nvidia/gpus/<bus>/power file.
Fact<std::string> parse_runtime_d3(const std::string& power_text);

// Parses one /proc/driver/nvidia/gpus/<bus>/information file.
KernelGpu parse_gpu_information(const std::string& bus_id, const std::string& text);

}  // namespace gpuwarm
