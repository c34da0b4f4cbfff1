#include <algorithm>

#include "rule_case.h"
#include "rules/helpers.h"

namespace gpuwarm::test {
namespace {

// The finding of `rule_id` in a diagnosis; an empty one (rule_id "") when it did not fire.
Finding finding_of(const Diagnosis& d, const std::string& rule_id) {
  for (const auto& f : d.findings) {
    if (f.rule_id == rule_id) return f;
  }
  return Finding{};
}

TEST(Rules, DRV001_driver_not_loaded) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"module absent", [](Snapshot& s) { s.driver.module_loaded = false; }, {{k_node}}},
      {"NVML says DRIVER_NOT_LOADED", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(9); }, {{k_node}}},
      {"no module and no NVML library",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded: libnvidia-ml.so.1: cannot open");
       },
       {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("DRV001", c);
}

// A GPU node whose module is missing (DKMS did not build it for a new kernel) says so, with the GPUs as
// evidence; with none on the bus it is the plain "no driver" of a CPU-only machine.
TEST(Rules, DRV001_names_the_gpus_left_without_a_driver) {
  auto finding = [](std::vector<std::string> unbound) {
    Snapshot s = healthy_snapshot();
    s.driver.module_loaded = false;
    s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED, as NVML answers without the module
    s.driver.unbound_gpus = Fact<std::vector<std::string>>::known(std::move(unbound));
    return finding_of(diagnose(s), "DRV001");
  };
  Finding gpu_node = finding({"0000:3b:00.0", "0000:5e:00.0"});
  EXPECT_EQ(gpu_node.message, "No NVIDIA driver is present on a GPU node: 2 NVIDIA GPU(s) on the PCI bus and the "
                              "nvidia kernel module is not loaded");
  EXPECT_EQ(gpu_node.evidence.at(1), "PCI 0000:3b:00.0: NVIDIA display/3D controller, no driver bound");
  EXPECT_EQ(gpu_node.evidence.at(2), "PCI 0000:5e:00.0: NVIDIA display/3D controller, no driver bound");
  EXPECT_EQ(gpu_node.next_step.find("nouveau"), std::string::npos);
  EXPECT_EQ(finding({}).message, "No NVIDIA driver is present: the nvidia kernel module is not loaded");
}

// NVML answers while this view shows no module (a pod without the host's /proc and /sys): cannot tell, never
// "no driver".
TEST(Rules, DRV001_a_module_nvml_reaches_but_this_view_cannot_see) {
  Snapshot s = healthy_snapshot();
  s.driver.module_loaded = false;
  s.driver.kernel_gpus.clear();
  const Diagnosis d = diagnose(s);
  Finding f = finding_of(d, "DRV001");
  EXPECT_EQ(f.route, Route::unknown);
  EXPECT_NE(f.message.find("NVML answers, but the nvidia kernel module is not visible here"), std::string::npos)
      << f.message;
  EXPECT_EQ(d.verdict.route, Route::unknown) << d.verdict.rule_id;
}

// `check --skip-without-gpu`: only a node whose PCI bus was read and shows no NVIDIA GPU needing the module.
TEST(Rules, NotAGpuNodeNeedsTheWholePciBusRead) {
  struct Case {
    const char* name;
    std::function<void(Snapshot&)> mutate;
    bool not_a_gpu_node;
  };
  auto cpu_node = [](Snapshot& s) {
    s.driver.module_loaded = false;
    s.driver.kernel_gpus.clear();
    s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED
    s.nvml.device_count = Fact<unsigned>::unknown("not read: nvmlInit failed");
    s.nvml.gpus.clear();
  };
  const std::vector<Case> cases = {
      {"GPU node", [](Snapshot&) {}, false},
      {"CPU node", cpu_node, true},
      {"a GPU with no driver",
       [&](Snapshot& s) {
         cpu_node(s);
         s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:3b:00.0"});
       },
       false},
      {"a GPU on nouveau",
       [&](Snapshot& s) {
         cpu_node(s);
         s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "nouveau", "nouveau"}});
       },
       false},
      {"PCI bus unread",
       [&](Snapshot& s) {
         cpu_node(s);
         s.driver.unbound_gpus = Fact<std::vector<std::string>>::unknown("/proc/bus/pci/devices: EACCES");
       },
       false},
      // The module unseen (a pod without the host's /proc) while NVML answers: a GPU node all the same.
      {"NVML counted GPUs",
       [&](Snapshot& s) {
         cpu_node(s);
         s.nvml.init_code = Fact<int>::known(0);
         s.nvml.device_count = Fact<unsigned>::known(1);
         s.nvml.gpus = {healthy_gpu(0)};
       },
       false},
      {"NVML hung",
       [&](Snapshot& s) {
         cpu_node(s);
         s.nvml.timed_out_at = "nvmlInit_v2";
       },
       false},
      {"GPUs another driver took unread",
       [&](Snapshot& s) {
         cpu_node(s);
         s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::unknown("/sys/bus/pci/devices: ENOENT");
       },
       false},
  };
  for (const auto& c : cases) {
    Snapshot s = healthy_snapshot();
    c.mutate(s);
    EXPECT_EQ(not_a_gpu_node(s), c.not_a_gpu_node) << c.name;
  }
}

