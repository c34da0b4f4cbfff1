// `gpuwarm metrics`: one collection (the facts and rules of `diagnose`), printed
// as Prometheus text exposition, written for node_exporter's textfile
// collector, or served over HTTP by a resident exporter (--listen). NVML is
// opened per collection only: a watcher that kept it open would keep the GPUs
// initialized and hide the de-initialization it watches.

#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>

#include <fmt/format.h>

#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/option_checks.h"
#include "core/deadline.h"
#include "core/exit_codes.h"
#include "core/host.h"
#include "core/safe_write.h"
#include "core/strings.h"
#include "exporter/http_server.h"
#include "exporter/scrape_cache.h"
#include "output/metrics.h"
#include "rules/rule.h"
#include "snapshot/snapshot_json.h"
#include "systemd/notify.h"
#include "version_info.h"  // generated: GPUWARM_GIT_COMMIT

namespace gpuwarm {

namespace {

constexpr const char* k_default_textfile_dir = "/var/lib/prometheus/node-exporter";  // Debian's node_exporter

struct MetricsOptions {
  CollectOptions collect;
  std::string snapshot_file;
  std::string textfile_dir;
  std::string listen = k_default_listen;
  double min_interval_s = 15;
  std::string probe_baseline = k_default_probe_baseline;
};

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// The GPU UUIDs this node answered with (NVML, and the kernel's list), lower-cased: the two differ in case.
std::set<std::string> node_gpu_uuids(const Snapshot& node) {
  std::set<std::string> out;
  auto add = [&out](const std::string& uuid) {
    if (!uuid.empty()) {
      out.insert(to_lower(uuid));
    }
  };
  for (const auto& g : node.nvml.gpus) {
    if (g.uuid.has()) {
      add(*g.uuid.value);
    }
  }
  for (const auto& g : node.driver.kernel_gpus) {
    add(g.uuid);
  }
  return out;
}

// The cold-start series from the saved probe baseline: none when no baseline was saved, an unknown with
// the reason when one exists but cannot be used (another node's, by its hostname or its GPUs: images copy
// hostnames such as "localhost"; per-GPU figures taken in parallel; a GPU whose probe failed).
void add_probe_baseline(const std::string& path, const Snapshot& node, MetricsRun& run) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return;
  }
  auto loaded = load_probe_run(path);
  if (!loaded) {
    run.probe_baseline_unreadable = loaded.error().message;
    return;
  }
  if (!loaded->hostname.empty() && !node.hostname.empty() && loaded->hostname != node.hostname) {
    run.probe_baseline_unreadable = path + ": taken on " + loaded->hostname + ", not this node";
    return;
  }
  const std::set<std::string> here = node_gpu_uuids(node);
  auto unknown = [&run](std::string why) {
    if (run.probe_baseline_unreadable.empty()) {
      run.probe_baseline_unreadable = std::move(why);
    }
  };
  // A probed process's CUDA_VISIBLE_DEVICES: "GPU-<uuid>", comma-separated when it started several.
  auto on_this_node = [&here](const GpuProbe& g) {
    const auto uuids = split(g.uuid, ',');
    return !uuids.empty() && std::all_of(uuids.begin(), uuids.end(), [&here](std::string_view u) {
      return here.contains(to_lower(trim(u)));
    });
  };
  // Every GPU the baseline names, per GPU and in its job starts (`probe --node` saves only those).
  std::vector<const GpuProbe*> named;
  for (const auto& g : loaded->gpus) {
    named.push_back(&g);
  }
  for (const auto& j : loaded->jobs) {
    for (const auto& p : j.processes) {
      named.push_back(&p);
    }
  }
  if (!named.empty() && here.empty()) {
    unknown(path + ": cannot tell whether its GPUs are this node's (no GPU UUID was read here)");
    return;
  }
  if (!named.empty() && std::none_of(named.begin(), named.end(), [&](const GpuProbe* g) { return on_this_node(*g); })) {
    unknown(fmt::format("{}: none of its GPUs ({}, ...) is on this node: it was taken on another one", path,
                        named.front()->uuid));
    return;
  }
  const bool contended = loaded->method != k_method_isolated && loaded->gpus.size() > 1;
  for (const auto& g : loaded->gpus) {
    if (!on_this_node(g)) {  // replaced since the baseline was saved
      unknown(fmt::format("{}: its GPU {} ({}) is not on this node: the baseline was taken on another one", path,
                          g.index, g.uuid));
      continue;
    }
    if (contended) {
      unknown(path + ": its per-GPU figures were taken in parallel (contended): save it again without --parallel");
      continue;
    }
    if (!probe_ok(g)) {
      unknown(fmt::format("{}: GPU {}'s probe failed", path, g.index));
      continue;
    }
    for (const auto& stage : g.result.stages) {
      run.cold_start.push_back({g.index, g.uuid, g.pci_bus_id, stage.name, stage.ms / 1000.0});
    }
  }
  for (const auto& j : loaded->jobs) {
    if (!std::all_of(j.processes.begin(), j.processes.end(), on_this_node)) {
      unknown(fmt::format("{}: its {} job start ran on a GPU not on this node", path, j.method));
    } else if (auto ready = job_ready_ms(j)) {
      run.job_start.push_back({j.method, j.gpus, *ready / 1000.0});
    } else {
      // Unknown, not absent: the baseline tried and failed, which is not "no job start to report".
      unknown(path + ": its " + j.method + " job start failed");
    }
  }
}

