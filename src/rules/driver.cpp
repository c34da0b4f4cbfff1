// Driver-install and driver-lifecycle branch: is there a working driver whose
// kernel and user-space halves agree? Everything else depends on it.

#include <algorithm>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/strings.h"
#include "nvml/nvml_api.h"
#include "rules/checks.h"
#include "rules/helpers.h"

namespace gpuwarm::checks {

namespace {

// NVML's structural answers (init, count, and each handle unless only the
// node-wide ones are wanted) with a given effect.
std::vector<std::string> structural_evidence(const Snapshot& s, nvml::Effect wanted, bool with_handles = true) {
  std::vector<std::string> out;
  if (s.nvml.init_code.has() && nvml::effect(nvml::Entry::init, nvml::meaning_of(*s.nvml.init_code)) == wanted) {
    out.push_back(nvml_evidence("nvmlInit", s.nvml.init_error));
  }
  if (!s.nvml.device_count.has() && s.nvml.init_code.is(nvml::ret::success) &&
      effect_of(nvml::Entry::count, s.nvml.device_count.missing) == wanted) {
    out.push_back(nvml_evidence("nvmlDeviceGetCount", s.nvml.device_count.missing));
  }
  for (const auto& gpu : s.nvml.gpus) {
    if (with_handles && !gpu.handle_error.empty() && effect_of(nvml::Entry::handle, gpu.handle_error) == wanted) {
      out.push_back(fmt::format("GPU {}: {}", gpu.index, nvml_evidence("nvmlDeviceGetHandleByIndex", gpu.handle_error)));
    }
  }
  return out;
}

// One line of evidence per NVIDIA GPU on the PCI bus that no driver took.
void add_unbound_gpus(const Snapshot& s, Finding& f) {
  for (const auto& bus : *s.driver.unbound_gpus) {
    f.evidence.push_back("PCI " + bus + ": NVIDIA display/3D controller, no driver bound");
  }
}

// One line of evidence per NVIDIA GPU on the PCI bus that another driver took.
void add_gpus_on_other_drivers(const Snapshot& s, Finding& f) {
  for (const auto& gpu : *s.driver.gpus_on_other_drivers) {
    f.evidence.push_back(fmt::format("PCI {}: NVIDIA display/3D controller, driven by {}{}", gpu.address, gpu.driver,
                                     gpu.module.empty() || gpu.module == gpu.driver ? ""
                                                                                    : " (module " + gpu.module + ")"));
  }
}

void add_once(std::vector<std::string>& list, const std::string& item) {
  if (std::find(list.begin(), list.end(), item) == list.end()) {
    list.push_back(item);
  }
}

// The drivers holding NVIDIA GPUs, each once ("nouveau", "NovaCore and nouveau").
std::string other_driver_names(const std::vector<PciGpu>& gpus) {
  std::vector<std::string> names;
  for (const auto& gpu : gpus) {
    add_once(names, gpu.driver);
  }
  return fmt::format("{}", fmt::join(names, " and "));
}

// How to keep those drivers off the GPUs for good. modprobe reads only /etc/modprobe.d/*.conf, and the initramfs
// carries its own copy, so that is rebuilt for every kernel. A driver built into the kernel has no module to
// blacklist.
std::string keep_other_drivers_off(const std::vector<PciGpu>& gpus) {
  std::vector<std::string> modules;
  std::vector<std::string> built_in;
  for (const auto& gpu : gpus) {
    add_once(gpu.module.empty() ? built_in : modules, gpu.module.empty() ? gpu.driver : gpu.module);
  }
  auto names = [](const std::vector<std::string>& list, std::string_view name) {
    return std::find(list.begin(), list.end(), name) != list.end();
  };
  std::string step;
  if (!modules.empty()) {
    std::string lines;
    for (const auto& module : modules) {
      lines += (lines.empty() ? "`blacklist " : " and `blacklist ") + module + "`";
    }
    step = fmt::format("put {}{} in /etc/modprobe.d/blacklist-{}.conf (modprobe reads only *.conf there), rebuild "
                       "the initramfs for every installed kernel (update-initramfs -u -k all, or dracut -f "
                       "--regenerate-all) and reboot",
                       lines, names(modules, "nouveau") ? " and `options nouveau modeset=0`" : "", modules.front());
  }
  if (!built_in.empty()) {
    step += fmt::format("{}{} is built into this kernel, which no modprobe.d line stops: boot a kernel built "
                        "without it{}",
                        step.empty() ? "" : "; ", fmt::join(built_in, " and "),
                        names(built_in, "nouveau") ? " (or add nouveau.modeset=0 to the kernel command line)" : "");
  }
  return step;
}

bool says_not_loaded(const std::string& reason) {
  return nvml::meaning_of_reason(reason) == nvml::Meaning::driver_not_loaded;
}

}  // namespace

std::vector<Finding> driver_not_loaded(const Snapshot& s) {
  bool nvml_says_not_loaded = s.nvml.init_code.is(nvml::ret::driver_not_loaded) ||
                              (!s.nvml.device_count.has() && says_not_loaded(s.nvml.device_count.missing));
  for (const auto& gpu : s.nvml.gpus) {
    nvml_says_not_loaded = nvml_says_not_loaded || says_not_loaded(gpu.handle_error);
  }
  if (s.driver.module_loaded && !nvml_says_not_loaded) {
    return {};
  }
  Finding f;
  if (!s.driver.module_loaded && s.nvml.init_code.is(nvml::ret::success) && !nvml_says_not_loaded) {
    // NVML talks to a driver this view cannot see (a pod or chroot without the host's /proc and /sys): what the
    // kernel side says (its version, its GPU list) is unknown, not "no driver".
    f = cannot_tell("module not visible",
                    "NVML answers, but the nvidia kernel module is not visible here (no /proc/driver/nvidia or "
                    "/sys/module/nvidia): the kernel's side of the driver cannot be read",
                    "Run gpuwarm on the host, or give it the host's /proc and /sys (--root with the host's tree "
                    "mounted), then diagnose again.");
    f.evidence.emplace_back("/proc/driver/nvidia and /sys/module/nvidia absent");
    f.evidence.push_back(nvml_evidence("nvmlInit", s.nvml.init_error.empty() ? "SUCCESS" : s.nvml.init_error));
    if (s.nvml.device_count.has()) {
      f.evidence.push_back(fmt::format("nvmlDeviceGetCount: {}", *s.nvml.device_count));
    }
    return {f};
  }
  const std::size_t unbound = s.driver.unbound_gpus.has() ? s.driver.unbound_gpus->size() : 0;
  const std::size_t elsewhere = s.driver.gpus_on_other_drivers.has() ? s.driver.gpus_on_other_drivers->size() : 0;
  const std::size_t driverless = unbound + elsewhere;
  if (s.driver.module_loaded) {
    f.message = "NVML reports that the NVIDIA driver is not loaded";
  } else if (driverless > 0) {
    f.message = fmt::format("No NVIDIA driver is present on a GPU node: {} NVIDIA GPU(s) on the PCI bus and the "
                            "nvidia kernel module is not loaded",
                            driverless);
  } else {
    f.message = "No NVIDIA driver is present: the nvidia kernel module is not loaded";
  }
  // The driver packages blacklist nouveau and rebuild the initramfs themselves: installing first saves a reboot.
  f.next_step =
      !s.driver.module_loaded && elsewhere > 0
          ? fmt::format("This is a driver-install problem, not a persistence one: install the NVIDIA driver for this "
                        "kernel (or rebuild it with DKMS after a kernel update); to free the GPUs {} took: {}; then "
                        "diagnose again.",
                        other_driver_names(*s.driver.gpus_on_other_drivers),
                        keep_other_drivers_off(*s.driver.gpus_on_other_drivers))
          : "This is a driver-install problem, not a persistence one: install the NVIDIA driver for this "
            "kernel (or rebuild it with DKMS after a kernel update), load it with `modprobe nvidia`, then "
            "diagnose again.";
  f.evidence.push_back(s.driver.module_loaded ? "/proc/driver/nvidia present" : "/proc/driver/nvidia and /sys/module/nvidia absent");
  if (!s.driver.module_loaded) {  // what is unread is said, not taken for "no GPU"
    const auto& unbound_list = s.driver.unbound_gpus;
    const auto& other_list = s.driver.gpus_on_other_drivers;
    if (!unbound_list.has() && !other_list.has() && unbound_list.missing == other_list.missing) {
      f.evidence.push_back("NVIDIA GPUs on the PCI bus without the NVIDIA driver: unread (" + unbound_list.missing +
                           ")");
    } else {
      if (unbound_list.has()) {
        add_unbound_gpus(s, f);
      } else {
        f.evidence.push_back("NVIDIA GPUs with no driver on the PCI bus: unread (" + unbound_list.missing + ")");
      }
      if (other_list.has()) {
        add_gpus_on_other_drivers(s, f);
      } else {
        f.evidence.push_back("NVIDIA GPUs another driver took: unread (" + other_list.missing + ")");
      }
    }
  }
  if (s.nvml.init_code.has()) {
    auto said = structural_evidence(s, nvml::Effect::driver_install);
    if (said.empty()) {
      said.push_back("nvmlInit: " + s.nvml.init_error);
    }
    f.evidence.insert(f.evidence.end(), said.begin(), said.end());
  } else {
    f.evidence.push_back(s.nvml.init_code.missing);
  }
  return {f};
}

std::vector<Finding> nvml_unavailable(const Snapshot& s) {
  if (!s.driver.module_loaded || !s.nvml.timed_out_at.empty() || !s.nvml.not_opened.empty()) {
    return {};  // DRV001 says there is no driver; NVML001 that NVML hung; UNK009 that it was left closed
  }
  if (!logged_new_user_space(s).empty() && user_space_version(s).empty()) {
    return {};  // the kernel refused newer user space: DRV003's case, not a broken install
  }
  Finding f;
  if (!s.nvml.init_code.has()) {
    f.message = "The kernel module is loaded but no usable NVML library (libnvidia-ml.so.1) was found";
    f.evidence.push_back(s.nvml.init_code.missing);
  } else if (s.nvml.library_path.has() && s.nvml.library_path->find("/stubs/") != std::string::npos) {
    f.message = "The loaded libnvidia-ml is the CUDA toolkit's link stub, not the driver's library";
    f.evidence.push_back("loaded " + *s.nvml.library_path);
  } else if (nvml::effect(nvml::Entry::init, nvml::meaning_of(*s.nvml.init_code)) == nvml::Effect::driver_install &&
             !s.nvml.init_code.is(nvml::ret::driver_not_loaded)) {
    f.message = "NVML could not initialize: " + s.nvml.init_error + " (its install is incomplete)";
    f.evidence.push_back(nvml_evidence("nvmlInit", s.nvml.init_error));
    if (s.nvml.library_path.has()) {
      f.evidence.push_back("loaded " + *s.nvml.library_path);
    }
  } else {
    return {};  // fine, or another rule's case (NVML001, DRV001, DRV003, GPU001, UNK001)
  }
  f.next_step =
      "Install the driver's user-space libraries so libnvidia-ml.so.1 matches the loaded module (or point gpuwarm "
      "at them with --nvml PATH if they live somewhere unusual), then diagnose again.";
  return {f};
}

namespace {

// Both halves read, and the loaded module the newer: no update left that behind by itself (DRV006, not DRV003).
bool module_newer_than_user_space(const Snapshot& s) {
  const std::string kernel = kernel_module_version(s);
  const std::string user = user_space_version(s);
  return !kernel.empty() && !user.empty() && compare_driver_versions(kernel, user).value_or(0) > 0;
}

}  // namespace

std::vector<Finding> driver_version_mismatch(const Snapshot& s) {
  if (module_newer_than_user_space(s)) {
    return {};  // DRV006: a reboot is not what ends it
  }
  const std::string kernel = kernel_module_version(s);
  const std::string user = user_space_version(s);
  std::vector<std::string> evidence;
  bool mismatch = false;
  for (auto& e : structural_evidence(s, nvml::Effect::reboot)) {
    mismatch = true;
    evidence.push_back(std::move(e));
  }
  if (!kernel.empty() && !user.empty() && kernel != user) {
    mismatch = true;
    evidence.push_back(fmt::format("kernel module {} vs user space {}", kernel, user));
  }
  // Without user space to read (NVML not found, or it failed), the kernel's
  // own refusal of a newer client is the evidence: the seed's case. With
  // user space read and agreeing, a logged line is one stale client (DRV004).
  const std::string logged = logged_new_user_space(s);
  if (!logged.empty() && user.empty()) {
    mismatch = true;
  }
  for (const ApiMismatch* m : live_mismatches(s)) {
    if (mismatch) {
      evidence.push_back(fmt::format("kernel log: NVRM: API mismatch: client {}{} vs module {}",
                                     m->client.empty() ? "" : m->client + " ", m->client_version,
                                     m->kernel_version));
    }
  }
  if (!mismatch) {
    return {};
  }
  Finding f;
  std::string new_version = user.empty() ? logged : user;
  if (!kernel.empty() && kernel == new_version) {
    // NVML (or the kernel) refused on a version mismatch, yet the two versions read agree: say that, not "X but X".
    f.message = fmt::format(
        "The driver's halves disagree: the kernel module and libnvidia-ml both read {}, yet the driver refuses a "
        "client of another version (another user-space component was updated without reboot); "
        "nvidia-persistenced cannot start until they match",
        kernel);
  } else {
    f.message = fmt::format(
        "Driver updated without reboot: the loaded kernel module is {} but user space is {}; "
        "nvidia-persistenced cannot start until they match",
        kernel.empty() ? "of another version" : kernel, new_version.empty() ? "another version" : new_version);
  }
  f.next_step =
      "Reboot the node to load the new kernel module (or swap modules with `gpuwarm reload-modules` once no "
      "process uses the GPUs). Until then do not start or restart nvidia-persistenced: it fails with \"Failed to query NVIDIA devices\".";
  f.evidence = std::move(evidence);
  return {f};
}

std::vector<Finding> user_space_older_than_module(const Snapshot& s) {
  if (!module_newer_than_user_space(s)) {
    return {};
  }
  const std::string kernel = kernel_module_version(s);
  const std::string user = user_space_version(s);
  Finding f;
  f.message = fmt::format(
      "The loaded kernel module {} is newer than user space {}{}: user space was not upgraded with the module, an "
      "older libnvidia-ml is found before the module's own, or the driver was downgraded without reboot; "
      "nvidia-persistenced cannot start until they match",
      kernel, user, s.nvml.library_path.has() ? " (" + *s.nvml.library_path + ")" : "");
  f.next_step = fmt::format(
      "Find which: the driver packages' versions (`dpkg -l | grep nvidia` or `rpm -qa | grep nvidia`) and "
      "`ldconfig -p | grep libnvidia-ml`. User-space packages behind the module's: upgrade them to {}. An older "
      "copy left behind (a runfile's in /usr/local/lib, an image's): remove it with its libnvidia-* siblings. A "
      "downgrade: reboot to load the older module. Until then do not start or restart nvidia-persistenced.",
      kernel);
  f.evidence.push_back(fmt::format("kernel module {} vs user space {}", kernel, user));
  for (auto& e : structural_evidence(s, nvml::Effect::reboot)) {
    f.evidence.push_back(std::move(e));
  }
  return {f};
}

std::vector<Finding> stale_client_mismatch(const Snapshot& s) {
  if (!s.nvml.init_code.is(nvml::ret::success)) {
    return {};
  }
  const std::string kernel = kernel_module_version(s);
  const std::string user = user_space_version(s);
  if (kernel.empty() || kernel != user) {
    return {};  // DRV003's case
  }
  std::vector<Finding> out;
  for (const ApiMismatch* m : live_mismatches(s)) {
    // Only a version read exactly is known to be the module's own: a token picked out of a line worded
    // otherwise may be the module's version printed beside the client's.
    if (m->client_version_exact && m->client_version == user) {
      continue;
    }
    const std::string client_version = m->shown_client_version();
    Finding f;
    f.message = fmt::format("The kernel refused a client built for driver {} {}(this node runs {})", client_version,
                            m->client.empty() ? "" : m->client + " ", kernel);
    f.next_step =
        "Host driver halves agree; look for a container image or a second driver install that brings other "
        "NVIDIA libraries.";
    if (m->client.empty() || m->refused_the_daemon()) {
      // The guard cannot rule out the daemon here: it skips the unit while the loader could give the daemon
      // a library of the refused version (a made-up version, as any process can ask with, does not count).
      const std::string who =
          !m->client.empty()        ? "The refused client was named like nvidia-persistenced"
          : m->client_version_exact ? "This driver does not name the client, so it may have been nvidia-persistenced"
                                    : "The client could not be read from the line, so it may have been "
                                      "nvidia-persistenced";
      if (m->client_version_exact) {
        f.next_step += fmt::format(
            " {}: `gpuwarm guard` skips nvidia-persistenced on this line while a libnvidia-cfg.so.1 or "
            "libnvidia-ml.so.1 of version {} is installed where the loader looks, or while it cannot show that "
            "none is (`gpuwarm guard --verbose` says why); remove that copy, or load the module again (reboot or "
            "`gpuwarm reload-modules`).",
            who, client_version);
      } else {
        f.next_step += fmt::format(
            " {}: its version is not read exactly ({}), so `gpuwarm guard` skips nvidia-persistenced on it until "
            "the module is loaded again (reboot or `gpuwarm reload-modules`).",
            who, k_client_version_inexact_why);
      }
    }
    f.evidence.push_back("kernel log: NVRM: API mismatch");
    out.push_back(std::move(f));
  }
  return out;
}

// The NVIDIA driver is loaded but another driver took some GPUs first (NVRM logs "The NVIDIA probe routine
// was not called for N device(s)"). Without the module, DRV001 names them.
std::vector<Finding> gpus_on_other_drivers(const Snapshot& s) {
  if (!s.driver.module_loaded || !s.driver.gpus_on_other_drivers.has() || s.driver.gpus_on_other_drivers->empty()) {
    return {};
  }
  const auto& gpus = *s.driver.gpus_on_other_drivers;
  Finding f;
  f.message = fmt::format("{} NVIDIA GPU(s) on the PCI bus are driven by {}, not the NVIDIA driver: jobs see {} fewer",
                          gpus.size(), other_driver_names(gpus), gpus.size());
  f.next_step = fmt::format("Keep {} off the NVIDIA GPUs: {}. The kernel log's \"NVRM: The NVIDIA probe routine was "
                            "not called for N device(s)\" says how many the NVIDIA driver missed.",
                            other_driver_names(gpus), keep_other_drivers_off(gpus));
  add_gpus_on_other_drivers(s, f);
  return {f};
}

std::vector<Finding> gpu_unreachable(const Snapshot& s) {
  constexpr const char* k_ras_step =
      "A GPU fault, not a persistence problem: check the kernel log for Xid errors and follow the RAS runbook "
      "(drain, reset or replace).";
  std::vector<Finding> out;
  // NVML as a whole: init, count or a system query answered with a GPU fault.
  {
    std::vector<std::string> whole;
    const std::pair<const char*, const Fact<std::string>*> system_queries[] = {
        {"nvmlSystemGetNVMLVersion", &s.nvml.nvml_version}, {"nvmlSystemGetDriverVersion", &s.nvml.system_driver_version}};
    for (const auto& [query, fact] : system_queries) {
      if (!fact->has() && effect_of(nvml::Entry::optional, fact->missing) == nvml::Effect::ras) {
        whole.push_back(nvml_evidence(query, fact->missing));
      }
    }
    if (!s.nvml.cuda_driver_version.has() &&
        effect_of(nvml::Entry::optional, s.nvml.cuda_driver_version.missing) == nvml::Effect::ras) {
      whole.push_back(nvml_evidence("nvmlSystemGetCudaDriverVersion_v2", s.nvml.cuda_driver_version.missing));
    }
    for (auto& e : structural_evidence(s, nvml::Effect::ras, /*with_handles=*/false)) {
      whole.push_back(std::move(e));  // each GPU's own fault is its own finding below
    }
    if (!whole.empty()) {
      Finding f;
      f.message = "NVML reports a GPU fault (not tied to one GPU it could open)";
      f.next_step = k_ras_step;
      f.evidence = std::move(whole);
      out.push_back(std::move(f));
    }
  }
  for (const auto& gpu : s.nvml.gpus) {
    Finding f;
    f.gpu = gpu.index;
    if (!gpu.handle_error.empty()) {
      if (effect_of(nvml::Entry::handle, gpu.handle_error) != nvml::Effect::ras) {
        continue;
      }
      f.message = fmt::format("GPU {}: NVML cannot open it ({})", gpu.index, gpu.handle_error);
      f.evidence.push_back(nvml_evidence("nvmlDeviceGetHandleByIndex", gpu.handle_error));
    } else {
      for (const auto& q : gpu_queries(gpu)) {
        if (q.missing != nullptr && effect_of(q.entry, *q.missing) == nvml::Effect::ras) {
          f.evidence.push_back(fmt::format("{}: {}", q.fact, nvml_evidence(q.query, *q.missing)));
        }
      }
      if (f.evidence.empty()) {
        continue;
      }
      f.message = fmt::format("{}: NVML reports a fault while reading it", gpu_label(gpu));
    }
    f.next_step = k_ras_step;
    out.push_back(std::move(f));
  }
  // A GPU on the bus the loaded driver did not take: it failed to probe it, so neither the kernel's list nor
  // NVML shows it, and every other count agrees without it.
  if (s.driver.module_loaded && s.driver.unbound_gpus.has() && !s.driver.unbound_gpus->empty()) {
    Finding f;
    f.message = fmt::format("{} NVIDIA GPU(s) on the PCI bus were taken by no driver: the NVIDIA driver failed to "
                            "probe them, so jobs see {} fewer",
                            s.driver.unbound_gpus->size(), s.driver.unbound_gpus->size());
    f.next_step = "Read the kernel log (\"NVRM: The NVIDIA probe routine failed\", Xid, AER lines) for why; "
                  "follow the RAS runbook (reseat, reset or replace).";
    add_unbound_gpus(s, f);
    out.push_back(std::move(f));
  }
  if (s.nvml.device_count.has()) {
    std::size_t kernel_gpus = 0;
    for (const auto& kg : s.driver.kernel_gpus) {
      kernel_gpus += kg.excluded ? 0 : 1;
    }
    if (kernel_gpus > *s.nvml.device_count) {
      Finding f;
      f.message = fmt::format("The kernel knows {} GPUs but NVML sees {}", kernel_gpus, *s.nvml.device_count);
      f.next_step = "Check the kernel log for Xid errors or GPUs that fell off the bus; follow the RAS runbook.";
      for (const auto& kg : s.driver.kernel_gpus) {
        f.evidence.push_back(fmt::format("/proc/driver/nvidia/gpus/{}: {} {}", kg.bus_id, kg.model, kg.uuid));
      }
      out.push_back(std::move(f));
    }
  }
  return out;
}

std::vector<Finding> named_kernel_log_unread(const Snapshot& s) {
  // /dev/kmsg closed to a user who is not root is NOTE001's; a log the caller named for its driver lines and
  // gpuwarm could not read would leave DRV003's and DRV004's evidence unseen while the verdict said "healthy".
  if (!s.kernel_log.named || s.kernel_log.source.has()) {
    return {};
  }
  Finding f;
  f.message = "The kernel log named with --kernel-log could not be read: the driver's lines in it (API mismatch, "
              "module loads) were not checked";
  f.next_step = "Name a regular file holding dmesg, journalctl -k or kern.log text, or leave --kernel-log out to "
                "read /dev/kmsg (as root).";
  f.evidence.push_back("kernel log not read: " + s.kernel_log.source.missing);
  return {f};
}

}  // namespace gpuwarm::checks
