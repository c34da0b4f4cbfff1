#include <algorithm>
#include <filesystem>
#include <functional>

#include <gtest/gtest.h>

#include "core/paths.h"
#include "sysfs/driver.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

TEST(Driver, ParseProcVersionLine) {
  struct Case {
    const char* line;
    const char* want;
  };
  const Case cases[] = {
      {"NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.216.03  Thu Apr  3 01:14:19 UTC 2025", "535.216.03"},
      {"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  ",
       "580.159.04"},
      {"NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  575.64  Release Build", "575.64"},
      {"NVRM version: NVIDIA UNIX Kernel Module for aarch64  34.1.1  Release Build", "34.1.1"},
      {"NVRM version: garbage", ""},
      {"", ""},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(parse_proc_driver_version(c.line), c.want) << c.line;
  }
}

TEST(Driver, ParseGpuInformation) {
  // As recorded on the H100 (tabs and spaces mixed).
  const std::string text =
      "Model: \t\t NVIDIA H100 80GB HBM3\nIRQ:   \t\t 41\nGPU UUID: \t GPU-849146b1-26e4-dd76-ea92-453ddc16abcc\n"
      "Video BIOS: \t 96.00.da.00.0c\nBus Type: \t PCIe\nDevice Minor: \t 0\nGPU Excluded:\t No\n";
  KernelGpu gpu = parse_gpu_information("0000:00:06.0", text);
  EXPECT_EQ(gpu.model, "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(gpu.uuid, "GPU-849146b1-26e4-dd76-ea92-453ddc16abcc");
  EXPECT_TRUE(gpu.minor.is(0));
  EXPECT_FALSE(gpu.excluded);

  KernelGpu junk = parse_gpu_information("0000:01:00.0", "Device Minor: \xff\xfe\nGPU Excluded: Yes\n\x01\x02");
  EXPECT_FALSE(junk.minor.has());
  EXPECT_NE(junk.minor.missing.find("unparsable"), std::string::npos);
  EXPECT_TRUE(junk.excluded);
}

TEST(Driver, ReadsAFakeRoot) {
  test::TempTree t;
  t.write("proc/driver/nvidia/version",
          "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \n"
          "GCC version:  gcc version 15.3.0 (GCC)\n");
  t.write("sys/module/nvidia/version", "580.159.04\n");
  t.write("proc/driver/nvidia/gpus/0000:00:06.0/information", "Model: \t H100\nDevice Minor: \t 0\n");
  t.mkdir("dev/nvidia-caps");
  t.write("dev/nvidia0", "");  // a plain file in a fake root: present, not a char device
  t.write("dev/null", "");
  DriverFacts d = read_driver(Paths(t.root()));
  EXPECT_TRUE(d.module_loaded);
  EXPECT_TRUE(d.kernel_version.is("580.159.04"));
  EXPECT_TRUE(d.sys_module_version.is("580.159.04"));
  EXPECT_TRUE(d.open_kernel_module.is(true));
  ASSERT_EQ(d.kernel_gpus.size(), 1u);
  EXPECT_EQ(d.kernel_gpus[0].bus_id, "0000:00:06.0");
  ASSERT_EQ(d.device_nodes.size(), 1u);  // nvidia-caps is a directory, null is not ours
  EXPECT_EQ(d.device_nodes[0].path, "/dev/nvidia0");
  EXPECT_FALSE(d.device_nodes[0].char_device);
  EXPECT_EQ(d.kernel_gpus_unread, "");
}

// The driver's GPU list that cannot be listed is unread, not empty: NVML's count has nothing to be checked against.
TEST(Driver, AnUnlistableGpuListIsUnreadNotEmpty) {
  test::TempTree t;
  t.write("proc/driver/nvidia/version", "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04\n");
  t.write("proc/driver/nvidia/gpus", "");  // not a folder
  DriverFacts d = read_driver(Paths(t.root()));
  EXPECT_TRUE(d.module_loaded);
  EXPECT_TRUE(d.kernel_gpus.empty());
  EXPECT_NE(d.kernel_gpus_unread.find("/proc/driver/nvidia/gpus"), std::string::npos) << d.kernel_gpus_unread;
  EXPECT_EQ(d.kernel_gpus_unread.find(t.root()), std::string::npos) << d.kernel_gpus_unread;
}

TEST(Driver, NoDriverIsAStateNotAnError) {
  test::TempTree t;
  t.mkdir("proc");
  DriverFacts d = read_driver(Paths(t.root()));
  EXPECT_FALSE(d.module_loaded);
  EXPECT_FALSE(d.kernel_version.has());
  // The reason names the host path, not the test's temporary root.
  EXPECT_EQ(d.kernel_version.missing.find(t.root()), std::string::npos) << d.kernel_version.missing;
  EXPECT_NE(d.kernel_version.missing.find("/proc/driver/nvidia/version"), std::string::npos);
  EXPECT_TRUE(d.kernel_gpus.empty());
}

TEST(Driver, MalformedVersionFile) {
  test::TempTree t;
  const char junk[] = "\x00\x01\xff garbage without a version\n";
  t.write("proc/driver/nvidia/version", std::string(junk, sizeof junk - 1));
  DriverFacts d = read_driver(Paths(t.root()));
  EXPECT_TRUE(d.module_loaded);
  EXPECT_FALSE(d.kernel_version.has());
  EXPECT_TRUE(d.proc_version_line.has());
}

TEST(Driver, NvSwitchesByPciClass) {
  struct Device {
    const char* address;
    const char* vendor;     // nullptr: a directory named vendor (unreadable as a file, even by root); "gone":
                            // removed while the bus was listed (only its link left)
    const char* pci_class;  // nullptr: no class file
  };
  struct Case {
    const char* what;
    std::vector<Device> devices;
    bool known;
    std::vector<std::string> switches;
  };
  const std::vector<Case> cases = {
      {"GPUs and a NIC only", {{"0000:17:00.0", "0x10de", "0x030200"}, {"0000:18:00.0", "0x15b3", "0x020700"}}, true, {}},
      {"HGX: GPUs and NVSwitches",
       {{"0000:17:00.0", "0x10de", "0x030200"}, {"0000:05:00.0", "0x10de", "0x068000"},
        {"0000:06:00.0", "0x10de", "0x068000"}},
       true,
       {"0000:05:00.0", "0000:06:00.0"}},
      {"another vendor's bridge is not a switch", {{"0000:00:1f.0", "0x8086", "0x068000"}}, true, {}},
      {"an NVIDIA audio function is not a switch", {{"0000:17:00.1", "0x10de", "0x040300"}}, true, {}},
      {"an NVIDIA device whose class cannot be read: cannot tell", {{"0000:05:00.0", "0x10de", nullptr}}, false, {}},
      {"a device whose vendor cannot be read may be a switch: cannot tell",
       {{"0000:17:00.0", "0x10de", "0x030200"}, {"0000:05:00.0", nullptr, "0x068000"}}, false, {}},
      {"a device removed during the walk is no switch", {{"0000:17:00.0", "0x10de", "0x030200"}, {"0000:05:00.0", "gone", nullptr}},
       true, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    test::TempTree t;
    t.mkdir("sys/bus/pci/devices");
    for (const auto& d : c.devices) {
      // As on a real host: the bus directory holds links into /sys/devices.
      std::string real = std::string("sys/devices/pci0000:00/") + d.address;
      if (d.vendor != nullptr && std::string_view(d.vendor) == "gone") {
        // nothing behind the link
      } else if (d.vendor != nullptr) {
        t.write(real + "/vendor", std::string(d.vendor) + "\n");
      } else {
        t.mkdir(real + "/vendor");
      }
      if (d.pci_class != nullptr) {
        t.write(real + "/class", std::string(d.pci_class) + "\n");
      }
      t.symlink(std::string("../../../devices/pci0000:00/") + d.address, std::string("sys/bus/pci/devices/") + d.address);
    }
    auto found = read_nvswitches(Paths(t.root()));
    ASSERT_EQ(found.has(), c.known) << found.missing;
    if (!c.known) {
      EXPECT_NE(found.missing.find("0000:05:00.0"), std::string::npos) << found.missing;  // names the device
    }
    if (c.known) {
      auto sorted = *found;
      std::sort(sorted.begin(), sorted.end());
      EXPECT_EQ(sorted, c.switches);
    }
  }
  test::TempTree none;  // no /sys/bus/pci at all (a container without sysfs): unknown, with the host path
  auto found = read_nvswitches(Paths(none.root()));
  EXPECT_FALSE(found.has());
  EXPECT_NE(found.missing.find("/sys/bus/pci/devices"), std::string::npos) << found.missing;
}

// /proc/bus/pci/devices as the kernel writes it: bus<<8|devfn, vendor<<16|device, irq, 7 bases, 7 sizes, then
// a tab and the driver's name, empty when none is bound (every line has 18 fields).
std::string pci_line(const char* bdf, const char* ids, const char* driver) {
  std::string line = std::string(bdf) + "\t" + ids + "\t0";
  for (int i = 0; i < 14; ++i) line += "\t               0";
  return line + "\t" + (driver != nullptr ? driver : "") + "\n";
}

TEST(Driver, NvidiaFunctionsFromProcBusPci) {
  std::string text = pci_line("3b00", "10de2330", "nvidia") + pci_line("3b01", "10de22a3", nullptr) +
                     pci_line("5e00", "10de2330", nullptr) + pci_line("0008", "1af41045", nullptr) +
                     pci_line("af00", "10de2330", "vfio-pci") + pci_line("d800", "10de2330", "nouveau") +
                     "garbage\tline\n";
  EXPECT_EQ(parse_nvidia_pci_functions(text),
            (std::vector<NvidiaPciFunction>{{"3b:00.0", "nvidia"},
                                            {"3b:00.1", ""},
                                            {"5e:00.0", ""},
                                            {"af:00.0", "vfio-pci"},
                                            {"d8:00.0", "nouveau"}}));
  // A line as this machine's kernel wrote it (a virtio device, unbound): 18 fields, the last empty.
  EXPECT_EQ(parse_nvidia_pci_functions("0008\t10de1045\t0\t      4000000004\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0"
                                       "\t0\t0\t0\t\n"),
            (std::vector<NvidiaPciFunction>{{"00:01.0", ""}}));
  // An older kernel wrote no driver field at all: 17 fields, nothing bound.
  EXPECT_EQ(parse_nvidia_pci_functions("5e00\t10de2330\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\t0\n"),
            (std::vector<NvidiaPciFunction>{{"5e:00.0", ""}}));
}

// A PCI function as sysfs shows it: the device's folder, the link to it from /sys/bus/pci/devices, and where
// `driver` is named, a link to the driver's folder with its `module` link ("" for a built-in driver).
void pci_device(const test::TempTree& t, const std::string& address, const char* vendor, const char* pci_class,
                const char* driver = nullptr, const char* module = "") {
  std::string real = "sys/devices/pci" + address.substr(0, 4) + ":00/" + address;
  t.write(real + "/vendor", std::string(vendor) + "\n");
  t.write(real + "/class", std::string(pci_class) + "\n");
  if (driver != nullptr) {
    t.symlink(std::string("../../../bus/pci/drivers/") + driver, real + "/driver");
    t.mkdir(std::string("sys/bus/pci/drivers/") + driver);
    if (*module != '\0' && !std::filesystem::is_symlink(t.path(std::string("sys/bus/pci/drivers/") + driver + "/module"))) {
      t.symlink(std::string("../../../../module/") + module, std::string("sys/bus/pci/drivers/") + driver + "/module");
    }
  }
  t.symlink("../../../" + real.substr(4), "sys/bus/pci/devices/" + address);
}

// A GPU the loaded driver failed to probe is on the bus with no driver: unbound. One nouveau or nova-core took
// is listed with its driver and module. Neither list has the unbound audio function (not a GPU), the GPU bound
// to nvidia, the one passed to vfio-pci, nor the one the PCI list read as unbound that vfio-pci took since.
TEST(Driver, GpusTheNvidiaDriverDoesNotDrive) {
  test::TempTree t;
  t.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "nvidia") + pci_line("5e00", "10de2330", nullptr) +
                                      pci_line("5e01", "10de22e8", nullptr) + pci_line("af00", "10de2330", "vfio-pci") +
                                      pci_line("d800", "10de2330", "nouveau") + pci_line("e100", "10de2335", "NovaCore") +
                                      pci_line("e200", "10de2335", nullptr));
  pci_device(t, "0000:3b:00.0", "0x10de", "0x030200", "nvidia", "nvidia");
  pci_device(t, "0000:5e:00.0", "0x10de", "0x030200");
  pci_device(t, "0000:5e:00.1", "0x10de", "0x040300");
  pci_device(t, "0000:af:00.0", "0x10de", "0x030200", "vfio-pci", "vfio_pci");
  pci_device(t, "0000:d8:00.0", "0x10de", "0x030200", "nouveau", "nouveau");
  pci_device(t, "0000:e1:00.0", "0x10de", "0x030200", "NovaCore", "nova_core");
  pci_device(t, "0000:e2:00.0", "0x10de", "0x030200", "vfio-pci", "vfio_pci");
  auto found = read_gpus_without_nvidia_driver(Paths(t.root()));
  ASSERT_TRUE(found.unbound.has()) << found.unbound.missing;
  ASSERT_TRUE(found.other_driver.has()) << found.other_driver.missing;
  EXPECT_EQ(*found.unbound, (std::vector<std::string>{"0000:5e:00.0"}));
  EXPECT_EQ(*found.other_driver, (std::vector<PciGpu>{{"0000:d8:00.0", "nouveau", "nouveau"},
                                                      {"0000:e1:00.0", "NovaCore", "nova_core"}}));
}

