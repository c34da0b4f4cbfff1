#pragma once
// Every saved gpuwarm report says what it is in "kind". A command that reads
// a saved report names what it got when it is the wrong one.

#include <string>
#include <string_view>

namespace gpuwarm {

inline std::string describe_report_kind(std::string_view kind) {
  if (kind == "gpuwarm-snapshot") return "a `gpuwarm snapshot` record";
  if (kind == "gpuwarm-diagnosis") return "`gpuwarm diagnose --json` output";
  if (kind == "gpuwarm-check") return "a `gpuwarm check --json` answer (clocks and the unit left unread)";
  if (kind == "gpuwarm-fix") return "a `gpuwarm fix --json` report";
  if (kind == "gpuwarm-verify") return "a `gpuwarm verify --json` report";
  if (kind == "gpuwarm-probe") return "a `gpuwarm probe --json` result";
  if (kind == "gpuwarm-watch" || kind == "watch") return "a `gpuwarm watch --json` run";
  if (kind == "gpuwarm-fleet-summary") return "a `gpuwarm fleet-summary --json` table";
  if (kind == "gpuwarm-reset") return "a `gpuwarm reset --json` report";
  if (kind == "gpuwarm-guard") return "a `gpuwarm guard --json` answer";
  if (kind == "gpuwarm-lint") return "a `gpuwarm lint --json` result";
  if (kind == "gpuwarm-reload-modules") return "a `gpuwarm reload-modules --json` report";
  // The kind comes from the file: keep it short and printable.
  std::string shown;
  for (char c : kind.substr(0, 40)) {
    shown += (c >= 0x20 && c < 0x7f && c != '"') ? c : '?';
  }
  return "a report of kind \"" + shown + "\"";
}

}  // namespace gpuwarm
