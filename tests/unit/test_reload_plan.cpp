// modules::plan_reload is pure: table-driven over a node whose driver package
// was updated (old module 580.95.05 loaded, new 580.159.04 files installed).

#include <functional>

#include <gtest/gtest.h>

#include "modules/reload.h"

namespace gpuwarm::test {
namespace {

using modules::StepKind;

constexpr const char* k_kernel = "6.1.0-28-amd64";

modules::ReloadFacts updated_node() {
  modules::ReloadFacts f;
  f.running_kernel = k_kernel;
  f.module_dir = "/lib/modules/6.1.0-28-amd64";
  f.loaded = {{"nvidia_uvm", 0, {}},
              {"nvidia_drm", 0, {}},
              {"nvidia_modeset", 1, {"nvidia_drm"}},
              {"nvidia", 2, {"nvidia_uvm", "nvidia_modeset"}}};  // as /proc/modules shows an idle node
  for (const char* name : {"nvidia", "nvidia-uvm", "nvidia-modeset", "nvidia-drm", "nvidia-peermem"}) {
    f.new_modules.push_back({modules::canonical_module_name(name),
                             std::string("/lib/modules/6.1.0-28-amd64/updates/dkms/") + name + ".ko", "580.159.04",
                             k_kernel, 0, "", ""});
  }
  f.loaded_version = "580.95.05";
  return f;
}

std::vector<std::string> texts(const modules::ReloadPlan& p) {
  std::vector<std::string> out;
  for (const auto& s : p.steps) {
    out.push_back(s.kind == StepKind::unload ? "-" + s.module
                  : s.kind == StepKind::load ? "+" + s.module
                  : s.kind == StepKind::check_version ? "check"
                                                      : "udev");
  }
  return out;
}

struct PlanCase {
  const char* name;
  std::function<void(modules::ReloadFacts&)> edit;
  bool refused;
  bool needs_reboot;
  std::vector<std::string> steps;
  const char* refusal_contains = "";
};

TEST(ReloadPlan, table) {
  const std::vector<std::string> full = {"-nvidia_drm", "-nvidia_uvm", "-nvidia_modeset", "-nvidia",
                                         "+nvidia",     "+nvidia_modeset", "+nvidia_uvm", "+nvidia_drm",
                                         "check",       "udev"};
  const std::vector<PlanCase> cases = {
      {"the blog's case: swap all four", [](auto&) {}, false, false, full},
      {"only what is loaded: no drm, no modeset",
       [](auto& f) {
         f.loaded = {{"nvidia_uvm", 0, {}}, {"nvidia", 1, {"nvidia_uvm"}}};
       },
       false, false, {"-nvidia_uvm", "-nvidia", "+nvidia", "+nvidia_uvm", "check", "udev"}},
      {"peermem goes first and comes back last",
       [](auto& f) {
         f.loaded.insert(f.loaded.begin(), {"nvidia_peermem", 0, {}});
         f.loaded.back().used_by.push_back("nvidia_peermem");
       },
       false, false,
       {"-nvidia_peermem", "-nvidia_drm", "-nvidia_uvm", "-nvidia_modeset", "-nvidia", "+nvidia", "+nvidia_modeset",
        "+nvidia_uvm", "+nvidia_drm", "+nvidia_peermem", "check", "udev"}},
      {"nothing loaded: load the core module", [](auto& f) { f.loaded.clear(); f.loaded_version.clear(); }, false,
       false, {"+nvidia", "check", "udev"}},
      {"already the new version: nothing to do", [](auto& f) { f.loaded_version = "580.159.04"; }, false, false,
       {}},
      {"a module file another user could replace",
       [](auto& f) { f.new_modules[1].untrusted = "is in /home/u/build, owned by uid 1000"; }, true, false, {},
       "owned by uid 1000: gpuwarm loads into the kernel only what no user but root can replace"},
      {"a process holds the GPUs",
       [](auto& f) { f.holders = {{812, "nvidia-persiste", "/dev/nvidia0, /dev/nvidiactl open"}}; }, true, false, {},
       "1 process(es) hold the GPUs"},
      {"the kernel changed too (the blog hit this)",
       [](auto& f) {
         for (auto& m : f.new_modules) m.vermagic_kernel = "6.1.0-31-amd64";
       },
       true, true, {}, "built for kernel 6.1.0-31-amd64, but 6.1.0-28-amd64 is running"},
      {"a module directory that does not exist (a typo, not a reboot)", [](auto& f) { f.module_dir_exists = false; },
       true, false, {}, "is no directory (missing, or a file): check --module-dir"},
      {"no driver at all: nothing loaded, nothing to load",
       [](auto& f) {
         f.loaded.clear();
         f.new_modules.clear();
       },
       true, false, {}, "no NVIDIA driver"},
      {"no new nvidia.ko", [](auto& f) { f.new_modules.erase(f.new_modules.begin()); }, true, true, {},
       "no nvidia.ko"},
      {"a loaded module without a replacement",
       [](auto& f) {
         std::erase_if(f.new_modules, [](const auto& m) { return m.name == "nvidia_drm"; });
       },
       true, true, {}, "nvidia_drm is loaded but"},
      {"mixed versions in the directory", [](auto& f) { f.new_modules[1].version = "575.57.08"; }, true, false, {},
       "mixes driver versions"},
      {"an unknown module uses nvidia",
       [](auto& f) { f.loaded.back().used_by.push_back("gdrdrv"); }, true, false, {}, "module gdrdrv uses nvidia"},
      // rmmod nvidia_uvm would fail with EBUSY after nvidia_drm was already gone (review-s43-safety M3).
      {"an unknown module uses nvidia_uvm, not nvidia",
       [](auto& f) {
         f.loaded[0].refcount = 1;
         f.loaded[0].used_by.push_back("vendor_mod");
       },
       true, false, {}, "module vendor_mod uses nvidia_uvm and gpuwarm does not know how to reload it"},
      {"an unknown module uses nvidia_modeset",
       [](auto& f) {
         f.loaded[2].refcount = 2;
         f.loaded[2].used_by.push_back("vendor_kms");
       },
       true, false, {}, "module vendor_kms uses nvidia_modeset"},
      {"the console or a display server holds nvidia_drm (the kernel counts it, /proc/PID/fd cannot)",
       [](auto& f) { f.loaded[1].refcount = 1; }, true, false, {},
       "nvidia_drm is in use by something gpuwarm cannot name: the kernel counts 1 reference(s) to it, 0 from "
       "the modules unloaded here"},
      {"a hidden holder of the core module (another PID namespace)", [](auto& f) { f.loaded[3].refcount = 3; },
       true, false, {}, "counts 3 reference(s) to it, 2 from the modules unloaded here (nvidia_uvm, nvidia_modeset)"},
      {"reference count not shown (\"-\": no module unloading in this kernel)",
       [](auto& f) { f.loaded[0].refcount.reset(); }, true, true, {},
       "reference count of nvidia_uvm is not shown"},
      {"/proc/modules unread: not the same as nothing loaded",
       [](auto& f) {
         f.loaded.clear();
         f.loaded_unread = "/proc/modules: Permission denied";
       },
       true, false, {}, "could not be read (/proc/modules: Permission denied)"},
      {"/proc unlisted: holders unknown", [](auto& f) { f.holders_unlisted = "/proc: No such file or directory"; },
       true, false, {}, "the processes could not be listed (/proc: No such file or directory)"},
      {"some processes' open files unread", [](auto& f) { f.unreadable_processes = 4; }, true, false, {},
       "4 process(es)' open files could not be read"},
      // Unknown is never "the same version" nor "this kernel": libkmod read nothing, so nothing is swapped.
      {"no modinfo from any file (truncated .ko files): not a swap to version \"\"",
       [](auto& f) {
         for (auto& m : f.new_modules) {
           m.version.clear();
           m.vermagic_kernel.clear();
           m.modinfo_unread = "libkmod cannot read its modinfo: Exec format error";
         }
       },
       true, false, {},
       "/lib/modules/6.1.0-28-amd64/updates/dkms/nvidia.ko: its modinfo could not be read (libkmod cannot read its "
       "modinfo: Exec format error)"},
      {"empty versions and vermagic with no reason recorded",
       [](auto& f) {
         for (auto& m : f.new_modules) {
           m.version.clear();
           m.vermagic_kernel.clear();
         }
       },
       true, false, {}, "nvidia.ko: its modinfo has no version"},
      {"the core module's version unknown, the others' known",
       [](auto& f) { f.new_modules[0].version.clear(); }, true, false, {}, "nvidia.ko: its modinfo has no version"},
      {"one module's vermagic unknown: built for which kernel?",
       [](auto& f) { f.new_modules[1].vermagic_kernel.clear(); }, true, false, {},
       "nvidia-uvm.ko: its modinfo has no vermagic (the kernel it was built for)"},
      {"one module's modinfo failed though fields were read before the failure",
       [](auto& f) { f.new_modules[2].modinfo_unread = "kmod_module_get_info: Input/output error"; }, true, false,
       {}, "nvidia-modeset.ko: its modinfo could not be read (kmod_module_get_info: Input/output error)"},
      {"a file not to be loaded may lack modinfo (peermem is not loaded here)",
       [](auto& f) {
         f.new_modules[4].version.clear();
         f.new_modules[4].modinfo_unread = "truncated";
       },
       false, false, full},
      {"nvidia loaded, its version unread: not \"another version\"",
       [](auto& f) {
         f.loaded_version.clear();
         f.loaded_version_unread = "/sys/module/nvidia/version: Permission denied";
       },
       true, false, {},
       "the loaded nvidia module's version could not be read (/sys/module/nvidia/version: Permission denied)"},
      {"nvidia loaded, its version file empty",
       [](auto& f) { f.loaded_version.clear(); }, true, false, {},
       "the loaded nvidia module's version could not be read (it reads empty)"},
      {"holders are checked after the kernel: a reboot is the answer either way",
       [](auto& f) {
         f.holders = {{1, "x", "y"}};
         for (auto& m : f.new_modules) m.vermagic_kernel = "6.1.0-31-amd64";
       },
       true, true, {}, "built for kernel"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto f = updated_node();
    c.edit(f);
    auto p = modules::plan_reload(f);
    EXPECT_EQ(p.refused, c.refused) << p.refusal;
    EXPECT_EQ(p.needs_reboot, c.needs_reboot);
    EXPECT_EQ(texts(p), c.steps);
    EXPECT_NE(p.refusal.find(c.refusal_contains), std::string::npos) << p.refusal;
  }
}

TEST(ReloadPlan, refusals_have_distinct_kinds) {
  using modules::Refusal;
  auto kind = [](std::function<void(modules::ReloadFacts&)> edit) {
    auto f = updated_node();
    edit(f);
    return modules::plan_reload(f).refusal_kind;
  };
  EXPECT_EQ(kind([](auto&) {}), Refusal::none);
  EXPECT_EQ(kind([](auto& f) { f.module_dir_exists = false; }), Refusal::no_module_dir);
  EXPECT_EQ(kind([](auto& f) { f.loaded.clear(); f.new_modules.clear(); }), Refusal::no_driver);
  EXPECT_EQ(kind([](auto& f) { f.holders = {{1, "x", "y"}}; }), Refusal::busy);
  EXPECT_EQ(kind([](auto& f) { for (auto& m : f.new_modules) m.vermagic_kernel = "6.9"; }), Refusal::reboot);
  // Unknowns refuse as "cannot tell" (exit 9), not as "reboot": a reboot would not make the files readable.
  EXPECT_EQ(kind([](auto& f) { for (auto& m : f.new_modules) m.vermagic_kernel.clear(); }), Refusal::cannot_tell);
  EXPECT_EQ(kind([](auto& f) { f.new_modules[0].modinfo_unread = std::string("truncated"); }), Refusal::cannot_tell);
  EXPECT_EQ(kind([](auto& f) { f.loaded_version.clear(); }), Refusal::cannot_tell);
  EXPECT_EQ(kind([](auto& f) { f.holders_unlisted = "/proc: EACCES"; }), Refusal::cannot_tell);
  EXPECT_EQ(kind([](auto& f) { f.unreadable_processes = 2; }), Refusal::cannot_tell);
  EXPECT_EQ(kind([](auto& f) { f.loaded_unread = "/proc/modules: EIO"; }), Refusal::cannot_tell);
}

// Two builds of nvidia.ko: modprobe (depmod's modules.dep order) takes updates/dkms
// over an old kernel/drivers/video copy, whatever the directory listing order.
TEST(ReloadPlan, the_copy_modprobe_would_load_wins) {
  auto f = updated_node();
  modules::ModuleFile old{"nvidia", "/lib/modules/6.1.0-28-amd64/kernel/drivers/video/nvidia.ko", "535.216.03",
                          k_kernel, 5, "", ""};
  f.new_modules.insert(f.new_modules.begin(), old);
  for (auto& m : f.new_modules) {
    if (m.path.find("updates/dkms") != std::string::npos) m.priority = 1;
  }
  auto p = modules::plan_reload(f);
  ASSERT_FALSE(p.refused) << p.refusal;
  EXPECT_EQ(p.target_version, "580.159.04");
  for (const auto& s : p.steps) {
    EXPECT_EQ(s.path.find("drivers/video"), std::string::npos) << s.text;
  }
}

TEST(ReloadPlan, configured_options_are_shown_with_the_load) {
  auto f = updated_node();
  for (auto& m : f.new_modules) {
    if (m.name == "nvidia_drm") m.options = "modeset=1";
  }
  auto p = modules::plan_reload(f);
  bool seen = false;
  for (const auto& s : p.steps) {
    seen = seen || s.text.find("nvidia-drm.ko (580.159.04) with options modeset=1") != std::string::npos;
  }
  EXPECT_TRUE(seen);
}

TEST(ReloadPlan, holders_are_listed_by_pid_and_command) {
  auto f = updated_node();
  f.holders = {{812, "nvidia-persiste", "/dev/nvidia0 open"}, {4242, "python3", "/dev/nvidia1 open"}};
  auto p = modules::plan_reload(f);
  ASSERT_TRUE(p.refused);
  EXPECT_EQ(p.details, (std::vector<std::string>{"pid 812 nvidia-persiste: /dev/nvidia0 open",
                                                 "pid 4242 python3: /dev/nvidia1 open"}));
  EXPECT_TRUE(p.steps.empty());
}

TEST(ReloadPlan, load_steps_name_the_new_files) {
  auto p = modules::plan_reload(updated_node());
  ASSERT_FALSE(p.refused);
  EXPECT_EQ(p.target_version, "580.159.04");
  EXPECT_EQ(p.steps[4].path, "/lib/modules/6.1.0-28-amd64/updates/dkms/nvidia.ko");
  EXPECT_EQ(p.steps[5].path, "/lib/modules/6.1.0-28-amd64/updates/dkms/nvidia-modeset.ko");
}

}  // namespace
}  // namespace gpuwarm::test
