// run_child: the one runner of other programs (nvidia-smi, udevadm, dcgmi, nvidia-persistenced --version),
// run as root. Real programs from /usr/bin, so what is checked is what the kernel and the loader did.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>

#include "cli/child_process.h"
#include "core/fs.h"
#include "core/signal_shield.h"

namespace gpuwarm {
namespace {

bool has_program(const char* path) { return ::access(path, X_OK) == 0; }

// Sets a variable for the test's length, then puts back what was there (the device run sets LD_LIBRARY_PATH).
struct ScopedEnv {
  std::string name;
  std::optional<std::string> before;
  ScopedEnv(const char* n, const char* value) : name(n) {
    if (const char* was = std::getenv(n); was != nullptr) {
      before = was;
    }
    ::setenv(n, value, 1);
  }
  ~ScopedEnv() {
    if (before) {
      ::setenv(name.c_str(), before->c_str(), 1);
    } else {
      ::unsetenv(name.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

TEST(SystemProgramEnvironment, fixed_path_c_locale_and_only_the_loader_path_of_the_caller) {
  // Folders that exist and that no other user can change, as the driver's /usr/local/nvidia/lib64 on a node.
  char lib_template[] = "/tmp/gpuwarm-ldpath-XXXXXX";
  const std::string lib = ::mkdtemp(lib_template);
  const std::string nv = lib + "/nv";
  char open_template[] = "/tmp/gpuwarm-ldpath-open-XXXXXX";
  const std::string open_to_all = ::mkdtemp(open_template);
  ASSERT_EQ(::mkdir(nv.c_str(), 0755), 0);
  ASSERT_EQ(::chmod(open_to_all.c_str(), 0777), 0);
  std::string keep = "LD_LIBRARY_PATH=" + lib;
  std::string preload = "LD_PRELOAD=/tmp/evil.so";
  std::string locale = "LC_ALL=de_DE.UTF-8";
  std::string path = "PATH=/home/user/bin:/usr/bin";
  std::string other = "ANSIBLE_VAR=x";
  char* parent[] = {preload.data(), locale.data(), path.data(), keep.data(), other.data(), nullptr};
  EXPECT_EQ(system_program_environment(parent),
            (std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", keep}));
  // Empty and relative entries name the current directory: dropped, and a list of nothing but them too.
  std::string mixed = "LD_LIBRARY_PATH=:lib:" + lib + "::./x:" + nv + ";lib;";
  std::string relative_only = "LD_LIBRARY_PATH=.:";
  char* loader_lists[] = {mixed.data(), nullptr};
  EXPECT_EQ(system_program_environment(loader_lists).back(), "LD_LIBRARY_PATH=" + lib + ":" + nv);
  // A folder others may write to, or one that does not exist (anyone who can create it could fill it), is
  // dropped: its libraries would be loaded into a program run as root.
  std::string risky = "LD_LIBRARY_PATH=" + open_to_all + ":" + lib + "/missing:" + nv;
  char* risky_list[] = {risky.data(), nullptr};
  EXPECT_EQ(system_program_environment(risky_list).back(), "LD_LIBRARY_PATH=" + nv);
  char* relative[] = {relative_only.data(), nullptr};
  EXPECT_EQ(system_program_environment(relative).size(), 2u);
  char* empty[] = {nullptr};
  EXPECT_EQ(system_program_environment(empty),
            (std::vector<std::string>{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}));
  ::rmdir(open_to_all.c_str());
  ::rmdir(nv.c_str());
  ::rmdir(lib.c_str());
}

// review-s53-root H1: a --root tree may be a container's, whose files are uid 0's too: as root its code (libnvidia-ml,
// nvidia-persistenced) runs only where the caller vouches for the tree. Another name for the host's own / is no
// exception (review-s54 L1: a check by path could be raced or fooled); not root, the caller runs it as themselves.
TEST(UntrustedRoot, a_roots_code_runs_as_root_only_where_vouched_for) {
  struct Case {
    std::string dir;
    bool trusted;
    bool as_root;
    bool refused;
  };
  const Case cases[] = {
      {"/", false, true, false},               // the live system
      {"", false, true, false},                // the same, as Paths spells it
      {"///", false, true, false},             // the same, with slashes to spare
      {"/proc/self/root", false, true, true},  // another name for the own /: vouched for like any tree
      {"/proc/self/root", true, true, false},
      {"/srv/tree", true, true, false},    // --trust-root
      {"/srv/tree", false, true, true},    // anyone's tree
      {"/srv/tree", false, false, false},  // not root: runs as the caller
  };
  for (const Case& c : cases) {
    const std::string why = untrusted_root_for_code(c.dir, c.trusted, c.as_root);
    if (c.refused) {
      EXPECT_EQ(why, "--root " + c.dir + " may be a container's or an image's tree, whose code never runs as root "
                                         "(--trust-root if it is this host's own /, as the host's / mounted in a pod)");
    } else {
      EXPECT_EQ(why, "") << c.dir << " trusted " << c.trusted << " as root " << c.as_root;
    }
  }
}

// review-s54 L6: a --nvml file in the tree is the tree's code, however it is named.
TEST(PathWithin, a_path_is_within_a_folder_as_written_or_through_links) {
  char tree_template[] = "/tmp/gpuwarm-tree-XXXXXX";
  const std::string tree = ::mkdtemp(tree_template);
  const std::string lib = tree + "/lib";
  ASSERT_EQ(::mkdir(lib.c_str(), 0755), 0);
  const std::string into = tree + "-link";  // a link, outside the tree, to a folder in it
  ASSERT_EQ(::symlink(lib.c_str(), into.c_str()), 0);
  const std::string out = lib + "/out";  // a link in the tree to a folder outside it
  ASSERT_EQ(::symlink("/usr/lib", out.c_str()), 0);
  struct Case {
    std::string path;
    std::string dir;
    bool within;
  };
  const Case cases[] = {
      {tree + "/lib/libnvidia-ml.so.1", tree, true},
      {tree, tree, true},
      {tree + "/", tree + "//", true},
      {tree + "x/lib", tree, false},  // a sibling sharing the name's start
      {"/usr/lib/libnvidia-ml.so.1", tree, false},
      {into + "/libnvidia-ml.so.1", tree, true},  // not there (yet), but the link on the way leads in
      {into, tree, true},                         // through the link
      {into + "/out/libnvidia-ml.so.1", tree, true},  // in, then out again: the tree's link decides where it leads
      {lib, into, true},                           // the folder named through a link
      {"/anything", "/", true},
      {"/usr/lib/libnvidia-ml.so.1", "/proc/self/root", false},  // a / by another name: host paths are not in it
      {"/proc/self/root/usr/lib/libnvidia-ml.so.1", "/proc/self/root", true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(path_within(c.path, c.dir), c.within) << c.path << " in " << c.dir;
  }
  ::unlink(into.c_str());
  ::unlink(out.c_str());
  ::rmdir(lib.c_str());
  ::rmdir(tree.c_str());
}

// review-s53-root M1: the folder was checked, its files never: the loader takes libc.so.6 or libnvidia-ml.so.1
// from the first folder of LD_LIBRARY_PATH that has it, so one file another user can replace hands nvidia-smi
// (run as root by reset) that user's code.
TEST(SystemProgramEnvironment, a_folder_is_kept_only_if_no_file_in_it_can_be_replaced_by_others) {
  char top_template[] = "/tmp/gpuwarm-ldfiles-XXXXXX";
  const std::string top = ::mkdtemp(top_template);
  auto folder = [&](const std::string& name) {
    const std::string path = top + "/" + name;
    EXPECT_EQ(::mkdir(path.c_str(), 0755), 0);
    return path;
  };
  auto file = [](const std::string& path, mode_t mode) {
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    EXPECT_GE(fd, 0);
    ::close(fd);
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  };
  const std::string clean = folder("clean");
  file(clean + "/libnvidia-ml.so.1", 0755);
  EXPECT_EQ(::symlink("/dev/null", (clean + "/masked.service").c_str()), 0);  // nothing the loader opens
  EXPECT_EQ(::chmod(folder("clean/python3").c_str(), 0777), 0);               // a folder the loader never searches
  EXPECT_EQ(::symlink("libnvidia-ml.so.1", (clean + "/libnvidia-ml.so").c_str()), 0);
  EXPECT_EQ(::symlink("/nonexistent/lib.so", (clean + "/dangling.so").c_str()), 0);  // loads nothing
  const std::string group_writable = folder("group-writable");
  file(group_writable + "/libc.so.6", 0775);
  const std::string open_subfolder = folder("hwcaps");
  folder("hwcaps/glibc-hwcaps");
  const std::string level = folder("hwcaps/glibc-hwcaps/x86-64-v3");
  EXPECT_EQ(::chmod(level.c_str(), 0777), 0);
  const std::string open_target = folder("open");
  EXPECT_EQ(::chmod(open_target.c_str(), 0777), 0);
  file(open_target + "/libcuda.so.1", 0755);
  const std::string linked_out = folder("linked-out");
  EXPECT_EQ(::symlink((open_target + "/libcuda.so.1").c_str(), (linked_out + "/libcuda.so.1").c_str()), 0);
  const std::string via_link = top + "/via-link";  // a folder link into the open folder
  EXPECT_EQ(::symlink(open_target.c_str(), via_link.c_str()), 0);
  const bool root = ::geteuid() == 0;
  const std::string foreign = folder("foreign");
  file(foreign + "/libnvidia-ml.so.1", 0755);
  if (root) {
    EXPECT_EQ(::chown((foreign + "/libnvidia-ml.so.1").c_str(), 1000, 1000), 0);
  }

  EXPECT_EQ(library_folder_replaceable_by_others(clean), "");
  EXPECT_EQ(library_folder_replaceable_by_others(group_writable),
            "holds " + group_writable + "/libc.so.6, writable by group or others");
  EXPECT_EQ(library_folder_replaceable_by_others(open_subfolder), "holds " + level + ", writable by group or others");
  EXPECT_EQ(library_folder_replaceable_by_others(linked_out),
            "holds the link " + linked_out + "/libcuda.so.1 to " + open_target +
                "/libcuda.so.1, which is in " + open_target + ", writable by group or others");
  EXPECT_EQ(library_folder_replaceable_by_others(via_link), "is writable by group or others");
  if (root) {
    EXPECT_EQ(library_folder_replaceable_by_others(foreign), "holds " + foreign + "/libnvidia-ml.so.1, owned by uid 1000");
  }
  std::string list = "LD_LIBRARY_PATH=" + group_writable + ":" + open_subfolder + ":" + linked_out + ":" + via_link +
                     ":" + (root ? foreign : group_writable) + ":" + clean;
  char* parent[] = {list.data(), nullptr};
  EXPECT_EQ(system_program_environment(parent).back(), "LD_LIBRARY_PATH=" + clean);
  std::filesystem::remove_all(top);
}

TEST(RunChild, the_program_sees_the_clean_environment) {
  if (!has_program("/usr/bin/env")) GTEST_SKIP() << "no /usr/bin/env";
  ScopedEnv preload("LD_PRELOAD", "");  // empty: the loader ignores it, and it must not be passed on either
  ScopedEnv secret("GPUWARM_TEST_SECRET", "from-the-caller");
  ScopedEnv locale("LC_ALL", "fr_FR.UTF-8");
  ScopedEnv loader("LD_LIBRARY_PATH", "/usr/lib:/nonexistent/nvidia/lib64");  // a missing folder is dropped
  auto r = run_child({"/usr/bin/env"}, 5000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_EQ(r->output, "PATH=/usr/sbin:/usr/bin:/sbin:/bin\nLC_ALL=C\nLD_LIBRARY_PATH=/usr/lib\n");
}

TEST(RunChild, refuses_a_relative_name_without_running_anything) {
  auto r = run_child({"env"}, 1000);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("relative name"), std::string::npos) << r.error().message;
  EXPECT_FALSE(run_child({}, 1000));
}

TEST(RunChild, exit_status_stdin_from_dev_null_and_a_missing_program) {
  if (!has_program("/usr/bin/false") || !has_program("/usr/bin/cat")) GTEST_SKIP() << "no coreutils";
  auto failed = run_child({"/usr/bin/false"}, 5000);
  ASSERT_TRUE(failed);
  EXPECT_EQ(failed->exit_code, 1);
  // cat would wait forever on a terminal or an inherited pipe; /dev/null ends it at once.
  auto cat = run_child({"/usr/bin/cat"}, 5000);
  ASSERT_TRUE(cat);
  EXPECT_EQ(cat->exit_code, 0);
  EXPECT_EQ(cat->output, "");
  auto missing = run_child({"/nonexistent/nvidia-smi"}, 1000);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("cannot run /nonexistent/nvidia-smi"), std::string::npos);
}

TEST(RunChild, output_is_capped_and_the_rest_read_and_dropped) {
  if (!has_program("/usr/bin/head")) GTEST_SKIP() << "no /usr/bin/head";
  auto r = run_child({"/usr/bin/head", "-c", "300000", "/dev/zero"}, 10000, 1000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);  // it was never blocked on a full pipe
  EXPECT_EQ(r->output.size(), 1000u);
  EXPECT_TRUE(r->truncated);
}

TEST(RunChild, a_child_past_its_deadline_is_killed_and_reaped) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  auto started = std::chrono::steady_clock::now();
  // 2 s: the deadline counts the fork and the exec too, which a loaded machine under ASan may take long over.
  auto r = run_child({"/usr/bin/sleep", "30"}, 2000);
  auto took = std::chrono::steady_clock::now() - started;
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "/usr/bin/sleep did not finish within 2000 ms");
  EXPECT_LT(took, std::chrono::seconds(6));
}

// A program that starts a helper and writes its PID to a file; afterwards, whether that helper still runs.
struct HelperWatch {
  char dir[32] = "/tmp/gpuwarm-child-XXXXXX";
  std::string pid_file;
  HelperWatch() {
    EXPECT_NE(::mkdtemp(dir), nullptr);
    pid_file = std::string(dir) + "/helper.pid";
  }
  ~HelperWatch() {
    ::unlink(pid_file.c_str());
    ::rmdir(dir);
  }
  HelperWatch(const HelperWatch&) = delete;
  HelperWatch& operator=(const HelperWatch&) = delete;
  // `sh -c` text that starts `helper` in the background, records its PID and waits.
  std::string script(const std::string& helper) const { return helper + " & echo $! > " + pid_file + "; wait"; }
  // "" when the helper is gone (or a zombie), else what /proc says of it.
  std::string still_running() const {
    std::ifstream in(pid_file);
    pid_t helper = 0;
    in >> helper;
    if (helper <= 0) {
      return "no helper PID was recorded";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    std::ifstream stat("/proc/" + std::to_string(helper) + "/stat");
    std::string pid_text, comm, state;
    stat >> pid_text >> comm >> state;
    return !stat || state == "Z" ? "" : comm + " " + state;
  }
};

// A helper the program started (a wrapper script's, a forking tool's) ends with it at the deadline.
TEST(RunChild, a_timeout_ends_the_programs_helpers_too) {
  if (!has_program("/bin/sh") || !has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /bin/sh or sleep";
  HelperWatch watch;
  auto r = run_child({"/bin/sh", "-c", watch.script("/usr/bin/sleep 30")}, 2000);
  ASSERT_FALSE(r);
  EXPECT_EQ(watch.still_running(), "");
}

// A descriptor gpuwarm's caller left open (not close-on-exec) does not reach the program.
TEST(RunChild, the_callers_open_descriptors_are_not_passed_on) {
  if (!has_program("/usr/bin/test")) GTEST_SKIP() << "no /usr/bin/test";
  int fd = ::open("/dev/null", O_RDONLY);  // inheritable, as a caller's would be
  ASSERT_GE(fd, 3);
  auto r = run_child({"/usr/bin/test", "-e", "/proc/self/fd/" + std::to_string(fd)}, 5000);
  ::close(fd);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 1) << "fd " << fd << " was inherited";
}

// Without close_range (a kernel before 5.9, or a seccomp profile that refuses it, as here) the caller's
// descriptors are still closed, a high one included (70000, above the old fixed bound of 65536, where root may
// raise its limit so far). A forked test process makes close_range fail with ENOSYS and runs the program; exit 0:
// neither descriptor reached it.
TEST(RunChild, without_close_range_the_callers_descriptors_are_still_closed) {
  if (!has_program("/usr/bin/test")) GTEST_SKIP() << "no /usr/bin/test";
  const pid_t tester = ::fork();
  ASSERT_GE(tester, 0);
  if (tester == 0) {
    // 70000 where the limit can be raised so far (CAP_SYS_RESOURCE), else the highest the hard limit allows.
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) ::_exit(4);
    rlimit raised{70001, std::max<rlim_t>(limit.rlim_max, 70001)};
    if (::setrlimit(RLIMIT_NOFILE, &raised) != 0) {
      raised.rlim_cur = raised.rlim_max = limit.rlim_max;
      if (limit.rlim_max < 1024 || ::setrlimit(RLIMIT_NOFILE, &raised) != 0) ::_exit(3);
    }
    const int high = static_cast<int>(std::min<rlim_t>(raised.rlim_cur - 1, 70000));
    const int low = ::open("/dev/null", O_RDONLY);
    if (low < 3 || ::dup2(low, high) != high) ::_exit(4);
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_close_range, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &program) != 0) {
      ::_exit(5);
    }
    if (::syscall(SYS_close_range, high, high, 0u) == 0 || errno != ENOSYS) ::_exit(6);  // the filter holds
    auto low_seen = run_child({"/usr/bin/test", "-e", "/proc/self/fd/" + std::to_string(low)}, 10000);
    auto high_seen = run_child({"/usr/bin/test", "-e", "/proc/self/fd/" + std::to_string(high)}, 10000);
    ::_exit(!low_seen || !high_seen ? 9 : low_seen->exit_code == 0 ? 7 : high_seen->exit_code == 0 ? 8 : 0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(tester, &status, 0), tester);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "RLIMIT_NOFILE cannot be set here";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "7: the low descriptor was inherited, 8: the high one, 4-6, 9: set-up failed";
}

// A helper the program started and did not wait for (a forking tool's, a wrapper's `cmd &`) ends when the program
// does: it would run on as root with no one waiting for it, holding the output pipe.
TEST(RunChild, what_the_program_leaves_running_in_its_group_ends_with_it) {
  if (!has_program("/bin/sh") || !has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /bin/sh or sleep";
  HelperWatch watch;
  const std::string no_wait = "/usr/bin/sleep 30 & echo $! > " + watch.pid_file;
  auto started = std::chrono::steady_clock::now();
  auto r = run_child({"/bin/sh", "-c", no_wait}, 20000);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_EQ(watch.still_running(), "");
}

// A program run as root starts in /, not in whatever folder the caller was in.
TEST(RunChild, the_program_starts_in_the_root_folder) {
  if (!has_program("/bin/sh")) GTEST_SKIP() << "no /bin/sh";
  HelperWatch scratch;
  const auto before = std::filesystem::current_path();
  std::filesystem::current_path(scratch.dir);
  auto r = run_child({"/bin/sh", "-c", "pwd"}, 5000);
  std::filesystem::current_path(before);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->output, "/\n");
}

std::atomic<int> g_signal_seen{0};

// SIGTERM for this process from a thread that blocks every signal, so the main thread is the one to get it.
std::thread signal_this_process_after(std::chrono::milliseconds delay, int sig = SIGTERM) {
  return std::thread([delay, sig] {
    block_all_signals_in_this_thread();
    std::this_thread::sleep_for(delay);
    ::kill(::getpid(), sig);
  });
}

// A stop signal while a program runs ends the program (its process group) first, then acts on gpuwarm as it
// would have; under a SignalShield the program runs to its end and the shield gets the signal.
TEST(RunChild, a_stop_signal_ends_the_program_first_unless_shielded) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  struct sigaction seen {};
  seen.sa_handler = [](int sig) { g_signal_seen = sig; };
  struct sigaction before {};
  ::sigaction(SIGTERM, &seen, &before);

  g_signal_seen = 0;
  auto started = std::chrono::steady_clock::now();
  std::thread sender = signal_this_process_after(std::chrono::milliseconds(200));
  auto r = run_child({"/usr/bin/sleep", "30"}, 20000);
  sender.join();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "/usr/bin/sleep was stopped: gpuwarm received SIGTERM");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  EXPECT_EQ(g_signal_seen.load(), SIGTERM);  // delivered once run_child let it through

  g_signal_seen = 0;
  {
    SignalShield shield;
    sender = signal_this_process_after(std::chrono::milliseconds(100));
    auto shielded = run_child({"/usr/bin/sleep", "0.5"}, 20000);
    sender.join();
    ASSERT_TRUE(shielded) << shielded.error().message;
    EXPECT_EQ(shielded->exit_code, 0);
    EXPECT_EQ(shield.take(), SIGTERM);
  }
  EXPECT_EQ(g_signal_seen.load(), 0);
  ::sigaction(SIGTERM, &before, nullptr);
}

// A shield with a notice says so on stderr the moment a signal comes, while the program still runs (not when
// the section ends), once per signal, and still hands the first signal to take().
TEST(RunChild, a_shielded_signal_is_answered_at_once_on_stderr) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ::dup2(fds[1], STDERR_FILENO);
  std::string said_while_running;
  int taken = 0;
  {
    SignalShield shield("gpuwarm test", "finishing first");
    std::thread sender([] {
      block_all_signals_in_this_thread();
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ::kill(::getpid(), SIGINT);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      ::kill(::getpid(), SIGTERM);
    });
    std::thread reader([&] {
      block_all_signals_in_this_thread();
      std::this_thread::sleep_for(std::chrono::milliseconds(400));  // both signals sent, the program still runs
      char buf[512];
      ssize_t n = ::read(fds[0], buf, sizeof buf);
      if (n > 0) said_while_running.assign(buf, static_cast<std::size_t>(n));
    });
    auto r = run_child({"/usr/bin/sleep", "0.8"}, 20000);
    sender.join();
    reader.join();
    EXPECT_TRUE(r && r->exit_code == 0);
    taken = shield.take();
  }
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(said_while_running,
            "gpuwarm test: SIGINT received: finishing first\ngpuwarm test: SIGTERM received: finishing first\n");
  EXPECT_EQ(taken, SIGINT);
}

// Once the caller has taken the signals, the section is over for it: a signal after that is neither announced
// ("received" would promise it was held for the steps) nor swallowed, but reaches the caller's handler when the
// shield ends (review-s44 M1).
TEST(RunChild, a_signal_after_take_reaches_the_callers_handler_unannounced) {
  struct sigaction seen {};
  seen.sa_handler = [](int sig) { g_signal_seen = sig; };
  struct sigaction before {};
  ::sigaction(SIGINT, &seen, &before);
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC | O_NONBLOCK), 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ::dup2(fds[1], STDERR_FILENO);
  g_signal_seen = 0;
  int taken = -1;
  int seen_inside = -1;
  {
    SignalShield shield("gpuwarm test", "finishing first");
    taken = shield.take();
    ::kill(::getpid(), SIGINT);
    std::this_thread::sleep_for(std::chrono::milliseconds(150));  // an announcer still waiting would answer
    seen_inside = g_signal_seen.load();
  }
  const int seen_after = g_signal_seen.load();
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  char buf[256];
  const ssize_t said = ::read(fds[0], buf, sizeof buf);
  ::close(fds[0]);
  ::close(fds[1]);
  ::sigaction(SIGINT, &before, nullptr);
  EXPECT_EQ(taken, 0);
  EXPECT_EQ(seen_inside, 0) << "held while the shield lasts";
  EXPECT_EQ(seen_after, SIGINT) << "swallowed by the shield";
  EXPECT_EQ(said, -1) << "announced after take(): " << std::string(buf, static_cast<std::size_t>(std::max<ssize_t>(said, 0)));
}

// nohup's SIGHUP (ignored by the caller) is no request to stop: the program runs to its end.
TEST(RunChild, a_signal_the_caller_ignores_stops_nothing) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction before {};
  ::sigaction(SIGHUP, &ignore, &before);
  std::thread sender = signal_this_process_after(std::chrono::milliseconds(100), SIGHUP);
  auto r = run_child({"/usr/bin/sleep", "0.5"}, 20000);
  sender.join();
  ::sigaction(SIGHUP, &before, nullptr);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->exit_code, 0);
}

