#pragma once
// Small file helpers. They never throw and never log: the caller decides
// whether a missing file is a fact ("module not loaded") or an error.

#include <cstddef>
#include <string>
#include <vector>

#include "core/result.h"

namespace gpuwarm {

// What open_for_reading accepts.
inline constexpr unsigned k_regular = 1;
inline constexpr unsigned k_directory = 2;
inline constexpr unsigned k_kmsg_device = 4;  // the character device 1:11, and no other

// A descriptor (O_RDONLY|O_NONBLOCK|O_CLOEXEC; the caller closes it) for `path`, opened only once it is known
// to be one of `kinds`: any other device is never opened, since opening one can act (a watchdog arms).
// Links are followed, as in open(2).
Result<int> open_for_reading(const std::string& path, unsigned kinds);

// Reads a whole (small) regular file, without blocking: FIFOs, sockets and
// devices are refused, unopened. Error message: "<path>: <strerror>".
// Files from /proc and /sys report size 0, so this reads until EOF; max_bytes
// guards against a runaway or hostile file.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = 4u << 20);

// A regular file named by the user (--kernel-log, --snapshot, --replay, a
// report): opened without blocking, refused when it is a FIFO, a device or a
// directory, and at most the last `max_bytes` kept (from the first line start
// in them), since what matters in a log is its end. `truncated` says so.
struct TextFile {
  std::string text;
  bool truncated = false;
};
Result<TextFile> read_regular_tail(const std::string& path, std::size_t max_bytes);
// The same over a regular file already opened (and checked) by the caller; closes `fd`. `path` names it in errors.
Result<TextFile> read_tail_and_close(int fd, const std::string& path, std::size_t max_bytes);

// True if anything (file, directory, device, dangling link) exists at path.
bool path_exists(const std::string& path);

// Entries of a directory (no "." or ".."), sorted. Error if it cannot be opened.
Result<std::vector<std::string>> list_dir(const std::string& path);

// readlink(2) as a string.
Result<std::string> read_link(const std::string& path);

// Reads the first line without the newline, trimmed of surrounding blanks.
Result<std::string> read_first_line(const std::string& path);

// Why a file, or a directory above it, could be replaced by a user other than
// root or the caller ("" when it cannot): what root may run or load.
std::string replaceable_by_others(const std::string& path);

// Why a folder the loader would search for a program run as root could hand it a library another user put
// there ("" when it cannot): the folder as named and as resolved (replaceable_by_others), each file and link to
// a file in it (and where the link leads), and the subfolders the loader searches first (glibc-hwcaps/<level>/,
// glibc's legacy tls/, x86_64/, haswell/, nested up to three deep). A folder of more than 16384 entries is not checked, and not trusted.
std::string library_folder_replaceable_by_others(const std::string& folder);

// Why code under `root` (its libnvidia-ml, its nvidia-persistenced) must not run in this process or its children
// ("" when it may): as root, a tree other than this host's own / may be a container's or an unpacked image's,
// whose files are owned by uid 0 and pass every ownership check all the same. So as root (`as_root`: the euid is
// 0) such a tree's code runs only where the caller vouches for it (`trusted`: --trust-root, the host's / mounted
// in a pod). Another name for this host's / (a link to it, /proc/1/root) is vouched for the same way: a check by
// path that it is the same object could be raced (the name swapped later) or fooled (a /proc/PID/root of another
// mount namespace shares /'s inode but not its mounts). Not root: the caller runs it as themselves.
std::string untrusted_root_for_code(const std::string& root, bool trusted, bool as_root);

// Whether `path` names something inside `dir` (or `dir` itself), as written or once links are resolved on either
// side: a --nvml file reached through a link into a --root tree is that tree's code.
bool path_within(const std::string& path, const std::string& dir);

// The system directories root runs helper programs from (dcgmi, udevadm):
// never $PATH, whose entries may be relative or the caller's.
extern const std::vector<std::string> k_system_bin_dirs;

// The first executable `name` in `dirs` (absolute, looked up under `root`)
// that no one but root or the caller can replace: the file, its folders, and
// every link passed through on the way (followed inside the root). The path
// is returned as seen inside the root; to run it under a root other than "/",
// run Paths(root).resolve(path), the file that was checked (the kernel would
// follow an absolute link from the caller's /). The error says what was
// refused and why.
Result<std::string> find_system_executable(const std::string& root, const std::string& name,
                                           const std::vector<std::string>& dirs = k_system_bin_dirs);

}  // namespace gpuwarm
