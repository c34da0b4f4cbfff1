#pragma once
// Every path gpuwarm reads on the host goes through Paths, so tests and
// `--root DIR` can point the whole tool at a recorded or synthetic tree.

#include <functional>
#include <string>
#include <string_view>

namespace gpuwarm {

class Paths {
 public:
  // root "" or "/" means the live system.
  explicit Paths(std::string root = "/");

  const std::string& root() const { return m_root; }
  bool is_live() const { return m_root.empty(); }

  // Maps an absolute host path ("/proc/modules") to where it lives under the root.
  std::string host(std::string_view absolute) const;

  std::string proc(std::string_view rel) const { return join("/proc", rel); }
  std::string sys(std::string_view rel) const { return join("/sys", rel); }
  std::string dev(std::string_view rel) const { return join("/dev", rel); }
  std::string run(std::string_view rel) const { return join("/run", rel); }

  // Where `absolute` really is: symbolic links followed *inside* the root (an
  // absolute link target such as NixOS's /nix/store/... is taken under the
  // root, never the caller's), returned with the root prefix. "" when a
  // component is missing or the links loop. `on_link` sees every link passed
  // through (its path and its folder's, with the root prefix), for a caller
  // that must trust each one.
  using LinkVisitor = std::function<void(const std::string& link, const std::string& folder)>;
  std::string resolve(std::string_view absolute, const LinkVisitor& on_link = {}) const;

  // Strips the root prefix again, for messages and evidence that name host paths.
  std::string display(std::string_view rooted) const;

 private:
  std::string join(std::string_view top, std::string_view rel) const;
  std::string m_root;  // without trailing slash; empty for "/"
};

}  // namespace gpuwarm
