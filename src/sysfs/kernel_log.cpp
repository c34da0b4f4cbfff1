#include "sysfs/kernel_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/fs.h"
#include "core/strings.h"

namespace gpuwarm {

namespace {

// Where a /dev/kmsg record's message begins ("6,1234,5678901,-;NVRM: ..."; fields after the flag may follow
// it), or npos: the prefix is checked field by field, so a text log line that starts with a date and holds
// a comma and a ';' in its message is not cut there.
std::size_t kmsg_message_start(std::string_view line) {
  std::size_t at = 0;
  for (int field = 0; field < 3; ++field) {
    const auto begin = at;
    while (at < line.size() && line[at] >= '0' && line[at] <= '9') {
      ++at;
    }
    if (at == begin || at >= line.size() || line[at] != ',') {
      return std::string_view::npos;
    }
    ++at;
  }
  const auto semi = line.find(';', at);
  if (semi == std::string_view::npos || semi == at || line.substr(at, semi - at).find(' ') != std::string_view::npos) {
    return std::string_view::npos;
  }
  return semi + 1;
}

constexpr std::string_view k_nvrm = "NVRM:";
constexpr std::size_t npos = std::string_view::npos;

// The text after a leading "[...]" whose inside passes `inside`, or npos.
template <typename Inside>
std::size_t after_bracket(std::string_view text, Inside inside) {
  if (text.empty() || text.front() != '[') {
    return npos;
  }
  const auto close = text.find(']');
  return close != npos && inside(text.substr(1, close - 1)) ? close + 1 : npos;
}
bool is_seconds(std::string_view s) {  // " 1234.567890", and journalctl's short-delta " 12.3 <    0.000123>"
  return !s.empty() && s.find_first_not_of(" 0123456789.<>") == npos;
}
bool is_caller(std::string_view s) {  // printk's caller id (CONFIG_PRINTK_CALLER): "   T812", "  C1"
  s = trim(s);
  return s.size() >= 2 && (s.front() == 'T' || s.front() == 'C') && s.find_first_not_of("0123456789", 1) == npos;
}

// Drops the time stamp and the caller id the kernel may put before a message ("[ 12.3]", "[ 12.3][  T812]",
// "[ 12.3] [   T812]"): only brackets of those shapes, so a message of another subsystem ("[drm] ...") stays.
// `stamp` gets the time stamp's bracket, if any.
std::string_view without_kernel_brackets(std::string_view message, std::string_view& stamp) {
  if (const auto end = after_bracket(message, is_seconds); end != npos) {
    stamp = message.substr(0, end);
    message = trim(message.substr(end));
  }
  if (const auto end = after_bracket(message, is_caller); end != npos) {
    message = trim(message.substr(end));
  }
  return message;
}

// Drops the "facility:level : " that `dmesg -x` (--decode) prints first ("kern  :err   : [ 12.3] NVRM: ...").
std::string_view without_decode_prefix(std::string_view line) {
  auto field_end = [&](std::size_t at) -> std::size_t {  // a lowercase word, blanks, ':'; npos when not so
    auto end = at;
    while (end < line.size() && ((line[end] >= 'a' && line[end] <= 'z') || (line[end] >= '0' && line[end] <= '9'))) {
      ++end;
    }
    if (end == at) {
      return npos;
    }
    while (end < line.size() && line[end] == ' ') {
      ++end;
    }
    return end < line.size() && line[end] == ':' ? end + 1 : npos;
  };
  const auto facility = field_end(0);
  const auto level = facility == npos ? facility : field_end(facility);
  if (level == npos || level >= line.size() || line[level] != ' ') {
    return line;
  }
  return trim(line.substr(level));
}

// Whether one blank-separated word can be part of a syslog or journal time stamp: "Jun", "Mon", "12:00:00",
// "2026-06-01T12:00:00.123456+00:00", "1717243200.123456", "UTC". A kernel message's own words rarely all are.
bool is_time_word(std::string_view word) {
  static constexpr std::array<std::string_view, 19> k_names = {"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul",
                                                              "Aug", "Sep", "Oct", "Nov", "Dec", "Mon", "Tue",
                                                              "Wed", "Thu", "Fri", "Sat", "Sun"};
  if (std::find(k_names.begin(), k_names.end(), word) != k_names.end()) {
    return true;
  }
  // A time zone: "UTC", "CEST", "ChST", or an offset "-03", "+0530".
  if (word.size() >= 2 && word.size() <= 5 && word.front() >= 'A' && word.front() <= 'Z' &&
      word.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") == npos) {
    return true;
  }
  if (word.size() >= 3 && word.size() <= 5 && (word.front() == '+' || word.front() == '-') &&
      word.find_first_not_of("0123456789", 1) == npos) {
    return true;
  }
  return !word.empty() && word.front() >= '0' && word.front() <= '9' &&
         word.find_first_not_of("0123456789:.,+-TZ") == npos;
}
bool is_host_word(std::string_view word) {
  return !word.empty() &&
         word.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") == npos;
}

// Where the message begins after a syslog or journal header ("Jun  1 12:00:00 host kernel: ",
// "2026-06-01T12:00:00+00:00 host kernel: ", "Mon 2026-06-01 12:00:00 UTC host kernel: ", RFC 5424's
// "1 2026-06-01T12:00:00Z host kernel - - - "), or npos. Time words come before the host: at least
// one, or none at all when `after_bracket_time` (the "[...]" journalctl -o short-monotonic prints first); the host may be left out (--no-hostname). Only the header's own " kernel: " counts: one inside a
// message (a path a user chose) does not.
std::size_t header_end(std::string_view line, bool after_bracket_time) {
  std::size_t at = 0;
  std::vector<std::string_view> words;
  while (at < line.size() && words.size() <= 8) {
    while (at < line.size() && line[at] == ' ') {
      ++at;
    }
    const auto end = std::min(line.find(' ', at), line.size());
    const auto word = line.substr(at, end - at);
    // "kernel:", syslog-ng's "kernel[0]:", RFC 5424's "kernel - - - "
    const bool tagged = word.starts_with("kernel[") && word.ends_with("]:") && word.size() > 9 &&
                        word.substr(7, word.size() - 9).find_first_not_of("0123456789") == npos;
    if (word == "kernel:" || tagged || (word == "kernel" && line.substr(end, 7) == " - - - ")) {
      // busybox syslogd writes the facility and level before the tag: "host kern.err kernel:"
      if (!words.empty()) {
        const auto dot = words.back().find('.');
        const auto level = words.back();
        if (dot != npos && dot > 0 && dot + 1 < level.size() &&
            level.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.") == npos) {
          words.pop_back();
        }
      }
      // The host, unless the time words reach the tag (journalctl --no-hostname).
      if (!words.empty() && is_host_word(words.back()) && !is_time_word(words.back())) {
        words.pop_back();
      }
      const auto times = words.size();
      if (after_bracket_time ? times != 0 : (times == 0 || times > 6)) {
        return npos;
      }
      for (std::size_t k = 0; k < times; ++k) {  // RFC 5424's version "1" reads as one
        if (!is_time_word(words[k])) {
          return npos;
        }
      }
      return word == "kernel" ? end + 7 : end;
    }
    words.push_back(word);
    at = end;
  }
  return npos;
}

// The message part of one log line, and whether the line had a shape gpuwarm reads.
struct LinePart {
  std::string_view message;
  bool known_shape = false;     // a prefix gpuwarm reads (bare text is not: it cannot tell whose a line is)
  std::string_view stamp;       // the kernel's "[ 1234.567890]" where the line shows it: one per record
  // The line had a syslog or journal header ("... host kernel: "): its stamp, if any, is the message's first
  // bracket, which only the log as a whole can vouch for (records_of); a stamp before any header is the line's.
  bool after_header = false;
};

LinePart message_of(std::string_view line) {
  if (const auto start = kmsg_message_start(line); start != npos) {
    return {line.substr(start), true, {}, false};
  }
  std::string_view rest = trim(line);
  // `dmesg -r` and RFC 5424 files begin with the priority: "<3>[  605.2] NVRM: ...", "<3>1 2026-... host ..."
  if (rest.size() > 2 && rest.front() == '<') {
    const auto close = rest.find('>');
    if (close != npos && close > 1 && close <= 4 && rest.substr(1, close - 1).find_first_not_of("0123456789") == npos) {
      rest = rest.substr(close + 1);
    }
  }
  rest = without_decode_prefix(rest);
  // dmesg: "[ 1234.567890] NVRM: ...", with -T "[Fri Jun  1 12:00:00 2026] NVRM: ...", a caller id after it;
  // journalctl -k -o short-monotonic: "[ 1234.567890] host kernel: NVRM: ..."
  if (const auto end = after_bracket(rest, [](std::string_view) { return true; }); end != npos) {
    // The bracket is the line's stamp, which every line of a record shows where a record's lines are not
    // indented (dmesg -S): seconds, or with -T a date (to the second, so records of one second group too).
    // A stamp inside the message (a user's text after a header it forged) never replaces it.
    const std::string_view inside = trim(rest.substr(1, end - 2));
    const bool date = !inside.empty() && std::ranges::all_of(split(inside, ' '), [](std::string_view w) {
      return w.empty() || is_time_word(w);
    });
    const std::string_view stamp = is_seconds(inside) || date ? rest.substr(0, end) : std::string_view{};
    rest = trim(rest.substr(end));
    if (const auto caller = after_bracket(rest, is_caller); caller != npos) {
      rest = trim(rest.substr(caller));
    }
    LinePart part{rest, true, stamp, false};
    if (const auto header = header_end(rest, true); header != npos) {
      std::string_view inner;
      part.message = without_kernel_brackets(trim(rest.substr(header)), inner);
    }
    return part;
  }
  // dmesg --time-format=iso: "2026-06-01T12:00:00,123456+00:00 NVRM: ...", its fraction after a comma (a syslog
  // file's RFC 3339 stamp has a dot). Before the syslog header: what follows is the message, whatever header
  // a user's text in it may forge.
  if (const auto blank = rest.find(' '); blank != npos && blank > 20 && rest[4] == '-' && rest[10] == 'T' &&
                                         rest[19] == ',' && is_time_word(rest.substr(0, blank))) {
    return {trim(rest.substr(blank + 1)), true, rest.substr(0, blank), false};  // with -S, every line of a record shows it
  }
  // journalctl -k and syslog's files, whose lines may keep the kernel's time stamp:
  // "Jun 01 12:00:00 host kernel: NVRM: ...", "2026-06-01T12:00:00+00:00 host kernel: [ 12.3] NVRM: ..."
  if (const auto header = header_end(rest, false); header != npos) {
    LinePart part{{}, true, {}, true};
    part.message = without_kernel_brackets(trim(rest.substr(header)), part.stamp);
    return part;
  }
  // No prefix (dmesg -t, journalctl -o cat): the message itself. Read, but no shape gpuwarm can vouch for: a
  // line a user's text began cannot be told from the driver's.
  return {rest, false, {}, false};
}

// Pulls the version after `marker` out of the joined mismatch text.
std::string version_after(std::string_view text, std::string_view marker) {
  auto pos = text.find(marker);
  if (pos == std::string_view::npos) {
    return {};
  }
  return find_version_token(text, pos + marker.size());
}

// Where the client's version begins, just past the kernel's words before it, or npos:
// >= 575: "the client '<comm>' (pid N) has the version X, but this kernel module has the version Y."
// <= 570: "the client has the version X, but this kernel module has the version Y."
// A comm (15 bytes at most) cannot hold "(pid N) has the version ", so its first match is the kernel's.
std::size_t client_version_start(std::string_view joined, std::size_t client_name) {
  constexpr std::string_view k_unnamed = "the client has the version ";
  if (client_name == std::string_view::npos) {
    const auto at = joined.find(k_unnamed);
    return at == std::string_view::npos ? at : at + k_unnamed.size();
  }
  constexpr std::string_view k_pid = "(pid ";
  constexpr std::string_view k_has = ") has the version ";
  for (auto at = joined.find(k_pid, client_name); at != std::string_view::npos; at = joined.find(k_pid, at + 1)) {
    auto digits_end = at + k_pid.size();
    while (digits_end < joined.size() && joined[digits_end] >= '0' && joined[digits_end] <= '9') {
      ++digits_end;
    }
    if (digits_end > at + k_pid.size() && joined.substr(digits_end, k_has.size()) == k_has) {
      return digits_end + k_has.size();
    }
  }
  return std::string_view::npos;
}

ApiMismatch parse_mismatch(std::string_view joined) {
  ApiMismatch m;
  const auto client_name = joined.find("the client '");
  if (client_name != std::string_view::npos) {
    auto has = joined.find(" has the version", client_name);
    if (has != std::string_view::npos) {
      m.client = printable(trim(joined.substr(client_name + 11, has - client_name - 11)));
    }
  }
  // The kernel prints the client's version as the client sent it: any text. It is taken exactly, between
  // the kernel's own words around it (the last ", but this kernel module..." is the kernel's, whatever the
  // client's text holds), never as the first version-like token: a client asking with "x" would read as
  // asking with the module's own version, which the guard would then find installed.
  constexpr std::string_view k_module = ", but this kernel module has the version ";
  const auto start = client_version_start(joined, client_name);
  const auto module = joined.rfind(k_module);
  if (start != std::string_view::npos && module != std::string_view::npos && module >= start) {
    m.client_version = printable(joined.substr(start, module - start));
    m.client_version_exact = true;
    m.kernel_version = find_version_token(joined, module + k_module.size());
    return m;
  }
  // Worded otherwise (a driver gpuwarm has not seen): the versions as well as they can be told, not exact.
  const auto client_has = joined.find("has the version");
  m.client_version = client_has == std::string_view::npos ? std::string{} : find_version_token(joined, client_has + 15);
  m.kernel_version = version_after(joined, "module has the version");
  if (m.kernel_version.empty()) {
    m.kernel_version = version_after(joined, "module has");
  }
  return m;
}

// The kernel's closing line of a mismatch, whole ("have the same version." in the new form, "components have
// the same version." in the old): a line a client's version brings in that merely holds these words does not
// end the message.
bool is_mismatch_end(std::string_view body) {
  return body == "have the same version." || body == "components have the same version.";
}
constexpr int k_mismatch_max_lines = 16;  // the kernel's 4 or 5, and the new lines a client's version may hold

// Whether a message is one of the driver's, and its text past "NVRM:".
std::optional<std::string_view> nvrm_body(std::string_view msg) {
  if (!starts_with(msg, k_nvrm)) {
    return std::nullopt;
  }
  return trim(msg.substr(k_nvrm.size()));
}

bool opens_mismatch(std::string_view line) {
  const auto body = nvrm_body(trim(line));
  return body && starts_with(*body, "API mismatch");
}

// A module's load line, as both forms of the driver print it ("loading NVIDIA UNIX x86_64 Kernel Module",
// "loading NVIDIA UNIX Open Kernel Module for x86_64"): the whole of it, so that a line a client's version
// brings into a text log must be long as well.
bool is_module_load(std::string_view body) {
  return starts_with(body, "loading NVIDIA UNIX ") && body.find("Kernel Module") != std::string_view::npos;
}

// One line of the log as a message. A /dev/kmsg record keeps what the driver printed at once, its lines
// escaped ("\\x0a", as every byte below a space and the backslash); rsyslog, reading the journal, writes such
// a record on one line too, its new lines as "#012". Decoded, its lines are joined as a text log's would be,
// and it is whole, so no line inside it (a client's version may hold new lines) reads as a message of its own.
struct LogMessage {
  std::string text;
  bool whole = false;        // one record holding every line the driver printed at once
  bool known_shape = false;  // the line had a shape gpuwarm reads
  // Mismatches opened by a line after the first that shares the record's time stamp: the driver's own record
  // logged in the same microsecond as another, or a user's text; which cannot be told (see records_of).
  std::vector<std::string> stamped_mismatches;
  bool stamped_load = false;  // a load line joined for its stamp alone: not taken, for the same reason
  bool new_boot = false;      // the first record of a later boot (RawRecord::new_boot)
};

// Joins the lines of one record: the driver's prefix dropped from every line after the first.
LogMessage joined_record(std::string_view raw) {
  LogMessage out{{}, true, true, {}, false, false};
  bool first = true;
  for (auto part : split(raw, '\n')) {
    std::string_view piece = trim(part);
    if (!first) {
      if (starts_with(piece, k_nvrm)) {
        piece = trim(piece.substr(k_nvrm.size()));
      }
      out.text += ' ';
    }
    out.text += piece;
    first = false;
  }
  return out;
}

// One record of the log, its lines (a record the driver printed at once may hold several) joined by '\n'.
struct RawRecord {
  std::string text;
  bool kmsg = false;         // a /dev/kmsg record (decoded)
  bool known_shape = false;  // its first line had a prefix gpuwarm reads
  std::string_view stamp;    // the kernel's time stamp its first line showed, if any
  // For each of its lines, whether it was joined only for sharing the record's time stamp (not indented).
  std::vector<bool> by_stamp;
  // The first record of a later boot in a log that spans several (kern.log, journalctl -k -b all): it is the
  // kernel's banner, or its seconds-since-boot stamp went back. (journalctl's "-- Boot ID --" line is no
  // marker: in a syslog file that writes a record's lines raw, a user's file name can hold it.)
  bool new_boot = false;
  bool stamp_after_header = false;  // LinePart::after_header: the stamp is the message's first bracket
};

// A "[ 1234.567890]" stamp's seconds since boot (journalctl's short-delta "[ 12.3 <    0.000123>" too);
// nothing for a date or no stamp.
std::optional<double> stamp_seconds(std::string_view stamp) {
  if (stamp.size() < 3 || stamp.front() != '[' || !is_seconds(stamp.substr(1, stamp.size() - 2))) {
    return std::nullopt;
  }
  stamp = trim(stamp.substr(1, stamp.size() - 2));
  double seconds = 0;
  const auto [end, ec] = std::from_chars(stamp.data(), stamp.data() + stamp.size(), seconds);
  if (ec != std::errc{} || end == stamp.data()) {
    return std::nullopt;
  }
  return seconds;
}

// Kernel time stamps of one CPU can trail another's by microseconds; a boot shows as a fall of more than this.
constexpr double k_boot_stamp_fall_s = 1.0;

// The kernel's first record of a boot: "Linux version 6.8.0-49-generic (buildd@lcy02-amd64-080) (gcc ...) #49 ...".
// Its whole shape is required: a user can name a process "Linux version 6" (15 bytes, a comm's most), and
// messages print a comm followed by " (" ("<comm> (<pid>): /proc/<pid>/oom_adj is deprecated"); a release
// with a dot after its first digits, then "(user@host) (", leaves a comm no room.
bool is_kernel_banner(std::string_view message) {
  constexpr std::string_view k_banner = "Linux version ";
  if (!starts_with(message, k_banner)) {
    return false;
  }
  const auto release = message.substr(k_banner.size());
  std::size_t digits = 0;
  while (digits < release.size() && release[digits] >= '0' && release[digits] <= '9') {
    ++digits;
  }
  if (digits == 0 || digits + 1 >= release.size() || release[digits] != '.' || release[digits + 1] < '0' ||
      release[digits + 1] > '9') {
    return false;
  }
  const auto blank = release.find(' ');
  if (blank == npos || release.substr(blank, 2) != " (") {
    return false;
  }
  const auto builder = release.substr(blank + 2);
  const auto close = builder.find(')');
  return close != npos && builder.substr(0, close).find('@') != npos && builder.substr(close, 3) == ") (";
}

// Marks the records that begin a later boot by their stamps: a fall of more than k_boot_stamp_fall_s from the
// record before. A stamp before any header (dmesg, short-monotonic) is the kernel's; one after a syslog or
// journal header is taken only where every header line of the log has one, since in a log whose kernel lines
// carry none (journalctl -k, rsyslog's default) the first bracket of a message is a user's text: a process
// named "[99999]" that crashes logs "[99999][42]: segfault ...".
void mark_boots_by_stamp(std::vector<RawRecord>& records, bool header_stamps_trusted) {
  double last_seconds = -1;  // the last record's seconds since boot; below 0 when none
  for (auto& record : records) {
    if (record.new_boot) {
      last_seconds = -1;  // a boot known by its banner: stamps start again
    }
    if (record.stamp_after_header && !header_stamps_trusted) {
      continue;
    }
    if (const auto seconds = stamp_seconds(record.stamp)) {
      record.new_boot = record.new_boot || (last_seconds >= 0 && *seconds + k_boot_stamp_fall_s < last_seconds);
      last_seconds = *seconds;
    }
  }
}

// A /dev/kmsg record's message with its escapes ("\\xNN") decoded.
std::string kmsg_decoded(std::string_view msg) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string raw;
  raw.reserve(msg.size());
  for (std::size_t k = 0; k < msg.size(); ++k) {
    if (msg[k] == '\\' && k + 3 < msg.size() && msg[k + 1] == 'x' && hex(msg[k + 2]) >= 0 && hex(msg[k + 3]) >= 0) {
      raw += static_cast<char>(hex(msg[k + 2]) * 16 + hex(msg[k + 3]));
      k += 3;
    } else {
      raw += msg[k];
    }
  }
  return raw;
}

// rsyslog, reading the journal, writes a record of several lines on one, its new lines as "#012". Decoded only
// where the result is the driver's whole mismatch (its lines each "NVRM: ...", the kernel's closing line last):
// a client's name or version holding "#012" elsewhere stays text.
std::optional<std::string> rsyslog_record(std::string_view msg) {
  constexpr std::string_view k_newline = "#012";
  if (!starts_with(msg, k_nvrm) || msg.find(k_newline) == npos) {
    return std::nullopt;
  }
  std::string raw;
  std::string_view last;
  for (std::size_t from = 0;;) {
    const auto at = msg.find(k_newline, from);
    const auto piece = msg.substr(from, at == npos ? npos : at - from);
    if (from > 0 && !starts_with(piece, k_nvrm)) {
      return std::nullopt;
    }
    raw.append(raw.empty() ? "" : "\n").append(piece);
    last = piece;
    if (at == npos) {
      break;
    }
    from = at + k_newline.size();
  }
  if (!is_mismatch_end(trim(last.substr(k_nvrm.size())))) {
    return std::nullopt;
  }
  return raw;
}

// The log's records. A text log shows a record of several lines (the driver's mismatch; a user's file name
// holding new lines, which the kernel prints as they are) as its first line with the others indented
// (dmesg, journalctl), or each with the record's kernel time stamp (dmesg -S, syslog's kern.log): either way
// they stay one record, read whole, so that no line of it reads as a message of its own. Records the kernel
// logged in the same microsecond share a time stamp too (dozens at boot on the lent H200), so a line joined
// for its stamp alone may also be a record of its own: it never clears anything (a load line there is not
// taken), and a mismatch it opens still counts, its version not taken as exact (log_message).
std::vector<RawRecord> records_of(std::string_view text) {
  std::vector<RawRecord> out;
  std::size_t header_lines = 0;
  std::size_t stamped_header_lines = 0;
  for (auto line : split(text, '\n')) {
    if (line.empty()) {
      continue;
    }
    const bool indented = line.front() == ' ' || line.front() == '\t';
    if (indented && !out.empty() && out.back().kmsg) {
      continue;  // a /dev/kmsg record's dictionary (" SUBSYSTEM=pci"): no message
    }
    if (indented && !out.empty()) {
      out.back().text.append("\n").append(trim(line));
      out.back().by_stamp.push_back(false);
      continue;
    }
    const LinePart part = message_of(line);
    // rsyslog's own lines under the kernel's tag ("imklog 8.2112.0, log source = /proc/kmsg started.", "Kernel
    // logging (proc) stopped.") carry no kernel stamp: they say nothing of the kernel's lines.
    const bool kernel_line = part.after_header && !starts_with(part.message, "imklog ") &&
                             !starts_with(part.message, "Kernel logging (");
    header_lines += kernel_line ? 1u : 0u;
    stamped_header_lines += kernel_line && !part.stamp.empty() ? 1u : 0u;
    if (!part.known_shape && !out.empty()) {
      // No prefix amid lines that have one: a record's line a program wrote raw (a syslog daemon splitting at
      // new lines a user's file name holds), or journalctl's "-- Boot ... --": never a message of its own.
      out.back().text.append("\n").append(part.message);
      out.back().by_stamp.push_back(false);
      continue;
    }
    if (kmsg_message_start(line) != npos) {
      out.push_back({kmsg_decoded(part.message), true, true, {}, {}, false, false});
      continue;
    }
    if (!part.stamp.empty() && !out.empty() && !out.back().kmsg && out.back().stamp == part.stamp) {
      out.back().text.append("\n").append(part.message);
      out.back().by_stamp.push_back(true);
      continue;
    }
    RawRecord record{std::string(part.message), false, part.known_shape, part.stamp, {},
                     !out.empty() && is_kernel_banner(part.message), part.after_header};
    if (auto joined = rsyslog_record(part.message)) {
      record.text = std::move(*joined);
    }
    record.by_stamp.assign(static_cast<std::size_t>(std::count(record.text.begin(), record.text.end(), '\n')) + 1,
                           false);
    out.push_back(std::move(record));
  }
  mark_boots_by_stamp(out, stamped_header_lines == header_lines);
  return out;
}

LogMessage log_message(const RawRecord& record) {
  if (record.text.find('\n') == std::string::npos) {
    return {record.text, false, record.known_shape, {}, false, record.new_boot};
  }
  // A line joined for its stamp alone that opens a mismatch starts one of its own, which runs to the next such
  // line or to the end; the first line's message ends before it. An indented line is always the record's.
  std::vector<std::string> parts(1);
  std::size_t number = 0;
  bool stamped_load = false;
  for (auto line : split(record.text, '\n')) {
    const bool by_stamp = number < record.by_stamp.size() && record.by_stamp[number];
    if (by_stamp && opens_mismatch(line)) {
      parts.emplace_back();
    }
    const auto body = nvrm_body(trim(line));
    stamped_load = stamped_load || (by_stamp && body && is_module_load(*body));
    parts.back().append(parts.back().empty() ? "" : "\n").append(trim(line));
    ++number;
  }
  LogMessage whole = joined_record(parts.front());
  whole.known_shape = record.known_shape;
  whole.stamped_load = stamped_load;
  whole.new_boot = record.new_boot;
  for (std::size_t k = 1; k < parts.size(); ++k) {
    whole.stamped_mismatches.push_back(joined_record(parts[k]).text);
  }
  return whole;
}

}  // namespace

