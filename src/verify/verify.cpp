#include "verify/verify.h"

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "core/strings.h"
#include "nvml/errors.h"

#include "output/diagnosis_output.h"
#include "output/table.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm {

namespace {

// A check the user did not ask for is skipped by choice, not for want of a fact.
constexpr std::string_view k_not_requested = "not requested";

// Without systemd a unit check cannot run here (skip); where systemd runs but did not answer, what it would
// have said is unknown (fail): a unit not enabled for boot must not pass unseen.
bool unit_unread(const Snapshot& s, CheckResult& c) {
  if (s.service.reachable) {
    return false;
  }
  if (manager_may_run(s.service) && !s.service.not_asked) {
    c.status = CheckStatus::fail;
    c.detail = "cannot tell: " + s.service.unreachable;
  } else {
    c.detail = "not available: " + s.service.unreachable;
  }
  return true;
}

CheckResult unit_check(const Snapshot& s, const char* id, const char* title, const Fact<std::string>& fact,
                       const std::vector<std::string>& good) {
  CheckResult c{id, title, CheckStatus::skip, ""};
  if (unit_unread(s, c)) {
    return c;
  }
  if (!fact.has()) {
    c.status = CheckStatus::fail;
    c.detail = "unknown: " + fact.missing;
    return c;
  }
  bool ok = std::find(good.begin(), good.end(), *fact) != good.end();
  c.status = ok ? CheckStatus::pass : CheckStatus::fail;
  c.detail = *fact;
  return c;
}

// Enabled, or static and pulled in by another unit (Ubuntu's unit, wanted through a udev rule).
CheckResult boot_check(const Snapshot& s) {
  CheckResult c{"unit-enabled", "the unit starts at boot", CheckStatus::skip, ""};
  if (unit_unread(s, c)) {
    return c;
  }
  std::string decided;
  std::optional<bool> at_boot = unit_starts_at_boot(s.service, &decided);
  c.status = at_boot.value_or(false) ? CheckStatus::pass : CheckStatus::fail;
  c.detail = at_boot ? decided : "unknown: " + decided;
  return c;
}

CheckResult daemon_running_check(const Snapshot& s) {
  CheckResult c{"daemon-running", "nvidia-persistenced is running with persistence on", CheckStatus::fail, ""};
  if (s.daemon.processes.empty() && !s.daemon.processes_unread.empty()) {
    c.detail = "cannot tell: processes not listed (" + s.daemon.processes_unread + ")";
    return c;
  }
  if (s.daemon.processes.empty()) {
    c.detail = "no nvidia-persistenced process of this host";
    for (const auto& f : s.daemon.foreign) {
      c.detail += fmt::format("; pid {} runs in {}", f.pid, f.why);
    }
    for (const auto& f : s.daemon.not_daemon) {
      c.detail += fmt::format("; pid {} {}", f.pid, f.why);
    }
    return c;
  }
  std::vector<std::string> lines;
  bool flag = false;
  bool unread = false;  // whether it runs with persistence on cannot be told: not a pass
  for (const auto& p : s.daemon.processes) {
    lines.push_back(describe_daemon_process(p));
    flag = flag || has_arg(p.argv, k_no_pm_flag);
    unread = unread || !p.argv_missing.empty();
  }
  c.status = flag || unread ? CheckStatus::fail : CheckStatus::pass;
  c.detail = fmt::format("{}", fmt::join(lines, "; ")) + (flag ? " (runs with --no-persistence-mode)" : "");
  return c;
}

// Over the reading after the settle, and every later sample: a GPU Enabled after the settle that reads Disabled a
// moment later (the de-initialization the samples are there to catch) does not pass.
CheckResult persistence_check(const Snapshot& s, const std::vector<Snapshot>& samples) {
  CheckResult c{"persistence", "every GPU reads persistence Enabled", CheckStatus::fail, ""};
  if (s.nvml.gpus.empty()) {
    c.detail = s.nvml.device_count.has() ? "NVML sees no GPU" : "no GPU facts: " + s.nvml.device_count.missing;
    return c;
  }
  std::vector<std::string> bad;
  std::vector<std::string> daemon_view;
  auto held = daemon_held_minors(s);
  for (const auto& g : s.nvml.gpus) {
    if (!g.handle_error.empty()) {
      bad.push_back(fmt::format("GPU {}: {}", g.index, g.handle_error));
    } else if (auto minor = gpu_minor(s, g); g.persistence.is(false) && held && minor &&
                                               std::find(held->begin(), held->end(), *minor) != held->end()) {
      // As diagnose (PM004): the daemon's open handle is what keeps it initialized.
      daemon_view.push_back(fmt::format("GPU {}: NVML says Disabled but the daemon holds /dev/nvidia{}", g.index,
                                        *minor));
    } else if (!g.persistence.is(true)) {
      bad.push_back(fmt::format("GPU {}: {}", g.index, persistence_text(g.persistence)));
    }
  }
  std::map<unsigned, unsigned> disabled_later;  // GPU index -> samples after the first that read it Disabled
  for (std::size_t k = 1; k < samples.size(); ++k) {
    auto held_then = daemon_held_minors(samples[k]);
    for (const auto& g : samples[k].nvml.gpus) {
      const auto minor = gpu_minor(samples[k], g);
      const bool daemon_holds = held_then && minor && std::find(held_then->begin(), held_then->end(), *minor) != held_then->end();
      if (g.handle_error.empty() && g.persistence.is(false) && !daemon_holds) {
        ++disabled_later[g.index];
      }
    }
  }
  for (const auto& [index, count] : disabled_later) {
    bad.push_back(fmt::format("GPU {}: Disabled in {} of the {} samples after the settle", index, count,
                              samples.size() - 1));
  }
  for (const KernelGpu* kg : gpus_nvml_missed(s)) {
    bad.push_back(fmt::format("{} ({}): the driver lists it, NVML does not show it: unread", kg->bus_id, kg->model));
  }
  if (nvml_may_miss_gpus(s)) {
    bad.push_back(fmt::format("cannot tell: NVML shows {} GPU(s), fewer than the device nodes or the daemon's handles "
                              "say, and the driver's GPU list is unread ({})",
                              s.nvml.gpus.size(), s.driver.kernel_gpus_unread));
  }
  c.status = bad.empty() ? CheckStatus::pass : CheckStatus::fail;
  c.detail = bad.empty() ? fmt::format("{} of {} GPUs Enabled", s.nvml.gpus.size() - daemon_view.size(),
                                       s.nvml.gpus.size())
                         : fmt::format("{}", fmt::join(bad, "; "));
  if (!daemon_view.empty()) {
    c.detail += fmt::format("; {} (trusted)", fmt::join(daemon_view, "; "));
  }
  return c;
}

CheckResult holds_check(const Snapshot& s) {
  CheckResult c{"daemon-holds-gpus", "the daemon holds every GPU NVML sees", CheckStatus::skip, ""};
  if (s.daemon.processes.empty()) {
    c.status = CheckStatus::fail;
    c.detail = s.daemon.processes_unread.empty() ? "daemon not running"
                                                 : "cannot tell: processes not listed (" + s.daemon.processes_unread + ")";
    return c;
  }
  // Zero GPUs is not "every GPU held": there is nothing the daemon could be holding.
  if (reachable_gpus(s).empty()) {
    c.status = CheckStatus::fail;
    c.detail = s.nvml.device_count.has() ? "NVML sees no GPU" : "no GPU facts: " + s.nvml.device_count.missing;
    return c;
  }
  auto held_minors = daemon_held_minors(s);
  if (!held_minors) {
    // Skipped only where not being root is the reason (verify's help says so); any other unread is unknown.
    const std::string why = daemon_held_minors_missing(s);
    if (why == k_open_files_need_root) {
      c.detail = "not checked: reading the daemon's open files needs root";
    } else {
      c.status = CheckStatus::fail;
      c.detail = "cannot tell: the daemon's open files were not read (" + why + ")";
    }
    return c;
  }
  const std::vector<unsigned>& held = *held_minors;
  std::vector<std::string> missing;
  for (const GpuFacts* g : reachable_gpus(s)) {
    const std::optional<unsigned> minor = gpu_minor(s, *g);
    if (!minor) {
      // Which device file is this GPU's is unknown, so whether the daemon holds it is too: not a pass.
      missing.push_back(fmt::format("GPU {} (its minor number could not be read: {})", g->index, g->minor.missing));
    } else if (std::find(held.begin(), held.end(), *minor) == held.end()) {
      missing.push_back(fmt::format("/dev/nvidia{} (GPU {})", *minor, g->index));
    }
  }
  for (const KernelGpu* kg : gpus_nvml_missed(s)) {
    if (!kg->minor.has() || std::find(held.begin(), held.end(), *kg->minor) == held.end()) {
      missing.push_back(kg->minor.has() ? fmt::format("/dev/nvidia{} ({}, which NVML does not show)", *kg->minor, kg->bus_id)
                                        : fmt::format("{} (NVML does not show it; its minor unread)", kg->bus_id));
    }
  }
  c.status = missing.empty() ? CheckStatus::pass : CheckStatus::fail;
  c.detail = missing.empty() ? fmt::format("holds /dev/nvidia{}", fmt::join(held, ", /dev/nvidia"))
                             : "not held: " + fmt::format("{}", fmt::join(missing, ", "));
  return c;
}

// The clocks check and, where its only failure is samples that left NVML closed on purpose, why they did.
struct ClocksVerdict {
  CheckResult check;
  std::string not_opened;     // "" unless every unanswered sample stood aside and nothing else failed
  std::string not_opened_by;
};

// Steady means every GPU read in every sample: a sample that did not read a GPU (NVML not initialized, left
// closed, the GPU not attached) is no evidence of steadiness, and one sample shows no movement at all.
ClocksVerdict clocks_check(const Snapshot& after, const std::vector<Snapshot>& samples) {
  ClocksVerdict v{{"clocks", "clocks sit at a steady floor with benign event reasons", CheckStatus::skip, ""}, "", ""};
  CheckResult& c = v.check;
  if (samples.size() < 2) {
    // By the caller's choice (--samples 1), as a DCGM run not asked for: not listed as unchecked for want of a fact.
    c.detail = samples.empty() ? "no samples taken"
                               : std::string(k_not_requested) +
                                     ": one sample shows no movement (--samples 2 or more checks the clocks)";
    return v;
  }
  struct Seen {
    unsigned min = ~0u;
    unsigned max = 0;
    std::uint64_t bad_reasons = 0;
    bool busy = false;
    unsigned n = 0;                // samples that read its SM clock
    unsigned faults = 0;           // samples in which it answered with a GPU fault (lost, reset needed, ...)
    std::string fault;
    bool reasons_read = false;
    std::string sm_missing;       // why the SM clock was not read (last sample)
    std::string reasons_missing;  // why the event reasons were not read, unless NOT_SUPPORTED
  };
  // Every GPU the reading after the settle saw, and any a sample saw besides.
  std::map<unsigned, Seen> per_gpu;
  for (const auto& g : after.nvml.gpus) {
    per_gpu[g.index];
  }
  for (const auto& s : samples) {
    for (const auto& g : s.nvml.gpus) {
      per_gpu[g.index];
    }
  }
  unsigned stood_aside = 0;  // samples that left NVML closed on purpose (another gpuwarm command held the node)
  for (const auto& s : samples) {
    const std::string sample_missing = !s.nvml.not_opened.empty() ? "NVML left closed: " + s.nvml.not_opened
                                       : s.nvml.device_count.has() ? "not listed by NVML"
                                                                   : "NVML: " + s.nvml.device_count.missing;
    if (!s.nvml.not_opened.empty()) {
      ++stood_aside;
      if (v.not_opened.empty()) {
        v.not_opened = s.nvml.not_opened;
        v.not_opened_by = s.nvml.not_opened_by;
      }
    }
    for (auto& [index, seen] : per_gpu) {
      const auto it = std::find_if(s.nvml.gpus.begin(), s.nvml.gpus.end(),
                                   [index = index](const GpuFacts& g) { return g.index == index; });
      if (it == s.nvml.gpus.end()) {
        seen.sm_missing = sample_missing;
        continue;
      }
      const GpuFacts& g = *it;
      if (!g.handle_error.empty()) {
        if (nvml::meaning_of_reason(g.handle_error) == nvml::Meaning::gpu_fault) {
          ++seen.faults;
          seen.fault = g.handle_error;
        }
        seen.sm_missing = g.handle_error;
        continue;
      }
      if (g.clocks.sm.has()) {
        seen.min = std::min(seen.min, *g.clocks.sm);
        seen.max = std::max(seen.max, *g.clocks.sm);
        ++seen.n;
      } else {
        seen.sm_missing = g.clocks.sm.missing;
      }
      if (g.event_reasons_active.has()) {
        seen.reasons_read = true;
        seen.bad_reasons |= *g.event_reasons_active &
                            (clock_reason::thermal_or_power | clock_reason::applications_clocks_setting);
      } else if (nvml::meaning_of_reason(g.event_reasons_active.missing) == nvml::Meaning::not_supported) {
        seen.reasons_read = true;  // this GPU has none to report: an answer
      } else {
        seen.reasons_missing = g.event_reasons_active.missing;
      }
      seen.busy = seen.busy || g.compute_processes.value_or(0) > 0;
    }
  }
  c.status = CheckStatus::fail;
  if (per_gpu.empty()) {
    // Samples were taken and no GPU answered: nothing was verified.
    c.detail = stood_aside == samples.size() ? "cannot tell: NVML was left closed in every sample"
                                             : "no GPU answered in any sample";
    if (stood_aside != samples.size()) {
      v.not_opened.clear();
    }
    return v;
  }
  std::vector<std::string> problems;  // what was read and is wrong
  std::vector<std::string> unknowns;  // what was not read
  std::vector<std::string> ranges;
  for (const auto& [index, seen] : per_gpu) {
    if (seen.faults > 0) {
      problems.push_back(fmt::format("GPU {}: {} in {} of {} samples", index, seen.fault, seen.faults, samples.size()));
    }
    if (seen.n < samples.size()) {
      unknowns.push_back(fmt::format("cannot tell: GPU {}'s SM clock read in {} of {} samples ({})", index, seen.n,
                                     samples.size(), seen.sm_missing));
    }
    if (seen.n > 0 && !seen.reasons_read) {
      unknowns.push_back(fmt::format("GPU {}: clock event reasons unread ({})", index, seen.reasons_missing));
    }
    if (seen.bad_reasons != 0) {
      problems.push_back(fmt::format("GPU {}: {}", index, clock_reason_list(seen.bad_reasons)));
    }
    if (seen.n > 0) {
      ranges.push_back(fmt::format("GPU {} SM {}-{} MHz", index, seen.min, seen.max));
      double spread = seen.max > 0 ? static_cast<double>(seen.max - seen.min) / seen.max : 0.0;
      if (!seen.busy && spread > k_idle_clock_swing) {
        problems.push_back(fmt::format("GPU {}: idle SM clock swung {}-{} MHz", index, seen.min, seen.max));
      }
    }
  }
  // A sample that stood aside explains the check's failure only where nothing read was wrong and every sample
  // that did not stand aside read every GPU.
  const bool explained = problems.empty() && stood_aside > 0 &&
                         std::all_of(per_gpu.begin(), per_gpu.end(), [&](const auto& entry) {
                           return entry.second.n + stood_aside == samples.size() && entry.second.reasons_read;
                         });
  if (!explained) {
    v.not_opened.clear();
    v.not_opened_by.clear();
  }
  problems.insert(problems.end(), unknowns.begin(), unknowns.end());
  c.status = problems.empty() ? CheckStatus::pass : CheckStatus::fail;
  c.detail = fmt::format("{} samples; {}", samples.size(),
                         problems.empty() ? fmt::format("{}", fmt::join(ranges, ", "))
                                          : fmt::format("{}", fmt::join(problems, "; ")));
  return v;
}

}  // namespace

