#include "lint/words.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdint>

namespace gpuwarm::lint {

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

namespace {

// ASCII, no locale and no allocation: called for every file of a tree.
bool iends_with(std::string_view s, std::string_view lower_suffix) {
  if (s.size() < lower_suffix.size()) {
    return false;
  }
  s = s.substr(s.size() - lower_suffix.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i] >= 'A' && s[i] <= 'Z' ? static_cast<char>(s[i] - 'A' + 'a') : s[i];
    if (c != lower_suffix[i]) {
      return false;
    }
  }
  return true;
}

}  // namespace

std::string_view strip_template_suffix(std::string_view path) {
  static constexpr std::string_view suffixes[] = {".j2",  ".jinja", ".jinja2",   ".erb", ".tmpl",     ".tpl",
                                                  ".epp", ".in",    ".template", ".mustache", ".hbs"};
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view suffix : suffixes) {
      if (path.size() > suffix.size() && iends_with(path, suffix) && path[path.size() - suffix.size() - 1] != '/') {
        path.remove_suffix(suffix.size());
        stripped = true;
      }
    }
  }
  return path;
}

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

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
  int braces = 0;  // inside ${...}: a '#' there is an expansion ("${#arr[@]}", "${x#prefix}")
  for (std::size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote != 0) {
      if (c == '\\' && quote == '"') {
        ++i;
      } else if (c == quote) {
        quote = 0;
      }
    } else if (c == '$' && i + 1 < line.size() && line[i + 1] == '{') {
      ++braces;
      ++i;
    } else if (c == '}' && braces > 0) {
      --braces;
    } else if (c == '"' || c == '\'') {
      // An apostrophe inside a word ("don't") opens nothing in YAML or Nix plain text.
      bool word_inside = i > 0 && std::isalnum(static_cast<unsigned char>(line[i - 1])) != 0;
      if (!(c == '\'' && word_inside && kind != FileKind::shell && kind != FileKind::dockerfile)) {
        quote = c;
      }
    } else if (c == '#' && braces == 0 && (i == 0 || line[i - 1] == ' ' || line[i - 1] == '\t')) {
      return line.substr(0, i);
    }
  }
  return line;
}

namespace {

// Keys whose values are text for people, not commands.
bool prose_key(std::string_view key) {
  // Text shown, or (Ansible) text matched or tested, never run: a role that removes `-pm 1` names it here.
  static constexpr std::array<std::string_view, 24> keys = {
      "name",    "msg",   "description", "summary",    "title",       "help",    "comment",  "fail_msg",
      "success_msg", "message", "note", "notes", "label", "display_name", "debug", "info", "warn",
      "regexp", "search_string", "when", "that", "failed_when", "changed_when", "until"};
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

bool command_key(std::string_view key) {
  static constexpr std::array<std::string_view, 20> keys = {
      "command", "commands", "cmd",   "shell",   "raw",   "script",       "scripts",       "run",     "args", "argv",
      "entrypoint", "runcmd", "bootcmd", "exec", "inline", "before_script", "after_script", "execute", "ansible.builtin.command",
      "ansible.builtin.shell"};
  return std::find(keys.begin(), keys.end(), key) != keys.end() || key.rfind("Exec", 0) == 0;
}

bool identifier(std::string_view s) {
  if (s.empty() || !(std::isalpha(static_cast<unsigned char>(s[0])) != 0 || s[0] == '_')) {
    return false;
  }
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; });
}

bool exec_key(std::string_view key) {
  return key.rfind("Exec", 0) == 0 && key.size() > 4 && std::isupper(static_cast<unsigned char>(key[4])) != 0;
}

// udev keys whose value is a program to run: RUN+="...", RUN{program}+=, PROGRAM=, IMPORT{program}=.
bool udev_program_key(std::string_view key) {
  if (key.ends_with('+')) {
    key.remove_suffix(1);
  }
  return key == "RUN" || key == "RUN{program}" || key == "PROGRAM" || key == "IMPORT{program}";
}

// "$(command -v nvidia-smi)" and friends name a program by lookup: the word is that program.
std::string lookup_in_substitution(std::string_view inner) {
  auto first = inner.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  inner = inner.substr(first);
  for (std::string_view prefix : {"command -v ", "command -V ", "which ", "type -p ", "type -P ", "whereis -b "}) {
    if (inner.rfind(prefix, 0) == 0) {
      std::string_view rest = inner.substr(prefix.size());
      rest = rest.substr(0, rest.find_last_not_of(" \t") + 1);
      if (!rest.empty() && rest.find_first_of(" \t;|&") == std::string_view::npos) {
        return std::string(rest);
      }
    }
  }
  return {};
}

