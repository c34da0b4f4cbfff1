#pragma once
// The unit rules (LINT010-LINT014) over directives, wherever the unit is
// written: a unit file or drop-in, a unit inside a heredoc or an Ansible
// `content:`, or a NixOS `systemd.services.nvidia-persistenced` attrset.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lint/lint.h"

namespace gpuwarm::lint {

struct Directive {
  std::string section;  // "Unit", "Service"
  std::string key;
  std::string value;
  unsigned line = 0;
  unsigned column = 1;
  unsigned last_line = 0;  // where a value continued with a trailing backslash ends
  unsigned branch = 0;     // a template's conditional branch it stands in (<% if %>, {% if %}); 0: always set
};

struct UnitDoc {
  std::vector<Directive> directives;
  unsigned service_line = 0;  // the [Service] header, where a missing directive is reported
  unsigned service_column = 1;
  bool dropin = false;        // only what it sets counts; the rest comes from the packaged unit
  bool named = false;         // its name says it is nvidia-persistenced's
  bool templated = false;     // a template (or NixOS): lines may be branches, so settings are not counted up
};

// What a path says about the unit it holds: x.service / x.service.j2 / x.service.d/y.conf.
struct UnitName {
  bool is_unit = false;
  bool dropin = false;
  bool persistenced = false;
};
UnitName unit_name(std::string_view path);

UnitDoc parse_unit(std::string_view text);

// Assignments under systemd.services.nvidia-persistenced (serviceConfig, unitConfig, script) as directives.
UnitDoc nix_persistenced_unit(std::string_view text);

void judge_unit(const UnitDoc& unit, std::vector<Finding>& out);

// ---- What systemd reads after a unit file or a drop-in. A setting that a later drop-in (or a file of
// the same name with higher priority) replaces is not in force, so its finding is set aside: shown, not
// counted. The later files are linted themselves, for what they set.

// The unit directories of a root, highest priority first ("etc/systemd/system", ..., "lib/systemd/system").
const std::vector<std::string_view>& unit_search_dirs();

// Where a unit file or drop-in lies. Inside a unit directory (under any root: a node's / or a copy of one),
// its unit's files may be in every unit directory of that root; elsewhere only beside it.
struct UnitPlace {
  std::string unit;               // "nvidia-persistenced.service"
  std::string dropin;             // "50-gpuwarm.conf"; empty for the unit file itself
  std::vector<std::string> dirs;  // the folders to look in, highest priority first
  std::size_t own = 0;            // the linted file's folder in `dirs`
  std::string root;               // the root those folders are in ("/", "copy/"); empty outside a unit folder
};
std::optional<UnitPlace> unit_place(std::string_view path);

// The drop-in folders of a unit, most specific first: "a-b-c.service.d", "a-b-.service.d", "a-.service.d",
// "service.d". A file name in a more specific folder hides the same name in a less specific one.
std::vector<std::string> dropin_folders(std::string_view unit);

// A file of the same unit found in place.dirs[dir]: the unit file itself or a drop-in, or a mask of one.
struct UnitFile {
  std::size_t dir = 0;
  bool dropin = false;
  std::string name;           // the drop-in's file name ("50-gpuwarm.conf"), or the unit's
  std::string path;
  std::size_t specificity = 0;  // the drop-in's folder in dropin_folders()
  bool mask = false;          // a link to /dev/null: hides the same name below it and sets nothing
};

struct LaterFiles {
  std::string replaced_by;  // a file of the same name that wins over the linted one, which systemd does not read
  bool masked = false;      // ... and it is a link to /dev/null
  std::vector<std::string> dropins;  // the drop-ins read after it, in systemd's order (by file name)
  std::vector<std::string> earlier;  // for a drop-in: the unit file in force, then the drop-ins read before it
  bool unit_file_found = false;      // earlier starts with the unit file
};
LaterFiles later_files(const UnitPlace& place, const std::vector<UnitFile>& found);

struct Layer {
  std::string path;
  UnitDoc doc;
};
struct SetAside {
  Finding finding;
  std::string by;  // "path:line" of the setting in force, or the path of the file that replaces this one
};

// Moves the findings that `later` takes out of force from `findings` to `set_aside`. `layers` are the texts of
// later.dropins that could be read, parsed, in the same order; one that could not be read overrides nothing.
// `earlier` (later.earlier's, read) tells whether a drop-in's ExecStart= is a second one in force (LINT015).
void set_aside_overridden(const UnitDoc& linted, const LaterFiles& later, const std::vector<Layer>& layers,
                          const std::vector<Layer>& earlier, std::vector<Finding>& findings,
                          std::vector<SetAside>& set_aside);

}  // namespace gpuwarm::lint