namespace {

// The driver's message at messages[i] (its text past "NVRM:" is `body`) into `facts`; a mismatch printed
// line by line takes the lines after it up to its end, and `i` moves to the last of them.
void scan_driver_message(const std::vector<LogMessage>& messages, std::size_t& i, std::string_view body,
                         KernelLogFacts& facts) {
  if (is_module_load(body)) {
    // A new module generation: earlier mismatches and notices belong to the old one.
    for (auto& m : facts.mismatches) {
      m.after_module_load = false;
    }
    facts.legacy_persistence_notice = false;
    auto module = body.find("Module");
    std::string version = find_version_token(body, module == std::string_view::npos ? 0 : module);
    if (!version.empty()) {
      facts.loaded_version = Fact<std::string>::known(version);
    }
  } else if (starts_with(body, "Persistence mode is deprecated")) {
    facts.legacy_persistence_notice = true;
  } else if (starts_with(body, "API mismatch")) {
    std::string joined(body);
    if (!messages[i].whole) {
      // Lines of a text log (or records of a driver that printed each line apart): the message runs to the
      // kernel's closing "...have the same version.", and every line up to it is part of it, even one that
      // reads like a module load: the client's version is any text it sent, new lines included.
      std::size_t last = i;
      bool closed = false;
      int driver_lines = 0;
      // Never into a later boot: a refusal cut short by a crash ends where the boot did.
      for (std::size_t j = i + 1; j < messages.size() && !messages[j].new_boot && !closed &&
                                  driver_lines < k_mismatch_max_lines;
           ++j) {
        const auto next = nvrm_body(messages[j].text);
        if (!next) {
          continue;  // other kernel lines may interleave
        }
        ++driver_lines;
        joined += ' ';
        joined += *next;
        last = j;
        closed = is_mismatch_end(*next);
      }
      if (closed) {
        i = last;
      } else {
        // Cut short (a log that ends, a driver worded otherwise): up to the next message that starts one.
        joined = body;
        for (std::size_t j = i + 1; j < messages.size() && j <= i + 6 && !messages[j].new_boot; ++j) {
          const auto next = nvrm_body(messages[j].text);
          if (!next) {
            continue;
          }
          if (starts_with(*next, "API mismatch") || is_module_load(*next)) {
            break;
          }
          joined += ' ';
          joined += *next;
        }
      }
    }
    facts.mismatches.push_back(parse_mismatch(joined));
  }
}

// scan_kernel_log, also counting the lines in a shape gpuwarm reads.
KernelLogFacts scan(std::string_view text, unsigned& known_shapes) {
  known_shapes = 0;
  KernelLogFacts facts;
  facts.loaded_version = Fact<std::string>::unknown("no \"NVRM: loading\" line in the log");
  std::vector<LogMessage> messages;
  for (const auto& record : records_of(text)) {
    ++facts.records;
    messages.push_back(log_message(record));
    known_shapes += messages.back().known_shape ? 1u : 0u;
  }
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (messages[i].new_boot) {
      // What an earlier boot logged (a refusal, the module it loaded, the legacy notice) is history: a reboot
      // loads the module again. The new boot's own load line says which, if it can be taken.
      for (auto& m : facts.mismatches) {
        m.after_module_load = false;
      }
      facts.legacy_persistence_notice = false;
      facts.loaded_version = Fact<std::string>::unknown("no \"NVRM: loading\" line since the last boot in the log");
    }
    const std::size_t first = i;
    if (const auto body = nvrm_body(messages[i].text)) {
      scan_driver_message(messages, i, *body, facts);
    }
    // What may be the driver's record logged in the same microsecond as another: it counts, never exactly.
    for (std::size_t k = first; k <= i; ++k) {
      if (messages[k].stamped_load && !facts.loaded_version.has()) {
        facts.loaded_version = Fact<std::string>::unknown(
            "the \"NVRM: loading\" line shares its time stamp with the record before it (with -T, its second), "
            "so it may be that record's text: not taken");
      }
      for (const auto& opened : messages[k].stamped_mismatches) {
        ApiMismatch m = parse_mismatch(*nvrm_body(opened));
        m.client_version_exact = false;
        facts.mismatches.push_back(std::move(m));
      }
    }
  }
  return facts;
}

}  // namespace

