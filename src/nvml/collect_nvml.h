#pragma once
// Reads everything gpuwarm wants from NVML in one pass: load, versions, init
// (timed), every GPU, shutdown. A library that will not load or an init that
// fails is recorded in the facts, never thrown.

#include <string>

#include "core/deadline.h"

#include "snapshot/snapshot.h"

namespace gpuwarm::nvml {

// Each NVML query on a GPU costs about a millisecond (they serialize in the
// driver), so how much is read is a choice.
enum class Depth {
  decision,  // what the rules decide on; thermal/power evidence only when such a reason is active
  full,      // every fact in GpuFacts
  check,     // `gpuwarm check`: identity, minor, persistence (and display where persistence is off) only
};

struct CollectOptions {
  std::string library_path;  // --nvml; "" = search (see LibrarySearch)
  std::string root = "/";    // --root: search the root's driver locations
  Depth depth = Depth::full;
  // One-shot commands leave NVML initialized and loaded for process exit to
  // release (saves nvmlShutdown, ~3 ms on an H100). Commands that sample
  // repeatedly must not: each sample has to open NVML afresh.
  bool release_at_exit = false;
  Progress* progress = nullptr;  // told each stage, so a timeout can say where NVML stuck
  bool root_trusted = false;     // --trust-root (LibrarySearch)
};

NvmlFacts collect(const CollectOptions& options);

}  // namespace gpuwarm::nvml
