#include "lint/units.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <set>
#include <tuple>

#include <fmt/format.h>

#include "lint/words.h"
#include "systemd/unit_file.h"

namespace gpuwarm::lint {

namespace {

constexpr std::string_view k_daemon = "nvidia-persistenced";


// An Exec*= line that names the daemon anywhere (a program given by a template is judged by it).
bool mentions_daemon(std::string_view exec_value) { return exec_value.find(k_daemon) != std::string_view::npos; }

std::string_view base_name(std::string_view path) { return path.substr(path.rfind('/') + 1); }  // npos + 1 == 0

// The program an Exec*= line runs in the end: past systemd's prefixes (-@:+!), launchers that run the command
// after their options (env, numactl, taskset, nice, timeout, sudo, ...) and `sh -c`'s script.
std::string final_program(std::string_view exec_value, int depth = 0);

// The commands of a shell script, split at ; && || | and newlines (quotes are not looked into: a script given
// to sh -c is one word already).
std::vector<std::string_view> script_commands(std::string_view script) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= script.size(); ++i) {
    if (i == script.size() || script[i] == ';' || script[i] == '|' || script[i] == '&' || script[i] == '\n') {
      if (i > start) {
        out.push_back(script.substr(start, i - start));
      }
      start = i + 1;
    }
  }
  return out;
}

std::string final_program(std::string_view exec_value, int depth) {
  std::vector<std::string> words = split_command_line(exec_value);  // as systemd splits it
  std::size_t i = 0;
  if (i < words.size()) {
    words[0].erase(0, std::min(words[0].size(), words[0].find_first_not_of("-@:+!")));
  }
  // NAME=value before a command (in a script): settings, not the program.
  auto assignment = [](const std::string& w) {
    auto eq = w.find('=');
    return eq != std::string::npos && eq > 0 &&
           (std::isalpha(static_cast<unsigned char>(w[0])) != 0 || w[0] == '_') &&
           std::all_of(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(eq),
                       [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; });
  };
  while (i < words.size() && assignment(words[i])) {
    ++i;
  }
  static constexpr std::string_view k_launchers[] = {"env",     "numactl", "taskset",  "nice",       "ionice",
                                                     "chrt",    "stdbuf",  "timeout",  "systemd-cat", "sudo",
                                                     "runuser", "setpriv", "chroot",   "exec",       "prlimit",
                                                     "cgexec",  "nohup",   "unbuffer", "flock"};
  static constexpr std::string_view k_valued[] = {"-u", "-g", "--user", "--group", "-c", "-n", "-p", "-t", "-s",
                                                  "-k", "--signal", "--kill-after", "--identifier", "--priority"};
  for (int hop = 0; hop < 4 && i < words.size(); ++hop) {
    std::string_view base = base_name(words[i]);
    if (base == "sh" || base == "bash" || base == "dash" || base == "zsh") {
      // sh -c SCRIPT, also -lc, -ec: the daemon when any command of the script runs it, else the first one's.
      for (std::size_t j = i + 1; j + 1 < words.size() && words[j].size() > 1 && words[j][0] == '-'; ++j) {
        if (words[j][1] != '-' && words[j].find('c') != std::string::npos) {
          std::string first;
          for (std::string_view command : script_commands(words[j + 1])) {
            std::string program = depth < 4 ? final_program(command, depth + 1) : std::string{};
            if (base_name(program) == k_daemon) {
              return program;
            }
            if (first.empty()) {
              first = program;
            }
          }
          return first;
        }
      }
      break;
    }
    if (std::find(std::begin(k_launchers), std::end(k_launchers), base) == std::end(k_launchers)) {
      break;
    }
    const bool takes_a_root = base == "chroot" || base == "flock";  // chroot NEWROOT cmd; flock FILE cmd
    bool skipped_operand = false;
    for (++i; i < words.size(); ++i) {
      const std::string& w = words[i];
      if (std::find(std::begin(k_valued), std::end(k_valued), w) != std::end(k_valued)) {
        ++i;  // an option's value: a user, a CPU list, a niceness, a signal, a syslog identifier
        continue;
      }
      if (w.empty() || w[0] == '-' || std::isdigit(static_cast<unsigned char>(w[0])) != 0 ||
          w.find('=') != std::string::npos) {
        continue;  // options, numbers and durations, NAME=value
      }
      if (takes_a_root && !skipped_operand) {
        skipped_operand = true;
        continue;
      }
      break;
    }
  }
  return i < words.size() ? words[i] : std::string{};
}