// nouveau took a GPU (not blacklisted): counted with the unbound ones, named apart, and the next step says how
// to keep it off rather than only to install the driver.
TEST(Rules, DRV001_names_the_gpus_another_driver_took) {
  Snapshot s = healthy_snapshot();
  s.driver.module_loaded = false;
  s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED
  s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:3b:00.0"});
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known(
      {{"0000:5e:00.0", "nouveau", "nouveau"}, {"0000:af:00.0", "NovaCore", "nova_core"}});
  Finding f = finding_of(diagnose(s), "DRV001");
  EXPECT_EQ(f.message, "No NVIDIA driver is present on a GPU node: 3 NVIDIA GPU(s) on the PCI bus and the "
                       "nvidia kernel module is not loaded");
  EXPECT_EQ(f.evidence.at(1), "PCI 0000:3b:00.0: NVIDIA display/3D controller, no driver bound");
  EXPECT_EQ(f.evidence.at(2), "PCI 0000:5e:00.0: NVIDIA display/3D controller, driven by nouveau");
  EXPECT_EQ(f.evidence.at(3), "PCI 0000:af:00.0: NVIDIA display/3D controller, driven by NovaCore (module nova_core)");
  EXPECT_EQ(f.next_step,
            "This is a driver-install problem, not a persistence one: install the NVIDIA driver for this kernel (or "
            "rebuild it with DKMS after a kernel update); to free the GPUs nouveau and NovaCore took: put "
            "`blacklist nouveau` and `blacklist nova_core` and `options nouveau modeset=0` in /etc/modprobe.d/blacklist-nouveau.conf "
            "(modprobe reads only *.conf there), rebuild the initramfs for every installed kernel (update-initramfs -u "
            "-k all, or dracut -f --regenerate-all) and reboot; then diagnose again.");
  EXPECT_EQ(diagnose(s).verdict.rule_id, "DRV001");
}

// Whether the PCI bus holds GPUs could not be read: said in the evidence, never read as "none".
TEST(Rules, DRV001_says_when_the_gpus_on_the_bus_are_unread) {
  Snapshot s = healthy_snapshot();
  s.driver.module_loaded = false;
  s.nvml.init_code = Fact<int>::known(9);  // DRIVER_NOT_LOADED
  s.driver.unbound_gpus = Fact<std::vector<std::string>>::unknown("/proc/bus/pci/devices: No such file or directory");
  s.driver.gpus_on_other_drivers =
      Fact<std::vector<PciGpu>>::unknown("/proc/bus/pci/devices: No such file or directory");
  Finding f = finding_of(diagnose(s), "DRV001");
  EXPECT_EQ(f.message, "No NVIDIA driver is present: the nvidia kernel module is not loaded");
  EXPECT_EQ(f.evidence.at(1), "NVIDIA GPUs on the PCI bus without the NVIDIA driver: unread (/proc/bus/pci/devices: No "
                              "such file or directory)");
  EXPECT_EQ(f.evidence.size(), 3u);  // and NVML's line
  // An older snapshot: the unbound ones were recorded, the others not.
  s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:3b:00.0"});
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::unknown("an older snapshot");
  f = finding_of(diagnose(s), "DRV001");
  EXPECT_EQ(f.evidence.at(1), "PCI 0000:3b:00.0: NVIDIA display/3D controller, no driver bound");
  EXPECT_EQ(f.evidence.at(2), "NVIDIA GPUs another driver took: unread (an older snapshot)");
}