struct YamlKey {
  std::size_t indent;
  std::string key;
};

// A YAML scalar that goes on over the lines below its key, folded into one line by the parser: `key: >` blocks,
// plain scalars, and quoted ones left open. Literal `|` blocks keep their newlines and are not this.
enum class YamlFold { none, folded, plain, double_quoted, single_quoted };

// An odd number of unescaped quotes leaves the scalar open (\" in double quotes; '' in single ones pairs up).
bool leaves_quote_open(std::string_view s, char quote) {
  bool open = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (quote == '"' && s[i] == '\\') {
      ++i;
    } else if (s[i] == quote) {
      open = !open;
    }
  }
  return open;
}

YamlFold fold_of(std::string_view value) {
  if (value.empty() || value == "-" || value.starts_with("- ") || value.front() == '|' || value.front() == '[' || value.front() == '{' ||
      value.front() == '&' || value.front() == '*' || value.front() == '!') {
    return YamlFold::none;
  }
  if (value.front() == '>') {
    return YamlFold::folded;
  }
  if (value.front() == '"') {
    return leaves_quote_open(value, '"') ? YamlFold::double_quoted : YamlFold::none;
  }
  if (value.front() == '\'') {
    return leaves_quote_open(value, '\'') ? YamlFold::single_quoted : YamlFold::none;
  }
  return YamlFold::plain;
}

constexpr unsigned k_array_lines = 200;

// For each position of a line, whether it lies inside quotes ('...' and "...", a backslash escaping the next
// character outside single quotes), read from the line's start. Per line: a string spread over lines is not
// followed. One pass, so asking at every position of a long line stays linear.
std::vector<char> quoted_mask(std::string_view code) {
  std::vector<char> quoted(code.size() + 1, 0);
  char quote = 0;
  for (std::size_t k = 0; k < code.size(); ++k) {
    quoted[k] = quote != 0 ? 1 : 0;
    const char c = code[k];
    if (c == '\\' && quote != '\'') {
      if (k + 1 < code.size()) {
        quoted[++k] = quote != 0 ? 1 : 0;
      }
    } else if (quote == 0 && (c == '"' || c == '\'')) {
      quote = c;
    } else if (c == quote) {
      quote = 0;
    }
  }
  quoted[code.size()] = quote != 0 ? 1 : 0;
  return quoted;
}

// For each opening bracket of a line, the index just past the bracket that closes it (npos when none), all
// in one pass: asked at every "$(" or "${" of a long line, a scan from each would be quadratic.
std::vector<std::size_t> bracket_ends(std::string_view code, char open_c, char close_c) {
  std::vector<std::size_t> ends(code.size(), std::string_view::npos);
  std::vector<std::size_t> open;
  for (std::size_t k = 0; k < code.size(); ++k) {
    if (code[k] == open_c) {
      open.push_back(k);
    } else if (code[k] == close_c && !open.empty()) {
      ends[open.back()] = k + 1;
      open.pop_back();
    }
  }
  return ends;
}

// An array assignment's "(" at code[open]: "NAME=(" or "NAME+=(", unquoted, where a command starts (after
// local, declare -a, readonly, export and the like too). Not "=(" inside a string, a regex or a glob.
bool opens_array(std::string_view code, std::size_t open, const std::vector<char>& quoted) {
  std::size_t name_end = open - 1;  // the '='
  if (name_end > 0 && code[name_end - 1] == '+') {
    --name_end;
  }
  std::size_t name_start = name_end;
  while (name_start > 0 && (std::isalnum(static_cast<unsigned char>(code[name_start - 1])) != 0 ||
                            code[name_start - 1] == '_')) {
    --name_start;
  }
  if (!identifier(code.substr(name_start, name_end - name_start)) || quoted[open] != 0) {
    return false;
  }
  std::string_view before = code.substr(0, name_start);
  for (;;) {  // declare -a -x NAME=(: past the builtin's options, then the builtin
    before = before.substr(0, before.find_last_not_of(" \t") + 1);
    if (before.empty() || std::string_view(";&|({").find(before.back()) != std::string_view::npos) {
      return true;
    }
    const std::size_t word_start = before.find_last_of(" \t;&|({") + 1;
    const std::string_view word = before.substr(word_start);
    if (word.front() == '-') {
      before = before.substr(0, word_start);
      continue;
    }
    return word == "local" || word == "declare" || word == "typeset" || word == "readonly" || word == "export";
  }
}

