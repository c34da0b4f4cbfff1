#include "lint/lint.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <unordered_map>

#include <fmt/format.h>

namespace gpuwarm::lint {

namespace {

constexpr const char* k_legacy = "LINT001";
constexpr const char* k_no_pm = "LINT002";
constexpr const char* k_stop_when_unneeded = "LINT010";
constexpr const char* k_no_restart = "LINT011";
constexpr const char* k_var_run_pidfile = "LINT012";
constexpr const char* k_type_simple = "LINT013";

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

struct Token {
  std::string text;  // quotes and trailing commas stripped
  unsigned line;
  unsigned column;
  bool breaks_before = false;  // a statement boundary precedes it
};

// The code part of a line: from a comment start (outside quotes) on, nothing.
std::string_view strip_comment(std::string_view line, FileKind kind) {
  if (kind == FileKind::text) {
    return line;
  }
  std::size_t first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  if (kind == FileKind::unit) {
    return line[first] == '#' || line[first] == ';' ? std::string_view{} : line;
  }
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
    } else if (c == '#' && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      return line.substr(0, i);
    }
  }
  return line;
}

// Calls fn(line_number, line) for each line (1-based; no trailing newline).
template <class Fn>
void for_each_line(std::string_view text, Fn&& fn) {
  unsigned line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) {
      end = text.size();
    }
    fn(++line_no, text.substr(pos, end - pos));
    if (end == text.size()) {
      break;
    }
    pos = end + 1;
  }
}

// Words of the code, with where each starts. Shell separators, YAML keys and
// ends of lines that do not continue become statement boundaries.
std::vector<Token> tokenize(std::string_view text, FileKind kind) {
  std::vector<Token> out;
  bool boundary = true;
  bool in_block_comment = false;
  bool continued = false;  // the previous line ended with a backslash
  for_each_line(text, [&](unsigned line_no, std::string_view raw) {
    std::string_view code = strip_comment(raw, kind);
    if (kind == FileKind::nix) {  // /* ... */ blocks, line by line
      if (in_block_comment) {
        auto close = code.find("*/");
        code = close == std::string_view::npos ? std::string_view{} : code.substr(close + 2);
        in_block_comment = close == std::string_view::npos;
      }
      if (auto open = code.find("/*"); open != std::string_view::npos) {
        in_block_comment = code.find("*/", open) == std::string_view::npos;
        code = code.substr(0, open);
      }
    }
    // YAML list items ("- nvidia-smi") continue an argv; anything else starts anew.
    std::string_view trimmed = code.substr(std::min(code.size(), code.find_first_not_of(" \t")));
    bool list_item = kind == FileKind::yaml && (trimmed.substr(0, 2) == "- " || trimmed == "-");
    // "- nvidia-smi" (one word) continues an argv list; "- nvidia-smi -pm 1"
    // (cloud-init runcmd, a list of command lines) is a command of its own.
    if (list_item && trimmed.size() > 2 &&
        trimmed.substr(2).find_first_of(" \t") < trimmed.substr(2).find_last_not_of(" \t")) {
      boundary = true;
    }
    if (!list_item && !continued) {
      boundary = true;
    }
    auto separator = [](char c) {
      return std::isspace(static_cast<unsigned char>(c)) != 0 || c == '[' || c == ']' || c == ',' || c == '(' ||
             c == ')' || c == '{' || c == '}' || c == '`';
    };
    std::size_t i = 0;
    while (i < code.size()) {
      char c = code[i];
      if (c == ';' || c == '|' || c == '&' || c == '(' || c == '`') {
        boundary = true;  // a new command starts: "a; b", "a && b", "$(b)"
        ++i;
        continue;
      }
      if (separator(c)) {
        ++i;
        continue;
      }
      while (i < code.size() && (code[i] == '"' || code[i] == '\'')) {
        ++i;  // a word's column is its first character, not its opening quote
      }
      std::size_t start = i;
      std::string word;
      while (i < code.size() && !separator(code[i]) && code[i] != ';' && code[i] != '|' && code[i] != '&') {
        if (code[i] != '"' && code[i] != '\'' ) {
          word += code[i];
        }
        ++i;
      }
      if (word.empty() || (word == "-" && list_item)) {
        continue;  // empty quotes, or the YAML list marker itself
      }
      // "Key=/usr/bin/nvidia-smi" (units, env files): the value starts a command.
      // "--persistence-mode=1" stays one word.
      if (auto eq = word.find('='); eq != std::string::npos && word[0] != '-') {
        out.push_back({word.substr(0, eq), line_no, static_cast<unsigned>(start + 1), boundary});
        word = word.substr(eq + 1);
        start += eq + 1;
        boundary = true;
        if (word.empty()) {
          continue;
        }
      }
      bool key = kind == FileKind::yaml && word.back() == ':';
      out.push_back({word, line_no, static_cast<unsigned>(start + 1), boundary || key});
      boundary = key;
    }
    continued = !code.empty() && code.back() == '\\';
    if (!continued && kind != FileKind::yaml) {
      boundary = true;  // YAML: decided by the next line (a list item continues an argv)
    }
  });
  return out;
}

