// `gpuwarm reload-modules`: swap the loaded NVIDIA kernel modules for the
// ones a driver update installed, when that is safe; otherwise refuse and say
// why (holders, a kernel that changed too). Planned by modules::plan_reload;
// acted on through ModuleOps: libkmod and udevadm on a live system, a
// recording stand-in under a test --root.

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <unordered_map>

#include <fmt/format.h>

#include "cli/child_process.h"
#include "cli/command.h"
#include "cli/option_checks.h"
#include "cli/node_lock.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/paths.h"
#include "core/safe_write.h"
#include "core/signal_shield.h"
#include "core/strings.h"
#include "modules/kmod_api.h"
#include "modules/reload.h"
#include "snapshot/snapshot_json.h"
#include "sysfs/daemon.h"
#include "sysfs/host.h"

namespace gpuwarm {

namespace {

namespace fs = std::filesystem;
using namespace kmod;  // NOLINT: libkmod's own names, resolved at run time

struct ReloadOptions {
  std::string root = "/";
  std::string module_dir;  // default /lib/modules/$(uname -r)
  bool dry_run = false;
  bool yes = false;
  bool json = false;
};

// The nvidia* lines of /proc/modules; `unread` says why it could not be read.
std::vector<modules::LoadedModule> read_loaded(const Paths& paths, std::string* unread = nullptr) {
  std::vector<modules::LoadedModule> out;
  auto text = read_file(paths.proc("modules"));
  if (!text) {
    if (unread != nullptr) {
      *unread = paths.display(text.error().message);
    }
    return out;
  }
  for (const auto& line : split_lines(*text)) {
    auto fields = split(line, ' ');
    if (fields.size() < 4 || !starts_with(fields[0], "nvidia")) {
      continue;
    }
    modules::LoadedModule m;
    m.name = std::string(fields[0]);
    if (auto count = parse_u64(fields[2]); count && *count <= UINT32_MAX) {
      m.refcount = static_cast<unsigned>(*count);
    }
    for (auto user : split(fields[3], ',')) {
      if (!user.empty() && user != "-") {
        m.used_by.emplace_back(user);
      }
    }
    out.push_back(std::move(m));
  }
  return out;
}

// Processes with an NVIDIA node open (this one excluded): any CUDA or NVML client, nvidia-persistenced, a job on
// a GPU. Holders of nvidia_drm's /dev/dri nodes are not named here (the node's other GPUs share that folder):
// the kernel's reference count catches them.
void read_holders(const Paths& paths, modules::ReloadFacts& facts) {
  DeviceScan scan = scan_nvidia_holders(paths, {static_cast<int>(::getpid())});
  facts.holders.clear();
  facts.holders_unlisted = scan.unlisted;
  facts.unreadable_processes = scan.unreadable;
  for (const auto& h : scan.holders) {
    std::string what;
    for (const auto& d : h.devices) {
      what += (what.empty() ? "" : ", ") + d;
    }
    facts.holders.push_back({h.pid, h.comm.empty() ? "?" : h.comm, what + " open"});
  }
}

// depmod's choice per module file: the order of modules.dep (each name once,
// the copy its search order prefers). Empty when the directory has none.
std::unordered_map<std::string, int> modules_dep_order(const std::string& dir) {
  std::unordered_map<std::string, int> order;
  auto text = read_file(dir + "/modules.dep", 64u << 20);
  if (!text) {
    return order;
  }
  int n = 0;
  for (const auto& line : split_lines(*text)) {
    auto colon = line.find(':');
    if (colon != std::string::npos) {
      order.emplace(dir + "/" + line.substr(0, colon), n++);
    }
  }
  return order;
}

// depmod's default search order when there is no modules.dep: updates/ (DKMS
// builds), then extra/, then the rest.
int default_priority(const std::string& path) {
  if (path.find("/updates/") != std::string::npos) return 0;
  if (path.find("/extra/") != std::string::npos) return 1;
  return 2;
}

// nvidia*.ko (also .ko.xz/.ko.zst) under `dir`, with modinfo read by libkmod,
// which copy modprobe would take, and the options /etc/modprobe.d gives it.
std::vector<modules::ModuleFile> read_module_files(const std::string& dir) {
  std::vector<modules::ModuleFile> out;
  // Without a context the files are still listed, each with why its modinfo is unknown: plan_reload refuses
  // them, where an empty list would read as "no new modules" (a reboot).
  kmod_ctx* ctx = kmod_new(nullptr, nullptr);
  if (ctx != nullptr) {
    (void)kmod_load_resources(ctx);  // the configuration: options lines in /etc/modprobe.d
  }
  const auto dep_order = modules_dep_order(dir);
  static const std::regex ko("(nvidia[-_a-z]*)\\.ko(\\.xz|\\.zst|\\.gz)?");
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::smatch m;
    std::string file = it->path().filename().string();
    if (ec || !it->is_regular_file(ec) || !std::regex_match(file, m, ko)) {
      continue;
    }
    modules::ModuleFile mf;
    mf.name = modules::canonical_module_name(m[1]);
    const std::string found = it->path().string();
    if (dep_order.empty()) {
      mf.priority = default_priority(found);
    } else {
      // Not depmod's choice: after every listed copy, in depmod's default order among themselves.
      auto listed = dep_order.find(found);
      mf.priority = listed != dep_order.end() ? listed->second : (1 << 30) + default_priority(found);
    }
    // The file is checked, and later loaded, where its links lead: a link in a folder a user owns could be
    // pointed elsewhere between the check and the load, and a link to a user's build tree is that user's.
    std::error_code real_ec;
    const std::string real = fs::canonical(it->path(), real_ec).string();
    mf.path = real_ec ? found : real;
    mf.untrusted = real_ec ? "cannot be resolved" : replaceable_by_others(real);
    if (!mf.untrusted.empty() && !real_ec && real != found) {
      mf.untrusted = "(found as " + found + ") " + mf.untrusted;
    }
    if (ctx == nullptr) {
      mf.modinfo_unread = "libkmod could not create a context";
      out.push_back(std::move(mf));
      continue;
    }
    if (kmod_module* named = nullptr; kmod_module_new_from_name(ctx, mf.name.c_str(), &named) == 0) {
      if (const char* options = kmod_module_get_options(named)) {
        mf.options = options;
      }
      kmod_module_unref(named);
    }
    kmod_module* mod = nullptr;
    if (int r = kmod_module_new_from_path(ctx, mf.path.c_str(), &mod); r != 0) {
      mf.modinfo_unread = fmt::format("libkmod cannot open the file: {}", std::strerror(-r));
    } else {
      kmod_list* info = nullptr;
      if (int n = kmod_module_get_info(mod, &info); n < 0) {
        mf.modinfo_unread = fmt::format("libkmod cannot read its modinfo: {}", std::strerror(-n));
      } else {
        for (kmod_list* entry = info; entry != nullptr; entry = kmod_list_next(info, entry)) {
          std::string key = kmod_module_info_get_key(entry);
          const char* value = kmod_module_info_get_value(entry);
          if (key == "version" && value != nullptr) {
            mf.version = value;
          } else if (key == "vermagic" && value != nullptr) {
            std::string v = value;
            mf.vermagic_kernel = v.substr(0, v.find(' '));
          }
        }
        kmod_module_info_free_list(info);
      }
      kmod_module_unref(mod);
    }
    out.push_back(std::move(mf));
  }
  if (ctx != nullptr) {
    kmod_unref(ctx);
  }
  return out;
}

// How a plan's steps are carried out.
class ModuleOps {
 public:
  virtual ~ModuleOps() = default;
  virtual Result<void> unload(const std::string& name) = 0;
  virtual Result<void> load(const std::string& path, const std::string& options) = 0;
  virtual Result<void> udev_trigger() = 0;
};

class KmodOps : public ModuleOps {
 public:
  KmodOps() : m_ctx(kmod_new(nullptr, nullptr)) {}
  ~KmodOps() override { kmod_unref(m_ctx); }
  KmodOps(const KmodOps&) = delete;
  KmodOps& operator=(const KmodOps&) = delete;

