#pragma once
// `gpuwarm lint`: persistence anti-patterns in configuration (the runbook's
// "grep your roles and node-init scripts for -pm and remove it"). Pure: text
// in, findings out; walking directories and printing live in cli/.

#include <string>
#include <string_view>
#include <vector>

namespace gpuwarm::lint {

// How comments look, and which rules apply.
enum class FileKind { shell, yaml, unit, nix, dockerfile, text };
const char* kind_name(FileKind k);

// From the file name (and the first line, for scripts without an extension).
FileKind kind_for(std::string_view path, std::string_view first_line);

struct RuleInfo {
  const char* id;
  const char* name;
  const char* summary;
};
const std::vector<RuleInfo>& rules();

struct Finding {
  std::string rule;
  unsigned line = 0;    // 1-based
  unsigned column = 0;  // 1-based, in bytes
  std::string message;
  std::string fix;
};

// A line opts out with "gpuwarm: ignore RULE-ID" (in a comment, or anywhere on it).
std::vector<Finding> lint_text(std::string_view text, FileKind kind);

}  // namespace gpuwarm::lint
