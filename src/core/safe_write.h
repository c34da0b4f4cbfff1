#pragma once
// The one way gpuwarm writes a file as root (drop-ins, units, baselines,
// reports): no symlink followed, nothing half-written visible, explicit modes
// whatever the umask, and durable once it returns.

#include <string>
#include <sys/types.h>

#include "core/result.h"

namespace gpuwarm {

struct WriteOptions {
  // The tree the path is inside (--root): opened as named, links and all, since
  // the operator chose it (e.g. /proc/PID/root of a container); below it no
  // symbolic link is followed.
  std::string root = "/";
  mode_t file_mode = 0644;
  mode_t dir_mode = 0755;      // for directories it creates
  bool create_dirs = true;     // create missing parents (each with dir_mode)
  // Also write into a folder another user owns (node_exporter's textfile folder, often chown'd to prometheus),
  // still not one writable by group or others. Safe since every step goes through the folder's descriptor:
  // the temporary file is created O_EXCL|O_NOFOLLOW, and a rename replaces a link put in the target's place
  // without following it. The file stays root's.
  bool any_folder_owner = false;
};

// Writes `content` to `path` (absolute, inside options.root) atomically:
//  - every parent directory is opened with O_NOFOLLOW from the root down, created
//    with dir_mode where missing; a symlinked parent is refused, and so is a
//    folder written into that is neither root's nor the caller's (unless
//    any_folder_owner) or is writable by group/others (unless sticky and root's);
//  - a temporary file is created beside the target with O_EXCL|O_NOFOLLOW and
//    a random name, chmod'ed to file_mode, written, fsync'ed;
//  - renameat over the target (which, if it exists, must be a regular file:
//    never a directory, link, device, FIFO or socket), then the directory is
//    fsync'ed.
// On any failure nothing is left behind and the old file is unchanged, and the message names the target.
// The stop signals are held from the walk that makes the folders to the rename or the removal of what it made. A
// temporary file of the same target that a write killed outright left behind (the caller's, untouched for 10
// minutes) is removed after the rename.
Result<void> write_file_atomically(const std::string& path, const std::string& content,
                                   const WriteOptions& options = {});

// What write_file_atomically would refuse, found before the content exists (a probe takes minutes: its
// --save target is checked first): the same folder walk and target check, creating nothing.
Result<void> check_write_target(const std::string& path, const WriteOptions& options = {});

// Writes all of `text` to fd (EINTR and short writes handled). False on any error (ENOSPC too).
bool write_all(int fd, const std::string& text);

}  // namespace gpuwarm
