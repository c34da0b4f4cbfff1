#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "core/strings.h"

namespace gpuwarm {
namespace {

TEST(Strings, ParseU64) {
  EXPECT_EQ(parse_u64("0"), 0u);
  EXPECT_EQ(parse_u64("18446744073709551615"), 18446744073709551615ull);
  EXPECT_EQ(parse_u64("18446744073709551616"), std::nullopt);
  EXPECT_EQ(parse_u64(""), std::nullopt);
  EXPECT_EQ(parse_u64("12a"), std::nullopt);
  EXPECT_EQ(parse_u64("-1"), std::nullopt);
  EXPECT_EQ(parse_u64(" 1"), std::nullopt);
}

TEST(Strings, EscapeControlLeavesTextAndEscapesWhatATerminalObeys) {
  struct Case {
    std::string_view text;
    const char* want;
  };
  const Case cases[] = {
      {"plain node-01 / ✓ é 中", "plain node-01 / ✓ é 中"},
      {"a\x1b[31mred\x07", "a\\x1b[31mred\\x07"},
      {"tab\there\r\n", "tab\\x09here\\x0d\\x0a"},
      {"del\x7f", "del\\x7f"},
      {"c1 \xc2\x9b" "31m", "c1 \\u009b31m"},  // CSI as a C1 control
      {"nbsp \xc2\xa0 stays", "nbsp \xc2\xa0 stays"},  // U+00A0 is printable
      {"gpu\xe2\x80\xaetxt.exe", "gpu\\u202etxt.exe"},  // RLO: would show "gpuexe.txt"
      {"\xe2\x80\xaa\xe2\x80\xab\xe2\x80\xac\xe2\x80\xad", "\\u202a\\u202b\\u202c\\u202d"},
      {"\xe2\x81\xa6x\xe2\x81\xa9", "\\u2066x\\u2069"},  // isolates
      {"\xe2\x80\x8e\xe2\x80\x8f\xd8\x9c", "\\u200e\\u200f\\u061c"},
      {"line\xe2\x80\xa8para\xe2\x80\xa9", "line\\u2028para\\u2029"},  // separators some viewers break at
      {"\xe2\x80\x94 dash, \xe2\x80\xa6", "\xe2\x80\x94 dash, \xe2\x80\xa6"},  // U+2014, U+2026 stay
      // Not UTF-8: each byte as it is. A lone 0x9B is CSI to a terminal outside UTF-8 mode.
      {"cut \xe2\x80", "cut \\xe2\\x80"},
      {"e\x9b" "2J\x9b" "31mRED", "e\\x9b2J\\x9b31mRED"},
      {"latin-1 caf\xe9!", "latin-1 caf\\xe9!"},
      {"overlong \xc0\xaf \xe0\x80\xaf", "overlong \\xc0\\xaf \\xe0\\x80\\xaf"},
      {"surrogate \xed\xa0\x80", "surrogate \\xed\\xa0\\x80"},
      {"past U+10FFFF \xf4\x90\x80\x80 \xf5", "past U+10FFFF \\xf4\\x90\\x80\\x80 \\xf5"},
      {"emoji \xf0\x9f\x94\xa5 \xf4\x8f\xbf\xbf", "emoji \xf0\x9f\x94\xa5 \xf4\x8f\xbf\xbf"},  // 4 bytes stay
      // What shows as nothing: "node1" and "node1" + ZWSP must not read alike.
      {"node1\xe2\x80\x8b", "node1\\u200b"},
      {"\xe2\x80\x8c\xe2\x80\x8d\xe2\x81\xa0\xe2\x81\xa4", "\\u200c\\u200d\\u2060\\u2064"},
      {"\xef\xbb\xbf" "bom soft\xc2\xad" "hyphen", "\\ufeffbom soft\\u00adhyphen"},
      {"\xe2\x81\xa5 U+2065 stays", "\xe2\x81\xa5 U+2065 stays"},  // unassigned, not a format character
  };
  for (const auto& c : cases) {
    EXPECT_EQ(escape_control(c.text), c.want) << c.text;
  }
}

TEST(Strings, DriverVersionsCompareAsNumbersPartByPart) {
  struct Case {
    const char* a;
    const char* b;
    std::optional<int> sign;
  };
  for (const Case& c : {Case{"580.159.04", "590.44.01", -1}, Case{"580.159.04", "580.95.05", 1},
                        Case{"580.159.04", "580.159.04", 0}, Case{"470.256.02", "580.159.04", -1},
                        Case{"580.159", "580.159.04", -1}, Case{"580.159.04", "580.159", 1},
                        Case{"580.x", "580.1", std::nullopt}, Case{"", "580.1", std::nullopt},
                        Case{"580..1", "580.1", std::nullopt}, Case{"580.1.", "580.1", std::nullopt},
                        // Malformed past the part that would decide: still no order (found by fuzzing).
                        Case{"216.3\x1b junk", "535.216.03", std::nullopt},
                        Case{"535.216.03", "216.3\x1b junk", std::nullopt}, Case{"580.159.04 ", "590.1", std::nullopt}}) {
    SCOPED_TRACE(std::string(c.a) + " vs " + c.b);
    auto got = compare_driver_versions(c.a, c.b);
    ASSERT_EQ(got.has_value(), c.sign.has_value());
    if (got) {
      EXPECT_EQ((*got > 0) - (*got < 0), *c.sign);
    }
  }
}

TEST(Strings, FindVersionToken) {
  struct Case {
    const char* text;
    std::size_t from;
    const char* want;
  };
  const Case cases[] = {
      {"NVIDIA UNIX x86_64 Kernel Module  535.216.03  Thu Apr  3", 0, "535.216.03"},
      {"version 575.64", 0, "575.64"},
      {"for x86_64  580.159.04  Release", 0, "580.159.04"},
      {"gcc version 12.2.0 (Debian 12.2.0-14)", 0, "12.2.0"},
      {"no version here", 0, ""},
      {"trailing dot 570.", 0, ""},
      {"the version 570.124.04.  Please", 0, "570.124.04"},
      {"the version 570.133.07, but", 0, "570.133.07"},
      {"1.2.3.4.5 too many dots", 0, ""},
      {"x1.2 glued to a word", 0, ""},
      {"a 1.2 b 3.4", 4, "3.4"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(find_version_token(c.text, c.from), c.want) << c.text;
  }
}

TEST(Strings, PrintableReplacesJunk) {
  EXPECT_EQ(printable("ok\tfine"), "ok\tfine");
  EXPECT_EQ(printable(std::string("a\0b\xff\n", 5)), "a?b??");
}

TEST(Strings, SplitLinesHandlesCrlfAndTrailingNewline) {
  auto lines = split_lines("a\r\nb\n\nc\n");
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], "a");
  EXPECT_EQ(lines[2], "");
  EXPECT_EQ(lines[3], "c");
}

}  // namespace
}  // namespace gpuwarm
