#include "core/strings.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <limits>

namespace gpuwarm {

std::string_view trim(std::string_view s) {
  auto is_blank = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\0'; };
  while (!s.empty() && is_blank(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && is_blank(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  for (;;) {
    auto pos = s.find(sep, start);
    parts.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) {
      break;
    }
    start = pos + 1;
  }
  return parts;
}

std::vector<std::string> split_lines(std::string_view s) {
  std::vector<std::string> lines;
  for (auto part : split(s, '\n')) {
    if (!part.empty() && part.back() == '\r') {
      part.remove_suffix(1);
    }
    lines.emplace_back(part);
  }
  if (!lines.empty() && lines.back().empty()) {
    lines.pop_back();
  }
  return lines;
}

std::optional<unsigned long long> parse_u64(std::string_view s) {
  if (s.empty() || s.size() > 20) {
    return std::nullopt;
  }
  unsigned long long value = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    auto digit = static_cast<unsigned long long>(c - '0');
    if (value > (std::numeric_limits<unsigned long long>::max() - digit) / 10) {
      return std::nullopt;
    }
    value = value * 10 + digit;
  }
  return value;
}

namespace {

bool is_dotted_number(std::string_view v) {
  for (;;) {
    const std::string_view part = v.substr(0, v.find('.'));
    if (!parse_u64(part)) {
      return false;
    }
    if (part.size() == v.size()) {
      return true;
    }
    v.remove_prefix(part.size() + 1);
  }
}

}  // namespace

std::optional<int> compare_driver_versions(std::string_view a, std::string_view b) {
  // Both whole first: a malformed version orders against nothing, not even where its first parts would decide
  // (else "216.3<junk>" < "535.216.03" while "216.3<junk>" cannot be compared with itself; the fuzzer's case).
  if (!is_dotted_number(a) || !is_dotted_number(b)) {
    return std::nullopt;
  }
  for (;;) {
    std::string_view pa = a.substr(0, a.find('.'));
    std::string_view pb = b.substr(0, b.find('.'));
    auto na = parse_u64(pa);
    auto nb = parse_u64(pb);
    if (!na || !nb) {
      return std::nullopt;
    }
    if (*na != *nb) {
      return *na < *nb ? -1 : 1;
    }
    a.remove_prefix(std::min(a.size(), pa.size() + 1));
    b.remove_prefix(std::min(b.size(), pb.size() + 1));
    if (a.empty() || b.empty()) {
      return a.empty() == b.empty() ? 0 : (a.empty() ? -1 : 1);
    }
  }
}

std::string find_version_token(std::string_view s, std::size_t from) {
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  for (std::size_t i = from; i < s.size(); ++i) {
    // A version token starts at a word boundary with a digit.
    if (!is_digit(s[i]) || (i > 0 && s[i - 1] != ' ' && s[i - 1] != '\t' && s[i - 1] != '(')) {
      continue;
    }
    std::size_t j = i;
    int dots = 0;
    while (j < s.size()) {
      if (is_digit(s[j])) {
        ++j;
      } else if (s[j] == '.' && j + 1 < s.size() && is_digit(s[j + 1])) {
        ++dots;
        ++j;
      } else {
        break;  // a sentence's full stop after the version ends it
      }
    }
    if (dots >= 1 && dots <= 3) {
      return std::string(s.substr(i, j - i));
    }
    i = j;
  }
  return {};
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\t' || (c >= 0x20 && c < 0x7f)) {
      out += ch;
    } else {
      out += '?';
    }
  }
  return out;
}