  Result<void> unload(const std::string& name) override {
    kmod_module* mod = nullptr;
    if (kmod_module_new_from_name(m_ctx, name.c_str(), &mod) != 0) {
      return fail("cannot look up module " + name);
    }
    int r = kmod_module_remove_module(mod, 0u);
    kmod_module_unref(mod);
    return r == 0 ? Result<void>{} : fail(fmt::format("rmmod {}: {}", name, std::strerror(-r)));
  }
  Result<void> load(const std::string& path, const std::string& options) override {
    kmod_module* mod = nullptr;
    if (kmod_module_new_from_path(m_ctx, path.c_str(), &mod) != 0) {
      return fail("cannot open module file " + path);
    }
    // The configured options (NVreg_DeviceFileMode, modeset=1), as modprobe would pass them.
    int r = kmod_module_insert_module(mod, 0u, options.empty() ? nullptr : options.c_str());
    kmod_module_unref(mod);
    return r == 0 ? Result<void>{} : fail(fmt::format("insmod {}: {}", path, std::strerror(-r)));
  }
  Result<void> udev_trigger() override {
    // From the system directories, only if nobody but root can replace it.
    auto udevadm = find_system_executable("/", "udevadm");
    if (!udevadm) {
      return tl::unexpected(udevadm.error());
    }
    for (const auto& [argv, timeout_ms] :
         {std::pair<std::vector<std::string>, int>{{*udevadm, "trigger", "--action=add", "--attr-match=vendor=0x10de"},
                                                   30000},
          {{*udevadm, "settle"}, 60000}}) {
      auto r = run_child(argv, timeout_ms, 64u << 10);
      if (!r) {
        return tl::unexpected(r.error());
      }
      if (r->exit_code != 0) {
        // settle exits 1 when events are still queued at its timeout: /dev/nvidia* may not exist yet.
        return fail(fmt::format("`{} {}` exited with {}: {}", argv[0], argv[1], r->exit_code,
                                escape_control(std::string(trim(r->output)))));
      }
    }
    return {};
  }

