#include "core/paths.h"

namespace gpuwarm {

Paths::Paths(std::string root) : m_root(std::move(root)) {
  while (!m_root.empty() && m_root.back() == '/') {
    m_root.pop_back();
  }
}

std::string Paths::host(std::string_view absolute) const {
  std::string out = m_root;
  if (absolute.empty() || absolute.front() != '/') {
    out += '/';
  }
  out += absolute;
  return out;
}

std::string Paths::join(std::string_view top, std::string_view rel) const {
  std::string abs(top);
  if (!rel.empty()) {
    if (rel.front() != '/') {
      abs += '/';
    }
    abs += rel;
  }
  return host(abs);
}

std::string Paths::display(std::string_view rooted) const {
  if (!m_root.empty() && rooted.substr(0, m_root.size()) == m_root) {
    return std::string(rooted.substr(m_root.size()));
  }
  return std::string(rooted);
}

}  // namespace gpuwarm
