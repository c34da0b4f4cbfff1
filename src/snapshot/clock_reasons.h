#pragma once
// Clock-event reason bits (NVML "clocks event reasons", formerly "throttle
// reasons"; same values since NVML 11) and how the runbook classifies them.

#include <cstdint>
#include <string>
#include <vector>

namespace gpuwarm {

namespace clock_reason {
constexpr std::uint64_t gpu_idle = 0x1;
constexpr std::uint64_t applications_clocks_setting = 0x2;
constexpr std::uint64_t sw_power_cap = 0x4;
constexpr std::uint64_t hw_slowdown = 0x8;
constexpr std::uint64_t sync_boost = 0x10;
constexpr std::uint64_t sw_thermal_slowdown = 0x20;
constexpr std::uint64_t hw_thermal_slowdown = 0x40;
constexpr std::uint64_t hw_power_brake_slowdown = 0x80;
constexpr std::uint64_t display_clock_setting = 0x100;

// Thermal or power limits: the RAS path, persistence will not help.
constexpr std::uint64_t thermal_or_power =
    sw_power_cap | hw_slowdown | sw_thermal_slowdown | hw_thermal_slowdown | hw_power_brake_slowdown;
}  // namespace clock_reason

// Every reason NVML names: its bit, the name gpuwarm prints (NVML's, "GpuIdle") and the name of its
// nvidia-smi --query-gpu field (clocks_event_reasons.<field>), which `metrics` uses as a label value.
struct ClockReasonName {
  std::uint64_t bit;
  const char* name;
  const char* field;
};
inline constexpr ClockReasonName k_clock_reason_names[] = {
    {clock_reason::gpu_idle, "GpuIdle", "gpu_idle"},
    {clock_reason::applications_clocks_setting, "ApplicationsClocksSetting", "applications_clocks_setting"},
    {clock_reason::sw_power_cap, "SwPowerCap", "sw_power_cap"},
    {clock_reason::hw_slowdown, "HwSlowdown", "hw_slowdown"},
    {clock_reason::sync_boost, "SyncBoost", "sync_boost"},
    {clock_reason::sw_thermal_slowdown, "SwThermalSlowdown", "sw_thermal_slowdown"},
    {clock_reason::hw_thermal_slowdown, "HwThermalSlowdown", "hw_thermal_slowdown"},
    {clock_reason::hw_power_brake_slowdown, "HwPowerBrakeSlowdown", "hw_power_brake_slowdown"},
    {clock_reason::display_clock_setting, "DisplayClockSetting", "display_clocks_setting"},
};

// Names of the set bits, lowest first ("GpuIdle", "SwPowerCap", ...). Unknown
// bits come out as hex ("0x200") so nothing is silently dropped. 0 -> {"None"}.
std::vector<std::string> clock_reason_names(std::uint64_t mask);

// "GpuIdle, SwPowerCap" or "None".
std::string clock_reason_list(std::uint64_t mask);

}  // namespace gpuwarm
