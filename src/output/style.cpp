#include "output/style.h"

#include <unistd.h>

#include <cstdlib>

namespace gpuwarm {

Style Style::for_stdout(ColorMode mode) {
  if (mode == ColorMode::always) {
    return Style(true);
  }
  if (mode == ColorMode::never) {
    return Style(false);
  }
  // https://no-color.org: any non-empty NO_COLOR disables colour.
  const char* no_color = std::getenv("NO_COLOR");
  bool suppressed = no_color != nullptr && no_color[0] != '\0';
  return Style(!suppressed && ::isatty(STDOUT_FILENO) == 1);
}

std::string Style::wrap(const char* code, std::string_view s) const {
  if (!m_enabled) {
    return std::string(s);
  }
  return "\x1b[" + std::string(code) + "m" + std::string(s) + "\x1b[0m";
}

}  // namespace gpuwarm