// A helper that shrugs off the stop signal is killed with the group once the program has ended (its zombie keeps
// the group's ID from being reused until then).
TEST(RunChild, after_a_stop_no_helper_of_the_program_is_left) {
  if (!has_program("/bin/sh") || !has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /bin/sh or sleep";
  HelperWatch watch;
  struct sigaction seen {};
  seen.sa_handler = [](int sig) { g_signal_seen = sig; };
  struct sigaction before {};
  ::sigaction(SIGTERM, &seen, &before);
  std::thread sender = signal_this_process_after(std::chrono::milliseconds(300));
  auto r = run_child({"/bin/sh", "-c", watch.script("(trap '' TERM; exec /usr/bin/sleep 30)")}, 20000);
  sender.join();
  ::sigaction(SIGTERM, &before, nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(watch.still_running(), "");
}

// With SIGCHLD ignored the kernel reaps the program itself: run_child says so at once, rather than waiting out
// its deadline and then signalling an ID that may be another process's. (main() puts SIGCHLD back to default.)
TEST(RunChild, a_program_reaped_by_the_kernel_is_not_a_timeout) {
  if (!has_program("/usr/bin/true")) GTEST_SKIP() << "no /usr/bin/true";
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  struct sigaction before {};
  ::sigaction(SIGCHLD, &ignore, &before);
  auto started = std::chrono::steady_clock::now();
  auto r = run_child({"/usr/bin/true"}, 10000);
  ::sigaction(SIGCHLD, &before, nullptr);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "/usr/bin/true ended, but its exit status could not be read (SIGCHLD is ignored)");
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(2));
}

