// The locks between gpuwarm runs on one node (cli/node_lock.h), on real files: flock conflicts between two
// open files even within one process, which stands in for the other gpuwarm here.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
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

constexpr const char* k_timing_held =
    "another `gpuwarm probe` or `watch --load` is timing the GPUs, or `diagnose`, `check`, `metrics`, `snapshot`, "
    "`verify` or `watch` is reading them (lock /run/gpuwarm-timing.lock is held)";

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
  EXPECT_EQ(said[1], k_timing_held);
  // Held now: a fix cannot start (past its wait, here none), another timing cannot either.
  auto fix_now = take_node_lock(Paths(tree.root()), 0, [](const std::string&) {});
  ASSERT_TRUE(fix_now) << fix_now.error().message;
  EXPECT_EQ(*fix_now,
            "`gpuwarm probe` or `watch --load` is timing the GPUs, or `diagnose`, `check`, `metrics`, `snapshot` or "
            "`verify` is reading them (lock /run/gpuwarm-fix.lock is held shared); waited 0 s");
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
  EXPECT_EQ(*r, k_timing_held);
  EXPECT_EQ(announced, 1);
}

using Clock = std::chrono::steady_clock;

// Two changes never queue: the second answers at once, whatever its wait, and says what runs.
TEST(NodeLock, another_change_answers_at_once) {
  test::TempTree tree;
  tree.mkdir("run");
  int other_fix = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_EX);
  int announced = 0;
  const auto started = Clock::now();
  auto r = take_node_lock(Paths(tree.root()), 5000, [&](const std::string&) { ++announced; });
  const auto took = Clock::now() - started;
  ::close(other_fix);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "another `gpuwarm fix`, `reset` or `reload-modules` is running (lock /run/gpuwarm-fix.lock is held)");
  EXPECT_LT(took, std::chrono::seconds(1));
  EXPECT_EQ(announced, 0);
}

// A reading (metrics from its timer, a health check) shares the node lock for a moment: a fix waits it out.
TEST(NodeLock, a_reading_is_waited_for_and_announced_once) {
  test::TempTree tree;
  tree.mkdir("run");
  int reading = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);
  std::thread ends([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    ::close(reading);
  });
  std::vector<std::string> said;
  const auto started = Clock::now();
  auto r = take_node_lock(Paths(tree.root()), 20000, [&](const std::string& why) { said.push_back(why); });
  const auto took = Clock::now() - started;
  ends.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "");
  EXPECT_GE(took, std::chrono::milliseconds(350));
  ASSERT_EQ(said.size(), 1u);
  EXPECT_NE(said[0].find("is held shared"), std::string::npos) << said[0];
  // Now this run's: a reading finds the node being changed.
  ReadingLocks after{Paths(tree.root())};
  EXPECT_EQ(after.busy,
            "`gpuwarm fix`, `reset` or `reload-modules` is changing this node (lock /run/gpuwarm-fix.lock is held): "
            "opening NVML now could hold a GPU it needs free");
}