// Whether the program an Exec*= line runs in the end is the daemon. One named by a template or variable
// ("<%= @bin %>/nvidia-persistenced") is judged by the name in it.
bool runs_daemon(std::string_view exec_value) {
  const std::string program = final_program(exec_value);
  if (program.find_first_of("<{$") != std::string::npos) {
    return mentions_daemon(exec_value);
  }
  return base_name(program) == k_daemon;
}

}  // namespace

UnitName unit_name(std::string_view path) {
  UnitName n;
  std::string name = lower(strip_template_suffix(path));
  if (auto d = name.rfind(".service.d/"); d != std::string::npos && ends_with(name, ".conf")) {
    n.is_unit = n.dropin = true;
    std::size_t start = name.find_last_of('/', d);
    n.persistenced = name.substr(start == std::string::npos ? 0 : start + 1, d - (start == std::string::npos ? 0 : start + 1)) ==
                     k_daemon;
    return n;
  }
  if (ends_with(name, ".service")) {
    n.is_unit = true;
    std::size_t slash = name.find_last_of('/');
    n.persistenced = name.substr(slash == std::string::npos ? 0 : slash + 1) == "nvidia-persistenced.service";
  }
  return n;
}

namespace {

// A value goes on over the next line where it ends in an odd number of backslashes (two are an escaped one).
bool continues(std::string_view value) {
  std::size_t n = 0;
  while (n < value.size() && value[value.size() - 1 - n] == '\\') {
    ++n;
  }
  return n % 2 == 1;
}

}  // namespace

namespace {

// A template's control tags: ERB <% if/unless/case %>, <% elsif/else/when %>, <% end %> (which also closes a
// `... do` block), Jinja {% if %}, {% elif/else %}, {% endif %}, Go {{ if }}, {{ else }}, {{ end }} (which also
// closes range and with); trim markers (<%-, -%>, {%-, {{-) allowed.
enum class Control { open_branch, open_block, next_branch, close };

// A line's control tags in order, and the line without them (output tags such as <%= x %> stay: they are values).
struct TemplateLine {
  std::vector<Control> controls;
  std::string rest;
};

std::optional<Control> classify_tag(std::string_view body, char opener) {
  body = body.substr(std::min(body.size(), body.find_first_not_of("- \t")));
  const std::string_view word = body.substr(0, body.find_first_of(" \t-%}"));
  if (word == "if" || (opener != '{' && (word == "unless" || word == "case"))) {
    return Control::open_branch;
  }
  if (word == "else" || (opener == '<' && (word == "elsif" || word == "when")) || (opener == '%' && word == "elif")) {
    return Control::next_branch;
  }
  if (word == "end" || (opener == '%' && (word == "endif" || word == "endunless"))) {
    return Control::close;
  }
  if (opener == '{' && (word == "range" || word == "with" || word == "block" || word == "define")) {
    return Control::open_block;
  }
  const std::size_t end = body.find_last_not_of("- \t");
  const std::string_view head = body.substr(0, end == std::string_view::npos ? 0 : end + 1);
  if (opener == '<' && (head.ends_with(" do") || head.find(" do |") != std::string_view::npos ||
                        head.find(" do|") != std::string_view::npos)) {
    return Control::open_block;  // its `end` closes a loop, not a branch
  }
  return std::nullopt;
}

TemplateLine template_line(std::string_view line) {
  TemplateLine out;
  std::size_t i = 0;
  while (i < line.size()) {
    std::size_t at = std::string_view::npos;
    char opener = 0;  // '<' ERB, '%' Jinja, '{' Go
    for (auto [open, kind] : {std::pair{std::string_view("<%"), '<'}, std::pair{std::string_view("{%"), '%'},
                              std::pair{std::string_view("{{"), '{'}}) {
      if (auto p = line.find(open, i); p < at) {
        at = p;
        opener = kind;
      }
    }
    const std::string_view close = opener == '<' ? "%>" : opener == '%' ? "%}" : "}}";
    const std::size_t end = at == std::string_view::npos ? at : line.find(close, at + 2);
    if (end == std::string_view::npos) {
      out.rest.append(line.substr(i));
      break;
    }
    out.rest.append(line.substr(i, at - i));
    if (auto control = classify_tag(line.substr(at + 2, end - at - 2), opener)) {
      out.controls.push_back(*control);
    } else {
      out.rest.append(line.substr(at, end + 2 - at));  // an output tag: part of the value
    }
    i = end + 2;
  }
  return out;
}

}  // namespace