TEST(Rules, DRV005_gpus_on_other_drivers) {
  auto other = [](std::vector<PciGpu> gpus) {
    return [gpus](Snapshot& s) { s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known(gpus); };
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"none on other drivers", other({}), {}},
      {"nouveau took one before the NVIDIA driver loaded", other({{"0000:5e:00.0", "nouveau", "nouveau"}}),
       {{k_node}}},
      {"the PCI list unread: nothing claimed",
       [](Snapshot& s) { s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::unknown("no /proc/bus/pci"); },
       {}},
      {"no module at all: DRV001's",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "nouveau", "nouveau"}});
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("DRV005", c);
}

// The verdict routes a GPU another driver holds to driver-install, never to a hardware fault.
TEST(Rules, DRV005_is_a_driver_install_verdict_with_the_fix) {
  Snapshot s = healthy_snapshot();
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "nouveau", "nouveau"}});
  Diagnosis d = diagnose(s);
  EXPECT_EQ(d.verdict.rule_id, "DRV005");
  EXPECT_EQ(d.verdict.route, Route::driver_install);
  Finding f = finding_of(d, "DRV005");
  EXPECT_EQ(f.message, "1 NVIDIA GPU(s) on the PCI bus are driven by nouveau, not the NVIDIA driver: jobs see 1 fewer");
  EXPECT_EQ(f.evidence, (std::vector<std::string>{"PCI 0000:5e:00.0: NVIDIA display/3D controller, driven by nouveau"}));
  EXPECT_EQ(f.next_step,
            "Keep nouveau off the NVIDIA GPUs: put `blacklist nouveau` and `options nouveau modeset=0` in "
            "/etc/modprobe.d/blacklist-nouveau.conf (modprobe reads only *.conf there), rebuild the initramfs for every "
            "installed kernel (update-initramfs -u -k all, or dracut -f --regenerate-all) and reboot. The kernel log's "
            "\"NVRM: The NVIDIA probe routine was not called for N device(s)\" says how many the NVIDIA driver missed.");
  EXPECT_EQ(finding_of(d, "GPU001").rule_id, "");
  // With a reboot pending too, DRV005 decides: its own reboot ends both.
  s.nvml.user_space_version = Fact<std::string>::known("580.200.01");
  s.nvml.init_code = Fact<int>::known(18);
  EXPECT_EQ(diagnose(s).verdict.rule_id, "DRV005");
}

// A driver built into the kernel has no module a modprobe.d line could stop: the step says so, and names no
// blacklist line for it.
TEST(Rules, DRV005_a_built_in_driver_is_not_blacklisted) {
  Snapshot s = healthy_snapshot();
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "NovaCore", ""}});
  Finding f = finding_of(diagnose(s), "DRV005");
  EXPECT_EQ(f.next_step.find("blacklist"), std::string::npos) << f.next_step;
  EXPECT_NE(f.next_step.find("Keep NovaCore off the NVIDIA GPUs: NovaCore is built into this kernel, which no "
                             "modprobe.d line stops: boot a kernel built without it."),
            std::string::npos)
      << f.next_step;
  EXPECT_EQ(f.evidence, (std::vector<std::string>{"PCI 0000:5e:00.0: NVIDIA display/3D controller, driven by NovaCore"}));
  // One module and one built in: both said.
  s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known(
      {{"0000:5e:00.0", "nouveau", "nouveau"}, {"0000:af:00.0", "NovaCore", ""}});
  f = finding_of(diagnose(s), "DRV005");
  EXPECT_NE(f.next_step.find("and reboot; NovaCore is built into this kernel"), std::string::npos) << f.next_step;
}

TEST(Rules, DRV002_nvml_unavailable) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"library missing, module loaded",
       [](Snapshot& s) { s.nvml.init_code = Fact<int>::unknown("NVML library not loaded: no such file"); }, {{k_node}}},
      {"library missing and module missing (DRV001's case)",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
       },
       {}},
      {"toolkit stub loaded",
       [](Snapshot& s) {
         s.nvml.library_path = Fact<std::string>::known("/usr/local/cuda/targets/x86_64-linux/lib/stubs/libnvidia-ml.so");
       },
       {{k_node}}},
      {"init NO_PERMISSION is access, UNK001's", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(4); }, {}},
      {"init UNKNOWN is UNK001's", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(999); }, {}},
      {"init GPU_IS_LOST is RAS, GPU001's", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(15); }, {}},
      {"init LIBRARY_NOT_FOUND: incomplete install", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(12); },
       {{k_node}}},
      {"NVML hung: NVML001's",
       [](Snapshot& s) {
         s.nvml.timed_out_at = "nvmlInit";
         s.nvml.init_code = Fact<int>::unknown("NVML did not answer in 45 s (stuck in nvmlInit)");
       },
       {}},
      {"no library but the kernel refused newer user space: DRV003's",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
         s.nvml.user_space_version = s.nvml.library_file_version = Fact<std::string>::unknown("not loaded");
         s.kernel_log.mismatches.push_back({"'nvidia-persiste' (pid 9)", "580.95.05", "580.159.04", true});
       },
       {}},
      {"init mismatch is DRV003's", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(18); }, {}},
      {"init driver-not-loaded is DRV001's", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(9); }, {}},
  };
  for (const auto& c : cases) expect_rule("DRV002", c);
}

