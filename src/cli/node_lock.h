#pragma once
// The locks between gpuwarm runs on one node. The node lock: commands that change the node (`fix`, `reset`,
// `reload-modules`) take it exclusively, so two of them never plan from the same old state nor stop the
// daemon another is starting; commands that time the GPUs (`probe`, `watch --load`) take it shared, so no
// reset pulls a GPU from under a timing and no timing lands in a reset's window. The timing lock: those
// timing commands take it exclusively, since two timings at once measure each other.

#include <functional>
#include <string>

#include "core/paths.h"
#include "core/result.h"

namespace gpuwarm {

constexpr const char* k_node_lock_name = "gpuwarm-fix.lock";  // under /run; the name predates `reset`
constexpr const char* k_timing_lock_name = "gpuwarm-timing.lock";

// Holds an exclusive lock for the life of the process (released on exit). Ok(false) when another run holds
// it; an error when it cannot be taken at all.
Result<bool> take_node_lock(const Paths& paths);
// Why take_node_lock gave Ok(false): who may hold the lock, and where it is.
std::string node_lock_held(const Paths& paths);

// For a command that times the GPUs: the node lock shared, then the timing lock, each waited for up to
// `wait_ms` (a probe started beside another one measures after it, not against it); `waiting` is called once
// with what it waits for. Ok("") when both are held (for the life of the process); Ok(why) naming what still
// holds one after the wait; an error when they cannot be taken at all (not root: /run is root's).
Result<std::string> take_timing_locks(const Paths& paths, int wait_ms,
                                      const std::function<void(const std::string&)>& waiting);

// take_timing_locks for `command` on this node, waiting up to 5 minutes and saying so on stderr; where the
// locks cannot be taken at all (not root), a note on stderr says the run is not kept apart from others. ""
// to go on, else what still held a lock.
std::string hold_timing_locks(const char* command);

}  // namespace gpuwarm