UnitDoc parse_unit(std::string_view text) {
  UnitDoc unit;
  std::string section;
  bool continued = false;  // the last value ended in a backslash: this line goes on with it
  std::vector<unsigned> branches;  // the template branches open here, innermost last
  unsigned last_branch = 0;
  std::string without_tags;  // a line's text once its control tags are taken out
  for_each_line(text, [&](unsigned n, std::string_view raw) {
    if (!continued && raw.find_first_of("<{") != std::string_view::npos) {
      TemplateLine t = template_line(raw);
      // `<% if @debug %>Environment=DEBUG=1<% end %>` opens and closes on one line: its setting is read where it
      // stands, and no branch stays open. Otherwise the tags act in order, and what is left is read after them.
      int opened = 0;
      for (Control c : t.controls) {
        opened += c == Control::close ? -1 : c == Control::next_branch ? 0 : 1;
      }
      const bool balanced = opened == 0 && std::find(t.controls.begin(), t.controls.end(), Control::next_branch) ==
                                               t.controls.end();
      for (Control c : balanced ? std::vector<Control>{} : t.controls) {
        switch (c) {
          case Control::open_branch: branches.push_back(++last_branch); break;
          case Control::open_block: branches.push_back(branches.empty() ? 0 : branches.back()); break;
          case Control::next_branch:
            if (!branches.empty()) {
              branches.back() = ++last_branch;
            }
            break;
          case Control::close:
            if (!branches.empty()) {
              branches.pop_back();
            }
            break;
        }
      }
      if (!t.controls.empty()) {
        without_tags = std::move(t.rest);
        raw = without_tags;
      }
    }
    if (continued) {
      std::string_view t = raw.substr(std::min(raw.size(), raw.find_first_not_of(" \t")));
      if (!t.empty() && (t.front() == '#' || t.front() == ';')) {
        return;  // systemd skips comment lines inside a continued value
      }
      Directive& d = unit.directives.back();
      d.value += ' ';
      d.value += t;
      d.value.erase(d.value.find_last_not_of(" \t\r") + 1);
      d.last_line = n;
      continued = continues(d.value);
      if (continued) {
        d.value.pop_back();
      }
      return;
    }
    std::string_view l = strip_comment(raw, FileKind::unit);
    auto first = l.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
      return;
    }
    l = l.substr(first);
    if (l.front() == '[') {
      section = std::string(l.substr(1, l.find(']') - 1));
      if (section == "Service" && unit.service_line == 0) {
        unit.service_line = n;
        unit.service_column = static_cast<unsigned>(first + 1);
      }
    } else if (auto eq = l.find('='); eq != std::string_view::npos) {
      std::string key(l.substr(0, eq));
      key.erase(key.find_last_not_of(" \t") + 1);
      std::string value(l.substr(eq + 1));
      value.erase(0, value.find_first_not_of(" \t"));
      value.erase(value.find_last_not_of(" \t\r") + 1);
      continued = continues(value);
      if (continued) {
        value.pop_back();
      }
      unit.directives.push_back(
          {section, key, value, n, static_cast<unsigned>(first + 1), n, branches.empty() ? 0 : branches.back()});
    }
  });
  return unit;
}

// ---- NixOS: attribute paths, so `systemd.services.nvidia-persistenced.serviceConfig.Type = "simple";`
// and the same written as nested attrsets both come out as one path with its value.

namespace {

struct NixToken {
  enum Kind { path, string, equals, open, close, semicolon, other } kind;
  std::string text;  // a path's components joined by '\x1f'; a string's content
  unsigned line;
  unsigned column;
};

class NixLexer {
 public:
  explicit NixLexer(std::string_view text) : m_text(text) {}

