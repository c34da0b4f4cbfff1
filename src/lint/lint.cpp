#include "lint/lint.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "lint/units.h"
#include "lint/words.h"

namespace gpuwarm::lint {

namespace {

constexpr const char* k_legacy = "LINT001";
constexpr const char* k_no_pm = "LINT002";
constexpr const char* k_pm_off = "LINT003";
constexpr const char* k_pm_unresolved = "LINT004";
constexpr const char* k_by_hand = "LINT005";
constexpr const char* k_switched_off = "LINT006";

std::string_view basename(std::string_view word) {
  auto slash = word.find_last_of('/');
  return slash == std::string_view::npos ? word : word.substr(slash + 1);
}

// A variable or template that names nvidia-smi: {{ nvidia_smi }}, ${NVIDIA_SMI}, $NVSMI.
bool names_nvidia_smi(std::string_view word) {
  if (word.empty() || (word[0] != '$' && word[0] != '{')) {
    return false;
  }
  std::string l = lower(word);
  return l.find("nvidia_smi") != std::string::npos || l.find("nvidia-smi") != std::string::npos ||
         l.find("nvsmi") != std::string::npos || l.find("nvidiasmi") != std::string::npos;
}

bool is_smi(std::string_view word) {
  std::string_view base = basename(word);
  // A whole expansion ("${NVIDIA_SMI:-/usr/bin/nvidia-smi}", "{{ nvidia_smi }}"), not a path built on one.
  bool expansion = !word.empty() && (word.back() == '}' || word.find('/') == std::string_view::npos);
  return base == "nvidia-smi" || base == "nvidia-smi.exe" || (expansion && names_nvidia_smi(word));
}

bool is_daemon(std::string_view word) {
  return basename(word) == "nvidia-persistenced" && word.find("/init.d/") == std::string_view::npos &&
         word.find("/rc.d/") == std::string_view::npos;
}

// Word classes are looked up for nearly every statement: hash sets, not scans.
using WordSet = std::unordered_set<std::string_view>;

template <std::size_t N>
bool one_of(std::string_view w, const std::array<std::string_view, N>& set) {
  return std::find(set.begin(), set.end(), w) != set.end();
}

// Words that run the rest of their statement as a command (somewhere among their arguments).
bool runner(std::string_view w) {
  static const WordSet words = {
      "sudo",   "doas",     "env",        "exec",       "command",     "builtin",   "nohup",    "time",
      "timeout", "nice",    "ionice",     "chrt",       "taskset",     "stdbuf",    "setsid",   "flock",
      "numactl", "xargs",   "parallel",   "watch",      "ssh",         "pdsh",      "clush",    "pssh",
      "parallel-ssh", "srun", "salt",     "ansible",    "docker",      "podman",    "kubectl",  "oc",
      "crictl",  "nerdctl", "nsenter",    "chroot",     "systemd-run", "runuser",   "su",       "sh",
      "bash",    "dash",    "zsh",        "ksh",        "check_cmd_status", "check_cmd_output", "eval", "mpirun",
      "RUN", "CMD", "ENTRYPOINT", "xdsh", "unbuffer", "execute", "exec_cmd", "run_cmd"};
  return words.count(w) != 0;
}

// Whether `flag` (-u, --user, -g, --group) takes a value for `runner`: a user or group for sudo, doas, su,
// runuser, docker/podman/nerdctl (run, exec), a unit name for systemd-run -u, a group for pdsh/clush -g.
bool names_a_user_or_group(std::string_view runner, std::string_view flag) {
  static const WordSet user_and_group = {"sudo", "doas", "su", "runuser", "systemd-run"};
  static const WordSet user_only = {"docker", "podman", "nerdctl"};
  static const WordSet group_only = {"pdsh", "clush"};
  const bool user = flag == "-u" || flag == "--user";
  return user_and_group.count(runner) != 0 || (user && user_only.count(runner) != 0) ||
         (!user && group_only.count(runner) != 0);
}

// Commands that take nvidia-smi or nvidia-persistenced as a mere argument.
bool takes_name_as_argument(std::string_view w) {
  static const WordSet words = {
      "systemctl", "service", "pgrep",  "pkill",   "killall", "kill",   "pidof",   "ps",       "grep",
      "egrep",     "fgrep",   "rg",     "echo",    "printf",  "logger", "apt",     "apt-get",  "aptitude",
      "yum",       "dnf",     "zypper", "rpm",     "dpkg",    "snap",   "which",   "whereis",  "type",
      "hash",      "ls",      "test",   "[",       "[[",      "stat",   "file",    "cat",      "rm",
      "cp",        "mv",      "install", "chmod",  "chown",   "ln",     "readlink", "journalctl",
      // Accounts, folders and files named like the daemon (its --user, its /var/run folder), and a
      // container's logs: after sudo or docker these are the command, and what follows is no program.
      "useradd",   "groupadd", "userdel", "groupdel", "usermod", "adduser", "addgroup", "deluser", "delgroup",
      "getent",    "id",      "mkdir",  "rmdir",   "touch",   "chgrp",  "setfacl", "tar",      "unzip",
      "sed",       "awk",     "tee",    "find",    "du",      "lsof",   "fuser",   "mount",    "umount",
      "wget",      "curl",    "logs",   "inspect", "describe"};
  return words.count(w) != 0;
}

bool shell_keyword(std::string_view w) {
  static constexpr std::array<std::string_view, 11> words = {"do",    "then", "else", "elif", "if", "while",
                                                             "until", "!",    "{",    "time", "-"};
  return one_of(w, words);
}

bool cron_field(std::string_view w) {
  if (w.empty()) {
    return false;
  }
  bool digits = std::all_of(w.begin(), w.end(), [](char c) {
    return std::isdigit(static_cast<unsigned char>(c)) != 0 || c == '*' || c == '/' || c == ',' || c == '-';
  });
  bool names = w.size() >= 3 && std::all_of(w.begin(), w.end(), [](char c) {
                 return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == ',' || c == '-';
               }) && w.size() <= 11 && std::isalpha(static_cast<unsigned char>(w[0])) != 0 &&
               (w.size() == 3 || w[3] == '-' || w[3] == ',');
  return digits || names;
}

bool cron_shortcut(std::string_view w) {
  static constexpr std::array<std::string_view, 8> words = {"@reboot",  "@yearly", "@annually", "@monthly",
                                                            "@weekly",  "@daily",  "@midnight", "@hourly"};
  return one_of(w, words);
}

// $NAME, ${NAME}, ${NAME:-default}: the name, else empty.
std::string shell_variable(std::string_view word, std::string* fallback = nullptr) {
  if (word.size() < 2 || word[0] != '$') {
    return {};
  }
  std::string_view inner = word.substr(1);
  if (inner.front() == '{') {
    if (inner.back() != '}') {
      return {};
    }
    inner = inner.substr(1, inner.size() - 2);
  }
  std::size_t end = 0;
  while (end < inner.size() && (std::isalnum(static_cast<unsigned char>(inner[end])) != 0 || inner[end] == '_')) {
    ++end;
  }
  if (end == 0) {
    return {};
  }
  if (fallback != nullptr && end < inner.size()) {
    std::string_view rest = inner.substr(end);
    for (std::string_view op : {":-", "-", ":=", "="}) {
      if (rest.rfind(op, 0) == 0) {
        *fallback = std::string(rest.substr(op.size()));
        break;
      }
    }
  }
  return std::string(inner.substr(0, end));
}

// {{ name | default(1) }}: the name and the default, else empty.
std::string template_variable(std::string_view word, std::string* fallback) {
  auto open = word.find("{{");
  auto close = word.rfind("}}");
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return {};
  }
  std::string_view inner = word.substr(open + 2, close - open - 2);
  inner = inner.substr(std::min(inner.size(), inner.find_first_not_of(' ')));
  std::size_t end = 0;
  while (end < inner.size() &&
         (std::isalnum(static_cast<unsigned char>(inner[end])) != 0 || inner[end] == '_' || inner[end] == '.')) {
    ++end;
  }
  for (std::string_view filter : {"default(", "d("}) {
    if (auto at = inner.find(filter); at != std::string_view::npos && fallback != nullptr) {
      std::string_view arg = inner.substr(at + filter.size());
      arg = arg.substr(0, arg.find(')'));
      std::string value;
      for (char c : arg) {
        if (c != '\'' && c != '"' && c != ' ') {
          value += c;
        }
      }
      *fallback = value;
      break;
    }
  }
  return std::string(inner.substr(0, end));
}

enum class Setting { on, off, unresolved, other };

struct Resolved {
  Setting setting = Setting::other;
  std::string variable;  // the name the value came through
  std::string how;       // "nvidia_pm = 1 (defaults/main.yml:3)"
};

// The marker of a here-doc whose "<<" is at `op` in `code` (<<EOF, <<-EOF, << 'EOF', <<"EOF", <<\\EOF); empty
// for none, the here-string <<<, or a shift ($((1<<3))).
std::string heredoc_marker(std::string_view code, std::size_t op) {
  if (code.substr(op, 2) != "<<" || code.substr(op, 3) == "<<<") {
    return {};
  }
  std::size_t p = op + 2;
  if (p < code.size() && code[p] == '-') {
    ++p;
  }
  while (p < code.size() && code[p] == ' ') {
    ++p;
  }
  std::string marker;
  while (p < code.size() && (std::isalnum(static_cast<unsigned char>(code[p])) != 0 || code[p] == '_' ||
                             code[p] == '\'' || code[p] == '"' || code[p] == '\\')) {
    if (std::isalnum(static_cast<unsigned char>(code[p])) != 0 || code[p] == '_') {
      marker += code[p];
    }
    ++p;
  }
  return marker.empty() || std::isdigit(static_cast<unsigned char>(marker[0])) != 0 ? std::string() : marker;
}

// Python: a docstring (a triple-quoted string first in the module, a def or a class) and an Ansible module's
// DOCUMENTATION, EXAMPLES and RETURN are prose, never run; their text is blanked (line breaks kept, so lines and
// columns stay). Any other triple-quoted string stays: a call's argument (os.system("""...""")), a value
// returned, a file's text a script writes out (UNIT = """...ExecStart=..."""). Ordinary strings and comments
// are skipped over so that a quote inside them does not start one, and string prefixes (f"...", rb'...') are
// blanked. One pass, with short look-backs.
std::string blank_python_prose(std::string_view code) {
  std::string out(code);
  auto significant_before = [&](std::size_t at) -> std::size_t {  // npos: none
    while (at > 0) {
      const char c = code[--at];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\\') {
        return at;
      }
    }
    return std::string_view::npos;
  };
  auto line_start = [&](std::size_t at) {
    const std::size_t nl = code.rfind('\n', at);
    return nl == std::string_view::npos ? 0 : nl + 1;
  };
  auto first_word = [&](std::size_t at) {
    std::size_t b = line_start(at);
    while (b < code.size() && (code[b] == ' ' || code[b] == '\t')) {
      ++b;
    }
    std::size_t e = b;
    while (e < code.size() && (std::isalnum(static_cast<unsigned char>(code[e])) != 0 || code[e] == '_')) {
      ++e;
    }
    return code.substr(b, e - b);
  };
  // The line a block's header starts on: the ':' itself, or for "def f(a,\n b):" the line of its "(".
  auto header_line = [&](std::size_t colon) {
    const std::size_t close = significant_before(colon);
    if (close == std::string_view::npos || code[close] != ')') {
      return colon;
    }
    int depth = 0;
    for (std::size_t k = close + 1; k-- > 0 && close - k < 1024;) {
      depth += code[k] == ')' ? 1 : code[k] == '(' ? -1 : 0;
      if (depth == 0) {
        return k;
      }
    }
    return colon;
  };
  auto is_prose = [&](std::size_t string_start) {
    const std::size_t before = significant_before(string_start);
    if (before == std::string_view::npos) {
      return true;  // the module's docstring
    }
    const char c = code[before];
    if (c == ':' && code.substr(before, string_start - before).find('\n') != std::string_view::npos) {
      const std::string_view word = first_word(header_line(before));
      return word == "def" || word == "class" || word == "async";
    }
    if (c == '=' && before > 0 && code[before - 1] != '=' && code[before - 1] != '!' && code[before - 1] != '<' &&
        code[before - 1] != '>') {
      const std::size_t name_end = significant_before(before);
      if (name_end == std::string_view::npos) {
        return false;
      }
      std::size_t name_start = name_end + 1;
      while (name_start > 0 && (std::isalnum(static_cast<unsigned char>(code[name_start - 1])) != 0 ||
                                code[name_start - 1] == '_')) {
        --name_start;
      }
      const std::string_view name = code.substr(name_start, name_end + 1 - name_start);
      return (name == "DOCUMENTATION" || name == "EXAMPLES" || name == "RETURN") && line_start(name_start) ==
                                                                                           line_start(before);
    }
    return false;
  };
  auto prefix_letter = [](char ch) {
    return ch == 'r' || ch == 'R' || ch == 'b' || ch == 'B' || ch == 'u' || ch == 'U' || ch == 'f' || ch == 'F';
  };
  std::size_t at = 0;
  while (at < code.size()) {
    const char c = code[at];
    if (c == '#') {
      at = std::min(code.find('\n', at), code.size());
      continue;
    }
    if (c != '\'' && c != '"') {
      ++at;
      continue;
    }
    // String prefixes (r, b, f, u, rb, ...), not the end of a word such as "or".
    std::size_t prefix = at;
    while (prefix > 0 && at - prefix < 2 && prefix_letter(code[prefix - 1])) {
      --prefix;
    }
    if (prefix > 0 && (std::isalnum(static_cast<unsigned char>(code[prefix - 1])) != 0 || code[prefix - 1] == '_')) {
      prefix = at;
    }
    for (std::size_t k = prefix; k < at; ++k) {
      out[k] = ' ';  // f"nvidia-smi ..." is the string's text to the lexer, not a word "fnvidia-smi"
    }
    const bool triple = code.substr(at, 3) == std::string_view(c == '"' ? "\"\"\"" : "\'\'\'");
    const std::size_t open_len = triple ? 3 : 1;
    std::size_t p = at + open_len;
    while (p < code.size()) {
      if (code[p] == '\\') {
        p += 2;  // in a raw string too, a backslash keeps the quote after it in the string
        continue;
      }
      if (!triple && code[p] == '\n') {
        break;  // an unclosed ordinary string ends with its line
      }
      if (triple ? code.substr(p, 3) == code.substr(at, 3) : code[p] == c) {
        break;
      }
      ++p;
    }
    const std::size_t content_end = std::min(p, code.size());
    if (triple && is_prose(prefix)) {
      for (std::size_t k = at + open_len; k < content_end; ++k) {
        if (out[k] != '\n') {
          out[k] = ' ';
        }
      }
    }
    at = std::min(content_end + (p < code.size() ? open_len : 0), code.size());
  }
  return out;
}

