#pragma once
// Rule functions, grouped by runbook branch (one .cpp per branch). Each is
// registered once in registry.cpp; nothing else calls them directly.

#include <vector>

#include "rules/rule.h"

namespace gpuwarm::checks {

// driver.cpp
std::vector<Finding> driver_not_loaded(const Snapshot&);
std::vector<Finding> nvml_unavailable(const Snapshot&);
std::vector<Finding> driver_version_mismatch(const Snapshot&);
std::vector<Finding> stale_client_mismatch(const Snapshot&);
std::vector<Finding> named_kernel_log_unread(const Snapshot&);
std::vector<Finding> user_space_older_than_module(const Snapshot&);
std::vector<Finding> gpus_on_other_drivers(const Snapshot&);
std::vector<Finding> gpu_unreachable(const Snapshot&);
// daemon.cpp
std::vector<Finding> daemon_binary_missing(const Snapshot&);
std::vector<Finding> daemon_no_persistence_mode(const Snapshot&);
std::vector<Finding> unit_stop_when_unneeded(const Snapshot&);
std::vector<Finding> unit_missing(const Snapshot&);
std::vector<Finding> unit_failed(const Snapshot&);
std::vector<Finding> unit_start_skipped(const Snapshot&);
std::vector<Finding> guard_ignored(const Snapshot&);
std::vector<Finding> daemon_not_enabled(const Snapshot&);
std::vector<Finding> gpu_not_held(const Snapshot&);
std::vector<Finding> unit_state_unread(const Snapshot&);
std::vector<Finding> systemd_unanswered(const Snapshot&);
std::vector<Finding> process_list_unread(const Snapshot&);
// clocks.cpp
std::vector<Finding> thermal_power_events(const Snapshot&);
std::vector<Finding> app_clocks_pinned(const Snapshot&);
// persistence.cpp
std::vector<Finding> persistence_off(const Snapshot&);
std::vector<Finding> legacy_persistence(const Snapshot&);
std::vector<Finding> persistence_masked(const Snapshot&);
std::vector<Finding> persistence_views_disagree(const Snapshot&);
std::vector<Finding> persistence_optional(const Snapshot&);
// nvml.cpp
std::vector<Finding> nvml_timeout(const Snapshot&);
std::vector<Finding> nvml_not_opened(const Snapshot&);
std::vector<Finding> root_not_trusted(const Snapshot&);
std::vector<Finding> snapshot_incomplete(const Snapshot&);
std::vector<Finding> nvml_init_unknown(const Snapshot&);
std::vector<Finding> gpu_count_unread(const Snapshot&);
std::vector<Finding> gpu_handle_unread(const Snapshot&);
std::vector<Finding> gpu_fact_unread(const Snapshot&);
// notes.cpp
std::vector<Finding> needs_root(const Snapshot&);
std::vector<Finding> no_service_manager(const Snapshot&);
std::vector<Finding> daemon_outside_unit_runs(const Snapshot&);
std::vector<Finding> kernel_log_unread(const Snapshot&);

}  // namespace gpuwarm::checks