  std::vector<NixToken> run() {
    std::vector<NixToken> out;
    while (m_pos < m_text.size()) {
      char c = m_text[m_pos];
      if (c == '\n') {
        advance();
      } else if (std::isspace(static_cast<unsigned char>(c)) != 0) {
        advance();
      } else if (c == '#') {
        while (m_pos < m_text.size() && m_text[m_pos] != '\n') {
          advance();
        }
      } else if (c == '/' && peek(1) == '*') {
        while (m_pos < m_text.size() && !(m_text[m_pos] == '*' && peek(1) == '/')) {
          advance();
        }
        advance();
        advance();
      } else if (c == '"' || (c == '\'' && peek(1) == '\'')) {
        unsigned line = m_line;
        unsigned column = m_column;
        std::string content = string_literal();
        // A quoted attribute name continues a path: systemd.services."nvidia-persistenced".
        if (!out.empty() && out.back().kind == NixToken::path && out.back().text.back() == '\x1f') {
          out.back().text += content;
          if (m_pos < m_text.size() && m_text[m_pos] == '.' && peek(1) != '.') {
            out.back().text += '\x1f';
            advance();
          }
        } else {
          out.push_back({NixToken::string, content, line, column});
        }
      } else if (std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_') {
        unsigned line = m_line;
        unsigned column = m_column;
        std::string word;
        while (m_pos < m_text.size() && (std::isalnum(static_cast<unsigned char>(m_text[m_pos])) != 0 ||
                                          m_text[m_pos] == '_' || m_text[m_pos] == '-' || m_text[m_pos] == '\'')) {
          word += m_text[m_pos];
          advance();
        }
        if (!out.empty() && out.back().kind == NixToken::path && out.back().text.back() == '\x1f') {
          out.back().text += word;
        } else {
          out.push_back({NixToken::path, word, line, column});
        }
        if (m_pos < m_text.size() && m_text[m_pos] == '.' && peek(1) != '.') {
          out.back().text += '\x1f';  // a dot: the path goes on
          advance();
        }
      } else if (c == '=' && peek(1) != '=') {
        out.push_back({NixToken::equals, "=", m_line, m_column});
        advance();
      } else if (c == '{' || c == '}' || c == ';') {
        out.push_back({c == '{' ? NixToken::open : c == '}' ? NixToken::close : NixToken::semicolon, {}, m_line,
                       m_column});
        advance();
      } else {
        out.push_back({NixToken::other, std::string(1, c), m_line, m_column});
        advance();
      }
    }
    return out;
  }

 private:
  char peek(std::size_t ahead) const {
    return m_pos + ahead < m_text.size() ? m_text[m_pos + ahead] : '\0';
  }
  void advance() {
    if (m_pos < m_text.size() && m_text[m_pos] == '\n') {
      ++m_line;
      m_column = 1;
    } else {
      ++m_column;
    }
    ++m_pos;
  }
  // "..." or ''...''; interpolations are kept as text, their braces balanced.
  std::string string_literal() {
    const bool indented = m_text[m_pos] == '\'';
    advance();
    if (indented) {
      advance();
    }
    std::string content;
    int interpolation = 0;
    while (m_pos < m_text.size()) {
      char c = m_text[m_pos];
      if (interpolation > 0) {
        interpolation += c == '{' ? 1 : c == '}' ? -1 : 0;
      } else if (!indented && c == '\\') {
        content += c;
        advance();
      } else if (!indented && c == '"') {
        advance();
        return content;
      } else if (indented && c == '\'' && peek(1) == '\'') {
        char after = peek(2);
        if (after == '$' || after == '\'' || after == '\\') {  // escapes: ''$ ''' ''\x
          advance();
          advance();
          content += m_pos < m_text.size() ? m_text[m_pos] : '\0';
          advance();
          continue;
        }
        advance();
        advance();
        return content;
      } else if (c == '$' && peek(1) == '{') {
        interpolation = 1;
        content += c;
        advance();
      }
      if (m_pos < m_text.size()) {
        content += m_text[m_pos];
        advance();
      }
    }
    return content;
  }

  std::string_view m_text;
  std::size_t m_pos = 0;
  unsigned m_line = 1;
  unsigned m_column = 1;
};

std::vector<std::string> split_path(std::string_view joined) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (start <= joined.size()) {
    std::size_t end = joined.find('\x1f', start);
    parts.emplace_back(joined.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) {
      break;
    }
    start = end + 1;
  }
  return parts;
}

struct NixAssignment {
  std::vector<std::string> path;
  std::string value;
  unsigned line;
  unsigned column;
};