class Linter {
 public:
  Linter(std::string_view text, const Source& source) : m_text(text), m_source(source) {}

  std::vector<Finding> run();

 private:
  void collect_variables();
  void collect_wrappers();
  std::optional<std::size_t> heredoc_end(std::size_t i, const std::string& marker);
  bool runs_its_arguments(std::string_view word) const { return runner(word) || m_wrappers.count(word) != 0; }
  bool python_source() const {
    const std::string_view first_line = m_text.substr(0, m_text.find('\n'));
    return m_source.kind == FileKind::shell &&
           (ends_with(lower(m_source.path), ".py") ||
            (first_line.rfind("#!", 0) == 0 && first_line.find("python") != std::string_view::npos));
  }
  void find_commands();
  void walk(std::size_t k, std::size_t end, bool after_runner, bool cron_ok, int depth);
  void sed_inserted_lines(std::size_t k, std::size_t end);
  void systemctl_verbs(std::size_t k, std::size_t end);
  void ansible_unit_switches();
  std::string yaml_parent_key(std::size_t i, std::size_t key_indent) const;
  void drop_restores_and_unloads();
  void report_unit_switches();
  bool statement_writes_out(std::size_t start, std::size_t end) const;
  void report_site(std::size_t start, std::size_t k, std::size_t end);
  std::string_view dockerfile_instruction(std::size_t k) const;
  Resolved resolve(const std::string& raw, int depth) const;
  std::vector<LineRange> embedded_regions();
  std::size_t heredoc(std::size_t i, std::string_view code, std::set<std::string>& unterminated,
                      std::vector<LineRange>& skip);
  bool printed_unit(std::size_t i, std::string_view code, std::vector<LineRange>& skip);
  std::size_t yaml_content(std::size_t i, std::string_view code, std::vector<LineRange>& skip);
  std::size_t yaml_removed(std::size_t i, std::string_view code, std::vector<LineRange>& skip);
  bool case_arm_pattern(std::size_t k, std::size_t end) const;
  std::size_t offset_of(const Token& t) const;
  std::map<std::string, std::string> yaml_mapping(std::size_t i, std::size_t key_indent) const;
  std::size_t yaml_value_end(std::size_t i, std::size_t key_indent) const;
  void lint_region(unsigned first, unsigned last, const Source& inner, bool console = false);

  std::string_view m_text;
  std::string m_prose_blanked;  // Python: the file with its docstrings blanked (m_text then views it)
  Source m_source;  // by value: callers pass temporaries
  std::vector<Token> m_tokens;
  std::vector<Finding> m_found;
  std::unordered_map<std::string, Assigned> m_local;  // this file's own assignments
  std::set<std::string> m_executed;                   // variables run as commands ($CMD, eval "$CMD")
  std::unordered_set<std::string_view> m_wrappers;    // this file's functions that run "$@" (views into m_tokens)
  std::set<std::size_t> m_sites;
  // `systemctl mask|disable|enable|unmask ... nvidia-persistenced` (or an Ansible systemd/service task saying the
  // same): the unit word's token, and the verb.
  std::map<std::size_t, std::string_view> m_unit_switches;
  std::set<std::size_t> m_ansible_switches;  // those of them an Ansible task made
  bool m_found_is_smi = false;  // inside a find -exec whose {} is an nvidia-smi (find -name nvidia-smi)
  std::vector<std::string_view> m_lines;              // for regions: the file's lines, split once
  mutable std::vector<std::size_t> m_line_starts;      // where each line of m_text starts, built on first use
  std::unordered_map<std::string_view, std::vector<std::size_t>> m_line_index;  // trimmed line -> line indexes
};

bool Linter::statement_writes_out(std::size_t start, std::size_t end) const {
  for (std::size_t i = start; i < end; ++i) {
    if (m_tokens[i].redirect) {
      return true;
    }
  }
  if (end < m_tokens.size() && m_tokens[end].break_kind == '|') {
    std::size_t k = end;
    while (k < m_tokens.size() && (m_tokens[k].text == "sudo" || m_tokens[k].text == "doas")) {
      ++k;
    }
    if (k < m_tokens.size()) {
      std::string_view w = basename(m_tokens[k].text);
      return w == "crontab" || w == "tee" || w == "sh" || w == "bash" || w == "ssh";
    }
  }
  return false;
}

// Where token t starts in m_text.
std::size_t Linter::offset_of(const Token& t) const {
  if (m_line_starts.empty()) {
    m_line_starts.push_back(0);
    for (std::size_t at = m_text.find('\n'); at != std::string_view::npos; at = m_text.find('\n', at + 1)) {
      m_line_starts.push_back(at + 1);
    }
  }
  return m_line_starts[t.line - 1] + t.column - 1;
}

// Word k is a case arm's pattern with its command after it on the line (`start) nvidia-smi -pm 1 ;;`, `(legacy)
// ...`; `a|b) ...` reaches here as `b`, after the pipe's break): the lexer drops the ")", so the text between this
// word and the next holds more ")" than "(".
bool Linter::case_arm_pattern(std::size_t k, std::size_t end) const {
  if (k + 1 >= end || m_tokens[k + 1].line != m_tokens[k].line) {
    return false;
  }
  const std::size_t from = offset_of(m_tokens[k]);
  const std::size_t to = offset_of(m_tokens[k + 1]);
  if (to <= from || to - from > 4096) {
    return false;
  }
  // `$(date) ...`: the ")" closes a command substitution the word opens, not a pattern.
  std::size_t before = from;
  while (before > 0 && (m_text[before - 1] == ' ' || m_text[before - 1] == '\t')) {
    --before;
  }
  if (before >= 2 && m_text[before - 1] == '(' && m_text[before - 2] == '$') {
    return false;
  }
  const std::string_view between = m_text.substr(from, to - from);
  return std::count(between.begin(), between.end(), ')') > std::count(between.begin(), between.end(), '(');
}

// Finds the word a statement (or the part of it from k) runs: past assignments, shell keywords and a
// cron schedule; through runners (sudo, ssh host, docker exec c, RUN); into text that echo writes to a
// crontab or a script. Records nvidia-smi / nvidia-persistenced when run there.
void Linter::walk(std::size_t k, std::size_t end, bool after_runner, bool cron_ok, int depth) {
  if (depth > 8) {
    return;
  }
  while (k < end) {
    const std::string& w = m_tokens[k].text;
    if (!m_tokens[k].assigned_to.empty() || shell_keyword(w) || case_arm_pattern(k, end)) {
      ++k;
    } else if (w == "case" && k + 2 < end && m_tokens[k + 2].text == "in") {
      k += 3;  // case WORD in PATTERN) COMMAND: on one line
    } else {
      break;
    }
  }
  if (cron_ok && k < end) {
    bool schedule = false;
    if (cron_shortcut(m_tokens[k].text)) {
      ++k;
      schedule = true;
    } else if (k + 5 < end && std::all_of(m_tokens.begin() + static_cast<std::ptrdiff_t>(k),
                                          m_tokens.begin() + static_cast<std::ptrdiff_t>(k + 5), [&](const Token& t) {
                                            return t.line == m_tokens[k].line && cron_field(t.text);
                                          }) &&
               std::any_of(m_tokens.begin() + static_cast<std::ptrdiff_t>(k),
                           m_tokens.begin() + static_cast<std::ptrdiff_t>(k + 5), [](const Token& t) {
                             return t.text.find_first_of("*0123456789") != std::string::npos;
                           })) {
      k += 5;
      schedule = true;
    }
    // A system crontab names the user first: "@reboot root nvidia-smi -pm 1".
    if (schedule && k + 1 < end && !is_smi(m_tokens[k].text) && !is_daemon(m_tokens[k].text) &&
        !runs_its_arguments(basename(m_tokens[k].text)) &&
        (is_smi(m_tokens[k + 1].text) || is_daemon(m_tokens[k + 1].text) ||
         runs_its_arguments(basename(m_tokens[k + 1].text)))) {
      ++k;
    }
  }
  std::string_view current_runner;
  for (; k < end; ++k) {
    const Token& t = m_tokens[k];
    if (t.prose) {
      return;
    }
    if (is_smi(t.text) || is_daemon(t.text) || (m_found_is_smi && t.text == "{}")) {
      m_sites.insert(k);
      return;
    }
    std::string_view w = basename(t.text);
    if (w == "command" && k + 1 < end && (m_tokens[k + 1].text == "-v" || m_tokens[k + 1].text == "-V")) {
      return;  // a lookup, not a run
    }
    if (runs_its_arguments(w) || (!shell_variable(t.text).empty() && !names_nvidia_smi(t.text))) {
      after_runner = true;  // "$SUDO nvidia-smi ..." too
      current_runner = t.text[0] == '$' ? std::string_view("sudo") : w;
      continue;
    }
    if (w == "find") {
      // find ... -exec test -c {} \; -exec nvidia-smi -pm 1 \; : what each -exec, -execdir, -ok or -okdir
      // runs, up to the next one.
      auto is_exec = [](const std::string& a) { return a == "-exec" || a == "-execdir" || a == "-ok" || a == "-okdir"; };
      // find / -name nvidia-smi -exec {} -pm 1 \; : the file found runs, and its name says what it is.
      bool finds_smi = false;
      for (std::size_t j = k + 1; j + 1 < end && !is_exec(m_tokens[j].text); ++j) {
        const std::string& p = m_tokens[j].text;
        finds_smi = finds_smi || ((p == "-name" || p == "-iname" || p == "-path" || p == "-ipath" || p == "-wholename") &&
                                  is_smi(m_tokens[j + 1].text));
      }
      std::size_t from = end;  // the first word of the -exec being read, if any
      for (std::size_t j = k + 1; j <= end; ++j) {
        const bool exec = j < end && is_exec(m_tokens[j].text);
        if (j == end || exec || m_tokens[j].text == "\\;" || m_tokens[j].text == "+") {
          if (from < j) {
            // -exec {} -pm 1, -exec sudo -u root {} -pm 1: "{}" is the nvidia-smi found, read as the command
            // it is the program of, runners and their options included.
            const bool outer = m_found_is_smi;
            m_found_is_smi = finds_smi;
            walk(from, j, false, false, depth + 1);
            m_found_is_smi = outer;
          }
          from = exec ? j + 1 : end;  // after "\;" come find's own predicates again
        }
      }
      return;
    }
    if (w == "tee") {
      // tee -a /etc/rc.local <<< "nvidia-smi -pm 1": the here-string is what goes into the file.
      for (std::size_t j = k + 1; j + 1 < end; ++j) {
        if (m_tokens[j].text == "<<<") {
          walk(j + 1, end, false, true, depth + 1);
          break;
        }
      }
      return;
    }
    if (w == "sed") {
      sed_inserted_lines(k + 1, end);
      return;
    }
    if (w == "systemctl") {
      systemctl_verbs(k + 1, end);
      return;
    }
    if ((w == "echo" || w == "printf") && statement_writes_out(k, end)) {
      std::size_t content = k + 1;
      while (content < end && m_tokens[content].text.size() > 1 && m_tokens[content].text[0] == '-') {
        ++content;
      }
      walk(content, end, false, true, depth + 1);
      return;
    }
    if (!t.text.empty() && t.text[0] == '-') {
      if (!after_runner) {
        return;
      }
      // sudo -u USER, runuser -g GROUP, docker run --user U: the value is a name, not the command (and may be
      // the daemon's own user, nvidia-persistenced). Only for runners where the flag takes one: srun -u and
      // watch -g take none, and what follows them is the command.
      if ((t.text == "-u" || t.text == "--user" || t.text == "-g" || t.text == "--group") && k + 1 < end &&
          !m_tokens[k + 1].breaks_before && names_a_user_or_group(current_runner, t.text)) {
        ++k;
      }
      continue;
    }
    if (!after_runner || takes_name_as_argument(w)) {
      return;
    }
  }
}

