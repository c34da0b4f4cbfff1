#pragma once
// The node as gpuwarm saw it: passive data only. Collectors fill it, rules and
// renderers read it, and it round-trips through JSON so a snapshot recorded on
// one machine can be diagnosed on another.

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/strings.h"
#include "snapshot/fact.h"

namespace gpuwarm {

constexpr int k_snapshot_schema_version = 1;

// Why HostFacts::gpu_clients is missing when gpuwarm did not look, by design: the scan (every process's open
// files) only matters when a GPU reads persistence Disabled, where a client could be masking it.
constexpr const char* k_clients_not_scanned = "not scanned: no GPU reads persistence Disabled";

struct KernelGpu {  // /proc/driver/nvidia/gpus/<bus>/information
  std::string bus_id;  // as the directory is named: lower-case, 4-digit domain
  std::string model;
  std::string uuid;
  Fact<unsigned> minor;
  bool excluded = false;
  Fact<std::string> runtime_d3;  // "Runtime D3 status" in .../power: "Enabled (fine-grained)", "Disabled by default"
};

struct PciGpu {  // an NVIDIA GPU on the PCI bus held by a driver other than NVIDIA's
  std::string address;  // "0000:5e:00.0"
  std::string driver;   // as sysfs names it: "nouveau", "NovaCore"
  std::string module;   // the kernel module that provides it ("nova_core"); "" when built into the kernel
  bool operator==(const PciGpu&) const = default;
};

struct DeviceNode {  // /dev/nvidia*
  std::string path;
  bool char_device = false;
  unsigned mode = 0;  // permission bits
};

struct DriverFacts {
  bool module_loaded = false;          // /proc/driver/nvidia or /sys/module/nvidia exists
  Fact<std::string> proc_version_line; // first line of /proc/driver/nvidia/version
  Fact<std::string> kernel_version;    // version parsed from that line
  Fact<std::string> sys_module_version;
  Fact<bool> open_kernel_module;
  std::vector<KernelGpu> kernel_gpus;
  // Why /proc/driver/nvidia/gpus could not be listed where it exists ("" when listed, or no module): the list
  // NVML's count is checked against is then unknown, not empty. A snapshot from before this fact keeps the
  // default: its empty list is not known to have been read.
  std::string kernel_gpus_unread = std::string(k_not_in_snapshot);
  std::vector<DeviceNode> device_nodes;
  // PCI addresses of NVSwitches: NVIDIA devices (vendor 0x10de) of class 0x0680 ("bridge, other") under
  // /sys/bus/pci/devices, there whether or not a driver made /dev/nvidia-nvswitch* nodes. Read only by
  // commands that act on it (reset).
  Fact<std::vector<std::string>> nvswitches = Fact<std::vector<std::string>>::unknown("not read by this command");
  // PCI addresses of NVIDIA GPUs (vendor 0x10de, class 0x03xxxx) no kernel driver took: where the nvidia
  // module is loaded, one it failed to probe ("NVRM: The NVIDIA probe routine failed"); where it is not, a
  // GPU node without its driver. A GPU another driver took is in gpus_on_other_drivers.
  Fact<std::vector<std::string>> unbound_gpus = Fact<std::vector<std::string>>::unknown("not read");
  // NVIDIA GPUs another driver took before the NVIDIA one could: nouveau not blacklisted, nova-core (Linux
  // 6.15+), an fbdev driver. Passthrough drivers (vfio-pci, pci-stub, nvgrace-gpu-vfio-pci, pciback) are not
  // listed: a GPU handed to a VM is meant to be.
  Fact<std::vector<PciGpu>> gpus_on_other_drivers =
      Fact<std::vector<PciGpu>>::unknown(std::string(k_not_in_snapshot));
};

struct ClockSet {  // MHz
  Fact<unsigned> sm;
  Fact<unsigned> graphics;
  Fact<unsigned> mem;
};

struct EventCounter {  // cumulative time a clock-event reason was active
  std::string reason;
  unsigned field_id = 0;
  unsigned long long ns = 0;
};

struct GpuFacts {
  unsigned index = 0;
  std::string handle_error;  // non-empty when no handle could be had: nothing else is known
  // nvmlDeviceGetHandleByIndex: slow (seconds) when the GPU had de-initialized; -1 not measured (a snapshot
  // saved before gpuwarm recorded it), never exported as 0.
  double attach_ms = -1;
  Fact<std::string> name;
  Fact<std::string> uuid;
  Fact<std::string> pci_bus_id;  // NVML form: 8-digit upper-case domain
  Fact<unsigned> minor;
  Fact<bool> persistence;  // true = Enabled (daemon or legacy flag: NVML cannot tell)
  Fact<unsigned> pstate;   // 0..15, 32 = unknown
  ClockSet clocks;
  ClockSet max_clocks;
  ClockSet app_clocks;
  ClockSet default_app_clocks;
  Fact<std::uint64_t> event_reasons_active;
  Fact<std::uint64_t> event_reasons_supported;
  Fact<std::vector<EventCounter>> event_counters;
  std::string event_counter_ids;  // which field-ID set answered: "269-271", "251-253" or "74-81"
  Fact<int> temperature_c;
  Fact<unsigned> power_mw;
  Fact<unsigned> power_limit_mw;            // enforced: the lowest of every limit in force
  Fact<unsigned> requested_power_limit_mw;  // nvmlDeviceGetPowerManagementLimit: what `nvidia-smi -pl` set
  Fact<unsigned> default_power_limit_mw;    // what a reset or a de-initialization returns it to
  Fact<unsigned> mig_mode;          // 0 disabled, 1 enabled
  Fact<unsigned> mig_mode_pending;  // what the next reset switches MIG to (differs while a change waits)
  Fact<unsigned> compute_processes;
  Fact<bool> display_active;  // nvmlDeviceGetDisplayActive: a display is initialized on this GPU
};

// NvmlFacts::not_opened_by when, as root, --root named a tree not vouched for (UNK011, not a lock's UNK009).
inline constexpr std::string_view k_untrusted_root = "untrusted-root";

struct NvmlFacts {
  Fact<std::string> library_path;          // real file behind the loaded libnvidia-ml.so.1
  std::string library_found_by;            // why that file: "--nvml", "default loader path", "NixOS driver (...)"
  std::vector<std::string> library_passed_over;  // candidates tried first, each with why it was not used
  std::string timed_out_at;                // NVML did not answer by the deadline; what it was doing then
  std::string not_opened;                  // NVML was left closed on purpose, and why ("": it was asked)
  std::string not_opened_by;               // the lock that was held ("timing", "changing", "waiting"), or "untrusted-root"
  double timeout_s = 0;                    // the deadline that applied (0: none)
  Fact<std::string> library_file_version;  // from that file's name
  Fact<std::string> nvml_version;          // nvmlSystemGetNVMLVersion, "13.580.159.04"
  Fact<std::string> user_space_version;    // the driver part of nvml_version
  Fact<std::string> system_driver_version; // nvmlSystemGetDriverVersion (needs init)
  Fact<int> cuda_driver_version;           // 1000*major + 10*minor
  Fact<int> init_code;                     // nvmlInit_v2 return; missing when not attempted
  std::string init_error;                  // its name, e.g. "LIB_RM_VERSION_MISMATCH"
  double init_ms = 0;
  double load_ms = 0;      // dlopen + dlsym
  double devices_ms = 0;   // every per-GPU query
  double shutdown_ms = 0;
  Fact<unsigned> device_count;
  std::vector<GpuFacts> gpus;
};

// DaemonProcess::held_minors' reason when gpuwarm, not root, was refused the daemon's open files: the one
// unknown a check may skip rather than fail (root refused them, or any other reason, is "cannot tell").
inline constexpr const char* k_open_files_need_root = "needs root";

// The cgroup systemd runs nvidia-persistenced.service in: a process there was started by systemd's unit.
inline constexpr const char* k_unit_cgroup = "/system.slice/nvidia-persistenced.service";

struct DaemonProcess {
  int pid = 0;
  std::vector<std::string> argv;
  std::string argv_missing;  // why argv is empty though the process is named like the daemon ("" when read)
  Fact<unsigned> uid;
  Fact<std::vector<unsigned>> held_minors;  // /dev/nvidiaN it holds open (reading fds needs root)
  std::string executable;  // /proc/PID/exe ("" when it could not be read: needs root)
  Fact<std::string> cgroup;  // from /proc/PID/cgroup ("/system.slice/nvidia-persistenced.service")
};

// A process named nvidia-persistenced that is not this host's daemon: a container's (foreign), or one whose
// user or executable is not the daemon's (not_daemon).
struct ForeignDaemon {
  int pid = 0;
  std::string why;  // "another mount namespace (mnt:[4026532301], the host's mnt:[4026531841]): a container's"
};

struct DaemonFacts {
  Fact<std::string> binary;  // nvidia-persistenced on PATH or in a usual directory
  std::string binary_found_by;  // "PATH", or the layout of the directory it was found in
  std::vector<DaemonProcess> processes;  // this host's: in PID 1's mount and PID namespaces
  // Why /proc could not be listed in full ("" when it was): then an empty `processes` says nothing.
  std::string processes_unread;
  std::vector<ForeignDaemon> foreign;    // in another namespace (a container's daemon): named, never counted
  std::vector<ForeignDaemon> not_daemon;  // named like it, but another user's or another program: named, never counted
  Fact<bool> user_exists;                // an "nvidia-persistenced" account in /etc/passwd (fix's unit runs as it)
  bool runtime_dir = false;  // /run/nvidia-persistenced
  Fact<int> pid_file_pid;
  bool socket = false;
  // systemd's root cgroup as this /proc shows it: PID 1's cgroup less "/init.scope" ("/" on a host, the path
  // of systemd's container as seen from outside it); unknown when PID 1 is no systemd.
  Fact<std::string> manager_cgroup;
};

// How the kernel may name nvidia-persistenced's process (its comm, 15 bytes at most), one test for the
// daemon's processes (sysfs/daemon.cpp) and for the clients the kernel refused (ApiMismatch): the daemon's
// name cut to "nvidia-persiste", NixOS's wrapper ".nvidia-persistenced-wrapped" cut to ".nvidia-persist",
// or, for a process started through fexecve() on kernels before 6.14, its descriptor's number ("3").
inline bool comm_named_like_daemon(std::string_view comm) {
  return comm.find("nvidia-persist") != std::string_view::npos;
}
inline bool comm_is_descriptor_number(std::string_view comm) {
  return !comm.empty() && comm.find_first_not_of("0123456789") == std::string_view::npos;
}
inline bool comm_may_be_daemon(std::string_view comm) {
  return comm_named_like_daemon(comm) || comm_is_descriptor_number(comm);
}

// Why a client's version may not be read exactly (ApiMismatch::client_version_exact false), for messages.
inline constexpr const char* k_client_version_inexact_why =
    "the line is worded otherwise than gpuwarm reads, or a text log shows it with the time stamp of the record "
    "before it (so it may be that record's text)";

struct ApiMismatch {  // "NVRM: API mismatch" in the kernel log
  std::string client;          // "'nvidia-smi' (pid 123)" on >= 575, else ""
  std::string client_version;  // user space, as the client sent it (escaped): not always a version
  std::string kernel_version;  // loaded module
  bool after_module_load = true;  // false when a later "NVRM: loading" superseded it
  bool client_version_exact = false;  // read between the kernel's own words (k_client_version_inexact_why)