std::vector<NixAssignment> nix_assignments(std::string_view text) {
  std::vector<NixAssignment> out;
  struct Level {
    std::vector<std::string> prefix;
    std::vector<std::string> pending;  // the left side of an assignment whose value is being read
    unsigned line = 0;
    unsigned column = 0;
    bool scoped = false;       // the value opened an attrset: its members are the assignments
    std::string last_string;   // a value's last string ("mkForce \"no\"" -> no)
    std::string plain;         // or its words (true, 1)
    bool has_string = false;
  };
  std::vector<Level> levels(1);
  auto tokens = NixLexer(text).run();
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const NixToken& t = tokens[i];
    Level& level = levels.back();
    switch (t.kind) {
      case NixToken::path:
        if (level.pending.empty() && i + 1 < tokens.size() && tokens[i + 1].kind == NixToken::equals) {
          level.pending = split_path(t.text);
          level.line = t.line;
          level.column = t.column;
          level.scoped = level.has_string = false;
          level.last_string.clear();
          level.plain.clear();
          ++i;  // the '='
        } else if (!level.pending.empty()) {
          level.plain += (level.plain.empty() ? "" : " ") + t.text;
        }
        break;
      case NixToken::string:
        level.last_string = t.text;
        level.has_string = true;
        break;
      case NixToken::open: {
        Level inner;
        inner.prefix = level.prefix;
        inner.prefix.insert(inner.prefix.end(), level.pending.begin(), level.pending.end());
        level.scoped = !level.pending.empty();
        levels.push_back(std::move(inner));
        break;
      }
      case NixToken::close:
        if (levels.size() > 1) {
          levels.pop_back();
        }
        break;
      case NixToken::semicolon:
        if (!level.pending.empty() && !level.scoped) {
          NixAssignment a{level.prefix, level.has_string ? level.last_string : level.plain, level.line, level.column};
          a.path.insert(a.path.end(), level.pending.begin(), level.pending.end());
          out.push_back(std::move(a));
        }
        level.pending.clear();
        break;
      case NixToken::equals:
      case NixToken::other:
        break;
    }
  }
  return out;
}

}  // namespace

UnitDoc nix_persistenced_unit(std::string_view text) {
  UnitDoc unit;
  unit.dropin = true;  // the NixOS module's own settings stay unless overridden
  unit.templated = true;  // an assignment replaces the module's ExecStart (or is one branch of an expression)
  if (text.find(k_daemon) == std::string_view::npos) {
    return unit;
  }
  for (const auto& a : nix_assignments(text)) {
    for (std::size_t i = 0; i + 2 < a.path.size(); ++i) {
      if (a.path[i] != "systemd" || a.path[i + 1] != "services" || a.path[i + 2] != k_daemon) {
        continue;
      }
      unit.named = true;
      std::vector<std::string> rest(a.path.begin() + static_cast<std::ptrdiff_t>(i + 3), a.path.end());
      if (rest.size() == 2 && (rest[0] == "serviceConfig" || rest[0] == "unitConfig")) {
        unit.directives.push_back({rest[0] == "serviceConfig" ? "Service" : "Unit", rest[1], a.value, a.line, a.column});
      } else if (rest.size() == 1 && rest[0] == "script") {
        unit.directives.push_back({"Service", "ExecStart", a.value, a.line, a.column});
      }
      break;
    }
  }
  return unit;
}

