#pragma once
// Small file helpers. They never throw and never log: the caller decides
// whether a missing file is a fact ("module not loaded") or an error.

#include <cstddef>
#include <string>
#include <vector>

#include "core/result.h"

namespace gpuwarm {

// Reads a whole (small) file. Error message: "<path>: <strerror>".
// Files from /proc and /sys report size 0, so this reads until EOF; max_bytes
// guards against a runaway or hostile file.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = 4u << 20);

// True if anything (file, directory, device, dangling link) exists at path.
bool path_exists(const std::string& path);

// Entries of a directory (no "." or ".."), sorted. Error if it cannot be opened.
Result<std::vector<std::string>> list_dir(const std::string& path);

// readlink(2) as a string.
Result<std::string> read_link(const std::string& path);

// Reads the first line without the newline, trimmed of surrounding blanks.
Result<std::string> read_first_line(const std::string& path);

}  // namespace gpuwarm
