// `gpuwarm metrics`: one collection (the facts and rules of `diagnose`), printed
// as Prometheus text exposition, or written for node_exporter's textfile
// collector. NVML is opened for this run only: a watcher that kept it open
// would keep the GPUs initialized and hide the de-initialization it watches.

#include <chrono>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "core/exit_codes.h"
#include "core/safe_write.h"
#include "output/metrics.h"
#include "rules/rule.h"
#include "snapshot/snapshot_json.h"
#include "version_info.h"  // generated: GPUWARM_GIT_COMMIT

namespace gpuwarm {

namespace {

constexpr const char* k_default_textfile_dir = "/var/lib/prometheus/node-exporter";  // Debian's node_exporter

struct MetricsOptions {
  CollectOptions collect;
  std::string snapshot_file;
  std::string textfile_dir;
};

}  // namespace

std::function<int()> setup_metrics(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<MetricsOptions>();
  opts->collect.full = false;
  opts->collect.one_shot = true;
  add_collect_options(sub, opts->collect);
  auto* snap_opt = sub.add_option("--snapshot", opts->snapshot_file,
                                  "Render a recorded snapshot (`gpuwarm snapshot --json`) instead of this node")
                       ->check(CLI::ExistingFile.description(""))
                       ->type_name("FILE");
  for (const char* name : {"--root", "--kernel-log", "--nvml", "--nvml-timeout", "--no-systemd"}) {
    snap_opt->excludes(sub.get_option(name));
  }
  sub.add_option("--textfile", opts->textfile_dir,
                 fmt::format("Write DIR/gpuwarm.prom for node_exporter's textfile collector (a temporary file in "
                             "DIR renamed over it, mode 0644) instead of printing; DIR defaults to {}",
                             k_default_textfile_dir))
      ->expected(0, 1)
      ->default_str(k_default_textfile_dir)
      ->type_name("DIR");
  sub.footer(
      "Metrics (gauges, base units): gpuwarm_gpu_persistence_mode, gpuwarm_gpu_held_by_persistenced,\n"
      "gpuwarm_gpu_held_by_other_clients, gpuwarm_gpu_sm_clock_hertz, gpuwarm_gpu_clock_event_reason_active\n"
      "{reason}, gpuwarm_gpu_fact_unknown{fact,reason} (per GPU, labels gpu, uuid, pci_bus_id);\n"
      "gpuwarm_persistenced_running, gpuwarm_persistenced_unit_active/_enabled, gpuwarm_driver_info,\n"
      "gpuwarm_driver_reboot_pending, gpuwarm_nvml_init_seconds, gpuwarm_verdict{verdict},\n"
      "gpuwarm_finding{rule_id,severity}, gpuwarm_fact_unknown{fact,reason}, gpuwarm_build_info,\n"
      "gpuwarm_last_run_timestamp_seconds, gpuwarm_collect_duration_seconds.\n"
      "A fact that could not be read is never exported as 0: its series is absent and *_fact_unknown says why.\n"
      "NVML is opened and closed within the run. Alert rules: contrib/prometheus/gpuwarm.rules.yml;\n"
      "a timer for the textfile: contrib/systemd/gpuwarm-metrics.{service,timer}.\n\n"
      "Exit codes: 0 metrics printed or written (whatever the verdict), 1 could not read --snapshot or write\n"
      "the textfile, 2 bad command line.\n\n"
      "Examples:\n"
      "  gpuwarm metrics | promtool check metrics\n"
      "  gpuwarm metrics --textfile\n"
      "  gpuwarm metrics --snapshot examples/h100-legacy-flag.json");

  return [opts, &sub]() -> int {
    auto loaded = snapshot_from_file_or_node(opts->snapshot_file, opts->collect);
    if (!loaded) {
      std::cerr << "gpuwarm metrics: " << loaded.error().message << "\n";
      return to_int(ExitCode::tool_error);
    }
    const Snapshot& snapshot = *loaded;
    Diagnosis diagnosis = diagnose(snapshot);
    MetricsRun run{GPUWARM_VERSION, GPUWARM_GIT_COMMIT,
                   std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()};
    std::string text = render_metrics(snapshot, diagnosis, run);
    if (sub.get_option("--textfile")->count() == 0) {
      std::cout << text;
      std::cout.flush();
      return std::cout ? to_int(ExitCode::healthy) : to_int(ExitCode::tool_error);
    }
    std::string dir = opts->textfile_dir.empty() ? k_default_textfile_dir : opts->textfile_dir;
    std::string path = dir + "/gpuwarm.prom";
    // node_exporter reads the directory at every scrape: never a half-written file (temporary file in the
    // same directory, renamed over the old one). The directory belongs to node_exporter's package.
    auto written = write_file_atomically(path, text, WriteOptions{"/", 0644, 0755, false});
    if (!written) {
      std::cerr << "gpuwarm metrics: cannot write " << path << ": " << written.error().message << "\n";
      return to_int(ExitCode::tool_error);
    }
    return to_int(ExitCode::healthy);
  };
}

}  // namespace gpuwarm