void judge_unit(const UnitDoc& unit, std::vector<Finding>& out) {
  const Directive* exec_start = nullptr;  // the ExecStart in force: an empty one resets the list
  for (const auto& d : unit.directives) {
    if (d.section == "Service" && d.key == "ExecStart") {
      exec_start = d.value.empty() ? nullptr : &d;
    }
  }
  bool runs = std::any_of(unit.directives.begin(), unit.directives.end(), [](const Directive& d) {
    return d.key == "ExecStart" && runs_daemon(d.value);
  });
  if (!unit.named && !runs) {
    return;
  }
  const unsigned missing_at = unit.service_line == 0 ? 1 : unit.service_line;
  const unsigned missing_column = unit.service_line == 0 ? 1 : unit.service_column;
  // A template branch whose ExecStart runs something else (`nvidia-smi` where the daemon already runs) is not
  // the daemon's unit: its Type= and Restart= are that program's, not judged as the daemon's.
  std::set<unsigned> other_programs;
  for (const auto& d : unit.directives) {
    if (d.branch != 0 && d.section == "Service" && d.key == "ExecStart" && !d.value.empty() && !runs_daemon(d.value)) {
      other_programs.insert(d.branch);
    }
  }
  for (const auto& d : unit.directives) {
    if (d.key == "ExecStart" && runs_daemon(d.value)) {
      other_programs.erase(d.branch);
    }
  }
  // Every explicit bad value is reported, not only the last: a template's branches each set one.
  bool restart_seen = false;
  bool type_seen = false;
  for (const auto& d : unit.directives) {
    if (other_programs.count(d.branch) != 0) {
      continue;
    }
    if (d.section == "Unit" && d.key == "StopWhenUnneeded" && unit_boolean_true(d.value)) {
      out.push_back({"LINT010", d.line, d.column,
                     fmt::format("StopWhenUnneeded={} lets systemd stop the daemon when nothing pulls it in, which "
                                 "turns persistence off on every GPU it held",
                                 d.value),
                     "set StopWhenUnneeded=false in a drop-in", "Unit/StopWhenUnneeded"});
    }
    if (d.section == "Service" && d.key == "Restart") {
      restart_seen = true;
      // on-success and on-watchdog restart nothing after a crash (a signal or a non-zero exit). A value the
      // file does not spell out (a template's variable) is not judged.
      if (d.value == "no" || d.value.empty() || d.value == "on-success" || d.value == "on-watchdog") {
        out.push_back({"LINT011", d.line, d.column,
                       fmt::format("Restart={}: a crashed daemon stays down and every GPU it held loses persistence",
                                   d.value.empty() ? "(reset to no)" : d.value),
                       "use Restart=on-failure (or always)", "Service/Restart"});
      }
    }
    if (d.section == "Service" && d.key == "Type") {
      type_seen = true;
      // oneshot with RemainAfterExit=yes keeps the forked daemon (the unit stays active, exited), but systemd
      // tracks no main process: a crash goes unnoticed and Restart= never fires.
      const bool remains = d.value == "oneshot" &&
                           std::any_of(unit.directives.begin(), unit.directives.end(), [&d](const Directive& r) {
                             return r.section == "Service" && r.key == "RemainAfterExit" &&
                                    unit_boolean_true(r.value) && (r.branch == d.branch || r.branch == 0);
                           });
      if (d.value != "forking") {
        out.push_back({"LINT013", d.line, d.column,
                       remains ? std::string("Type=oneshot with RemainAfterExit=yes for a daemon that forks: systemd "
                                             "tracks no main process, so a crashed daemon goes unnoticed and Restart= "
                                             "never brings it back")
                               : fmt::format("Type={} for a daemon that forks: systemd takes the parent's exit for the "
                                             "end of the service and stops it",
                                             d.value.empty() ? "(reset to simple)" : d.value),
                       "use Type=forking", "Service/Type"});
      }
    }
    if (d.section == "Service" && d.key == "PIDFile" && d.value.rfind("/var/run/", 0) == 0) {
      out.push_back({"LINT012", d.line, d.column, "PIDFile under the legacy /var/run (systemd warns and rewrites it to /run)",
                     "use PIDFile=/run/nvidia-persistenced/nvidia-persistenced.pid", "Service/PIDFile"});
    }
  }
  if (!type_seen && !unit.dropin) {
    out.push_back({"LINT013", missing_at, missing_column,
                   "no Type=: the default (simple) takes the forking daemon's parent exit for the end of the service",
                   "add Type=forking", "Service/Type"});
  }
  if (!restart_seen && !unit.dropin) {
    out.push_back({"LINT011", missing_at, missing_column,
                   "no Restart=: a crashed daemon stays down and every GPU it held loses persistence",
                   "add Restart=on-failure in a drop-in", "Service/Restart"});
  }
  // Only Type=oneshot may run several ExecStart=; a drop-in that adds one without the empty ExecStart= first
  // keeps the packaged unit's too.
  const bool oneshot = std::any_of(unit.directives.begin(), unit.directives.end(), [](const Directive& d) {
    return d.section == "Service" && d.key == "Type" && d.value == "oneshot";
  });
  unsigned in_force = 0;
  bool reset = false;
  for (const auto& d : unit.directives) {
    if (d.section != "Service" || d.key != "ExecStart") {
      continue;
    }
    if (d.value.empty()) {
      in_force = 0;
      reset = true;
      continue;
    }
    ++in_force;
    if (!oneshot && !unit.templated && (in_force == 2 || (in_force == 1 && unit.dropin && !reset))) {
      out.push_back({"LINT015", d.line, d.column,
                     in_force == 2 ? "a second ExecStart= in force: systemd refuses to load a service that is not "
                                     "Type=oneshot with more than one, so the daemon never starts"
                                   : "ExecStart= added without clearing the unit's own first: two are then in force, "
                                     "and systemd refuses to load the unit, so the daemon never starts",
                     in_force == 2 ? "keep one ExecStart= (after an empty `ExecStart=` line in a drop-in)"
                                   : "put an empty `ExecStart=` line before it",
                     "Service/ExecStart"});
    }
  }
  if (unit.named && exec_start != nullptr && !runs_daemon(exec_start->value)) {
    out.push_back({"LINT014", exec_start->line, exec_start->column,
                   "the nvidia-persistenced unit runs something else: the daemon never starts, yet the unit reads as "
                   "active and hides that",
                   "let ExecStart run /usr/bin/nvidia-persistenced (`gpuwarm fix` writes a drop-in)", "Service/ExecStart"});
  }
}

