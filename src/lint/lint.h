#pragma once
// `gpuwarm lint`: persistence anti-patterns in configuration (the runbook's
// "grep your roles and node-init scripts for -pm and remove it"). Pure: text
// in, findings out; walking directories, reading a role's defaults and
// printing live in cli/.

#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace gpuwarm::lint {

// How comments look, and which rules apply. The doc_* kinds are documentation:
// skipped unless asked for, and then only their code blocks are read.
enum class FileKind { shell, yaml, unit, nix, dockerfile, udev, text, doc_markdown, doc_rst, doc_text };
const char* kind_name(FileKind k);
bool is_documentation(FileKind k);

// From the file name (a template's inner name: x.service.j2 is a unit) and the
// first line (scripts without an extension).
FileKind kind_for(std::string_view path, std::string_view first_line);

// Values a file's variables may take, from outside the file (an Ansible role's
// defaults/main.yml and vars/main.yml). `source` says where, for messages.
struct Assigned {
  std::string value;
  std::string source;  // "roles/gpu/defaults/main.yml:4"
};
using Variables = std::unordered_map<std::string, Assigned>;

// Top-level `name: scalar` lines of a YAML variables file.
Variables parse_role_variables(std::string_view yaml_text, std::string_view source_name);

struct Source {
  std::string_view path;             // names the unit (nvidia-persistenced.service, its .service.d/)
  FileKind kind = FileKind::text;
  const Variables* role_vars = nullptr;
  bool docs = false;                 // documentation: read its code blocks (else nothing)
  // A drop-in of a shared folder (service.d/, nvidia-.service.d/) that nvidia-persistenced's unit reads: judged
  // as one of its own.
  bool persistenced_dropin = false;
};

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
  std::string directive;  // a unit rule's setting ("Service/Restart"), also where it is missing; else empty
};

// A line opts out with "gpuwarm: ignore RULE-ID" (in a comment, or anywhere on it).
std::vector<Finding> lint_text(std::string_view text, const Source& source);
std::vector<Finding> lint_text(std::string_view text, FileKind kind);

}  // namespace gpuwarm::lint