// /proc/bus/pci/devices names no PCI domain: the same address in two domains is two lines, told apart in sysfs.
TEST(Driver, GpusInTwoPciDomainsAtOneAddress) {
  test::TempTree t;
  t.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "nvidia") + pci_line("3b00", "10de2330", nullptr) +
                                      pci_line("3c00", "10de2330", nullptr));
  pci_device(t, "0000:3b:00.0", "0x10de", "0x030200", "nvidia", "nvidia");
  pci_device(t, "0001:3b:00.0", "0x10de", "0x030200");
  pci_device(t, "0000:3c:00.0", "0x8086", "0x060400");  // another vendor's bridge in domain 0...
  pci_device(t, "0001:3c:00.0", "0x10de", "0x030200", "nouveau", "nouveau");  // ...and the GPU in domain 1
  auto found = read_gpus_without_nvidia_driver(Paths(t.root()));
  ASSERT_TRUE(found.unbound.has()) << found.unbound.missing;
  EXPECT_EQ(*found.unbound, (std::vector<std::string>{"0001:3b:00.0"}));
  EXPECT_EQ(*found.other_driver, (std::vector<PciGpu>{{"0001:3c:00.0", "nouveau", "nouveau"}}));

  // The list names two NVIDIA functions at 3b:00.0 but sysfs shows only the one nvidia took: the other is
  // unread, not "none".
  test::TempTree one_shown;
  one_shown.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "nvidia") + pci_line("3b00", "10de2330", nullptr));
  pci_device(one_shown, "0000:3b:00.0", "0x10de", "0x030200", "nvidia", "nvidia");
  auto unread = read_gpus_without_nvidia_driver(Paths(one_shown.root()));
  EXPECT_FALSE(unread.unbound.has());
  EXPECT_NE(unread.unbound.missing.find("lists 2 NVIDIA function(s) at 3b:00.0"), std::string::npos)
      << unread.unbound.missing;
}