KernelLogFacts scan_kernel_log(std::string_view text) {
  unsigned known_shapes = 0;
  return scan(text, known_shapes);
}

namespace {
constexpr std::size_t k_kmsg_max_bytes = 256u << 20;
constexpr std::chrono::milliseconds k_kmsg_read_limit{2000};
}  // namespace

std::optional<std::uint64_t> kmsg_sequence(std::string_view record) {
  const auto comma = record.find(',');
  if (comma == std::string_view::npos) {
    return std::nullopt;
  }
  std::uint64_t seq = 0;
  const char* first = record.data() + comma + 1;
  const char* last = record.data() + record.size();
  auto [end, ec] = std::from_chars(first, last, seq);
  if (ec != std::errc{} || end == first || end == last || *end != ',') {
    return std::nullopt;
  }
  return seq;
}

KmsgRecords read_kmsg_records(int fd, std::chrono::milliseconds limit, std::size_t max_bytes, int later_fd) {
  KmsgRecords out;
  char buf[8192];
  // The ring is read in milliseconds. A kernel logging as fast as it is read (an Xid or AER storm) would keep
  // the read going: it stops at the first record logged after it began (seen on `later_fd`), and in any
  // case at the limit, so a health check or the guard at boot is never held.
  const auto deadline = std::chrono::steady_clock::now() + limit;
  std::optional<std::uint64_t> first_later;
  for (unsigned records = 0;; ++records) {
    if (records % 64 == 63 && std::chrono::steady_clock::now() > deadline) {
      out.out_of_time = true;
      break;
    }
    if (later_fd >= 0 && !first_later && records % 64 == 0) {
      char later[8192];
      ssize_t got = ::read(later_fd, later, sizeof later);
      if (got < 0 && errno == EPIPE) {
        got = ::read(later_fd, later, sizeof later);  // overwritten already: the oldest left is later still
      }
      if (got > 0) {
        first_later = kmsg_sequence(std::string_view(later, static_cast<std::size_t>(got)));
      }
    }
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) {
      if (first_later) {
        auto seq = kmsg_sequence(std::string_view(buf, static_cast<std::size_t>(n)));
        if (seq && *seq >= *first_later) {
          out.newer_left = true;
          break;
        }
      }
      // Each read() of /dev/kmsg returns one record. The kernel's ring is a few MiB; past max_bytes the oldest
      // half goes, so memory stays bounded and the end is kept.
      out.text.append(buf, static_cast<std::size_t>(n));
      if (out.text.size() > max_bytes) {
        const auto line_start = out.text.find('\n', out.text.size() / 2);
        out.text.erase(0, line_start == std::string::npos ? out.text.size() / 2 : line_start + 1);
        out.cut = true;
      }
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && errno == EPIPE) {
      continue;  // a record was overwritten while we read: skip it
    }
    break;  // EAGAIN: caught up; 0: end
  }
  return out;
}

