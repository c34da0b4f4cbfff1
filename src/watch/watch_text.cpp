// Text rendering of a watch summary: a table per GPU, then what each GPU's
// behaviour is attributed to and why, then the verdict and next step.

#include <fmt/format.h>

#include "core/strings.h"
#include "output/style.h"
#include "output/table.h"
#include "watch/watch.h"

namespace gpuwarm::watch {

namespace {

std::string triple(const std::optional<Stats>& s) {
  return s ? fmt::format("{}/{}/{}", s->min, s->median, s->max) : "-";
}

std::string pstate_list(const std::vector<unsigned>& p) {
  if (p.empty()) {
    return "-";
  }
  std::string out;
  for (unsigned v : p) {
    out += (out.empty() ? "P" : ",P") + std::to_string(v);
  }
  return out;
}

std::string reason_line(const GpuSummary& g, double total_s) {
  if (g.reason_time.empty()) {
    return "none reported";
  }
  std::string out;
  for (const auto& r : g.reason_time) {
    if (!out.empty()) {
      out += ", ";
    }
    out += total_s > 0 ? fmt::format("{} {:.1f} s ({:.0f}%)", r.reason, r.seconds, 100.0 * r.seconds / total_s)
                       : fmt::format("{} {:.1f} s", r.reason, r.seconds);
  }
  return out;
}

}  // namespace

std::string render_text(const WatchRun& run, const WatchSummary& summary, bool color) {
  Style style(color);
  const bool held = run.mode == nvml::SampleMode::held;
  std::string out = fmt::format("gpuwarm watch · {} · {} sample(s), every {:g} s over {:.1f} s", 
                                held ? "held (NVML kept open)" : "detached (NVML opened for each sample)",
                                run.samples.size(), run.interval_s, run.duration_s);
  if (run.load) {
    out += fmt::format(" · load {:.0f} s", run.load->requested_s);
  }
  out += "\n";
  if (summary.init_ms) {
    out += held ? fmt::format("nvmlInit {} ms (once)\n", summary.init_ms->median)
                : fmt::format("nvmlInit per sample: median {} ms, max {} ms\n", summary.init_ms->median,
                              summary.init_ms->max);
  }
  out += "\n";

  TextTable table({"GPU", "SM MHz min/med/max", "MEM MHz min/med/max", "P-STATES", "ATTACH ms med/max",
                   "DE-INIT SIGNS", "ATTRIBUTION"});
  for (const auto& g : summary.gpus) {
    std::string attach = g.attach_ms ? fmt::format("{}/{}", g.attach_ms->median, g.attach_ms->max) : "-";
    table.add_row({std::to_string(g.id.index), triple(g.sm), triple(g.mem), pstate_list(g.pstates), attach,
                   std::to_string(g.deinit_events.size()), cause_code(g.causes.front())});
  }
  out += table.render();

  const double total_s = sampled_seconds(run);
  for (const auto& g : summary.gpus) {
    out += fmt::format("\nGPU {} {}{}\n", g.id.index, g.id.name.empty() ? "" : g.id.name + " ",
                       g.id.uuid.empty() ? "" : "(" + g.id.uuid + ")");
    out += "  clock-event reasons: " + reason_line(g, total_s) + "\n";
    if (g.sm_load) {
      out += fmt::format("  under load: SM median {} MHz (max {}){}", g.sm_load->median, g.sm_load->max,
                         g.sm_idle ? fmt::format(", idle median {} MHz", g.sm_idle->median) : "");
      out += g.settle_s ? fmt::format("; back at the idle floor {:.1f} s after the load\n", *g.settle_s)
                        : "; not back at the idle floor before the watch ended\n";
    } else if (run.load) {
      out += "  under load: no sample fell inside the load window\n";
    }
    if (g.failed > 0) {
      out += fmt::format("  {} of {} samples could not attach: {}\n", g.failed, g.samples, g.last_error);
    }
    constexpr std::size_t k_events_listed = 5;
    for (std::size_t i = 0; i < g.deinit_events.size() && i < k_events_listed; ++i) {
      const auto& e = g.deinit_events[i];
      out += fmt::format("  {:7.1f} s  {}: {}\n", e.t_s, e.kind, e.detail);
    }
    if (g.deinit_events.size() > k_events_listed) {
      out += fmt::format("  ... and {} more (--json lists all)\n", g.deinit_events.size() - k_events_listed);
    }
    for (const auto& e : g.evidence) {
      out += "  - " + e + "\n";
    }
    out += fmt::format("  attribution: {}\n", cause_title(g.causes.front()));
  }
  for (const auto& n : summary.notes) {
    out += "\nNote: " + n + "\n";
  }

  // GPU names, UUIDs and error texts may come from a replayed file: escaped, line breaks kept. The verdict
  // below is gpuwarm's own, styled after.
  out = escape_control_lines(out);
  std::string verdict = cause_title(summary.cause);
  if (summary.cause == Cause::stable) {
    out += "\n" + style.green("Stable") +
           (held ? ": no thermal/power events, pinned clocks or unexplained swings (a held watch cannot see "
                   "de-initialization).\n"
                 : ": no de-initialization, thermal/power events, pinned clocks or unexplained swings.\n");
  } else {
    out += "\n" + style.yellow("Attribution: " + verdict) + "\n";
    out += "Next: " + summary.next_step + "\n";
  }
  return out;
}

}  // namespace gpuwarm::watch
