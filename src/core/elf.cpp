#include "core/elf.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <optional>

namespace gpuwarm {

namespace {

template <class T>
std::optional<T> read_at(std::string_view bytes, std::uint64_t at) {
  if (at > bytes.size() || bytes.size() - at < sizeof(T)) {
    return std::nullopt;
  }
  T v{};
  std::memcpy(&v, bytes.data() + at, sizeof v);  // little-endian file on a little-endian host (checked below)
  return v;
}

constexpr std::uint32_t k_pt_load = 1;
constexpr std::uint32_t k_pt_dynamic = 2;
constexpr std::int64_t k_dt_null = 0;
constexpr std::int64_t k_dt_strtab = 5;
constexpr std::int64_t k_dt_rpath = 15;
constexpr std::int64_t k_dt_runpath = 29;

}  // namespace

ElfSearchPaths elf_search_paths(std::string_view bytes, const std::string& origin) {
  ElfSearchPaths out;
  if (!bytes.starts_with("\x7f" "ELF")) {
    return out;  // a script: the loader does not run it; what it runs is the caller's to find
  }
  out.elf = true;
  if (bytes.size() < 64 || bytes[4] != 2 || bytes[5] != 1 || std::endian::native != std::endian::little) {
    out.unread = "not a 64-bit little-endian ELF file";
    return out;
  }
  const auto phoff = read_at<std::uint64_t>(bytes, 32);
  const auto phentsize = read_at<std::uint16_t>(bytes, 54);
  const auto phnum = read_at<std::uint16_t>(bytes, 56);
  // Every offset is checked against the file's size before any sum: a crafted file must not wrap one.
  if (!phoff || !phentsize || !phnum || *phentsize < 56 || *phoff > bytes.size() ||
      std::uint64_t{*phnum} * *phentsize > bytes.size() - *phoff) {
    out.unread = "its program headers cannot be read";
    return out;
  }
  struct Segment {
    std::uint64_t offset, vaddr, filesz;
  };
  std::vector<Segment> loads;
  std::optional<Segment> dynamic;
  for (std::uint16_t i = 0; i < *phnum; ++i) {
    const std::uint64_t at = *phoff + std::uint64_t{i} * *phentsize;
    const auto type = read_at<std::uint32_t>(bytes, at);
    const auto offset = read_at<std::uint64_t>(bytes, at + 8);
    const auto vaddr = read_at<std::uint64_t>(bytes, at + 16);
    const auto filesz = read_at<std::uint64_t>(bytes, at + 32);
    if (!type || !offset || !vaddr || !filesz) {
      out.unread = "its program headers run past its end";
      return out;
    }
    if (*type == k_pt_load) {
      loads.push_back({*offset, *vaddr, *filesz});
    } else if (*type == k_pt_dynamic) {
      dynamic = Segment{*offset, *vaddr, *filesz};
    }
  }
  if (!dynamic) {
    return out;  // static: it loads libraries only through dlopen's defaults, which the caller looks at
  }
  if (dynamic->offset > bytes.size() || dynamic->filesz > bytes.size() - dynamic->offset) {
    out.unread = "its dynamic section runs past its end";
    return out;
  }
  std::optional<std::uint64_t> strtab;
  std::vector<std::uint64_t> path_strings;  // RUNPATH and RPATH offsets into the string table
  for (std::uint64_t at = dynamic->offset; at + 16 <= dynamic->offset + dynamic->filesz; at += 16) {
    const auto tag = read_at<std::int64_t>(bytes, at);
    const auto value = read_at<std::uint64_t>(bytes, at + 8);
    if (!tag || !value) {
      out.unread = "its dynamic section runs past its end";
      return out;
    }
    if (*tag == k_dt_null) {
      break;
    }
    if (*tag == k_dt_strtab) {
      strtab = *value;
    } else if (*tag == k_dt_runpath || *tag == k_dt_rpath) {
      // RUNPATH, where present, makes the loader ignore RPATH; both are listed anyway (more places, never fewer).
      path_strings.push_back(*value);
    }
  }
  if (path_strings.empty()) {
    return out;
  }
  // The string table is named by its address: the loaded segment holding it says where it is in the file.
  std::optional<std::uint64_t> strtab_offset;
  for (const auto& s : loads) {
    if (strtab && *strtab >= s.vaddr && *strtab - s.vaddr < s.filesz && s.offset <= bytes.size() &&
        *strtab - s.vaddr <= bytes.size() - s.offset) {
      strtab_offset = *strtab - s.vaddr + s.offset;
    }
  }
  if (!strtab_offset) {
    out.unread = "its string table is in no loaded segment";
    return out;
  }
  for (std::uint64_t off : path_strings) {
    const bool inside = *strtab_offset < bytes.size() && off < bytes.size() - *strtab_offset;
    const std::uint64_t at = inside ? *strtab_offset + off : bytes.size();
    const auto end = at < bytes.size() ? bytes.find('\0', at) : std::string_view::npos;
    if (end == std::string_view::npos) {
      out.unread = "its search path runs past its end";
      return out;
    }
    std::string_view list = bytes.substr(at, end - at);
    for (;;) {
      const auto colon = list.find(':');
      std::string folder(list.substr(0, colon));
      for (std::string_view token : {"${ORIGIN}", "$ORIGIN"}) {
        for (auto pos = folder.find(token); pos != std::string::npos; pos = folder.find(token, pos + origin.size())) {
          folder.replace(pos, token.size(), origin);
        }
      }
      if (folder.find('$') != std::string::npos) {
        // $LIB, $PLATFORM: where they lead depends on the loader's build and the CPU.
        out.unread = "its search path holds " + folder;
      } else if (folder.empty() || folder.front() != '/') {
        // Empty is the working directory to the loader.
        out.unread = "its search path holds \"" + folder + "\", relative to wherever it is started";
      } else {
        out.folders.push_back(std::move(folder));
      }
      if (colon == std::string_view::npos) {
        break;
      }
      list = list.substr(colon + 1);
    }
  }
  return out;
}

}  // namespace gpuwarm