// A reading leaves NVML closed while a timing runs or a change holds the node, and otherwise holds both locks
// shared until it ends: a probe or a fix starting meanwhile waits for it.
TEST(ReadingLocks, busy_while_held_exclusively_else_shares_both_until_it_ends) {
  test::TempTree tree;
  tree.mkdir("run");
  {
    int timing_node = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);
    int timing = hold(tree.path("run/gpuwarm-timing.lock"), LOCK_EX);
    ReadingLocks during_probe{Paths(tree.root())};
    EXPECT_EQ(during_probe.busy,
              "`gpuwarm probe` or `watch --load` is timing the GPUs (lock /run/gpuwarm-timing.lock is held): opening "
              "NVML now would initialize the GPUs it times");
    ::close(timing);
    ::close(timing_node);
  }
  {
    int other_reading = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);  // readings share with each other
    ReadingLocks reading{Paths(tree.root())};
    EXPECT_EQ(reading.busy, "");
    ::close(other_reading);
    auto fix = take_node_lock(Paths(tree.root()), 0, [](const std::string&) {});
    ASSERT_TRUE(fix) << fix.error().message;
    EXPECT_NE(fix->find("is held shared"), std::string::npos) << *fix;
    // What a probe tries (take_timing_locks would keep its share of the node lock for the test's life).
    int probe = ::open(tree.path("run/gpuwarm-timing.lock").c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(probe, 0);
    EXPECT_NE(::flock(probe, LOCK_EX | LOCK_NB), 0);
    EXPECT_EQ(errno, EWOULDBLOCK);
    ::close(probe);
  }
  // The reading has ended: nothing of it is left held.
  int after = ::open(tree.path("run/gpuwarm-timing.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(after, 0);
  EXPECT_EQ(::flock(after, LOCK_EX | LOCK_NB), 0);
  ::close(after);
  after = ::open(tree.path("run/gpuwarm-fix.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(after, 0);
  EXPECT_EQ(::flock(after, LOCK_EX | LOCK_NB), 0);
  ::close(after);
}

// Readings that overlap (an exporter, a timer, health checks) never leave a gap on their own: once a change
// waits, a reading that starts leaves NVML closed, so the change gets the node within a collection's time.
TEST(NodeLock, a_waiting_change_is_not_starved_by_overlapping_readings) {
  test::TempTree tree;
  tree.mkdir("run");
  for (const char* name : {"run/gpuwarm-fix.lock", "run/gpuwarm-timing.lock"}) {
    ::close(hold(tree.path(name), LOCK_SH));  // the files exist, as on a node where gpuwarm ran before
  }
  std::atomic<bool> stop{false};
  std::atomic<int> stood_aside{0};
  auto reader = [&] {
    while (!stop) {
      ReadingLocks reading{Paths(tree.root())};
      if (!reading.busy.empty()) {
        ++stood_aside;
        // Waiting, or (a reading that starts after the change got the lock, before `stop` is set) changing.
        EXPECT_TRUE(reading.busy.find("is waiting to change the node") != std::string::npos ||
                    reading.busy.find("is changing this node") != std::string::npos)
            << reading.busy;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a collection
    }
  };
  // A reading under way when the change starts: the change must wait (on a loaded machine the two readers' own
  // holds may leave a gap the change would take at once, and nothing would be shown).
  const int under_way = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);
  std::thread a(reader);
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  std::thread b(reader);  // the two overlap: one of them holds the node lock shared nearly always
  std::thread ends([under_way] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ::close(under_way);
  });
  const auto started = Clock::now();
  auto r = take_node_lock(Paths(tree.root()), 10000, [](const std::string&) {});
  const auto took = Clock::now() - started;
  stop = true;
  a.join();
  b.join();
  ends.join();
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r, "");
  EXPECT_LT(took, std::chrono::seconds(2));
  EXPECT_GT(stood_aside.load(), 0);
}

// A second change waiting beside another (which holds the waiting lock) says so once, not at every turn.
TEST(NodeLock, a_second_waiter_announces_once) {
  test::TempTree tree;
  tree.mkdir("run");
  int reading = hold(tree.path("run/gpuwarm-fix.lock"), LOCK_SH);
  int other_waiter = hold(tree.path("run/gpuwarm-waiting.lock"), LOCK_EX);
  int announced = 0;
  auto r = take_node_lock(Paths(tree.root()), 600, [&](const std::string&) { ++announced; });
  ::close(other_waiter);
  ::close(reading);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_NE(r->find("waited 0.6 s"), std::string::npos) << *r;
  EXPECT_EQ(announced, 1);
}

// Something other than a file in a lock's place (a --root tree is anyone's): never waited on, never taken.
TEST(NodeLock, a_fifo_in_a_locks_place_neither_hangs_nor_counts) {
  test::TempTree tree;
  tree.mkdir("run");
  ASSERT_EQ(::mkfifo(tree.path("run/gpuwarm-timing.lock").c_str(), 0600), 0);
  ASSERT_EQ(::mkfifo(tree.path("run/gpuwarm-fix.lock").c_str(), 0600), 0);
  ReadingLocks reading{Paths(tree.root())};
  EXPECT_EQ(reading.busy, "");
  auto fix = take_node_lock(Paths(tree.root()), 0, [](const std::string&) {});
  ASSERT_FALSE(fix);
  EXPECT_EQ(fix.error().message, "cannot open lock " + tree.path("run/gpuwarm-fix.lock") + ": not a regular file");
}

// A one-shot reading keeps its share until the process exits: NVML stays open to the end there.
TEST(ReadingLocks, kept_until_exit_outlives_the_object) {
  test::TempTree tree;
  tree.mkdir("run");
  ::close(hold(tree.path("run/gpuwarm-timing.lock"), LOCK_SH));
  {
    ReadingLocks reading{Paths(tree.root())};
    ASSERT_EQ(reading.busy, "");
    reading.keep_until_exit();
  }
  int probe = ::open(tree.path("run/gpuwarm-timing.lock").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(probe, 0);
  EXPECT_NE(::flock(probe, LOCK_EX | LOCK_NB), 0);
  ::close(probe);
}

// A recorded tree stays as it was: no lock file is created in it by a reading.
TEST(ReadingLocks, creates_no_lock_file_in_a_recorded_tree) {
  test::TempTree tree;
  tree.mkdir("run");
  ReadingLocks reading{Paths(tree.root())};
  EXPECT_EQ(reading.busy, "");
  EXPECT_NE(::access(tree.path("run/gpuwarm-fix.lock").c_str(), F_OK), 0);
  EXPECT_NE(::access(tree.path("run/gpuwarm-timing.lock").c_str(), F_OK), 0);
}

// /proc/locks as the kernel prints it: only a flock held WRITE (not waited for, not POSIX or OFD) on that very
// device and inode counts.
TEST(ProcLocks, only_an_exclusive_flock_held_on_that_file_counts) {
  struct Case {
    const char* text;
    bool held;
  };
  const Case cases[] = {
      {"1: FLOCK  ADVISORY  WRITE 5143 00:19:4242 0 EOF\n", true},
      {"1: FLOCK  ADVISORY  WRITE 5143 fe:00:4242 0 EOF\n", false},     // another device
      {"1: FLOCK  ADVISORY  WRITE 5143 00:19:42420 0 EOF\n", false},    // another inode
      {"1: FLOCK  ADVISORY  READ 5143 00:19:4242 0 EOF\n", false},      // shared: readers share it too
      {"1: POSIX  ADVISORY  WRITE 5143 00:19:4242 0 EOF\n", false},     // fcntl locks: not gpuwarm's
      {"1: OFDLCK ADVISORY  WRITE -1 00:19:4242 0 EOF\n", false},
      {"1: -> FLOCK  ADVISORY  WRITE 5150 00:19:4242 0 EOF\n", false},  // a waiter holds nothing yet
      {"1: FLOCK  ADVISORY  READ 5143 00:19:4242 0 EOF\n"
       "1: -> FLOCK  ADVISORY  WRITE 5150 00:19:4242 0 EOF\n"
       "2: FLOCK  ADVISORY  WRITE 0 00:19:4242 0 EOF",  // last line unterminated; a pid of 0 (its holder gone)
       true},
      {"1: FLOCK  ADVISORY  WRITE 5143 00:19:4242x 0 EOF\n", false},  // not a number
      {"1: FLOCK  ADVISORY  WRITE 5143 00:19\n", false},
      {"1: FLOCK", false},
      {"", false},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(flock_held_exclusively(c.text, 0x0, 0x19, 4242), c.held) << c.text;
  }
}

// Runs `body` as nobody in a child; its exit status.
template <typename Body>
int as_nobody(Body body) {
  pid_t child = ::fork();
  if (child == 0) {
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) {
      ::_exit(100);
    }
    ::_exit(body());
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 101;
}

// Not root, a reader cannot open root's 0600 lock files; /proc/locks still tells it that a probe holds the
// timing lock, so it leaves NVML closed. Here the kernel's own /proc/locks, copied into the tree while the lock
// is held, stands for the node's.
TEST(ReadingLocks, not_root_it_sees_a_held_lock_through_proc_locks) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root: the lock files must be root's 0600 and the reader another user";
  }
  test::TempTree tree;
  tree.mkdir("run");
  tree.mkdir("proc");
  ::chmod(tree.root().c_str(), 0755);
  ::chmod(tree.path("run").c_str(), 0755);
  if (as_nobody([&tree] { return ::access(tree.path("run").c_str(), X_OK) == 0 ? 0 : 1; }) != 0) {
    GTEST_SKIP() << "nobody cannot reach " << tree.root() << " (TMPDIR closed to others)";
  }
  struct statfs fs {};
  if (::statfs(tree.root().c_str(), &fs) == 0 && fs.f_type == BTRFS_SUPER_MAGIC) {
    GTEST_SKIP() << "TMPDIR is on btrfs, whose stat() device is not the one /proc/locks names (/run is a tmpfs)";
  }
  const std::string lock = tree.path("run/gpuwarm-timing.lock");
  auto copy_proc_locks = [&tree] {
    std::ifstream in("/proc/locks");
    std::stringstream text;
    text << in.rdbuf();
    tree.write("proc/locks", text.str());
    ::chmod(tree.path("proc/locks").c_str(), 0644);
  };
  auto reading_says = [&tree] {
    ReadingLocks reading{Paths(tree.root())};
    if (reading.busy.empty()) {
      return 0;
    }
    return reading.busy_by == "timing" && reading.busy.find("is timing the GPUs") != std::string::npos ? 1 : 2;
  };
  int probe = hold(lock, LOCK_EX);
  ASSERT_EQ(::fchmod(probe, 0600), 0);
  copy_proc_locks();
  EXPECT_EQ(as_nobody(reading_says), 1);
  ::close(probe);
  copy_proc_locks();
  EXPECT_EQ(as_nobody(reading_says), 0);  // released: NVML may be opened
  int reader = hold(lock, LOCK_SH);       // another reading, shared: no reason to stand aside
  copy_proc_locks();
  EXPECT_EQ(as_nobody(reading_says), 0);
  ::close(reader);
  probe = hold(lock, LOCK_EX);
  tree.write("proc/locks", "");  // unreadable or empty /proc/locks: not kept apart, as before
  EXPECT_EQ(as_nobody(reading_says), 0);
  ::close(probe);
}

}  // namespace
}  // namespace gpuwarm
