#include <gtest/gtest.h>

#include "core/paths.h"
#include "sysfs/daemon.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

TEST(Daemon, MinorsFromFdLinks) {
  auto minors = nvidia_minors_from_links({"/dev/nvidiactl", "/dev/nvidia3", "/dev/nvidia0", "/dev/nvidia-uvm",
                                          "/dev/nvidia3", "socket:[123]", "/dev/nvidia-caps/nvidia-cap1",
                                          "/dev/nvidia999"});
  EXPECT_EQ(minors, (std::vector<unsigned>{0, 3}));
}

TEST(Daemon, ReadsProcessesFromAFakeRoot) {
  test::TempTree t;
  t.write("usr/bin/nvidia-persistenced", "#!/bin/sh\n");
  t.chmod("usr/bin/nvidia-persistenced", std::filesystem::perms::owner_all);
  t.write("proc/4242/cmdline", std::string("/usr/bin/nvidia-persistenced\0--user\0nvidia-persistenced\0", 57));
  t.write("proc/4242/status", "Name:\tnvidia-persiste\nUid:\t143\t143\t143\t143\n");
  t.symlink("/dev/nvidiactl", "proc/4242/fd/3");
  t.symlink("/dev/nvidia0", "proc/4242/fd/4");
  t.symlink("/dev/nvidia1", "proc/4242/fd/5");
  // Another process whose comm is truncated the same way but is not the daemon.
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
  ASSERT_TRUE(d.processes[0].held_minors.has());
  EXPECT_EQ(*d.processes[0].held_minors, (std::vector<unsigned>{0, 1}));
  EXPECT_TRUE(d.runtime_dir);
  EXPECT_TRUE(d.socket);
  EXPECT_TRUE(d.pid_file_pid.is(4242));
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
