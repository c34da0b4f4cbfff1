#include "output/health_check.h"

#include <algorithm>
#include <array>
#include <map>
#include <set>
#include <vector>

#include <fmt/format.h>

namespace gpuwarm {

namespace {

using I = SchedulerImpact;

constexpr RuleImpact k_impacts[] = {
    {"DRV001", I::drain, "no kernel module: CUDA cannot start"},
    {"NVML001", I::unknown, "NVML hung: the GPU or driver does not answer"},
    {"DRV002", I::drain, "no usable NVML: the driver install is broken"},
    {"DRV005", I::drain, "another driver holds a GPU: jobs see fewer"},
    {"DRV003", I::drain, "module and libraries differ: new CUDA contexts fail (API mismatch) until a reboot"},
    {"DRV006", I::drain, "module newer than libraries: new CUDA contexts fail (API mismatch) until they match"},
    {"DRV004", I::keep, "a stale client, the host's halves agree"},
    {"GPU001", I::drain, "a GPU is lost, needs a reset, or is missing"},
    {"PD001", I::keep, "no daemon binary; if persistence is off too, PM001 drains"},
    {"CLK001", I::keep, "thermal or power limits (a GPU at its power cap under load is normal)"},
    {"CLK002", I::keep, "application clocks pinned: a setting, not a fault"},
    {"PM005", I::keep, "a GPU meant to power down when idle"},
    {"PM001", I::drain, "persistence off: every job pays the cold start and settings reset"},
    {"PD002", I::keep, "daemon flag; if persistence reads off, PM001 drains"},
    {"PD003", I::keep, "unit may stop later; persistence holds now"},
    {"PD006", I::keep, "unit failed; if persistence is off, PM001 drains"},
    {"PD010", I::keep, "the daemon runs, though outside its unit"},
    {"PD008", I::keep, "start skipped by ExecCondition; if persistence is off, PM001 drains"},
    {"PD009", I::keep, "guard ignored (systemd without ExecCondition=): matters at the next driver update"},
    {"PD007", I::keep, "no unit; persistence holds now"},
    {"PM002", I::keep, "legacy flag holds persistence now; lost at reboot"},
    {"PD004", I::keep, "not enabled for boot; persistence holds now"},
    {"PD005", I::keep, "daemon does not hold a GPU; persistence decides (PM001)"},
    {"UNK001", I::unknown, "nvmlInit failed for a reason that says nothing about the driver"},
    {"UNK002", I::unknown, "GPUs could not be counted"},
    {"UNK003", I::unknown, "a GPU could not be opened"},
    {"UNK004", I::unknown, "a fact the verdict needs could not be read"},
    {"UNK005", I::unknown, "systemd answered but the unit's state could not be read"},
    {"UNK006", I::unknown, "the process list could not be read"},
    {"UNK007", I::unknown, "the kernel log named with --kernel-log was not read"},
    {"UNK008", I::unknown, "systemd runs here but did not answer"},
    {"UNK009", I::unknown, "another gpuwarm command was timing or changing the GPUs: NVML left closed"},
    {"UNK010", I::unknown, "a saved snapshot lacks facts this gpuwarm reads: record it again"},
    {"UNK011", I::unknown, "--root not vouched for with --trust-root (as root): NVML left closed"},
    {"PM003", I::keep, "masked by other clients: PM001 drains as well"},
    {"PM004", I::keep, "the daemon holds the GPU"},
    {"NOTE001", I::keep, "facts that need root were not read"},
    {"NOTE002", I::keep, "systemd not reachable"},
    {"NOTE003", I::keep, "the kernel log was not read"},
};

SchedulerImpact impact_of(const Finding& f) {
  if (f.route == Route::note) {
    return I::keep;  // demoted (persistence optional) or a note by nature
  }
  if (f.route == Route::unknown) {
    return I::unknown;  // a rule that answers "cannot tell" (PD004 on an unread WantedBy) is never a keep
  }
  for (const auto& r : k_impacts) {
    if (f.rule_id == r.rule_id) {
      return r.impact;
    }
  }
  return f.route == Route::unknown ? I::unknown : I::keep;
}

std::string rule_words(const std::string& rule_id) {
  const RuleInfo* info = find_rule(rule_id);
  std::string name = info != nullptr ? info->name : rule_id;
  std::replace(name.begin(), name.end(), '-', ' ');
  return name;
}

// "PM001 persistence off: GPU 3,5"; node-level rules have no GPU list.
std::string describe(const Diagnosis& d, const std::string& rule_id) {
  std::set<unsigned> gpus;
  for (const auto& f : d.findings) {
    if (f.rule_id == rule_id && f.gpu) {
      gpus.insert(*f.gpu);
    }
  }
  std::string out = rule_id + " " + rule_words(rule_id);
  if (!gpus.empty()) {
    out += fmt::format(": GPU {}", fmt::join(gpus, ","));
  }
  // A tag says what the rule's name does not: "UNK009 nvml not opened: a probe timing GPUs", "PD005 gpu not held:
  // GPU 1: minor unread" (cannot tell, not "not held").
  if (auto tagged = std::find_if(d.findings.begin(), d.findings.end(),
                                 [&](const Finding& f) { return f.rule_id == rule_id && !f.tag.empty(); });
      tagged != d.findings.end()) {
    out += ": " + tagged->tag;
  }
  return out;
}

}  // namespace

std::span<const RuleImpact> scheduler_impacts() { return k_impacts; }

std::string fit_check_line(std::string line, std::size_t max_length) {
  max_length = std::max(max_length, k_min_check_length);
  if (line.size() > max_length) {
    // Cut where a character begins: half a UTF-8 character would be invalid text in a drain reason.
    std::size_t cut = max_length - 3;
    while (cut > 0 && (static_cast<unsigned char>(line[cut]) & 0xC0u) == 0x80u) {
      --cut;
    }
    line.resize(cut);
    line += "...";
  }
  return line;
}

const char* to_string(HealthStatus s) {
  switch (s) {
    case HealthStatus::ok: return "ok";
    case HealthStatus::problem: return "problem";
    case HealthStatus::unknown: return "unknown";
  }
  return "unknown";
}

bool every_gpu_read(const Snapshot& s) {
  if (!s.nvml.device_count.has() || s.nvml.gpus.size() < s.driver.kernel_gpus.size()) {
    return false;
  }
  if ((s.driver.unbound_gpus.has() && !s.driver.unbound_gpus->empty()) ||
      (s.driver.gpus_on_other_drivers.has() && !s.driver.gpus_on_other_drivers->empty())) {
    return false;  // on the bus, taken by no driver or by another one: in neither list
  }
  // An unread PCI list is not held against it: it only cross-checks NVML and the kernel, which agree here, and
  // a container often lacks the host's /proc/bus/pci.
  return std::all_of(s.nvml.gpus.begin(), s.nvml.gpus.end(),
                     [](const GpuFacts& g) { return g.handle_error.empty() && g.persistence.has(); });
}

HealthCheck health_check(const Diagnosis& d, std::size_t max_length, const std::vector<std::string>& only_rules,
                         bool every_gpu_read) {
  // Registry order (the runbook's): the first draining rule names the line; a definite problem outranks an
  // unknown, and an unknown outranks every "keep".
  std::vector<std::string> drains;
  std::vector<std::string> unknowns;
  // Rules whose finding leaves GPUs unread (no driver, no usable NVML, a lost or missing GPU): asked about
  // other rules only, these say the others could not be judged, which is unknown, never "not firing".
  static constexpr std::array<std::string_view, 6> k_leave_gpus_unread = {"DRV001", "DRV002", "DRV003", "DRV005",
                                                                          "DRV006", "GPU001"};
  for (const auto& f : d.findings) {
    const SchedulerImpact impact = impact_of(f);
    const bool selected =
        only_rules.empty() || std::find(only_rules.begin(), only_rules.end(), f.rule_id) != only_rules.end();
    const bool blinds = !selected && !every_gpu_read && impact == I::drain &&
                        std::find(k_leave_gpus_unread.begin(), k_leave_gpus_unread.end(), f.rule_id) !=
                            k_leave_gpus_unread.end();
    if (impact == I::keep || (impact == I::drain && !selected && !blinds)) {
      continue;
    }
    auto& list = impact == I::drain && !blinds ? drains : unknowns;
    if (std::find(list.begin(), list.end(), f.rule_id) == list.end()) {
      list.push_back(f.rule_id);
    }
  }
  HealthCheck out;
  const auto& deciding = !drains.empty() ? drains : unknowns;
  if (!deciding.empty()) {
    out.status = !drains.empty() ? HealthStatus::problem : HealthStatus::unknown;
    out.rule_id = deciding.front();
    std::string line = describe(d, out.rule_id);
    const std::size_t others = drains.size() + unknowns.size() - 1;
    if (others > 0) {
      line += fmt::format(" (+{} more)", others);
    }
    out.more = others;
    out.line = fit_check_line(line, max_length);
    return out;
  }
  out.status = HealthStatus::ok;
  // Healthy, or kept in service with something worth fixing: the verdict's rule says which. Asked about some
  // rules only, the line says they did not fire.
  if (!only_rules.empty()) {
    out.line = fit_check_line(fmt::format("OK {} not firing", fmt::join(only_rules, ",")), max_length);
    return out;
  }
  if (d.verdict.code != "healthy") {
    out.rule_id = d.verdict.rule_id;  // the line names it: so does the JSON
  }
  // Not "healthy": check does not read clocks, event reasons or the unit, so it says what it did confirm, in
  // the healthy finding's words ("OK 8 GPU(s) persistent, held by nvidia-persistenced": the count included).
  std::string confirmed = k_check_ok_line;
  for (const auto& f : d.findings) {
    if (f.rule_id == "OK000") {
      confirmed = "OK " + f.message;
    }
  }
  out.line = d.verdict.code == "healthy" ? confirmed : "OK " + describe(d, d.verdict.rule_id);
  out.line = fit_check_line(out.line, max_length);
  return out;
}

}  // namespace gpuwarm