TEST(Rules, DRV003_driver_version_mismatch) {
  auto updated_without_reboot = [](Snapshot& s) {
    s.driver.kernel_version = Fact<std::string>::known("570.124.04");
    s.nvml.user_space_version = Fact<std::string>::known("570.133.07");
    s.nvml.init_code = Fact<int>::known(18);
  };
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"blog case: NVML mismatch and versions differ", updated_without_reboot, {{k_node}}},
      {"versions differ by patch level only",
       [](Snapshot& s) { s.nvml.user_space_version = Fact<std::string>::known("580.159.05"); }, {{k_node}}},
      {"NVML mismatch but no version known",
       [](Snapshot& s) {
         s.driver.kernel_version = Fact<std::string>::unknown("x");
         s.driver.sys_module_version = Fact<std::string>::unknown("x");
         s.nvml.init_code = Fact<int>::known(18);
       },
       {{k_node}}},
      {"user space known only from the library file name",
       [](Snapshot& s) {
         s.nvml.user_space_version = Fact<std::string>::unknown("symbol absent");
         s.nvml.library_file_version = Fact<std::string>::known("590.44.01");
       },
       {{k_node}}},
      {"kernel from /sys when /proc unreadable",
       [](Snapshot& s) {
         s.driver.kernel_version = Fact<std::string>::unknown("x");
         s.driver.sys_module_version = Fact<std::string>::known("575.64");
       },
       {{k_node}}},
      {"a logged mismatch alone is not a pending reboot",
       [](Snapshot& s) { s.kernel_log.mismatches.push_back({"", "570.133.07", "580.159.04", true}); }, {}},
      {"seed case without NVML: user space unreadable, the kernel refused newer user space",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
         s.nvml.user_space_version = s.nvml.library_file_version = Fact<std::string>::unknown("not loaded");
         s.kernel_log.mismatches.push_back({"'nvidia-persiste' (pid 9)", "580.95.05", "580.159.04", true});
       },
       {{k_node}}},
      {"a mismatch logged by another module generation is ignored",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
         s.nvml.user_space_version = s.nvml.library_file_version = Fact<std::string>::unknown("not loaded");
         s.kernel_log.mismatches.push_back({"", "575.64", "570.124.04", true});
       },
       {}},
      {"a mismatch before the module loaded is ignored",
       [](Snapshot& s) {
         s.nvml.init_code = Fact<int>::unknown("NVML library not loaded");
         s.kernel_log.mismatches.push_back({"", "580.95.05", "580.159.04", false});
       },
       {}},
      {"LIB_RM_VERSION_MISMATCH from nvmlDeviceGetCount",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::unknown("LIB_RM_VERSION_MISMATCH");
         s.nvml.gpus.clear();
       },
       {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("DRV003", c);
}

// The message names what was read: two versions that differ, or a refusal although the two read agree.
TEST(Rules, DRV003_message_says_what_disagrees) {
  auto message = [](const std::function<void(Snapshot&)>& mutate) {
    Snapshot s = healthy_snapshot();
    mutate(s);
    for (const auto& f : diagnose(s).findings) {
      if (f.rule_id == "DRV003") return f.message;
    }
    return std::string("no DRV003");
  };
  EXPECT_EQ(message([](Snapshot& s) { s.nvml.user_space_version = Fact<std::string>::known("580.159.05"); })
                .rfind("Driver updated without reboot: the loaded kernel module is 580.159.04 but user space is "
                       "580.159.05;",
                       0),
            0u);
  const std::string same = message([](Snapshot& s) { s.nvml.init_code = Fact<int>::known(18); });
  EXPECT_EQ(same.rfind("The driver's halves disagree: the kernel module and libnvidia-ml both read 580.159.04", 0),
            0u)
      << same;
  EXPECT_EQ(same.find("but user space is 580.159.04"), std::string::npos);
}

