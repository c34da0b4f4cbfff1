// The one writer for everything gpuwarm writes as root: explicit modes under
// any umask, no symlink followed, atomic, nothing left behind on failure.

#include <fcntl.h>
#include <grp.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "core/safe_write.h"
#include "temp_tree.h"

namespace gpuwarm {
namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

mode_t mode_of(const std::string& path) {
  struct stat st {};
  ::lstat(path.c_str(), &st);
  return st.st_mode & 07777;
}

std::size_t entries(const std::string& dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) {
    ++n;
  }
  return n;
}

TEST(SafeWrite, ExplicitModesWhateverTheUmask) {
  test::TempTree t;
  mode_t old = ::umask(0);
  auto r = write_file_atomically(t.path("etc/systemd/system/x.service.d/50-gpuwarm.conf"), "[Service]\n");
  ::umask(old);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(mode_of(t.path("etc/systemd/system/x.service.d/50-gpuwarm.conf")), 0644u);
  EXPECT_EQ(mode_of(t.path("etc/systemd/system/x.service.d")), 0755u);
  EXPECT_EQ(mode_of(t.path("etc")), 0755u);
  EXPECT_EQ(slurp(t.path("etc/systemd/system/x.service.d/50-gpuwarm.conf")), "[Service]\n");
}

TEST(SafeWrite, ReplacesAtomicallyAndLeavesNoTemporary) {
  test::TempTree t;
  t.write("d/f.conf", "old\n");
  ASSERT_TRUE(write_file_atomically(t.path("d/f.conf"), "new\n"));
  EXPECT_EQ(slurp(t.path("d/f.conf")), "new\n");
  EXPECT_EQ(entries(t.path("d")), 1u);
}

// A write killed outright leaves its temporary file; the next write of that target removes it once it is
// stale, and nothing else: a fresh one (a write in progress), another target's, a link, or a name that only
// looks alike.
TEST(SafeWrite, TheNextWriteRemovesATemporaryAKilledWriteLeft) {
  test::TempTree t;
  const std::string stale = "d/.f.conf.gpuwarm-0123456789abcdef";
  const std::string fresh = "d/.f.conf.gpuwarm-fedcba9876543210";
  const std::string other_target = "d/.g.conf.gpuwarm-0123456789abcdef";
  const std::string look_alike = "d/.f.conf.gpuwarm-0123456789abcdeX";
  const std::string link = "d/.f.conf.gpuwarm-00000000000000ff";
  for (const auto& p : {stale, fresh, other_target, look_alike}) {
    t.write(p, "half\n");
  }
  t.symlink("/etc/hostname", link);
  const timespec long_ago[2] = {{::time(nullptr) - 3600, 0}, {::time(nullptr) - 3600, 0}};
  for (const auto& p : {stale, other_target, look_alike, link}) {
    ASSERT_EQ(::utimensat(AT_FDCWD, t.path(p).c_str(), long_ago, AT_SYMLINK_NOFOLLOW), 0) << p;
  }
  ASSERT_TRUE(write_file_atomically(t.path("d/f.conf"), "new\n"));
  EXPECT_FALSE(std::filesystem::exists(t.path(stale)));
  for (const auto& p : {fresh, other_target, look_alike}) {
    EXPECT_EQ(slurp(t.path(p)), "half\n") << p;
  }
  EXPECT_TRUE(std::filesystem::is_symlink(t.path(link)));
  EXPECT_EQ(slurp(t.path("d/f.conf")), "new\n");
}

// Only a regular file is replaced: a link (a masked unit is one to /dev/null), a device node or a FIFO stays
// as it is, the link's target untouched, and the error names what is there.
TEST(SafeWrite, OnlyARegularFileIsReplaced) {
  test::TempTree t;
  t.write("victim", "precious\n");
  t.symlink(t.path("victim"), "d/link.conf");
  t.mkdir("d/dir.conf");
  ASSERT_EQ(::mkfifo(t.path("d/fifo.conf").c_str(), 0600), 0);
  struct Case {
    const char* name;
    const char* says;
  };
  for (const Case& c : {Case{"d/link.conf", "is a symbolic link"}, Case{"d/dir.conf", "is a directory"},
                        Case{"d/fifo.conf", "is not a regular file"}}) {
    auto r = write_file_atomically(t.path(c.name), "new\n");
    ASSERT_FALSE(r) << c.name;
    EXPECT_NE(r.error().message.find(c.says), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("replaces only regular files"), std::string::npos) << r.error().message;
  }
  EXPECT_EQ(slurp(t.path("victim")), "precious\n");
  EXPECT_TRUE(std::filesystem::is_symlink(t.path("d/link.conf")));
  EXPECT_TRUE(std::filesystem::is_fifo(t.path("d/fifo.conf")));
  EXPECT_EQ(entries(t.path("d")), 3u);  // no temporary left
}

