#pragma once
// The lexer behind lint: a file's code (comments dropped) as words with their
// positions and the statement boundaries between them. One lexer for every
// kind, so a command is found the same way in a script, a YAML value, a unit's
// ExecStart, a Dockerfile RUN or a Nix string.

#include <string>
#include <string_view>
#include <vector>

#include "lint/lint.h"

namespace gpuwarm::lint {

struct Token {
  std::string text;  // quotes stripped; ${...}, {{ ... }} and $(command -v X) kept as one word
  unsigned line = 0;
  unsigned column = 0;
  bool breaks_before = false;  // a statement starts here
  char break_kind = '\n';      // what started it: '\n' line, ';' sequence, '|' pipe, '(' subshell,
                               // ':' YAML key, '=' a unit's Exec*= value, '-' YAML list item,
                               // 'f' a function call's arguments: run(["nvidia-smi", ...])
  bool line_start = false;     // first word of its line (cron schedules)
  bool prose = false;          // the value of a YAML key holding text (name:, msg:, description:)
  bool command_key = true;     // YAML: the value of a key that runs commands (command:, shell:, runcmd:)
  bool redirect = false;       // ">", ">>", ">file": output goes to a file
  bool defines_function = false;  // shell: "NAME() {", "function NAME": this word is the function's name
  std::string assigned_to;     // shell NAME=value: this is the value, NAME here
};

// The code part of a line: from a comment start (outside quotes) on, nothing.
std::string_view strip_comment(std::string_view line, FileKind kind);

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
    std::string_view line = text.substr(pos, end - pos);
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    fn(++line_no, line);
    if (end == text.size()) {
      break;
    }
    pos = end + 1;
  }
}

// `skip_lines` (sorted 1-based ranges [first, last]) are left out: text that
// another reader lints as a file of its own (a unit in a heredoc).
struct LineRange {
  unsigned first;
  unsigned last;
};
std::vector<Token> tokenize(std::string_view text, FileKind kind, const std::vector<LineRange>& skip_lines = {});

bool ends_with(std::string_view s, std::string_view suffix);
// A template's inner name: "nvidia-persistenced.service.j2" -> "nvidia-persistenced.service".
std::string_view strip_template_suffix(std::string_view path);
std::string lower(std::string_view s);

}  // namespace gpuwarm::lint