std::string collect_metrics_text(const MetricsOptions& opts) {
  auto loaded = snapshot_from_file_or_node(opts.snapshot_file, opts.collect);
  if (!loaded) {
    throw std::runtime_error(loaded.error().message);
  }
  // A deployment copied before --trust-root existed reads "cannot tell" from then on: its log says why, once.
  static std::once_flag untrusted_logged;
  if (opts.snapshot_file.empty() && loaded->nvml.not_opened_by == k_untrusted_root) {
    std::call_once(untrusted_logged, [&loaded] {
      std::cerr << "gpuwarm metrics: NVML left closed (UNK011): " + escape_control(loaded->nvml.not_opened) +
                       "; every reading answers cannot tell (pass --trust-root if that tree is this host's own /)\n";
    });
  }
  Diagnosis diagnosis = diagnose(*loaded);
  // A recording is as old as it is: GpuwarmMetricsStale must see that, not the time it was rendered.
  double finished = unix_now();
  if (!opts.snapshot_file.empty()) {
    finished = unix_seconds_from_iso8601(loaded->collected_at).value_or(0);
  }
  MetricsRun run{GPUWARM_VERSION, GPUWARM_GIT_COMMIT, finished, {}, {}, {}};
  add_probe_baseline(opts.probe_baseline, *loaded, run);
  return render_metrics(*loaded, diagnosis, run);
}

// --listen: serve /metrics until SIGTERM/SIGINT. Scrapes share collections (ScrapeCache); NVML is opened
// and shut down inside each one. Under systemd: READY=1 once listening, WATCHDOG=1 while NVML answers
// (after a hung NVML call the pings stop, so the unit's WatchdogSec restarts a fresh process).
constexpr std::chrono::milliseconds k_drain_on_stop{20000};