// gpuwarm killed outright (`timeout -s KILL`, a scheduler's kill of an overdue prolog) gets no chance to end the
// program it runs, which is in a process group of its own; the kernel ends it (PR_SET_PDEATHSIG). A stand-in
// gpuwarm runs the program and is SIGKILLed; the test's subprocess is a sub-reaper, so the orphaned program
// comes to it and how it ended can be read. Exit 0: killed by SIGKILL; 2: still running 5 s later.
TEST(RunChild, the_program_dies_with_a_gpuwarm_killed_outright) {
  if (!has_program("/usr/bin/sleep")) GTEST_SKIP() << "no /usr/bin/sleep";
  const pid_t reaper = ::fork();
  ASSERT_GE(reaper, 0);
  if (reaper == 0) {
    ::prctl(PR_SET_CHILD_SUBREAPER, 1);
    int report[2];
    if (::pipe(report) != 0) ::_exit(3);
    const pid_t stand_in = ::fork();
    if (stand_in == 0) {
      // Tells the test the program's PID once it runs (its process group is its PID), then waits on it.
      std::thread([fd = report[1]] {
        for (int i = 0; i < 500; ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
          for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
            std::ifstream stat(entry.path() / "stat");
            std::string pid_text, comm, state;
            pid_t ppid = 0;
            if (stat >> pid_text >> comm >> state >> ppid && ppid == ::getpid() && comm == "(sleep)") {
              pid_t program = std::stoi(pid_text);
              [[maybe_unused]] ssize_t w = ::write(fd, &program, sizeof program);
              return;
            }
          }
        }
      }).detach();
      auto r = run_child({"/usr/bin/sleep", "30"}, 60000);
      ::_exit(r ? 4 : 5);
    }
    pid_t program = 0;
    if (::read(report[0], &program, sizeof program) != static_cast<ssize_t>(sizeof program)) ::_exit(6);
    ::kill(stand_in, SIGKILL);
    int status = 0;
    ::waitpid(stand_in, &status, 0);
    if (reap_within(program, status, 5000)) {
      ::_exit(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL ? 0 : 7);
    }
    ::kill(program, SIGKILL);
    reap_within(program, status, 5000);
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(reaper, &status, 0), reaper);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the program outlived the gpuwarm that ran it";
}

