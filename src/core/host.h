#pragma once
// Who and when, for reports: this host's name and the current UTC time.

#include <optional>
#include <string>

namespace gpuwarm {

std::string host_name();      // "unknown" if gethostname fails
std::string utc_now_iso8601(); // "2026-11-23T05:00:00Z"
// The reverse, for the form above only; nullopt for anything else.
std::optional<double> unix_seconds_from_iso8601(const std::string& text);

}  // namespace gpuwarm
