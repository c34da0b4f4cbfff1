// `gpuwarm watch`: sample every GPU's clocks at an interval, held or
// detached, optionally with a built-in load in the middle, and attribute what
// was seen (de-init churn, thermal/power, pinned clocks, or stable).

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <iostream>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/command.h"
#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "core/deadline.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/signal_shield.h"
#include "core/strings.h"
#include "cuda/load.h"
#include "nvml/sampler.h"
#include "snapshot/clock_reasons.h"
#include "snapshot/snapshot_json.h"
#include "watch/watch.h"

namespace gpuwarm {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t k_max_samples = 100000;

// Each NVML call of the watch (loading the library, every sample) runs on its own thread, so that a hung GPU or
// driver never holds the watch: past --nvml-timeout the call is abandoned and the watch ends with what it saw.
// A stop signal ends the watch after the sample in progress, and the summary prints; a sample still in NVML
// k_stop_grace after the signal, or at a second one, is abandoned the same way. Within the grace a slow,
// healthy sample (cold attaches take seconds per GPU) still finishes.
constexpr auto k_stop_grace = std::chrono::seconds(30);

template <class T>
struct NvmlAnswer {
  std::optional<T> value;
  std::string why_not;  // "" when it answered
};

template <class T, class Fn>
NvmlAnswer<T> ask_nvml(Fn fn, double timeout_s, const std::string& what) {
  BackgroundCall<T> call(std::move(fn));
  const auto deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout_s));
  Clock::time_point stop_seen{};
  for (;;) {
    if (call.finished_by(std::min(deadline, Clock::now() + std::chrono::milliseconds(100)))) {
      auto done = call.wait_until(Clock::now());
      if (done.value) {
        return {std::move(done.value), {}};
      }
      return {std::nullopt, what + " " + done.stuck_at};  // it threw: "failed: <what>"
    }
    const auto now = Clock::now();
    const int sig = StopSignalsCaught::signal();
    if (sig != 0 && stop_seen == Clock::time_point{}) {
      stop_seen = now;
    }
    std::string why;
    if (now >= deadline) {
      why = fmt::format("NVML did not answer {} within {:g} s (--nvml-timeout)", what, timeout_s);
    } else if (sig != 0 && (StopSignalsCaught::count() > 1 || now - stop_seen >= k_stop_grace)) {
      why = fmt::format("{} arrived and NVML had not answered {} {}", signal_name(sig), what,
                        StopSignalsCaught::count() > 1 ? "by a second stop signal" : "within 30 s of it");
    }
    if (!why.empty()) {
      const std::string stuck = call.wait_until(now).stuck_at;  // abandoned: main() ends the process with _exit
      return {std::nullopt, why + (stuck.empty() ? "" : " (stuck in " + stuck + ")") + ": a hung GPU or driver?"};
    }
  }
}

// A saved run holds every sample, about 2.6 KB each on an 8-GPU node: the most a watch takes (k_max_samples)
// on 8 GPUs fits.
constexpr std::size_t k_max_replay_bytes = std::size_t{256} << 20;

struct WatchOptions {
  std::string interval = "1s";
  std::string duration;  // default 30s, or lead + load + tail with --load
  std::size_t count = 0;
  std::string mode = "detached";
  double load_seconds = 0;
  std::vector<std::string> gpus;
  std::string nvml_library;
  std::string cuda_library;
  double cold_attach_ms = watch::k_default_cold_attach_ms;
  double nvml_timeout_s = 45;  // per sample: diagnose's default, long enough for a cold attach of many GPUs
  bool json = false;
  std::string replay;
  double load_child_seconds = -1;  // internal: run the load in this process
  bool load_check = false;         // internal: only load libcuda, as a load child would
};

double seconds_since(Clock::time_point t0, Clock::time_point t) {
  return std::chrono::duration<double>(t - t0).count();
}

// One GPU's load child and what it has said so far.
struct LoadChild {
  unsigned gpu = 0;  // NVML index
  ChildProcess process;
  std::string output;
  bool running = false;
  Clock::time_point running_at;  // when it said so
  bool done = false;
  cuda::LoadResult result;
};