// Xen's pciback passes a GPU to a guest like vfio-pci does: not lost. A driver built into the kernel has no
// module link. The functions beside a GPU bound to their own drivers need no sysfs at all.
TEST(Driver, PassthroughBuiltInAndCompanionFunctions) {
  test::TempTree t;
  t.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "pciback") + pci_line("5e00", "10de2330", "NovaCore"));
  pci_device(t, "0000:3b:00.0", "0x10de", "0x030200", "pciback", "xen_pciback");
  pci_device(t, "0000:5e:00.0", "0x10de", "0x030200", "NovaCore");
  auto found = read_gpus_without_nvidia_driver(Paths(t.root()));
  ASSERT_TRUE(found.unbound.has()) << found.unbound.missing;
  EXPECT_TRUE(found.unbound->empty());
  EXPECT_EQ(*found.other_driver, (std::vector<PciGpu>{{"0000:5e:00.0", "NovaCore", ""}}));

  test::TempTree companions;  // no /sys at all: nothing there needed reading
  companions.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "nvidia") +
                                               pci_line("3b01", "10de22e8", "snd_hda_intel") +
                                               pci_line("c000", "10de22a3", "nvidia-nvswitch"));
  auto none = read_gpus_without_nvidia_driver(Paths(companions.root()));
  ASSERT_TRUE(none.unbound.has() && none.other_driver.has()) << none.unbound.missing;
  EXPECT_TRUE(none.unbound->empty() && none.other_driver->empty());
}

