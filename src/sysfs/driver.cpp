#include "sysfs/driver.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <charconv>
#include <map>
#include <set>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/strings.h"

namespace gpuwarm {

std::string parse_proc_driver_version(const std::string& first_line) {
  auto module = first_line.find("Module");
  return find_version_token(first_line, module == std::string::npos ? 0 : module);
}

KernelGpu parse_gpu_information(const std::string& bus_id, const std::string& text) {
  KernelGpu gpu;
  gpu.bus_id = bus_id;
  gpu.minor = Fact<unsigned>::unknown("no Device Minor line");
  for (const auto& line : split_lines(text)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) {
      continue;
    }
    auto key = trim(std::string_view(line).substr(0, colon));
    auto value = trim(std::string_view(line).substr(colon + 1));
    if (key == "Model") {
      gpu.model = printable(value);
    } else if (key == "GPU UUID") {
      gpu.uuid = printable(value);
    } else if (key == "Device Minor") {
      if (auto minor = parse_u64(value); minor && *minor < 1u << 20) {
        gpu.minor = Fact<unsigned>::known(static_cast<unsigned>(*minor));
      } else {
        gpu.minor = Fact<unsigned>::unknown("unparsable Device Minor: " + printable(value));
      }
    } else if (key == "GPU Excluded") {
      gpu.excluded = value == "Yes";
    }
  }
  return gpu;
}

Fact<std::string> parse_runtime_d3(const std::string& power_text) {
  for (const auto& line : split_lines(power_text)) {
    auto colon = line.find(':');
    if (colon != std::string::npos && trim(std::string_view(line).substr(0, colon)) == "Runtime D3 status") {
      return Fact<std::string>::known(printable(trim(std::string_view(line).substr(colon + 1))));
    }
  }
  return Fact<std::string>::unknown("no Runtime D3 status line");
}

DriverFacts read_driver(const Paths& paths) {
  DriverFacts facts;
  const std::string proc_dir = paths.proc("driver/nvidia");
  const std::string sys_dir = paths.sys("module/nvidia");
  facts.module_loaded = path_exists(proc_dir) || path_exists(sys_dir);

  if (auto line = read_first_line(paths.proc("driver/nvidia/version"))) {
    facts.proc_version_line = Fact<std::string>::known(printable(*line));
    std::string version = parse_proc_driver_version(*line);
    facts.kernel_version = version.empty() ? Fact<std::string>::unknown("no version in " + paths.display(paths.proc("driver/nvidia/version")))
                                           : Fact<std::string>::known(version);
    facts.open_kernel_module = Fact<bool>::known(line->find("Open Kernel Module") != std::string::npos);
  } else {
    facts.proc_version_line = facts.kernel_version = Fact<std::string>::unknown(paths.display(line.error().message));
    facts.open_kernel_module = Fact<bool>::unknown("no /proc/driver/nvidia/version");
  }

  if (auto v = read_first_line(paths.sys("module/nvidia/version"))) {
    std::string version = find_version_token(*v);
    facts.sys_module_version = version.empty() ? Fact<std::string>::unknown("unparsable: " + printable(*v))
                                               : Fact<std::string>::known(version);
  } else {
    facts.sys_module_version = Fact<std::string>::unknown(paths.display(v.error().message));
  }

  facts.kernel_gpus_unread.clear();
  if (auto buses = list_dir(paths.proc("driver/nvidia/gpus"))) {
    for (const auto& bus : *buses) {
      auto text = read_file(paths.proc("driver/nvidia/gpus/" + bus + "/information"), 64u << 10);
      facts.kernel_gpus.push_back(parse_gpu_information(bus, text ? *text : std::string{}));
      auto power = read_file(paths.proc("driver/nvidia/gpus/" + bus + "/power"), 64u << 10);
      facts.kernel_gpus.back().runtime_d3 =
          power ? parse_runtime_d3(*power) : Fact<std::string>::unknown(paths.display(power.error().message));
    }
  } else if (path_exists(proc_dir)) {
    facts.kernel_gpus_unread = paths.display(buses.error().message);
  }

  if (auto names = list_dir(paths.dev(""))) {
    for (const auto& name : *names) {
      if (!starts_with(name, "nvidia")) {
        continue;
      }
      std::string path = paths.dev(name);
      struct stat st {};
      if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) {
        continue;  // nvidia-caps is a directory; dangling links say nothing
      }
      facts.device_nodes.push_back({"/dev/" + name, S_ISCHR(st.st_mode), st.st_mode & 07777u});
    }
  }
  return facts;
}