// systemctl [OPTIONS] VERB UNIT...: a verb that switches the daemon's unit on or off at boot, and where.
void Linter::systemctl_verbs(std::size_t k, std::size_t end) {
  std::string_view verb;
  for (; k < end; ++k) {
    const std::string& w = m_tokens[k].text;
    if (w.empty() || w[0] == '-') {
      continue;  // --now, --runtime, -q
    }
    if (verb.empty()) {
      verb = w;
      if (verb != "mask" && verb != "disable" && verb != "enable" && verb != "unmask" && verb != "reenable") {
        return;
      }
      continue;
    }
    if (w == "nvidia-persistenced" || w == "nvidia-persistenced.service") {
      m_unit_switches.emplace(k, verb);
    }
  }
}

// A mask keeps the daemon from ever starting (at boot, by hand, by `gpuwarm fix`); a disable with no enable of
// it in the same file leaves it off at boot. An image build that disables it and enables it at first boot
// elsewhere says so with an opt-out.
void Linter::report_unit_switches() {
  if (m_source.kind == FileKind::dockerfile) {
    return;  // a container image: the host's daemon is what counts, and the image runs no init system
  }
  const bool enabled_here = std::any_of(m_unit_switches.begin(), m_unit_switches.end(), [](const auto& s) {
    return s.second == "enable" || s.second == "reenable" || s.second == "unmask";
  });
  for (const auto& [k, verb] : m_unit_switches) {
    const Token& t = m_tokens[k];
    const bool task = m_ansible_switches.count(k) != 0;
    if (verb == "mask") {
      m_found.push_back({k_switched_off, t.line, t.column,
                         "nvidia-persistenced masked: it can never start (not at boot, not by hand, not by `gpuwarm "
                         "fix`), so every idle GPU de-initializes and loses its clocks and power limit",
                         std::string(task ? "set `masked: false` and `enabled: true` in this task"
                                          : "remove the mask (systemctl unmask nvidia-persistenced)") +
                             "; on a node whose GPU should power down (a laptop, a desktop) say so with "
                             "`# gpuwarm: ignore LINT006`",
                         {}});
    } else if (verb == "disable" && !enabled_here) {
      m_found.push_back({k_switched_off, t.line, t.column,
                         "nvidia-persistenced disabled, and enabled nowhere in this file: it does not start at boot, "
                         "so every idle GPU de-initializes",
                         std::string(task ? "set `enabled: true` (and `state: started`) in this task"
                                          : "enable it instead (systemctl enable --now nvidia-persistenced") +
                             ", or `gpuwarm fix`" + (task ? "" : ")") +
                             "; if a later step enables it, say so with `# gpuwarm: ignore LINT006`",
                         {}});
    }
  }
}

// A `-pm 0` that undoes this file's own earlier `-pm 1` (a health check that enabled it for a test; the `-pm 1`
// is the finding), or that frees the GPUs before the driver is unloaded (modprobe -r / rmmod nvidia later in the
// file): removing it, as LINT003 says, would leave the flag on for good or make the unload fail.
void Linter::drop_restores_and_unloads() {
  if (std::none_of(m_found.begin(), m_found.end(), [](const Finding& f) { return f.rule == k_pm_off; })) {
    return;  // the usual file: no second pass over its text
  }
  // Computed once: a file of thousands of findings stays linear.
  unsigned first_legacy = 0;  // the first line setting the flag on (0: none)
  for (const Finding& f : m_found) {
    if (f.rule == k_legacy && (first_legacy == 0 || f.line < first_legacy)) {
      first_legacy = f.line;
    }
  }
  unsigned last_unload = 0;  // the last line unloading the driver (0: none)
  for_each_line(m_text, [&](unsigned n, std::string_view line) {
    line = line.substr(0, line.find('#'));
    const bool modprobe_r = line.find("modprobe") != std::string_view::npos &&
                            (line.find(" -r") != std::string_view::npos || line.find("--remove") != std::string_view::npos);
    if ((modprobe_r || line.find("rmmod") != std::string_view::npos) && line.find("nvidia") != std::string_view::npos) {
      last_unload = n;
    }
  });
  // In a script only: YAML tasks and documentation's code blocks that set it on and off are two findings.
  const bool script = m_source.kind == FileKind::shell;
  std::erase_if(m_found, [&](const Finding& f) {
    return f.rule == k_pm_off && ((script && first_legacy != 0 && first_legacy < f.line) || f.line < last_unload);
  });
}

// sed -i '$i /usr/bin/nvidia-smi -pm 1' /etc/rc.local: the lines sed's a, i and c commands put into a file
// are that file's commands. Linted as a script, each finding placed on the sed script's first word.
void Linter::sed_inserted_lines(std::size_t k, std::size_t end) {
  if (end <= k + 1) {
    return;
  }
  bool in_place = false;
  std::vector<std::pair<std::size_t, std::size_t>> scripts;  // [first, last) words of each script
  const std::size_t file = end - 1;                          // the last operand: the file edited
  for (std::size_t i = k; i < file; ++i) {
    const std::string& t = m_tokens[i].text;
    if (t == "-i" || t.rfind("--in-place", 0) == 0 ||
        (t.size() > 1 && t[0] == '-' && t[1] != '-' && t != "-e" && t.find('i') != std::string::npos)) {
      in_place = true;
      continue;
    }
    const bool option_script = t == "-e" || t == "--expression";
    if (option_script || (scripts.empty() && t[0] != '-')) {
      std::size_t first = option_script ? i + 1 : i;
      std::size_t last = first;
      while (last < file && m_tokens[last].text != "-e" && m_tokens[last].text != "--expression") {
        ++last;
      }
      if (first < last) {
        scripts.emplace_back(first, last);
      }
      i = last - 1;
    }
  }
  if (!in_place) {
    return;  // printed, not written into a file
  }
  for (const auto& [first, last] : scripts) {
    // The lexer splits quoted words; the script is its words joined again.
    std::string script;
    for (std::size_t i = first; i < last; ++i) {
      script += (script.empty() ? "" : " ") + m_tokens[i].text;
    }
    // An address ($, a line number, /regex/), then the command letter and its text.
    std::size_t at = 0;
    if (script[0] == '$') {
      at = 1;
    } else if (script[0] == '/') {
      auto close = script.find('/', 1);
      at = close == std::string::npos ? script.size() : close + 1;
    } else {
      while (at < script.size() && std::isdigit(static_cast<unsigned char>(script[at])) != 0) {
        ++at;
      }
    }
    if (at >= script.size() || (script[at] != 'a' && script[at] != 'i' && script[at] != 'c') ||
        (at + 1 < script.size() && script[at + 1] != ' ' && script[at + 1] != '\\')) {
      continue;
    }
    std::string text = script.substr(at + 1);
    std::size_t lead = text.find_first_not_of(" \\");
    text = lead == std::string::npos ? "" : text.substr(lead);
    for (std::size_t nl = text.find("\\n"); nl != std::string::npos; nl = text.find("\\n", nl)) {
      text.replace(nl, 2, "\n");
    }
    Linter sub(text, Source{m_source.path, FileKind::shell, m_source.role_vars, false});
    for (Finding f : sub.run()) {
      f.line = m_tokens[first].line;
      f.column = m_tokens[first].column;
      m_found.push_back(std::move(f));
    }
  }
}

void Linter::collect_variables() {
  std::size_t command_word = std::string::npos;  // the current statement's first word past keywords
  for (std::size_t i = 0; i < m_tokens.size(); ++i) {
    const Token& t = m_tokens[i];
    if (t.breaks_before || i == 0) {
      command_word = std::string::npos;
    }
    if (command_word == std::string::npos && !shell_keyword(t.text)) {
      command_word = i;
    }
    bool alone = i + 1 >= m_tokens.size() || m_tokens[i + 1].breaks_before;
    if (!t.assigned_to.empty() && alone) {
      m_local[t.assigned_to] = {t.text, fmt::format("line {}", t.line)};
    }
    // YAML "name: value" (a playbook's vars:)
    if (m_source.kind == FileKind::yaml && t.text.size() > 1 && t.text.back() == ':' && i + 1 < m_tokens.size() &&
        m_tokens[i + 1].line == t.line && (i + 2 >= m_tokens.size() || m_tokens[i + 2].breaks_before)) {
      m_local[t.text.substr(0, t.text.size() - 1)] = {m_tokens[i + 1].text, fmt::format("line {}", t.line)};
    }
    // A variable's command runs when the variable is run ("$CMD", "eval $CMD") or handed to a
    // command or function (run_checked "$CMD"); not when it is only printed or tested.
    if (std::string name = shell_variable(t.text); !name.empty() && t.assigned_to.empty()) {
      // "if [ -n "$c" ]": the test, not the if. Kept as the walk goes: one pass, however long the statement.
      const std::size_t start = command_word == std::string::npos ? i : command_word;
      std::string_view first = basename(m_tokens[start].text);
      static const WordSet only_text = {"echo", "printf", "logger", "print", "[", "[[", "test", "local", "declare",
                                        "export", "readonly", "printf_err"};
      // "[" is no word here (a separator): a test shows as a statement starting with an option.
      if (start == i || (only_text.count(first) == 0 && first.front() != '-')) {
        m_executed.insert(name);
      }
    }
  }
}

