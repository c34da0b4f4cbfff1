// elf_search_paths: the RUNPATH (or RPATH) an executable gives the loader, read from its bytes.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "core/elf.h"

namespace gpuwarm {
namespace {

template <class T>
void put(std::string& bytes, std::size_t at, T value) {
  if (bytes.size() < at + sizeof value) {
    bytes.resize(at + sizeof value, '\0');
  }
  std::memcpy(bytes.data() + at, &value, sizeof value);
}

// A 64-bit little-endian executable: one loaded segment (the whole file at 0x400000), a dynamic section
// naming the string table and `tag` (29 RUNPATH, 15 RPATH) with `search`, and the string table.
std::string executable(const std::string& search, std::int64_t tag = 29) {
  constexpr std::uint64_t k_base = 0x400000;
  std::string b = "\x7f" "ELF";
  b.resize(64, '\0');
  b[4] = 2;  // 64-bit
  b[5] = 1;  // little-endian
  put<std::uint64_t>(b, 32, 64);  // program headers right after the header
  put<std::uint16_t>(b, 54, 56);
  put<std::uint16_t>(b, 56, 2);
  const std::size_t dynamic = 64 + 2 * 56;
  const std::size_t strtab = dynamic + 3 * 16;
  const std::string strings = std::string(1, '\0') + search + '\0';
  const std::size_t size = strtab + strings.size();
  // PT_LOAD
  put<std::uint32_t>(b, 64, 1);
  put<std::uint64_t>(b, 64 + 8, 0);
  put<std::uint64_t>(b, 64 + 16, k_base);
  put<std::uint64_t>(b, 64 + 32, size);
  // PT_DYNAMIC
  put<std::uint32_t>(b, 120, 2);
  put<std::uint64_t>(b, 120 + 8, dynamic);
  put<std::uint64_t>(b, 120 + 16, k_base + dynamic);
  put<std::uint64_t>(b, 120 + 32, 3 * 16);
  put<std::int64_t>(b, dynamic, 5);  // DT_STRTAB
  put<std::uint64_t>(b, dynamic + 8, k_base + strtab);
  put<std::int64_t>(b, dynamic + 16, tag);
  put<std::uint64_t>(b, dynamic + 24, 1);
  put<std::int64_t>(b, dynamic + 32, 0);  // DT_NULL
  b.resize(strtab);
  return b + strings;
}

TEST(Elf, SearchPathsAreReadWithOriginExpanded) {
  auto asked = elf_search_paths(executable("$ORIGIN/../lib:/nix/store/x-nvidia/lib:${ORIGIN}"), "/usr/bin");
  EXPECT_EQ(asked.unread, "");
  EXPECT_EQ(asked.folders, (std::vector<std::string>{"/usr/bin/../lib", "/nix/store/x-nvidia/lib", "/usr/bin"}));
  EXPECT_EQ(elf_search_paths(executable("/opt/nv/lib", 15), "/usr/bin").folders,
            (std::vector<std::string>{"/opt/nv/lib"}));
}

TEST(Elf, WhatCannotBeFollowedIsAGapNotAnAbsence) {
  EXPECT_NE(elf_search_paths(executable("/opt/$LIB"), "/usr/bin").unread.find("$LIB"), std::string::npos);
  EXPECT_NE(elf_search_paths(executable("lib"), "/usr/bin").unread.find("relative"), std::string::npos);
  EXPECT_NE(elf_search_paths(executable("/opt/nv/lib::/x"), "/usr/bin").unread.find("relative"), std::string::npos);
  // Offsets near 2^64 are refused, not wrapped into the file.
  std::string wrapped = executable("/opt/nv/lib");
  put<std::uint64_t>(wrapped, 32, ~std::uint64_t{0} - 40);
  EXPECT_NE(elf_search_paths(wrapped, "/usr/bin").unread, "");
  wrapped = executable("/opt/nv/lib");
  put<std::uint64_t>(wrapped, 120 + 8, ~std::uint64_t{0} - 8);  // the dynamic section's offset
  EXPECT_NE(elf_search_paths(wrapped, "/usr/bin").unread, "");
  EXPECT_TRUE(elf_search_paths(executable("/opt/nv/lib"), "/usr/bin").elf);
  // A script asks the loader for nothing: no folders, and nothing missing; it is said not to be ELF.
  auto script = elf_search_paths("#!/bin/sh\necho 'nvidia-persistenced:  version 580.159.04'\n", "/usr/bin");
  EXPECT_TRUE(script.folders.empty());
  EXPECT_EQ(script.unread, "");
  EXPECT_FALSE(script.elf);
  // Cut anywhere past the magic, it is a gap: never a clean "no search path", never read past its end.
  const std::string whole = executable("/opt/nv/lib");
  for (std::size_t cut = 4; cut < whole.size(); ++cut) {
    EXPECT_NE(elf_search_paths(whole.substr(0, cut), "/usr/bin").unread, "") << cut;
  }
}

}  // namespace
}  // namespace gpuwarm