std::vector<NvidiaPciFunction> parse_nvidia_pci_functions(std::string_view text) {
  std::vector<NvidiaPciFunction> out;
  for (std::string_view line : split(text, '\n')) {
    std::vector<std::string_view> fields;
    for (std::string_view f : split(line, '\t')) {
      fields.push_back(f);
    }
    // bus<<8|devfn, vendor<<16|device, irq, 7 base addresses, 7 sizes, then a tab and the driver's name,
    // empty when none is bound (the kernel writes the tab either way; a line without it reads as unbound).
    if ((fields.size() != 17 && fields.size() != 18) || fields[0].size() != 4 || fields[1].size() != 8 ||
        fields[1].substr(0, 4) != "10de") {
      continue;
    }
    unsigned bus_devfn = 0;
    if (std::from_chars(fields[0].data(), fields[0].data() + 4, bus_devfn, 16).ec != std::errc{}) {
      continue;
    }
    out.push_back({fmt::format("{:02x}:{:02x}.{:x}", bus_devfn >> 8, (bus_devfn & 0xffu) >> 3, bus_devfn & 7u),
                   fields.size() == 18 ? std::string(fields[17]) : std::string{}});
  }
  return out;
}

namespace {

template <std::size_t N>
bool is_one_of(std::string_view driver, const std::string_view (&names)[N]) {
  return std::find(std::begin(names), std::end(names), driver) != std::end(names);
}

// Drivers a GPU may be bound to without being lost to the NVIDIA one: its own, and those that hand a GPU to a
// virtual machine on purpose (VFIO, pci-stub, Xen's pciback).
constexpr std::string_view k_nvidia_or_passthrough[] = {"nvidia", "vfio-pci", "pci-stub", "nvgrace-gpu-vfio-pci",
                                                        "pciback"};

// Drivers that never take a display controller: the NVIDIA functions beside a GPU (its audio, USB-C and I2C
// functions, NVSwitches, Grace's root ports) need no look in sysfs.
constexpr std::string_view k_never_a_gpu_driver[] = {"snd_hda_intel", "xhci_hcd", "nvidia-gpu", "nvidia-nvswitch",
                                                     "pcieport"};

// The name of the target of a symbolic link: ENOENT gives "" (no link there), anything else an error.
Result<std::string> link_name_if_any(const Paths& paths, const std::string& link) {
  struct stat st {};
  if (::lstat(link.c_str(), &st) != 0) {
    const int err = errno;
    return err == ENOENT ? Result<std::string>(std::string{})
                         : fail(paths.display(link) + ": " + std::strerror(err));
  }
  if (!S_ISLNK(st.st_mode)) {
    return fail(paths.display(link) + ": not a symbolic link");
  }
  auto target = read_link(link);
  if (!target) {
    return fail(paths.display(target.error().message));
  }
  return std::string(last_path_component(*target));
}

}  // namespace

