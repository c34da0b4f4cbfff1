#include "cli/collect_options.h"

#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "core/deadline.h"
#include "core/fs.h"
#include "core/json_strings.h"
#include "snapshot/snapshot_json.h"

#include "systemd/service_manager.h"

namespace gpuwarm {

void add_collect_options(CLI::App& app, CollectOptions& options) {
  const char* group = "Where facts come from";
  app.add_option("--root", options.root,
                 "Read /proc, /sys, /dev and /run (and look for nvidia-persistenced) under DIR instead of /. "
                 "As root, DIR's libnvidia-ml is not loaded unless --trust-root says DIR is this host's own tree "
                 "(or --nvml names a library outside it)")
      ->check(CLI::ExistingDirectory.description(""))
      ->transform(from_working_directory())
      ->type_name("DIR")
      ->group(group);
  app.add_flag("--trust-root", options.root_trusted,
               "DIR of --root is this host's own / (mounted in a pod as /host): load its libnvidia-ml as root. "
               "Never for a container's or an unpacked image's tree, whose files pass ownership checks all the same")
      ->needs("--root")
      ->group(group);
  // A named log gpuwarm cannot read (a FIFO, a format it does not read) is UNK007: cannot tell, not "empty".
  existing_file_path(app.add_option("--kernel-log", options.kernel_log,
                                    "Scan FILE (dmesg, journalctl -k or kern.log text) instead of reading "
                                    "/dev/kmsg; one it cannot read is recorded as not read, and a verdict "
                                    "built on it is cannot tell (UNK007)"))
      ->type_name("FILE")
      ->group(group);
  existing_file_path(app.add_option("--nvml", options.nvml_library,
                                    "Load this NVML library file and no other. Without it: the loader's "
                                    "libnvidia-ml.so.1, then the driver locations of NixOS, the GPU Operator, "
                                    "cloud images, GKE, WSL2 and the distributions' library directories (under "
                                    "--root only those, under DIR; as root, one inside DIR only with --trust-root)"))
      ->group(group);
  app.add_option("--nvml-timeout", options.nvml_timeout_s,
                 "Give up on NVML (load, init and every GPU's reads) after SECONDS: a hung GPU or driver then gives "
                 "a \"cannot tell\" verdict instead of a hung command")
      ->check(finite_range(0.1, 3600.0))
      ->type_name("SECONDS")
      ->capture_default_str()
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast)  // a wrapper's default, then the site's own
      ->group(group);
  app.add_flag_callback(
         "--no-systemd", [&options] { options.use_systemd = false; },
         "Do not ask systemd about nvidia-persistenced.service (no D-Bus traffic)")
      ->group(group);
}

Snapshot collect_from_options(const CollectOptions& options) {
  std::unique_ptr<ServiceManager> services;
  if (options.use_systemd) {
    services = make_systemd_manager();
  }
  if (!options.stand_aside) {
    return collect_snapshot(options, services.get());
  }
  ReadingLocks reading{Paths(options.root)};
  CollectOptions reader = options;
  reader.nvml_not_opened = reading.busy;
  reader.nvml_not_opened_by = reading.busy_by;
  const int abandoned_before = abandoned_calls();
  Snapshot snapshot = collect_snapshot(reader, services.get());
  // A one-shot collection leaves NVML open until exit, and a call abandoned in this one is still inside NVML:
  // the GPUs are held until the process ends, and so are the locks (once: later collections do not open NVML).
  if (reading.busy.empty() && (options.one_shot || abandoned_calls() > abandoned_before)) {
    reading.keep_until_exit();
  }
  return snapshot;
}

Result<Snapshot> snapshot_from_file_or_node(const std::string& snapshot_file, const CollectOptions& options) {
  if (!snapshot_file.empty()) {
    return load_snapshot_file(snapshot_file);
  }
  return collect_from_options(options);
}

Result<ProbeRun> load_probe_run(const std::string& path) {
  auto text = read_file(path);
  if (!text) {
    return tl::unexpected(text.error());
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded()) {
    return fail(path + ": not valid JSON");
  }
  escape_strings(j);
  auto run = probe_from_json(j);
  if (!run) {
    return fail(path + ": " + run.error().message);
  }
  return run;
}

}  // namespace gpuwarm
