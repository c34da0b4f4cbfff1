#include "sysfs/kernel_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

// Drops the kernel's "[ 1234.567890]" time stamp that syslog keeps at the start of a message.
std::string_view without_timestamp(std::string_view message) {
  if (!message.empty() && message.front() == '[') {
    const auto close = message.find(']');
    if (close != std::string_view::npos &&
        message.substr(1, close - 1).find_first_not_of(" 0123456789.") == std::string_view::npos) {
      return trim(message.substr(close + 1));
    }
  }
  return message;
}

constexpr std::string_view k_nvrm = "NVRM:";

// Drops the "facility:level : " that `dmesg -x` (--decode) prints first ("kern  :err   : [ 12.3] NVRM: ...").
std::string_view without_decode_prefix(std::string_view line) {
  auto word = [&](std::size_t at) {
    while (at < line.size() && ((line[at] >= 'a' && line[at] <= 'z') || (line[at] >= '0' && line[at] <= '9'))) {
      ++at;
    }
    return at;
  };
  auto field_end = [&](std::size_t at) -> std::size_t {  // a word, blanks, ':'; npos when not so
    const auto end = word(at);
    if (end == at) {
      return std::string_view::npos;
    }
    auto colon = end;
    while (colon < line.size() && line[colon] == ' ') {
      ++colon;
    }
    return colon < line.size() && line[colon] == ':' ? colon + 1 : std::string_view::npos;
  };
  const auto facility = field_end(0);
  const auto level = facility == std::string_view::npos ? facility : field_end(facility);
  if (level == std::string_view::npos || level >= line.size() || line[level] != ' ') {
    return line;
  }
  return trim(line.substr(level));
}

// Returns the message part of one log line.
std::string_view message_of(std::string_view line) {
  if (const auto start = kmsg_message_start(line); start != std::string_view::npos) {
    return line.substr(start);
  }
  std::string_view rest = without_decode_prefix(trim(line));
  // dmesg: "[ 1234.567890] NVRM: ...", with -T "[Fri Jun  1 12:00:00 2026] NVRM: ..."; journalctl -k -o
  // short-monotonic: "[ 1234.567890] host kernel: NVRM: ..."
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    if (close != std::string_view::npos) {
      rest = trim(rest.substr(close + 1));
    }
  }
  // The driver's message already: a " kernel: " inside it (a client's name may hold one) is no prefix.
  if (starts_with(rest, k_nvrm)) {
    return rest;
  }
  // journalctl -k and syslog's kern.log, whose lines may keep the kernel's time stamp:
  // "Jun 01 12:00:00 host kernel: NVRM: ...", "2026-06-01T12:00:00+00:00 host kernel: [ 12.3] NVRM: ..."
  auto kernel = rest.find(" kernel: ");
  if (kernel != std::string_view::npos) {
    return without_timestamp(trim(rest.substr(kernel + 9)));
  }
  return rest;
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

// A module's load line, as both forms of the driver print it ("loading NVIDIA UNIX x86_64 Kernel Module",
// "loading NVIDIA UNIX Open Kernel Module for x86_64"): the whole of it, so that a line a client's version
// brings into a text log must be long as well.
bool is_module_load(std::string_view body) {
  return starts_with(body, "loading NVIDIA UNIX ") && body.find("Kernel Module") != std::string_view::npos;
}

// One line of the log as a message. A /dev/kmsg record keeps what the driver printed at once, its lines
// escaped ("\\x0a", as every byte below a space and the backslash): unescaped, its lines are joined as a text
// log's would be, and it is whole, so no line inside it (a client's version may hold new lines) reads as
// a message of its own.
struct LogMessage {
  std::string text;
  bool whole = false;  // one /dev/kmsg record holding every line the driver printed at once
};

LogMessage log_message(std::string_view line) {
  std::string_view msg = message_of(line);
  const bool kmsg_record = kmsg_message_start(line) != std::string_view::npos;
  if (!kmsg_record || msg.find("\\x") == std::string_view::npos) {
    return {std::string(msg), false};
  }
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
  if (raw.find('\n') == std::string::npos) {
    return {raw, false};
  }
  // Its lines as a text log's would be joined: the driver's prefix dropped from every line after the first.
  LogMessage out{{}, true};
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

}  // namespace

KernelLogFacts scan_kernel_log(std::string_view text) {
  KernelLogFacts facts;
  facts.loaded_version = Fact<std::string>::unknown("no \"NVRM: loading\" line in the log");
  std::vector<LogMessage> messages;
  for (auto line : split(text, '\n')) {
    if (line.empty()) {
      continue;
    }
    // kmsg continuation lines (" SUBSYSTEM=...") carry no message.
    if (line.front() == ' ' && line.find('=') != std::string_view::npos) {
      continue;
    }
    ++facts.records;
    messages.push_back(log_message(line));
  }

  // Whether a message is one of the driver's, and its text past "NVRM:".
  auto nvrm_body = [](std::string_view msg) -> std::optional<std::string_view> {
    if (!starts_with(msg, k_nvrm)) {
      return std::nullopt;
    }
    return trim(msg.substr(k_nvrm.size()));
  };
  for (std::size_t i = 0; i < messages.size(); ++i) {
    const auto body = nvrm_body(messages[i].text);
    if (!body) {
      continue;
    }
    if (is_module_load(*body)) {
      // A new module generation: earlier mismatches and notices belong to the old one.
      for (auto& m : facts.mismatches) {
        m.after_module_load = false;
      }
      facts.legacy_persistence_notice = false;
      auto module = body->find("Module");
      std::string version = find_version_token(*body, module == std::string_view::npos ? 0 : module);
      if (!version.empty()) {
        facts.loaded_version = Fact<std::string>::known(version);
      }
    } else if (starts_with(*body, "Persistence mode is deprecated")) {
      facts.legacy_persistence_notice = true;
    } else if (starts_with(*body, "API mismatch")) {
      std::string joined(*body);
      if (!messages[i].whole) {
        // Lines of a text log (or records of a driver that printed each line apart): the message runs to the
        // kernel's closing "...have the same version.", and every line up to it is part of it, even one that
        // reads like a module load: the client's version is any text it sent, new lines included.
        std::size_t last = i;
        bool closed = false;
        int driver_lines = 0;
        for (std::size_t j = i + 1; j < messages.size() && !closed && driver_lines < k_mismatch_max_lines; ++j) {
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
          joined = *body;
          for (std::size_t j = i + 1; j < messages.size() && j <= i + 6; ++j) {
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
  return facts;
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
      facts.source = Fact<std::string>::unknown(text.error().message);
      facts.loaded_version = Fact<std::string>::unknown("log not read");
      return facts;
    }
    KernelLogFacts facts = scan_kernel_log(text->text);
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
    KernelLogFacts facts;
    facts.source = Fact<std::string>::unknown((denied ? "needs root: /dev/kmsg" : std::string("/dev/kmsg")) +
                                              message.substr(std::min(message.size(), kmsg.size())));
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