class LoadRunner {
 public:
  // Starts one child per GPU UUID; errors are kept in the window.
  void start(const std::vector<nvml::GpuIdentity>& gpus, double seconds, const std::string& cuda_library,
             Clock::time_point t0, watch::LoadWindow& window) {
    for (const auto& g : gpus) {
      std::vector<std::string> args = {"watch", "--load-child", fmt::format("{}", seconds)};
      if (!cuda_library.empty()) {
        args.insert(args.end(), {"--cuda", cuda_library});
      }
      auto p = spawn_self(args, g.uuid);
      if (!p) {
        ended(window, g.index, t0, false, p.error().message);
        continue;
      }
      m_children.push_back({g.index, *p, "", false, {}, false, {}});
    }
    m_seconds = seconds;
    m_started = true;
  }

  void add_fds(std::vector<pollfd>& fds) const {
    for (const auto& c : m_children) {
      if (!c.done) {
        fds.push_back({c.process.out_fd, POLLIN, 0});
      }
    }
  }

  // Reads what the children wrote; updates the window's start and end.
  void drain(Clock::time_point t0, watch::LoadWindow& window) {
    for (auto& c : m_children) {
      if (c.done) {
        continue;
      }
      const bool open = read_available(c);
      if (!c.running && c.output.find("\"running\"") != std::string::npos) {
        c.running = true;
        c.running_at = Clock::now();
        const double now = seconds_since(t0, Clock::now());
        window.started.push_back({c.gpu, now});
        if (window.start_s < 0) {
          window.start_s = now;
        }
      }
      if (!open) {
        finish(c, t0, window);
      }
    }
    if (m_started && window.end_s < 0 && all_done()) {
      window.end_s = seconds_since(t0, Clock::now());
    }
  }

  bool active() const { return m_started && !all_done(); }
  bool any_running() const {
    for (const auto& c : m_children) {
      if (c.running && !c.done) {
        return true;
      }
    }
    return false;
  }

  void stop(Clock::time_point t0, watch::LoadWindow& window) {
    const auto now = Clock::now();
    for (auto& c : m_children) {
      if (!c.done) {
        // Still at it well past the end of its load (launches end within one kernel, then it answers) is no load
        // this watch cut short: the child stopped doing what it said (a launch that hangs, output without end),
        // and what it loaded is not known.
        std::string overran;
        if (c.running && seconds_since(c.running_at, now) > m_seconds + k_overrun_grace_s) {
          overran = fmt::format("load child still running {:.1f} s after its {} s load should have ended",
                                seconds_since(c.running_at, now) - m_seconds, m_seconds);
        }
        ::kill(c.process.pid, SIGTERM);
        finish(c, t0, window, /*stopped_here=*/overran.empty(), overran);
      }
    }
  }

 private:
  bool all_done() const {
    for (const auto& c : m_children) {
      if (!c.done) {
        return false;
      }
    }
    return true;
  }