 private:
  kmod_ctx* m_ctx;
};

#ifdef GPUWARM_TEST_HOOKS
// Removes `name` in the folder `dir` and, if it is a folder, what it holds, following no symbolic link: a
// link is removed itself, never what it points to.
Result<void> remove_tree_at(int dir, const std::string& name, const std::string& shown) {
  struct stat st {};
  if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    const int err = errno;
    return err == ENOENT ? Result<void>{} : fail(fmt::format("{}: {}", shown, std::strerror(err)));
  }
  if (S_ISDIR(st.st_mode)) {
    int fd = ::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    DIR* d = fd < 0 ? nullptr : ::fdopendir(fd);
    if (d == nullptr) {
      int err = errno;
      if (fd >= 0) {
        ::close(fd);
      }
      return fail(fmt::format("{}: {}", shown, std::strerror(err)));
    }
    std::vector<std::string> entries;
    while (const dirent* e = ::readdir(d)) {
      if (std::string_view(e->d_name) != "." && std::string_view(e->d_name) != "..") {
        entries.emplace_back(e->d_name);
      }
    }
    Result<void> r;
    for (const auto& e : entries) {
      if (r) {
        r = remove_tree_at(::dirfd(d), e, shown + "/" + e);
      }
    }
    ::closedir(d);
    if (!r) {
      return r;
    }
  }
  if (::unlinkat(dir, name.c_str(), S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0) {
    const int err = errno;
    return fail(fmt::format("{}: {}", shown, std::strerror(err)));
  }
  return {};
}

// Removes the host path `absolute` ("/sys/module/nvidia") under `root`: each folder above it is opened without
// following a link, so a linked <root>/sys cannot send the removal outside the root.
Result<void> remove_under_root(const std::string& root, const std::string& absolute) {
  const std::string top = root.empty() ? "/" : root;
  int dir = ::open(top.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);  // the root as named, as safe_write does
  if (dir < 0) {
    return fail(fmt::format("{}: {}", top, std::strerror(errno)));
  }
  auto parts = split(absolute, '/');
  std::erase_if(parts, [](std::string_view p) { return p.empty(); });
  if (parts.empty()) {
    ::close(dir);
    return fail("nothing to remove: " + absolute);
  }
  std::string shown;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    shown += "/" + std::string(parts[i]);
    int next = ::openat(dir, std::string(parts[i]).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      const int err = errno;
      ::close(dir);
      if (err == ENOENT) {
        return {};  // nothing there to remove
      }
      if (err == ELOOP || err == ENOTDIR) {
        return fail(shown + " is a symbolic link or not a directory: the stand-in removes nothing through it");
      }
      return fail(fmt::format("{}: {}", shown, std::strerror(err)));
    }
    ::close(dir);
    dir = next;
  }
  Result<void> r = remove_tree_at(dir, std::string(parts.back()), absolute);
  ::close(dir);
  return r;
}

// Test stand-in, only under a --root other than "/": edits the fake root's
// /proc/modules and /sys/module/nvidia/version as the kernel would, logs each
// call to $GPUWARM_FAKE_MODULE_OPS, and fails the call named by
// $GPUWARM_FAKE_MODULE_FAIL ("load nvidia_uvm"). It runs as root in the
// tests too, so it writes as gpuwarm writes every file (safe_write: no link
// followed below the root, nor anywhere on the log's absolute path) and
// removes without following links.
class FakeRootOps : public ModuleOps {
 public:
  FakeRootOps(const Paths& paths, std::string log, std::string fail_on, std::vector<modules::ModuleFile> files)
      : m_paths(paths), m_log(std::move(log)), m_fail_on(std::move(fail_on)), m_files(std::move(files)) {}

