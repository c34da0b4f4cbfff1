// `gpuwarm probe`: per GPU, a fresh child process that sees only that GPU
// times its cold start, one GPU at a time (children started together contend
// inside the driver); then what a job pays to start every GPU, started as one
// process and as a process per GPU launched together (each limited to its GPU, and each seeing every GPU).

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/collect_options.h"
#include "cli/command.h"
#include "cli/node_lock.h"
#include "cli/option_checks.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/safe_write.h"
#include "core/strings.h"
#include "cuda/cold_start.h"
#include "gather/collect.h"
#include "nvml/collect_nvml.h"
#include "probe/probe.h"
#include "snapshot/snapshot_json.h"
#include "sysfs/driver.h"
#include "sysfs/host.h"

namespace gpuwarm {

namespace {

// A probe child prints one JSON line; anything past this is dropped.
constexpr std::size_t k_max_child_output = 1u << 20;

struct ProbeOptions {
  std::string nvml_library;
  std::string cuda_library;
  double timeout_seconds = 60;
  bool json = false;
  bool child = false;
  bool child_held = false;
  std::string save;
  std::string compare;
  std::vector<std::string> gpus;  // --gpu: NVML indices or UUIDs; empty = all
  bool parallel = false;
  bool sequential = false;  // the default since schema 2; still accepted
  bool node_only = false;
  bool per_gpu_only = false;
  bool all_visible = false;  // also a process per GPU that sees every GPU
  int child_devices = 1;
  int child_contexts = 0;
  unsigned rounds = 1;
};

using Clock = std::chrono::steady_clock;

// A child of a group launched together prints this line once every GPU it starts is ready, then waits with its
// contexts held until gpuwarm closes its stdin.
constexpr std::string_view k_ready_line = "ready\n";

struct Child {
  GpuProbe* probe;
  pid_t pid = -1;
  int out_fd = -1;
  int hold_fd = -1;  // held: closing it lets the child release its contexts and exit
  std::string output;
  Clock::time_point started;
  Clock::time_point launch;  // this child's spawn, or its group's first
  Clock::time_point deadline;
  std::chrono::milliseconds timeout{0};
  bool ready = false;  // held and said it is ready
  // running: reading its output; exiting: it closed its output (or was killed) and is waited for until
  // reap_by, without holding up the others of its group; done: reaped, or given up on.
  enum class Phase { running, exiting, killed, done } phase = Phase::running;
  Clock::time_point reap_by;
  bool timed_out = false;
  int status = 0;
};

// Probe children SIGKILL did not end (asleep in the kernel: a wedged driver), which the next probe must not run
// beside: the driver serializes initialization, so its figures would include waiting for them.
struct UnendedChildren {
  std::vector<pid_t> pids;
  bool waited_out = false;  // a wait for them ran out once: later probes only look, so a stuck child costs one budget
};

std::vector<std::string> split_visible(const std::string& visible) {
  std::vector<std::string> out;
  for (auto part : split(visible, ',')) {
    out.emplace_back(part);
  }
  return out;
}

// Starts `gpuwarm probe --child` with only the probed GPUs (probe.uuid, comma-separated) visible to CUDA;
// it is killed after `timeout`.
Result<Child> spawn_child(GpuProbe& probe, const ProbeOptions& opts, Clock::time_point launch,
                          std::chrono::milliseconds timeout, bool held) {
  const auto devices = split_visible(probe.uuid).size();
  std::vector<std::string> args = {"probe", "--child"};
  if (held) {
    args.emplace_back("--child-held");
  }
  if (devices > 1) {
    args.insert(args.end(), {"--child-devices", std::to_string(devices)});
  }
  if (probe.context_devices > 0) {
    args.insert(args.end(), {"--child-contexts", std::to_string(probe.context_devices)});
  }
  if (!opts.cuda_library.empty()) {
    args.insert(args.end(), {"--cuda", opts.cuda_library});
  }
  if (!opts.nvml_library.empty()) {
    args.insert(args.end(), {"--nvml", opts.nvml_library});
  }
  Child child;
  child.probe = &probe;
  child.started = Clock::now();
  child.launch = launch;
  child.timeout = timeout;
  child.deadline = child.started + timeout;
  auto process = spawn_self(args, probe.uuid, held);
  if (!process) {
    return tl::unexpected(process.error());
  }
  child.pid = process->pid;
  child.out_fd = process->out_fd;
  child.hold_fd = process->hold_fd;
  return child;
}

void let_go(Child& c) {
  if (c.hold_fd >= 0) {
    ::close(c.hold_fd);
    c.hold_fd = -1;
  }
}

// Once every held child of the group is ready or done, all are let go together, each with its timeout again
// for releasing its contexts and exiting. Until then a ready child is never timed out: it waits for the others,
// whose own deadlines bound that wait.
void let_go_once_all_ready(std::vector<Child>& children) {
  bool any_held = false;
  for (const auto& c : children) {
    if (c.hold_fd >= 0) {
      any_held = true;
      if (c.phase == Child::Phase::running && !c.ready) {
        return;
      }
    }
  }
  if (!any_held) {
    return;
  }
  const auto now = Clock::now();
  for (auto& c : children) {
    if (c.hold_fd >= 0) {
      let_go(c);
      c.deadline = now + c.timeout;
    }
  }
}

// The test build can stand in for a child that SIGKILL does not end: SIGSTOP leaves it unreaped all the same.
int kill_signal() {
#ifdef GPUWARM_TEST_HOOKS
  if (const char* hook = std::getenv("GPUWARM_TEST_PROBE_KILL_STOPS"); hook != nullptr && *hook == '1') {
    return SIGSTOP;
  }
#endif
  return SIGKILL;
}

// No more output is read: a child that closed it ends at once (what it printed stands), one that ran out of
// time is killed; either is waited for in collect_children's loop, never without end.
void stop_reading(Child& c, bool timed_out, Clock::time_point now) {
  let_go(c);
  ::close(c.out_fd);
  c.out_fd = -1;
  c.timed_out = timed_out;
  c.phase = timed_out ? Child::Phase::killed : Child::Phase::exiting;
  if (timed_out) {
    ::kill(c.pid, kill_signal());
  }
  c.reap_by = now + std::chrono::milliseconds(k_reap_after_kill_ms);
}

// The child ended (`reaped`) or was given up on: its figures, read from what it printed.
void finish_child(Child& c, bool reaped, UnendedChildren& unended) {
  c.phase = Child::Phase::done;
  if (!reaped) {
    unended.pids.push_back(c.pid);
  }
  GpuProbe& p = *c.probe;
  p.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - c.started).count();
  if (c.timed_out) {
    p.timed_out = true;
    return;
  }
  auto j = child_answer(c.output, "stages");
  if (j.is_discarded()) {
    p.child_error = reaped && WIFSIGNALED(c.status) ? fmt::format("probe child killed by signal {}", WTERMSIG(c.status))
                                                    : "probe child printed no result";
    return;
  }
  try {
    p.result = cuda::cold_start_from_json(j);
  } catch (const nlohmann::json::exception& e) {
    p.child_error = std::string("unreadable probe child result: ") + e.what();
    return;
  }
  // CUDA lists the visible GPUs in the order given, in lower case; NVML's UUIDs may differ in case only.
  const auto requested = split_visible(p.uuid);
  for (std::size_t i = 0; i < p.result.devices.size() && i < requested.size(); ++i) {
    const std::string& seen = p.result.devices[i].uuid;
    if (!seen.empty() && to_lower(seen) != to_lower(requested[i])) {
      p.child_error = "CUDA probed " + seen + ", not the requested GPU";
    }
  }
  if (p.result.monotonic_ready_ms > 0) {
    p.launch_to_ready_ms =
        p.result.monotonic_ready_ms - std::chrono::duration<double, std::milli>(c.launch.time_since_epoch()).count();
  }
}

// A child that stopped reading: reaped if it has ended, killed once it has had k_reap_after_kill_ms to end by
// itself, given up on (unended) k_reap_after_kill_ms after that. Returns whether it is done.
bool reap_or_escalate(Child& c, Clock::time_point now, UnendedChildren& unended) {
  const pid_t w = ::waitpid(c.pid, &c.status, WNOHANG);
  if (w == c.pid || (w < 0 && errno == ECHILD)) {
    finish_child(c, /*reaped=*/true, unended);
    return true;
  }
  if (now < c.reap_by) {
    return false;
  }
  if (c.phase == Child::Phase::exiting) {
    ::kill(c.pid, kill_signal());
    c.phase = Child::Phase::killed;
    c.reap_by = now + std::chrono::milliseconds(k_reap_after_kill_ms);
    return false;
  }
  finish_child(c, /*reaped=*/false, unended);
  return true;
}

// Waits for every child, killing those past their timeout. Each child is read, timed out and reaped on its own
// clock: one slow to exit holds up no other's figures or deadline.
void collect_children(std::vector<Child>& children, UnendedChildren& unended) {
  constexpr int k_reap_poll_ms = 5;
  for (;;) {
    std::vector<pollfd> fds;
    std::vector<Child*> owners;
    auto now = Clock::now();
    int wait_ms = -1;
    auto wait_at_most = [&wait_ms](long long ms) {
      wait_ms = wait_ms < 0 ? static_cast<int>(ms) : static_cast<int>(std::min<long long>(wait_ms, ms));
    };
    let_go_once_all_ready(children);
    bool changed = false;
    bool any_left = false;
    for (auto& c : children) {
      if (c.phase == Child::Phase::done) {
        continue;
      }
      any_left = true;
      if (c.phase != Child::Phase::running) {
        changed = reap_or_escalate(c, now, unended) || changed;
        wait_at_most(k_reap_poll_ms);
        continue;
      }
      const bool waiting_for_others = c.ready && c.hold_fd >= 0;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(c.deadline - now).count();
      if (left <= 0 && !waiting_for_others) {
        stop_reading(c, /*timed_out=*/true, now);
        changed = true;
        wait_at_most(k_reap_poll_ms);
        continue;
      }
      if (!waiting_for_others) {
        wait_at_most(left);
      }
      fds.push_back({c.out_fd, POLLIN, 0});
      owners.push_back(&c);
    }
    if (!any_left) {
      return;
    }
    if (changed) {
      // Start the pass again: an end may let the others go, each with a deadline of its own that the wait
      // below must count (a child passed over as waiting must never leave the wait without one).
      continue;
    }
    int n = ::poll(fds.data(), fds.size(), wait_ms);
    if (n < 0 && errno != EINTR) {  // cannot wait for them any more: each ends killed, as a failure
      const std::string why = std::string("cannot wait for the probe child: poll: ") + std::strerror(errno);
      for (Child* c : owners) {
        stop_reading(*c, /*timed_out=*/true, Clock::now());
        finish_child(*c, reap_within(c->pid, c->status, k_reap_after_kill_ms), unended);
        c->probe->timed_out = false;
        c->probe->child_error = why;
      }
      continue;
    }
    for (std::size_t i = 0; i < fds.size(); ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) {
        continue;
      }
      Child& c = *owners[i];
      char buf[4096];
      ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got > 0) {
        const std::size_t had = c.output.size();
        if (had < k_max_child_output) {  // a child printing forever is not read forever
          c.output.append(buf, static_cast<std::size_t>(got));
        }
        // The line on its own, wherever it comes (a library may have printed before it). Only what this read
        // added is searched (with the line it may complete): a flood is not scanned again at every read.
        if (!c.ready && c.hold_fd >= 0 && c.output.size() > had) {
          for (auto at = c.output.find(k_ready_line, had > k_ready_line.size() ? had - k_ready_line.size() : 0);
               at != std::string::npos; at = c.output.find(k_ready_line, at + 1)) {
            if (at == 0 || c.output[at - 1] == '\n') {
              c.ready = true;
              break;
            }
          }
        }
      } else {
        stop_reading(c, /*timed_out=*/false, Clock::now());
      }
    }
  }
}