// run() { echo "+ $*"; "$@"; } ... run nvidia-smi -pm 1: a function of this file that runs its arguments
// ("$@", "$*", "${@:2}" as a command, or handed to a runner: sudo "$@", timeout 5 "$@") is a runner too; so is
// a function that hands them to such a function. Bodies come from one pass of brace matching over the code
// (quotes and comments skipped), and each "$@" belongs to the innermost body around it: linear in the file.
void Linter::collect_wrappers() {
  if (m_source.kind != FileKind::shell ||
      std::none_of(m_tokens.begin(), m_tokens.end(), [](const Token& t) { return t.defines_function; })) {
    return;
  }
  offset_of(m_tokens.front());  // builds m_line_starts
  const std::vector<std::size_t>& line_starts = m_line_starts;
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
  struct Body {
    std::string_view name;
    std::size_t open = 0;
    std::size_t close = std::string_view::npos;  // unmatched: to the end of the file
    bool runs_arguments = false;
  };
  std::vector<Body> bodies;  // in text order
  for (const Token& t : m_tokens) {
    if (!t.defines_function || t.line == 0 || t.line > line_starts.size()) {
      continue;
    }
    // NAME [blanks] () [blanks] [one newline, blanks] {: anything else is no brace body. Each scan covers
    // only the blanks after its own name.
    std::size_t at = offset_of(t) + t.text.size();
    while (at < m_text.size() && blank(m_text[at])) ++at;
    if (m_text.substr(at, 2) == "()") at += 2;
    while (at < m_text.size() && blank(m_text[at])) ++at;
    if (at < m_text.size() && m_text[at] == '\n') ++at;
    while (at < m_text.size() && blank(m_text[at])) ++at;
    if (at < m_text.size() && m_text[at] == '{' && (bodies.empty() || at > bodies.back().open)) {
      Body body;
      body.name = t.text;
      body.open = at;
      bodies.push_back(std::move(body));
    }
  }
  // Braces in code only: a "}" inside quotes or a comment closes nothing.
  std::vector<std::size_t> open_braces;
  std::size_t next_body = 0;
  std::vector<std::size_t> open_bodies;  // indexes into bodies, innermost last
  char quote = 0;
  for (std::size_t at = 0; at < m_text.size(); ++at) {
    const char c = m_text[at];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++at;
      } else if (c == quote) {
        quote = 0;
      }
      continue;
    }
    if (c == '\\') {
      ++at;
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      continue;
    }
    if (c == '#' && (at == 0 || blank(m_text[at - 1]) || m_text[at - 1] == '\n' || m_text[at - 1] == ';')) {
      at = std::min(m_text.find('\n', at), m_text.size()) - 1;
      continue;
    }
    if (c == '{') {
      open_braces.push_back(at);
    } else if (c == '}' && !open_braces.empty()) {
      std::size_t open = open_braces.back();
      open_braces.pop_back();
      if (!open_bodies.empty() && bodies[open_bodies.back()].open == open) {
        bodies[open_bodies.back()].close = at;
        open_bodies.pop_back();
      }
    }
    if (next_body < bodies.size() && bodies[next_body].open == at) {
      open_bodies.push_back(next_body++);
    }
    if (const std::string marker = c == '<' ? heredoc_marker(m_text, at) : std::string(); !marker.empty()) {
      // Its text is no code ("Don't" opens no quote): on past its end line, or to the end when it has none.
      const auto line = static_cast<std::size_t>(std::upper_bound(line_starts.begin(), line_starts.end(), at) -
                                                 line_starts.begin() - 1);
      const std::optional<std::size_t> last = heredoc_end(line, marker);
      at = (last && *last + 1 < line_starts.size() ? line_starts[*last + 1] : m_text.size()) - 1;
    }
  }
  // A body never closed (the matching misread something) makes no wrapper: better a miss than a finding.
  std::erase_if(bodies, [](const Body& b) { return b.close == std::string_view::npos; });
  // Each "$@" to the innermost body around it (bodies nest: a stack, swept in text order), judged by its
  // statement's command word, kept as the sweep goes (one pass, however long the statement).
  std::unordered_map<std::string_view, std::vector<std::size_t>> handed_to;  // function -> bodies handing to it
  std::vector<std::size_t> around;
  std::size_t command_word = std::string::npos;
  next_body = 0;
  for (std::size_t i = 0; i < m_tokens.size(); ++i) {
    const Token& t = m_tokens[i];
    if (t.breaks_before || i == 0) {
      command_word = std::string::npos;
    }
    if (command_word == std::string::npos && !shell_keyword(t.text) && t.assigned_to.empty()) {
      command_word = i;
    }
    const std::size_t at = offset_of(t);
    while (next_body < bodies.size() && bodies[next_body].open < at) {
      while (!around.empty() && bodies[around.back()].close < bodies[next_body].open) {
        around.pop_back();
      }
      around.push_back(next_body++);
    }
    while (!around.empty() && bodies[around.back()].close < at) {
      around.pop_back();
    }
    const std::string& a = t.text;
    const bool all_arguments = a == "$@" || a == "$*" || a.rfind("${@", 0) == 0 || a.rfind("${*", 0) == 0;
    if (around.empty() || !all_arguments || !t.assigned_to.empty()) {
      continue;  // msg="$*": kept, not run
    }
    if (i > 0 && !t.breaks_before && !m_tokens[i - 1].assigned_to.empty() && m_tokens[i - 1].line == t.line) {
      // msg="gpu-setup: $*": still inside the assigned value when an odd number of '"' lies between its '='
      // and this word (the span between two neighbouring words: linear over the file).
      const std::size_t value_at = offset_of(m_tokens[i - 1]);
      const std::size_t equals = m_text.rfind('=', value_at);
      if (equals != std::string_view::npos && value_at - equals <= 2 &&
          std::count(m_text.begin() + static_cast<std::ptrdiff_t>(equals), m_text.begin() + static_cast<std::ptrdiff_t>(at),
                     '"') % 2 == 1) {
        continue;
      }
    }
    if (t.breaks_before && t.break_kind == '(') {
      // args=("$@"), local a=("$@"): an array of them, not a subshell running them.
      std::size_t before = at;
      while (before > 0 && (m_text[before - 1] == '"' || m_text[before - 1] == '\'' || blank(m_text[before - 1]))) {
        --before;
      }
      if (before >= 2 && m_text[before - 1] == '(' && m_text[before - 2] == '=') {
        continue;
      }
    }
    Body& body = bodies[around.back()];
    const std::size_t start = command_word == std::string::npos ? i : command_word;
    std::string_view first = basename(m_tokens[start].text);
    if (start == i || runner(first)) {
      body.runs_arguments = true;
    } else {
      handed_to[first].push_back(around.back());
    }
  }
  // A wrapper of a wrapper, to any depth: each function is marked once, from the functions that call it.
  std::vector<std::string_view> found;
  for (const Body& b : bodies) {
    if (b.runs_arguments && m_wrappers.insert(b.name).second) {
      found.push_back(b.name);
    }
  }
  while (!found.empty()) {
    std::string_view name = found.back();
    found.pop_back();
    auto it = handed_to.find(name);
    if (it == handed_to.end()) {
      continue;
    }
    for (std::size_t caller : it->second) {
      if (m_wrappers.insert(bodies[caller].name).second) {
        found.push_back(bodies[caller].name);
      }
    }
  }
}

Resolved Linter::resolve(const std::string& raw, int depth) const {
  std::string l = lower(raw);
  if (l == "1" || l == "enabled" || l == "enable" || l == "on") {
    return {Setting::on, {}, {}};
  }
  if (l == "0" || l == "disabled" || l == "disable" || l == "off") {
    return {Setting::off, {}, {}};
  }
  std::string fallback;
  std::string name = shell_variable(raw, &fallback);
  if (name.empty()) {
    name = template_variable(raw, &fallback);
  }
  if (name.empty()) {
    return {Setting::other, {}, {}};
  }
  const Assigned* found = nullptr;
  if (auto it = m_local.find(name); it != m_local.end()) {
    found = &it->second;
  } else if (m_source.role_vars != nullptr) {
    if (auto r = m_source.role_vars->find(name); r != m_source.role_vars->end()) {
      found = &r->second;
    }
  }
  if (found != nullptr && depth < 4) {
    Resolved inner = resolve(found->value, depth + 1);
    if (inner.setting == Setting::on || inner.setting == Setting::off) {
      return {inner.setting, name, fmt::format("{} = {} at {}", name, found->value, found->source)};
    }
    return {Setting::unresolved, name, fmt::format("{} = {} at {}", name, found->value, found->source)};
  }
  if (!fallback.empty()) {
    Resolved inner = resolve(fallback, depth + 1);
    if (inner.setting == Setting::on || inner.setting == Setting::off) {
      return {inner.setting, name, fmt::format("{} unset here, its default is {}", name, fallback)};
    }
  }
  return {Setting::unresolved, name, {}};
}

