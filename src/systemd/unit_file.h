#pragma once
// A minimal reader for systemd unit files: enough to see what a vendor unit
// sets (ExecStart=, StopWhenUnneeded=, Restart=, PIDFile=, Type=).

#include <string>
#include <string_view>
#include <vector>

namespace gpuwarm {

struct UnitSetting {
  std::string section;  // "Unit", "Service", ...
  std::string key;
  std::string value;    // continuation lines joined, surrounding blanks trimmed
  unsigned line = 0;    // 1-based line of the key
};

// Comments (# ;) and blank lines are skipped; a trailing backslash joins lines.
std::vector<UnitSetting> parse_unit_file(std::string_view text);

// A boolean setting as systemd reads it true: 1, yes, y, true, t, on (any case).
bool unit_boolean_true(std::string_view value);

// The effective value of a single-valued key (the last assignment), or "".
std::string unit_value(const std::vector<UnitSetting>& settings, std::string_view section, std::string_view key);

// The effective ExecStart= command line split into words (an empty
// assignment resets the list; the first remaining one is returned). Leading
// prefixes (-, @, +, !) are dropped.
std::vector<std::string> unit_exec_start(const std::vector<UnitSetting>& settings);

// The same ExecStart= value as written (prefixes, quotes, $VARIABLES and %specifiers untouched), or "":
// what a drop-in copies so the command means what the vendor meant.
std::string unit_exec_start_text(const std::vector<UnitSetting>& settings);

// Splits a command line on blanks as systemd splits ExecStart=: "double" and 'single' quotes anywhere in a
// word, and C escapes in and out of quotes (\" \' \\ \n \t \s \xHH \NNN \uHHHH, "\ " a blank that does
// not split). An escape systemd does not know is kept as written (systemd would refuse the whole line).
std::vector<std::string> split_command_line(std::string_view line);

// How many bytes from `at` (a backslash) the escape there spans, and what it stands for.
struct Unescaped {
  std::size_t length = 1;
  std::string text;
};
Unescaped unescape_at(std::string_view line, std::size_t at);

}  // namespace gpuwarm
