// The locks between gpuwarm runs on one node (cli/node_lock.h), on real files: flock conflicts between two
// open files even within one process, which stands in for the other gpuwarm here.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "cli/node_lock.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

// Another run's lock: held until close().
int hold(const std::string& path, int operation) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  EXPECT_GE(fd, 0) << path;
  EXPECT_EQ(::flock(fd, operation | LOCK_NB), 0) << path;
  return fd;
}

// A fix ends, then another probe: the timing waits for both, and says so for each, not just the first.
TEST(TimingLocks, each_lock_waited_for_is_announced_and_taken_once_released) {
  test::TempTree tree;
  tree.mkdir("run");
  int fix = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_EX);
  int probe = hold(tree.path("run/gpuwarm-timing.lock"), LOCK_EX);
  // The probe ends only once the timing holds the fix lock, so the timing meets it held however slowly it runs.
  std::thread others_end([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::close(fix);
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    for (;;) {
      int mine = ::open(tree.path("run/gpuwarm-fix.lock").c_str(), O_RDWR | O_CLOEXEC);
      const bool timing_holds_it = mine >= 0 && ::flock(mine, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
      if (mine >= 0) {
        ::close(mine);
      }
      if (timing_holds_it || std::chrono::steady_clock::now() > give_up) {
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::close(probe);
  });
  std::vector<std::string> said;
  auto started = std::chrono::steady_clock::now();
  auto r = take_timing_locks(Paths(tree.root()), 20000, [&](const std::string& why) { said.push_back(why); });
  auto waited = std::chrono::steady_clock::now() - started;
  others_end.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "");
  EXPECT_GE(waited, std::chrono::milliseconds(550));
  ASSERT_EQ(said.size(), 2u);
  EXPECT_EQ(said[0], "`gpuwarm fix`, `reset` or `reload-modules` is changing this node (lock /run/gpuwarm-fix.lock is held)");
  EXPECT_EQ(said[1], "another `gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held)");
  // Held now: a fix cannot start, another timing cannot either.
  auto fix_now = take_node_lock(Paths(tree.root()));
  ASSERT_TRUE(fix_now) << fix_now.error().message;
  EXPECT_FALSE(*fix_now);
}

// Past the wait, the answer names what still holds a lock; timings share the node lock with each other.
TEST(TimingLocks, a_lock_still_held_at_the_deadline_is_named) {
  test::TempTree tree;
  tree.mkdir("run");
  int other_timing_node = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);
  int other_timing = hold(tree.path("run/gpuwarm-timing.lock"), LOCK_EX);
  int announced = 0;
  auto r = take_timing_locks(Paths(tree.root()), 300, [&](const std::string&) { ++announced; });
  ::close(other_timing);
  ::close(other_timing_node);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "another `gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held)");
  EXPECT_EQ(announced, 1);
}

}  // namespace
}  // namespace gpuwarm