namespace {

// The code point of a bidirectional control or an invisible character starting at s[i] (UTF-8), if one
// does. Bidi controls reorder what a terminal shows ("Trojan Source"), so a path or hostname could read as
// another: ALM U+061C, LRM/RLM U+200E-200F, the embeddings and overrides U+202A-202E, the isolates
// U+2066-2069. Also the line and paragraph separators U+2028-2029, which some viewers break lines at, and
// what shows as nothing, so that "node1" and "node1" with a zero-width space read apart: the soft hyphen
// U+00AD, U+200B-200D, the word joiner and invisible operators U+2060-2064, and U+FEFF.
std::optional<unsigned> hidden_control_at(std::string_view s, std::size_t i) {
  auto at = [&s, i](std::size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  if (at(0) == 0xd8 && at(1) == 0x9c) {
    return 0x061c;
  }
  if (at(0) == 0xc2 && at(1) == 0xad) {
    return 0x00ad;
  }
  if (at(0) == 0xef && at(1) == 0xbb && at(2) == 0xbf) {
    return 0xfeff;
  }
  if (at(0) != 0xe2 || (at(1) != 0x80 && at(1) != 0x81)) {
    return std::nullopt;
  }
  const unsigned cp = 0x2000u | ((at(1) & 0x3fu) << 6) | (at(2) & 0x3fu);
  if ((at(2) & 0xc0u) != 0x80u) {
    return std::nullopt;
  }
  if ((cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2060 && cp <= 0x2064) ||
      (cp >= 0x2066 && cp <= 0x2069)) {
    return cp;
  }
  return std::nullopt;
}

// The length of the well-formed UTF-8 sequence at s[i] (2 to 4 bytes), or 0 when the bytes there are none: a
// stray continuation byte, an overlong form, a surrogate, a sequence cut short. A lone byte 0x80-0x9F is an
// 8-bit control (0x9B is CSI) to a terminal not in UTF-8 mode.
std::size_t utf8_length_at(std::string_view s, std::size_t i) {
  auto at = [&s, i](std::size_t k) { return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u; };
  auto continuation = [&at](std::size_t k) { return (at(k) & 0xc0u) == 0x80u; };
  const unsigned lead = at(0);
  if (lead >= 0xc2 && lead <= 0xdf) {
    return continuation(1) ? 2 : 0;
  }
  if (lead >= 0xe0 && lead <= 0xef) {
    const bool overlong = lead == 0xe0 && at(1) < 0xa0;
    const bool surrogate = lead == 0xed && at(1) >= 0xa0;
    return continuation(1) && continuation(2) && !overlong && !surrogate ? 3 : 0;
  }
  if (lead >= 0xf0 && lead <= 0xf4) {
    const bool overlong = lead == 0xf0 && at(1) < 0x90;
    const bool too_high = lead == 0xf4 && at(1) >= 0x90;
    return continuation(1) && continuation(2) && continuation(3) && !overlong && !too_high ? 4 : 0;
  }
  return 0;
}

}  // namespace

std::string escape_control(std::string_view s) {
  static const char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      auto c1 = static_cast<unsigned char>(s[++i]);
      out += "\\u00";
      out += hex[c1 >> 4];
      out += hex[c1 & 15];
    } else if (auto hidden = hidden_control_at(s, i)) {
      out += "\\u";
      for (int shift = 12; shift >= 0; shift -= 4) {
        out += hex[(*hidden >> shift) & 15];
      }
      i += *hidden < 0x800 ? 1u : 2u;  // the rest of its 2- or 3-byte sequence
    } else if (c < 0x80) {
      out += static_cast<char>(c);
    } else if (const std::size_t length = utf8_length_at(s, i); length > 0) {
      out.append(s.substr(i, length));
      i += length - 1;
    } else {  // not UTF-8: shown as the byte it is
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string escape_control_lines(std::string_view s) {
  std::string out;
  for (std::size_t start = 0; start <= s.size();) {
    auto nl = s.find('\n', start);
    out += escape_control(s.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start));
    if (nl == std::string_view::npos) {
      break;
    }
    out += '\n';
    start = nl + 1;
  }
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string_view last_path_component(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::optional<double> parse_duration_seconds(std::string_view s) {
  s = trim(s);
  std::size_t unit_at = s.size();
  while (unit_at > 0 && std::isalpha(static_cast<unsigned char>(s[unit_at - 1])) != 0) {
    --unit_at;
  }
  std::string number(s.substr(0, unit_at));
  std::string_view unit = s.substr(unit_at);
  if (number.empty() || number.find_first_not_of("0123456789.") != std::string::npos ||
      std::count(number.begin(), number.end(), '.') > 1 || number == ".") {
    return std::nullopt;
  }
  double value = std::strtod(number.c_str(), nullptr);
  if (unit.empty() || unit == "s") {
    return value;
  }
  if (unit == "ms") {
    return value / 1000.0;
  }
  if (unit == "m" || unit == "min") {
    return value * 60.0;
  }
  if (unit == "h") {
    return value * 3600.0;
  }
  return std::nullopt;
}

}  // namespace gpuwarm