// Whatever could not be looked at makes both lists unknown, never "none".
TEST(Driver, GpusWithoutNvidiaDriverUnreadAreUnknown) {
  struct Case {
    const char* name;
    std::function<void(const test::TempTree&)> make;
    const char* reason;  // a part of the reason given
  };
  const std::vector<Case> cases = {
      {"no /proc/bus/pci (a container without the host's /proc)", [](const test::TempTree&) {},
       "/proc/bus/pci/devices"},
      {"a GPU the PCI list names that sysfs does not show",
       [](const test::TempTree& t) {
         t.write("proc/bus/pci/devices", pci_line("5e00", "10de2330", "nouveau"));
         t.mkdir("sys/bus/pci/devices");
       },
       "lists 1 NVIDIA function(s) at 5e:00.0, /sys/bus/pci/devices shows 0"},
      {"a `module` entry that is not a link",
       [](const test::TempTree& t) {
         t.write("proc/bus/pci/devices", pci_line("5e00", "10de2330", "nouveau"));
         pci_device(t, "0000:5e:00.0", "0x10de", "0x030200", "nouveau");
         t.write("sys/bus/pci/drivers/nouveau/module", "");
       },
       "module: not a symbolic link"},
      {"no /sys/bus/pci/devices",
       [](const test::TempTree& t) { t.write("proc/bus/pci/devices", pci_line("5e00", "10de2330", nullptr)); },
       "/sys/bus/pci/devices"},
      {"a GPU's class unreadable",
       [](const test::TempTree& t) {
         t.write("proc/bus/pci/devices", pci_line("5e00", "10de2330", nullptr));
         pci_device(t, "0000:5e:00.0", "0x10de", "0x030200");
         std::filesystem::remove(t.path("sys/devices/pci0000:00/0000:5e:00.0/class"));
       },
       "class"},
      {"a `driver` entry that is not a link",
       [](const test::TempTree& t) {
         t.write("proc/bus/pci/devices", pci_line("5e00", "10de2330", nullptr));
         pci_device(t, "0000:5e:00.0", "0x10de", "0x030200");
         t.write("sys/devices/pci0000:00/0000:5e:00.0/driver", "");
       },
       "not a symbolic link"},
  };
  for (const auto& c : cases) {
    test::TempTree t;
    c.make(t);
    auto found = read_gpus_without_nvidia_driver(Paths(t.root()));
    EXPECT_FALSE(found.unbound.has()) << c.name;
    EXPECT_FALSE(found.other_driver.has()) << c.name;
    EXPECT_NE(found.unbound.missing.find(c.reason), std::string::npos) << c.name << ": " << found.unbound.missing;
  }
  // And where every NVIDIA function is bound to nvidia, sysfs is not needed: known, none.
  test::TempTree bound;
  bound.write("proc/bus/pci/devices", pci_line("3b00", "10de2330", "nvidia"));
  auto none = read_gpus_without_nvidia_driver(Paths(bound.root()));
  ASSERT_TRUE(none.unbound.has() && none.other_driver.has());
  EXPECT_TRUE(none.unbound->empty() && none.other_driver->empty());
}

}  // namespace
}  // namespace gpuwarm