// The Dockerfile instruction token k belongs to ("RUN", "CMD", "ENTRYPOINT"): the upper-case word that begins
// the nearest line at or above it (continuation lines begin with the command's words).
std::string_view Linter::dockerfile_instruction(std::size_t k) const {
  for (std::size_t i = k + 1; i-- > 0;) {
    const Token& t = m_tokens[i];
    if (t.line_start && !t.text.empty() &&
        std::all_of(t.text.begin(), t.text.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) {
      return t.text;
    }
  }
  return {};
}

void Linter::report_site(std::size_t start, std::size_t k, std::size_t end) {
  const Token& site = m_tokens[k];
  if (is_daemon(site.text)) {
    // A unit's ExecStart= (or Nix's `= "..."`) starts it through the init system; a udev RUN+= does not (udevd
    // kills what it started once the event is handled).
    const bool init_system_value = m_tokens[start].break_kind == '=' && m_source.kind != FileKind::udev;
    if (m_source.kind == FileKind::unit || m_source.kind == FileKind::nix || init_system_value ||
        m_tokens[start].break_kind == 'f' || !site.command_key) {
      return;  // a unit's ExecStart: started through the init system
    }
    std::string path = lower(m_source.path);
    if (path.find("init.d/") != std::string::npos || path.find("/init/") != std::string::npos ||
        path.find("rc.d/") != std::string::npos || path.find("upstart") != std::string::npos) {
      return;  // the init system's own script for the daemon
    }
    if (k > 0 && !m_tokens[k].breaks_before &&
        (m_tokens[k - 1].text == "-u" || m_tokens[k - 1].text == "--user" || m_tokens[k - 1].text == "-g")) {
      return;  // a user name, not the program
    }
    for (std::size_t j = k + 1; j < end && j < k + 16; ++j) {
      const std::string& a = m_tokens[j].text;
      if (a == "--version" || a == "-v" || a == "--help" || a == "-h") {
        return;
      }
    }
    m_found.push_back({k_by_hand, site.line, site.column,
                       "nvidia-persistenced started by hand, not through the init system: nothing restarts it, "
                       "nothing orders it before the jobs, and `systemctl` shows the unit inactive",
                       "enable the packaged unit instead: systemctl enable --now nvidia-persistenced (`gpuwarm fix`); "
                       "on a node without systemd this line is the init system's: say so in a comment on it or on the "
                       "line above (`# gpuwarm: ignore LINT005` in a shell script)", {}});
    return;
  }
  for (std::size_t j = k + 1; j < end && j < k + 16; ++j) {
    const std::string& t = m_tokens[j].text;
    std::optional<std::string> value;
    for (std::string_view flag : {"-pm", "--persistence-mode"}) {
      if (t == flag && j + 1 < end) {
        value = m_tokens[j + 1].text;
      } else if (t.size() > flag.size() && t.compare(0, flag.size(), flag) == 0 && t[flag.size()] == '=') {
        value = t.substr(flag.size() + 1);
      }
    }
    if (!value) {
      continue;
    }
    Resolved r = resolve(*value, 0);
    std::string via = r.how.empty() ? std::string{} : fmt::format(" ({})", r.how);
    // An image is built without a GPU, and a container cannot own persistence: it is the host's. A container's
    // CMD or ENTRYPOINT runs on a GPU, but persistence is still the host's.
    const std::string_view instruction =
        m_source.kind == FileKind::dockerfile ? dockerfile_instruction(k) : std::string_view{};
    const bool image = !instruction.empty();
    const std::string k_in_image =
        instruction == "RUN"
            ? "in an image build: there is no GPU to set, and a container cannot own persistence, which is the "
              "host's (nvidia-persistenced there)"
            : fmt::format("at container start ({}): a container cannot own persistence, which is the host's "
                          "(nvidia-persistenced there)",
                          instruction);
    constexpr const char* k_out_of_image = "remove it from the image; on the host, enable nvidia-persistenced (`gpuwarm fix`)";
    switch (r.setting) {
      case Setting::on:
        m_found.push_back({k_legacy, site.line, site.column,
                           (image ? "`nvidia-smi -pm 1` " + k_in_image
                                  : std::string("`nvidia-smi -pm 1` sets the deprecated legacy persistence flag: it "
                                                "hides a daemon that never got enabled and does nothing once the "
                                                "daemon runs")) +
                               via,
                           image ? k_out_of_image : "remove it and enable nvidia-persistenced through systemd (`gpuwarm fix`)",
                           {}});
        break;
      case Setting::off:
        m_found.push_back({k_pm_off, site.line, site.column,
                           (image ? "`nvidia-smi -pm 0` " + k_in_image
                                  : std::string("`nvidia-smi -pm 0` turns persistence off: idle GPUs de-initialize "
                                                "again and the next job pays the cold start")) +
                               via,
                           image ? k_out_of_image
                                 : "remove it; persistence belongs to nvidia-persistenced (leave it on where the node "
                                   "needs it, see `gpuwarm diagnose`)",
                           {}});
        break;
      case Setting::unresolved: {
        // Found, but as an expression (`{{ 1 if legacy else 0 }}`), or not found where gpuwarm looks.
        std::string where =
            !r.how.empty() ? fmt::format("set only to what gpuwarm cannot evaluate ({})", r.how)
            : m_source.role_vars != nullptr
                ? "set nowhere in this file or the role's defaults/ and vars/ (group_vars, host_vars and -e are "
                  "not read)"
                : "set nowhere in this file";
        m_found.push_back(
            {k_pm_unresolved, site.line, site.column,
             fmt::format("`nvidia-smi -pm {}`: the persistence value comes from `{}`, {}; whatever it is, -pm is "
                         "the legacy flag",
                         *value, r.variable, where),
             image ? k_out_of_image : "remove it and enable nvidia-persistenced through systemd (`gpuwarm fix`)", {}});
        break;
      }
      case Setting::other:
        break;
    }
    return;
  }
}

void Linter::find_commands() {
  std::vector<std::size_t> starts;
  for (std::size_t i = 0; i < m_tokens.size(); ++i) {
    if (m_tokens[i].breaks_before || i == 0) {
      starts.push_back(i);
    }
  }
  auto end_of = [&](std::size_t s) {
    auto it = std::upper_bound(starts.begin(), starts.end(), s);
    return it == starts.end() ? m_tokens.size() : *it;
  };
  // Python runs a command only through a call (subprocess.run([...]), os.system("...")): a line that starts
  // with nvidia-smi there is inside a string (a docstring, a test table), and "(" opens a tuple, not a subshell.
  const bool python = python_source();
  std::vector<std::size_t> line_offsets;  // Python: where each line starts, to look back from a word
  if (python) {
    line_offsets.push_back(0);
    for (std::size_t at = m_text.find('\n'); at != std::string_view::npos; at = m_text.find('\n', at + 1)) {
      line_offsets.push_back(at + 1);
    }
  }
  // The function a call's first argument is given to, on the call's line or on the line after its "(" (the
  // layout black gives a long call: subprocess.run(\n    ["nvidia-smi", "-pm", "1"],\n)): the word's quote,
  // "[" and line breaks come between (string prefixes are blanked already). Empty when the word is no call's
  // first argument.
  auto callee_of = [&](const Token& t) -> std::string_view {
    if (t.line == 0 || t.line > line_offsets.size()) {
      return {};
    }
    std::size_t at = line_offsets[t.line - 1] + (t.column > 0 ? t.column - 1 : 0);
    for (unsigned skipped = 0; at > 0 && skipped < 4096; ++skipped) {
      const char c = m_text[at - 1];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '"' && c != '\'' && c != '[') {
        break;
      }
      --at;
    }
    if (at < 2 || m_text[at - 1] != '(') {
      return {};
    }
    const std::size_t name_end = at - 1;
    std::size_t name_start = name_end;
    while (name_start > 0 && name_end - name_start < 256 &&
           (std::isalnum(static_cast<unsigned char>(m_text[name_start - 1])) != 0 || m_text[name_start - 1] == '_')) {
      --name_start;
    }
    return m_text.substr(name_start, name_end - name_start);
  };
  // Calls that only show text: print, a logger, click.echo, Ansible's fail_json, a test's assertion.
  auto shows_text = [](std::string_view f) {
    static const WordSet k_output = {"print", "echo", "secho", "info", "warning", "warn", "error", "debug",
                                     "exception", "critical", "log", "fail_json", "exit_json", "fail", "skipTest"};
    return k_output.count(f) != 0 || f.starts_with("assert");
  };
  // Python names a call that runs a program takes as its first argument (`subprocess.run(cmd)`,
  // `os.system(cmd)`, an Ansible module's `run_command(cmd)`): an assignment to one holds a command that runs,
  // `cmd = ["nvidia-smi", "-pm", "1"]` as much as a literal in the call. Only those calls: a name also goes to
  // len(), str() and a logger, where its text is no command.
  static const WordSet k_program_runners = {"run", "call", "check_call", "check_output", "Popen", "system", "popen",
                                            "getoutput", "getstatusoutput", "run_command", "create_subprocess_exec",
                                            "create_subprocess_shell", "execv", "execvp", "execvpe", "execve",
                                            "execl", "execlp", "spawnv", "spawnvp", "spawnl", "spawnlp"};
  std::unordered_set<std::string_view> run_names;
  auto identifier_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; };
  // Whether `at` lies in a comment or a one-line string of its Python line (docstrings are blanked already):
  // `# then subprocess.run(cmd) applies it` or "see run(cmd)" names no call.
  auto in_python_prose = [this](std::size_t at) {
    const std::size_t line_start = m_text.rfind('\n', at == 0 ? 0 : at - 1);
    char quote = 0;
    for (std::size_t i = line_start == std::string_view::npos ? 0 : line_start + 1; i < at; ++i) {
      const char c = m_text[i];
      if (quote != 0) {
        if (c == '\\') {
          ++i;
        } else if (c == quote) {
          quote = 0;
        }
      } else if (c == '#') {
        return true;
      } else if (c == '"' || c == '\'') {
        quote = c;
      }
    }
    return quote != 0;
  };
  // `def run(self, cmd):` defines a function of that name; its parameters hold nothing yet.
  auto defines = [this](std::size_t callee_start) {
    std::size_t at = callee_start;
    while (at > 0 && (m_text[at - 1] == ' ' || m_text[at - 1] == '\t')) {
      --at;
    }
    return at >= 3 && m_text.substr(at - 3, 3) == "def" &&
           (at == 3 || std::isalnum(static_cast<unsigned char>(m_text[at - 4])) == 0);
  };
  if (python) {
    for (std::size_t open = m_text.find('('); open != std::string_view::npos; open = m_text.find('(', open + 1)) {
      std::size_t callee_start = open;
      while (callee_start > 0 && open - callee_start < 256 && identifier_char(m_text[callee_start - 1])) {
        --callee_start;
      }
      if (k_program_runners.count(m_text.substr(callee_start, open - callee_start)) == 0 || defines(callee_start) ||
          in_python_prose(callee_start)) {
        continue;
      }
      // The first argument's name, as `cmd`, `*cmd`, `args=cmd`, `cmd.split()` or `shlex.split(cmd)` gives it.
      const std::string_view blank = " \t\r\n";
      std::size_t at = m_text.find_first_not_of(blank, open + 1);
      auto skip = [&](std::string_view word) {
        if (at != std::string_view::npos && m_text.substr(at).starts_with(word)) {
          at = m_text.find_first_not_of(blank, at + word.size());
          return true;
        }
        return false;
      };
      skip("*");
      // `args=NAME` (the keyword), never a name that starts with "args" or a comparison `args == x`.
      if (at != std::string_view::npos && m_text.substr(at).starts_with("args") &&
          (at + 4 == m_text.size() || !identifier_char(m_text[at + 4]))) {
        const std::size_t eq = m_text.find_first_not_of(blank, at + 4);
        if (eq != std::string_view::npos && m_text[eq] == '=' && !m_text.substr(eq).starts_with("==")) {
          at = m_text.find_first_not_of(blank, eq + 1);
        }
      }
      const bool in_shlex_split = skip("shlex.split(");
      const std::size_t name_start = at;
      while (at < m_text.size() && identifier_char(m_text[at])) {
        ++at;
      }
      if (name_start == std::string_view::npos || at == name_start) {
        continue;
      }
      const std::size_t name_end = at;
      if (!in_shlex_split) {
        at = m_text.find_first_not_of(blank, at);
        skip(".split()");
      }
      const std::size_t after = m_text.find_first_not_of(blank, at);
      if (after != std::string_view::npos && (m_text[after] == ',' || m_text[after] == ')')) {
        run_names.insert(m_text.substr(name_start, name_end - name_start));
      }
    }
  }
  // Whether the word is the first of a value assigned to one of those names: `NAME = [` or `NAME = "`, the
  // word's quote, "[" or "(" and line breaks between (black's `cmd = [\n    "nvidia-smi", ...`, a
  // triple-quoted script); the "=" starts a statement of its own in the tokens.
  auto assigned_to_run_name = [&](const Token& t) {
    std::size_t at = offset_of(t);
    for (unsigned skipped = 0; at > 0 && skipped < 256; ++skipped) {
      const char c = m_text[at - 1];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '"' && c != '\'' && c != '[' && c != '(') {
        break;
      }
      --at;
    }
    if (at < 2 || m_text[at - 1] != '=' || std::string_view("=!<>:+-*/%&|^").find(m_text[at - 2]) != std::string_view::npos) {
      return false;  // not an assignment: ==, !=, <=, >=, :=, += and the like
    }
    --at;
    while (at > 0 && (m_text[at - 1] == ' ' || m_text[at - 1] == '\t')) {
      --at;
    }
    const std::size_t name_end = at;
    while (at > 0 && name_end - at < 256 && identifier_char(m_text[at - 1])) {
      --at;
    }
    return at < name_end && run_names.count(m_text.substr(at, name_end - at)) != 0;
  };
  for (std::size_t s : starts) {
    if (python) {
      const std::string_view callee = callee_of(m_tokens[s]);
      if ((m_tokens[s].break_kind != 'f' && callee.empty() && !assigned_to_run_name(m_tokens[s])) ||
          shows_text(callee)) {
        continue;
      }
    }
    walk(s, end_of(s), false, m_tokens[s].line_start, 0);
  }
  // `-c` of grep, pgrep, wc and the like counts: `grep -c 'nvidia-smi -pm 1' rc.local` is an audit, not a run.
  // The nearer of a counting tool and a shell before a -c, in the same statement, says whose option it is
  // (`grep -e x -c`, `pdsh ... "grep -c ..."`; `bash -c`, `su -l root -c`). Kept as the tokens go by: one pass.
  static const WordSet k_counting = {"grep", "egrep", "fgrep", "zgrep", "rg", "ag", "pgrep", "pkill", "wc", "uniq"};
  static const WordSet k_shells = {"sh", "bash", "dash", "zsh", "ksh", "ash", "busybox", "su", "runuser"};
  bool counting_so_far = false;  // in this statement, a counting tool came after the last shell
  auto next_start = starts.begin();
  bool counts_with_c = false;  // whether the -c just before this token was a counting tool's
  for (std::size_t i = 0; i < m_tokens.size(); ++i) {
    const Token& t = m_tokens[i];
    while (next_start != starts.end() && *next_start <= i) {
      counting_so_far = false;  // a new statement
      ++next_start;
    }
    // "sh -c 'nvidia-smi -pm 1'", k8s args: ["-c", "..."]: the script of -c runs.
    bool after_c = i > 0 && m_tokens[i - 1].text == "-c" && !t.prose && !counts_with_c;
    counts_with_c = t.text == "-c" && counting_so_far;
    if (const std::string_view word = basename(t.text); k_shells.count(word) != 0) {
      counting_so_far = false;
    } else if (k_counting.count(word) != 0) {
      counting_so_far = true;
    }
    // CMD="nvidia-smi -pm 1" ... $CMD: the assignment holds a command that runs.
    bool held = !t.assigned_to.empty() && m_executed.count(t.assigned_to) != 0;
    if ((after_c || held) && (is_smi(t.text) || is_daemon(t.text))) {
      m_sites.insert(i);
    } else if (held && runner(basename(t.text))) {
      walk(i + 1, end_of(i), true, false, 0);  // CMD="timeout 3m sudo nvidia-smi -pm 1"
    }
    if (t.text == "--no-persistence-mode" && !t.prose) {
      m_found.push_back({k_no_pm, t.line, t.column,
                         "nvidia-persistenced --no-persistence-mode runs the daemon with persistence off: the "
                         "service is active but GPUs still de-initialize",
                         "drop --no-persistence-mode from ExecStart (a drop-in: `gpuwarm fix` writes one)", {}});
    }
  }
  for (std::size_t k : m_sites) {
    auto it = std::upper_bound(starts.begin(), starts.end(), k);
    const std::size_t start = it == starts.begin() ? 0 : *std::prev(it);  // one lookup, not a walk back
    report_site(start, k, end_of(k));
  }
  if (m_source.kind == FileKind::yaml && !m_lines.empty()) {
    ansible_unit_switches();
  }
  report_unit_switches();
}