GpusWithoutNvidiaDriver read_gpus_without_nvidia_driver(const Paths& paths) {
  auto unknown = [](const std::string& why) {
    return GpusWithoutNvidiaDriver{Fact<std::vector<std::string>>::unknown(why),
                                   Fact<std::vector<PciGpu>>::unknown(why)};
  };
  auto text = read_file(paths.proc("bus/pci/devices"), 1u << 20);
  if (!text) {
    return unknown(paths.display(text.error().message));
  }
  // The file names every function's driver in one read: only the addresses of functions that may be a GPU
  // the NVIDIA driver does not hold are looked up in sysfs. It names no PCI domain, so an address may stand
  // for several functions: how many NVIDIA ones it lists there is what sysfs must show.
  std::map<std::string, std::size_t> listed;
  std::set<std::string> candidates;
  for (const auto& function : parse_nvidia_pci_functions(*text)) {
    ++listed[function.function];
    if (!is_one_of(function.driver, k_nvidia_or_passthrough) && !is_one_of(function.driver, k_never_a_gpu_driver)) {
      candidates.insert(function.function);
    }
  }
  std::vector<std::string> unbound;
  std::vector<PciGpu> other_driver;
  if (candidates.empty()) {
    return {Fact<std::vector<std::string>>::known({}), Fact<std::vector<PciGpu>>::known({})};
  }
  auto devices = list_dir(paths.sys("bus/pci/devices"));
  if (!devices) {
    return unknown(paths.display(devices.error().message));
  }
  std::map<std::string, std::size_t> shown;
  for (const auto& dev : *devices) {  // "0000:3b:00.0": the domain, then what /proc/bus/pci names
    auto colon = dev.find(':');
    if (colon == std::string::npos || candidates.count(dev.substr(colon + 1)) == 0) {
      continue;
    }
    const std::string dir = "bus/pci/devices/" + dev;
    auto vendor = read_first_line(paths.sys(dir + "/vendor"));
    auto pci_class = read_first_line(paths.sys(dir + "/class"));
    if (!vendor || !pci_class) {
      return unknown("NVIDIA PCI device " + printable(dev) + ": " +
                     paths.display((!vendor ? vendor : pci_class).error().message));
    }
    if (trim(*vendor) != "0x10de") {
      continue;  // another vendor's device at the same address in another domain
    }
    ++shown[dev.substr(colon + 1)];
    if (!starts_with(trim(*pci_class), "0x03")) {
      continue;  // the GPU's audio or USB function, an NVSwitch
    }
    // The driver as sysfs has it now, since the PCI list was read: a link to the driver's folder, or none.
    auto driver = link_name_if_any(paths, paths.sys(dir + "/driver"));
    if (!driver) {
      return unknown(driver.error().message);
    }
    if (driver->empty()) {
      unbound.push_back(printable(dev));
      continue;
    }
    if (is_one_of(*driver, k_nvidia_or_passthrough)) {
      continue;
    }
    auto module = link_name_if_any(paths, paths.sys(dir + "/driver/module"));  // none: built into the kernel
    if (!module) {
      return unknown(module.error().message);
    }
    other_driver.push_back({printable(dev), printable(*driver), printable(*module)});
  }
  // A function the PCI list names that sysfs does not show could be a GPU: unread, never "none".
  for (const auto& address : candidates) {
    if (shown[address] < listed[address]) {
      return unknown(fmt::format("{} lists {} NVIDIA function(s) at {}, {} shows {}",
                                 paths.display(paths.proc("bus/pci/devices")), listed[address], printable(address),
                                 paths.display(paths.sys("bus/pci/devices")), shown[address]));
    }
  }
  return {Fact<std::vector<std::string>>::known(std::move(unbound)),
          Fact<std::vector<PciGpu>>::known(std::move(other_driver))};
}

Fact<std::vector<std::string>> read_nvswitches(const Paths& paths) {
  // NVIDIA's own tools tell an NVSwitch (A100 0x1af1, H100 0x22a3, ...) from a GPU by this class; a new
  // switch has a new device ID, so the class is what is checked.
  constexpr std::string_view nvidia_vendor = "0x10de";
  constexpr std::string_view bridge_other = "0x0680";
  auto devices = list_dir(paths.sys("bus/pci/devices"));
  if (!devices) {
    return Fact<std::vector<std::string>>::unknown(paths.display(devices.error().message));
  }
  std::vector<std::string> found;
  for (const auto& dev : *devices) {
    // An unread vendor is not "another vendor's": the device may be a switch, and reset must then refuse.
    auto vendor = read_first_line(paths.sys("bus/pci/devices/" + dev + "/vendor"));
    struct stat device {};
    if (!vendor && ::stat(paths.sys("bus/pci/devices/" + dev).c_str(), &device) != 0 && errno == ENOENT) {
      continue;  // removed while the bus was listed (hot-unplug; its link then leads nowhere): nothing to reset
    }
    if (!vendor) {
      return Fact<std::vector<std::string>>::unknown("PCI device " + printable(dev) + ": " +
                                                     paths.display(vendor.error().message));
    }
    if (trim(*vendor) != nvidia_vendor) {
      continue;
    }
    auto pci_class = read_first_line(paths.sys("bus/pci/devices/" + dev + "/class"));
    if (!pci_class) {
      return Fact<std::vector<std::string>>::unknown("NVIDIA PCI device " + printable(dev) + ": " +
                                                     paths.display(pci_class.error().message));
    }
    if (starts_with(trim(*pci_class), bridge_other)) {
      found.push_back(printable(dev));
    }
  }
  return Fact<std::vector<std::string>>::known(std::move(found));
}

}  // namespace gpuwarm
