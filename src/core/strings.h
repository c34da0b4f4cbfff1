#pragma once
// String helpers shared by the parsers. Pure, no allocation surprises.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gpuwarm {

std::string_view trim(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
std::vector<std::string_view> split(std::string_view s, char sep);
std::vector<std::string> split_lines(std::string_view s);

// Parses a whole string as an unsigned decimal; nullopt on junk or overflow.
std::optional<unsigned long long> parse_u64(std::string_view s);

// First token that looks like a driver version (N.N or N.N.N, digits only) in s,
// searching from `from`. Returns "" when there is none.
std::string find_version_token(std::string_view s, std::size_t from = 0);

// Orders two driver versions ("580.159.04" < "590.44.01"), part by part as numbers: negative, 0 or positive;
// nullopt when either is not dot-separated digits.
std::optional<int> compare_driver_versions(std::string_view a, std::string_view b);

// Replaces bytes that are not printable ASCII or valid-looking UTF-8 with '?'
// so evidence from binary junk stays printable and JSON-safe.
std::string printable(std::string_view s);

// Text from an untrusted source (a report, a kernel log, a unit file, a
// process name) made safe for a terminal: C0 controls, DEL and C1 controls
// (U+0080..U+009F, which some terminals obey as escape sequences) become
// \xNN / \u00NN; bidirectional controls (which reorder what is shown), U+2028/2029 and characters that
// show as nothing (zero-width spaces and joiners, U+00AD, U+FEFF), which make one name look like another, \uNNNN.
// Bytes that are not well-formed UTF-8 (a lone 0x9B is CSI to a terminal not in UTF-8 mode) become \xNN.
// Printable text, UTF-8 included, is unchanged.
std::string escape_control(std::string_view s);
// The same for text of several lines that gpuwarm composed around untrusted parts: '\n' stays a line break.
std::string escape_control_lines(std::string_view s);

std::string to_lower(std::string_view s);

// What follows the last '/' ("nouveau" of "../../../bus/pci/drivers/nouveau"); all of `path` without one.
std::string_view last_path_component(std::string_view path);

// "500ms", "2s", "1.5m", "1h" or a bare number of seconds -> seconds.
// nullopt on junk, a negative value or an unknown unit.
std::optional<double> parse_duration_seconds(std::string_view s);

}  // namespace gpuwarm