// The terminator of a here-document this line opens ("<<EOF", "<<-'EOF'", "<< \"END\""), "" when none.
std::string heredoc_terminator(std::string_view code, const std::vector<char>& quoted) {
  for (std::size_t at = code.find("<<"); at != std::string_view::npos; at = code.find("<<", at + 2)) {
    std::size_t k = at + 2;
    if (k < code.size() && code[k] == '<') {
      at = k;  // "<<<": a here-string
      continue;
    }
    if (k < code.size() && code[k] == '-') {
      ++k;
    }
    while (k < code.size() && (code[k] == ' ' || code[k] == '\t')) {
      ++k;
    }
    if (k < code.size() && (code[k] == '\'' || code[k] == '"' || code[k] == '\\')) {
      ++k;
    }
    std::size_t end = k;
    while (end < code.size() && (std::isalnum(static_cast<unsigned char>(code[end])) != 0 || code[end] == '_')) {
      ++end;
    }
    if (end > k && quoted[at] == 0) {
      return std::string(code.substr(k, end - k));
    }
  }
  return {};
}

}  // namespace

std::vector<Token> tokenize(std::string_view text, FileKind kind, const std::vector<LineRange>& skip_lines) {
  std::vector<Token> out;
  bool boundary = true;
  char break_kind = '\n';
  bool in_block_comment = false;
  bool continued = false;  // the previous line ended with a backslash
  // Inside a shell array assignment spread over lines (cmd=(\n  nvidia-smi\n  -pm 1\n)): its lines are one
  // list of words, as on one line. Bounded, so an array never closed does not join the rest of the file.
  unsigned array_lines_left = 0;
  std::string heredoc_end;  // inside a here-document until this line: its "=(" is text, not an array
  std::vector<YamlKey> yaml_keys;
  YamlFold fold = YamlFold::none;  // the scalar being folded, owned by the key at fold_indent
  std::size_t fold_indent = 0;
  std::size_t fold_block_indent = 0;  // a `>` block's first line: lines indented more keep their newlines
  bool fold_newline = false;          // a blank line inside the scalar: the next line starts anew
  // A `#` word in a `>` block comments out, for the shell, the rest of the line the parser folds: the lines
  // folded onto it too ("# note\n  nvidia-smi -pm 1" runs nothing).
  bool fold_shell_comment = false;
  // A list item's first word, while its scalar may still go on: once it does, the item is a command line of its
  // own ("- nvidia-smi\n    -pm 1"), not one word of an argv list.
  std::size_t fold_item_token = SIZE_MAX;
  std::size_t skip_at = 0;
  const bool yaml = kind == FileKind::yaml;
  for_each_line(text, [&](unsigned line_no, std::string_view raw) {
    while (skip_at < skip_lines.size() && skip_lines[skip_at].last < line_no) {
      ++skip_at;
    }
    if (skip_at < skip_lines.size() && skip_lines[skip_at].first <= line_no) {
      boundary = true;
      break_kind = '\n';
      continued = false;
      return;
    }
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
    const std::size_t indent = std::min(code.size(), code.find_first_not_of(" \t"));
    std::string_view trimmed = code.substr(indent);
    // Dockerfile: comment lines inside a continued RUN are dropped by the builder, the command goes on.
    if (kind == FileKind::dockerfile && continued && trimmed.empty()) {
      return;
    }
    // A line of a folded scalar continues the command on the line above: no key, no list item, no new command.
    bool folds_on = false;
    // In a `>` block a `#` line is text, not a YAML comment (only the shell reads it as one).
    const bool block_comment = yaml && fold == YamlFold::folded && code.size() < raw.size() && raw[code.size()] == '#';
    if (yaml && fold != YamlFold::none) {
      const bool quoted = fold == YamlFold::double_quoted || fold == YamlFold::single_quoted;
      if (trimmed.empty() && !block_comment) {
        fold_newline = true;
      } else if (indent > fold_indent || quoted) {
        if (fold == YamlFold::folded && fold_block_indent == 0) {
          fold_block_indent = indent;
        }
        const bool more_indented = fold == YamlFold::folded && indent > fold_block_indent;
        folds_on = !fold_newline && !more_indented;
        fold_newline = more_indented;  // a more-indented line keeps the newline after it too
        if (folds_on && fold_item_token < out.size()) {
          out[fold_item_token].breaks_before = true;
          out[fold_item_token].break_kind = '-';
        }
        fold_item_token = SIZE_MAX;
        if (quoted && leaves_quote_open(trimmed, fold == YamlFold::double_quoted ? '"' : '\'')) {
          fold = YamlFold::none;  // this line closes it
        }
      } else {
        fold = YamlFold::none;
      }
    }
    if (fold != YamlFold::folded || !folds_on) {
      fold_shell_comment = false;  // the shell's line ended with the scalar, or with a newline the block keeps
    }
    if (fold_shell_comment) {
      return;  // folded onto a commented line: the shell never runs it
    }
    fold_shell_comment = block_comment;
    if (!folds_on && !trimmed.empty()) {
      fold_item_token = SIZE_MAX;  // the item's scalar did not go on: its word may still be an argv's
    }
    const bool in_scalar = folds_on || (yaml && fold != YamlFold::none && !trimmed.empty() && indent > fold_indent);
    bool list_item = yaml && !in_scalar && (trimmed.substr(0, 2) == "- " || trimmed == "-");
    if (yaml && !trimmed.empty() && !in_scalar) {
      // The key that owns this line: a YAML key stack by indentation.
      std::size_t key_indent = list_item ? indent + 2 : indent;
      std::string_view body = list_item ? trimmed.substr(std::min<std::size_t>(2, trimmed.size())) : trimmed;
      body = body.substr(std::min(body.size(), body.find_first_not_of(' ')));
      auto colon = body.find(':');
      bool is_key = colon != std::string_view::npos && colon > 0 &&
                    (colon + 1 == body.size() || body[colon + 1] == ' ' || body[colon + 1] == '\t') &&
                    body.substr(0, colon).find_first_of(" \t\"'{[") == std::string_view::npos;
      if (is_key) {
        while (!yaml_keys.empty() && yaml_keys.back().indent >= key_indent) {
          yaml_keys.pop_back();
        }
        yaml_keys.push_back({key_indent, std::string(body.substr(0, colon))});
        std::string_view value = body.substr(colon + 1);
        value = value.substr(std::min(value.size(), value.find_first_not_of(" \t")));
        fold = fold_of(value);
        fold_indent = key_indent;
        fold_block_indent = 0;
        fold_newline = false;
      } else {
        while (!yaml_keys.empty() && yaml_keys.back().indent > indent) {
          yaml_keys.pop_back();
        }
        if (list_item) {  // "- >" or "- nvidia-smi" going on below (k8s args:, cloud-init runcmd:, CI script:)
          fold = fold_of(body);
          fold_indent = indent;
          fold_block_indent = 0;
          fold_newline = false;
          fold_item_token = out.size();  // the first word this line pushes
        }
      }
    }
    bool prose = false;
    bool runs = !yaml;
    if (yaml && !yaml_keys.empty()) {
      // Salt runs the "name" of a cmd.run state.
      bool salt = std::any_of(yaml_keys.begin(), yaml_keys.end(),
                              [](const YamlKey& k) { return k.key.rfind("cmd.", 0) == 0; });
      prose = prose_key(yaml_keys.back().key) && !salt;
      runs = command_key(yaml_keys.back().key) || (salt && yaml_keys.back().key == "name");
    }
    // "- nvidia-smi" (one word) continues an argv list; "- nvidia-smi -pm 1"
    // (cloud-init runcmd, a list of command lines) is a command of its own.
    if (list_item && trimmed.size() > 2 &&
        trimmed.substr(2).find_first_of(" \t") < trimmed.substr(2).find_last_not_of(" \t")) {
      boundary = true;
      break_kind = '-';
    }
    // "- >" / "- |": a block below is a command line of its own, not the next word of the item before.
    if (list_item && trimmed.size() > 2 && (trimmed[2] == '>' || trimmed[2] == '|')) {
      boundary = true;
      break_kind = '-';
    }
    if (!list_item && !continued && array_lines_left == 0 && !folds_on) {
      boundary = true;
      break_kind = '\n';
    }
    array_lines_left = array_lines_left > 0 ? array_lines_left - 1 : 0;
    // What this line's brackets and quotes are, worked out once, on first use (most lines never ask).
    std::vector<char> quoted;
    std::vector<std::size_t> paren_end;
    std::vector<std::size_t> brace_end;
    std::size_t template_close = 0;  // where the next "}}" starts (npos: none left), valid while >= its ask
    bool template_close_known = false;
    auto quotes = [&]() -> const std::vector<char>& {
      if (quoted.empty()) {
        quoted = quoted_mask(code);
      }
      return quoted;
    };
    auto end_of = [&code](std::vector<std::size_t>& ends, char open_c, char close_c, std::size_t open) {
      if (ends.empty()) {
        ends = bracket_ends(code, open_c, close_c);
      }
      return ends[open];
    };
    auto next_template_close = [&](std::size_t from) {
      if (!template_close_known || (template_close != std::string_view::npos && template_close < from)) {
        template_close = code.find("}}", from);
        template_close_known = true;
      }
      return template_close;
    };
    bool line_start = true;
    // In udev rules braces belong to the key (ATTRS{vendor}, RUN{program}), not to an expansion or a block.
    auto separator = [kind](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' || c == '[' || c == ']' || c == ',' ||
             c == '(' || c == ')' || ((c == '{' || c == '}') && kind != FileKind::udev) || c == '`';
    };
    auto push = [&](std::string word, std::size_t start) -> Token& {
      Token t;
      t.text = std::move(word);
      t.line = line_no;
      t.column = static_cast<unsigned>(start + 1);
      t.breaks_before = boundary;
      t.break_kind = boundary ? break_kind : ' ';
      t.line_start = line_start;
      t.prose = prose;
      t.command_key = runs;
      line_start = false;
      boundary = false;
      out.push_back(std::move(t));
      return out.back();
    };
    std::size_t i = 0;
    while (i < code.size()) {
      char c = code[i];
      if (c == '$' && i + 1 < code.size() && code[i + 1] == '(') {
        std::size_t end = end_of(paren_end, '(', ')', i + 1);
        std::string program =
            end == std::string_view::npos ? std::string{} : lookup_in_substitution(code.substr(i + 2, end - i - 3));
        if (!program.empty()) {
          push(program, i);
          i = end;
          continue;
        }
        boundary = true;  // "$(b)": b starts a command
        break_kind = '(';
        i += 2;
        continue;
      }
      if (c == '&' && ((i > 0 && code[i - 1] == '>') || (i + 1 < code.size() && code[i + 1] == '>'))) {
        ++i;  // "2>&1", "&>file": a redirection, not a separator
        continue;
      }
      if (c == '{' && i + 1 < code.size() && code[i + 1] == '}') {
        push("{}", i);  // find's "{}": the file found, a word (an empty brace group is no shell syntax)
        i += 2;
        continue;
      }
      if (c == '\\' && i + 1 < code.size() && code[i + 1] == ';') {
        push("\\;", i);  // find's "\;": the end of an -exec, an argument of find, not the end of a command
        i += 2;
        continue;
      }
      if (c == '(' && kind == FileKind::shell && heredoc_end.empty() && i > 0 && code[i - 1] == '=' &&
          end_of(paren_end, '(', ')', i) == std::string_view::npos && opens_array(code, i, quotes())) {
        array_lines_left = k_array_lines;  // "cmd=(" closing on a later line
      } else if (c == ')' && array_lines_left > 0 && quotes()[i] == 0) {
        array_lines_left = 0;
      }
      if (c == ';' || c == '|' || c == '&' || c == '(' || c == '`') {
        boundary = true;  // a new command starts: "a; b", "a && b", "a | b", "(b)"
        bool pipe = c == '|' && !(i + 1 < code.size() && code[i + 1] == '|') && !(i > 0 && code[i - 1] == '|');
        // "name(": a function call's arguments (Ruby, Python, Puppet), not a subshell.
        bool call = c == '(' && i > 0 &&
                    (std::isalnum(static_cast<unsigned char>(code[i - 1])) != 0 || code[i - 1] == '_');
        break_kind = pipe ? '|' : call ? 'f' : (c == '(' || c == '`') ? '(' : ';';
        ++i;
        continue;
      }
      // A quote before a word opens nothing the words care about: its column is its first character.
      if ((separator(c) && !(c == '{' && i + 1 < code.size() && code[i + 1] == '{')) || c == '"' || c == '\'') {
        ++i;
        continue;
      }
      if (code.substr(i, 3) == "<<<") {
        push("<<<", i);  // a here-string: "<<<'text'" is the operator, then the text's words
        i += 3;
        continue;
      }
      std::size_t start = i;
      std::string word;
      while (i < code.size()) {
        // Expansions and templates are one word, spaces included: "${cfg.bin}/bin/x", "{{ nvidia_smi }}".
        if ((code[i] == '$' || code[i] == '{') && i + 1 < code.size() && code[i + 1] == '{') {
          std::size_t end = code[i] == '$' ? end_of(brace_end, '{', '}', i + 1) : next_template_close(i + 2);
          if (end != std::string_view::npos) {
            end = code[i] == '$' ? end : end + 2;
            word.append(code.substr(i, end - i));
            i = end;
            continue;
          }
        }
        if (separator(code[i]) || code[i] == ';' || code[i] == '|' ||
            (code[i] == '&' && !(i > 0 && code[i - 1] == '>') && !(i + 1 < code.size() && code[i + 1] == '>'))) {
          break;
        }
        if (code[i] == '$' && i + 1 < code.size() && code[i + 1] == '(') {
          break;  // "x=$(...)": the substitution is read as a command next
        }
        if (code[i] == '<' && code.substr(i, 3) == "<<<" && !word.empty()) {
          break;  // "tee file<<<'text'": the here-string operator is a word of its own
        }
        if (code[i] != '"' && code[i] != '\'') {
          word += code[i];
        }
        ++i;
      }
      if (word == "\\" || word == "=") {
        if (word == "=") {  // "key = value" (Nix, HCL): the value starts anew; an Exec*= value is a command line
          boundary = true;
          break_kind = !out.empty() && exec_key(out.back().text) ? '=' : ':';
        }
        continue;  // a line continuation is no word
      }
      if (word.empty() || (word == "-" && list_item)) {
        if (i == start) {
          ++i;  // nothing consumed: step on
        }
        continue;  // empty quotes, or the YAML list marker itself
      }
      if (yaml && word[0] == '>' && word.find_first_not_of("-+0123456789", 1) == std::string::npos &&
          code.find_first_not_of(" \t", i) == std::string_view::npos) {
        continue;  // a folded block's indicator (>, >-, >+2) ending the key's line: no redirection
      }
      if (word[0] == '>' || word == "1>" || word == "2>") {
        Token& t = push(word, start);
        t.redirect = word[0] == '>' && word.rfind(">&", 0) != 0;
        continue;
      }
      // "Key=value": a unit's Exec*= value starts a command; a shell "NAME=value"
      // is an assignment (the value is this token, NAME kept beside it).
      // "--persistence-mode=1" stays one word.
      if (auto eq = word.find('='); eq != std::string::npos && eq > 0 && word[0] != '-') {
        std::string key = word.substr(0, eq);
        std::string value = word.substr(eq + 1);
        std::size_t value_at = start + eq + 1;
        while (value_at < code.size() && (code[value_at] == '"' || code[value_at] == '\'')) {
          ++value_at;  // NAME="value", RUN+="...": the value's column is past its quote
        }
        const bool runs_program = exec_key(key) || (kind == FileKind::udev && udev_program_key(key));
        if (runs_program || (kind == FileKind::unit && boundary)) {
          push(key, start);
          boundary = true;
          break_kind = '=';
          prose = prose || !runs_program;  // Description=..., Environment=...: not a command line
          if (!value.empty()) {
            push(value, value_at);
          }
          continue;
        }
        if (identifier(key) && kind != FileKind::unit) {
          if (!value.empty()) {
            push(value, value_at).assigned_to = key;
          }
          continue;
        }
      }
      bool key = yaml && word.back() == ':';
      const bool after_function_keyword = !out.empty() && !boundary && out.back().text == "function" &&
                                          out.back().breaks_before && kind == FileKind::shell;
      Token& pushed = push(word, start);
      if (kind == FileKind::shell && (pushed.breaks_before || after_function_keyword)) {
        std::size_t after = code.find_first_not_of(" \t", i);
        pushed.defines_function = after_function_keyword ||
                                  (after != std::string_view::npos && code.substr(after).rfind("()", 0) == 0);
      }
      if (key) {
        boundary = true;
        break_kind = ':';
      }
    }
    if (kind == FileKind::shell) {
      if (!heredoc_end.empty()) {
        if (trimmed == heredoc_end) {
          heredoc_end.clear();
        }
      } else {
        if (code.find("<<") != std::string_view::npos) {
          heredoc_end = heredoc_terminator(code, quotes());
        }
      }
    }
    continued = !code.empty() && code.back() == '\\';
    if (!continued && !yaml && array_lines_left == 0) {
      boundary = true;  // YAML: decided by the next line (a list item continues an argv)
      break_kind = '\n';
    }
  });
  return out;
}

}  // namespace gpuwarm::lint
