#include "output/diagnosis_output.h"

#include <algorithm>

#include <fmt/format.h>

#include "core/strings.h"
#include "output/table.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

template <class T>
std::string or_dash(const Fact<T>& f) {
  return f.has() ? fmt::format("{}", *f) : std::string("-");
}

std::string clock_pair(const Fact<unsigned>& now, const Fact<unsigned>& max) {
  if (!max.has()) {
    return or_dash(now);  // diagnose skips max clocks unless --full
  }
  return or_dash(now) + "/" + or_dash(max);
}

std::string colour_by_route(const Style& style, Route route, const std::string& text) {
  switch (route) {
    case Route::note: return style.green(text);
    case Route::fix: return style.yellow(text);
    default: return style.red(text);
  }
}

std::string severity_tag(const Style& style, const Finding& f) {
  if (f.rule_id == "OK000") {
    return style.green("OK  ");
  }
  switch (f.severity) {
    case Severity::critical: return style.red("CRIT");
    case Severity::warning: return style.yellow("WARN");
    case Severity::info: return style.cyan("NOTE");
  }
  return "NOTE";
}

std::string driver_line(const Snapshot& s) {
  std::string kernel = kernel_module_version(s);
  std::string user = user_space_version(s);
  std::string init = s.nvml.init_code.has()      ? fmt::format("NVML init {:.1f} ms ({})", s.nvml.init_ms, s.nvml.init_error)
                     : !s.nvml.not_opened.empty() ? "NVML not opened"
                                                  : "NVML not loaded";
  std::string flavour;
  if (s.driver.open_kernel_module.has()) {
    flavour = *s.driver.open_kernel_module ? " (open)" : " (proprietary)";
  }
  // "not loaded" only where the kernel says so: a loaded module whose version files could not be read (a
  // container without /proc/driver) is "version unknown".
  if (kernel.empty()) {
    kernel = s.driver.module_loaded ? "version unknown" : "not loaded";
    if (!s.driver.module_loaded && s.nvml.init_code.is(0)) {
      kernel = "unknown (no /proc/driver/nvidia or /sys/module/nvidia here, yet NVML answered)";
    }
  }
  return fmt::format("kernel module {}{} · user space {} · {}", kernel, flavour, user.empty() ? "unknown" : user,
                     init);
}

std::string nvml_line(const Snapshot& s) {
  if (!s.nvml.timed_out_at.empty()) {
    return fmt::format("did not answer in {:g} s (stuck in {})", s.nvml.timeout_s, s.nvml.timed_out_at);
  }
  if (!s.nvml.not_opened.empty()) {
    return "not opened: " + s.nvml.not_opened;
  }
  if (!s.nvml.library_path.has()) {
    constexpr std::string_view prefix = "NVML library not loaded: ";
    std::string_view why = s.nvml.library_path.missing;
    if (why.substr(0, prefix.size()) == prefix) {
      why.remove_prefix(prefix.size());
    }
    return "not loaded: " + std::string(why);
  }
  std::string out = *s.nvml.library_path;
  if (!s.nvml.library_found_by.empty()) {
    out += " (" + s.nvml.library_found_by + ")";
  }
  return out;
}

std::string daemon_line(const Snapshot& s) {
  std::string binary = s.daemon.binary.has() ? *s.daemon.binary : "not installed";
  if (s.daemon.binary.has() && !s.daemon.binary_found_by.empty()) {
    binary += " (" + s.daemon.binary_found_by + ")";
  }
  std::string out = binary;
  if (s.daemon.processes.empty()) {
    out += daemon_processes_listed(s) ? " · not running" : " · running? processes not listed: " +
                                                             s.daemon.processes_unread;
  }
  for (const auto& p : s.daemon.processes) {
    out += " · " + describe_daemon_process(p);
  }
  // Named like the daemon but not counted as it: said here too, not only in --json (an impostor, a
  // container's daemon).
  for (const auto& f : s.daemon.not_daemon) {
    out += fmt::format(" · pid {}: {}", f.pid, f.why);
  }
  for (const auto& f : s.daemon.foreign) {
    out += fmt::format(" · pid {}: {}", f.pid, f.why);
  }
  return out;
}

std::string service_line(const Snapshot& s) {
  const auto& svc = s.service;
  if (!svc.reachable) {
    return "not checked: " + svc.unreachable;
  }
  return fmt::format("{} · {} ({}){} · {}", svc.unit, or_dash(svc.active_state), or_dash(svc.sub_state),
                     start_skipped(svc) ? ", last start skipped by its ExecCondition" : "",
                     svc.unit_file_state.has() ? *svc.unit_file_state : "enablement unknown");
}

