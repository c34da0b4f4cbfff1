#include "systemd/unit_file.h"

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

std::string unit_value(const std::vector<UnitSetting>& settings, std::string_view section, std::string_view key) {
  std::string value;
  for (const auto& s : settings) {
    if (s.section == section && s.key == key) {
      value = s.value;
    }
  }
  return value;
}

std::vector<std::string> split_command_line(std::string_view line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (char c : line) {
    if (quote != 0) {
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