  // Reads what the child has written, without waiting; false once its output has ended. At most 256 KiB a call
  // (a full pipe and then some): a child that writes as fast as it is read must not keep the watch from its
  // samples.
  static bool read_available(LoadChild& c) {
    pollfd pfd{c.process.out_fd, POLLIN, 0};
    for (int reads = 0; reads < 256 && ::poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLIN | POLLHUP | POLLERR)) != 0;
         ++reads) {
      char buf[1024];
      ssize_t got = ::read(c.process.out_fd, buf, sizeof buf);
      if (got <= 0) {
        return false;
      }
      if (c.output.size() < (1u << 20)) {  // a child printing forever is not read forever
        c.output.append(buf, static_cast<std::size_t>(got));
      }
    }
    return true;
  }

  // stopped_here: the watch ended before the load did (--count, a stop signal) and ended the child itself;
  // its death by that signal is no load error. overran: why the watch ended a child that should have ended.
  void finish(LoadChild& c, Clock::time_point t0, watch::LoadWindow& window, bool stopped_here = false,
              const std::string& overran = {}) {
    int status = 0;
    if (!reap_within(c.process.pid, status, k_reap_after_kill_ms)) {
      kill_and_reap(c.process.pid, status);
    }
    // What it wrote since the last drain (a child that ended on its own just before a stop) is its answer.
    read_available(c);
    ::close(c.process.out_fd);
    c.done = true;
    auto j = child_answer(c.output, "launches");
    bool read = false;
    if (!j.is_discarded()) {
      try {
        c.result = cuda::load_result_from_json(j);
        read = true;
      } catch (const nlohmann::json::exception&) {
      }
    }
    if (!read) {
      window.launches_uncounted.push_back(c.gpu);
      if (stopped_here && WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL)) {
        return;
      }
      ended(window, c.gpu, t0, c.running,
            !overran.empty()      ? overran
            : WIFSIGNALED(status) ? fmt::format("load child killed by signal {}", WTERMSIG(status))
                                  : "load child printed no result");
      return;
    }
    window.launches += c.result.launches;
    if (!c.result.error.empty()) {
      ended(window, c.gpu, t0, c.running || c.result.launches > 0, c.result.failed_step + ": " + c.result.error);
    }
  }

  // A GPU's load that stopped on its own: every error ends that GPU's load.
  static void ended(watch::LoadWindow& window, unsigned gpu, Clock::time_point t0, bool ran, std::string why) {
    if (window.error.empty()) {
      window.error = why;
    }
    window.ended_early.push_back({gpu, seconds_since(t0, Clock::now()), ran, std::move(why)});
  }

  // How long past its load's end a child may take to answer: its last launch, freeing, releasing the context.
  static constexpr double k_overrun_grace_s = 3;

  std::vector<LoadChild> m_children;
  double m_seconds = 0;
  bool m_started = false;
};

// "[12.0/30.0 s] 12 samples · GPU0 1980 MHz P0 GpuIdle · de-init signs 0"
std::string progress_line(double t, double total, const watch::Sample& s, std::size_t samples,
                          std::size_t cold_signs) {
  std::string line = fmt::format("[{:.1f}/{:.1f} s] {} samples", t, total, samples);
  if (!s.error.empty()) {
    line += " · " + s.error;
  }
  for (const auto& g : s.gpus) {
    if (!g.error.empty()) {
      line += fmt::format(" · GPU{} {}", g.index, g.error);
      continue;
    }
    line += fmt::format(" · GPU{} {} MHz", g.index, g.sm_mhz ? std::to_string(*g.sm_mhz) : "?");
    if (g.pstate) {
      line += fmt::format(" P{}", *g.pstate);
    }
    if (g.event_reasons) {
      line += " " + clock_reason_list(*g.event_reasons);
    }
  }
  line += fmt::format(" · de-init signs {}", cold_signs);
  return line;
}

int print_result(const watch::WatchRun& run, const WatchOptions& opts, const GlobalOptions& global) {
  watch::WatchSummary summary = watch::summarize(run);
  if (opts.json) {
    // "exit_code" as every report has; the summary keeps its own.
    watch::write_json(std::cout, run, summary, to_int(summary.exit_code));
  } else {
    std::cout << watch::render_text(run, summary, Style::for_stdout(global.color).enabled());
  }
  return to_int(summary.exit_code);
}

int run_load_child(const WatchOptions& opts) {
  auto result = cuda::run_load(opts.cuda_library, opts.load_child_seconds, [] {
    std::cout << R"({"event": "running"})" << std::endl;
  });
  std::cout << cuda::to_json(result).dump() << std::endl;
  return result.error.empty() ? 0 : 1;
}

// The --load-check child: loads libcuda as a load child would, starts nothing.
int run_load_check(const WatchOptions& opts) {
  auto result = cuda::check_load_library(opts.cuda_library);
  std::cout << cuda::to_json(result).dump() << std::endl;
  return result.error.empty() ? 0 : 1;
}