int serve(MetricsOptions opts) {
  auto address = parse_listen_address(opts.listen);
  if (!address) {
    return usage_error("metrics", address.error().message);
  }
  opts.collect.one_shot = false;  // resident: nvmlShutdown after every collection
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGHUP);
  // Blocked before the server's threads start, so they inherit the mask and the main thread takes them.
  ::pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  // Read (and cleared) before the server's threads exist: no scrape may read the environment meanwhile.
  ServiceNotifier notifier = ServiceNotifier::from_environment();
  ScrapeCache cache([&opts] { return collect_metrics_text(opts); },
                    std::chrono::duration<double>(opts.min_interval_s));
  auto server = HttpServer::start(*address, [&cache](std::string_view method, std::string_view url,
                                                     const HttpServer::HeaderLookup& header, HttpServer::Reply reply) {
    if (auto now = route(method, url, [] { return abandoned_calls() == 0; })) {
      reply(std::move(*now));
      return;
    }
    // Prometheus says how long it will wait: a collection not done by then is answered with the last good one,
    // which carries its own gpuwarm_last_run_timestamp_seconds.
    std::optional<ScrapeCache::Clock::time_point> answer_by;
    if (auto within = scrape_answer_within(header("X-Prometheus-Scrape-Timeout-Seconds"))) {
      answer_by = ScrapeCache::Clock::now() + *within;
    }
    cache.get_async([reply = std::move(reply)](ScrapeCache::Body body) { reply(metrics_response(std::move(body))); },
                    answer_by);
  });
  if (!server) {
    std::cerr << "gpuwarm metrics: " << escape_control(server.error().message) << "\n";
    return to_int(ExitCode::tool_error);
  }
  std::string where = address->text.substr(0, address->text.rfind(':'));
  std::string url = fmt::format("http://{}:{}/metrics", where, (*server)->port());
  std::cerr << fmt::format("gpuwarm metrics: serving {} (a collection at most every {:g} s, shared by concurrent "
                           "scrapes; NVML opened only during a collection)\n",
                           url, opts.min_interval_s);
  notifier.send(fmt::format("READY=1\nSTATUS=serving {}", url));
  auto interval = std::max<std::chrono::microseconds>(
      notifier.watchdog_ping_interval().value_or(std::chrono::seconds(5)), std::chrono::milliseconds(1));
  timespec tick{static_cast<time_t>(interval.count() / 1000000), static_cast<long>(interval.count() % 1000000) * 1000};
  bool said_hung = false;
  for (;;) {
    int sig = ::sigtimedwait(&stop_signals, nullptr, &tick);
    if (sig > 0) {
      std::cerr << "gpuwarm metrics: stopping (signal " << sig << ")\n";
      break;
    }
    if (abandoned_calls() == 0) {
      notifier.send("WATCHDOG=1");
    } else if (!said_hung) {
      said_hung = true;
      std::cerr << "gpuwarm metrics: an NVML call never returned; scrapes now say \"cannot tell\" and the "
                   "watchdog is no longer fed (a supervisor with a watchdog restarts the exporter)\n";
      notifier.send("STATUS=NVML hung: scrapes answer cannot-tell");
    }
  }
  notifier.send("STOPPING=1");
  // A scrape in flight gets its answer: a restart (a package upgrade, a rollout) costs no failed scrape.
  // Bounded, and a second signal ends the wait: the server then answers the scrapes still waiting 503 as it
  // closes, and the cache, as it goes at the end of this function, waits for a collection still running
  // (within --nvml-timeout).
  if (auto stopped = (*server)->stop_accepting(); !stopped) {
    std::cerr << "gpuwarm metrics: " << stopped.error().message << "; stopping without waiting for scrapes\n";
  } else {
    const auto until = std::chrono::steady_clock::now() + k_drain_on_stop;
    const timespec no_wait{0, 0};
    bool answered = false;
    while (!(answered = (*server)->wait_for_answers(std::chrono::milliseconds(100))) &&
           std::chrono::steady_clock::now() < until) {
      if (int again = ::sigtimedwait(&stop_signals, nullptr, &no_wait); again > 0) {
        std::cerr << "gpuwarm metrics: signal " << again << " again: not waiting for the scrapes in flight\n";
        break;
      }
    }
    if (!answered && std::chrono::steady_clock::now() >= until) {
      std::cerr << fmt::format("gpuwarm metrics: a scrape was still unanswered {} s after the signal; closing it\n",
                               k_drain_on_stop.count() / 1000);
    }
  }
  server->reset();
  return to_int(ExitCode::healthy);
}

}  // namespace