VerifyReport evaluate_verify(const VerifyInputs& in) {
  VerifyReport r;
  const Snapshot& s = in.after;
  r.checks.push_back(unit_check(s, "unit-active", "the unit is active now", s.service.active_state, {"active"}));
  if (start_skipped(s.service)) {  // not a failure of the daemon's: say where the reason is
    r.checks.back().detail += ": its ExecCondition (gpuwarm guard) skipped the start (Result=exec-condition; "
                              "`journalctl -u nvidia-persistenced.service -b` says why)";
  }
  r.checks.push_back(boot_check(s));
  r.checks.push_back(daemon_running_check(s));
  r.checks.push_back(persistence_check(s, in.samples));
  r.checks.push_back(holds_check(s));
  ClocksVerdict clocks = clocks_check(s, in.samples);
  r.checks.push_back(clocks.check);
  CheckResult dcgm{"dcgm", "DCGM diagnostic", CheckStatus::skip, ""};
  if (!in.dcgm) {
    dcgm.detail = std::string(k_not_requested) + " (--dcgm-level 1..4)";
  } else if (!in.dcgm->available) {
    dcgm.detail = "not available: " + in.dcgm->detail;
  } else {
    dcgm.status = in.dcgm->passed ? CheckStatus::pass : CheckStatus::fail;
    dcgm.detail = in.dcgm->detail;
  }
  r.checks.push_back(dcgm);
  r.passed = std::none_of(r.checks.begin(), r.checks.end(),
                          [](const CheckResult& c) { return c.status == CheckStatus::fail; });
  // Cannot tell only where every failure is one NVML would have answered had it been opened: a unit that is not
  // active fails whatever the GPUs say, and so does a GPU read Disabled in a reading that did open NVML.
  auto failed_only = [&r](std::initializer_list<std::string_view> ids) {
    return std::all_of(r.checks.begin(), r.checks.end(), [&ids](const CheckResult& c) {
      return c.status != CheckStatus::fail || std::find(ids.begin(), ids.end(), c.id) != ids.end();
    });
  };
  if (!r.passed && !s.nvml.not_opened.empty() && failed_only({"persistence", "daemon-holds-gpus", "clocks"})) {
    r.nvml_not_opened = s.nvml.not_opened;
    r.nvml_not_opened_by = s.nvml.not_opened_by;
  } else if (!r.passed && !clocks.not_opened.empty() && failed_only({"clocks"})) {
    r.nvml_not_opened = clocks.not_opened;
    r.nvml_not_opened_by = clocks.not_opened_by;
  }
  return r;
}

