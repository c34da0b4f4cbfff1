#pragma once
// The one lock between commands that change the node (`fix`, `reset`): two of them must never plan from
// the same old state, nor stop the daemon another is starting.

#include "core/paths.h"
#include "core/result.h"

namespace gpuwarm {

constexpr const char* k_node_lock_name = "gpuwarm-fix.lock";  // under /run; the name predates `reset`

// Holds an exclusive lock for the life of the process (released on exit). Ok(false) when another run holds
// it; an error when it cannot be taken at all.
Result<bool> take_node_lock(const Paths& paths);

}  // namespace gpuwarm
