#pragma once
// The unit rules (LINT010-LINT014) over directives, wherever the unit is
// written: a unit file or drop-in, a unit inside a heredoc or an Ansible
// `content:`, or a NixOS `systemd.services.nvidia-persistenced` attrset.

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
};

struct UnitDoc {
  std::vector<Directive> directives;
  unsigned service_line = 0;  // the [Service] header, where a missing directive is reported
  unsigned service_column = 1;
  bool dropin = false;        // only what it sets counts; the rest comes from the packaged unit
  bool named = false;         // its name says it is nvidia-persistenced's
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

}  // namespace gpuwarm::lint