std::string kernel_log_line(const Snapshot& s) {
  const auto& log = s.kernel_log;
  if (!log.source.has()) {
    return "not read: " + log.source.missing;
  }
  std::string out = fmt::format("{}: {} record{}", *log.source, log.records, log.records == 1 ? "" : "s");
  std::size_t live = 0;
  for (const auto& m : log.mismatches) {
    live += m.after_module_load ? 1 : 0;
  }
  out += live > 0 ? fmt::format(" · {} API mismatch line(s)", live) : " · no API mismatch";
  if (log.legacy_persistence_notice) {
    out += " · legacy persistence notice";
  }
  return out;
}

nlohmann::json fact_json(const Fact<unsigned>& f) { return f.has() ? nlohmann::json(*f) : nlohmann::json(nullptr); }

}  // namespace

std::string held_by_daemon(const Snapshot& s, const GpuFacts& gpu) {
  if (!daemon_running(s)) {
    return daemon_processes_listed(s) ? "no" : "?";
  }
  auto held = daemon_held_minors(s);
  auto minor = gpu_minor(s, gpu);
  if (!minor || !held) {
    return "?";
  }
  return std::find(held->begin(), held->end(), *minor) != held->end() ? "yes" : "no";
}

std::string persistence_text(const Fact<bool>& persistence) {
  if (!persistence.has()) {
    return "unknown (" + persistence.missing + ")";
  }
  return *persistence ? "Enabled" : "Disabled";
}

std::string render_diagnosis_text(const Snapshot& s, const Diagnosis& d, const Style& style) {
  std::string out;
  // Every string below may come from a snapshot file or the node's own text
  // (unit files, process names): escaped before styling, never obeyed by the terminal.
  const auto esc = [](const std::string& text) { return escape_control(text); };
  out += style.bold(fmt::format("gpuwarm diagnose · {}", esc(s.hostname))) + "\n\n";

  if (!s.nvml.gpus.empty()) {
    TextTable table({style.bold("GPU"), style.bold("NAME"), style.bold("BUS ID"), style.bold("PERSISTENCE"),
                     style.bold("PSTATE"), style.bold("SM MHz"), style.bold("MEM MHz"),
                     style.bold("EVENT REASONS"), style.bold("HELD BY DAEMON")});
    for (const auto& gpu : s.nvml.gpus) {
      if (!gpu.handle_error.empty()) {
        table.add_row({std::to_string(gpu.index), style.red("cannot open: " + esc(gpu.handle_error))});
        continue;
      }
      std::string persistence = gpu.persistence.has() ? (*gpu.persistence ? style.green("Enabled")
                                                                           : style.yellow("Disabled"))
                                                      : style.red("unknown (" + esc(gpu.persistence.missing) + ")");
      table.add_row({std::to_string(gpu.index), esc(or_dash(gpu.name)), esc(or_dash(gpu.pci_bus_id)), persistence,
                     gpu.pstate.has() ? fmt::format("P{}", *gpu.pstate) : "-",
                     clock_pair(gpu.clocks.sm, gpu.max_clocks.sm), clock_pair(gpu.clocks.mem, gpu.max_clocks.mem),
                     gpu.event_reasons_active.has() ? clock_reason_list(*gpu.event_reasons_active) : "-",
                     held_by_daemon(s, gpu)});
    }
    out += table.render();
    // Facts that could not be read, with NVML's reason: never a silent "-".
    for (const auto& gpu : s.nvml.gpus) {
      std::vector<std::string> unread;
      for (const auto& q : gpu_queries(gpu)) {
        // NOT_SUPPORTED and its kin are answers ("this GPU has none"), and an
        // empty reason is a fact an older gpuwarm did not record: JSON keeps both.
        if (q.missing != nullptr && !q.missing->empty() &&
            nvml::meaning_of_reason(*q.missing) != nvml::Meaning::not_supported) {
          unread.push_back(fmt::format("{} ({}: {})", q.fact, q.query, *q.missing));
        }
      }
      if (!unread.empty()) {
        out += style.dim(esc(fmt::format("GPU {} unread: {}", gpu.index, fmt::join(unread, "; ")))) + "\n";
      }
    }
    out += "\n";
  } else if (s.nvml.device_count.has()) {
    out += "No GPU visible to NVML.\n\n";
  } else {
    out += "No GPU information: " + esc(s.nvml.device_count.missing) + "\n\n";
  }

  TextTable facts({style.dim("Driver"), esc(driver_line(s))});
  facts.add_row({style.dim("NVML"), esc(nvml_line(s))});
  facts.add_row({style.dim("Daemon"), esc(daemon_line(s))});
  facts.add_row({style.dim("Service"), esc(service_line(s))});
  facts.add_row({style.dim("Kernel log"), esc(kernel_log_line(s))});
  out += facts.render() + "\n";

  out += style.bold("Findings") + "\n";
  for (const auto& f : d.findings) {
    out += fmt::format("  {} {:<7} {}\n", severity_tag(style, f), esc(f.rule_id), esc(f.message));
    for (const auto& e : f.evidence) {
      out += "               " + style.dim("· " + esc(e)) + "\n";
    }
  }
  out += "\n";
  out += style.bold("Verdict: ") + colour_by_route(style, d.verdict.route, d.verdict.title) +
         style.dim(" [" + d.verdict.rule_id + "]") + "\n";
  out += style.bold("Next:    ") + esc(d.verdict.next_step) + "\n";
  return out;
}