std::string_view trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  return s.substr(first, s.find_last_not_of(" \t") - first + 1);
}

std::size_t indent_of(std::string_view line) { return std::min(line.size(), line.find_first_not_of(" \t")); }

// The file a shell line writes: "> path", ">> path", "tee [-a] path".
std::string written_path(std::string_view line) {
  std::vector<std::string> words;
  std::string word;
  for (char c : line) {
    if (c == ' ' || c == '\t' || c == '|' || c == ';') {
      if (!word.empty()) {
        words.push_back(word);
        word.clear();
      }
      if (c == '|' || c == ';') {
        words.emplace_back(1, c);
      }
    } else if (c != '"' && c != '\'') {
      word += c;
    }
  }
  if (!word.empty()) {
    words.push_back(word);
  }
  for (std::size_t i = 0; i < words.size(); ++i) {
    const std::string& w = words[i];
    if ((w == ">" || w == ">>") && i + 1 < words.size()) {
      return words[i + 1];
    }
    if ((w.rfind(">>", 0) == 0 || w.rfind('>', 0) == 0) && w.size() > 1 && w[1] != '&' && w.find("<<") == std::string::npos) {
      return w.substr(w[1] == '>' ? 2 : 1);
    }
    if (basename(w) == "tee") {
      for (std::size_t j = i + 1; j < words.size() && words[j] != "|" && words[j] != ";"; ++j) {
        if (words[j][0] != '-') {
          return words[j];
        }
      }
    }
  }
  return {};
}

// `printf '...' > unit` / `echo -e '...' | tee unit`: the unit's path and its text (\n, \t unescaped).
std::pair<std::string, std::string> unit_printed_on_line(std::string_view code) {
  std::string_view head = trim(code);
  if (head.rfind("sudo ", 0) == 0) {
    head = trim(head.substr(5));
  }
  if (head.rfind("printf ", 0) != 0 && head.rfind("echo ", 0) != 0) {
    return {};
  }
  std::string dest = written_path(code);
  if (dest.empty() || !unit_name(dest).is_unit) {
    return {};
  }
  auto open = head.find_first_of("'\"");
  if (open == std::string_view::npos) {
    return {};
  }
  auto close = head.find(head[open], open + 1);
  if (close == std::string_view::npos) {
    return {};
  }
  std::string text;
  std::string_view arg = head.substr(open + 1, close - open - 1);
  for (std::size_t i = 0; i < arg.size(); ++i) {
    if (arg[i] == '\\' && i + 1 < arg.size() && (arg[i + 1] == 'n' || arg[i + 1] == 't')) {
      text += arg[++i] == 'n' ? '\n' : '\t';
    } else {
      text += arg[i];
    }
  }
  return {dest, text};
}

// Text inside this file that is another file: a heredoc written to a unit, an Ansible copy's
// `content:` with a unit `dest:`, a heredoc printed for people (prose). Regions get their own
// reader (or none); their lines are left out of this file's words.
std::vector<LineRange> Linter::embedded_regions() {
  std::vector<LineRange> skip;
  if (m_source.kind == FileKind::unit) {
    return skip;
  }
  std::set<std::string> unterminated;  // heredoc markers with no end line after them: never searched twice
  for (std::size_t i = 0; i < m_lines.size(); ++i) {
    std::string_view code = strip_comment(m_lines[i], m_source.kind);
    if (std::size_t end = heredoc(i, code, unterminated, skip); end != i) {
      i = end;
    } else if (printed_unit(i, code, skip)) {
      continue;
    } else if (m_source.kind == FileKind::yaml) {
      if (std::size_t content_end = yaml_content(i, code, skip); content_end != i) {
        i = content_end;
      } else {
        i = yaml_removed(i, code, skip);
      }
    }
  }
  return skip;
}

// The index of the line that ends the here-doc opened on line `i` (0-based): the first later line that is the
// marker alone, found through an index of the file's trimmed lines built on first use, so a file of many
// here-docs (closed or not) stays linear.
std::optional<std::size_t> Linter::heredoc_end(std::size_t i, const std::string& marker) {
  if (m_line_index.empty()) {
    for (std::size_t j = 0; j < m_lines.size(); ++j) {
      m_line_index[trim(m_lines[j])].push_back(j);
    }
  }
  auto at = m_line_index.find(marker);
  if (at == m_line_index.end()) {
    return std::nullopt;
  }
  auto after = std::upper_bound(at->second.begin(), at->second.end(), i);
  return after == at->second.end() ? std::nullopt : std::optional<std::size_t>(*after);
}

// A heredoc: <<EOF, <<-EOF, << 'EOF', <<"EOF" (not the here-string <<<). Written to a unit: linted as one;
// printed for people (`cat <<EOF` alone): prose; anything else stays this file's code. Returns the end
// line's index, or i when line i starts no heredoc.
std::size_t Linter::heredoc(std::size_t i, std::string_view code, std::set<std::string>& unterminated,
                            std::vector<LineRange>& skip) {
  auto op = code.find("<<");
  const std::string marker = op == std::string_view::npos ? std::string() : heredoc_marker(code, op);
  if (marker.empty() || unterminated.count(marker) != 0) {
    return i;
  }
  const std::optional<std::size_t> end_line = heredoc_end(i, marker);
  if (!end_line) {
    unterminated.insert(marker);
    return i;
  }
  const std::size_t last = *end_line;
  if (last == i + 1) {
    return i;
  }
  const auto first = static_cast<unsigned>(i + 2);
  const auto end = static_cast<unsigned>(last);  // 1-based number of the last body line
  std::string dest = written_path(code);
  std::string_view head = trim(code);
  std::string_view program = basename(head.substr(0, head.find_first_of(" \t<")));
  if (program == "sudo") {
    head = trim(head.substr(4));
    program = basename(head.substr(0, head.find_first_of(" \t<")));
  }
  if (unit_name(dest).is_unit) {
    skip.push_back({first, end});
    lint_region(first, end, Source{dest, FileKind::unit, m_source.role_vars, false});
  } else if (!dest.empty() && kind_for(dest, "") == FileKind::udev) {
    skip.push_back({first, end});
    lint_region(first, end, Source{dest, FileKind::udev, m_source.role_vars, false});
  } else if (dest.empty() && program == "cat" && code.find('|') == std::string_view::npos) {
    skip.push_back({first, end});  // printed for people: a usage text, a banner
  }
  return last;
}

// printf '[Service]\nRestart=no\n' > .../nvidia-persistenced.service.d/x.conf: a unit in one line.
bool Linter::printed_unit(std::size_t i, std::string_view code, std::vector<LineRange>& skip) {
  auto printed = unit_printed_on_line(code);
  if (printed.first.empty()) {
    return false;
  }
  Linter sub(printed.second, Source{printed.first, FileKind::unit, m_source.role_vars, false});
  for (Finding f : sub.run()) {
    f.line = static_cast<unsigned>(i + 1);
    f.column = static_cast<unsigned>(indent_of(code) + 1);
    m_found.push_back(std::move(f));
  }
  skip.push_back({static_cast<unsigned>(i + 1), static_cast<unsigned>(i + 1)});
  return true;
}

// YAML `content: |` whose mapping has a unit `dest:` (or `path:`): the block is linted as that unit.
// Returns the block's last line, or i.
// The last line (0-based) of the value of the key on line i: the lines below it indented deeper than the key.
std::size_t Linter::yaml_value_end(std::size_t i, std::size_t key_indent) const {
  std::size_t last = i;
  for (std::size_t j = i + 1; j < m_lines.size(); ++j) {
    if (trim(m_lines[j]).empty()) {
      continue;
    }
    if (indent_of(m_lines[j]) <= key_indent) {
      break;
    }
    last = j;
  }
  return last;
}

// The keys of the YAML mapping line i is in (its keys at key_indent) with their values as written on their own
// line, unquoted: a task's other arguments, e.g. {"path": "/etc/rc.local", "state": "absent"}.
std::map<std::string, std::string> Linter::yaml_mapping(std::size_t i, std::size_t key_indent) const {
  std::map<std::string, std::string> keys;
  // False once line j has left the mapping. A "- " at the key's own indentation starts the mapping (looking up)
  // or the next one (looking down).
  auto in_mapping = [&](std::size_t j) -> bool {
    std::string_view l = m_lines[j];
    std::string_view lt = trim(l);
    if (lt.empty()) {
      return true;
    }
    bool dash = lt.rfind("- ", 0) == 0;
    std::size_t ind = indent_of(l) + (dash ? 2 : 0);
    if (ind < key_indent || (dash && ind == key_indent && j > i)) {
      return false;
    }
    std::string_view kb = dash ? trim(lt.substr(2)) : lt;
    if (auto colon = kb.find(':'); ind == key_indent && colon != std::string_view::npos) {
      std::string value(trim(kb.substr(colon + 1)));
      std::erase_if(value, [](char c) { return c == '"' || c == '\''; });
      keys.emplace(std::string(kb.substr(0, colon)), std::move(value));
    }
    return !(dash && ind == key_indent && j < i);
  };
  for (std::size_t j = i + 1; j-- > 0 && in_mapping(j);) {
  }
  for (std::size_t j = i + 1; j < m_lines.size() && in_mapping(j); ++j) {
  }
  return keys;
}