const char* to_string(CheckStatus s) {
  switch (s) {
    case CheckStatus::pass: return "pass";
    case CheckStatus::fail: return "fail";
    case CheckStatus::skip: return "skip";
  }
  return "skip";
}

std::string render_verify_text(const VerifyInputs& in, const VerifyReport& report) {
  std::string out;
  if (!in.after.nvml.gpus.empty()) {
    TextTable t({"GPU", "BUS ID", "PERSISTENCE BEFORE", "AFTER"});
    for (const auto& g : in.after.nvml.gpus) {
      std::string before = "-";
      for (const auto& b : in.before.nvml.gpus) {
        if (b.index == g.index) {
          before = b.handle_error.empty() ? persistence_text(b.persistence) : b.handle_error;
        }
      }
      t.add_row({std::to_string(g.index), g.pci_bus_id.value_or("-"), before,
                 g.handle_error.empty() ? persistence_text(g.persistence) : g.handle_error});
    }
    out += t.render() + "\n";
  }
  for (const auto& c : report.checks) {
    const char* tag = c.status == CheckStatus::pass ? "PASS" : c.status == CheckStatus::fail ? "FAIL" : "SKIP";
    out += fmt::format("{}  {:<18} {}: {}\n", tag, c.id, c.title, c.detail);
  }
  if (!report.passed && !report.nvml_not_opened.empty()) {
    out += "\nCannot tell: NVML was left closed (" + report.nvml_not_opened +
           (report.nvml_not_opened_by == k_untrusted_root
                ? "); add --trust-root if that tree is this host's own /.\n"
                : "); verify again once that command has finished.\n");
    return out;
  }
  if (!report.passed) {
    out += "\nVerification failed.\n";
    return out;
  }
  // A check that could not run here is not a pass: the summary names it, so "Verified." means all of them.
  std::vector<std::string> skipped;
  for (const auto& c : report.checks) {
    if (c.status == CheckStatus::skip && !c.detail.starts_with(k_not_requested)) {
      skipped.push_back(c.id);
    }
  }
  out += skipped.empty() ? "\nVerified.\n"
                         : fmt::format("\nVerified, except what could not be checked here: {}.\n",
                                       fmt::join(skipped, ", "));
  return out;
}

