#pragma once
// Terminal styling: colour only when asked, or on a TTY without NO_COLOR.

#include <string>
#include <string_view>

namespace gpuwarm {

enum class ColorMode { automatic, always, never };

class Style {
 public:
  Style() = default;
  explicit Style(bool enabled) : m_enabled(enabled) {}
  // Decides for stdout: `always`, `never`, or a TTY with NO_COLOR unset.
  static Style for_stdout(ColorMode mode);

  std::string bold(std::string_view s) const { return wrap("1", s); }
  std::string dim(std::string_view s) const { return wrap("2", s); }
  std::string red(std::string_view s) const { return wrap("31", s); }
  std::string green(std::string_view s) const { return wrap("32", s); }
  std::string yellow(std::string_view s) const { return wrap("33", s); }
  std::string cyan(std::string_view s) const { return wrap("36", s); }
  bool enabled() const { return m_enabled; }

 private:
  std::string wrap(const char* code, std::string_view s) const;
  bool m_enabled = false;
};

}  // namespace gpuwarm
