#pragma once
// `gpuwarm reload-modules`: the kernel-module swap that finishes a driver
// update without a reboot, planned by a pure function so that --dry-run
// prints exactly what a real run does. Reading /proc and the module files,
// and acting (libkmod, udevadm), live in cli/.

#include <optional>
#include <string>
#include <vector>

namespace gpuwarm::modules {

// Unload order: users before what they use. Loading goes the other way.
const std::vector<std::string>& unload_order();  // nvidia_peermem, nvidia_drm, nvidia_uvm, nvidia_modeset, nvidia

struct LoadedModule {  // a /proc/modules line
  std::string name;
  // The kernel's count of references: modules built on it and open files of its devices. None where the
  // kernel prints "-" (no module unloading) or the field is unparsable.
  std::optional<unsigned> refcount;
  std::vector<std::string> used_by;
};

struct ModuleFile {  // a .ko in the new module directory, as modinfo reads it
  std::string name;     // "nvidia_uvm" (file names use '-' or '_'; the kernel's name uses '_')
  std::string path;
  std::string version;  // modinfo "version"
  std::string vermagic_kernel;  // first word of "vermagic": the kernel it was built for
  // Which copy modprobe would take when several files carry one name: its
  // line in the directory's modules.dep (depmod's choice), else updates/ and
  // extra/ before the rest, as depmod's default search order. Lower wins.
  int priority = 0;
  std::string options;  // what /etc/modprobe.d says for this module (NVreg_*, modeset=1)
  std::string untrusted;  // why a user other than root could replace the file (or where it leads); "" if none
  // Why libkmod could not read the modinfo ("" when it could): version and vermagic_kernel are then unknown,
  // not empty. Defaulted so that a ModuleFile listing the fields above stays complete.
  std::string modinfo_unread = {};
};

struct Holder {  // a process that would keep the modules busy
  int pid = 0;
  std::string command;
  std::string what;  // "/dev/nvidia0 open", "compute on GPU 0"
};

struct ReloadFacts {
  std::string running_kernel;  // uname -r
  std::string module_dir;      // where the new modules are
  bool module_dir_exists = true;
  std::vector<LoadedModule> loaded;     // nvidia* modules only
  std::string loaded_unread;            // why /proc/modules could not be read ("" when it was)
  std::vector<ModuleFile> new_modules;  // nvidia* files found in module_dir
  std::vector<Holder> holders;
  std::string holders_unlisted;         // why /proc could not be listed ("" when it was): holders says nothing
  unsigned unreadable_processes = 0;    // processes whose open files could not be read
  std::string loaded_version;  // /sys/module/nvidia/version now
  std::string loaded_version_unread;  // why it could not be read ("" when it was; also when nvidia is not loaded)
};

enum class StepKind { unload, load, check_version, udev_trigger };

struct Step {
  StepKind kind;
  std::string module;  // unload/load
  std::string path;    // load: the .ko file
  std::string text;    // what it does, as --dry-run prints it
  bool operator==(const Step&) const = default;
};

enum class Refusal {
  none,
  busy,            // processes or unknown modules hold the driver, or the directory mixes versions: exit 3
  cannot_tell,     // a fact the swap depends on (modinfo, the loaded modules or version, holders) could not be
                   // read: exit 9
  reboot,          // only a reboot can finish the update: exit 4
  no_module_dir,   // the module directory does not exist: exit 5
  no_driver,       // no NVIDIA module loaded and none to load: exit 6
};

struct ReloadPlan {
  bool refused = false;
  Refusal refusal_kind = Refusal::none;
  bool needs_reboot = false;         // refused because only a reboot can finish the update
  std::string refusal;               // one paragraph: why, and what to do
  std::vector<std::string> details;  // e.g. each holder "pid 812 nvidia-persistenced: /dev/nvidia0 open"
  std::string target_version;        // the new nvidia.ko's version
  std::vector<Step> steps;
};

ReloadPlan plan_reload(const ReloadFacts& facts);

// "nvidia-uvm" and "nvidia_uvm" name the same module.
std::string canonical_module_name(std::string name);

}  // namespace gpuwarm::modules