std::size_t Linter::yaml_content(std::size_t i, std::string_view code, std::vector<LineRange>& skip) {
  std::string_view t = trim(code);
  bool item = t.rfind("- ", 0) == 0;
  std::string_view body = item ? trim(t.substr(2)) : t;
  if (body.rfind("content:", 0) != 0) {
    return i;
  }
  std::string_view value = trim(body.substr(8));
  if (value.empty() || (value[0] != '|' && value[0] != '>')) {
    return i;
  }
  std::size_t key_indent = indent_of(code) + (item ? 2 : 0);
  std::size_t last = yaml_value_end(i, key_indent);
  if (last == i) {
    return i;
  }
  const auto mapping = yaml_mapping(i, key_indent);
  std::string dest;
  for (const char* key : {"dest", "path"}) {
    if (auto at = mapping.find(key); at != mapping.end() && dest.empty()) {
      dest = at->second;
    }
  }
  if (unit_name(dest).is_unit) {
    const auto first = static_cast<unsigned>(i + 2);
    const auto end = static_cast<unsigned>(last + 1);
    skip.push_back({first, end});
    lint_region(first, end, Source{dest, FileKind::unit, m_source.role_vars, false});
  }
  return last;
}

// A task that takes a line out (lineinfile, cron, blockinfile with `state: absent`): its line, job or block is
// the text removed, not a command run. Returns the value's last line, or i.
std::size_t Linter::yaml_removed(std::size_t i, std::string_view code, std::vector<LineRange>& skip) {
  std::string_view t = trim(code);
  bool item = t.rfind("- ", 0) == 0;
  std::string_view body = item ? trim(t.substr(2)) : t;
  if (body.rfind("line:", 0) != 0 && body.rfind("job:", 0) != 0 && body.rfind("block:", 0) != 0) {
    return i;
  }
  std::size_t key_indent = indent_of(code) + (item ? 2 : 0);
  const auto mapping = yaml_mapping(i, key_indent);
  if (auto state = mapping.find("state"); state == mapping.end() || state->second != "absent") {
    return i;
  }
  std::size_t last = yaml_value_end(i, key_indent);
  skip.push_back({static_cast<unsigned>(i + 1), static_cast<unsigned>(last + 1)});
  return last;
}

// The key whose value is the mapping line i is in (its keys at key_indent): the nearest line above indented
// less, as a key alone ("ansible.builtin.systemd:", "- service:"); "" when that line is no such key.
std::string Linter::yaml_parent_key(std::size_t i, std::size_t key_indent) const {
  for (std::size_t j = i; j-- > 0;) {
    std::string_view code = strip_comment(m_lines[j], m_source.kind);
    std::string_view t = trim(code);
    if (t.empty()) {
      continue;
    }
    const bool dash = t.rfind("- ", 0) == 0;
    const std::size_t ind = indent_of(code) + (dash ? 2 : 0);
    if (ind >= key_indent && !(dash && ind == key_indent)) {
      continue;  // a sibling key of the mapping, or a value nested below one
    }
    if (ind == key_indent) {
      return {};  // the mapping starts at a list item: it is no key's value
    }
    std::string_view key = dash ? trim(t.substr(2)) : t;
    if (key.empty() || key.back() != ':') {
      return {};
    }
    return std::string(trim(key.substr(0, key.size() - 1)));
  }
  return {};
}

// Ansible switches the unit at boot without a systemctl line: a systemd or service task naming it, written as
// a block (`ansible.builtin.systemd:` over `name: nvidia-persistenced` / `masked: true`), a flow mapping
// (`systemd: {name: nvidia-persistenced, enabled: false}`) or key=value words (`service: name=... enabled=no`).
// Recorded as the systemctl verb that does the same; a value Ansible fills in later ("{{ pm }}") says nothing.
void Linter::ansible_unit_switches() {
  static const WordSet modules = {"systemd",
                                  "systemd_service",
                                  "service",
                                  "ansible.builtin.systemd",
                                  "ansible.builtin.systemd_service",
                                  "ansible.builtin.service",
                                  "ansible.legacy.systemd",
                                  "ansible.legacy.systemd_service",
                                  "ansible.legacy.service"};
  auto is_unit = [](std::string_view w) { return w == "nvidia-persistenced" || w == "nvidia-persistenced.service"; };
  auto truth = [](std::string value) -> std::optional<bool> {
    value = lower(value);
    if (value == "true" || value == "yes" || value == "on" || value == "1") {
      return true;
    }
    if (value == "false" || value == "no" || value == "off" || value == "0") {
      return false;
    }
    return std::nullopt;
  };
  std::set<unsigned> seen_lines;
  for (std::size_t k = 0; k < m_tokens.size(); ++k) {
    std::string_view word = m_tokens[k].text;
    while (!word.empty() && (word.back() == ',' || word.back() == '}')) {
      word.remove_suffix(1);
    }
    if (word.rfind("name=", 0) == 0) {
      word.remove_prefix(5);
    }
    if (!is_unit(word) || m_tokens[k].line == 0 || m_tokens[k].line > m_lines.size() ||
        !seen_lines.insert(m_tokens[k].line).second) {
      continue;
    }
    const std::size_t i = m_tokens[k].line - 1;
    const std::string_view code = strip_comment(m_lines[i], m_source.kind);
    std::string_view body = trim(code);
    const bool item = body.rfind("- ", 0) == 0;
    if (item) {
      body = trim(body.substr(2));
    }
    std::string module;
    std::map<std::string, std::string> args;
    if (body.rfind("name:", 0) == 0) {
      const std::size_t key_indent = indent_of(code) + (item ? 2 : 0);
      module = yaml_parent_key(i, key_indent);
      args = yaml_mapping(i, key_indent);
    } else if (auto colon = body.find(": "); colon != std::string_view::npos) {
      module = std::string(trim(body.substr(0, colon)));
      std::string_view rest = trim(body.substr(colon + 2));
      const bool flow = rest.rfind('{', 0) == 0;
      if (flow) {
        rest = trim(rest.substr(1, rest.find('}') == std::string_view::npos ? std::string_view::npos : rest.find('}') - 1));
      }
      while (!rest.empty()) {
        const std::size_t cut = rest.find(flow ? ',' : ' ');
        std::string_view pair = trim(rest.substr(0, cut));
        rest = cut == std::string_view::npos ? std::string_view() : trim(rest.substr(cut + 1));
        const std::size_t sep = pair.find(flow ? ':' : '=');
        if (sep == std::string_view::npos) {
          continue;
        }
        std::string value(trim(pair.substr(sep + 1)));
        std::erase_if(value, [](char c) { return c == '"' || c == '\''; });
        args.emplace(std::string(trim(pair.substr(0, sep))), std::move(value));
      }
    }
    if (modules.count(module) == 0) {
      continue;
    }
    if (auto name = args.find("name"); name == args.end() || !is_unit(name->second)) {
      continue;
    }
    std::optional<bool> masked;
    std::optional<bool> enabled;
    if (auto at = args.find("masked"); at != args.end()) {
      masked = truth(at->second);
    }
    if (auto at = args.find("enabled"); at != args.end()) {
      enabled = truth(at->second);
    }
    if (masked == true) {
      m_unit_switches.emplace(k, "mask");
      m_ansible_switches.insert(k);
    } else if (enabled == false) {
      m_unit_switches.emplace(k, "disable");
      m_ansible_switches.insert(k);
    } else if (enabled == true) {
      m_unit_switches.emplace(k, "enable");
      m_ansible_switches.insert(k);
    } else if (masked == false) {
      m_unit_switches.emplace(k, "unmask");
      m_ansible_switches.insert(k);
    }
  }
}

// The word a here-document opened on `command` ends at ("EOF" for `<<EOF`, `<<-'EOF'`), or "".
std::string heredoc_delimiter(std::string_view command) {
  for (std::size_t at = command.find("<<"); at != std::string_view::npos; at = command.find("<<", at + 3)) {
    if (std::string marker = heredoc_marker(command, at); !marker.empty()) {
      return marker;
    }
  }
  return {};
}

void Linter::lint_region(unsigned first, unsigned last, const Source& inner, bool console) {
  std::string body;
  bool continued = false;     // console: the command line above ends with a backslash
  std::string document_end;   // console: inside a here-document a command opened, up to this word
  for (unsigned n = first; n <= last && n <= m_lines.size(); ++n) {
    std::string line(m_lines[n - 1]);
    // Documentation's prompts: "$ cmd" in any shell block, "# cmd" (root) only in console blocks,
    // where it cannot be a comment. Blanked, keeping columns. In a console block every other line is what a
    // command printed (advice quoting `nvidia-smi -pm 1` included), unless it continues a command: after a
    // backslash, or inside a here-document the command opened (with or without the shell's "> " prompt).
    if (inner.kind == FileKind::shell && is_documentation(m_source.kind)) {
      std::size_t at = indent_of(line);
      const bool prompt = line.compare(at, 2, "$ ") == 0 || (console && line.compare(at, 2, "# ") == 0);
      const bool inside = console && (continued || !document_end.empty());
      if (prompt || (inside && line.compare(at, 2, "> ") == 0)) {
        line[at] = ' ';
      } else if (console && !inside) {
        line.clear();
      }
      const std::string_view kept = trim(line);
      if (console && !document_end.empty()) {
        if (kept == document_end) {
          document_end.clear();
        }
      } else if (console && (prompt || continued)) {
        document_end = heredoc_delimiter(kept);
      }
      continued = console && document_end.empty() && !kept.empty() && kept.back() == '\\';
    }
    body += line;
    body += '\n';
  }
  Linter sub(body, inner);
  for (Finding f : sub.run()) {
    f.line += first - 1;
    m_found.push_back(std::move(f));
  }
}

// Lines carrying "gpuwarm: ignore RULE" opt that rule out; so does a comment line carrying it, for the line
// below (formats where a comment cannot share a line with a command: supervisord, exec-form Dockerfiles).
// The lines that carry one are indexed once per file, so checking a finding is a lookup: linear in the file
// however many findings it has.
class OptOuts {
 public:
  explicit OptOuts(std::string_view text) {
    constexpr std::string_view marker = "gpuwarm: ignore ";
    if (text.find(marker) == std::string_view::npos) {
      return;  // the usual file: nothing to index
    }
    for_each_line(text, [&](unsigned line, std::string_view body) {
      if (auto at = body.find(marker); at != std::string_view::npos) {
        m_lines[line].push_back(body.substr(at));
        const std::string_view head = trim(body);
        if (head.starts_with('#') || head.starts_with("//") || head.starts_with(';')) {
          m_lines[line + 1].push_back(body.substr(at));
        }
      }
    });
  }

  bool ignored(const Finding& f) const {
    auto it = m_lines.find(f.line);
    return it != m_lines.end() && std::any_of(it->second.begin(), it->second.end(), [&](std::string_view opt_out) {
             return opt_out.find(f.rule) != std::string_view::npos;
           });
  }

 private:
  std::unordered_map<unsigned, std::vector<std::string_view>> m_lines;  // line -> texts from the marker on
};

FileKind fence_kind(std::string_view lang, bool& console) {
  std::string l = lower(trim(lang));
  l = l.substr(0, l.find_first_of(" {,"));
  console = l == "console" || l == "shell-session" || l == "shellsession" || l == "terminal" || l == "sh-session";
  if (l == "yaml" || l == "yml") {
    return FileKind::yaml;
  }
  if (l == "ini" || l == "systemd" || l == "service" || l == "unit" || l == "cfg") {
    return FileKind::unit;
  }
  if (l == "dockerfile" || l == "docker") {
    return FileKind::dockerfile;
  }
  if (l == "nix") {
    return FileKind::nix;
  }
  return FileKind::shell;
}

// A unit known by its content, not its name: a template or file called "x_service.erb" or "gpu-unit".
bool reads_as_unit(std::string_view text) {
  return (text.rfind("[Unit]", 0) == 0 || text.find("\n[Unit]") != std::string_view::npos) &&
         text.find("\n[Service]") != std::string_view::npos;
}