// The module the newer half: no update leaves that behind by itself, and a reboot may change nothing; DRV003
// is the other direction.
TEST(Rules, DRV006_user_space_older_than_module) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"an older libnvidia-ml read",
       [](Snapshot& s) { s.nvml.user_space_version = Fact<std::string>::known("470.256.02"); }, {{k_node}}},
      {"user space newer: DRV003's case",
       [](Snapshot& s) { s.nvml.user_space_version = Fact<std::string>::known("590.44.01"); }, {}},
      {"user space unread, an older client in the kernel log: not read, not this rule",
       [](Snapshot& s) {
         s.nvml.user_space_version = Fact<std::string>::unknown("no libnvidia-ml");
         s.nvml.library_file_version = Fact<std::string>::unknown("no libnvidia-ml");
         s.kernel_log.mismatches.push_back({"'python3' (pid 7)", "570.1", "580.159.04", true});
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("DRV006", c);
  Snapshot s = healthy_snapshot();
  s.nvml.user_space_version = Fact<std::string>::known("470.256.02");
  s.nvml.library_path = Fact<std::string>::known("/usr/local/lib/libnvidia-ml.so.470.256.02");
  const Diagnosis d = diagnose(s);
  EXPECT_EQ(d.verdict.rule_id, "DRV006");
  EXPECT_EQ(d.verdict.route, Route::driver_install);  // not "reboot pending"
  EXPECT_EQ(finding_of(d, "DRV003").rule_id, "");
  const Finding f = finding_of(d, "DRV006");
  EXPECT_EQ(f.message.rfind("The loaded kernel module 580.159.04 is newer than user space 470.256.02 "
                            "(/usr/local/lib/libnvidia-ml.so.470.256.02): user space was not upgraded with the module",
                            0),
            0u)
      << f.message;
  EXPECT_NE(f.next_step.find("upgrade them to 580.159.04"), std::string::npos);
}

TEST(Rules, DRV004_stale_client_mismatch) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"a container with older libraries was refused",
       [](Snapshot& s) { s.kernel_log.mismatches.push_back({"'python3' (pid 77)", "570.1", "580.159.04", true}); },
       {{k_node}}},
      {"mismatch from before the module was reloaded",
       [](Snapshot& s) { s.kernel_log.mismatches.push_back({"", "570.1", "560.1", false}); }, {}},
      {"versions differ: DRV003's case, not this one",
       [](Snapshot& s) {
         s.nvml.user_space_version = Fact<std::string>::known("590.1");
         s.kernel_log.mismatches.push_back({"", "590.1", "580.159.04", true});
       },
       {}},
      {"a client asking with the module's own version, read exactly: none the kernel refuses",
       [](Snapshot& s) { s.kernel_log.mismatches.push_back({"", "580.159.04", "580.159.04", true, true}); }, {}},
      {"the module's version picked out of a line worded otherwise: the client's may be any",
       [](Snapshot& s) { s.kernel_log.mismatches.push_back({"", "580.159.04", "580.159.04", true, false}); },
       {{k_node}}},
  };
  for (const auto& c : cases) expect_rule("DRV004", c);
}

// Where the kernel does not name the client, or names it like the daemon, the guard may skip the unit: the
// next step says when, so that `diagnose` and the guard do not contradict each other.
TEST(Rules, DRV004_says_when_the_guard_skips_on_the_same_line) {
  auto finding = [](const std::string& client, const std::string& version, bool exact) {
    Snapshot s = healthy_snapshot();
    s.kernel_log.mismatches.push_back({client, version, "580.159.04", true, exact});
    auto found = find_rule("DRV004")->check(s);
    if (found.size() == 1) {
      return found[0];
    }
    Finding none;
    none.message = none.next_step = "not one finding";
    return none;
  };
  auto next_step = [&](const std::string& client) { return finding(client, "570.1", true).next_step; };
  EXPECT_EQ(next_step("'python3' (pid 77)").find("gpuwarm guard"), std::string::npos);
  for (const char* daemon_or_unnamed : {"'nvidia-persiste' (pid 812)", ""}) {
    SCOPED_TRACE(daemon_or_unnamed);
    EXPECT_NE(next_step(daemon_or_unnamed)
                  .find("`gpuwarm guard` skips nvidia-persistenced on this line while a libnvidia-cfg.so.1 or "
                        "libnvidia-ml.so.1 of version 570.1 is installed where the loader looks"),
              std::string::npos);
    // Not read exactly: the guard skips on the line whatever is installed, and the rule says so.
    const Finding loose = finding(daemon_or_unnamed, "570.1", false);
    EXPECT_NE(loose.next_step.find("its version is not read exactly (the line is worded otherwise than gpuwarm "
                                   "reads, or a text log shows it with the time stamp of the record before it"),
              std::string::npos)
        << loose.next_step;
    EXPECT_NE(loose.next_step.find("so `gpuwarm guard` skips nvidia-persistenced on it until the module is loaded "
                                   "again"),
              std::string::npos)
        << loose.next_step;
    EXPECT_NE(loose.message.find("built for driver ? (perhaps 570.1) "), std::string::npos) << loose.message;
    // No version found at all in a line worded otherwise.
    EXPECT_NE(finding(daemon_or_unnamed, "", false).message.find("built for driver ? "), std::string::npos);
  }
  // Text that is no version shows in quotes, empty text too.
  EXPECT_NE(finding("", "x", true).message.find("built for driver \"x\" "), std::string::npos);
  EXPECT_NE(finding("", "", true).message.find("built for driver \"\" "), std::string::npos);
}

