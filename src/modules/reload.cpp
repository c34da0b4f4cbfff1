#include "modules/reload.h"

#include <algorithm>
#include <tuple>

#include <fmt/format.h>

namespace gpuwarm::modules {

const std::vector<std::string>& unload_order() {
  static const std::vector<std::string> order = {"nvidia_peermem", "nvidia_drm", "nvidia_uvm", "nvidia_modeset",
                                                 "nvidia"};
  return order;
}

std::string canonical_module_name(std::string name) {
  std::replace(name.begin(), name.end(), '-', '_');
  return name;
}

namespace {

const LoadedModule* find_loaded(const ReloadFacts& f, const std::string& name) {
  for (const auto& m : f.loaded) {
    if (m.name == name) {
      return &m;
    }
  }
  return nullptr;
}

// The copy of `name` modprobe would load: the lowest priority, then the path.
const ModuleFile* find_file(const ReloadFacts& f, const std::string& name) {
  const ModuleFile* best = nullptr;
  for (const auto& m : f.new_modules) {
    if (canonical_module_name(m.name) == name &&
        (best == nullptr || std::tie(m.priority, m.path) < std::tie(best->priority, best->path))) {
      best = &m;
    }
  }
  return best;
}

// Why `file`'s version or target kernel is unknown ("" when both were read). Root loads it into the kernel
// after unloading the old driver: an unread "version" would pass the mixed-versions check ("" == "") and an
// unread vermagic the kernel check, so a truncated or unreadable file would leave the node without a driver.
std::string modinfo_unknown(const ModuleFile& file) {
  if (!file.modinfo_unread.empty()) {
    return fmt::format("{}: its modinfo could not be read ({})", file.path, file.modinfo_unread);
  }
  if (file.version.empty()) {
    return file.path + ": its modinfo has no version";
  }
  if (file.vermagic_kernel.empty()) {
    return file.path + ": its modinfo has no vermagic (the kernel it was built for)";
  }
  return {};
}

std::string refuse_unknown_modinfo(const std::string& what) {
  return what + ": gpuwarm cannot tell which driver version or kernel it is for. Check that the driver's "
                "modules were installed whole (a finished DKMS build or package install; `modinfo` reads them), "
                "then run again. Nothing was changed.";
}

ReloadPlan refuse(ReloadPlan plan, std::string why, Refusal kind = Refusal::busy) {
  plan.refused = true;
  plan.refusal_kind = kind;
  plan.needs_reboot = kind == Refusal::reboot;
  plan.refusal = std::move(why);
  plan.steps.clear();
  return plan;
}

}  // namespace

ReloadPlan plan_reload(const ReloadFacts& f) {
  ReloadPlan plan;
  if (!f.module_dir_exists) {
    return refuse(plan, fmt::format("{} is no directory (missing, or a file): check --module-dir (the default is "
                                    "/lib/modules/ of the running kernel {}). Nothing was changed.",
                                    f.module_dir, f.running_kernel),
                  Refusal::no_module_dir);
  }
  if (!f.loaded_unread.empty()) {
    return refuse(plan, fmt::format("which NVIDIA modules are loaded could not be read ({}): nothing to plan "
                                    "from. Nothing was changed.",
                                    f.loaded_unread),
                  Refusal::cannot_tell);
  }
  const ModuleFile* core = find_file(f, "nvidia");
  if (core == nullptr && f.loaded.empty()) {
    return refuse(plan, fmt::format("no NVIDIA driver: no nvidia module is loaded and {} has no nvidia.ko. "
                                    "Install the driver first (a driver-install problem, not a reload).",
                                    f.module_dir),
                  Refusal::no_driver);
  }
  if (core == nullptr) {
    return refuse(plan, fmt::format("no nvidia.ko under {}: the new driver's modules are not built for the "
                                    "running kernel {} (was the kernel updated too?). A reboot is needed.",
                                    f.module_dir, f.running_kernel),
                  Refusal::reboot);
  }
  if (std::string unknown = modinfo_unknown(*core); !unknown.empty()) {
    return refuse(plan, refuse_unknown_modinfo(unknown), Refusal::cannot_tell);
  }
  plan.target_version = core->version;

  // Which modules to swap: those loaded now (nvidia at least), each of which needs a new file.
  std::vector<std::string> to_unload;
  for (const auto& name : unload_order()) {
    if (find_loaded(f, name) != nullptr) {
      to_unload.push_back(name);
    }
  }
  std::vector<std::string> to_load = to_unload;
  std::reverse(to_load.begin(), to_load.end());
  if (to_load.empty()) {
    to_load.push_back("nvidia");  // nothing loaded: just load the new core module
  }
  for (const auto& name : to_load) {
    const ModuleFile* file = find_file(f, name);
    if (file == nullptr) {
      return refuse(plan, fmt::format("{} is loaded but {} has no new {}.ko: unloading it would leave it "
                                      "missing. A reboot is needed.",
                                      name, f.module_dir, name),
                    Refusal::reboot);
    }
    if (std::string unknown = modinfo_unknown(*file); !unknown.empty()) {
      return refuse(plan, refuse_unknown_modinfo(unknown), Refusal::cannot_tell);
    }
    if (file->vermagic_kernel != f.running_kernel) {
      return refuse(plan, fmt::format("{} was built for kernel {}, but {} is running: the update also changed "
                                      "the kernel, so the new modules cannot load into this one. A reboot is "
                                      "needed.",
                                      file->path, file->vermagic_kernel, f.running_kernel),
                    Refusal::reboot);
    }
    // Root loads this code into the kernel: a file another user could swap before the load is refused.
    if (!file->untrusted.empty()) {
      return refuse(plan, fmt::format("{} {}: gpuwarm loads into the kernel only what no user but root can "
                                      "replace. Install the modules root-owned (DKMS does) and run again.",
                                      file->path, file->untrusted));
    }
    if (file->version != core->version) {
      return refuse(plan, fmt::format("{} is version {} but nvidia.ko is {}: the module directory mixes driver "
                                      "versions. Reinstall the driver's kernel modules.",
                                      file->path, file->version, core->version));
    }
  }
  // Anything else built on a module unloaded here (a vendor module on nvidia or nvidia_uvm) would make that
  // unload fail with EBUSY after the ones before it are gone: every one is checked, not only nvidia.
  for (const auto& name : to_unload) {
    for (const auto& user : find_loaded(f, name)->used_by) {
      if (std::find(unload_order().begin(), unload_order().end(), user) == unload_order().end()) {
        return refuse(plan, fmt::format("module {} uses {} and gpuwarm does not know how to reload it: unload "
                                        "it first, or reboot.",
                                        user, name));
      }
    }
  }
  // Unknown is never "free": a holder among processes gpuwarm could not read would make an unload fail midway.
  if (!f.holders_unlisted.empty()) {
    return refuse(plan, fmt::format("the processes could not be listed ({}): gpuwarm cannot tell whether one "
                                    "holds the GPUs. Nothing was changed.",
                                    f.holders_unlisted),
                  Refusal::cannot_tell);
  }
  if (f.unreadable_processes > 0) {
    return refuse(plan, fmt::format("{} process(es)' open files could not be read: one of them may hold the "
                                    "GPUs. Run as root. Nothing was changed.",
                                    f.unreadable_processes),
                  Refusal::cannot_tell);
  }
  if (!f.holders.empty()) {
    for (const auto& h : f.holders) {
      plan.details.push_back(fmt::format("pid {} {}: {}", h.pid, h.command, h.what));
    }
    return refuse(plan, fmt::format("{} process(es) hold the GPUs: stop them first (nvidia-persistenced: "
                                    "`systemctl stop nvidia-persistenced`; jobs: drain the node), then run again.",
                                    f.holders.size()));
  }
  // An unread version is not "another version": it could be the new one already, or the read fails for a
  // reason a swap would not cure.
  if (find_loaded(f, "nvidia") != nullptr && f.loaded_version.empty()) {
    return refuse(plan, fmt::format("the loaded nvidia module's version could not be read ({}): gpuwarm cannot "
                                    "tell whether a swap is needed. Nothing was changed.",
                                    f.loaded_version_unread.empty() ? "it reads empty" : f.loaded_version_unread),
                  Refusal::cannot_tell);
  }
  if (!f.loaded_version.empty() && f.loaded_version == core->version) {
    plan.details.push_back(fmt::format("the loaded nvidia module is already {}: nothing to do", core->version));
    return plan;
  }

  // The kernel's own count catches what the walk of /proc cannot: /dev/dri users and the framebuffer console
  // on nvidia_drm, processes in other PID namespaces, kernel users. Any reference beyond the modules unloaded
  // here would make that unload fail with EBUSY after the ones before it are gone.
  for (const auto& name : to_unload) {
    const LoadedModule* m = find_loaded(f, name);
    if (!m->refcount) {
      return refuse(plan, fmt::format("the kernel's reference count of {} is not shown in /proc/modules (a "
                                      "kernel without module unloading?): gpuwarm cannot tell whether it can be "
                                      "unloaded. A reboot finishes the update.",
                                      name),
                    Refusal::reboot);
    }
    if (*m->refcount > m->used_by.size()) {
      std::string users;
      for (const auto& u : m->used_by) {
        users += (users.empty() ? "" : ", ") + u;
      }
      return refuse(plan, fmt::format("{} is in use by something gpuwarm cannot name: the kernel counts {} "
                                      "reference(s) to it, {} from the modules unloaded here{}. A display server "
                                      "or the console on /dev/dri (nvidia_drm), a process in another PID "
                                      "namespace or a kernel user may hold it. Stop it and run again, or reboot.",
                                      name, *m->refcount, m->used_by.size(),
                                      users.empty() ? "" : " (" + users + ")"));
    }
  }
  for (const auto& name : to_unload) {
    plan.steps.push_back({StepKind::unload, name, "", "unload " + name});
  }
  for (const auto& name : to_load) {
    const ModuleFile* file = find_file(f, name);
    plan.steps.push_back({StepKind::load, name, file->path,
                          file->options.empty()
                              ? fmt::format("load {} ({})", file->path, file->version)
                              : fmt::format("load {} ({}) with options {}", file->path, file->version, file->options)});
  }
  plan.steps.push_back({StepKind::check_version, "nvidia", "",
                        fmt::format("check that /sys/module/nvidia/version reads {}", core->version)});
  plan.steps.push_back({StepKind::udev_trigger, "", "",
                        "udevadm trigger --action=add --attr-match=vendor=0x10de, then udevadm settle "
                        "(recreate /dev/nvidia*)"});
  return plan;
}

}  // namespace gpuwarm::modules