// The check made before a long run (probe --save): what the write would refuse, it refuses, naming the same
// reason; what the write would create, it leaves to the write; it changes nothing either way.
TEST(SafeWrite, TheCheckBeforehandRefusesWhatTheWriteWouldAndCreatesNothing) {
  test::TempTree t;
  t.write("victim", "precious\n");
  t.symlink(t.path("victim"), "d/link.json");
  t.mkdir("d/dir.json");
  t.mkdir("open");
  ::chmod(t.path("open").c_str(), 0777);
  t.mkdir("elsewhere");
  t.symlink(t.path("elsewhere"), "via");
  struct Case {
    const char* name;
    const char* says;  // "" = accepted
  };
  for (const Case& c : {Case{"d/link.json", "is a symbolic link"}, Case{"d/dir.json", "is a directory"},
                        Case{"open/f.json", "writable by group or others"},
                        Case{"via/f.json", "is a symbolic link or not a directory"}, Case{"d/new.json", ""},
                        Case{"victim", ""}, Case{"new/deeper/f.json", ""}}) {
    SCOPED_TRACE(c.name);
    auto checked = check_write_target(t.path(c.name));
    auto written = write_file_atomically(t.path(c.name), "x\n");
    if (*c.says == '\0') {
      EXPECT_TRUE(checked) << checked.error().message;
      EXPECT_TRUE(written) << written.error().message;
    } else {
      ASSERT_FALSE(checked);
      ASSERT_FALSE(written);
      EXPECT_NE(checked.error().message.find(c.says), std::string::npos) << checked.error().message;
      EXPECT_EQ(checked.error().message, written.error().message);
    }
  }
  // Checked alone, nothing appears: a folder to be made is not made.
  EXPECT_TRUE(check_write_target(t.path("later/f.json")));
  EXPECT_FALSE(std::filesystem::exists(t.path("later")));
  WriteOptions no_folders;
  no_folders.create_dirs = false;
  EXPECT_FALSE(check_write_target(t.path("later/f.json"), no_folders));
}

// A folder the caller cannot write into (not root; a read-only /var) is said by the check too, not only after
// a probe's minutes. Run as nobody in a child process: root may write anywhere.
TEST(SafeWrite, TheCheckBeforehandSaysWhenTheFolderIsNotTheCallersToWrite) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root, to become another user";
  }
  test::TempTree t;
  t.mkdir("roots");
  ::chmod(t.root().c_str(), 0755);
  ::chmod(t.path("roots").c_str(), 0755);
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(3);
    }
    auto r = check_write_target(t.path("roots/baseline.json"));
    // A folder the write would create, under one the caller cannot write into, fails the check too.
    auto deeper = check_write_target(t.path("roots/new/baseline.json"));
    ::_exit(!r && r.error().message == "cannot write " + t.path("roots/baseline.json") + ": cannot create a file in " +
                                          t.path("roots") + ": Permission denied" &&
                    !deeper && deeper.error().message.find(": cannot create ") != std::string::npos &&
                    deeper.error().message.find("Permission denied") != std::string::npos
                ? 0
                : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: the check let a folder nobody cannot write into pass";
  EXPECT_TRUE(check_write_target(t.path("roots/baseline.json")));  // root may
}

