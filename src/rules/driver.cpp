// Driver-install and driver-lifecycle branch: is there a working driver whose
// kernel and user-space halves agree? Everything else depends on it.

#include <fmt/format.h>

#include "nvml/nvml_api.h"
#include "rules/checks.h"
#include "rules/helpers.h"

namespace gpuwarm::checks {

std::vector<Finding> driver_not_loaded(const Snapshot& s) {
  bool nvml_says_not_loaded = s.nvml.init_code.is(nvml::ret::driver_not_loaded);
  if (s.driver.module_loaded && !nvml_says_not_loaded) {
    return {};
  }
  Finding f;
  f.message = s.driver.module_loaded ? "NVML reports that the NVIDIA driver is not loaded"
                                     : "No NVIDIA driver is present: the nvidia kernel module is not loaded";
  f.next_step =
      "This is a driver-install problem, not a persistence one: install the NVIDIA driver for this kernel "
      "(or rebuild it with DKMS after a kernel update), load it with `modprobe nvidia`, then diagnose again.";
  f.evidence.push_back(s.driver.module_loaded ? "/proc/driver/nvidia present" : "/proc/driver/nvidia and /sys/module/nvidia absent");
  if (s.nvml.init_code.has()) {
    f.evidence.push_back("nvmlInit: " + s.nvml.init_error);
  } else {
    f.evidence.push_back(s.nvml.init_code.missing);
  }
  return {f};
}

std::vector<Finding> nvml_unavailable(const Snapshot& s) {
  if (!s.driver.module_loaded) {
    return {};  // DRV001 already says there is no driver
  }
  Finding f;
  if (!s.nvml.init_code.has()) {
    f.message = "The kernel module is loaded but the NVML library (libnvidia-ml.so.1) is unusable";
    f.evidence.push_back(s.nvml.init_code.missing);
  } else if (s.nvml.library_path.has() && s.nvml.library_path->find("/stubs/") != std::string::npos) {
    f.message = "The loaded libnvidia-ml is the CUDA toolkit's link stub, not the driver's library";
    f.evidence.push_back("loaded " + *s.nvml.library_path);
  } else {
    int code = *s.nvml.init_code;
    if (code == nvml::ret::success || code == nvml::ret::driver_not_loaded ||
        code == nvml::ret::lib_rm_version_mismatch) {
      return {};  // fine, or another rule's case
    }
    f.message = "NVML could not initialize: " + s.nvml.init_error;
    f.evidence.push_back(fmt::format("nvmlInit returned {} ({})", code, s.nvml.init_error));
    if (code == nvml::ret::no_permission) {
      f.evidence.push_back("check the modes of /dev/nvidia* and the NVreg_DeviceFileMode module parameter");
    }
  }
  f.next_step =
      "Reinstall the driver's user-space libraries so libnvidia-ml.so.1 matches the loaded module "
      "(ldconfig -p | grep libnvidia-ml), then diagnose again.";
  return {f};
}

std::vector<Finding> driver_version_mismatch(const Snapshot& s) {
  const std::string kernel = kernel_module_version(s);
  const std::string user = user_space_version(s);
  std::vector<std::string> evidence;
  bool mismatch = false;
  if (s.nvml.init_code.is(nvml::ret::lib_rm_version_mismatch)) {
    mismatch = true;
    evidence.emplace_back("nvmlInit: LIB_RM_VERSION_MISMATCH (\"Driver/library version mismatch\")");
  }
  if (!kernel.empty() && !user.empty() && kernel != user) {
    mismatch = true;
    evidence.push_back(fmt::format("kernel module {} vs user space {}", kernel, user));
  }
  for (const auto& m : s.kernel_log.mismatches) {
    // A logged mismatch alone may be one stale client (see DRV004); it
    // counts here only together with the evidence above.
    if (m.after_module_load && mismatch) {
      evidence.push_back(fmt::format("kernel log: NVRM: API mismatch: client {} vs module {}", m.client_version,
                                     m.kernel_version));
    }
  }
  if (!mismatch) {
    return {};
  }
  Finding f;
  std::string new_version = user;
  for (const auto& m : s.kernel_log.mismatches) {
    if (new_version.empty() && m.after_module_load) {
      new_version = m.client_version;
    }
  }
  f.message = fmt::format(
      "Driver updated without reboot: the loaded kernel module is {} but user space is {}; "
      "nvidia-persistenced cannot start until they match",
      kernel.empty() ? "of another version" : kernel, new_version.empty() ? "another version" : new_version);
  f.next_step =
      "Reboot the node to load the new kernel module (or swap modules once no process uses the GPUs). "
      "Until then do not start or restart nvidia-persistenced: it fails with \"Failed to query NVIDIA devices\".";
  f.evidence = std::move(evidence);
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
  for (const auto& m : s.kernel_log.mismatches) {
    if (!m.after_module_load || m.client_version == user) {
      continue;
    }
    Finding f;
    f.message = fmt::format("The kernel refused a client built for driver {} {}(this node runs {})",
                            m.client_version.empty() ? "?" : m.client_version,
                            m.client.empty() ? "" : m.client + " ", kernel);
    f.next_step =
        "Host driver halves agree; look for a container image or a second driver install that brings other "
        "NVIDIA libraries.";
    f.evidence.push_back("kernel log: NVRM: API mismatch");
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> gpu_unreachable(const Snapshot& s) {
  std::vector<Finding> out;
  for (const auto& gpu : s.nvml.gpus) {
    if (gpu.handle_error.empty() || gpu.handle_error == "NO_PERMISSION") {
      continue;
    }
    Finding f;
    f.gpu = gpu.index;
    f.message = fmt::format("GPU {}: NVML cannot open it ({})", gpu.index, gpu.handle_error);
    f.next_step =
        "A GPU fault, not a persistence problem: check the kernel log for Xid errors and follow the RAS runbook "
        "(drain, reset or replace).";
    f.evidence.push_back("nvmlDeviceGetHandleByIndex: " + gpu.handle_error);
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

}  // namespace gpuwarm::checks
