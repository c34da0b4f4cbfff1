// Clock branch: are clocks low for a reason persistence does not fix
// (thermal/power limits, pinned application clocks)?

#include <fmt/format.h>

#include "rules/checks.h"
#include "rules/helpers.h"
#include "snapshot/clock_reasons.h"

namespace gpuwarm::checks {

std::vector<Finding> thermal_power_events(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    if (!gpu->event_reasons_active.has()) {
      continue;
    }
    std::uint64_t hits = *gpu->event_reasons_active & clock_reason::thermal_or_power;
    if (hits == 0) {
      continue;
    }
    Finding f;
    f.gpu = gpu->index;
    f.message = fmt::format("{}: clocks held down by {}", gpu_label(*gpu), clock_reason_list(hits));
    f.next_step = "Thermal or power limits, not de-initialization: persistence will not help. Follow the RAS / "
                  "thermal runbook (cooling, power capping, `nvidia-smi -q -d TEMPERATURE,POWER`).";
    f.evidence.push_back(fmt::format("active clock-event reasons {:#x}: {}", *gpu->event_reasons_active,
                                     clock_reason_list(*gpu->event_reasons_active)));
    if (gpu->temperature_c.has()) {
      f.evidence.push_back(fmt::format("temperature {} C", *gpu->temperature_c));
    }
    if (gpu->power_mw.has() && gpu->power_limit_mw.has()) {
      f.evidence.push_back(fmt::format("power {:.0f} W of {:.0f} W limit", *gpu->power_mw / 1000.0,
                                       *gpu->power_limit_mw / 1000.0));
    }
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Finding> app_clocks_pinned(const Snapshot& s) {
  std::vector<Finding> out;
  for (const GpuFacts* gpu : reachable_gpus(s)) {
    Finding f;
    auto compare = [&](const char* what, const Fact<unsigned>& app, const Fact<unsigned>& def) {
      if (app.has() && def.has() && *app != *def) {
        f.evidence.push_back(fmt::format("{} application clock {} MHz, default {} MHz", what, *app, *def));
      }
    };
    compare("SM", gpu->app_clocks.sm, gpu->default_app_clocks.sm);
    compare("graphics", gpu->app_clocks.graphics, gpu->default_app_clocks.graphics);
    compare("memory", gpu->app_clocks.mem, gpu->default_app_clocks.mem);
    if (gpu->event_reasons_active.has() &&
        (*gpu->event_reasons_active & clock_reason::applications_clocks_setting) != 0) {
      f.evidence.emplace_back("active clock-event reason ApplicationsClocksSetting");
    }
    if (f.evidence.empty()) {
      continue;
    }
    f.gpu = gpu->index;
    f.message = fmt::format("{}: application clocks are pinned away from their defaults", gpu_label(*gpu));
    f.next_step = fmt::format(
        "Not a persistence problem: reset them (nvidia-smi -rac -i {}) or find the job or script that sets "
        "them. Without persistence such settings vanish whenever the GPU de-initializes, which is what makes "
        "clocks bounce.",
        gpu->index);
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace gpuwarm::checks