TEST(SafeWrite, ASymlinkedDirectoryIsRefused) {
  test::TempTree t;
  t.mkdir("elsewhere");
  t.symlink(t.path("elsewhere"), "etc/systemd");
  auto r = write_file_atomically(t.path("etc/systemd/system/f.conf"), "x\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("symbolic link"), std::string::npos) << r.error().message;
  EXPECT_EQ(entries(t.path("elsewhere")), 0u);
}

TEST(SafeWrite, ADirectoryOthersCanWriteIsRefused) {
  test::TempTree t;
  t.mkdir("open");
  ::chmod(t.path("open").c_str(), 0777);
  auto r = write_file_atomically(t.path("open/f.conf"), "x\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos) << r.error().message;
  EXPECT_EQ(entries(t.path("open")), 0u);
}

// review-s53-root L10: a write that fails leaves none of the folders it made (newest first, only while empty), and
// every folder that was there before.
TEST(SafeWrite, AFailedWriteRemovesTheFoldersItMadeAndKeepsTheOthers) {
  test::TempTree t;
  t.mkdir("etc");
  WriteOptions open_folders;
  open_folders.dir_mode = 0777;  // the folder written into then fails the check, after the walk made it
  auto r = write_file_atomically(t.path("etc/made/deeper/f.conf"), "x\n", open_folders);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos) << r.error().message;
  EXPECT_FALSE(std::filesystem::exists(t.path("etc/made")));
  EXPECT_TRUE(std::filesystem::is_directory(t.path("etc")));
  // A folder that was there before stays, with what it holds, when the write into it fails.
  t.mkdir("etc/kept");
  t.write("etc/kept/other.conf", "y\n");
  ::chmod(t.path("etc/kept").c_str(), 0777);
  ASSERT_FALSE(write_file_atomically(t.path("etc/kept/f.conf"), "x\n"));
  EXPECT_TRUE(std::filesystem::exists(t.path("etc/kept/other.conf")));
  // And a write that succeeds keeps what it made.
  ASSERT_TRUE(write_file_atomically(t.path("etc/new/f.conf"), "x\n"));
  EXPECT_TRUE(std::filesystem::exists(t.path("etc/new/f.conf")));
}

// The folder written into is what must be closed to others; one above it may be open (Debian's
// /var/lib/prometheus is prometheus's): the walk holds each folder it opened and follows no link.
TEST(SafeWrite, TheFolderWrittenIntoIsTheOneThatMustBeClosed) {
  test::TempTree t;
  t.mkdir("open/sub");
  ::chmod(t.path("open").c_str(), 0777);
  EXPECT_TRUE(write_file_atomically(t.path("open/sub/f.conf"), "x\n"));
  ::chmod(t.path("open/sub").c_str(), 0777);
  EXPECT_FALSE(write_file_atomically(t.path("open/sub/g.conf"), "x\n"));
}

TEST(SafeWrite, AForeignOwnedDirectoryIsRefused) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give a directory to another user";
  }
  test::TempTree t;
  t.mkdir("theirs");
  ASSERT_EQ(::chown(t.path("theirs").c_str(), 65534, 65534), 0);
  auto r = write_file_atomically(t.path("theirs/f.conf"), "x\n");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("owned by uid 65534"), std::string::npos) << r.error().message;
}

// node_exporter's textfile folder chown'd to prometheus: written where the caller allows another owner, the file
// root's; a link its owner put in the target's place is refused, not followed; never a folder group or others
// can write.
TEST(SafeWrite, AnotherUsersFolderWhereAllowed) {
  if (::geteuid() != 0) {
    GTEST_SKIP() << "needs root to give a directory to another user";
  }
  test::TempTree t;
  t.mkdir("theirs");
  t.write("secret", "keep\n");
  ASSERT_EQ(::chown(t.path("theirs").c_str(), 65534, 65534), 0);
  ASSERT_EQ(::symlink(t.path("secret").c_str(), t.path("theirs/gpuwarm.prom").c_str()), 0);
  WriteOptions allow;
  allow.any_folder_owner = true;
  auto linked = write_file_atomically(t.path("theirs/gpuwarm.prom"), "x 0\n", allow);
  ASSERT_FALSE(linked);
  EXPECT_EQ(slurp(t.path("secret")), "keep\n");
  ASSERT_EQ(::unlink(t.path("theirs/gpuwarm.prom").c_str()), 0);
  ASSERT_TRUE(write_file_atomically(t.path("theirs/gpuwarm.prom"), "x 1\n", allow));
  struct stat st {};
  ASSERT_EQ(::lstat(t.path("theirs/gpuwarm.prom").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(slurp(t.path("secret")), "keep\n");
  EXPECT_EQ(slurp(t.path("theirs/gpuwarm.prom")), "x 1\n");
  ::chmod(t.path("theirs").c_str(), 0775);
  auto r = write_file_atomically(t.path("theirs/gpuwarm.prom"), "x 2\n", allow);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("writable by group or others"), std::string::npos) << r.error().message;
}

TEST(SafeWrite, FailuresLeaveTheOldFileAndNothingElse) {
  test::TempTree t;
  t.mkdir("d/f.conf");  // a directory where the file should go
  EXPECT_FALSE(write_file_atomically(t.path("d/f.conf"), "x\n"));
  EXPECT_EQ(entries(t.path("d")), 1u);
  EXPECT_FALSE(write_file_atomically("relative/path", "x"));
  EXPECT_FALSE(write_file_atomically(t.path("d/../escape"), "x"));
}

TEST(SafeWrite, AFullDiskIsAnError) {
  int fd = ::open("/dev/full", O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    GTEST_SKIP() << "no /dev/full here";
  }
  EXPECT_FALSE(write_all(fd, std::string(1 << 16, 'x')));
  ::close(fd);
}

}  // namespace
}  // namespace gpuwarm
