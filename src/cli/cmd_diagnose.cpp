#include <cstdio>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "core/exit_codes.h"
#include "core/host.h"
#include "core/strings.h"
#include "nvml/errors.h"
#include "output/diagnosis_output.h"
#include "rules/rule.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

struct DiagnoseOptions {
  CollectOptions collect;
  std::string snapshot_file;
  bool json = false;
  bool list_rules = false;
};

int list_rules(bool json) {
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rules()) {
      out.push_back({{"id", r.id}, {"name", r.name}, {"severity", to_string(r.severity)},
                     {"route", to_string(r.route)}, {"summary", r.summary}});
    }
    std::cout << dump_json(out) << "\n";
    return 0;
  }
  for (const auto& r : rules()) {
    std::cout << fmt::format("{:<8} {:<28} {:<15} {}\n", r.id, r.name, to_string(r.route), r.summary);
  }
  // The one table every NVML answer is routed by (nvml/errors.h).
  std::cout << "\nNVML return codes, by meaning, and the verdict each gives where it is returned\n"
               "(needed: persistence mode; conditional: event reasons, SM application clocks, minor;\n"
               "optional: every other query, shown with its reason, deciding nothing):\n\n";
  using nvml::Entry;
  constexpr Entry k_entries[] = {Entry::init, Entry::count, Entry::handle, Entry::needed, Entry::conditional,
                                 Entry::optional};
  auto print_row = [](std::string row) {
    row.erase(row.find_last_not_of(' ') + 1);
    std::cout << row << "\n";
  };
  std::string header = fmt::format("{:>4} {:<26} {:<18}", "CODE", "NAME", "MEANING");
  for (Entry e : k_entries) {
    header += fmt::format(" {:<15}", nvml::to_string(e));
  }
  print_row(header);
  for (const auto& info : nvml::return_table()) {
    std::string row = fmt::format("{:>4} {:<26} {:<18}", info.code, info.name, nvml::to_string(info.meaning));
    for (Entry e : k_entries) {
      row += fmt::format(" {:<15}", nvml::to_string(nvml::effect(e, info.meaning)));
    }
    print_row(row);
  }
  std::cout << "   *  any other number        other             (as other)\n";
  return 0;
}

}  // namespace

std::function<int()> setup_diagnose(CLI::App& sub, const GlobalOptions& global) {
  auto opts = std::make_shared<DiagnoseOptions>();
  opts->collect.full = false;
  opts->collect.one_shot = true;
  opts->collect.stand_aside = true;  // NVML stays closed while a probe or a change holds the node
  add_collect_options(sub, opts->collect);
  sub.add_flag("--full", opts->collect.full,
               "Read every NVML fact (max clocks, power, counters...), as `snapshot` does; slower by ~1 ms per "
               "query per GPU");
  auto* snap_opt = sub.add_option("--snapshot", opts->snapshot_file,
                                  "Diagnose a recorded snapshot (`gpuwarm snapshot --json` or `diagnose --json` "
                                  "output) instead of this node")
                       ->check(CLI::ExistingFile.description(""))
                       ->type_name("FILE");
  for (const char* name : {"--root", "--kernel-log", "--nvml", "--nvml-timeout", "--no-systemd", "--full"}) {
    snap_opt->excludes(sub.get_option(name));
  }
  sub.add_flag("--json", opts->json, "Print the diagnosis as JSON (schema_version 1), with the snapshot embedded");
  sub.add_flag("--list-rules", opts->list_rules, "List the rules, in runbook order, and exit");
  sub.footer(
      "Checks, in the runbook's order: driver loaded and NVML usable; kernel module and user space at the same\n"
      "version; nvidia-persistenced installed; thermal/power clock events; pinned application clocks;\n"
      "persistence per GPU; the daemon's flags, unit state and boot enablement; which GPUs it holds.\n"
      "Works read-only without root and lists what needed root.\n\n"
      "Exit codes:\n"
      "  0  healthy\n"
      "  1  gpuwarm could not run (unreadable or malformed --snapshot, I/O error)\n"
      "  2  bad command line (also a --snapshot FILE or --root DIR that does not exist)\n"
      "  3  action needed: the runbook applies (gpuwarm fix)\n"
      "  4  reboot pending: kernel module and user space differ\n"
      "  5  routed elsewhere: driver install, thermal/power (RAS) or pinned clocks\n"
      "  9  cannot tell: a fact the verdict needs could not be read (NVML error, timeout, no permission)\n"
      "  0 also covers \"persistence optional\": a GPU meant to power down when idle\n"
      "  and no job scheduler.\n\n"
      "Examples:\n"
      "  gpuwarm diagnose\n"
      "  gpuwarm diagnose --json | jq .verdict\n"
      "  gpuwarm diagnose --snapshot node7.json   # saved there by `gpuwarm snapshot`");

  return [opts, &global]() -> int {
    if (opts->list_rules) {
      return list_rules(opts->json);
    }
    auto loaded = snapshot_from_file_or_node(opts->snapshot_file, opts->collect);
    if (!loaded) {
      std::cerr << "gpuwarm: error: " << escape_control(loaded.error().message) << "\n";
      if (opts->json) {  // `| jq` gets a document either way, as from check, probe and watch
        std::cout << dump_json({{"kind", "gpuwarm-diagnosis"}, {"schema_version", 1}, {"hostname", host_name()},
                                {"error", loaded.error().message}, {"exit_code", to_int(ExitCode::tool_error)}})
                  << "\n";
      }
      return to_int(ExitCode::tool_error);
    }
    const Snapshot& snapshot = *loaded;
    Diagnosis diagnosis = diagnose(snapshot);
    if (opts->json) {
      std::cout << dump_json(render_diagnosis_json(snapshot, diagnosis)) << "\n";
    } else {
      std::cout << render_diagnosis_text(snapshot, diagnosis, Style::for_stdout(global.color));
    }
    std::cout.flush();
    return to_int(diagnosis.verdict.exit_code);
  };
}

}  // namespace gpuwarm