std::function<int()> setup_metrics(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<MetricsOptions>();
  opts->collect.full = false;
  opts->collect.one_shot = true;
  opts->collect.stand_aside = true;  // NVML stays closed while a probe or a change holds the node
  opts->collect.fix_inputs = false;
  add_collect_options(sub, opts->collect);
  auto* snap_opt = sub.add_option("--snapshot", opts->snapshot_file,
                                  "Print a recorded snapshot's metrics (`gpuwarm snapshot --json`) instead of this "
                                  "node's; never written (--textfile) or served (--listen), where they would pass "
                                  "for this node's")
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
      ->transform(from_working_directory())
      ->type_name("DIR");
  auto* listen_opt =
      sub.add_option("--listen", opts->listen,
                     fmt::format("Serve /metrics over HTTP at ADDR:PORT until stopped (a resident exporter; NVML is "
                                 "opened only inside each collection). Numeric addresses only; PORT alone listens on "
                                 "127.0.0.1, [::]:PORT on every IPv6 and IPv4 address"))
          ->expected(0, 1)
          ->default_str(k_default_listen)
          ->type_name("ADDR:PORT");
  listen_opt->excludes(sub.get_option("--textfile"));
  snap_opt->excludes(listen_opt);
  snap_opt->excludes(sub.get_option("--textfile"));
  sub.add_option("--min-interval", opts->min_interval_s,
                 "With --listen: reuse a collection for scrapes that come within SECONDS of its start (concurrent "
                 "scrapes always share one; a Prometheus scrape about to time out gets the last good one)")
      ->check(finite_range(0.0, 86400.0))
      ->capture_default_str()
      ->type_name("SECONDS")
      ->needs(listen_opt);
  sub.add_option("--probe-baseline", opts->probe_baseline,
                 "Export gpuwarm_gpu_cold_start_seconds and gpuwarm_job_start_seconds from this saved `gpuwarm probe "
                 "--save` run (no series when the file does not exist)")
      ->capture_default_str()
      ->type_name("FILE");
  sub.footer(
      "Metrics (gauges, base units): gpuwarm_gpu_persistence_mode, gpuwarm_gpu_held_by_persistenced,\n"
      "gpuwarm_gpu_held_by_other_clients, gpuwarm_gpu_sm_clock_hertz, gpuwarm_gpu_app_sm_clock_hertz,\n"
      "gpuwarm_gpu_default_app_sm_clock_hertz, gpuwarm_gpu_attach_seconds (getting the GPU's handle: seconds\n"
      "when it was de-initialized), gpuwarm_gpu_clock_event_reason_active{reason},\n"
      "gpuwarm_gpu_fact_unknown{fact,reason} (per GPU, labels\n"
      "gpu, uuid, pci_bus_id);\n"
      "gpuwarm_persistenced_running, gpuwarm_persistenced_unit_active/_enabled, gpuwarm_driver_info,\n"
      "gpuwarm_driver_reboot_pending, gpuwarm_gpus_without_driver, gpuwarm_nvml_init_seconds,\n"
      "gpuwarm_verdict{verdict},\n"
      "gpuwarm_finding{rule_id,severity}, gpuwarm_fact_unknown{fact,reason}, gpuwarm_build_info,\n"
      "gpuwarm_last_run_timestamp_seconds, gpuwarm_collect_duration_seconds; with a saved probe baseline\n"
      "gpuwarm_gpu_cold_start_seconds{stage} and gpuwarm_job_start_seconds{method,gpus}.\n"
      "A fact that could not be read is never exported as 0: its series is absent and *_fact_unknown says why.\n"
      "NVML is opened and shut down within each collection, never held between them, and left closed while\n"
      "`probe` or `watch --load` times the GPUs or fix, reset or reload-modules changes the node (UNK009),\n"
      "and, as root, for a --root without --trust-root (UNK011, logged once on stderr).\n"
      "Alert rules:\n"
      "contrib/prometheus/gpuwarm.rules.yml; units: contrib/systemd/gpuwarm-metrics.{service,timer} (textfile)\n"
      "and gpuwarm-exporter.service (--listen; Type=notify with a watchdog).\n\n"
      "--listen answers GET/HEAD /metrics, / and /healthz (at once, even while scrapes wait for a collection,\n"
      "unless its client address holds 8 connections already) only; requests are bounded (256 connections, 8\n"
      "per client address and 64 per IPv6 /64, a parked scrape included until its collection ends, 16 KiB of\n"
      "headers, 15 s idle, 10 s to send\n"
      "a whole request; one thread serves them all). SIGTERM, SIGINT or SIGHUP stops it: new connections are refused, scrapes whose request\n"
      "has arrived are answered (up to 20 s; a second signal stops waiting, and scrapes still waiting for a\n"
      "collection get 503).\n\n"
      "Exit codes: 0 metrics printed or written (whatever the verdict), or the exporter stopped by a signal;\n"
      "1 could not read --snapshot, write the textfile, or listen; 2 bad command line (a --snapshot that\n"
      "does not exist included).\n\n"
      "Examples:\n"
      "  gpuwarm metrics | promtool check metrics\n"
      "  gpuwarm metrics --textfile\n"
      "  gpuwarm metrics --listen 127.0.0.1:9839\n"
      "  gpuwarm metrics --snapshot node7.json    # saved there by `gpuwarm snapshot`");

  return [opts, &sub]() -> int {
    if (sub.get_option("--listen")->count() > 0) {
      if (opts->listen.empty()) {
        opts->listen = k_default_listen;
      }
      return serve(*opts);
    }
    std::string text;
    try {
      text = collect_metrics_text(*opts);
    } catch (const std::runtime_error& e) {
      std::cerr << "gpuwarm metrics: " << escape_control(e.what()) << "\n";
      return to_int(ExitCode::tool_error);
    }
    if (sub.get_option("--textfile")->count() == 0) {
      std::cout << text;
      std::cout.flush();
      return std::cout ? to_int(ExitCode::healthy) : to_int(ExitCode::tool_error);
    }
    std::string dir = opts->textfile_dir.empty() ? k_default_textfile_dir : opts->textfile_dir;
    std::string path = dir + "/gpuwarm.prom";
    // node_exporter reads the directory at every scrape: never a half-written file (temporary file in the
    // same directory, renamed over the old one). The directory belongs to node_exporter's package, or to the
    // user it runs as where a site chown'd it.
    auto written = write_file_atomically(path, text, WriteOptions{"/", 0644, 0755, false, true});
    if (!written) {
      std::cerr << "gpuwarm metrics: " << escape_control(written.error().message) << "\n";  // it names the path
      return to_int(ExitCode::tool_error);
    }
    return to_int(ExitCode::healthy);
  };
}

}  // namespace gpuwarm
