#pragma once
// Reading many files fast, shared by `lint` and `fleet-summary`: walk the
// PATH arguments, read each file with one open/fstat/read, and spread the
// files over the cores.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/result.h"

namespace gpuwarm {

struct Walk {
  std::vector<std::string> files;    // files named, then directory contents in walk order
  std::vector<std::string> missing;  // PATH arguments that do not exist
  // Directories that could not be listed (or whose listing broke off), with why: what they hold is unknown.
  std::vector<std::pair<std::string, std::string>> unreadable;
  // Entries met inside directories and not read: links not followed (by what they name), FIFOs, sockets and
  // devices. What they hold was not read.
  enum class Skipped { link_to_file, link_to_folder, link_to_nothing, mask, link_to_other, not_a_file };
  std::vector<std::pair<std::string, Skipped>> passed_over;
};

// "a link to a file", "a FIFO, socket or device", ...: how lint and fleet-summary name what the walk passed over.
std::string passed_over_text(Walk::Skipped why);

enum class FileLinks { note, follow };

// Directories are walked recursively (.git skipped, links to folders never followed); `wanted` filters the files
// found inside them. A link to a file is followed with FileLinks::follow (when wanted), else listed in
// `passed_over`, as are links to folders outside those walked, dangling links, FIFOs, sockets and devices. A
// file named directly is always taken. A file reached twice (named twice, named and inside a directory named, a
// hard link, a link and its target) is listed once, where it was first reached.
Walk walk_paths(const std::vector<std::string>& paths, const std::function<bool(const std::string&)>& wanted,
                FileLinks file_links = FileLinks::note);

// How a note of read_regular_file() begins when the file could not be read (not when it was skipped by
// design: too large, binary): the caller then cannot say what the file holds.
inline constexpr std::string_view k_unreadable_note = "unreadable: ";

// Reads a regular file into buffer[0, returned size) and zeroes `padding` bytes after it (parsers
// that read ahead). Returns false with `note` ("unreadable: ...", "skipped: larger than N MiB"). Anything but a
// regular file (a FIFO, a device, what a link swapped in names) is refused unopened.
bool read_regular_file(const std::string& path, std::string& buffer, std::size_t& size, std::string& note,
                       std::uintmax_t max_bytes, std::size_t padding = 0);

// A descriptor of the regular file at `path` (the caller closes it), opened only once its type is checked; or -1
// with `note` ("unreadable: ...").
int open_regular(const std::string& path, std::string& note);

// Whether the first `bytes` bytes of a regular file hold a NUL byte (the test for a binary file), for a file
// too large to read whole; nullopt when it cannot be read.
std::optional<bool> head_has_nul(const std::string& path, std::size_t bytes);

// A growable byte buffer for inputs of hundreds of MB (a whole fleet's JSON lines): anonymous memory
// with transparent huge pages, grown by mremap without copying. On VMs a 4 KiB page fault can cost
// more than parsing the page; zero-filling a std::string first doubled the time.
class LargeBuffer {
 public:
  LargeBuffer() = default;
  ~LargeBuffer();
  LargeBuffer(const LargeBuffer&) = delete;
  LargeBuffer& operator=(const LargeBuffer&) = delete;
  char* data() const { return m_data; }
  // Reads fd to its end (max_bytes at most) and zeroes `padding` bytes after what was read.
  // Returns the bytes read; errors name `what`.
  Result<std::size_t> read_all(int fd, const std::string& what, std::size_t padding, std::uintmax_t max_bytes);

 private:
  Result<void> grow(std::size_t bytes);
  char* m_data = nullptr;
  std::size_t m_capacity = 0;
};

// Calls fn(i) for i in [0, count) on up to every core (one thread when count < min_per_thread).
void parallel_for(std::size_t count, const std::function<void(std::size_t)>& fn, std::size_t min_for_threads = 64);

}  // namespace gpuwarm
