#pragma once
// The one table of NVML return codes: each code's name and what it means for
// a node, by meaning rather than by habit. Collectors record the name as the
// reason a fact is missing; rules classify that name back through this table,
// so a snapshot read anywhere routes the same. Pure: no NVML is loaded here.

#include <span>
#include <string>
#include <string_view>

#include "nvml/nvml_api.h"

namespace gpuwarm::nvml {

enum class Meaning {
  ok,                 // SUCCESS
  driver_not_loaded,  // no kernel driver behind NVML: a driver-install problem
  version_mismatch,   // user space and kernel module differ: a reboot (or module swap) is pending
  library,            // the user-space library is incomplete (a library or function it needs is missing)
  gpu_fault,          // the GPU fell off the bus, needs a reset, timed out or lacks power: RAS
  permission,         // refused by device-file modes, the OS or cgroups: not a driver install
  not_supported,      // this GPU or driver has no such fact: an answer, not a failure
  other,              // anything else (transient, internal, unknown): nothing can be concluded
};

// Where in gpuwarm's reading of NVML a code was returned. The same code means
// different things: NOT_SUPPORTED from a clock query is an answer, from the
// persistence query it leaves the verdict open.
enum class Entry {
  init,         // nvmlInit
  count,        // nvmlDeviceGetCount
  handle,       // nvmlDeviceGetHandleByIndex
  needed,       // a per-GPU fact the verdict rests on (persistence mode)
  conditional,  // a per-GPU fact a rule uses when the GPU has it (event reasons, application clocks, minor)
  optional,     // everything else: shown with its reason, decides nothing
};

// What a code at an entry point does to the verdict.
enum class Effect {
  none,            // fine, or a fact that decides nothing
  driver_install,  // route: driver-install
  reboot,          // route: reboot pending
  ras,             // route: RAS
  cannot_tell,     // route: cannot tell
};

struct ReturnInfo {
  Return code;
  const char* name;  // as NVML spells it after "NVML_ERROR_"
  Meaning meaning;
  const char* what;  // one line, for people
};

// Every documented code, in numeric order (UNKNOWN = 999 last).
std::span<const ReturnInfo> return_table();

// Name of a code, e.g. "NOT_SUPPORTED"; nullptr for an undocumented number.
const char* return_name(Return r);
// The code's meaning; an undocumented number is `other`.
Meaning meaning_of(Return r);
// Classifies a recorded reason: a code's name ("GPU_IS_LOST"), or one of the
// collector's own reasons (symbol absent, not read). Unrecognized text is `other`.
Meaning meaning_of_reason(std::string_view reason);

Effect effect(Entry entry, Meaning meaning);

const char* to_string(Meaning m);
const char* to_string(Entry e);
const char* to_string(Effect e);

// Reasons the collector records that are not NVML codes.
inline constexpr const char* k_reason_symbol_absent = "not in this NVML";
inline constexpr const char* k_reason_not_read = "not read by diagnose (use --full)";
inline constexpr const char* k_reason_not_read_by_check = "not read by check (gpuwarm diagnose reads it)";

}  // namespace gpuwarm::nvml