// ---- Layers

const std::vector<std::string_view>& unit_search_dirs() {
  // systemd's system unit path without the runtime-only and generator folders (nothing a config ships).
  static const std::vector<std::string_view> dirs = {"etc/systemd/system", "run/systemd/system",
                                                     "usr/local/lib/systemd/system", "usr/lib/systemd/system",
                                                     "lib/systemd/system"};
  return dirs;
}

std::optional<UnitPlace> unit_place(std::string_view path) {
  if (path.empty() || strip_template_suffix(path) != path || !unit_name(path).is_unit) {
    return std::nullopt;  // a template is not what systemd reads
  }
  auto parent_of = [](std::string_view p) {
    auto slash = p.rfind('/');
    return slash == std::string_view::npos ? std::string_view{} : p.substr(0, slash == 0 ? 1 : slash);
  };
  auto name_of = [](std::string_view p) { return p.substr(p.rfind('/') + 1); };  // npos + 1 == 0
  UnitPlace place;
  std::string_view folder = parent_of(path);  // where the unit file lies (or would)
  if (ends_with(path, ".conf")) {
    place.dropin = std::string(name_of(path));
    std::string_view dropin_dir = name_of(folder);
    place.unit = std::string(dropin_dir.substr(0, dropin_dir.size() - 2));  // "x.service.d" -> "x.service"
    folder = parent_of(folder);
  } else {
    place.unit = std::string(name_of(path));
  }
  const std::string own = folder.empty() ? "." : std::string(folder);
  for (std::size_t i = 0; i < unit_search_dirs().size(); ++i) {
    std::string_view dir = unit_search_dirs()[i];
    // "/etc/systemd/system", "copy/etc/systemd/system" or a relative "etc/systemd/system": that root's folders.
    if (own == dir || (ends_with(own, dir) && own[own.size() - dir.size() - 1] == '/')) {
      const std::string root = own.substr(0, own.size() - dir.size());
      for (std::string_view d : unit_search_dirs()) {
        place.dirs.push_back(root + std::string(d));
      }
      place.own = i;
      place.root = root.empty() ? "." : root;
      return place;
    }
  }
  place.dirs.push_back(own);
  return place;
}

std::vector<std::string> dropin_folders(std::string_view unit) {
  std::vector<std::string> folders{std::string(unit) + ".d"};
  const auto dot = unit.rfind('.');
  if (dot == std::string_view::npos) {
    return folders;
  }
  std::string_view stem = unit.substr(0, dot);
  std::string_view type = unit.substr(dot + 1);
  // "a-b-c" -> "a-b-", "a-": each dash ends a prefix (one ending the name is no prefix of another).
  for (auto dash = stem.rfind('-', stem.size() >= 2 ? stem.size() - 2 : 0); dash != std::string_view::npos && dash > 0;
       dash = stem.rfind('-', dash - 1)) {
    folders.push_back(fmt::format("{}.{}.d", stem.substr(0, dash + 1), type));
  }
  folders.push_back(fmt::format("{}.d", type));
  return folders;
}