bool is_command(std::string_view word, std::string_view name) {
  return word == name || ends_with(word, std::string("/") + std::string(name));
}

bool enables(std::string_view value) {
  std::string v = lower(value);
  return v == "1" || v == "enabled" || v == "enable" || v == "on";
}

// nvidia-smi ... -pm 1 / -pm=1 / --persistence-mode 1 / --persistence-mode=ENABLED, within one statement.
// nvidia-smi is run here, not merely mentioned ("echo 'nvidia-smi -pm 1'"):
// it starts its statement, or the statement starts with a command runner.
bool in_command_position(const std::vector<Token>& tokens, std::size_t i) {
  std::size_t start = i;
  while (start > 0 && !tokens[start].breaks_before) {
    --start;
  }
  if (start == i || tokens[i - 1].text == "-c") {
    return true;  // first in its statement, or the script of "sh -c" / "bash -c"
  }
  for (const char* runner : {"sudo", "doas", "env", "exec", "command", "nohup", "time", "timeout", "chroot",
                             "xargs", "ssh", "pdsh", "clush", "srun", "RUN", "ExecStart", "ExecStartPre",
                             "ExecStartPost"}) {
    if (is_command(tokens[start].text, runner)) {
      return true;
    }
  }
  return false;
}

void find_legacy_flag(const std::vector<Token>& tokens, std::vector<Finding>& out) {
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    if (!is_command(tokens[i].text, "nvidia-smi") || !in_command_position(tokens, i)) {
      continue;
    }
    for (std::size_t j = i + 1; j < tokens.size() && j < i + 12 && !tokens[j].breaks_before; ++j) {
      std::string t = tokens[j].text;
      std::optional<std::string> value;
      for (const char* flag : {"-pm", "--persistence-mode"}) {
        std::string f = flag;
        if (t == f && j + 1 < tokens.size() && !tokens[j + 1].breaks_before) {
          value = tokens[j + 1].text;
        } else if (t.rfind(f + "=", 0) == 0) {
          value = t.substr(f.size() + 1);
        }
      }
      if (value && enables(*value)) {
        out.push_back({k_legacy, tokens[i].line, tokens[i].column,
                       "`nvidia-smi -pm 1` sets the deprecated legacy persistence flag: it hides a daemon that "
                       "never got enabled and does nothing once the daemon runs",
                       "remove it and enable nvidia-persistenced through systemd (`gpuwarm fix`)"});
        break;
      }
    }
  }
}

void find_no_persistence_mode(const std::vector<Token>& tokens, std::vector<Finding>& out) {
  for (const auto& t : tokens) {
    if (t.text == "--no-persistence-mode") {
      out.push_back({k_no_pm, t.line, t.column,
                     "nvidia-persistenced --no-persistence-mode runs the daemon with persistence off: the service "
                     "is active but GPUs still de-initialize",
                     "drop --no-persistence-mode from ExecStart (a drop-in: `gpuwarm fix` writes one)"});
    }
  }
}

