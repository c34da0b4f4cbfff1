#include <gtest/gtest.h>

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