LaterFiles later_files(const UnitPlace& place, const std::vector<UnitFile>& found) {
  LaterFiles later;
  // systemd lists, folder by folder in priority order, NAME.service.d/ and then the prefix folders; the type
  // folder (service.d/) of every unit folder comes after all of those. The first file of a name wins.
  const std::size_t type_folder = dropin_folders(place.unit).size() - 1;
  auto before = [type_folder](const UnitFile* a, const UnitFile* b) {
    return std::make_tuple(a->specificity == type_folder, a->dir, a->specificity) <
           std::make_tuple(b->specificity == type_folder, b->dir, b->specificity);
  };
  // The unit file in force: the one in the folder of highest priority (a mask there masks the unit).
  const UnitFile* unit_file = nullptr;
  for (const auto& f : found) {
    if (!f.dropin && f.name == place.unit && (unit_file == nullptr || f.dir < unit_file->dir)) {
      unit_file = &f;
    }
  }
  if (place.dropin.empty()) {
    if (unit_file != nullptr && unit_file->dir < place.own) {
      later.replaced_by = unit_file->path;
      later.masked = unit_file->mask;
    }
  } else if (unit_file != nullptr && unit_file->mask) {
    later.replaced_by = unit_file->path;  // the unit is masked: none of its drop-ins is read
    later.masked = true;
  }
  // Per drop-in name, the one that wins: the most specific folder, then the highest priority.
  std::vector<const UnitFile*> winners;
  for (const auto& f : found) {
    if (!f.dropin) {
      continue;
    }
    auto same = std::find_if(winners.begin(), winners.end(), [&](const UnitFile* d) { return d->name == f.name; });
    if (same == winners.end()) {
      winners.push_back(&f);
    } else if (before(&f, *same)) {
      *same = &f;
    }
  }
  std::sort(winners.begin(), winners.end(), [](const UnitFile* a, const UnitFile* b) { return a->name < b->name; });
  const UnitFile own{place.own, true, place.dropin, {}, 0, false};
  if (!place.dropin.empty() && unit_file != nullptr && !unit_file->mask) {
    later.earlier.push_back(unit_file->path);
    later.unit_file_found = true;
  }
  for (const UnitFile* d : winners) {
    if (!place.dropin.empty() && d->name == place.dropin) {
      if (before(d, &own) && later.replaced_by.empty()) {
        later.replaced_by = d->path;
        later.masked = d->mask;
      }
      continue;
    }
    if (d->mask) {
      continue;  // hides the name, sets nothing
    }
    if (place.dropin.empty() || d->name > place.dropin) {
      later.dropins.push_back(d->path);
    } else {
      later.earlier.push_back(d->path);
    }
  }
  return later;
}

namespace {

// Exec*= lines add to a list that only an empty assignment clears; any other setting is replaced by the next.
bool overrides(const Directive& later, std::string_view section, std::string_view key) {
  if (later.section != section || later.key != key) {
    return false;
  }
  return key.rfind("Exec", 0) != 0 || later.value.empty();
}

}  // namespace

void set_aside_overridden(const UnitDoc& linted, const LaterFiles& later, const std::vector<Layer>& layers,
                          const std::vector<Layer>& earlier, std::vector<Finding>& findings,
                          std::vector<SetAside>& set_aside) {
  // ExecStart= lines in force when the linted drop-in is read: the unit file's (assumed one where it was not found),
  // then each earlier drop-in's, an empty line clearing them.
  std::size_t exec_before = later.unit_file_found ? 0 : 1;
  for (const auto& layer : earlier) {
    for (const auto& d : layer.doc.directives) {
      if (d.section == "Service" && d.key == "ExecStart") {
        exec_before = d.value.empty() ? 0 : exec_before + 1;
      }
    }
  }
  std::vector<Finding> in_force;
  for (auto& f : findings) {
    if (f.rule == "LINT015" && linted.dropin && exec_before == 0) {
      // Counted again from what is in force before this drop-in: only a second line of its own is one too many.
      std::size_t count = 0;
      for (const auto& d : linted.directives) {
        if (d.section == "Service" && d.key == "ExecStart" && d.line <= f.line) {
          count = d.value.empty() ? 0 : count + 1;
        }
      }
      if (count < 2) {
        continue;  // an earlier drop-in cleared the unit's: this one is the only one
      }
    }
    std::string by = later.replaced_by.empty() ? std::string{}
                     : later.masked ? later.replaced_by + " (a link to /dev/null: masked)"
                                    : later.replaced_by;
    std::string section;
    std::string key;
    if (auto slash = f.directive.find('/'); slash != std::string::npos) {
      section = f.directive.substr(0, slash);
      key = f.directive.substr(slash + 1);
    } else {
      // A command rule's finding on a setting's line (--no-persistence-mode in ExecStart=).
      for (const auto& d : linted.directives) {
        if (d.line <= f.line && f.line <= std::max(d.line, d.last_line)) {
          section = d.section;
          key = d.key;
        }
      }
    }
    // Named by the setting in force: the last one that overrides it.
    for (std::size_t i = 0; later.replaced_by.empty() && !key.empty() && i < layers.size(); ++i) {
      for (const auto& d : layers[i].doc.directives) {
        if (overrides(d, section, key)) {
          by = fmt::format("{}:{}", layers[i].path, d.line);
        }
      }
    }
    if (by.empty()) {
      in_force.push_back(std::move(f));
    } else {
      set_aside.push_back({std::move(f), std::move(by)});
    }
  }
  findings = std::move(in_force);
}

}  // namespace gpuwarm::lint