// A program that exists but cannot be executed is named with exec's reason, and no child is left unreaped.
TEST(RunChild, a_program_that_cannot_be_executed_is_named_with_the_reason) {
  HelperWatch scratch;
  const std::string not_executable = std::string(scratch.dir) + "/nvidia-smi";
  std::ofstream(not_executable) << "#!/bin/sh\n";
  ::chmod(not_executable.c_str(), 0644);  // no execute bit: EACCES, root included
  auto r = run_child({not_executable}, 5000);
  ::unlink(not_executable.c_str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "cannot run " + not_executable + ": Permission denied");
  int status = 0;
  EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1) << "a child was left unreaped";
}

// An execve that never answers (an executable on a hung network file system) is under the program's deadline, and a
// stop signal ends the wait too: in a forked test process, a seccomp filter hands every execve to a listener that
// never answers (SECCOMP_RET_USER_NOTIF), so the child waits in the kernel, killably, as in a hung read of the file.
TEST(RunChild, an_exec_that_never_answers_is_under_the_deadline_and_a_stop_signal) {
  if (!has_program("/usr/bin/true")) GTEST_SKIP() << "no /usr/bin/true";
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  const pid_t tester = ::fork();
  ASSERT_GE(tester, 0);
  if (tester == 0) {
    ::close(report[0]);
    auto say = [&](const std::string& text) {
      const std::string line = text + "\n";
      [[maybe_unused]] auto w = ::write(report[1], line.data(), line.size());
    };
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog program{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(3);
    // The listener stays open here and is never read: each execve waits until its process is killed.
    const long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &program);
    if (listener < 0) {
      say(std::string("seccomp user notification: ") + std::strerror(errno));
      ::_exit(3);
    }
    auto started = std::chrono::steady_clock::now();
    auto timed = run_child({"/usr/bin/true"}, 500);
    const auto timed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    say(timed ? "started" : timed.error().message);
    say(std::to_string(timed_ms.count()));
    int status = 0;
    say(::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD ? "reaped" : "a child was left unreaped");

    struct sigaction seen {};
    seen.sa_handler = [](int sig) { g_signal_seen = sig; };
    ::sigaction(SIGTERM, &seen, nullptr);
    started = std::chrono::steady_clock::now();
    std::thread sender = signal_this_process_after(std::chrono::milliseconds(200));
    auto stopped = run_child({"/usr/bin/true"}, 20000);
    sender.join();
    const auto stopped_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    say(stopped ? "started" : stopped.error().message);
    say(std::to_string(stopped_ms.count()));
    say(::waitpid(-1, &status, WNOHANG) == -1 && errno == ECHILD ? "reaped" : "a child was left unreaped");
    say(g_signal_seen.load() == SIGTERM ? "signal delivered" : "signal lost");
    ::_exit(0);
  }
  ::close(report[1]);
  std::string said;
  char buf[512];
  for (ssize_t got = 0; (got = ::read(report[0], buf, sizeof buf)) > 0;) said.append(buf, static_cast<std::size_t>(got));
  ::close(report[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(tester, &status, 0), tester);
  ASSERT_TRUE(WIFEXITED(status));
  if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "no seccomp user notification here: " << said;
  ASSERT_EQ(WEXITSTATUS(status), 0) << said;
  std::istringstream lines(said);
  std::string timed, timed_ms, timed_reaped, stopped, stopped_ms, stopped_reaped, delivered;
  std::getline(lines, timed);
  std::getline(lines, timed_ms);
  std::getline(lines, timed_reaped);
  std::getline(lines, stopped);
  std::getline(lines, stopped_ms);
  std::getline(lines, stopped_reaped);
  std::getline(lines, delivered);
  EXPECT_EQ(timed, "cannot run /usr/bin/true: starting it took over 500 ms (is its file system hung?)");
  EXPECT_GE(std::stoi(timed_ms), 500);
  EXPECT_LT(std::stoi(timed_ms), 5000);
  EXPECT_EQ(timed_reaped, "reaped");
  EXPECT_EQ(stopped, "cannot run /usr/bin/true: a stop signal came before it had started");
  EXPECT_LT(std::stoi(stopped_ms), 5000);
  EXPECT_EQ(stopped_reaped, "reaped");
  EXPECT_EQ(delivered, "signal delivered");
}

}  // namespace
// A child's answer is the last line that reads as one: what a library's destructor or a sanitizer prints after
// it, or the loader before it, is not the answer, and no answer is no answer.
TEST(ChildAnswer, TheLastLineThatReadsAsTheAnswer) {
  struct Case {
    const char* name;
    std::string output;
    std::optional<int> launches;  // nothing: no answer
  };
  const std::vector<Case> cases = {
      {"the answer alone", "{\"launches\":3}\n", 3},
      {"an event line before it", "{\"event\":\"running\"}\n{\"launches\":4}\n", 4},
      {"a destructor's line after it", "{\"launches\":5}\nshim: unloading\n", 5},
      {"loader text before, no new line at the end", "  1234: calling init\n{\"launches\":6}", 6},
      {"two answers: the last", "{\"launches\":1}\n{\"launches\":7}\n", 7},
      {"a line without the key is no answer", "{\"event\":\"running\"}\n", std::nullopt},
      {"half a line", "{\"launches\":", std::nullopt},
      {"nothing", "", std::nullopt},
  };
  for (const auto& c : cases) {
    auto j = child_answer(c.output, "launches");
    if (c.launches) {
      ASSERT_FALSE(j.is_discarded()) << c.name;
      EXPECT_EQ(j.at("launches").get<int>(), *c.launches) << c.name;
    } else {
      EXPECT_TRUE(j.is_discarded()) << c.name;
    }
  }
}

}  // namespace gpuwarm
