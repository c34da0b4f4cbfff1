#include "snapshot/clock_reasons.h"

#include <fmt/format.h>

namespace gpuwarm {

namespace {
struct ReasonName {
  std::uint64_t bit;
  const char* name;
};
constexpr ReasonName k_reason_names[] = {
    {clock_reason::gpu_idle, "GpuIdle"},
    {clock_reason::applications_clocks_setting, "ApplicationsClocksSetting"},
    {clock_reason::sw_power_cap, "SwPowerCap"},
    {clock_reason::hw_slowdown, "HwSlowdown"},
    {clock_reason::sync_boost, "SyncBoost"},
    {clock_reason::sw_thermal_slowdown, "SwThermalSlowdown"},
    {clock_reason::hw_thermal_slowdown, "HwThermalSlowdown"},
    {clock_reason::hw_power_brake_slowdown, "HwPowerBrakeSlowdown"},
    {clock_reason::display_clock_setting, "DisplayClockSetting"},
};
}  // namespace

std::vector<std::string> clock_reason_names(std::uint64_t mask) {
  std::vector<std::string> names;
  if (mask == 0) {
    names.emplace_back("None");
    return names;
  }
  std::uint64_t known = 0;
  for (const auto& r : k_reason_names) {
    known |= r.bit;
    if ((mask & r.bit) != 0) {
      names.emplace_back(r.name);
    }
  }
  for (int bit = 0; bit < 64; ++bit) {
    std::uint64_t b = std::uint64_t{1} << bit;
    if ((mask & b) != 0 && (known & b) == 0) {
      names.push_back(fmt::format("{:#x}", b));
    }
  }
  return names;
}

std::string clock_reason_list(std::uint64_t mask) {
  return fmt::format("{}", fmt::join(clock_reason_names(mask), ", "));
}

}  // namespace gpuwarm
