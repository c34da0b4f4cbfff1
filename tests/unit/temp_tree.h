#pragma once
// A throwaway directory tree for tests that need real files (fake roots).

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace gpuwarm::test {

class TempTree {
 public:
  TempTree() {
    std::string templ = (std::filesystem::temp_directory_path() / "gpuwarm-test-XXXXXX").string();
    char* made = ::mkdtemp(templ.data());
    m_root = made != nullptr ? made : "";
  }
  ~TempTree() {
    std::error_code ec;
    std::filesystem::remove_all(m_root, ec);
  }
  TempTree(const TempTree&) = delete;
  TempTree& operator=(const TempTree&) = delete;

  const std::string& root() const { return m_root; }
  std::string path(const std::string& rel) const { return m_root + "/" + rel; }

  void write(const std::string& rel, const std::string& content) const {
    std::filesystem::create_directories(std::filesystem::path(path(rel)).parent_path());
    std::ofstream(path(rel), std::ios::binary) << content;
  }
  void mkdir(const std::string& rel) const { std::filesystem::create_directories(path(rel)); }
  void symlink(const std::string& target, const std::string& rel) const {
    std::filesystem::create_directories(std::filesystem::path(path(rel)).parent_path());
    std::filesystem::create_symlink(target, path(rel));
  }
  void chmod(const std::string& rel, std::filesystem::perms p) const { std::filesystem::permissions(path(rel), p); }

 private:
  std::string m_root;
};

}  // namespace gpuwarm::test