TEST(Rules, GPU001_gpu_unreachable) {
  const std::vector<RuleCase> cases = {
      {"healthy node", [](Snapshot&) {}, {}},
      {"GPU 1 lost", [](Snapshot& s) { s.nvml.gpus[1] = lost_gpu(1, "GPU_IS_LOST"); }, {{1u}}},
      {"no permission is not a fault", [](Snapshot& s) { s.nvml.gpus[0] = lost_gpu(0, "NO_PERMISSION"); }, {}},
      {"RESET_REQUIRED handle", [](Snapshot& s) { s.nvml.gpus[0] = lost_gpu(0, "RESET_REQUIRED"); }, {{0u}}},
      {"init GPU_IS_LOST", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(15); }, {{k_node}}},
      {"init TIMEOUT", [](Snapshot& s) { s.nvml.init_code = Fact<int>::known(10); }, {{k_node}}},
      {"count GPU_IS_LOST",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::unknown("GPU_IS_LOST");
         s.nvml.gpus.clear();
       },
       {{k_node}}},
      {"persistence query answers GPU_IS_LOST",
       [](Snapshot& s) { s.nvml.gpus[1].persistence = Fact<bool>::unknown("GPU_IS_LOST"); }, {{1u}}},
      {"an optional query answers RESET_REQUIRED",
       [](Snapshot& s) { s.nvml.gpus[0].temperature_c = Fact<int>::unknown("RESET_REQUIRED"); }, {{0u}}},
      {"NOT_SUPPORTED anywhere is no fault",
       [](Snapshot& s) { s.nvml.gpus[0].temperature_c = Fact<int>::unknown("NOT_SUPPORTED"); }, {}},
      {"kernel knows more GPUs than NVML",
       [](Snapshot& s) {
         s.nvml.device_count = Fact<unsigned>::known(1);
         s.nvml.gpus.pop_back();
       },
       {{k_node}}},
      {"excluded GPU does not count",
       [](Snapshot& s) {
         s.driver.kernel_gpus[1].excluded = true;
         s.nvml.device_count = Fact<unsigned>::known(1);
         s.nvml.gpus.pop_back();
       },
       {}},
      {"a GPU on the bus no driver took (probe failed): every count agrees without it",
       [](Snapshot& s) { s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:5e:00.0"}); },
       {{k_node}}},
      {"the PCI list unread: nothing claimed",
       [](Snapshot& s) { s.driver.unbound_gpus = Fact<std::vector<std::string>>::unknown("no /proc/bus/pci"); },
       {}},
      {"none unbound", [](Snapshot& s) { s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({}); }, {}},
      {"no module at all: GPUs without a driver are DRV001's, not a fault",
       [](Snapshot& s) {
         s.driver.module_loaded = false;
         s.driver.unbound_gpus = Fact<std::vector<std::string>>::known({"0000:5e:00.0"});
       },
       {}},
      {"a GPU another driver took: DRV005's, not a fault",
       [](Snapshot& s) {
         s.driver.gpus_on_other_drivers = Fact<std::vector<PciGpu>>::known({{"0000:5e:00.0", "nouveau", "nouveau"}});
       },
       {}},
  };
  for (const auto& c : cases) expect_rule("GPU001", c);
}

}  // namespace
}  // namespace gpuwarm::test
