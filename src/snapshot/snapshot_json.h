#pragma once
// Snapshot <-> JSON. The JSON form is what `gpuwarm snapshot --json` prints and
// what `diagnose --snapshot FILE` reads; a missing fact is written as
// {"missing": "<why>"} in place of its value.

#include <string>

#include <nlohmann/json.hpp>

#include "core/result.h"
#include "snapshot/snapshot.h"

namespace gpuwarm {

nlohmann::json snapshot_to_json(const Snapshot& snapshot);

// Errors name the file's problem (not JSON, wrong schema_version, a field of
// the wrong type) so a user can tell a truncated copy from a newer format.
Result<Snapshot> snapshot_from_json(const nlohmann::json& j);
Result<Snapshot> load_snapshot_file(const std::string& path);

// Dumps JSON with invalid UTF-8 replaced, never throwing on odd bytes.
std::string dump_json(const nlohmann::json& j, int indent = 2);

}  // namespace gpuwarm
