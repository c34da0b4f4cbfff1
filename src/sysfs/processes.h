#pragma once
// One walk of /proc answers what every collection asks of processes: is nvidia-persistenced running, and
// which scheduler's node daemon is (the scan for other GPU clients, done only when persistence is off,
// lists /proc again later). Each process is known by its PID and its command name, read from
// /proc/PID/comm: the kernel answers that from the task itself. /proc/PID/cmdline is read from the
// process's memory and waits on its memory lock, so reading it for every process would let one process
// stuck in the driver hang the walk (and a health check with it); it is read only for processes that may
// be the daemon, and under a deadline (sysfs/daemon.h).

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/paths.h"
#include "core/result.h"

namespace gpuwarm {

struct ProcessName {
  int pid = 0;
  std::string comm;  // at most 15 bytes (the kernel cuts it), made printable; "" when unreadable (exited)
};

// PIDs listed under /proc, in directory order; the error when /proc cannot be listed, lists none, or hides other
// users' processes from gpuwarm (hidepid, see below): a list without them would read as "the daemon is not
// running", "no scheduler" and "no other client".
Result<std::vector<int>> list_pids(const Paths& paths);

// Who is asking, for the hidepid check: root sees every process whatever the mount says.
struct ProcViewer {
  unsigned euid = 0;
  std::vector<unsigned> groups;  // effective and supplementary group IDs
};

// Why the /proc mounted at /proc (the last proc mount there in `mountinfo`, /proc/self/mountinfo's text) hides
// other users' processes from `viewer`: "" when it does not. hidepid=1/noaccess lists them but refuses their
// files, 2/invisible and 4/ptraceable do not list them; a member of the mount's gid= group sees them all.
std::string hidepid_hides_others(std::string_view mountinfo, const ProcViewer& viewer);

// Every process with its command name.
Result<std::vector<ProcessName>> list_processes(const Paths& paths);

std::string read_comm(const Paths& paths, int pid);

// gpuwarm's own PID as the /proc it reads numbers processes: getpid() on the live system; under a root whose
// proc is a real procfs (a pod reading the host at /host without hostPID) what its `self` link names, the PID
// there; none in a recorded tree, whose `self` is whatever was recorded.
std::optional<int> own_pid(const Paths& paths);

// /proc/PID/cmdline, the one way gpuwarm reads another process's arguments: under a deadline (it waits on
// the process's memory lock), and never a second time while an earlier read of that process is still
// blocked in the kernel (`metrics --listen` and `watch` collect again and again).
using CmdlineReader = std::function<std::string(const std::string& path)>;  // "" when unreadable
std::string read_cmdline_file(const std::string& path);  // read_file, at most 1 MiB
inline constexpr std::chrono::milliseconds k_cmdline_deadline{1000};

struct CmdlineRead {
  std::optional<std::string> text;      // NUL-separated; nullopt when it did not answer in time
  bool earlier_read_pending = false;    // not tried: an earlier read of this process is still blocked
  std::string missing;                  // why `text` is empty, for the report ("" when read)
};
CmdlineRead read_cmdline(const Paths& paths, int pid, std::chrono::milliseconds deadline = k_cmdline_deadline,
                         const CmdlineReader& reader = read_cmdline_file);

// The arguments of a cmdline text, made printable; trailing empty ones dropped.
std::vector<std::string> split_cmdline(std::string_view text);

// One file a process holds open, as /proc/PID/fd tells it.
struct OpenFile {
  std::string path;  // the link's text; a node removed since it was opened reads "PATH (deleted)"
  struct Number {
    unsigned major = 0;
    unsigned minor = 0;
  };
  std::optional<Number> char_device;  // when it is a character device (unknown for a recorded /proc)
};

// The files PID holds open, or why its fd folder could not be listed. The type of each file under /dev comes
// from the open file itself (statx through the fd link, cached attributes only; nothing outside /dev is asked,
// so a file on a hung network mount cannot block the walk): a node renamed in a container, or replaced since it
// was opened, keeps its number.
Result<std::vector<OpenFile>> read_open_files(const Paths& paths, int pid);

// Character-device major of NVIDIA's nodes (Linux's devices.txt): minor N is GPU N, 254 nvidia-modeset,
// 255 nvidiactl. nvidia-uvm and nvidia-caps take majors of their own, found only by name.
inline constexpr unsigned k_nvidia_char_major = 195;

// The GPU an open file holds: a character device 195:N with N < 254, whatever its name; by the name
// /dev/nvidiaN only where it is no character device (its type unread, or a stand-in file in a test's node).
std::optional<unsigned> held_gpu_minor(const OpenFile& file);
// held_gpu_minor of each, sorted, each once.
std::vector<unsigned> held_gpu_minors(const std::vector<OpenFile>& files);
// One of the driver's nodes: major 195, or a name under /dev/nvidia (nvidia-uvm, nvidia-caps/...).
bool is_nvidia_device(const OpenFile& file);

}  // namespace gpuwarm