KernelLogFacts read_kernel_log(const Paths& paths, const std::string& file) {
  if (!file.empty()) {
    // A FIFO or device here would block diagnose and guard (past systemd's
    // TimeoutStartSec): regular files only. A huge log keeps its newest 256 MiB,
    // where a mismatch since the module loaded would be.
    auto text = read_regular_tail(file, 256u << 20);
    if (!text) {
      KernelLogFacts facts;
      facts.named = true;
      facts.source = Fact<std::string>::unknown(text.error().message);
      facts.loaded_version = Fact<std::string>::unknown("log not read");
      return facts;
    }
    unsigned known_shapes = 0;
    KernelLogFacts facts = scan(text->text, known_shapes);
    facts.named = true;
    if (facts.records > 0 && known_shapes == 0) {
      // Lines, but none gpuwarm can place (a format it does not read): what they say is unknown, not nothing.
      const auto lines = split(text->text, '\n');
      facts.source = Fact<std::string>::unknown(fmt::format(
          "{}: none of its {} lines is in a format gpuwarm reads (/dev/kmsg records, dmesg, journalctl -k, "
          "syslog's kern.log)",
          file, std::count_if(lines.begin(), lines.end(), [](std::string_view l) { return !l.empty(); })));
      facts.loaded_version = Fact<std::string>::unknown("log not read");
      facts.mismatches.clear();
      facts.legacy_persistence_notice = false;
      return facts;
    }
    facts.source = Fact<std::string>::known(text->truncated ? file + " (its last 256 MiB)" : file);
    return facts;
  }

  const std::string kmsg = paths.dev("kmsg");
  // The kernel's log device, or a regular file (a recorded log in a tree named by --root); nothing else is
  // opened. A container's /dev/kmsg is not the host's (/dev/null, or any device its owner put there).
  auto opened = open_for_reading(kmsg, k_kmsg_device | k_regular);
  if (!opened) {
    const std::string message = opened.error().message;
    const bool denied = message.find(std::strerror(EACCES)) != std::string::npos ||
                        message.find(std::strerror(EPERM)) != std::string::npos;
    // Refused to root too (no CAP_SYSLOG in a container, dmesg_restrict) is no "needs root" (NOTE001's): NOTE003.
    const bool as_root = ::geteuid() == 0;
    KernelLogFacts facts;
    facts.source = Fact<std::string>::unknown(
        (denied && !as_root ? "needs root: /dev/kmsg" : std::string("/dev/kmsg")) +
        message.substr(std::min(message.size(), kmsg.size())) +
        (denied && as_root ? " (refused to root: no CAP_SYSLOG, as in a container)" : ""));
    facts.loaded_version = Fact<std::string>::unknown("log not read");
    return facts;
  }
  int fd = *opened;
  struct stat st {};
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
    // A recorded log: its end, read directly from the file just checked (a file can be any size; reading it
    // record by record cannot).
    auto tail = read_tail_and_close(fd, kmsg, k_kmsg_max_bytes);
    KernelLogFacts facts = scan_kernel_log(tail ? tail->text : std::string{});
    facts.source = tail ? Fact<std::string>::known(tail->truncated ? "/dev/kmsg (its newest records)" : "/dev/kmsg")
                        : Fact<std::string>::unknown(paths.display(tail.error().message));
    return facts;
  }
  // A second descriptor at the log's end now: its first record marks where the log this read is about ends.
  int later_fd = -1;
  if (auto later = open_for_reading(kmsg, k_kmsg_device); later) {
    later_fd = *later;
    if (::lseek(later_fd, 0, SEEK_END) < 0) {
      ::close(later_fd);
      later_fd = -1;
    }
  }
  KmsgRecords read = read_kmsg_records(fd, k_kmsg_read_limit, k_kmsg_max_bytes, later_fd);
  ::close(fd);
  if (later_fd >= 0) {
    ::close(later_fd);
  }
  KernelLogFacts facts = scan_kernel_log(read.text);
  facts.newest_unread = read.out_of_time;
  const auto limit_s = std::chrono::duration_cast<std::chrono::seconds>(k_kmsg_read_limit).count();
  facts.source = Fact<std::string>::known(
      read.out_of_time ? fmt::format("/dev/kmsg (reading stopped after {} s: the kernel logged as fast as it was "
                                     "read, newer records unread)",
                                     limit_s)
      : read.cut       ? "/dev/kmsg (its newest records)"
                       : "/dev/kmsg");
  return facts;
}

}  // namespace gpuwarm