  Result<void> unload(const std::string& name) override {
    if (auto r = record("unload " + name); !r) {
      return r;
    }
    std::string kept;
    for (const auto& line : split_lines(read_file(m_paths.proc("modules")).value_or(""))) {
      if (!starts_with(line, name + " ")) {
        kept += line + "\n";
      }
    }
    if (auto r = write_in_root("/proc/modules", kept); !r) {
      return r;
    }
    if (name == "nvidia") {
      return remove_under_root(m_paths.root(), "/sys/module/nvidia");
    }
    return {};
  }
  Result<void> load(const std::string& path, const std::string& options) override {
    std::string name;
    std::string version;
    for (const auto& f : m_files) {
      if (f.path == path) {
        name = f.name;
        version = f.version;
      }
    }
    if (auto r = record("load " + name + (options.empty() ? "" : " " + options)); !r) {
      return r;
    }
    if (auto r = write_in_root("/proc/modules", read_file(m_paths.proc("modules")).value_or("") + name +
                                                    " 1000 0 - Live 0x0 (O)\n");
        !r) {
      return r;
    }
    if (name == "nvidia") {
      return write_in_root("/sys/module/nvidia/version", version + "\n");
    }
    return {};
  }
  Result<void> udev_trigger() override { return record("udev-trigger"); }

 private:
  // The log is named by the environment, outside the root: appended by rewriting it whole, refused when it is
  // not an absolute path or a link lies on the way (then the call is not made either).
  Result<void> record(const std::string& op) {
    auto old = read_file(m_log, 1u << 20);
    std::error_code ec;
    if (!old && fs::symlink_status(m_log, ec).type() != fs::file_type::not_found) {
      return fail("$GPUWARM_FAKE_MODULE_OPS: cannot append to it: " + old.error().message);
    }
    if (auto r = write_file_atomically(m_log, old.value_or("") + op + "\n", WriteOptions{"/", 0644, 0755, false});
        !r) {
      return fail("$GPUWARM_FAKE_MODULE_OPS: " + r.error().message);
    }
    if (op == m_fail_on) {
      return fail(op + ": injected failure");
    }
    return {};
  }
  Result<void> write_in_root(const std::string& absolute, const std::string& text) const {
    WriteOptions where;
    where.root = m_paths.root();
    return write_file_atomically(absolute, text, where);
  }

  const Paths& m_paths;
  std::string m_log;
  std::string m_fail_on;
  std::vector<modules::ModuleFile> m_files;
};
#endif  // GPUWARM_TEST_HOOKS

// "nvidia, nvidia_uvm", "none", or "unknown (why)" where /proc/modules could not be read (`unread`, when given,
// gets why): never "none" then. Escaped, for text and JSON alike.
std::string loaded_list(const Paths& paths, std::string* unread = nullptr) {
  std::string why;
  std::string out;
  for (const auto& m : read_loaded(paths, &why)) {
    out += (out.empty() ? "" : ", ") + escape_control(m.name);  // /proc/modules text, arbitrary under --root
  }
  if (unread != nullptr) {
    *unread = why;
  }
  if (!why.empty()) {
    return "unknown (" + escape_control(why) + ")";
  }
  return out.empty() ? "none" : out;
}