nlohmann::json render_diagnosis_json(const Snapshot& s, const Diagnosis& d) {
  using nlohmann::json;
  json gpus = json::array();
  for (const auto& gpu : s.nvml.gpus) {
    json g = {{"index", gpu.index}};
    if (!gpu.handle_error.empty()) {
      g["error"] = gpu.handle_error;
    } else {
      g["name"] = gpu.name.has() ? json(*gpu.name) : json(nullptr);
      g["uuid"] = gpu.uuid.has() ? json(*gpu.uuid) : json(nullptr);
      g["pci_bus_id"] = gpu.pci_bus_id.has() ? json(*gpu.pci_bus_id) : json(nullptr);
      g["persistence"] = gpu.persistence.has() ? json(*gpu.persistence ? "Enabled" : "Disabled") : json(nullptr);
      g["pstate"] = gpu.pstate.has() ? json(fmt::format("P{}", *gpu.pstate)) : json(nullptr);
      g["clocks_mhz"] = {{"sm", fact_json(gpu.clocks.sm)},
                         {"sm_max", fact_json(gpu.max_clocks.sm)},
                         {"mem", fact_json(gpu.clocks.mem)},
                         {"mem_max", fact_json(gpu.max_clocks.mem)}};
      g["event_reasons_active"] =
          gpu.event_reasons_active.has() ? json(clock_reason_names(*gpu.event_reasons_active)) : json(nullptr);
      g["held_by_daemon"] = held_by_daemon(s, gpu);
      // Every fact that could not be read, with NVML's reason and what it means.
      json unread = json::array();
      for (const auto& q : gpu_queries(gpu)) {
        if (q.missing != nullptr && *q.missing != nvml::k_reason_not_read) {
          unread.push_back({{"fact", q.fact},
                            {"query", q.query},
                            {"reason", *q.missing},
                            {"meaning", *q.missing == nvml::k_reason_not_read_by_check
                                            ? "not-read"  // not asked for: says nothing about the GPU
                                            : nvml::to_string(nvml::meaning_of_reason(*q.missing))},
                            {"effect", nvml::to_string(effect_of(q.entry, *q.missing))}});
        }
      }
      g["unread"] = std::move(unread);
    }
    json ids = json::array();
    for (const auto& f : d.findings) {
      if (f.gpu && *f.gpu == gpu.index) {
        ids.push_back(f.rule_id);
      }
    }
    g["findings"] = ids;
    gpus.push_back(std::move(g));
  }

  json findings = json::array();
  for (const auto& f : d.findings) {
    const RuleInfo* rule = find_rule(f.rule_id);
    findings.push_back({{"rule_id", f.rule_id},
                        {"name", rule != nullptr ? rule->name : "healthy"},
                        {"severity", to_string(f.severity)},
                        {"route", to_string(f.route)},
                        {"gpu", f.gpu ? json(*f.gpu) : json(nullptr)},
                        {"message", f.message},
                        {"next_step", f.next_step},
                        {"tag", f.tag},  // what the check line adds after the rule's name; "" for most
                        {"evidence", f.evidence}});
  }

  return {{"schema_version", k_diagnosis_schema_version},
          {"kind", "gpuwarm-diagnosis"},
          {"hostname", s.hostname},
          {"taken_at", s.collected_at},
          {"exit_code", to_int(d.verdict.exit_code)},
          {"verdict",
           {{"code", d.verdict.code},
            {"route", to_string(d.verdict.route)},
            {"rule_id", d.verdict.rule_id},
            {"title", d.verdict.title},
            {"next_step", d.verdict.next_step},
            {"exit_code", to_int(d.verdict.exit_code)}}},
          {"driver",
           {{"kernel_module", kernel_module_version(s)},
            {"user_space", user_space_version(s)},
            {"nvml_init", s.nvml.init_code.has() ? json(s.nvml.init_error) : json(nullptr)},
            {"nvml_init_ms", s.nvml.init_ms},
            {"nvml_library", s.nvml.library_path.has() ? json(*s.nvml.library_path) : json(nullptr)},
            {"nvml_found_by", s.nvml.library_found_by},
            {"nvml_timed_out_at", s.nvml.timed_out_at.empty() ? json(nullptr) : json(s.nvml.timed_out_at)},
            {"nvml_not_opened", s.nvml.not_opened.empty() ? json(nullptr) : json(s.nvml.not_opened)}}},
          {"gpus", gpus},
          {"findings", findings},
          {"needs_root", s.needs_root},
          {"snapshot", snapshot_to_json(s)}};
}

}  // namespace gpuwarm