  // The kernel named a client that may be nvidia-persistenced (comm_may_be_daemon on the quoted name).
  bool refused_the_daemon() const {
    // "'nvidia-persiste' (pid 812)": the name is what the quotes before " (pid" hold
    const auto open = client.find('\'');
    const auto close = client.rfind("' (pid");
    if (open == std::string::npos || close == std::string::npos || close <= open) {
      return comm_may_be_daemon(client);
    }
    return comm_may_be_daemon(std::string_view(client).substr(open + 1, close - open - 1));
  }
  // The client's version for a message: read exactly, a version as it reads and any other text the client
  // sent in quotes (so that even none shows); otherwise "?", with the version-like token a line worded
  // otherwise holds (it may be the module's own, printed beside the client's).
  std::string shown_client_version() const {
    const bool well_formed = compare_driver_versions(client_version, client_version).has_value();
    if (client_version_exact) {
      return well_formed ? client_version : "\"" + client_version + "\"";
    }
    return well_formed ? "? (perhaps " + client_version + ")" : "?";
  }
};

// The copies of a driver library the dynamic loader could hand a program asking for its soname
// (nvml/nvml_library.h, loadable_copies), each with the version its file is named by.
struct LoadableCopy {
  std::string path;     // the soname's path as found ("/usr/lib/x86_64-linux-gnu/libnvidia-cfg.so.1")
  std::string version;  // from the real file's name ("580.95.05"); "" when the name holds none
};
struct LoadableCopies {
  bool looked = false;
  std::vector<LoadableCopy> copies;
  std::string unread;  // why the list may miss a copy ("" = every place gpuwarm looks was read)
};

struct KernelLogFacts {
  Fact<std::string> source;  // "/dev/kmsg" or the --kernel-log file; missing = not read, with why
  bool named = false;        // a file the caller named (--kernel-log): one not read is no empty log
  unsigned records = 0;
  std::vector<ApiMismatch> mismatches;
  bool legacy_persistence_notice = false;  // "Persistence mode is deprecated" since the module loaded
  Fact<std::string> loaded_version;        // from the last "NVRM: loading ..." line
  // /dev/kmsg read in part: the kernel logged as fast as it was read, and its newest records (where a fresh
  // "API mismatch" would be) were left when the read's deadline came. `source` says so too.
  bool newest_unread = false;
};

struct GpuClient {  // a process other than gpuwarm holding /dev/nvidiaN open
  int pid = 0;
  std::string comm;  // the command name only: others' arguments may hold secrets
  std::vector<unsigned> minors;
};

struct HostFacts {
  Fact<unsigned> chassis_type;          // SMBIOS, /sys/class/dmi/id/chassis_type (absent in most VMs)
  // Job schedulers' node daemons seen running ("slurmd (pid 812)"); missing when /proc could not be listed.
  Fact<std::vector<std::string>> schedulers;
  // Who holds each GPU open. Scanned when some GPU reads persistence Disabled;
  // otherwise missing with the reason.
  Fact<std::vector<GpuClient>> gpu_clients;  // k_clients_not_scanned when there was no need
  unsigned unreadable_processes = 0;    // processes whose open files could not be read (not root)
};

// The drop-in `gpuwarm fix` writes (its content is recorded so a fix can be planned from a recording).
constexpr const char* k_gpuwarm_dropin_path = "/etc/systemd/system/nvidia-persistenced.service.d/50-gpuwarm.conf";

struct ServiceFacts {
  std::string unit = "nvidia-persistenced.service";
  bool reachable = false;    // a systemd manager answered on the system bus
  std::string unreachable;   // why not ("no systemd", "--no-systemd", bus error)
  bool not_asked = false;    // gpuwarm chose not to ask (--no-systemd, check): not a sign of a missing systemd
  // The live host was booted with systemd (/run/systemd/system, as sd_booted()): unreachable there is a fault,
  // not the absence of systemd. Unknown (a snapshot older than the fact) counts as maybe: manager_may_run().
  Fact<bool> manager_booted = Fact<bool>::known(false);
  Fact<std::string> load_state;
  Fact<std::string> active_state;
  Fact<std::string> sub_state;
  Fact<std::string> unit_file_state;
  Fact<std::vector<std::string>> exec_start;  // argv of the first ExecStart=
  Fact<std::string> control_group;            // the unit's cgroup as systemd names it ("" when stopped)
  // systemd's own root cgroup as it names it: "" on a host or in a cgroup namespace, "/docker/abc" in a
  // container without one (the unit's ControlGroup then starts with it).
  Fact<std::string> manager_control_group;
  // The manager's Version property ("252.30-1~deb12u2", "239 (239-78.el8)"), for people: features are asked for.
  Fact<std::string> manager_version;
  // Whether this systemd reads ExecCondition= (the guard's hook): its Service interface has the property. Upstream
  // from 243; RHEL/Rocky 8 from 8.3 (backported into 239), so a version number does not say.
  Fact<bool> exec_condition;
  Fact<bool> stop_when_unneeded;
  Fact<std::string> restart;
  Fact<std::string> result;  // Service.Result of its last run: "exec-condition" when an ExecCondition= skipped it
  Fact<std::string> fragment_path;
  // Files on disk changed since systemd loaded the unit (a write whose daemon-reload failed or never ran).
  Fact<bool> need_daemon_reload;
  Fact<std::vector<std::string>> drop_in_paths;  // every drop-in systemd merged, in the order applied
  // Units that pull it in (WantedBy= and RequiredBy=, as loaded): how a static unit (no [Install]) starts at
  // boot, e.g. Ubuntu's, wanted by the nvidia driver's device unit through a udev rule.
  Fact<std::vector<std::string>> wanted_by;
  // What `fix` plans from, recorded with the rest: the unit file's text (at fragment_path, at most 64 KiB)
  // and gpuwarm's drop-in ("" with dropin_exists false when there is none).
  Fact<std::string> unit_text;
  Fact<std::string> gpuwarm_dropin_text;
  bool gpuwarm_dropin_exists = false;
  // The drop-ins systemd applies after gpuwarm's (their file names sort after it), path -> text: fix sees before
  // writing whether one of them would put --no-persistence-mode or StopWhenUnneeded=yes back.
  Fact<std::map<std::string, std::string>> later_dropins;
  // Those applied before it (path -> text): with the unit file they make what gpuwarm's drop-in starts from, so
  // a site's ExecStart= there (another binary path, --nvidia-cfg-path) is kept, less the flag.
  Fact<std::map<std::string, std::string>> earlier_dropins;
};

// systemd may run on the host where it did not answer: booted with it, or not recorded whether it was. There a
// unit's state is unknown, not absent.
inline bool manager_may_run(const ServiceFacts& service) { return !service.manager_booted.is(false); }

// Where manager_may_run() and systemd did not answer: "systemd runs on this host but did not answer", or, where
// that it runs is itself unknown, words that do not claim it.
inline std::string manager_unanswered(const ServiceFacts& service) {
  return service.manager_booted.has() ? "systemd runs on this host but did not answer"
                                      : "systemd did not answer, and whether this host runs it is not known";
}

// Every fact of the unit unknown for `why` (systemd not reachable, or not asked): one list, so a fact added to
// ServiceFacts is never left unknown without a reason.
inline void mark_unit_unknown(ServiceFacts& s, const std::string& why) {
  for (auto* f : {&s.load_state, &s.active_state, &s.sub_state, &s.unit_file_state, &s.restart, &s.result,
                  &s.fragment_path, &s.unit_text, &s.gpuwarm_dropin_text, &s.control_group,
                  &s.manager_control_group, &s.manager_version}) {
    *f = Fact<std::string>::unknown(why);
  }
  s.exec_start = s.drop_in_paths = s.wanted_by = Fact<std::vector<std::string>>::unknown(why);
  s.stop_when_unneeded = s.need_daemon_reload = s.exec_condition = Fact<bool>::unknown(why);
  s.later_dropins = s.earlier_dropins = Fact<std::map<std::string, std::string>>::unknown(why);
}

struct Snapshot {
  int schema_version = k_snapshot_schema_version;
  std::string gpuwarm_version;
  std::string hostname;
  std::string collected_at;  // UTC, ISO 8601
  bool root = false;         // collected with uid 0
  double collect_ms = 0;
  std::map<std::string, double> stage_ms;  // per source, for --json readers and benchmarks
  std::vector<std::string> needs_root;  // facts that were skipped or partial without root
  DriverFacts driver;
  NvmlFacts nvml;
  DaemonFacts daemon;
  KernelLogFacts kernel_log;
  ServiceFacts service;
  HostFacts host;
  // Keys this gpuwarm writes that a snapshot read back lacked (saved by an older gpuwarm, or edited), as
  // "daemon.processes_unread", "nvml.gpus[].handle_error": their defaults would read as "looked, nothing wrong",
  // so a verdict cannot rest on them (UNK010). Kept when written again, so a re-saved snapshot stays marked.
  std::vector<std::string> absent_keys;
};

}  // namespace gpuwarm