// What brings the node back after step `failed` (plan.steps[failed]) did not work. Once an unload has run, the
// files on disk are the new driver's: the old modules cannot be loaded back, and a re-run of reload-modules
// would plan only from what is loaded then, so the advice names the modules by hand.
std::string recovery_advice(const modules::ReloadPlan& plan, std::size_t failed) {
  std::vector<std::string> still_loaded;  // unloads not done: the failed one and those after it
  std::vector<std::string> to_load;       // every module the plan loads, in load order
  std::vector<std::string> not_loaded;    // loads not done: the failed one and those after it
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    const auto& step = plan.steps[i];
    if (step.kind == modules::StepKind::unload && i >= failed) {
      still_loaded.push_back(step.module);
    } else if (step.kind == modules::StepKind::load) {
      to_load.push_back(step.module);
      if (i >= failed) {
        not_loaded.push_back(step.module);
      }
    }
  }
  // Several names take -a to load: without it modprobe loads the first and hands it the others as parameters.
  auto names = [](const std::vector<std::string>& v) { return fmt::format("{}", fmt::join(v, " ")); };
  switch (plan.steps[failed].kind) {
    case modules::StepKind::unload:
      return fmt::format("the old modules {} are still loaded and the ones before them are not; the files on disk "
                         "are the new driver's, so nothing old can be loaded back. Find what holds {} (`lsof "
                         "/dev/nvidia* /dev/dri/*`, a console on the GPU) and stop it, then `modprobe -r {}` and "
                         "`modprobe -a {}` (the new driver); or reboot.",
                         names(still_loaded), plan.steps[failed].module, names(still_loaded), names(to_load));
    case modules::StepKind::load:
      // /dev/nvidia-uvm's major is chosen at load time: its node is made again once the module is back.
      return fmt::format("the old modules are unloaded; load the rest of the new driver by name: `modprobe -a {}`, "
                         "then have udev recreate /dev/nvidia*: `udevadm trigger --action=add "
                         "--attr-match=vendor=0x10de` and `udevadm settle` (or reboot).",
                         names(not_loaded));
    case modules::StepKind::check_version:
      return "the loaded nvidia module is not the version of the new files: reboot to finish the update.";
    case modules::StepKind::udev_trigger:
      return "the new modules are loaded, but /dev/nvidia* may be missing: run `udevadm trigger --action=add "
             "--attr-match=vendor=0x10de` and `udevadm settle` (or `nvidia-modprobe -c 0 -u`), or reboot.";
  }
  return "reboot.";
}

// nvidia-persistenced holds the GPUs, so a swap needs it stopped first, and reload-modules never starts it:
// whatever the outcome (a refusal too), a node left without it loses persistence. `running` is true, false or
// {"missing": why}; `line` says to start it again, "" when it runs (read as diagnose reads it).
struct DaemonAfter {
  nlohmann::json running;
  std::string line;
};
DaemonAfter daemon_after(const Paths& paths) {
  const DaemonFacts daemon = read_daemon(paths);
  constexpr const char* start_it = "if it was stopped for this, start it again: `systemctl start nvidia-persistenced`";
  if (!daemon.processes.empty()) {
    return {true, ""};
  }
  if (!daemon.processes_unread.empty()) {
    return {nlohmann::json{{"missing", daemon.processes_unread}},
            fmt::format("whether nvidia-persistenced runs could not be read ({}): {}", daemon.processes_unread,
                        start_it)};
  }
  return {false, fmt::format("nvidia-persistenced is not running: {}", start_it)};
}

nlohmann::json plan_json(const modules::ReloadPlan& plan) {
  nlohmann::json steps = nlohmann::json::array();
  for (const auto& s : plan.steps) {
    steps.push_back({{"module", s.module}, {"path", s.path}, {"text", s.text}});
  }
  return {{"refused", plan.refused}, {"needs_reboot", plan.needs_reboot}, {"refusal", plan.refusal}, {"details", plan.details},
          {"target_version", plan.target_version}, {"steps", steps}};
}

}  // namespace

