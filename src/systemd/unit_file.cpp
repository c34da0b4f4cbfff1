#include "systemd/unit_file.h"

#include <cctype>
#include <cstdint>
#include <optional>

#include "core/strings.h"

namespace gpuwarm {

std::vector<UnitSetting> parse_unit_file(std::string_view text) {
  std::vector<UnitSetting> out;
  std::string section;
  auto lines = split_lines(text);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::string_view line = trim(lines[i]);
    if (line.empty() || line.front() == '#' || line.front() == ';') {
      continue;
    }
    if (line.front() == '[' && line.back() == ']') {
      section = std::string(line.substr(1, line.size() - 2));
      continue;
    }
    auto eq = line.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    UnitSetting s;
    s.section = section;
    s.key = std::string(trim(line.substr(0, eq)));
    s.line = static_cast<unsigned>(i + 1);
    std::string value(trim(line.substr(eq + 1)));
    while (!value.empty() && value.back() == '\\' && i + 1 < lines.size()) {
      value.pop_back();
      value += " ";
      value += trim(lines[++i]);
    }
    s.value = std::string(trim(value));
    out.push_back(std::move(s));
  }
  return out;
}

bool unit_boolean_true(std::string_view value) {
  std::string l(value);
  for (char& c : l) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return l == "1" || l == "yes" || l == "y" || l == "true" || l == "t" || l == "on";
}

std::string unit_value(const std::vector<UnitSetting>& settings, std::string_view section, std::string_view key) {
  std::string value;
  for (const auto& s : settings) {
    if (s.section == section && s.key == key) {
      value = s.value;
    }
  }
  return value;
}

namespace {

std::optional<std::uint32_t> digits(std::string_view s, std::size_t at, std::size_t count, unsigned base) {
  if (at + count > s.size()) {
    return std::nullopt;
  }
  std::uint32_t value = 0;
  for (std::size_t i = at; i < at + count; ++i) {
    char c = s[i];
    unsigned d = c >= '0' && c <= '9'   ? static_cast<unsigned>(c - '0')
                 : c >= 'a' && c <= 'f' ? static_cast<unsigned>(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? static_cast<unsigned>(c - 'A' + 10)
                                        : 99u;
    if (d >= base) {
      return std::nullopt;
    }
    value = value * base + d;
  }
  return value;
}

std::string utf8(std::uint32_t cp) {
  std::string out;
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return out;
}

}  // namespace

Unescaped unescape_at(std::string_view line, std::size_t at) {
  if (at + 1 >= line.size()) {
    return {1, "\\"};  // a trailing backslash: kept
  }
  const char c = line[at + 1];
  switch (c) {
    case 'a': return {2, "\a"};
    case 'b': return {2, "\b"};
    case 'f': return {2, "\f"};
    case 'n': return {2, "\n"};
    case 'r': return {2, "\r"};
    case 't': return {2, "\t"};
    case 'v': return {2, "\v"};
    case 's': return {2, " "};
    case '\\':
    case '"':
    case '\'':
    case ' ':
    case '\t': return {2, std::string(1, c)};
    case 'x':
      if (auto v = digits(line, at + 2, 2, 16); v && *v != 0) {
        return {4, std::string(1, static_cast<char>(*v))};
      }
      break;
    case 'u':
    case 'U': {
      std::size_t n = c == 'u' ? 4 : 8;
      if (auto v = digits(line, at + 2, n, 16); v && *v != 0 && *v <= 0x10FFFF && (*v < 0xD800 || *v > 0xDFFF)) {
        return {2 + n, utf8(*v)};
      }
      break;
    }
    default:
      if (auto v = digits(line, at + 1, 3, 8); v && *v != 0 && *v < 256) {
        return {4, std::string(1, static_cast<char>(*v))};
      }
  }
  return {2, std::string(line.substr(at, 2))};  // unknown: kept as written
}

std::vector<std::string> split_command_line(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '\\') {
      Unescaped e = unescape_at(line, i);
      cur += e.text;
      in_word = true;
      i += e.length - 1;
    } else if (quote != 0) {
      if (c == quote) {
        quote = 0;
      } else {
        cur += c;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word) {
        words.push_back(cur);
        cur.clear();
        in_word = false;
      }
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word) {
    words.push_back(cur);
  }
  return words;
}

std::string unit_exec_start_text(const std::vector<UnitSetting>& settings) {
  std::string current;
  for (const auto& s : settings) {
    if (s.section != "Service" || s.key != "ExecStart") {
      continue;
    }
    if (s.value.empty()) {
      current.clear();  // "ExecStart=" resets the list
    } else if (current.empty()) {
      current = s.value;  // later commands of the list are not the daemon
    }
  }
  return current;
}

std::vector<std::string> unit_exec_start(const std::vector<UnitSetting>& settings) {
  std::vector<std::string> current;
  if (std::string text = unit_exec_start_text(settings); !text.empty()) {
    std::string_view v = text;
    while (!v.empty() && (v.front() == '-' || v.front() == '@' || v.front() == '+' || v.front() == '!' ||
                          v.front() == ':')) {
      v.remove_prefix(1);
    }
    current = split_command_line(v);
  }
  return current;
}

}  // namespace gpuwarm