// Waits for the children SIGKILL did not end, at most `budget` in all; "" once none is left, else what the
// probes that would run beside them say instead of a figure.
std::string wait_for_unended(UnendedChildren& unended, std::chrono::milliseconds budget) {
  const auto until = Clock::now() + (unended.waited_out ? std::chrono::milliseconds(0) : budget);
  std::erase_if(unended.pids, [until](pid_t pid) {
    int status = 0;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    return reap_within(pid, status, static_cast<int>(std::max<long long>(left, 0)));
  });
  if (unended.pids.empty()) {
    return {};
  }
  unended.waited_out = true;
  return fmt::format("not probed: an earlier probe child (pid {}) had not ended {} s after it was killed (stuck in "
                     "the kernel? a wedged driver), and a figure taken beside it would include waiting for it",
                     fmt::join(unended.pids, ", "), k_reap_after_kill_ms / 1000);
}

struct ProbesRun {
  bool ranks_held = false;     // a job's processes held their contexts until all were ready
  Clock::time_point launched;  // the first spawn (after any wait for an earlier child)
};

// Probes `probes`, all at once (one launch instant for the group) or one after another. --timeout is per
// GPU: a child gets it once for every GPU it starts, and children started together, which the driver
// serializes, get it once for every GPU of the group. Returns whether the ranks were held, and when the first was launched.
ProbesRun run_probes(std::vector<GpuProbe>& probes, const ProbeOptions& opts, bool together, bool hold,
                     UnendedChildren& unended) {
  const auto per_gpu = std::chrono::milliseconds(static_cast<long long>(opts.timeout_seconds * 1000));
  // The GPUs a child starts: those it sees, or the first context_devices of them (a process per GPU that sees
  // all starts one: counting every GPU it sees would give a group of N such processes N * N timeouts).
  auto started = [](const GpuProbe& g) {
    const std::size_t seen = split_visible(g.uuid).size();
    return g.context_devices > 0 ? std::min<std::size_t>(seen, g.context_devices) : seen;
  };
  std::size_t group_gpus = 0;
  for (const auto& g : probes) {
    group_gpus += started(g);
  }
  std::vector<Child> children;
  // A job's processes, launched together, hold their contexts until all are ready, as its ranks do; --parallel's
  // per-GPU probes are not held (their TOTAL includes the release, as each GPU's alone does).
  const bool held = hold && together && probes.size() > 1;
  if (together) {
    if (auto beside = wait_for_unended(unended, per_gpu * static_cast<long long>(group_gpus)); !beside.empty()) {
      for (auto& g : probes) {
        g.child_error = beside;
      }
      return {false, Clock::now()};
    }
  }
  const auto launch = Clock::now();
  for (auto& g : probes) {
    const auto gpus = together ? group_gpus : started(g);
    if (!together) {
      if (auto beside = wait_for_unended(unended, per_gpu * static_cast<long long>(gpus)); !beside.empty()) {
        g.child_error = beside;
        continue;
      }
    }
    auto child =
        spawn_child(g, opts, together ? launch : Clock::now(), per_gpu * static_cast<long long>(gpus), held);
    if (!child) {
      g.child_error = child.error().message;
      continue;
    }
    children.push_back(std::move(*child));
    if (!together) {
      collect_children(children, unended);
      children.clear();
    }
  }
  collect_children(children, unended);
  return {held, launch};
}