struct UnitLine {
  std::string section;
  std::string key;
  std::string value;
  unsigned line;
};

void find_unit_pitfalls(std::string_view text, std::vector<Finding>& out) {
  std::vector<UnitLine> lines;
  std::string section;
  unsigned service_line = 0;
  for_each_line(text, [&](unsigned n, std::string_view raw) {
    std::string_view l = strip_comment(raw, FileKind::unit);
    auto first = l.find_first_not_of(" \t");
    if (first != std::string_view::npos) {
      l = l.substr(first);
      if (l.front() == '[') {
        section = std::string(l.substr(1, l.find(']') - 1));
        if (section == "Service" && service_line == 0) {
          service_line = n;
        }
      } else if (auto eq = l.find('='); eq != std::string_view::npos) {
        std::string key(l.substr(0, eq));
        key.erase(key.find_last_not_of(" \t") + 1);
        std::string value(l.substr(eq + 1));
        value.erase(0, value.find_first_not_of(" \t"));
        value.erase(value.find_last_not_of(" \t\r") + 1);
        lines.push_back({section, key, value, n});
      }
    }
  });
  bool is_persistenced = std::any_of(lines.begin(), lines.end(), [](const UnitLine& u) {
    return u.key == "ExecStart" && u.value.find("nvidia-persistenced") != std::string::npos;
  });
  if (!is_persistenced) {
    return;
  }
  bool restart = false;
  bool type_seen = false;
  for (const auto& u : lines) {
    if (u.section == "Unit" && u.key == "StopWhenUnneeded" && enables(u.value == "true" || u.value == "yes" ? "1" : u.value)) {
      out.push_back({k_stop_when_unneeded, u.line, 1,
                     "StopWhenUnneeded=true lets systemd stop the daemon when nothing pulls it in, which turns "
                     "persistence off on every GPU it held",
                     "set StopWhenUnneeded=false in a drop-in"});
    }
    if (u.section == "Service" && u.key == "Restart") {
      restart = !u.value.empty() && u.value != "no";
    }
    if (u.section == "Service" && u.key == "PIDFile" && u.value.rfind("/var/run/", 0) == 0) {
      out.push_back({k_var_run_pidfile, u.line, 1,
                     "PIDFile under the legacy /var/run (systemd warns and rewrites it to /run)",
                     "use PIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid"});
    }
    if (u.section == "Service" && u.key == "Type") {
      type_seen = true;
      if (u.value == "simple" || u.value == "exec") {
        out.push_back({k_type_simple, u.line, 1,
                       fmt::format("Type={} for a daemon that forks: systemd takes the parent's exit for the end "
                                   "of the service and stops it",
                                   u.value),
                       "use Type=forking"});
      }
    }
  }
  if (!type_seen) {
    out.push_back({k_type_simple, service_line == 0 ? 1 : service_line, 1,
                   "no Type=: the default (simple) takes the forking daemon's parent exit for the end of the service",
                   "add Type=forking"});
  }
  if (!restart) {
    out.push_back({k_no_restart, service_line == 0 ? 1 : service_line, 1,
                   "no Restart=: a crashed daemon stays down and every GPU it held loses persistence",
                   "add Restart=on-failure in a drop-in"});
  }
}

// Lines carrying "gpuwarm: ignore RULE" opt that rule out. The lines that
// carry one are indexed once per file, so checking a finding is a lookup:
// linear in the file however many findings it has.
class OptOuts {
 public:
  explicit OptOuts(std::string_view text) {
    constexpr std::string_view marker = "gpuwarm: ignore ";
    if (text.find(marker) == std::string_view::npos) {
      return;  // the usual file: nothing to index
    }
    unsigned line = 1;
    std::size_t start = 0;
    while (start <= text.size()) {
      std::size_t end = text.find('\n', start);
      std::string_view body = text.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
      if (auto at = body.find(marker); at != std::string_view::npos) {
        m_lines.emplace(line, body.substr(at));
      }
      if (end == std::string_view::npos) {
        break;
      }
      start = end + 1;
      ++line;
    }
  }