// Why the load's children would fail to load libcuda, or "": asked of a child that loads it and starts nothing,
// so that this watcher never maps libcuda and a missing library fails the watch before its idle lead-in. Only
// a failure the child reports stops the watch: a child that says nothing readable leaves it to the load's own
// children, which report their errors as they always did.
std::string load_library_problem(const std::string& cuda_library) {
  std::vector<std::string> args = {"watch", "--load-check"};
  if (!cuda_library.empty()) {
    args.insert(args.end(), {"--cuda", cuda_library});
  }
  auto r = run_self(args, 30'000);
  if (!r) {
    return "the libcuda check (a child that only loads libcuda) did not answer: " + r.error().message;
  }
  if (auto j = child_answer(r->output, "failed_step"); !j.is_discarded()) {
    try {
      auto result = cuda::load_result_from_json(j);
      return result.error.empty() ? std::string{} : result.failed_step + ": " + result.error;
    } catch (const nlohmann::json::exception&) {
    }
  }
  return r->exit_code == 0 ? std::string{}
                           : fmt::format("the libcuda check printed no result and ended with exit {}", r->exit_code);
}

int watch_usage_error(const std::string& message) { return gpuwarm::usage_error("watch", message); }

}  // namespace

std::function<int()> setup_watch(CLI::App& sub, const GlobalOptions& global) {
  auto opts = std::make_shared<WatchOptions>();
  sub.add_option("--interval", opts->interval, "Time between samples, 1ms to 1h: 500ms, 2s, 1m (0 = back to back)")
      ->type_name("DURATION")
      ->capture_default_str();
  sub.add_option("--duration", opts->duration,
                 "How long to watch (default 30s; with --load, 2 s idle + the load + 5 s to settle)")
      ->type_name("DURATION");
  sub.add_option("--count", opts->count,
                 "Take exactly N samples instead of watching for a duration (at least 2: one sample shows no change)")
      ->type_name("N")
      ->check(whole_number_range(2, k_max_samples));
  one_of(sub.add_option("--mode", opts->mode,
                        "detached: open NVML for each sample and time its attach (sees de-initialization); held: "
                        "keep NVML open (cheaper, but keeps every GPU initialized, hiding the problem)"),
         {"detached", "held"})
      ->capture_default_str();
  sub.add_option("--load", opts->load_seconds,
                 "Run a light built-in kernel on every watched GPU for SECONDS (1-600), after an idle lead-in, "
                 "to see clocks step up to boost and back to the floor")
      ->check(finite_range(1.0, 600.0))
      ->type_name("SECONDS");
  sub.add_option("--gpu", opts->gpus, "Watch only this GPU (NVML index or UUID); repeatable")->type_name("ID");
  sub.add_option("--cold-attach-ms", opts->cold_attach_ms,
                 "An attach at least this slow counts as a de-initialized (cold) GPU")
      ->check(finite_range(1.0, 60000.0))
      ->type_name("MS")
      ->capture_default_str();
  existing_file_path(sub.add_option("--nvml", opts->nvml_library, "Load this NVML library file instead of libnvidia-ml.so.1"));
  sub.add_option("--nvml-timeout", opts->nvml_timeout_s,
                 "A sample NVML has not answered within SECONDS ends the watch: a hung GPU or driver, named in the "
                 "summary, and \"cannot tell\" (exit 9) unless what was seen before says more")
      ->check(finite_range(0.1, 3600.0))
      ->type_name("SECONDS")
      ->capture_default_str();
  existing_file_path(
      sub.add_option("--cuda", opts->cuda_library, "Load this CUDA driver library file for --load instead of libcuda.so.1"));
  sub.add_option("--replay", opts->replay, "Summarize a run saved with --json instead of watching")
      ->type_name("FILE");
  sub.add_flag("--json", opts->json, "Print every sample and the summary as JSON (a failure as a document with an \"error\")");
  sub.add_option("--load-child", opts->load_child_seconds)->group("");  // internal: one GPU's load
  sub.add_flag("--load-check", opts->load_check)->group("");  // internal: can the load's children load libcuda
  sub.footer(
      "Samples each GPU's SM and memory clocks, P-state, clock-event reasons, application clocks, power\n"
      "limit and persistence, then summarizes per GPU: min/median/max clocks, time per event reason,\n"
      "de-initialization signs, and an attribution: thermal/power (RAS), de-init churn (persistence off),\n"
      "pinned application clocks, an unexplained idle swing, or stable. Idle means outside --load and, on a\n"
      "GPU that names the GpuIdle reason when idle, with it named: a sample without it, where persistence\n"
      "reads Enabled, found the GPU busy (another process's work, or clocks still coming down after a job)\n"
      "and is not counted as idle (with persistence off, such a sample may be the GPU just initialized\n"
      "again, and stays idle). Where busy samples leave fewer than 2 idle ones, the answer is \"cannot\n"
      "tell\", not stable.\n\n"
      "Modes. A watcher that keeps NVML open keeps every GPU initialized, so it hides the very problem it\n"
      "looks for: with persistence off, the driver de-initializes a GPU as soon as its last client exits.\n"
      "The default, detached, opens NVML for each sample and times each GPU's attach: a de-initialized\n"
      "GPU attaches slowly (seconds, not milliseconds: --cold-attach-ms) and comes back with application\n"
      "clocks and power limit reset to defaults; both count as de-initialization signs. Held (NVML kept\n"
      "open) costs less per sample and suits long watches of thermal/power behaviour.\n\n"
      "--load needs libcuda.so.1; the kernel ships as PTX and is compiled by the driver's JIT. Read-only:\n"
      "watch changes no GPU setting. Ctrl-C, SIGTERM or a hangup end the watch early, after the sample in\n"
      "progress, and still print the summary. A sample NVML does not answer within --nvml-timeout (or within\n"
      "30 s of a stop signal, or by a second one) is given up: the watch ends with its summary, the hang\n"
      "named, and cannot tell (9) unless what it saw before says more. A live progress line goes to stderr\n"
      "when it is a terminal.\n\n"
      "Exit codes: 0 stable, 1 gpuwarm failed (NVML unusable, no GPU, unreadable --replay file), 2 bad\n"
      "command line, 3 de-init churn or an unexplained idle swing (run `gpuwarm diagnose`), 5 a GPU fault,\n"
      "thermal/power or pinned clocks (not a persistence problem), 7 locked (--load: after waiting 5 minutes\n"
      "a probe or another load still timed the GPUs, or fix, reset or reload-modules still changed the node;\n"
      "without --load: a probe or a load is timing the GPUs now, which watching would disturb; the watch\n"
      "shares the timing lock while it runs, so a probe started meanwhile waits for it),\n"
      "9 cannot tell: a GPU gave no reading in any sample (or too few), NVML stopped answering, or the --load\n"
      "did not run or ended early on a GPU (a failed launch, a load child that died).\n\n"
      "Examples:\n"
      "  gpuwarm watch --mode detached --duration 2m\n"
      "  gpuwarm watch --load 20 --json > run.json && gpuwarm watch --replay run.json");

  return [opts, &sub, &global]() -> int {
    // A watch that could not run says why where its caller reads: with --json a document on stdout (the
    // same kind, no GPUs, an "error"), else a line on stderr.
    auto give_up = [&opts](const std::string& why, const std::string& hint = "",
                           ExitCode code = ExitCode::tool_error) {
      if (opts->json) {
        std::cout << dump_json({{"kind", "gpuwarm-watch"}, {"schema_version", watch::k_schema_version},
                                {"hostname", host_name()}, {"error", why}, {"exit_code", to_int(code)},
                                {"gpus", nlohmann::json::array()}})
                  << "\n";
      } else {
        std::cerr << "gpuwarm: error: " << escape_control(why) << "\n" << hint;
      }
      return to_int(code);
    };
    if (opts->load_child_seconds >= 0) {
      return run_load_child(*opts);
    }
    if (opts->load_check) {
      return run_load_check(*opts);
    }
    if (!opts->replay.empty()) {
      // A saved run is summarized as it was taken: a sampling option would silently change nothing.
      for (const char* sampling : {"--interval", "--duration", "--count", "--mode", "--load", "--gpu",
                                   "--cold-attach-ms"}) {
        if (sub.count(sampling) > 0) {
          return watch_usage_error(std::string("--replay summarizes a saved run; ") + sampling +
                             " applies only when watching");
        }
      }
      auto text = read_file(opts->replay, k_max_replay_bytes);
      if (!text) {
        return give_up(text.error().message +
                       (text.error().too_large ? " (watch longer runs at a longer --interval)" : ""));
      }
      auto run = watch::run_from_text(*text);
      if (!run) {
        return give_up(opts->replay + ": " + run.error().message);
      }
      return print_result(*run, *opts, global);
    }

    auto interval = parse_duration_seconds(opts->interval);
    if (!interval) {
      return watch_usage_error("--interval: cannot read \"" + opts->interval + "\" as a duration (e.g. 500ms, 2s, 1m)");
    }
    // Zero (back to back) or a time the sample slots can be counted in: slot k is due at k x interval, held in
    // nanoseconds, so an hour at most (100000 slots of it fit); below a millisecond NVML cannot keep up anyway.
    if (*interval != 0 && (*interval < 1e-3 || *interval > 3600)) {
      return watch_usage_error("--interval \"" + opts->interval + "\": give 0 (back to back) or 1ms to 1h");
    }
    const bool loading = sub.count("--load") > 0;
    const double lead_s = loading ? std::max(2.0, 2 * *interval) : 0;
    const double tail_s = loading ? std::max(5.0, 3 * *interval) : 0;
    double duration = loading ? lead_s + opts->load_seconds + tail_s : 30;
    if (!opts->duration.empty()) {
      auto d = parse_duration_seconds(opts->duration);
      if (!d || *d <= 0) {
        return watch_usage_error("--duration: cannot read \"" + opts->duration + "\" as a positive duration");
      }
      duration = *d;
    }
    if (!opts->duration.empty() && opts->count > 0) {
      return watch_usage_error("--duration and --count both say when to stop: give one");
    }
    // Back to back, how many samples fit is not known beforehand: the loop stops at k_max_samples.
    const double planned_samples = opts->count > 0 ? static_cast<double>(opts->count)
                                   : *interval > 0 ? std::ceil(duration / *interval)
                                                   : 0;
    if (planned_samples > static_cast<double>(k_max_samples)) {
      return watch_usage_error(fmt::format("that is {:.0f} samples; at most {} are kept: lengthen --interval",
                                     planned_samples, k_max_samples));
    }
    const auto planned = static_cast<std::size_t>(planned_samples);
    if (loading && opts->count == 0 && duration < lead_s + opts->load_seconds) {
      return watch_usage_error(fmt::format("--duration {:.1f} s ends before the load does ({:.1f} s idle lead-in + "
                                     "{:.0f} s load)",
                                     duration, lead_s, opts->load_seconds));
    }
    // A sample at least every half of the load, or none may fall inside it.
    if (loading && *interval > opts->load_seconds / 2) {
      return watch_usage_error(fmt::format("--interval {:g} s is too long for a {:g} s --load: no sample might fall "
                                     "inside it (give at most half the load's length)",
                                     *interval, opts->load_seconds));
    }
    // With --count the watch ends at its last sample's slot, (count - 1) x interval: one in the lead-in never sees
    // the load start (one that ends during the load stops it, and has seen it).
    if (loading && opts->count > 0 &&
        (*interval == 0 || static_cast<double>(opts->count - 1) * *interval <= lead_s)) {
      return watch_usage_error(
          *interval == 0
              ? std::string("--count with --interval 0 says nothing of when the watch ends: give --duration for a --load")
              : fmt::format("--count {} at --interval {:g} s ends at {:.1f} s, before the load starts (after a "
                            "{:.1f} s idle lead-in): give more samples or --duration",
                            opts->count, *interval, static_cast<double>(opts->count - 1) * *interval, lead_s));
    }

    // A load times the GPUs' clocks under work: kept apart from probes and from fix/reset, as a probe is.
    if (auto blocked = loading ? hold_timing_locks("watch") : std::string(); !blocked.empty()) {
      return give_up(blocked, "", ExitCode::locked);
    }
    // Without a load, the watch reads the GPUs for as long as it runs (held mode keeps them initialized): it
    // shares the timing lock, so a probe started meanwhile waits instead of timing a warm start, and it does not
    // start while a probe times them.
    std::optional<ReadingLocks> reading_locks;
    if (!loading) {
      reading_locks.emplace(Paths("/"), true);
      if (!reading_locks->busy.empty()) {
        return give_up(reading_locks->busy, "", ExitCode::locked);
      }
    }
    const auto mode = opts->mode == "held" ? nvml::SampleMode::held : nvml::SampleMode::detached;
    // SIGINT/SIGTERM/SIGHUP/SIGQUIT end the watch early; the summary of what was seen still prints (a watch over ssh
    // whose session drops keeps what it sampled).
    StopSignalsCaught stop_signals;
    auto opened = ask_nvml<Result<std::unique_ptr<nvml::Sampler>>>(
        [library = opts->nvml_library, mode, gpus = opts->gpus](Progress& progress) {
          progress.set("loading libnvidia-ml");
          return nvml::Sampler::open(library, mode, gpus);
        },
        opts->nvml_timeout_s, "while loading libnvidia-ml");
    if (!opened.value) {
      return give_up(opened.why_not, "", ExitCode::cannot_tell);
    }
    if (!*opened.value) {
      return give_up(opened.value->error().message,
                     "No usable NVML: is the NVIDIA driver installed? (`gpuwarm diagnose` says more.)\n");
    }
    // Shared with each sample's thread, which outlives the watch when NVML never answers.
    std::shared_ptr<nvml::Sampler> sampler = std::move(**opened.value);
    // A load that cannot start is known before the idle lead-in, not after it (a watch without the load would
    // mislead: the user asked to see the clocks under work).
    if (loading) {
      // A stop signal during the check ends the watch as one during its lead-in would, not as a load that
      // cannot run.
      if (std::string problem = load_library_problem(opts->cuda_library);
          !problem.empty() && StopSignalsCaught::signal() == 0) {
        return give_up("the --load cannot run: " + problem, "", ExitCode::cannot_tell);
      }
    }

    watch::WatchRun run;
    run.hostname = host_name();
    run.taken_at = utc_now_iso8601();
    run.mode = mode;
    run.interval_s = *interval;
    run.cold_attach_ms = opts->cold_attach_ms;
    if (loading) {
      run.load = watch::LoadWindow{};
      run.load->requested_s = opts->load_seconds;
    }
    LoadRunner load;
    const bool progress = ::isatty(STDERR_FILENO) == 1 && (opts->count == 0 ? duration : static_cast<double>(planned) * *interval) > 1;

    std::size_t cold_signs = 0;
    bool load_started = false;
    const auto t0 = Clock::now();
    for (std::size_t k = 0; StopSignalsCaught::signal() == 0; ++k) {
      const auto due = t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(static_cast<double>(k) * *interval));
      // --count counts samples taken; the slot index k also skips the slots a slow sample overran. Back to back
      // (interval 0) every slot is due at once: the time elapsed says when the duration is over.
      if (opts->count > 0 ? run.samples.size() >= opts->count
                          : seconds_since(t0, *interval > 0 ? due : Clock::now()) >= duration && k > 0) {
        break;
      }
      if (run.samples.size() >= k_max_samples) {
        // With an interval the plan was checked against the cap up front: only back to back is it a cut.
        run.sample_cap = *interval == 0 ? k_max_samples : 0;
        break;
      }
      // Wait for the sample's time, starting the load and reading its children meanwhile.
      for (;;) {
        auto now = Clock::now();
        if (loading && !load_started && seconds_since(t0, now) >= lead_s && !run.gpus.empty()) {
          load.start(run.gpus, opts->load_seconds, opts->cuda_library, t0, *run.load);
          load_started = true;
        }
        if (run.load) {
          load.drain(t0, *run.load);
        }
        if (now >= due || StopSignalsCaught::signal() != 0) {
          break;
        }
        std::vector<pollfd> fds;
        load.add_fds(fds);
        auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(due - now).count() + 1;
        if (loading && !load_started && !run.gpus.empty()) {
          wait = std::min<long long>(wait, static_cast<long long>((lead_s - seconds_since(t0, now)) * 1000) + 1);
        }
        ::poll(fds.data(), fds.size(), static_cast<int>(std::max<long long>(wait, 0)));
      }
      if (StopSignalsCaught::signal() != 0) {
        break;
      }
      auto answered = ask_nvml<nvml::Reading>([sampler](Progress& stage) { return sampler->sample(&stage); },
                                              opts->nvml_timeout_s, fmt::format("sample {}", run.samples.size() + 1));
      if (!answered.value) {
        if (run.samples.empty()) {
          return give_up(answered.why_not, "", ExitCode::cannot_tell);
        }
        run.nvml_stopped = answered.why_not;
        break;
      }
      nvml::Reading reading = std::move(*answered.value);
      if (k == 0) {
        if (!reading.error.empty()) {
          return give_up(reading.error, reading.error.find("DRIVER_NOT_LOADED") != std::string::npos
                                            ? "No NVIDIA driver is loaded on this machine: nothing to watch.\n"
                                            : "");
        }
        if (!sampler->unmatched().empty()) {
          const auto& listed = sampler->listed();
          return give_up(fmt::format("--gpu {} names no GPU; NVML sees {}", escape_control(sampler->unmatched().front()),
                                     listed.empty() ? std::string("none") : fmt::format("{}", fmt::join(listed, ", "))));
        }
        if (sampler->gpus().empty()) {
          return give_up("NVML lists no GPU to watch");
        }
        run.gpus = sampler->gpus();
      }
      watch::Sample s;
      s.t_s = seconds_since(t0, reading.at);
      // What the load's children said while the sample ran counts for it: a kernel may have started meanwhile.
      if (run.load) {
        load.drain(t0, *run.load);
      }
      s.phase = !run.load || !load_started                ? watch::Phase::idle
                : run.load->start_s < 0 && load.active() ? watch::Phase::load_starting
                : load.any_running()                      ? watch::Phase::load
                : run.load->end_s >= 0                    ? watch::Phase::after_load
                                                          : watch::Phase::idle;
      s.init_ms = reading.init_ms;
      s.error = reading.error;
      s.gpus = std::move(reading.gpus);
      for (const auto& g : s.gpus) {
        cold_signs += g.attach_ms >= run.cold_attach_ms ? 1 : 0;
      }
      if (progress) {
        double total = opts->count > 0 ? static_cast<double>(opts->count) * *interval : duration;
        std::cerr << "\r\033[K" << progress_line(s.t_s, total, s, run.samples.size() + 1, cold_signs) << std::flush;
      }
      run.samples.push_back(std::move(s));
      // A sample slower than the interval (a cold attach takes seconds) skips
      // the slots it overran rather than bursting to catch up.
      if (*interval > 0) {
        k = std::max(k, static_cast<std::size_t>(seconds_since(t0, Clock::now()) / *interval));
      }
    }
    if (run.load) {
      load.stop(t0, *run.load);
    }
    if (progress) {
      std::cerr << "\r\033[K" << std::flush;
    }
    run.duration_s = seconds_since(t0, Clock::now());
    if (StopSignalsCaught::signal() == 0 && !run.samples.empty()) {
      // Run to its planned end, its last sample stands for a whole interval (the loop ends right after it);
      // stopped by a signal, it stands for the time until the stop.
      const double planned_s = opts->count > 0 ? static_cast<double>(run.samples.size()) * *interval : duration;
      run.duration_s = std::max(run.duration_s, std::min(planned_s, run.samples.back().t_s + *interval));
    }
    if (!run.nvml_stopped.empty() && !run.samples.empty()) {
      // The time NVML spent not answering was not watched.
      run.duration_s = std::min(run.duration_s, run.samples.back().t_s + *interval);
    }
    if (run.samples.empty()) {
      return give_up("watch stopped before the first sample");
    }
    return print_result(run, *opts, global);
  };
}

}  // namespace gpuwarm
