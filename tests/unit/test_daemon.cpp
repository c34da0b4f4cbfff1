#include <fcntl.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "core/paths.h"
#include "sysfs/daemon.h"
#include "sysfs/host.h"
#include "sysfs/processes.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

// A process of the fake tree runs `binary` (written, root's or the test's, 0755, where missing).
void runs(const test::TempTree& t, int pid, const std::string& binary = "/usr/bin/nvidia-persistenced") {
  if (!std::filesystem::exists(t.path(binary.substr(1)))) {
    t.write(binary.substr(1), "#!/bin/sh\n");
    t.chmod(binary.substr(1), std::filesystem::perms(0755));
  }
  t.symlink(binary, "proc/" + std::to_string(pid) + "/exe");
}

// A GPU is known by its node's number where the file is a character device, by its name only where it is not.
TEST(Daemon, GpuHeldByAnOpenFile) {
  using N = OpenFile::Number;
  struct Case {
    const char* name;
    OpenFile file;
    std::optional<unsigned> gpu;
    bool nvidia;
  };
  const Case cases[] = {
      {"node by its usual name", {"/dev/nvidia3", N{195, 3}}, 3u, true},
      {"node renamed in a container", {"/dev/gpu0", N{195, 0}}, 0u, true},
      {"node replaced since it was opened", {"/dev/nvidia1 (deleted)", N{195, 1}}, 1u, true},
      {"nvidiactl", {"/dev/nvidiactl", N{195, 255}}, std::nullopt, true},
      {"nvidia-modeset", {"/dev/nvidia-modeset", N{195, 254}}, std::nullopt, true},
      {"nvidia-uvm (a major of its own)", {"/dev/nvidia-uvm", N{508, 0}}, std::nullopt, true},
      {"another driver's node named like a GPU", {"/dev/nvidia0", N{1, 5}}, std::nullopt, true},
      {"another driver's device", {"/dev/null", N{1, 3}}, std::nullopt, false},
      {"no device (unread, or a test node's stand-in file): by name", {"/dev/nvidia2", std::nullopt}, 2u, true},
      {"no device: a replaced node by name", {"/dev/nvidia2 (deleted)", std::nullopt}, 2u, true},
      {"no device: nvidiactl", {"/dev/nvidiactl", std::nullopt}, std::nullopt, true},
      {"no device: nvidia-caps", {"/dev/nvidia-caps/nvidia-cap1", std::nullopt}, std::nullopt, true},
      {"no device: a number past the GPUs", {"/dev/nvidia254", std::nullopt}, std::nullopt, true},
      {"no device: a socket", {"socket:[123]", std::nullopt}, std::nullopt, false},
      {"no device: a renamed node is not guessed", {"/dev/gpu0", std::nullopt}, std::nullopt, false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(held_gpu_minor(c.file), c.gpu) << c.name;
    EXPECT_EQ(is_nvidia_device(c.file), c.nvidia) << c.name;
  }
  std::vector<OpenFile> files;
  for (const auto& c : cases) {
    files.push_back(c.file);
  }
  EXPECT_EQ(held_gpu_minors(files), (std::vector<unsigned>{0, 1, 2, 3}));
}

// The live /proc: a file's type and number come from the open file, not from the name the link shows (a node
// removed after it was opened still answers). /dev/null stands in for a GPU node, which CI has none of.
TEST(Daemon, OpenFilesOfALiveProcessCarryTheirDeviceNumber) {
  test::TempTree t;
  t.write("plain", "x");
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(null_fd, 0);
  int plain_fd = ::open((t.root() + "/plain").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(plain_fd, 0);
  ASSERT_EQ(::unlink((t.root() + "/plain").c_str()), 0);
  auto files = read_open_files(Paths(), static_cast<int>(::getpid()));
  ASSERT_TRUE(files) << files.error().message;
  bool saw_null = false;
  bool saw_plain = false;
  for (const auto& f : *files) {
    if (f.path == "/dev/null") {
      saw_null = true;
      ASSERT_TRUE(f.char_device);
      EXPECT_EQ(f.char_device->major, 1u);
      EXPECT_EQ(f.char_device->minor, 3u);
    }
    if (f.path == t.root() + "/plain (deleted)") {
      saw_plain = true;
      EXPECT_FALSE(f.char_device);
    }
  }
  EXPECT_TRUE(saw_null);
  EXPECT_TRUE(saw_plain);
  ::close(null_fd);
  ::close(plain_fd);
  EXPECT_FALSE(read_open_files(Paths(t.root()), 4242));  // no such process
}

TEST(Daemon, ReadsProcessesFromAFakeRoot) {
  test::TempTree t;
  t.write("usr/bin/nvidia-persistenced", "#!/bin/sh\n");
  t.chmod("usr/bin/nvidia-persistenced", std::filesystem::perms::owner_all);
  t.write("proc/4242/comm", "nvidia-persiste\n");
  t.write("proc/4242/cmdline", std::string("/usr/bin/nvidia-persistenced\0--user\0nvidia-persistenced\0", 57));
  t.write("proc/4242/status", "Name:\tnvidia-persiste\nUid:\t143\t143\t143\t143\n");
  t.symlink("/dev/nvidiactl", "proc/4242/fd/3");
  t.symlink("/dev/nvidia0", "proc/4242/fd/4");
  t.symlink("/dev/nvidia1", "proc/4242/fd/5");
  runs(t, 4242);
  // A process named like the daemon that is not it: its argv[0] decides.
  t.write("proc/77/comm", "nvidia-persiste\n");
  t.write("proc/77/cmdline", std::string("python3\0nvidia-persistenced\0", 28));
  t.write("proc/self/cmdline", "x");  // not a PID
  t.write("run/nvidia-persistenced/nvidia-persistenced.pid", "4242\n");
  t.write("run/nvidia-persistenced/socket", "");

  DaemonFacts d = read_daemon(Paths(t.root()));
  EXPECT_TRUE(d.binary.is("/usr/bin/nvidia-persistenced"));
  ASSERT_EQ(d.processes.size(), 1u);
  EXPECT_EQ(d.processes[0].pid, 4242);
  EXPECT_EQ(d.processes[0].argv, (std::vector<std::string>{"/usr/bin/nvidia-persistenced", "--user",
                                                           "nvidia-persistenced"}));
  EXPECT_TRUE(d.processes[0].uid.is(143));
  EXPECT_EQ(d.processes[0].executable, "/usr/bin/nvidia-persistenced");
  ASSERT_TRUE(d.processes[0].held_minors.has());
  EXPECT_EQ(*d.processes[0].held_minors, (std::vector<unsigned>{0, 1}));
  EXPECT_TRUE(d.runtime_dir);
  EXPECT_TRUE(d.socket);
  EXPECT_TRUE(d.pid_file_pid.is(4242));
  EXPECT_FALSE(d.processes[0].cgroup.has());  // no cgroup file: unread
  EXPECT_FALSE(d.manager_cgroup.has());

  // systemd's root cgroup is PID 1's less /init.scope (a container without a cgroup namespace shows its path).
  t.write("proc/4242/cgroup", "12:cpu:/x\n1:name=systemd:/docker/abc/system.slice/nvidia-persistenced.service\n");
  t.write("proc/1/cgroup", "0::/docker/abc/init.scope\n");
  d = read_daemon(Paths(t.root()));
  ASSERT_EQ(d.processes.size(), 1u);
  EXPECT_TRUE(d.processes[0].cgroup.is("/docker/abc/system.slice/nvidia-persistenced.service"));
  EXPECT_TRUE(d.manager_cgroup.is("/docker/abc"));
  t.write("proc/1/cgroup", "0::/init.scope\n");
  EXPECT_TRUE(read_daemon(Paths(t.root())).manager_cgroup.is("/"));
  t.write("proc/1/cgroup", "0::/\n");  // PID 1 is no systemd (a container's shell)
  EXPECT_FALSE(read_daemon(Paths(t.root())).manager_cgroup.has());
}

TEST(Daemon, SystemdCgroupOfAProcess) {
  struct Case {
    const char* text;
    const char* cgroup;
  };
  for (const Case& c : {Case{"0::/system.slice/a.service\n", "/system.slice/a.service"},
                        Case{"12:memory:/m\n1:name=systemd:/system.slice/b.service\n0::/system.slice/b.service\n",
                             "/system.slice/b.service"},  // hybrid: the unified line wins
                        Case{"4:cpu:/c\n1:name=systemd:/user.slice/u.scope\n", "/user.slice/u.scope"},  // v1
                        Case{"4:cpu:/c\n", ""}, Case{"", ""}, Case{"0::/", "/"}}) {
    EXPECT_EQ(systemd_cgroup_of(c.text), c.cgroup) << c.text;
  }
}

// While the unit is active, a process outside its cgroup is not its daemon, whatever it runs. systemd names the
// unit's cgroup from its own root (ControlGroup, with the Manager's ControlGroup as that root); this /proc shows
// cgroups from the reader's, where systemd's root is manager_cgroup (PID 1's less /init.scope).
TEST(Daemon, AProcessOutsideTheActiveUnitsCgroupIsNotTheDaemon) {
  struct Case {
    const char* name;
    const char* process_cgroup;  // nullptr: unread ("Permission denied"); "TOO LONG": ENAMETOOLONG
    const char* manager;         // manager_cgroup, as this /proc shows it; nullptr: unknown
    const char* active;
    const char* control_group;   // the unit's, as systemd names it; nullptr: unknown
    const char* systemd_root;    // the Manager's ControlGroup; nullptr: unknown
    bool reachable;
    bool kept;
  };
  const char* unit = "/system.slice/nvidia-persistenced.service";
  for (const Case& c : {
           Case{"in the unit", "/system.slice/nvidia-persistenced.service", "/", "active", unit, "", true, true},
           Case{"systemd's root named /", "/system.slice/nvidia-persistenced.service", "/", "active", unit, "/", true,
                true},
           Case{"below the unit", "/system.slice/nvidia-persistenced.service/sub", "/", "active", unit, "", true, true},
           Case{"a user's session", "/user.slice/user-1000.slice/session-2.scope", "/", "active", unit, "", true, false},
           Case{"a name that only starts alike", "/system.slice/nvidia-persistenced.service2", "/", "active", unit, "",
                true, false},
           Case{"a same-named cgroup in a user's delegated tree",
                "/user.slice/user-1000.slice/user@1000.service/system.slice/nvidia-persistenced.service", "/", "active",
                unit, "", true, false},
           // systemd in a container with a cgroup namespace (nspawn's default), read from outside it.
           Case{"seen from outside a cgroup namespace", "/payload/system.slice/nvidia-persistenced.service", "/payload",
                "active", unit, "", true, true},
           // Without one (docker on cgroup v1, --cgroupns=host): systemd names every cgroup with its root.
           Case{"a container without a cgroup namespace, read from the host",
                "/docker/abc/system.slice/nvidia-persistenced.service", "/docker/abc", "active",
                "/docker/abc/system.slice/nvidia-persistenced.service", "/docker/abc", true, true},
           Case{"the same, a lookalike beside it", "/docker/abc/system.slice/lookalike.service", "/docker/abc", "active",
                "/docker/abc/system.slice/nvidia-persistenced.service", "/docker/abc", true, false},
           Case{"paths that do not line up set nothing apart", "/elsewhere/x.scope", "/", "active",
                "/other/system.slice/nvidia-persistenced.service", "/docker/abc", true, true},
           Case{"cgroup unread (hidepid, not root)", nullptr, "/", "active", unit, "", true, true},
           Case{"cgroup too deep to read", "TOO LONG", "/", "active", unit, "", true, false},
           Case{"unit not active (a daemon started by hand)", "/user.slice/u.scope", "/", "inactive", unit, "", true,
                true},
           Case{"unit's cgroup unknown", "/user.slice/u.scope", "/", "active", nullptr, "", true, true},
           Case{"systemd's own root unknown", "/user.slice/u.scope", "/", "active", unit, nullptr, true, true},
           Case{"systemd's root as this /proc shows it unknown", "/user.slice/u.scope", nullptr, "active", unit, "",
                true, true},
           Case{"systemd not reachable", "/user.slice/u.scope", "/", "active", unit, "", false, true},
       }) {
    DaemonFacts daemon;
    DaemonProcess process;
    process.pid = 4242;
    if (c.process_cgroup == nullptr) {
      process.cgroup = Fact<std::string>::unknown("/proc/4242/cgroup: Permission denied");
    } else if (std::string(c.process_cgroup) == "TOO LONG") {
      process.cgroup = Fact<std::string>::unknown(std::string("/proc/4242/cgroup: ") + std::strerror(ENAMETOOLONG));
    } else {
      process.cgroup = Fact<std::string>::known(c.process_cgroup);
    }
    daemon.processes.push_back(process);
    daemon.manager_cgroup = c.manager ? Fact<std::string>::known(c.manager) : Fact<std::string>::unknown("no systemd");
    ServiceFacts service;
    service.reachable = c.reachable;
    service.active_state = Fact<std::string>::known(c.active);
    service.control_group =
        c.control_group ? Fact<std::string>::known(c.control_group) : Fact<std::string>::unknown("unread");
    service.manager_control_group =
        c.systemd_root ? Fact<std::string>::known(c.systemd_root) : Fact<std::string>::unknown("unread");
    set_apart_daemons_outside_the_unit(daemon, service);
    EXPECT_EQ(daemon.processes.size(), c.kept ? 1u : 0u) << c.name;
    EXPECT_EQ(daemon.not_daemon.size(), c.kept ? 0u : 1u) << c.name;
    if (!c.kept && !daemon.not_daemon.empty()) {
      EXPECT_EQ(daemon.not_daemon[0].pid, 4242) << c.name;
      EXPECT_NE(daemon.not_daemon[0].why.find("outside nvidia-persistenced.service"), std::string::npos) << c.name;
    }
  }
}

// The daemon is found by its command name first, and only then by argv[0]: /proc/PID/cmdline is read
// from the process's memory and can block, so it is read only for processes named like the daemon.
TEST(Daemon, FoundByNameThenArgv) {
  using namespace std::string_literals;
  struct Case {
    const char* name;
    const char* comm;  // nullptr: no comm file (the process exited between listing and reading)
    std::string cmdline;
    bool found;
  };
  const Case cases[] = {
      {"packaged daemon", "nvidia-persiste\n", "/usr/bin/nvidia-persistenced\0--verbose\0"s, true},
      {"NixOS wrapper", ".nvidia-persist\n",
       "/nix/store/abc-nvidia-x11/bin/nvidia-persistenced\0"s, true},
      {"argv[0] alone does not make the daemon (exec -a)", "sleep\n",
       "nvidia-persistenced\0infinity\0"s, false},
      {"name alone does not either", "nvidia-persiste\n", "/usr/bin/python3\0"s, false},
      {"no comm", nullptr, "/usr/bin/nvidia-persistenced\0"s, false},
      {"empty cmdline (a kernel thread)", "nvidia-persiste\n", "", false},
      {"started through fexecve: named by its descriptor", "3\n", "/usr/bin/nvidia-persistenced\0"s, true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    test::TempTree t;
    if (c.comm != nullptr) {
      t.write("proc/500/comm", c.comm);
    }
    t.write("proc/500/cmdline", c.cmdline);
    t.write("proc/500/status", "Uid:\t0\t0\t0\t0\n");
    t.mkdir("proc/500/fd");
    runs(t, 500);
    DaemonFacts d = read_daemon(Paths(t.root()));
    EXPECT_EQ(d.processes.size(), c.found ? 1u : 0u);
  }
}

// Anyone may start a process named nvidia-persistenced; the daemon runs as root or as its --user.
TEST(Daemon, AnotherUsersImitationIsNotTheDaemon) {
  using namespace std::string_literals;
  struct Case {
    const char* name;
    std::string cmdline;
    unsigned uid;
    bool daemon;
    const char* login_defs = nullptr;
    const char* cgroup = nullptr;
  };
  const Case cases[] = {
      {"root", "/usr/bin/nvidia-persistenced\0--no-persistence-mode\0"s, 0, true},
      // Only root can put a process in the unit's cgroup: systemd started it, as the unit's user, whatever its
      // uid (an account made without --system: uid 1000 here). A user's session is no such proof.
      {"systemd's, as a login-range --user", "/usr/bin/nvidia-persistenced\0--user\0alice\0"s, 1000, true, nullptr,
       "0::/system.slice/nvidia-persistenced.service\n"},
      {"a user's session", "/usr/bin/nvidia-persistenced\0--user\0alice\0"s, 1000, false, nullptr,
       "0::/user.slice/user-1000.slice/session-3.scope\n"},
      {"a user's own manager, a unit named like the daemon's", "/usr/bin/nvidia-persistenced\0--user\0alice\0"s,
       1000, false, nullptr,
       "0::/user.slice/user-1000.slice/user@1000.service/app.slice/nvidia-persistenced.service\n"},
      {"its --user", "/usr/bin/nvidia-persistenced\0--user\0nvidia-persistenced\0"s, 143, true},
      {"--user=NAME", "/usr/bin/nvidia-persistenced\0--user=nvidia-persistenced\0"s, 143, true},
      {"another user, claiming --user", "/usr/bin/nvidia-persistenced\0--user\0nvidia-persistenced\0"s, 1000, false},
      {"another user, no --user", "/usr/bin/nvidia-persistenced\0--no-persistence-mode\0"s, 1000, false},
      {"a --user /etc/passwd does not know: cannot tell, kept",
       "/usr/bin/nvidia-persistenced\0--user\0ghost\0"s, 900, true},
      // A login account naming itself as --user (a user's own build of the daemon, e.g. from the Nix store).
      {"a login account as its own --user", "/usr/bin/nvidia-persistenced\0--user\0alice\0"s, 1000, false},
      {"a login account, --user unknown", "/usr/bin/nvidia-persistenced\0--user\0ghost\0"s, 1000, false},
      {"nobody is no login account", "/usr/bin/nvidia-persistenced\0--user\0nobody\0"s, 65534, true},
      {"UID_MIN from login.defs", "/usr/bin/nvidia-persistenced\0--user\0alice\0"s, 1000, true,
       "# comment\nUID_MIN\t\t\t 2000\nUID_MAX 60000\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    test::TempTree t;
    t.write("etc/passwd", "root:x:0:0::/root:/bin/sh\nnvidia-persistenced:x:143:143::/:/usr/sbin/nologin\n"
                          "alice:x:1000:1000::/home/alice:/bin/bash\nnobody:x:65534:65534::/:/usr/sbin/nologin\n");
    if (c.login_defs != nullptr) {
      t.write("etc/login.defs", c.login_defs);
    }
    t.write("proc/500/comm", "nvidia-persiste\n");
    t.write("proc/500/cmdline", c.cmdline);
    t.write("proc/500/status", "Uid:\t" + std::to_string(c.uid) + "\t0\t0\t0\n");
    if (c.cgroup != nullptr) {
      t.write("proc/500/cgroup", c.cgroup);
    }
    t.mkdir("proc/500/fd");
    runs(t, 500);
    DaemonFacts d = read_daemon(Paths(t.root()));
    EXPECT_EQ(d.processes.size(), c.daemon ? 1u : 0u);
    EXPECT_TRUE(d.foreign.empty());
    if (!c.daemon) {
      ASSERT_EQ(d.not_daemon.size(), 1u);
      EXPECT_NE(d.not_daemon[0].why.find("not the daemon"), std::string::npos) << d.not_daemon[0].why;
    }
  }
}

// A process chooses its command name, argv[0] and --user; not its executable. Any user could otherwise pose as
// the daemon, and its open GPUs would turn "persistence off" into "held by nvidia-persistenced".
TEST(Daemon, OnlyTheDaemonsExecutableIsTheDaemon) {
  using namespace std::string_literals;
  struct Case {
    const char* name;
    std::string exe;           // the link's text; "" for no link
    std::string binary;        // the file written under the root ("" for none)
    unsigned file_mode;
    unsigned folder_mode;      // of the binary's folder
    const char* why;           // nullptr: the daemon
  };
  const Case cases[] = {
      {"the packaged binary", "/usr/bin/nvidia-persistenced", "/usr/bin/nvidia-persistenced", 0755, 0755, nullptr},
      {"NixOS's wrapped binary", "/nix/store/x-nvidia-x11/bin/.nvidia-persistenced-wrapped",
       "/nix/store/x-nvidia-x11/bin/.nvidia-persistenced-wrapped", 0555, 0555, nullptr},
      {"replaced by a driver update since it started", "/usr/bin/nvidia-persistenced (deleted)", "", 0, 0755,
       nullptr},
      {"python renamed with exec -a", "/usr/bin/python3.11", "/usr/bin/python3.11", 0755, 0755,
       "runs /usr/bin/python3.11, not nvidia-persistenced"},
      {"a copy anyone may replace", "/srv/x/nvidia-persistenced", "/srv/x/nvidia-persistenced", 0777, 0755,
       "is writable by group or others"},
      {"a copy in a folder anyone may change", "/srv/y/nvidia-persistenced", "/srv/y/nvidia-persistenced", 0755,
       0777, "writable by group or others"},
      {"replaced, in a folder anyone may change", "/srv/z/nvidia-persistenced (deleted)", "", 0, 0777,
       "whose folder"},
      {"no executable to read (exited, or a zombie)", "", "", 0, 0, "its executable could not be read"},
      // A --root that shows only part of the host (the exporter's pod mounts /usr, not /opt): the name decides.
      {"out of the root's view", "/opt/bin/nvidia-persistenced", "", 0, 0, nullptr},
      {"out of view, but another program", "/opt/bin/python3", "", 0, 0, "not nvidia-persistenced"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    test::TempTree t;
    t.write("proc/500/comm", "nvidia-persiste\n");
    t.write("proc/500/cmdline", "nvidia-persistenced\0"s);
    t.write("proc/500/status", "Uid:\t0\t0\t0\t0\n");
    t.mkdir("proc/500/fd");
    if (!c.binary.empty()) {
      t.write(c.binary.substr(1), "\x7f" "ELF");
      t.chmod(c.binary.substr(1), std::filesystem::perms(c.file_mode));
    }
    if (!c.exe.empty()) {
      if (c.folder_mode != 0) {
        std::string folder = c.exe.substr(1, c.exe.rfind('/') - 1);
        t.mkdir(folder);
        t.chmod(folder, std::filesystem::perms(c.folder_mode));
      }
      t.symlink(c.exe, "proc/500/exe");
    }
    DaemonFacts d = read_daemon(Paths(t.root()));
    if (c.why == nullptr) {
      ASSERT_EQ(d.processes.size(), 1u);
      EXPECT_EQ(d.processes[0].executable, c.exe);
      EXPECT_TRUE(d.not_daemon.empty());
    } else {
      EXPECT_TRUE(d.processes.empty());
      ASSERT_EQ(d.not_daemon.size(), 1u);
      EXPECT_NE(d.not_daemon[0].why.find(c.why), std::string::npos) << d.not_daemon[0].why;
      EXPECT_NE(d.not_daemon[0].why.find("not the daemon"), std::string::npos) << d.not_daemon[0].why;
    }
  }
}

// The same on the live /proc, where the file is also checked through the link: a copy of sh named
// nvidia-persistenced is the daemon as long as it runs from a root-owned file, also once the file or its whole
// folder is gone (an update); sh started as "nvidia-persistenced" (exec -a, its name set too) is not.
TEST(Daemon, TheLiveDaemonIsKnownByItsExecutable) {
  struct passwd* me = ::getpwuid(::geteuid());
  ASSERT_NE(me, nullptr);
  const std::string user = me->pw_name;
  auto start = [&user](const std::string& program, const std::string& argv0) {
    // sh waits for its sleep, so the process keeps running `program`; the arguments after the script are its
    // own, where --user is read.
    std::vector<std::string> args = {argv0, "-c", "echo nvidia-persistenced > /proc/$$/comm; sleep 30; :", "x",
                                     "--user", user};
    std::vector<char*> argv;
    for (auto& a : args) {
      argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    // In a group of its own, so that stop() ends the sleep too: a sleep left holding the test's output would keep
    // ctest waiting for it.
    posix_spawnattr_t attributes;
    ::posix_spawnattr_init(&attributes);
    ::posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    ::posix_spawnattr_setpgroup(&attributes, 0);
    pid_t pid = 0;
    EXPECT_EQ(::posix_spawn(&pid, program.c_str(), nullptr, &attributes, argv.data(), environ), 0);
    ::posix_spawnattr_destroy(&attributes);
    return pid;
  };
  auto verdict = [](pid_t pid) -> std::string {
    for (int attempt = 0; attempt < 200; ++attempt) {  // until the child has exec'd
      DaemonFacts d = read_daemon(Paths());
      for (const auto& p : d.processes) {
        if (p.pid == pid) {
          return "daemon";
        }
      }
      for (const auto& f : d.not_daemon) {
        if (f.pid == pid) {
          return f.why;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "not seen";
  };
  auto stop = [](pid_t pid) {
    if (pid <= 0) {
      return;  // the spawn failed (already reported): kill(-0) would end this test's own process group
    }
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  };
  auto folder = std::make_unique<test::TempTree>();
  const std::string copy = folder->path("nvidia-persistenced");
  std::filesystem::copy_file("/bin/sh", copy);
  std::filesystem::permissions(copy, std::filesystem::perms(0755));

  pid_t daemon = start(copy, copy);
  EXPECT_EQ(verdict(daemon), "daemon");
  std::filesystem::remove(copy);  // replaced by an update: "... (deleted)"
  EXPECT_EQ(verdict(daemon), "daemon");
  folder.reset();  // its folder gone too
  EXPECT_EQ(verdict(daemon), "daemon");
  stop(daemon);

  pid_t impostor = start("/bin/sh", "/usr/bin/nvidia-persistenced");
  EXPECT_NE(verdict(impostor).find("not nvidia-persistenced: not the daemon"), std::string::npos) << verdict(impostor);
  stop(impostor);
}

TEST(Daemon, PidFileNamesItWhateverItsCommandName) {
  using namespace std::string_literals;
  test::TempTree t;
  t.write("proc/600/comm", "persistd\n");
  t.write("proc/600/cmdline", "/opt/x/nvidia-persistenced\0"s);
  t.write("proc/601/comm", "persistd\n");  // the same, but not the PID the daemon wrote
  t.write("proc/601/cmdline", "/opt/x/nvidia-persistenced\0"s);
  t.write("run/nvidia-persistenced/nvidia-persistenced.pid", "600\n");
  runs(t, 600, "/opt/x/nvidia-persistenced");
  runs(t, 601, "/opt/x/nvidia-persistenced");
  DaemonFacts d = read_daemon(Paths(t.root()));
  ASSERT_EQ(d.processes.size(), 1u);
  EXPECT_EQ(d.processes[0].pid, 600);
}

// Arguments that never come (a process stuck in the driver holds its memory lock) cost the deadline, not
// the run: a process named like the daemon is kept, saying why its arguments are unknown; another is not
// taken for the daemon.
TEST(Daemon, ArgumentsThatNeverComeAreBoundedAndSaid) {
  test::TempTree t;
  t.write("proc/700/comm", "nvidia-persiste\n");
  t.write("proc/701/comm", "7\n");
  runs(t, 700);
  runs(t, 701);
  auto stuck = [](const std::string&) -> std::string {
    std::this_thread::sleep_for(std::chrono::seconds(3));
    return "/usr/bin/nvidia-persistenced";
  };
  auto started = std::chrono::steady_clock::now();
  DaemonFacts d = read_daemon(Paths(t.root()), list_processes(Paths(t.root())), stuck, std::chrono::milliseconds(100));
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
  ASSERT_EQ(d.processes.size(), 1u);
  EXPECT_EQ(d.processes[0].pid, 700);
  EXPECT_TRUE(d.processes[0].argv.empty());
  EXPECT_NE(d.processes[0].argv_missing.find("did not answer in 100 ms"), std::string::npos)
      << d.processes[0].argv_missing;
}

// A resident exporter collects again and again: while a read is still blocked, no second one is started
// for that process.
TEST(Daemon, OneBlockedReadPerProcessAcrossCollections) {
  test::TempTree t;
  t.write("proc/800/comm", "nvidia-persiste\n");
  runs(t, 800);
  static std::atomic<int> reads{0};
  auto stuck = [](const std::string&) -> std::string {
    ++reads;
    std::this_thread::sleep_for(std::chrono::seconds(3));
    return "";
  };
  Paths paths(t.root());
  for (int collection = 0; collection < 3; ++collection) {
    DaemonFacts d = read_daemon(paths, list_processes(paths), stuck, std::chrono::milliseconds(50));
    ASSERT_EQ(d.processes.size(), 1u);
    EXPECT_NE(d.processes[0].argv_missing.find(collection == 0 ? "did not answer" : "still waiting"),
              std::string::npos)
        << d.processes[0].argv_missing;
  }
  EXPECT_EQ(reads.load(), 1);
}

// One listing serves every reader; a PID-looking name that is not a canonical PID is not a process.
TEST(Processes, ListedOnceWithTheirNames) {
  test::TempTree t;
  t.write("proc/1/comm", "systemd\n");
  t.write("proc/812/comm", "slurmd\n");
  t.write("proc/0042/comm", "fake\n");
  t.write("proc/self/comm", "gpuwarm\n");
  t.mkdir("proc/9000");  // exited between the listing and the read: no name
  auto listed = list_processes(Paths(t.root()));
  ASSERT_TRUE(listed.has_value());
  std::map<int, std::string> by_pid;
  for (const auto& p : *listed) {
    by_pid[p.pid] = p.comm;
  }
  EXPECT_EQ(by_pid, (std::map<int, std::string>{{1, "systemd"}, {812, "slurmd"}, {9000, ""}}));

  auto schedulers = find_schedulers(Paths(t.root()), listed);
  ASSERT_TRUE(schedulers.has());
  EXPECT_EQ(*schedulers, (std::vector<std::string>{"slurmd (pid 812)"}));

  test::TempTree no_proc;
  auto unlisted = list_processes(Paths(no_proc.root()));
  EXPECT_FALSE(unlisted.has_value());
  EXPECT_FALSE(find_schedulers(Paths(no_proc.root()), unlisted).has());
}

// On the kernel's procfs the fast read answers what read_comm does (this test's own process, and its
// parent's); a fake tree (above) goes through the checked reader.
TEST(Processes, TheLiveProcfsGivesTheSameNames) {
  auto listed = list_processes(Paths("/"));
  ASSERT_TRUE(listed.has_value());
  std::map<int, std::string> by_pid;
  for (const auto& p : *listed) {
    by_pid[p.pid] = p.comm;
  }
  for (int pid : {static_cast<int>(::getpid()), static_cast<int>(::getppid())}) {
    ASSERT_EQ(by_pid.count(pid), 1u) << pid;
    EXPECT_EQ(by_pid[pid], read_comm(Paths("/"), pid)) << pid;
    EXPECT_FALSE(by_pid[pid].empty()) << pid;
  }
}

// gpuwarm holds the GPUs it reads until a one-shot command exits: it must not count itself as another client.
// Under a root whose proc is the kernel's (a pod reading the host at /host), /proc/self there names it; in a
// recording, `self` names whoever was recorded, and nothing is taken for gpuwarm.
TEST(Processes, OwnPidAsTheProcReadNumbersIt) {
  EXPECT_EQ(own_pid(Paths("/")), static_cast<int>(::getpid()));
  test::TempTree host;
  host.symlink("/proc", "proc");
  EXPECT_EQ(own_pid(Paths(host.root())), static_cast<int>(::getpid()));
  test::TempTree recorded;
  recorded.symlink("4242", "proc/self");
  recorded.mkdir("proc/4242");
  EXPECT_EQ(own_pid(Paths(recorded.root())), std::nullopt);
}

// The systemd a --root tree ships, by its libsystemd-shared file, wherever distributions put it.
TEST(Host, TreeSystemdVersionFromItsSharedLibrary) {
  struct Case {
    const char* file;
    std::optional<unsigned> version;
  };
  const Case cases[] = {
      {"usr/lib/x86_64-linux-gnu/systemd/libsystemd-shared-252.so", 252u},  // Debian 12
      {"usr/lib/systemd/libsystemd-shared-239.so", 239u},                    // RHEL 8
      {"usr/lib64/systemd/libsystemd-shared-254.5-1.fc39.so", 254u},         // Fedora
      {"lib/systemd/libsystemd-shared-241.so", 241u},                        // Debian 10, unmerged /usr
      {"usr/lib/systemd/libsystemd-shared-.so", std::nullopt},
      {"usr/lib/systemd/libsystemd-core-252.so", std::nullopt},
      {"usr/lib/systemd/systemd", std::nullopt},
  };
  for (const auto& c : cases) {
    test::TempTree tree;
    tree.write(c.file, "");
    EXPECT_EQ(tree_systemd_version(Paths(tree.root())), c.version) << c.file;
  }
}

// A process whose open files cannot be listed may hold a GPU; one that is exiting (a zombie, or dead: state Z or
// X) holds none (a busy host's short-lived processes made a cold probe read "may be warm").
TEST(Daemon, AnExitingProcessIsNotAnUnreadOne) {
  struct Case {
    const char* stat;
    unsigned unreadable;
  };
  const Case cases[] = {
      {"7 (worker) S 1 7 7 0 -1", 1},
      {"7 (a) Z b) S 1 7 7 0 -1", 1},  // the name may hold ") Z": the state follows the last ')'
      {"7 (worker) Z 1 7 7 0 -1", 0},
      {"7 (a) S (b)) X 1 7 7 0 -1", 0},
      {"", 1},  // unread: may be anything
  };
  for (const Case& c : cases) {
    test::TempTree t;
    t.write("proc/7/comm", "worker\n");
    t.write("proc/7/fd", "a file where the folder of descriptors belongs: it cannot be listed, even by root");
    if (*c.stat != '\0') {
      t.write("proc/7/stat", std::string(c.stat) + "\n");
    }
    EXPECT_EQ(scan_gpu_clients(Paths(t.root()), {}).unreadable, c.unreadable) << c.stat;
  }
}

TEST(Daemon, AbsentDaemon) {
  test::TempTree t;
  t.mkdir("proc");
  t.write("usr/bin/nvidia-persistenced", "not executable");
  DaemonFacts d = read_daemon(Paths(t.root()));
  EXPECT_FALSE(d.binary.has());
  EXPECT_TRUE(d.processes.empty());
  EXPECT_FALSE(d.runtime_dir);
  EXPECT_FALSE(d.pid_file_pid.has());
}

// No /proc to list is not "no daemon": the reason travels with the facts, and the client scan says so too.
TEST(Daemon, UnlistedProcessesAreNotAnAbsentDaemon) {
  test::TempTree t;
  t.write("usr/bin/nvidia-persistenced", "#!/bin/sh\n");
  t.chmod("usr/bin/nvidia-persistenced", std::filesystem::perms::owner_all);
  DaemonFacts d = read_daemon(Paths(t.root()));
  EXPECT_TRUE(d.processes.empty());
  EXPECT_NE(d.processes_unread.find("/proc"), std::string::npos) << d.processes_unread;
  EXPECT_EQ(scan_gpu_clients(Paths(t.root()), {}).unlisted, d.processes_unread);

  t.mkdir("proc");  // a tree that recorded no process
  EXPECT_NE(read_daemon(Paths(t.root())).processes_unread.find("no process listed"), std::string::npos);
  t.write("proc/1/comm", "init\n");
  EXPECT_EQ(read_daemon(Paths(t.root())).processes_unread, "");
  EXPECT_EQ(scan_gpu_clients(Paths(t.root()), {}).unlisted, "");
}

TEST(Processes, HidepidHidesOthersFromAnUnprivilegedViewer) {
  const std::string plain = "22 1 0:5 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw\n";
  auto proc_mount = [](const std::string& options) {
    return "25 1 0:22 / /sys rw - sysfs sysfs rw\n22 1 0:5 / /proc rw,relatime shared:12 - proc proc " + options +
           "\n";
  };
  struct Case {
    const char* name;
    std::string mountinfo;
    ProcViewer viewer;
    bool hidden;
  };
  const ProcViewer user{1000, {1000, 27}};
  const std::vector<Case> cases = {
      {"no hidepid", plain, user, false},
      {"hidepid=0", proc_mount("rw,hidepid=0"), user, false},
      {"hidepid=off", proc_mount("rw,hidepid=off"), user, false},
      {"hidepid=1 (files refused)", proc_mount("rw,hidepid=1"), user, true},
      {"hidepid=invisible", proc_mount("rw,hidepid=invisible"), user, true},
      {"hidepid=2 but root", proc_mount("rw,hidepid=2"), ProcViewer{0, {0}}, false},
      {"hidepid=2, in the gid= group", proc_mount("rw,gid=27,hidepid=2"), user, false},
      {"hidepid=2, another gid= group", proc_mount("rw,gid=44,hidepid=2"), user, true},
      {"ptraceable", proc_mount("rw,hidepid=ptraceable"), user, true},
      {"a later mount over /proc wins", proc_mount("rw,hidepid=2") + plain, user, false},
      {"a container's /proc elsewhere", "30 1 0:40 / /srv/c/proc rw - proc proc rw,hidepid=2\n" + plain, user, false},
      {"not procfs at /proc", "22 1 0:5 / /proc rw - tmpfs tmpfs rw,hidepid=2\n", user, false},
      {"truncated line", "22 1 0:5 / /proc rw - proc\n", user, false},
      {"empty", "", user, false},
  };
  for (const auto& c : cases) {
    std::string why = hidepid_hides_others(c.mountinfo, c.viewer);
    EXPECT_EQ(!why.empty(), c.hidden) << c.name << ": " << why;
    if (c.hidden) {
      EXPECT_NE(why.find("uid 1000"), std::string::npos) << why;
    }
  }
  EXPECT_NE(hidepid_hides_others(proc_mount("rw,gid=44,hidepid=2"), user).find("gid=44"), std::string::npos);
}

TEST(Daemon, GarbagePidFile) {
  test::TempTree t;
  t.mkdir("proc");
  t.write("run/nvidia-persistenced/nvidia-persistenced.pid", "\xff\xfe\x01");
  DaemonFacts d = read_daemon(Paths(t.root()));
  EXPECT_FALSE(d.pid_file_pid.has());
  EXPECT_EQ(d.pid_file_pid.missing, "unparsable PID file");
}

}  // namespace
}  // namespace gpuwarm
