#pragma once
// The folders an ELF executable asks the dynamic loader to search first (DT_RUNPATH, or DT_RPATH), read from
// its bytes: the guard must know every place nvidia-persistenced may load libnvidia-cfg from, and NixOS
// builds it with a RUNPATH. Pure; 64-bit little-endian ELF only (x86_64, aarch64), as NVIDIA ships.

#include <string>
#include <string_view>
#include <vector>

namespace gpuwarm {

struct ElfSearchPaths {
  bool elf = false;                  // the bytes are an ELF file (a script is not)
  std::vector<std::string> folders;  // in the loader's order, $ORIGIN expanded
  std::string unread;                // why some may be missing ("" = all read, or not an ELF file)
};

// `origin`: the folder the file is in, for $ORIGIN.
ElfSearchPaths elf_search_paths(std::string_view bytes, const std::string& origin);

}  // namespace gpuwarm