// Only the default location's folder is created: a mistyped --save FILE must not leave folders behind (as
// root), the same as snapshot -o.
bool creates_folders(const std::string& path) { return path == k_default_probe_baseline; }

Result<std::string> save_location(const std::string& path) {
  std::error_code ec;
  std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) {
    return fail("cannot write " + path + ": " + ec.message());
  }
  if (!creates_folders(path) && !std::filesystem::is_directory(absolute.parent_path(), ec)) {
    return fail(fmt::format("cannot write {}: the folder {} does not exist (create it, or name another --save FILE)",
                            path, absolute.parent_path().string()));
  }
  WriteOptions options;
  options.create_dirs = creates_folders(path);
  if (auto writable = check_write_target(absolute.string(), options); !writable) {
    return tl::unexpected(writable.error());
  }
  return absolute.string();
}

Result<void> save_run(const std::string& path, const ProbeRun& run) {
  auto absolute = save_location(path);
  if (!absolute) {
    return tl::unexpected(absolute.error());
  }
  WriteOptions options;
  options.create_dirs = creates_folders(path);
  return write_file_atomically(*absolute, dump_json(probe_to_json(run)) + "\n", options);
}

}  // namespace

std::function<int()> setup_probe(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<ProbeOptions>();
  existing_file_path(sub.add_option("--nvml", opts->nvml_library, "Load this NVML library file instead of libnvidia-ml.so.1"));
  existing_file_path(sub.add_option("--cuda", opts->cuda_library, "Load this CUDA driver library file instead of libcuda.so.1"));
  sub.add_option("--timeout", opts->timeout_seconds, "Seconds allowed per GPU before its probe is killed (1-600); a process that starts several GPUs, or is "
                 "started with others, gets this once per GPU. A job's process that is ready waits for the others "
                 "untimed (their own deadlines bound it), then gets the same again to let go and exit: a job start "
                 "may take up to about twice its budget. A killed child that has not ended 5 s later (stuck in the "
                 "kernel) is waited for up to the next probe's budget; the next is not started beside it, and "
                 "says so")
      ->check(finite_range(1.0, 600.0))
      ->type_name("SECONDS")
      ->capture_default_str();
  sub.add_option("--save", opts->save,
                 fmt::format("Store this run as a baseline (FILE, default {})", k_default_probe_baseline))
      ->expected(0, 1)
      ->type_name("[FILE]");
  sub.add_option("--compare", opts->compare,
                 fmt::format("Compare with a saved baseline, per GPU and per job start, stage by stage (FILE, default {})",
                             k_default_probe_baseline))
      ->expected(0, 1)
      ->type_name("[FILE]");
  sub.add_option("--gpu", opts->gpus, "Probe only this GPU (NVML index or UUID); repeatable")->type_name("ID");
  auto* parallel = sub.add_flag("--parallel", opts->parallel,
                                "Probe every GPU at once: quicker, but each GPU's stages may then include "
                                "waiting for the others (reported on 2 x H200: the driver serialized "
                                "initialization across processes)");
  sub.add_flag("--sequential", opts->sequential)->group("")->excludes(parallel);  // the default; schema 1's flag
  auto* node = sub.add_flag("--node", opts->node_only,
                            "Only what a job pays to start every GPU, as one process and as a process per GPU "
                            "(also on a one-GPU node)");
  auto* per_gpu = sub.add_flag("--per-gpu", opts->per_gpu_only, "Only the per-GPU table, not what a job pays")
                      ->excludes(node);
  sub.add_flag("--all-visible", opts->all_visible,
               "Also time a job started as a process per GPU that each sees every GPU and starts only its own "
               "(torchrun's default)")
      ->excludes(per_gpu);
  node->excludes(parallel);
  sub.add_option("--rounds", opts->rounds,
                 "Measure everything this many times, interleaved (each round starting at the next GPU and the "
                 "next way a job starts), and show the median round with the range (1-20); a round that fails is "
                 "shown instead")
      ->check(whole_number_range(1, 20))
      ->type_name("N")
      ->capture_default_str();
  sub.add_flag("--json", opts->json, "Print the results (and the comparison) as JSON");
  sub.add_flag("--child", opts->child)->group("");  // internal: one timing, run by probe itself
  sub.add_flag("--child-held", opts->child_held)->group("");  // internal: wait once ready until stdin closes
  sub.add_option("--child-devices", opts->child_devices)->group("")->check(CLI::Range(1, 1024));
  sub.add_option("--child-contexts", opts->child_contexts)->group("")->check(CLI::Range(1, 1024));
  sub.footer(
      "Per GPU: a fresh child process with CUDA_VISIBLE_DEVICES=GPU-<uuid> times loading libcuda.so.1,\n"
      "nvmlInit, cuInit, getting the device, retaining the primary context, a 1 MiB allocation +\n"
      "synchronize, and the release. GPUs are probed one at a time: as reported on 2 x H200, the driver\n"
      "serialized cuInit and context creation across processes (two probes of one H200 retained their\n"
      "contexts 1.8x slower together), so probes run together may inflate each other's stages (--parallel\n"
      "does that, and says so). CUDA_VISIBLE_DEVICES limits what CUDA shows a child, not what its cuInit\n"
      "opens: on driver 580 cuInit opened /dev/nvidia0 even with no GPU visible, so without persistence a\n"
      "child's cuInit may also pay for initializing GPUs it does not see (bench/cuinit_opens.py in the source\n"
      "shows which device files it opens on a node). A GPU with MIG enabled is not probed (CUDA sees its MIG devices, not the\n"
      "GPU): listed as a failure, as one NVML gives no handle or UUID for.\n\n"
      "What a job pays (with two or more GPUs, or --node): from launch until every GPU has a context and a\n"
      "synchronized allocation, started as one process that starts every GPU in turn (a multi-GPU training\n"
      "process) and as a process per GPU launched together, each limited to its GPU (CUDA_VISIBLE_DEVICES\n"
      "per rank, srun --gpu-bind); with --all-visible also each seeing every GPU and starting only its own\n"
      "(torchrun's default, set_device(LOCAL_RANK)), where every process's cuInit meets every GPU. As a\n"
      "job's ranks do, processes launched together keep their contexts until every one is ready (one that\n"
      "released and exited first would put its teardown into the others' start). On a cold node this is\n"
      "where one GPU's seconds become the node's.\n\n"
      "Without persistence a cold GPU pays seconds here; with it, milliseconds. Save a baseline before a\n"
      "change and compare after it: the runbook's same-node proof, per GPU and per job start. Each run records\n"
      "the persistence mode of every GPU it probes (read through NVML before the first child) and, for one\n"
      "that reads Disabled, any other process holding it open (which keeps it warm: no cold baseline), and\n"
      "the comparison says when it read the same in both runs. With --rounds N each figure is the median round\n"
      "(the lower middle one for an even N), with the range of the rounds that succeeded; a change is marked\n"
      "as within spread when the two runs' ranges overlap. Read-only: it changes no GPU setting.\n\n"
      "Exit codes: 0 every probe succeeded, 1 a probe failed or timed out (or a file could not be read or\n"
      "written, or no GPU to probe), 2 bad command line, 5 no NVIDIA driver on this machine, 7 locked: after\n"
      "waiting 5 minutes, another probe or `watch --load` still timed the GPUs, or fix, reset or\n"
      "reload-modules still changed the node (nothing was probed; a probe waits for those rather than measure\n"
      "them, and they refuse to start while it runs). With --json every exit prints a JSON document (an\n"
      "\"error\" and no GPUs when nothing was probed).\n\n"
      "Examples:\n"
      "  gpuwarm probe --rounds 5 --save before.json\n"
      "  gpuwarm probe --rounds 5 --compare before.json    # after enabling persistence\n"
      "  gpuwarm probe --node --json                       # only what a job pays");

  return [opts, &sub]() -> int {
    // Every exit says why in a form the caller reads: with --json a JSON document on stdout (the same
    // kind, no GPUs, an "error"), else one line on stderr.
    auto give_up = [&opts](ExitCode code, const std::string& why) {
      if (opts->json) {
        std::cout << dump_json({{"kind", "gpuwarm-probe"}, {"schema_version", k_probe_schema_version},
                                {"hostname", host_name()}, {"error", why}, {"exit_code", to_int(code)},
                                {"gpus", nlohmann::json::array()}})
                  << "\n";
      } else {
        std::cerr << "gpuwarm probe: " << escape_control(why) << "\n";
      }
      return to_int(code);
    };
    if (opts->child) {
      std::function<void()> hold_until_let_go;
      if (opts->child_held) {
        hold_until_let_go = [] {
          std::cout << k_ready_line << std::flush;
          char byte = 0;
          ssize_t got = 0;
          while ((got = ::read(STDIN_FILENO, &byte, 1)) != 0 && (got > 0 || errno == EINTR)) {
          }  // until gpuwarm closes the pipe (or dies: the end closes with it)
        };
      }
      std::cout << cuda::to_json(cuda::time_cold_start(opts->cuda_library, opts->nvml_library, opts->child_devices,
                                                      opts->child_contexts, hold_until_let_go))
                       .dump()
                << "\n";
      return 0;
    }
    const bool saving = sub.count("--save") > 0;
    const bool comparing = sub.count("--compare") > 0;
    std::string save_path = opts->save.empty() ? k_default_probe_baseline : opts->save;
    std::string compare_path = opts->compare.empty() ? k_default_probe_baseline : opts->compare;
    if (saving) {  // before the GPUs are probed, not after
      if (auto where = save_location(save_path); !where) {
        return give_up(ExitCode::tool_error, where.error().message);
      }
    }
    ProbeRun baseline;
    if (comparing) {
      auto loaded = load_probe_run(compare_path);
      if (!loaded) {
        std::error_code ec;
        const bool none_saved = opts->compare.empty() &&
                                std::filesystem::symlink_status(compare_path, ec).type() ==
                                    std::filesystem::file_type::not_found;
        return give_up(ExitCode::tool_error,
                       none_saved ? loaded.error().message +
                                        ": no baseline saved yet: run `gpuwarm probe --save` before the change "
                                        "(persistence off), then --compare after it"
                                  : loaded.error().message);
      }
      baseline = std::move(*loaded);
    }
    if (auto blocked = hold_timing_locks("probe"); !blocked.empty()) {
      return give_up(ExitCode::locked, blocked);
    }

    CollectOptions nvml_options;
    nvml_options.nvml_library = opts->nvml_library;
    nvml_options.full = false;
    NvmlFacts nvml_facts = collect_nvml_with_deadline(nvml_options);
    ProbeRun run;
    run.hostname = host_name();
    run.taken_at = utc_now_iso8601();
    if (!nvml_facts.init_code.is(0)) {
      // No driver at all is a plain fact, not a loader error to decode; a library named by hand that did not
      // load is that library's problem, said as such.
      if (opts->nvml_library.empty() && !nvml_facts.library_path.has() && !read_driver(Paths("/")).module_loaded) {
        return give_up(ExitCode::routed_elsewhere,
                       "No NVIDIA driver is present (no kernel module, no libnvidia-ml): there is no GPU to probe. "
                       "`gpuwarm diagnose` says what to install.");
      }
      return give_up(ExitCode::tool_error,
                     "cannot list GPUs through NVML: " +
                         (nvml_facts.init_code.has() ? nvml_facts.init_error : nvml_facts.init_code.missing));
    }
    auto selected = [&opts](const GpuFacts& g) {
      if (opts->gpus.empty()) {
        return true;
      }
      for (const auto& id : opts->gpus) {
        if (id == std::to_string(g.index) || (g.uuid.has() && to_lower(id) == to_lower(*g.uuid))) {
          return true;
        }
      }
      return false;
    };
    std::vector<GpuProbe> selected_gpus;
    // Selected but not probeable (NVML gave no handle, or no UUID to point CUDA_VISIBLE_DEVICES at): failures
    // shown as such, never a smaller node that exits 0.
    std::vector<GpuProbe> unprobeable;
    std::string unprobeable_why;  // the first one's, for the job starts and a run with nothing to probe
    std::vector<std::pair<std::size_t, unsigned>> minors_of_disabled;  // (at in run.persistence, minor)
    for (const auto& g : nvml_facts.gpus) {
      if (!selected(g)) {
        continue;
      }
      GpuProbe p;
      p.index = g.index;
      p.uuid = g.uuid.value_or("");
      p.pci_bus_id = g.pci_bus_id.value_or("");
      // With MIG on, CUDA_VISIBLE_DEVICES=GPU-<uuid> of the whole GPU shows CUDA no device (review-s53-probe
      // L5): said as such, not as the child's "CUDA sees 0".
      const bool mig_on = g.mig_mode.is(1u);
      if (!g.handle_error.empty() || !g.uuid.has() || mig_on) {
        const std::string why = !g.handle_error.empty() ? "NVML gave no handle for it (" + g.handle_error + ")"
                                : !g.uuid.has()
                                    ? "its UUID could not be read through NVML (" + g.uuid.missing + ")"
                                    : "MIG is enabled on it: CUDA sees its MIG devices (MIG-<uuid>), not the GPU, "
                                      "and gpuwarm probes whole GPUs";
        p.child_error = "not probed: " + why;
        if (unprobeable.empty()) {
          unprobeable_why = fmt::format("GPU {} {}", g.index, why);
        }
        unprobeable.push_back(std::move(p));
        continue;
      }
      selected_gpus.push_back(std::move(p));
      // Read in the same NVML pass that listed the GPUs, before any child: no extra initialization.
      GpuPersistence read;
      read.index = g.index;
      read.uuid = *g.uuid;
      read.enabled = g.persistence.value;
      read.unread = g.persistence.has() ? std::string{} : g.persistence.missing;
      if (read.enabled == false) {
        // Who else holds it open, looked up below: a DCGM exporter or a running job keeps a GPU initialized
        // whatever persistence reads, and its figure is then no cold start.
        read.holders_unread = g.minor.has() ? std::string{} : "its minor number was not read: " + g.minor.missing;
        minors_of_disabled.emplace_back(run.persistence.size(), g.minor.value_or(0));
      }
      run.persistence.push_back(std::move(read));
    }
    if (!minors_of_disabled.empty()) {
      // NVML is shut down by now: gpuwarm itself holds no GPU, and no child has started yet.
      const ClientScan scan = scan_gpu_clients(Paths("/"), {static_cast<int>(::getpid())});
      for (const auto& [at, minor] : minors_of_disabled) {
        GpuPersistence& p = run.persistence[at];
        if (!p.holders_unread.empty()) {
          continue;
        }
        if (!scan.unlisted.empty()) {
          p.holders_unread = "/proc could not be listed in full: " + scan.unlisted;
          continue;
        }
        for (const auto& c : scan.clients) {
          if (std::find(c.minors.begin(), c.minors.end(), minor) != c.minors.end()) {
            p.held_by.push_back(fmt::format("{} (pid {})", escape_control(c.comm), c.pid));
          }
        }
        if (p.held_by.empty() && scan.unreadable > 0) {
          // Not only permission: a process at its limits or an LSM refuses root too (review-s53-diff M3).
          p.holders_unread = fmt::format("the open files of {} process(es) could not be read{}", scan.unreadable,
                                         ::geteuid() == 0 ? "" : " (run as root)");
        }
      }
    }
    // Every --gpu must name a GPU: one that names none is a typo, not a smaller run.
    for (const auto& id : opts->gpus) {
      const bool names_one = std::any_of(nvml_facts.gpus.begin(), nvml_facts.gpus.end(), [&id](const GpuFacts& g) {
        return id == std::to_string(g.index) || (g.uuid.has() && to_lower(id) == to_lower(*g.uuid));
      });
      if (!names_one) {
        std::vector<std::string> seen;
        for (const auto& g : nvml_facts.gpus) {
          seen.push_back(fmt::format("{} ({})", g.index, g.uuid.value_or("UUID unread")));
        }
        return give_up(ExitCode::tool_error,
                       fmt::format("--gpu {} names no GPU; NVML sees {}", escape_control(id),
                                   seen.empty() ? std::string("none") : fmt::format("{}", fmt::join(seen, ", "))));
      }
    }
    if (selected_gpus.empty()) {
      return give_up(ExitCode::tool_error,
                     unprobeable.empty() ? std::string("no GPU to probe (NVML sees none)")
                                         : "no GPU to probe: " + unprobeable_why);
    }

    auto start = Clock::now();
    if (!opts->node_only) {
      run.method = opts->parallel ? k_method_parallel : k_method_isolated;
    }
    // A job's start: measured where it differs from one GPU's (two or more GPUs), or when asked; not when
    // a GPU already hung alone (every job start would wait out its timeout too).
    const bool jobs_asked = opts->node_only || (!opts->per_gpu_only && selected_gpus.size() + unprobeable.size() >= 2);
    if (jobs_asked && !unprobeable.empty()) {
      run.jobs_skipped = "not probed: " + unprobeable_why + "; a job on the other GPUs is not this node's start";
    }
    const bool want_jobs = jobs_asked && unprobeable.empty();
    // Rounds interleave the per-GPU table and the job starts, so a drift over time (another tenant, clocks
    // settling) spreads over every figure alike.
    // The two ways a job starts, copied fresh for every round.
    std::vector<JobStart> job_starts;
    if (want_jobs) {
      const auto gpu_count = static_cast<unsigned>(selected_gpus.size());
      std::vector<unsigned> indices;
      for (const auto& g : selected_gpus) {
        indices.push_back(g.index);
      }
      JobStart one{k_job_one_process, gpu_count, {selected_gpus.front()}, 0, indices, {}, 0};
      for (std::size_t i = 1; i < selected_gpus.size(); ++i) {
        one.processes.front().uuid += "," + selected_gpus[i].uuid;
      }
      one.processes.front().pci_bus_id.clear();
      // torchrun's default: every process sees every GPU, its own first (CUDA ordinal 0), and starts that one.
      JobStart all_visible{k_job_process_per_gpu_all_visible, gpu_count, selected_gpus, 0, indices, {}, 0};
      for (std::size_t k = 0; k < selected_gpus.size(); ++k) {
        GpuProbe& p = all_visible.processes[k];
        p.context_devices = 1;
        for (std::size_t i = 1; i < selected_gpus.size(); ++i) {
          p.uuid += "," + selected_gpus[(k + i) % selected_gpus.size()].uuid;
        }
      }
      job_starts = {one, JobStart{k_job_process_per_gpu, gpu_count, selected_gpus, 0, indices, {}, 0}};
      if (opts->all_visible && selected_gpus.size() >= 2) {  // with one GPU it is the same start as above
        job_starts.push_back(std::move(all_visible));
      }
    }
    std::vector<std::vector<GpuProbe>> gpu_rounds(selected_gpus.size());
    std::vector<std::vector<JobStart>> job_rounds(job_starts.size());
    bool timed_out = false;
    UnendedChildren unended;
    for (unsigned round = 1; round <= opts->rounds && !timed_out; ++round) {
      if (!opts->node_only) {
        // Each round starts at the next GPU (and the next way a job starts, below): a cost of going first (the
        // first cuInit of a series is the slowest) lands on each figure in turn, not always on GPU 0's.
        std::vector<GpuProbe> gpus = selected_gpus;
        const auto shift = static_cast<std::ptrdiff_t>((round - 1) % gpus.size());
        std::rotate(gpus.begin(), gpus.begin() + shift, gpus.end());
        run_probes(gpus, *opts, /*together=*/opts->parallel, /*hold=*/false, unended);
        std::rotate(gpus.begin(), gpus.end() - shift, gpus.end());  // back in the table's order
        for (std::size_t i = 0; i < gpus.size(); ++i) {
          timed_out = timed_out || gpus[i].timed_out;
          if (want_jobs && gpus[i].timed_out && run.jobs_skipped.empty() && run.job_rounds_short.empty()) {
            const std::string why = fmt::format("GPU {} timed out {}(--timeout {:g} s)", gpus[i].index,
                                                opts->parallel ? "" : "on its own ", opts->timeout_seconds);
            if (job_rounds.front().empty()) {
              run.jobs_skipped = why;
            } else {
              run.job_rounds_short = why + " in round " + std::to_string(round);
            }
          }
          gpu_rounds[i].push_back(std::move(gpus[i]));
        }
      }
      // Both ways in every round the table did not time out; a job that timed out would time out again, so
      // no further rounds.
      bool job_timed_out = false;
      for (std::size_t n = 0; n < job_starts.size() && !timed_out; ++n) {
        const std::size_t k = (n + round - 1) % job_starts.size();
        JobStart job = job_starts[k];
        const ProbesRun ran = run_probes(job.processes, *opts, /*together=*/true, /*hold=*/true, unended);
        job.ranks_held = ran.ranks_held;
        job.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - ran.launched).count();
        job_timed_out = job_timed_out || std::any_of(job.processes.begin(), job.processes.end(),
                                                     [](const GpuProbe& p) { return p.timed_out; });
        job_rounds[k].push_back(std::move(job));
      }
      timed_out = timed_out || job_timed_out;
      run.rounds = round;
    }
    if (!opts->node_only) {
      for (const auto& rounds : gpu_rounds) {
        run.gpus.push_back(median_round(rounds));
      }
      run.gpus.insert(run.gpus.end(), unprobeable.begin(), unprobeable.end());
      std::stable_sort(run.gpus.begin(), run.gpus.end(),
                       [](const GpuProbe& a, const GpuProbe& b) { return a.index < b.index; });
    }
    for (const auto& rounds : job_rounds) {
      if (!rounds.empty()) {
        run.jobs.push_back(median_round(rounds));
      }
    }
    run.job_rounds = job_rounds.empty() ? 0 : static_cast<unsigned>(job_rounds.front().size());
    run.wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();

    bool all_ok = unprobeable.empty() && std::all_of(run.gpus.begin(), run.gpus.end(), probe_ok) &&
                  std::all_of(run.jobs.begin(), run.jobs.end(), job_ok);
    // Saved first, so that the report printed says how the run ended, a baseline not written included.
    std::string save_error;
    if (saving) {
      if (auto r = save_run(save_path, run); !r) {
        save_error = r.error().message;
        all_ok = false;
      }
    }
    const ExitCode code = all_ok ? ExitCode::healthy : ExitCode::tool_error;
    if (opts->json) {
      nlohmann::json out = probe_to_json(run);
      out["exit_code"] = to_int(code);
      if (!save_error.empty()) {
        out["error"] = "the baseline was not saved: " + save_error;
      }
      if (comparing) {
        out["compare"] = compare_json(baseline, run);
        out["compare_jobs"] = compare_jobs_json(baseline, run);
        out["compare_persistence"] = compare_persistence_json(baseline, run);
      }
      std::cout << dump_json(out) << "\n";
    } else {
      std::cout << render_probe_text(run);
      if (comparing) {
        std::cout << "\n" << render_compare_text(baseline, run);
      }
    }
    if (!save_error.empty()) {
      std::cerr << "gpuwarm: error: " << escape_control(save_error) << "\n";
    } else if (saving) {
      std::cerr << "saved baseline to " << escape_control(save_path) << "\n";
    }
    return to_int(code);
  };
}

}  // namespace gpuwarm