std::function<int()> setup_reload_modules(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<ReloadOptions>();
  sub.add_option("--module-dir", opts->module_dir,
                 "Where the new modules are (default /lib/modules/$(uname -r)); searched for nvidia*.ko")
      ->type_name("DIR");
  sub.add_flag("--dry-run", opts->dry_run, "Print the plan (or the refusal) and change nothing");
  sub.add_flag("--yes", opts->yes, "Carry the plan out (without it, only the plan is printed)");
  sub.add_flag("--json", opts->json, "Print the plan and the outcome as JSON");
  sub.add_option("--root", opts->root, "Read /proc and /sys under DIR (tests)")
      ->check(CLI::ExistingDirectory.description(""))
      ->transform(from_working_directory())
      ->type_name("DIR");
  sub.footer(
      "Finishes a driver update without a reboot: unloads the loaded NVIDIA modules (nvidia_peermem,\n"
      "nvidia_drm, nvidia_uvm, nvidia_modeset, nvidia: only those loaded), loads the new ones from the module\n"
      "directory in the reverse order through libkmod, checks /sys/module/nvidia/version, and has udev\n"
      "recreate /dev/nvidia*. It refuses, changing nothing, while any process holds /dev/nvidia* (jobs,\n"
      "nvidia-persistenced, monitoring agents), when the new modules were built for another kernel (the\n"
      "update changed the kernel too: reboot), or when a module would be left without a replacement.\n"
      "Without --yes it only prints the plan.\n\n"
      "nvidia-persistenced holds the GPUs, so it is stopped first, and reload-modules never starts it again:\n"
      "start it whatever the outcome, as the last example (two lines of a script) does. While the daemon is\n"
      "not running, every outcome says so on stderr (and in the JSON's daemon_running and daemon_note).\n\n"
      "Modules are picked as modprobe picks them (depmod's modules.dep, else updates/ and extra/ first) and\n"
      "loaded with the options /etc/modprobe.d gives them. SIGINT, SIGTERM, SIGHUP and SIGQUIT wait until the\n"
      "swap has run to its end.\n\n"
      "Exit codes (as fix's and reset's where they mean the same): 0 done (or nothing to do, or the plan\n"
      "printed), 1 a step failed (the report says which modules are loaded now and how to recover; after a\n"
      "failed load of a module other than nvidia the version check and the udev trigger still run) or --yes\n"
      "without root, 2 bad command line (--dry-run with --yes), 3 refused (processes or other modules hold\n"
      "the driver, mixed versions, a module file a user other than root could replace, or the loaded modules\n"
      "changed while the plan was made: nothing changed), 4 the new modules need a reboot, 5 the module directory\n"
      "is missing (or a file), 6 no NVIDIA driver loaded or to load, 7 another fix, reset or reload-modules\n"
      "runs, or probe or watch --load was still timing the GPUs after 60 s (the node's lock), 9 refused: cannot tell (the\n"
      "loaded modules or version, a module file's modinfo, or the processes holding the GPUs could not be\n"
      "read: nothing changed), 128+N interrupted by signal N: after the swap finished (or, just before its first\n"
      "step, nothing changed).\n\n"
      "Examples:\n"
      "  gpuwarm reload-modules --dry-run\n"
      "  systemctl stop nvidia-persistenced; gpuwarm reload-modules --yes; rc=$?\n"
      "  systemctl start nvidia-persistenced; exit $rc");

  return [opts]() -> int {
    // With --json every outcome is a report on stdout, as every gpuwarm report: its kind, and how it ended.
    // Each ends with the daemon's state (daemon_after), read last: the caller may have stopped it for this run.
    auto finish = [&opts](nlohmann::json body, int code) {
      const DaemonAfter daemon = daemon_after(Paths(opts->root));
      if (opts->json) {
        nlohmann::json out = {{"kind", "gpuwarm-reload-modules"}, {"schema_version", 1}, {"hostname", host_name()},
                              {"taken_at", utc_now_iso8601()}};
        out.update(body);
        out["daemon_running"] = daemon.running;
        out["daemon_note"] = daemon.line;
        out["exit_code"] = code;
        std::cout << dump_json(out) << "\n";
      }
      if (!daemon.line.empty()) {
        std::cerr << "gpuwarm reload-modules: " << escape_control(daemon.line) << "\n";
      }
      return code;
    };
    if (opts->dry_run && opts->yes) {
      return usage_error("reload-modules", "--dry-run and --yes contradict each other: choose one");
    }
    if (const std::string& missing = kmod::load_error(); !missing.empty()) {
      // modinfo of the new modules and the swap itself go through libkmod.
      std::cerr << "gpuwarm reload-modules: " << missing << " (nothing read, nothing changed)\n";
      return finish({{"carried_out", false}, {"error", missing}}, to_int(ExitCode::tool_error));
    }
    Paths paths(opts->root);
    // Known before anything is read, as for reset: without root the processes' open files are unreadable, and
    // that refusal (cannot tell) would hide the plain reason.
    if (opts->yes && paths.is_live() && ::geteuid() != 0) {
      std::cerr << "gpuwarm: error: reloading kernel modules needs root (nothing changed)\n";
      return finish({{"carried_out", false}, {"error", "needs root"}}, to_int(ExitCode::tool_error));
    }
    // Every fact the plan rests on, read in one place: once for the plan, and all of it again under the node lock
    // (a swap that finished meanwhile, or a package rewriting a .ko, must not be acted on from the first reading).
    auto gather = [&paths, &opts] {
      modules::ReloadFacts facts;
      utsname u{};
      ::uname(&u);
      facts.running_kernel = u.release;
      // Normal form ("X/" and "X" alike): modules.dep's entries are matched against the paths listed under it.
      std::string dir = opts->module_dir.empty() ? "/lib/modules/" + facts.running_kernel
                                                 : fs::path(opts->module_dir).lexically_normal().string();
      while (dir.size() > 1 && dir.back() == '/') {
        dir.pop_back();
      }
      facts.module_dir = dir;
      std::error_code ec;
      facts.module_dir_exists = fs::is_directory(facts.module_dir, ec);
      facts.loaded = read_loaded(paths, &facts.loaded_unread);
      facts.new_modules =
          facts.module_dir_exists ? read_module_files(facts.module_dir) : std::vector<modules::ModuleFile>{};
      read_holders(paths, facts);
      if (auto version = read_file(paths.sys("module/nvidia/version"))) {
        facts.loaded_version = std::string(trim(*version));
      } else {
        facts.loaded_version_unread = paths.display(version.error().message);
      }
      return facts;
    };
    modules::ReloadFacts facts = gather();
    modules::ReloadPlan plan = modules::plan_reload(facts);

    const bool act = opts->yes && !opts->dry_run && !plan.refused && !plan.steps.empty();
    if (!opts->json) {
      // /proc/modules, sysfs and the command line: the kernel's text on a node, anything under --root.
      std::cout << fmt::format("Loaded: {} (nvidia {}) · running kernel {} · new modules in {}\n",
                               loaded_list(paths),
                               facts.loaded_version.empty() ? "?" : escape_control(facts.loaded_version),
                               escape_control(facts.running_kernel), escape_control(facts.module_dir));
      if (plan.refused) {
        std::cout << "Refused: " << escape_control_lines(plan.refusal) << "\n";
      } else if (plan.steps.empty()) {
        std::cout << "Nothing to do.\n";
      } else {
        std::cout << (act              ? "Plan:\n"
                      : opts->dry_run ? "Plan (not carried out; run it without --dry-run, with --yes):\n"
                                      : "Plan (not carried out; add --yes to run it):\n");
        for (std::size_t i = 0; i < plan.steps.size(); ++i) {
          std::cout << fmt::format("  {}. {}\n", i + 1, escape_control(plan.steps[i].text));
        }
      }
      for (const auto& d : plan.details) {
        std::cout << "  " << escape_control(d) << "\n";
      }
    }
    auto refusal_code = [&plan] {
      switch (plan.refusal_kind) {
        case modules::Refusal::reboot: return 4;
        case modules::Refusal::no_module_dir: return 5;
        case modules::Refusal::no_driver: return 6;
        case modules::Refusal::cannot_tell: return to_int(ExitCode::cannot_tell);
        case modules::Refusal::busy:
        case modules::Refusal::none: break;
      }
      return 3;
    };
    if (!act) {
      return finish({{"plan", plan_json(plan)}, {"carried_out", false}},
                    plan.refused ? refusal_code() : to_int(ExitCode::healthy));
    }

    std::unique_ptr<ModuleOps> ops;
#ifdef GPUWARM_TEST_HOOKS
    const char* fake_log = std::getenv("GPUWARM_FAKE_MODULE_OPS");
    if (!paths.is_live() && fake_log != nullptr) {
      const char* fail_on = std::getenv("GPUWARM_FAKE_MODULE_FAIL");
      ops = std::make_unique<FakeRootOps>(paths, fake_log, fail_on != nullptr ? fail_on : "", facts.new_modules);
    } else
#endif
    if (!paths.is_live()) {
      return usage_error("reload-modules",
                         "--root is for reading a recorded tree; modules are only reloaded on the live system");
    } else {  // as root: checked before anything was read
      ops = std::make_unique<KmodOps>();
    }
    // The node lock (fix's and reset's): neither may start nvidia-persistenced between the holders check above
    // and the unloads below. Once it is held, the holders are read again: what was free may not be now.
    // Every outcome of --json is a report on stdout, these early ones too.
    auto not_carried_out = [&](const std::string& why, int code) {
      std::cerr << "gpuwarm reload-modules: " << escape_control_lines(why) << "\n";
      return finish({{"plan", plan_json(plan)}, {"carried_out", false}, {"error", why}}, code);
    };
    Result<std::string> lock = hold_node_lock(paths, "reload-modules");
    if (!lock || !lock->empty()) {
      return not_carried_out((!lock ? lock.error().message : *lock) + "; nothing changed",
                             to_int(!lock ? ExitCode::tool_error : ExitCode::locked));
    }
    facts = gather();
    if (modules::ReloadPlan again = modules::plan_reload(facts); again.refused || again.steps != plan.steps) {
      plan = std::move(again);
      for (const auto& d : plan.details) {
        std::cerr << "  " << escape_control(d) << "\n";
      }
      return not_carried_out(plan.refused ? "refused, nothing changed: " + plan.refusal
                                          : "the loaded modules changed while the plan was made; nothing changed: "
                                            "run it again",
                             refusal_code());
    }
    std::string failure;   // one line per failed step
    std::string recovery;
    std::size_t done = 0;  // steps done before the first failure
    std::optional<std::size_t> failed;  // the first failed step
    std::vector<std::string> done_after_failure;
    // A signal after the swap (while the report is written) is recorded, not fatal: the report must come out.
    StopSignalsCaught stop_signals;
    int interrupted = 0;
    {
      // Between unloading the old modules and loading the new ones the node has
      // no driver: Ctrl-C must not stop it there. Signals wait for the end.
      SignalShield shield("gpuwarm reload-modules",
                          "the steps run to their end first: stopping between the unload and the load would leave "
                          "the node without a driver");
      if (int sig = StopSignalsCaught::signal(); sig != 0) {
        // A stop signal caught between the catcher's start above and the shield: nothing is done.
        shield.take();
        return not_carried_out(fmt::format("interrupted ({}) before the first step; nothing changed", signal_name(sig)),
                               128 + sig);
      }
      for (std::size_t i = 0; i < plan.steps.size(); ++i) {
        const auto& s = plan.steps[i];
        // After a failed load of a module built on nvidia, the loads after it may need it and are left to the
        // advice, but the version check and the udev trigger still run: the core module is in, and
        // /dev/nvidia-uvm's major (chosen at load time) must be the new module's. After any other failure nothing
        // more runs.
        if (failed && !(plan.steps[*failed].kind == modules::StepKind::load && plan.steps[*failed].module != "nvidia" &&
                        (s.kind == modules::StepKind::check_version || s.kind == modules::StepKind::udev_trigger))) {
          continue;
        }
        Result<void> r;
        switch (s.kind) {
          case modules::StepKind::unload: r = ops->unload(s.module); break;
          case modules::StepKind::load: {
            std::string options;
            for (const auto& f : facts.new_modules) {
              options = f.path == s.path ? f.options : options;
            }
            r = ops->load(s.path, options);
            break;
          }
          case modules::StepKind::udev_trigger: r = ops->udev_trigger(); break;
          case modules::StepKind::check_version: {
            std::string now = std::string(trim(read_file(paths.sys("module/nvidia/version")).value_or("")));
            if (now != plan.target_version) {
              r = fail(fmt::format("/sys/module/nvidia/version reads \"{}\", expected {}", now, plan.target_version));
            }
            break;
          }
        }
        if (!r) {
          failure += fmt::format("{}step {} ({}) failed: {}", failure.empty() ? "" : "\n", i + 1, s.text,
                                 r.error().message);
          if (!failed) {
            recovery = recovery_advice(plan, i);
          } else if (s.kind == modules::StepKind::check_version) {  // a failed trigger's commands are in the advice
            recovery += " Also, " + recovery_advice(plan, i);
          }
          failed = failed.value_or(i);
          continue;
        }
        if (failed) {
          done_after_failure.push_back(s.text);
        } else {
          ++done;
        }
        if (!opts->json) {
          std::cout << fmt::format("  done: {}\n", escape_control(s.text));
        }
      }
      interrupted = shield.take();
    }
    std::string unread;
    std::string now_loaded = loaded_list(paths, &unread);
    if (interrupted == 0) {
      interrupted = StopSignalsCaught::signal();  // after the swap, while what is loaded now was read
    }
    const int code = interrupted != 0 && failure.empty() ? 128 + interrupted
                     : !failure.empty()                     ? to_int(ExitCode::tool_error)
                                                            : to_int(ExitCode::healthy);
    if (interrupted != 0 && failure.empty()) {
      std::cerr << "gpuwarm: interrupted (" << signal_name(interrupted)
                << ") during the swap: it ran to its end first; loaded now: " << now_loaded << "\n";
    } else if (!failure.empty()) {
      std::cerr << "gpuwarm: " << escape_control_lines(failure) << "\nLoaded now: " << now_loaded
                << "\nTo recover: " << recovery << "\n";
    } else if (!opts->json) {
      std::cout << "Reloaded: nvidia " << escape_control(plan.target_version) << " is loaded.\n";
    }
    // An unread list is {"missing": why}, as every unread fact in gpuwarm's JSON.
    const nlohmann::json loaded_now =
        unread.empty() ? nlohmann::json(now_loaded) : nlohmann::json{{"missing", escape_control(unread)}};
    return finish({{"plan", plan_json(plan)}, {"carried_out", true}, {"steps_done", done},
                   {"done_after_failure", done_after_failure}, {"error", failure}, {"recovery", recovery},
                   {"loaded_now", loaded_now},
                   {"interrupted",
                    interrupted != 0 ? nlohmann::json(signal_name(interrupted)) : nlohmann::json(nullptr)}},
                  code);
  };
}

}  // namespace gpuwarm
