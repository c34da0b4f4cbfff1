#include "core/paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <vector>

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

namespace {

// Pushes the components of `path` so that the first is on top.
void push_components(std::vector<std::string>& stack, std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= path.size()) {
    auto slash = path.find('/', start);
    auto end = slash == std::string_view::npos ? path.size() : slash;
    if (end > start) {
      parts.emplace_back(path.substr(start, end - start));
    }
    start = end + 1;
  }
  stack.insert(stack.end(), parts.rbegin(), parts.rend());
}

}  // namespace

std::string Paths::resolve(std::string_view absolute, const LinkVisitor& on_link) const {
  // One walk for the live root too (as realpath would): a caller that checks every link passed through
  // needs to see each one.
  std::vector<std::string> todo;
  push_components(todo, absolute);
  std::string inside;  // the resolved path inside the root, "" = "/"
  int links = 0;
  while (!todo.empty()) {
    std::string part = std::move(todo.back());
    todo.pop_back();
    if (part == ".") {
      continue;
    }
    if (part == "..") {
      auto slash = inside.rfind('/');
      inside = slash == std::string::npos ? std::string{} : inside.substr(0, slash);
      continue;  // never above the root
    }
    std::string next = inside + "/" + part;
    struct stat st {};
    if (::lstat((m_root + next).c_str(), &st) != 0) {
      return {};
    }
    if (!S_ISLNK(st.st_mode)) {
      inside = std::move(next);
      continue;
    }
    if (++links > 40) {
      return {};  // ELOOP, as the kernel counts
    }
    if (on_link) {
      on_link(m_root + next, m_root + (inside.empty() ? "/" : inside));
    }
    char target[PATH_MAX];
    ssize_t n = ::readlink((m_root + next).c_str(), target, sizeof target - 1);
    if (n < 0) {
      return {};
    }
    std::string_view link(target, static_cast<std::size_t>(n));
    if (!link.empty() && link.front() == '/') {
      inside.clear();  // absolute: from the root's top, not the caller's
    }
    push_components(todo, link);
  }
  return m_root + (inside.empty() ? "/" : inside);
}

std::string Paths::display(std::string_view rooted) const {
  if (!m_root.empty() && rooted.substr(0, m_root.size()) == m_root) {
    return std::string(rooted.substr(m_root.size()));
  }
  return std::string(rooted);
}

}  // namespace gpuwarm