std::vector<Finding> Linter::run() {
  if (m_source.kind == FileKind::text && reads_as_unit(m_text)) {
    m_source.kind = FileKind::unit;
  }
  if (python_source()) {
    m_prose_blanked = blank_python_prose(m_text);
    m_text = m_prose_blanked;
  }
  const FileKind kind = m_source.kind;
  auto has = [this](std::string_view needle) { return m_text.find(needle) != std::string_view::npos; };
  const UnitName unit = unit_name(m_source.path);
  if (is_documentation(kind) && !m_source.docs) {
    return {};
  }
  // Most files mention none of this: skip them. Every rule needs one of these
  // substrings (or a unit named for the daemon), so the shortcut changes no result:
  // the flag rules need -pm / --persistence-mode and a word naming nvidia-smi
  // (nvidia-smi, nvidia_smi, NVIDIA_SMI, nvsmi); the daemon and unit rules its name.
  bool flags = (has("-pm") || has("persistence-mode")) &&
               (has("nvidia") || has("NVIDIA") || has("nvsmi") || has("NVSMI") || has("Nvidia"));
  if (!unit.persistenced && !m_source.persistenced_dropin && !flags && !has("nvidia-persistenced") &&
      !has("no-persistence-mode")) {
    return {};
  }
  // Only files that embed other files (heredocs, Ansible content:, docs' code blocks) or take lines out
  // (`state: absent`) need their lines.
  if (is_documentation(kind) || has("<<") || has("content:") || has(".service") ||
      (kind == FileKind::yaml && (has("absent") || has("nvidia-persistenced")))) {
    for_each_line(m_text, [this](unsigned, std::string_view l) { m_lines.push_back(l); });
  }
  if (is_documentation(kind)) {
    // Code blocks only: Markdown fences (``` / ~~~) and reStructuredText code directives and :: blocks.
    for (std::size_t i = 0; i < m_lines.size(); ++i) {
      std::string_view t = trim(m_lines[i]);
      bool console = false;
      if (kind == FileKind::doc_markdown && (t.rfind("```", 0) == 0 || t.rfind("~~~", 0) == 0)) {
        std::string_view fence = t.substr(0, 3);
        FileKind inner = fence_kind(t.substr(3), console);
        std::size_t j = i + 1;
        while (j < m_lines.size() && trim(m_lines[j]).rfind(fence, 0) != 0) {
          ++j;
        }
        if (j > i + 1) {
          lint_region(static_cast<unsigned>(i + 2), static_cast<unsigned>(j), Source{{}, inner, m_source.role_vars, false},
                      console);
        }
        i = j;
      } else if (kind == FileKind::doc_rst && (t.rfind(".. code", 0) == 0 || t.rfind(".. sourcecode", 0) == 0 ||
                                               (ends_with(t, "::") && t.rfind("..", 0) != 0))) {
        FileKind inner = FileKind::shell;
        if (auto colons = t.find("::"); t.rfind("..", 0) == 0 && colons != std::string_view::npos) {
          inner = fence_kind(t.substr(colons + 2), console);
        }
        std::size_t base = indent_of(m_lines[i]);
        std::size_t j = i + 1;
        std::size_t last = i;
        for (; j < m_lines.size(); ++j) {
          if (trim(m_lines[j]).empty()) {
            continue;
          }
          if (indent_of(m_lines[j]) <= base || (trim(m_lines[j]).rfind(":", 0) == 0 && last == i)) {
            if (indent_of(m_lines[j]) <= base) {
              break;
            }
            continue;  // directive options (:linenos:)
          }
          last = j;
        }
        if (last > i) {
          lint_region(static_cast<unsigned>(i + 2), static_cast<unsigned>(last + 1),
                      Source{{}, inner, m_source.role_vars, false}, console);
        }
        i = last;
      }
    }
  } else {
    std::vector<LineRange> skip = embedded_regions();
    m_tokens = tokenize(m_text, kind, skip);
    collect_variables();
    collect_wrappers();
    find_commands();
    if (kind == FileKind::unit) {
      UnitDoc doc = parse_unit(m_text);
      doc.dropin = unit.dropin || m_source.persistenced_dropin;  // service.d/x.conf is a drop-in by its folder
      doc.named = unit.persistenced || m_source.persistenced_dropin;
      doc.templated = strip_template_suffix(m_source.path) != m_source.path || has("{%") || has("<%");
      judge_unit(doc, m_found);
    } else if (kind == FileKind::nix) {
      judge_unit(nix_persistenced_unit(m_text), m_found);
    }
  }
  const OptOuts opt_outs(m_text);
  std::erase_if(m_found, [&](const Finding& f) { return opt_outs.ignored(f); });
  drop_restores_and_unloads();
  std::sort(m_found.begin(), m_found.end(), [](const Finding& a, const Finding& b) {
    return std::tie(a.line, a.column, a.rule) < std::tie(b.line, b.column, b.rule);
  });
  m_found.erase(std::unique(m_found.begin(), m_found.end(),
                            [](const Finding& a, const Finding& b) {
                              return a.line == b.line && a.column == b.column && a.rule == b.rule;
                            }),
                m_found.end());
  return std::move(m_found);
}

}  // namespace

const char* kind_name(FileKind k) {
  switch (k) {
    case FileKind::shell: return "shell";
    case FileKind::yaml: return "yaml";
    case FileKind::unit: return "systemd-unit";
    case FileKind::nix: return "nix";
    case FileKind::dockerfile: return "dockerfile";
    case FileKind::udev: return "udev-rules";
    case FileKind::text: return "text";
    case FileKind::doc_markdown: return "markdown";
    case FileKind::doc_rst: return "restructuredtext";
    case FileKind::doc_text: return "plain-text-doc";
  }
  return "?";
}

bool is_documentation(FileKind k) {
  return k == FileKind::doc_markdown || k == FileKind::doc_rst || k == FileKind::doc_text;
}

FileKind kind_for(std::string_view path, std::string_view first_line) {
  std::string_view inner = strip_template_suffix(path);
  std::string_view base = basename(inner);
  std::string name = lower(base);
  if (unit_name(inner).is_unit) {
    return FileKind::unit;
  }
  for (const char* ext : {".socket", ".timer", ".target", ".mount", ".path"}) {
    if (ends_with(name, ext)) {
      return FileKind::unit;
    }
  }
  // JSON reads as YAML here ("key": value): Packer's "inline": [...], cloud configs.
  if (ends_with(name, ".yml") || ends_with(name, ".yaml") || ends_with(name, ".sls") || ends_with(name, ".json")) {
    return FileKind::yaml;
  }
  if (ends_with(name, ".nix")) {
    return FileKind::nix;
  }
  if (name == "dockerfile" || ends_with(name, ".dockerfile") || name.rfind("dockerfile.", 0) == 0 ||
      name == "containerfile") {
    return FileKind::dockerfile;
  }
  if (name.find("cron") != std::string::npos || inner.find("/cron") != std::string_view::npos) {
    return FileKind::shell;
  }
  if (ends_with(name, ".md") || ends_with(name, ".markdown")) {
    return FileKind::doc_markdown;
  }
  if (ends_with(name, ".rst")) {
    return FileKind::doc_rst;
  }
  for (const char* doc : {".txt", ".adoc", ".asciidoc", ".textile"}) {
    if (ends_with(name, doc)) {
      return FileKind::doc_text;
    }
  }
  for (const char* doc : {"readme", "changelog", "news", "install", "license", "copying", "authors", "contributing"}) {
    if (name == doc) {
      return FileKind::doc_text;
    }
  }
  for (const char* script : {".sh", ".bash", ".zsh", ".ksh", ".conf", ".pp", ".rb", ".py", ".pl", ".tf", ".hcl",
                             ".cfg", ".env", ".service.in"}) {
    if (ends_with(name, script)) {
      return FileKind::shell;  // NHC, Puppet, Ruby, Python, Terraform: # comments too
    }
  }
  // udev rules: RUN+= programs run on every matching event (a GPU added, the power supply changing). polkit's
  // .rules are JavaScript.
  if ((ends_with(name, ".rules") && inner.find("polkit") == std::string_view::npos) ||
      inner.find("udev/rules.d/") != std::string_view::npos) {
    return FileKind::udev;
  }
  if (name == "rc.local" || name == "makefile" || name == "vagrantfile" || name == "jenkinsfile" ||
      first_line.rfind("#!", 0) == 0) {
    return FileKind::shell;
  }
  return FileKind::text;
}

Variables parse_role_variables(std::string_view yaml_text, std::string_view source_name) {
  Variables vars;
  for_each_line(yaml_text, [&](unsigned n, std::string_view line) {
    if (line.empty() || !(std::isalpha(static_cast<unsigned char>(line[0])) != 0 || line[0] == '_')) {
      return;
    }
    auto colon = line.find(':');
    if (colon == std::string_view::npos || (colon + 1 < line.size() && line[colon + 1] != ' ')) {
      return;
    }
    std::string_view name = line.substr(0, colon);
    if (name.find_first_of(" \t") != std::string_view::npos) {
      return;
    }
    std::string_view value = strip_comment(line.substr(colon + 1), FileKind::yaml);
    value = trim(value);
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front()) {
      value = value.substr(1, value.size() - 2);
    }
    if (!value.empty() && value != "|" && value != ">") {
      vars[std::string(name)] = {std::string(value), fmt::format("{}:{}", source_name, n)};
    }
  });
  return vars;
}

const std::vector<RuleInfo>& rules() {
  static const std::vector<RuleInfo> table = {
      {k_legacy, "legacy-pm-flag", "`nvidia-smi -pm 1` run (any spelling, through any runner): the deprecated legacy flag"},
      {k_no_pm, "no-persistence-mode", "`nvidia-persistenced --no-persistence-mode`: daemon running, persistence off"},
      {k_pm_off, "pm-off", "`nvidia-smi -pm 0` run on a node: turns persistence off"},
      {k_pm_unresolved, "pm-unresolved", "`nvidia-smi -pm $VAR` / `{{ var }}` whose value is set nowhere gpuwarm can read"},
      {k_by_hand, "daemon-by-hand", "nvidia-persistenced started from a script, not through the init system"},
      {k_switched_off, "daemon-switched-off",
       "`systemctl mask nvidia-persistenced`, or `disable` with no enable of it in the same file"},
      {"LINT010", "stop-when-unneeded", "nvidia-persistenced unit with StopWhenUnneeded=true"},
      {"LINT011", "no-restart", "nvidia-persistenced unit with Restart=no, on-success or on-watchdog (or a whole unit without Restart=)"},
      {"LINT012", "var-run-pidfile", "nvidia-persistenced unit with a PIDFile under /var/run"},
      {"LINT013", "type-not-forking",
       "nvidia-persistenced unit with a Type= other than forking (or a whole unit without Type=)"},
      {"LINT014", "unit-runs-other", "a unit named nvidia-persistenced whose ExecStart runs something else"},
      {"LINT015", "exec-start-twice",
       "nvidia-persistenced unit or drop-in leaving two ExecStart= in force (systemd refuses to load the unit)"},
  };
  return table;
}

namespace {

// gpuwarm's own JSON reports quote the anti-patterns they found ("do not use `nvidia-smi -pm 1`"), and the
// Ansible role saves them in the tree it deploys from: they are findings already, not configuration.
// (Keys are sorted, so "kind" may come after a long "diagnosis": the whole text is searched; a JSON string
// cannot hold an unescaped quote, so the pair appears only as a key and its value.)
bool is_gpuwarm_report(std::string_view text) {
  auto start = text.find_first_not_of(" \t\r\n");
  if (start == std::string_view::npos || text[start] != '{') {
    return false;
  }
  for (std::string_view key : {"\"kind\": \"gpuwarm-", "\"kind\":\"gpuwarm-"}) {
    if (text.find(key) != std::string_view::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<Finding> lint_text(std::string_view text, const Source& source) {
  if (source.kind == FileKind::yaml && is_gpuwarm_report(text)) {
    return {};
  }
  return Linter(text, source).run();
}

std::vector<Finding> lint_text(std::string_view text, FileKind kind) {
  return lint_text(text, Source{{}, kind, nullptr, false});
}

}  // namespace gpuwarm::lint
