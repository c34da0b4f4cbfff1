// NVML's answers by meaning (nvml/errors.h): a GPU fault anywhere is RAS, and
// a fact the verdict needs that could not be read leaves it "cannot tell".
// Never healthy on an unknown.

#include <fmt/format.h>

#include "rules/checks.h"
#include "rules/helpers.h"

namespace gpuwarm::checks {

namespace {

using nvml::Effect;
using nvml::Entry;

constexpr const char* k_retry_step =
    "gpuwarm cannot tell whether persistence is right here. Look for the cause in the kernel log "
    "(`dmesg | grep -E 'NVRM|Xid'`), check that `nvidia-smi` answers, then diagnose again.";

std::string access_step() {
  return "A permissions problem, not a driver install: run gpuwarm as root, or check the modes of /dev/nvidia* "
         "(NVreg_DeviceFileMode, NVreg_DeviceFileUID/GID) and any cgroup device rules, then diagnose again.";
}

bool is_access(const std::string& reason) {
  auto m = nvml::meaning_of_reason(reason);
  return m == nvml::Meaning::permission;
}

}  // namespace

std::vector<Finding> nvml_timeout(const Snapshot& s) {
  if (s.nvml.timed_out_at.empty()) {
    return {};
  }
  Finding f;
  f.message = fmt::format("NVML did not answer in {:g} s (stuck in {}): no GPU fact could be read",
                          s.nvml.timeout_s, s.nvml.timed_out_at);
  f.next_step =
      "A hung NVML usually means a GPU or the driver is stuck. Check the kernel log for Xid errors and hung tasks "
      "(`dmesg | grep -E 'NVRM|Xid|blocked for more than'`) and whether `nvidia-smi` hangs too; follow the RAS "
      "runbook if it does. A long cold start on many GPUs can also need a longer --nvml-timeout.";
  f.evidence.push_back(fmt::format("deadline {:g} s (--nvml-timeout)", s.nvml.timeout_s));
  f.evidence.push_back("NVML was in: " + s.nvml.timed_out_at);
  return {f};
}

std::vector<Finding> nvml_not_opened(const Snapshot& s) {
  if (s.nvml.not_opened.empty() || s.nvml.not_opened_by == k_untrusted_root) {
    return {};
  }
  Finding f;
  f.evidence.push_back("NVML not opened: " + s.nvml.not_opened);
  f.message = "NVML was left closed so as not to disturb another gpuwarm command: no GPU fact was read";
  f.next_step =
      "Ask again once that command has finished: `gpuwarm diagnose` then, or wait for the next scheduled "
      "`gpuwarm metrics` or `check`, which read the GPUs again on their own.";
  f.tag = s.nvml.not_opened_by == "timing"     ? "GPUs timed (probe, watch --load)"
          : s.nvml.not_opened_by == "changing" ? "fix, reset or reload-modules running"
          : s.nvml.not_opened_by == "waiting"  ? "a gpuwarm command waiting"
                                               : "";
  return {f};
}

std::vector<Finding> root_not_trusted(const Snapshot& s) {
  if (s.nvml.not_opened.empty() || s.nvml.not_opened_by != k_untrusted_root) {
    return {};
  }
  Finding f;
  f.evidence.push_back("NVML not opened: " + s.nvml.not_opened);
  f.message = "NVML was left closed: the --root tree's libnvidia-ml is not loaded as root unless the tree is "
              "vouched for as this host's own: no GPU fact was read";
  f.next_step = "If the tree is this host's own / (mounted in a pod as /host), add --trust-root; to read a "
                "container's or an image's tree, run as another user, or name a host library with --nvml PATH. "
                "Asking again changes nothing.";
  f.tag = "--trust-root not given";
  return {f};
}

std::vector<Finding> nvml_init_unknown(const Snapshot& s) {
  if (!s.driver.module_loaded || !s.nvml.init_code.has()) {
    return {};
  }
  const nvml::Meaning meaning = nvml::meaning_of(*s.nvml.init_code);
  if (nvml::effect(Entry::init, meaning) != Effect::cannot_tell) {
    return {};
  }
  Finding f;
  f.evidence.push_back(nvml_evidence("nvmlInit", s.nvml.init_error));
  if (meaning == nvml::Meaning::permission) {
    f.message = fmt::format("NVML refused access ({}): no GPU fact could be read", s.nvml.init_error);
    f.next_step = access_step();
    for (const auto& node : s.driver.device_nodes) {
      if (node.path == "/dev/nvidiactl" || node.path.find_first_of("0123456789") != std::string::npos) {
        f.evidence.push_back(fmt::format("{} mode {:04o}", node.path, node.mode));
      }
    }
  } else {
    f.message = fmt::format("NVML could not initialize ({}): no GPU fact could be read", s.nvml.init_error);
    f.next_step = k_retry_step;
  }
  return {f};
}

std::vector<Finding> gpu_count_unread(const Snapshot& s) {
  if (nvml_may_miss_gpus(s)) {
    // The driver's own list unread, and NVML sees none or fewer than the device nodes or the daemon's handles
    // say: GPUs NVML misses cannot be told from no GPU.
    Finding f;
    f.message = fmt::format("NVML sees {} GPU(s) and the driver's GPU list could not be read ({}): whether this "
                            "node has GPUs NVML misses cannot be told",
                            *s.nvml.device_count, s.driver.kernel_gpus_unread);
    f.next_step = "Run gpuwarm as root on the host (in a container, give it the host's /proc), or `ls "
                  "/proc/driver/nvidia/gpus` and `nvidia-smi -L` by hand.";
    f.evidence.push_back(fmt::format("nvmlDeviceGetCount: {}", *s.nvml.device_count));
    if (auto held = daemon_held_minors(s)) {
      f.evidence.push_back(fmt::format("nvidia-persistenced holds minors [{}]", fmt::join(*held, ", ")));
    }
    f.evidence.push_back("GPU list unread: " + s.driver.kernel_gpus_unread);
    for (const auto& node : s.driver.device_nodes) {
      if (gpu_device_node(node)) {
        f.evidence.push_back(node.path + " exists");
      }
    }
    return {f};
  }
  if (s.driver.module_loaded && s.nvml.device_count.has() && *s.nvml.device_count == 0 &&
      s.driver.kernel_gpus.empty() && s.driver.kernel_gpus_unread.empty() && !s.driver.unbound_gpus.has()) {
    // The module loaded (it loads only where it probed a GPU), yet it and NVML list none, and the PCI bus that
    // would show GPUs it failed to take (GPU001) was not read: "no GPU, healthy" would rest on nothing.
    Finding f;
    f.message = fmt::format("The nvidia module is loaded but neither NVML nor the driver lists a GPU, and the PCI "
                            "bus could not be read ({}): whether GPUs failed to probe cannot be told",
                            s.driver.unbound_gpus.missing);
    f.next_step = "Run `lspci -d 10de:` and `dmesg | grep NVRM` on the host (in a container, give gpuwarm the host's "
                  "/sys), then diagnose again.";
    f.evidence.emplace_back("nvmlDeviceGetCount: 0");
    f.evidence.emplace_back("/proc/driver/nvidia/gpus lists no GPU");
    f.evidence.push_back("PCI bus unread: " + s.driver.unbound_gpus.missing);
    for (const auto& node : s.driver.device_nodes) {
      if (gpu_device_node(node)) {
        f.evidence.push_back(node.path + " exists");
      }
    }
    return {f};
  }
  if (!s.driver.module_loaded || !s.nvml.init_code.is(nvml::ret::success) || s.nvml.device_count.has()) {
    return {};
  }
  if (effect_of(Entry::count, s.nvml.device_count.missing) != Effect::cannot_tell) {
    return {};
  }
  Finding f;
  std::size_t kernel_gpus = s.driver.kernel_gpus.size();
  f.message = fmt::format("NVML could not count the GPUs ({}) while the kernel lists {}", s.nvml.device_count.missing,
                          kernel_gpus);
  f.next_step = is_access(s.nvml.device_count.missing) ? access_step() : k_retry_step;
  f.evidence.push_back(nvml_evidence("nvmlDeviceGetCount", s.nvml.device_count.missing));
  return {f};
}

std::vector<Finding> gpu_handle_unread(const Snapshot& s) {
  std::vector<Finding> out;
  for (const auto& gpu : s.nvml.gpus) {
    if (gpu.handle_error.empty() || effect_of(Entry::handle, gpu.handle_error) != Effect::cannot_tell) {
      continue;
    }
    Finding f;
    f.gpu = gpu.index;
    f.message = fmt::format("GPU {}: NVML could not open it ({}), so nothing about it is known", gpu.index,
                            gpu.handle_error);
    f.next_step = is_access(gpu.handle_error) ? access_step() : k_retry_step;
    f.evidence.push_back(nvml_evidence("nvmlDeviceGetHandleByIndex", gpu.handle_error));
    out.push_back(std::move(f));
  }
  // Fewer GPUs recorded than NVML counted (a snapshot cut short, or edited): the missing ones are unknown.
  if (s.nvml.device_count.has() && s.nvml.gpus.size() < *s.nvml.device_count && s.nvml.timed_out_at.empty()) {
    Finding f;
    f.message = fmt::format("NVML counts {} GPUs, but facts were read for {} only", *s.nvml.device_count,
                            s.nvml.gpus.size());
    f.next_step = k_retry_step;
    f.evidence.push_back(fmt::format("nvmlDeviceGetCount: {}; GPUs in the snapshot: {}", *s.nvml.device_count,
                                     s.nvml.gpus.size()));
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> gpu_fact_unread(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    Finding f;
    for (const auto& q : gpu_queries(*gpu)) {
      if (q.missing != nullptr && effect_of(q.entry, *q.missing) == Effect::cannot_tell) {
        f.evidence.push_back(fmt::format("{}: {}", q.fact, nvml_evidence(q.query, *q.missing)));
        if (f.next_step.empty() || is_access(*q.missing)) {
          f.next_step = is_access(*q.missing) ? access_step() : k_retry_step;
        }
      }
    }
    if (f.evidence.empty()) {
      continue;
    }
    f.gpu = gpu->index;
    f.message = fmt::format("{}: {} the verdict needs could not be read", gpu_label(*gpu),
                            f.evidence.size() == 1 ? "a fact" : "facts");
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace gpuwarm::checks