nlohmann::json render_verify_json(const VerifyInputs& in, const VerifyReport& report) {
  nlohmann::json checks = nlohmann::json::array();
  for (const auto& c : report.checks) {
    checks.push_back({{"id", c.id}, {"title", c.title}, {"status", to_string(c.status)}, {"detail", c.detail}});
  }
  nlohmann::json gpus = nlohmann::json::array();
  for (const auto& g : in.after.nvml.gpus) {
    nlohmann::json before = nullptr;
    for (const auto& b : in.before.nvml.gpus) {
      if (b.index == g.index && b.persistence.has()) {
        before = *b.persistence ? "Enabled" : "Disabled";
      }
    }
    // The UUID and whether the daemon holds it let fleet-summary place the report and read a GPU the daemon keeps
    // initialized (NVML's flag Disabled, PM004) as the check did.
    gpus.push_back({{"index", g.index},
                    {"uuid", g.uuid.has() ? nlohmann::json(*g.uuid) : nlohmann::json(nullptr)},
                    {"pci_bus_id", g.pci_bus_id.has() ? nlohmann::json(*g.pci_bus_id) : nlohmann::json(nullptr)},
                    {"persistence_before", before},
                    {"persistence_after", g.persistence.has() ? nlohmann::json(*g.persistence ? "Enabled" : "Disabled")
                                                              : nlohmann::json(nullptr)},
                    {"held_by_daemon", held_by_daemon(in.after, g)}});
  }
  // kind, hostname and time let `gpuwarm fleet-summary` read a saved verify report on its own.
  return {{"kind", "gpuwarm-verify"}, {"schema_version", 1}, {"hostname", in.after.hostname}, {"taken_at", in.after.collected_at},
          {"passed", report.passed},  {"checks", checks},
          {"nvml_not_opened", report.nvml_not_opened.empty() ? nlohmann::json(nullptr)
                                                               : nlohmann::json(report.nvml_not_opened)},
          {"nvml_not_opened_by", report.nvml_not_opened.empty() ? nlohmann::json(nullptr)
                                                                  : nlohmann::json(report.nvml_not_opened_by)},
          {"gpus", gpus}};
}

