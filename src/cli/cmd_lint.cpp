// `gpuwarm lint PATH...`: walks files and directories and reports persistence
// anti-patterns (lint/lint.h) as file:line:column: RULE message.

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <iostream>
#include <map>
#include <memory>
#include <set>

#include <fmt/format.h>

#include "cli/command.h"
#include "cli/file_batch.h"
#include "core/exit_codes.h"
#include "core/fs.h"
#include "core/host.h"
#include "core/strings.h"
#include "lint/lint.h"
#include "lint/units.h"
#include "snapshot/snapshot_json.h"

namespace gpuwarm {

namespace {

constexpr std::uintmax_t k_max_file_bytes = 8u << 20;

struct LintOptions {
  std::vector<std::string> paths;
  std::string stdin_name;
  bool json = false;
  bool list_rules = false;
  bool docs = false;
};

constexpr const char* k_binary_note = "skipped: binary";
// Where a file too large to read whole is looked at for a NUL: a .run installer's shell header (makeself,
// tens of KiB) comes before its binary payload.
constexpr std::size_t k_binary_head_bytes = 1u << 20;

struct FileResult {
  std::string path;
  std::vector<lint::Finding> findings;
  std::vector<lint::SetAside> set_aside;  // settings a later drop-in (or a file replacing this one) overrides
};

// Returns false (with `note`) for files that are not scanned. `from_stdin`: standard input, not `path`.
bool read_text(const std::string& path, std::string& text, std::string& note, bool from_stdin = false) {
  if (from_stdin) {
    LargeBuffer buffer;
    auto size = buffer.read_all(STDIN_FILENO, "standard input", 0, k_max_file_bytes);
    if (!size) {
      note = "skipped: " + size.error().message;  // printed after the name it is read under
      return false;
    }
    text.assign(buffer.data(), *size);
  } else {
    std::size_t size = 0;
    if (!read_regular_file(path, text, size, note, k_max_file_bytes)) {
      // Too large to read whole: a binary (a driver .run installer) is still told apart from a huge text.
      if (note.rfind("skipped: larger than", 0) == 0 && head_has_nul(path, k_binary_head_bytes) == true) {
        note = k_binary_note;
      }
      return false;
    }
    text.resize(size);
  }
  if (std::memchr(text.data(), '\0', text.size()) != nullptr) {
    note = k_binary_note;
    return false;
  }
  return true;
}

// An Ansible role's root ("x/roles/gpu") for a file inside it, else empty: its
// defaults/ and vars/ give values to the role's {{ variables }}.
std::string role_root(const std::string& path) {
  // Forward searches (memchr-driven): rfind compares at every byte, and this runs for every file.
  std::size_t best = std::string::npos;
  for (const char* part : {"/tasks/", "/handlers/", "/templates/", "/files/", "/meta/"}) {
    for (auto at = path.find(part); at != std::string::npos; at = path.find(part, at + 1)) {
      best = best == std::string::npos ? at : std::max(best, at);
    }
  }
  return best == std::string::npos ? std::string{} : path.substr(0, best);
}

using FileId = std::pair<dev_t, ino_t>;

std::optional<FileId> regular_file_id(const std::string& path, bool follow = true) {
  struct stat st {};
  if ((follow ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0 || !S_ISREG(st.st_mode)) {
    return std::nullopt;
  }
  return FileId{st.st_dev, st.st_ino};
}

// The canonical path of a folder, or "" where it cannot be resolved.
std::string real_path(const std::string& path) {
  std::unique_ptr<char, decltype(&std::free)> real(::realpath(path.c_str(), nullptr), &std::free);
  return real ? std::string(real.get()) : std::string{};
}

struct FoundLater {
  lint::LaterFiles later;
  // Links systemd would follow that lint does not (as the walk does not): what they set is not applied here.
  std::vector<std::string> not_followed;
};

// The files systemd reads before and after the unit file or drop-in at `path`, from every unit folder of its root
// and every drop-in folder of its unit (NAME.service.d/, dash prefixes, service.d/), each file once (on a merged
// /usr, lib/systemd/system is usr/lib/systemd/system). Links are not followed, except that one to /dev/null is
// a mask; a folder that resolves outside the root (an absolute link in a copy of a node) is not read.
FoundLater find_later_files(const std::string& path) {
  auto place = lint::unit_place(path);
  auto own = regular_file_id(path);
  if (!place || !own) {
    return {};
  }
  FoundLater out;
  const std::string root = place->root.empty() ? std::string{} : real_path(place->root);
  auto inside_root = [&](const std::string& folder) {
    if (place->root.empty() || root == "/") {
      return true;
    }
    const std::string real = real_path(folder);
    return !real.empty() && (real == root || real.starts_with(root + "/"));
  };
  std::set<FileId> seen{*own};
  std::vector<lint::UnitFile> found;
  // A regular file, a mask, or a link not followed.
  auto take = [&](lint::UnitFile file) {
    struct stat st {};
    if (file.path == path || ::lstat(file.path.c_str(), &st) != 0) {
      return;  // the linted file itself (a link named directly is read, as the walk does)
    }
    if (S_ISLNK(st.st_mode)) {
      if (auto target = read_link(file.path); target && *target == "/dev/null") {
        file.mask = true;
        found.push_back(std::move(file));
      } else {
        out.not_followed.push_back(std::move(file.path));
      }
    } else if (S_ISREG(st.st_mode) && seen.insert({st.st_dev, st.st_ino}).second) {
      found.push_back(std::move(file));
    }
  };
  const std::vector<std::string> folders = lint::dropin_folders(place->unit);
  for (std::size_t i = 0; i < place->dirs.size(); ++i) {
    if (!inside_root(place->dirs[i])) {
      continue;  // lib -> /usr/lib in a copy: the host's files, not the copy's
    }
    take({i, false, place->unit, place->dirs[i] + "/" + place->unit, 0, false});
    for (std::size_t k = 0; k < folders.size(); ++k) {
      const std::string folder = place->dirs[i] + "/" + folders[k];
      struct stat st {};
      if (::lstat(folder.c_str(), &st) != 0) {
        continue;
      }
      if (!S_ISDIR(st.st_mode)) {
        if (S_ISLNK(st.st_mode)) {
          out.not_followed.push_back(folder);
        }
        continue;
      }
      if (auto names = list_dir(folder)) {
        for (const auto& name : *names) {
          if (name.ends_with(".conf") && !name.starts_with(".")) {  // systemd skips hidden files
            take({i, true, name, folder + "/" + name, k, false});
          }
        }
      }
    }
  }
  out.later = lint::later_files(*place, found);
  return out;
}

std::vector<lint::Layer> read_layers(const std::vector<std::string>& paths) {
  std::vector<lint::Layer> layers;
  for (const auto& path : paths) {
    std::string text;
    std::string note;
    if (read_text(path, text, note)) {  // one that cannot be read overrides nothing (and is reported)
      layers.push_back({path, lint::parse_unit(text)});
    }
  }
  return layers;
}

// Moves the findings in `text` (the unit file or drop-in at `path`) whose setting `later` overrides.
void set_aside_overridden(std::string_view text, const lint::LaterFiles& later, FileResult& result) {
  lint::UnitDoc doc = lint::parse_unit(text);
  doc.dropin = lint::unit_name(result.path).dropin;
  lint::set_aside_overridden(doc, later, read_layers(later.dropins), read_layers(later.earlier), result.findings,
                             result.set_aside);
}

lint::Variables read_role_variables(const std::string& root) {
  lint::Variables vars;
  for (const char* file : {"/defaults/main.yml", "/defaults/main.yaml", "/vars/main.yml", "/vars/main.yaml"}) {
    std::string text;
    std::string note;
    std::string path = root + file;
    if (read_text(path, text, note)) {
      for (auto& [name, value] : lint::parse_role_variables(text, path)) {
        vars[name] = std::move(value);  // vars/ outranks defaults/, as in Ansible
      }
    }
  }
  return vars;
}

}  // namespace

std::function<int()> setup_lint(CLI::App& sub, const GlobalOptions& /*global*/) {
  auto opts = std::make_shared<LintOptions>();
  sub.add_option("paths", opts->paths,
                 "Files and directories to scan (directories recursively; .git is skipped); - reads standard input")
      ->type_name("PATH");
  sub.add_option("--stdin-name", opts->stdin_name,
                 "The path the text read from - stands for: its name picks the file kind (a unit, YAML, a "
                 "Dockerfile; default: a shell script, or what its #! line says) and an Ansible role's variables")
      ->type_name("PATH");
  sub.add_flag("--json", opts->json, "Print findings and skipped files as JSON");
  sub.add_flag("--list-rules", opts->list_rules, "List the rules and exit");
  sub.add_flag("--docs", opts->docs,
               "Also read documentation (.md, .rst, .txt, README): their code blocks only, never prose");
  std::string footer =
      "Finds what the runbook says to remove: `nvidia-smi -pm 1|0|$VAR` however it is run (sudo, timeout,\n"
      "ssh/pdsh/clush, docker/kubectl exec, NHC check_cmd_status, cron lines with or without a user field,\n"
      "echo ... | crontab -, a variable run later, YAML argv lists, Dockerfile RUN/CMD/ENTRYPOINT, udev\n"
      "rules' RUN+=/PROGRAM= (a .rules file, or a heredoc written to one), Nix ${pkg}/bin/nvidia-smi,\n"
      "{{ nvidia_smi }}, $(command -v nvidia-smi); not grep -c or pgrep -c, which count);\n"
      "`--no-persistence-mode`; the daemon's unit masked, or disabled with no enable of it in the file;\n"
      "nvidia-persistenced started by hand; and in a unit for nvidia-persistenced (a file, a drop-in under\n"
      "nvidia-persistenced.service.d/, a .j2/.erb/.tmpl template, a heredoc or Ansible content: written to\n"
      "one, a NixOS systemd.services.nvidia-persistenced): StopWhenUnneeded=true, Restart=no (or\n"
      "on-success, on-watchdog), a /var/run PIDFile, a Type= other than forking, an ExecStart that runs\n"
      "something else, two ExecStart= in force (a drop-in adding one without an empty ExecStart= first).\n"
      "A drop-in is judged on\n"
      "what it sets. A unit file or drop-in is read with what systemd reads after it: the drop-ins in its\n"
      "NAME.service.d/, dash-prefix (nvidia-.service.d/) and service.d/ folders (beside it; inside a unit\n"
      "folder, those of every unit folder of that root: etc/, run/, usr/local/lib/, usr/lib/ and\n"
      "lib/systemd/system) are scanned too, even outside the PATHs given, and a finding whose setting a later\n"
      "drop-in (or a same-named file of higher priority, or a mask: a link to /dev/null) overrides is set\n"
      "aside: printed as \"not in force\", not counted. Hidden files are skipped as systemd does; other\n"
      "links are not followed: those of a unit's drop-in folders are named, those in folders walked are\n"
      "counted with FIFOs, sockets and devices, never opened (--json lists them; a link named as a PATH is\n"
      "read). Standard input is read alone.\n"
      "`-pm {{ var }}` is resolved from the file and the Ansible role's defaults/ and vars/.\n"
      "Comments are not findings. Documentation is skipped (counted) unless --docs. A line opts out of a\n"
      "rule with `gpuwarm: ignore RULE-ID` in a comment on it or in a comment line just above it. Binary\n"
      "(a NUL byte; in the first MiB of a file over 8 MiB), unreadable and very large files are skipped\n"
      "with a note.\n\n"
      "Exit codes: 0 nothing found, 1 a PATH does not exist, a file could not be read or was a text larger\n"
      "than 8 MiB (what it holds is unknown), or no file was scanned at all (an empty folder, only binaries or\n"
      "documentation without --docs: nothing was checked), 2 bad command line, 3 findings.\n\nRules:\n";
  // (The exit-code line is a CI contract: 1 stays 1 even where other files have findings.)
  for (const auto& r : lint::rules()) {
    footer += fmt::format("  {}  {}\n", r.id, r.summary);
  }
  footer +=
      "\nExamples:\n"
      "  gpuwarm lint /etc /usr/local/bin ansible/\n"
      "  gpuwarm lint --json roles/ | jq '.findings[].rule_id'\n"
      "  git show HEAD:tasks/main.yml | gpuwarm lint --stdin-name tasks/main.yml -";
  sub.footer(footer);

  return [opts]() -> int {
    if (opts->list_rules) {
      if (opts->json) {  // as `diagnose --list-rules --json`
        nlohmann::json out = nlohmann::json::array();
        for (const auto& r : lint::rules()) {
          out.push_back({{"id", r.id}, {"name", r.name}, {"summary", r.summary}});
        }
        std::cout << dump_json(out) << "\n";
        return 0;
      }
      for (const auto& r : lint::rules()) {
        std::cout << fmt::format("{}  {:20s} {}\n", r.id, r.name, r.summary);
      }
      return 0;
    }
    if (opts->paths.empty()) {
      return usage_error("lint", "give at least one PATH (a file or directory), or - for standard input");
    }
    std::vector<std::string> named;
    std::copy_if(opts->paths.begin(), opts->paths.end(), std::back_inserter(named),
                 [](const std::string& p) { return p != "-"; });
    const bool use_stdin = named.size() != opts->paths.size();
    if (!opts->stdin_name.empty() && !use_stdin) {
      return usage_error("lint", "--stdin-name names the text read from standard input: add - to the paths");
    }
    Walk walk = walk_paths(named, [](const std::string&) { return true; });
    for (const auto& p : walk.missing) {
      std::cerr << "gpuwarm lint: " << escape_control(p) << ": no such file or directory\n";
    }
    const bool missing = !walk.missing.empty();
    std::size_t unreadable = 0;
    std::vector<std::pair<std::string, std::string>> notes;
    for (auto& [dir, why] : walk.unreadable) {
      ++unreadable;
      notes.emplace_back(std::move(dir), std::string(k_unreadable_note) + "directory: " + why);
    }
    std::vector<std::string>& files = walk.files;
    // A unit file or drop-in is read with what systemd reads after it; those files are scanned too, once.
    std::vector<lint::LaterFiles> later(files.size());
    std::set<FileId> unit_files;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (lint::unit_name(files[i]).is_unit) {
        if (auto id = regular_file_id(files[i])) {
          unit_files.insert(*id);
        }
      }
    }
    std::set<std::string> not_followed;
    std::set<std::string> persistenced_shared;  // service.d/ and prefix drop-ins nvidia-persistenced's unit reads
    for (std::size_t i = 0; i < files.size(); ++i) {  // grows as later files are found
      const lint::UnitName name = lint::unit_name(files[i]);
      if (!name.is_unit) {
        continue;
      }
      FoundLater found = find_later_files(files[i]);
      if (name.persistenced) {
        for (const auto* list : {&found.later.dropins, &found.later.earlier}) {
          for (const auto& p : *list) {
            if (!lint::unit_name(p).persistenced) {
              persistenced_shared.insert(p);
            }
          }
        }
      }
      std::vector<std::string> more = found.later.dropins;
      if (!found.later.replaced_by.empty() && !found.later.masked) {
        more.push_back(found.later.replaced_by);
      }
      not_followed.insert(found.not_followed.begin(), found.not_followed.end());
      later[i] = std::move(found.later);
      for (auto& path : more) {
        if (auto id = regular_file_id(path, false); id && unit_files.insert(*id).second) {
          files.push_back(std::move(path));
          later.emplace_back();
        }
      }
    }
    for (const auto& link : not_followed) {
      notes.emplace_back(link, "not followed: a link (systemd reads what it names; lint does not, so what it "
                               "sets is not applied here)");
    }
    // Links in the folders walked (hundreds under /etc: alternatives, certificates) are listed in --json and
    // counted in the text; what they name was not scanned unless it was reached on its own. Those of a unit's
    // drop-in folders are noted one by one above.
    std::erase_if(walk.passed_over, [&](const auto& entry) { return not_followed.count(entry.first) != 0; });
    const std::size_t passed_over = walk.passed_over.size();
    // Standard input is scanned last, once, under the name given for it.
    const std::size_t stdin_index = use_stdin ? files.size() : SIZE_MAX;
    if (use_stdin) {
      files.push_back(opts->stdin_name.empty() ? "<stdin>" : opts->stdin_name);
    }
    // Role variables, read once per role before the files are spread over the cores.
    std::map<std::string, lint::Variables> roles;
    std::vector<const lint::Variables*> file_vars(files.size(), nullptr);
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (std::string root = role_root(files[i]); !root.empty()) {
        auto it = roles.find(root);
        if (it == roles.end()) {
          it = roles.emplace(root, read_role_variables(root)).first;
        }
        file_vars[i] = &it->second;
      }
    }
    // Files are independent: scan them on every core, then report in walk order.
    std::vector<FileResult> per_file(files.size());
    std::vector<std::string> per_file_note(files.size());
    std::vector<char> per_file_doc(files.size(), 0);
    parallel_for(files.size(), [&](std::size_t i) {
      std::string text;
      if (!read_text(files[i], text, per_file_note[i], i == stdin_index)) {
        return;
      }
      std::string_view first(text);
      first = first.substr(0, first.find('\n'));
      const bool shared = persistenced_shared.count(files[i]) != 0;
      lint::Source source{files[i], shared ? lint::FileKind::unit : lint::kind_for(files[i], first), file_vars[i],
                          opts->docs, shared};
      if (lint::is_documentation(source.kind) && !opts->docs) {
        per_file_doc[i] = 1;
        return;
      }
      per_file[i] = {files[i], lint::lint_text(text, source), {}};
      if (i < later.size() &&
          (!later[i].dropins.empty() || !later[i].replaced_by.empty() || !later[i].earlier.empty())) {
        set_aside_overridden(text, later[i], per_file[i]);
      }
    });
    std::vector<FileResult> results;
    std::size_t scanned = 0;
    std::size_t docs_skipped = 0;
    for (std::size_t i = 0; i < files.size(); ++i) {
      if (!per_file_note[i].empty()) {
        // Only binaries are skipped by design (a glob over bin/ names them); any other note (unreadable, too
        // large to scan, standard input that failed) leaves what the file holds unknown.
        if (per_file_note[i] != k_binary_note) {
          ++unreadable;
        }
        notes.emplace_back(files[i], per_file_note[i]);
        continue;
      }
      if (per_file_doc[i] != 0) {
        ++docs_skipped;
        continue;
      }
      ++scanned;
      if (!per_file[i].findings.empty() || !per_file[i].set_aside.empty()) {
        results.push_back(std::move(per_file[i]));
      }
    }
    std::size_t total = 0;
    std::size_t total_set_aside = 0;
    for (const auto& r : results) {
      total += r.findings.size();
      total_set_aside += r.set_aside.size();
    }
    // Nothing was checked (an empty folder, binaries, documentation without --docs): a pass would vouch for
    // nothing, and a CI gate over a moved or emptied path must not pass.
    const bool nothing_scanned = scanned == 0;
    const ExitCode code = missing || unreadable > 0 || nothing_scanned ? ExitCode::tool_error
                          : total > 0                                  ? ExitCode::action_needed
                                                                       : ExitCode::healthy;
    if (opts->json) {
      nlohmann::json findings = nlohmann::json::array();
      for (const auto& r : results) {
        for (const auto& f : r.findings) {
          findings.push_back({{"path", r.path}, {"line", f.line}, {"column", f.column}, {"rule_id", f.rule},
                              {"message", f.message}, {"fix", f.fix}});
        }
      }
      nlohmann::json set_aside = nlohmann::json::array();
      for (const auto& r : results) {
        for (const auto& a : r.set_aside) {
          set_aside.push_back({{"path", r.path}, {"line", a.finding.line}, {"column", a.finding.column},
                               {"rule_id", a.finding.rule}, {"message", a.finding.message},
                               {"overridden_by", a.by}});
        }
      }
      nlohmann::json skipped = nlohmann::json::array();
      for (const auto& [path, note] : notes) {
        skipped.push_back({{"path", path}, {"note", note}});
      }
      for (const auto& [path, why] : walk.passed_over) {
        const bool readable_named = why == Walk::Skipped::link_to_file || why == Walk::Skipped::link_to_folder;
        skipped.push_back(
            {{"path", path}, {"note", "not read: " + passed_over_text(why) + (readable_named ? " (name it to scan it)" : "")}});
      }
      // "missing": the PATHs that named nothing, the reason for exit 1 (stdout alone must say why).
      std::cout << dump_json({{"kind", "gpuwarm-lint"}, {"schema_version", 1}, {"hostname", host_name()},
                              {"exit_code", to_int(code)}, {"files_scanned", scanned}, {"findings", findings},
                              {"set_aside", set_aside}, {"skipped", skipped}, {"unreadable", unreadable},
                              {"documentation_skipped", docs_skipped},
                              {"missing", walk.missing}})
                << "\n";
    } else {
      for (const auto& r : results) {
        for (const auto& f : r.findings) {
          // Paths and the text quoted from files are the scanned tree's, not gpuwarm's: escaped.
          std::cout << fmt::format("{}:{}:{}: {} {}\n  fix: {}\n", escape_control(r.path), f.line, f.column, f.rule,
                                   escape_control(f.message), escape_control(f.fix));
        }
      }
      for (const auto& r : results) {
        for (const auto& a : r.set_aside) {
          std::cerr << fmt::format("{}:{}:{}: {} not in force, overridden by {}: {}\n", escape_control(r.path),
                                   a.finding.line, a.finding.column, a.finding.rule, escape_control(a.by),
                                   escape_control(a.finding.message));
        }
      }
      for (const auto& [path, note] : notes) {
        std::cerr << fmt::format("{}: {}\n", escape_control(path), escape_control(note));
      }
      std::cerr << fmt::format("{} finding(s) in {} file(s) scanned", total, scanned);
      if (total_set_aside > 0) {
        std::cerr << fmt::format("; {} set aside, as a later drop-in or file overrides the setting", total_set_aside);
      }
      if (unreadable > 0) {
        std::cerr << fmt::format("; {} file(s) or folder(s) could not be read, so what they hold is unknown",
                                 unreadable);
      } else if (nothing_scanned) {
        std::cerr << ": nothing was checked";
      }
      if (docs_skipped > 0) {
        std::cerr << fmt::format("; {} documentation file(s) skipped (--docs reads their code blocks)", docs_skipped);
      }
      if (passed_over > 0) {
        std::cerr << fmt::format("; {} link(s) or special file(s) not read (--json lists them; name a "
                                 "link to scan what it names)",
                                 passed_over);
      }
      std::cerr << "\n";
    }
    return to_int(code);
  };
}

}  // namespace gpuwarm