  bool ignored(const Finding& f) const {
    auto it = m_lines.find(f.line);
    return it != m_lines.end() && it->second.find(f.rule) != std::string_view::npos;
  }

 private:
  std::unordered_map<unsigned, std::string_view> m_lines;  // line -> text from the marker on
};

}  // namespace

const char* kind_name(FileKind k) {
  switch (k) {
    case FileKind::shell: return "shell";
    case FileKind::yaml: return "yaml";
    case FileKind::unit: return "systemd-unit";
    case FileKind::nix: return "nix";
    case FileKind::dockerfile: return "dockerfile";
    case FileKind::text: return "text";
  }
  return "?";
}

FileKind kind_for(std::string_view path, std::string_view first_line) {
  std::string_view base = path.substr(path.find_last_of('/') == std::string_view::npos ? 0 : path.find_last_of('/') + 1);
  std::string name = lower(base);
  for (const char* ext : {".service", ".conf", ".socket", ".timer", ".target", ".mount"}) {
    if (ends_with(name, ext) && (std::string(ext) != ".conf" || path.find(".service.d/") != std::string_view::npos)) {
      return FileKind::unit;
    }
  }
  if (ends_with(name, ".yml") || ends_with(name, ".yaml")) {
    return FileKind::yaml;
  }
  if (ends_with(name, ".nix")) {
    return FileKind::nix;
  }
  if (name == "dockerfile" || ends_with(name, ".dockerfile") || name.rfind("dockerfile.", 0) == 0 ||
      name == "containerfile") {
    return FileKind::dockerfile;
  }
  if (ends_with(name, ".sh") || ends_with(name, ".bash") || name == "rc.local" || name == "crontab" ||
      path.find("/cron") != std::string_view::npos || ends_with(name, ".conf") || first_line.rfind("#!", 0) == 0) {
    return FileKind::shell;  // cron, NHC and most *.conf files use # comments too
  }
  return FileKind::text;
}

const std::vector<RuleInfo>& rules() {
  static const std::vector<RuleInfo> table = {
      {k_legacy, "legacy-pm-flag", "`nvidia-smi -pm 1` (any spelling): the deprecated legacy persistence flag"},
      {k_no_pm, "no-persistence-mode", "`nvidia-persistenced --no-persistence-mode`: daemon running, persistence off"},
      {k_stop_when_unneeded, "stop-when-unneeded", "nvidia-persistenced unit with StopWhenUnneeded=true"},
      {k_no_restart, "no-restart", "nvidia-persistenced unit without Restart="},
      {k_var_run_pidfile, "var-run-pidfile", "nvidia-persistenced unit with a PIDFile under /var/run"},
      {k_type_simple, "type-not-forking", "nvidia-persistenced unit with Type=simple (or no Type=) for a forking daemon"},
  };
  return table;
}

std::vector<Finding> lint_text(std::string_view text, FileKind kind) {
  std::vector<Finding> found;
  // Most files mention none of this: skip tokenizing them. Every rule needs
  // one of these substrings, so the shortcut changes no result.
  auto has = [&text](std::string_view needle) { return text.find(needle) != std::string_view::npos; };
  if (!has("nvidia-persistenced") && !has("--no-persistence-mode") &&
      !(has("nvidia-smi") && (has("-pm") || has("persistence-mode")))) {
    return found;
  }
  auto tokens = tokenize(text, kind);
  find_legacy_flag(tokens, found);
  find_no_persistence_mode(tokens, found);
  if (kind == FileKind::unit) {
    find_unit_pitfalls(text, found);
  }
  const OptOuts opt_outs(text);
  std::erase_if(found, [&](const Finding& f) { return opt_outs.ignored(f); });
  std::sort(found.begin(), found.end(), [](const Finding& a, const Finding& b) {
    return std::tie(a.line, a.column, a.rule) < std::tie(b.line, b.column, b.rule);
  });
  return found;
}

}  // namespace gpuwarm::lint