namespace {

// Every "status" string in DCGM's document, whatever its nesting (test_categories[].tests[].results[] in DCGM 3
// and 4 alike): "Pass", "Fail", "Warn", "Skip".
void collect_dcgm_statuses(const nlohmann::json& j, std::map<std::string, int>& counts, int depth = 0) {
  if (depth > 32) {
    return;
  }
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (it.key() == "status" && it.value().is_string()) {
        ++counts[it.value().get<std::string>()];
      } else {
        collect_dcgm_statuses(it.value(), counts, depth + 1);
      }
    }
  } else if (j.is_array()) {
    for (const auto& e : j) {
      collect_dcgm_statuses(e, counts, depth + 1);
    }
  }
}

}  // namespace

DcgmOutcome judge_dcgm_diag(int level, int exit_code, const std::string& output, bool truncated) {
  DcgmOutcome out;
  out.available = true;
  const std::string what = fmt::format("dcgmi diag -r {}", level);
  if (truncated) {
    out.detail = what + ": cannot tell: its output was cut at the size limit";
    return out;
  }
  nlohmann::json doc = nlohmann::json::parse(output, nullptr, false);
  std::map<std::string, int> counts;
  if (!doc.is_discarded()) {
    collect_dcgm_statuses(doc, counts);
  }
  int results = 0;
  int fails = 0;
  std::string unexpected;  // a status DCGM does not give a test result: not read as a pass
  for (const auto& [status, n] : counts) {
    results += n;
    const std::string lower = to_lower(status);
    if (lower == "fail") {
      fails += n;
    } else if (lower != "pass" && lower != "warn" && lower != "skip" && unexpected.empty()) {
      unexpected = status;
    }
  }
  if (fails > 0) {
    out.detail = fmt::format("{}: {} test result(s) Fail", what, fails);
  } else if (exit_code != 0) {
    out.detail = fmt::format("{}: exited {}", what, exit_code);
  } else if (doc.is_discarded() || results == 0) {
    out.detail = what + (doc.is_discarded() ? ": cannot tell: its output is not JSON" : ": cannot tell: no test result in its output");
  } else if (!unexpected.empty()) {
    out.detail = fmt::format("{}: cannot tell: a result reads \"{}\"", what, escape_control(unexpected));
  } else if (!counts.contains("Pass")) {
    out.detail = fmt::format("{}: cannot tell: no test ran (every result Skip)", what);
  } else {
    out.passed = true;
    out.detail = fmt::format("{}: no failures ({} result(s){})", what, results,
                             counts.contains("Warn") ? fmt::format(", {} Warn", counts["Warn"]) : "");
  }
  return out;
}

}  // namespace gpuwarm
