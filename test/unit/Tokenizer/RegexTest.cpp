//===- RegexTest.cpp - The pre-tokenizer regex subset ---------------------===//

#include "Regex.h"
#include "Unicode.h"

#include <gtest/gtest.h>

using namespace moec::tokenizer;

namespace {

// The matched substrings of `text` (UTF-8) for `pattern`.
std::vector<std::string> matches(const char *pattern, std::string_view text) {
  std::string error;
  auto regex = Regex::compile(pattern, error);
  EXPECT_TRUE(regex) << error;
  if (!regex)
    return {};
  std::vector<char32_t> codePoints;
  std::vector<uint32_t> offsets;
  unicode::decodeUtf8(text, codePoints, offsets);
  std::vector<std::string> result;
  for (auto [begin, end] : regex->findAll(codePoints))
    result.emplace_back(
        text.substr(offsets[begin], offsets[end] - offsets[begin]));
  return result;
}

using Strings = std::vector<std::string>;

TEST(TokenizerRegex, WhitespaceLookaheadLeavesOneSpaceForTheNextWord) {
  EXPECT_EQ(matches(" ?\\p{L}+|\\s+(?!\\S)|\\s+", "a   b"),
            (Strings{"a", "  ", " b"}));
  EXPECT_EQ(matches("\\s+(?!\\S)|\\s+", "x  \n  "), (Strings{"  \n  "}));
}

TEST(TokenizerRegex, LeftmostFirstAlternation) {
  EXPECT_EQ(matches("ab|abc", "abc"), (Strings{"ab"}));
  EXPECT_EQ(matches("\\p{N}{1,3}", "1234567"), (Strings{"123", "456", "7"}));
}

TEST(TokenizerRegex, CaseInsensitiveGroupAndClasses) {
  EXPECT_EQ(matches("(?i:'s|'ll)", "'S 'Ll 'x"), (Strings{"'S", "'Ll"}));
  EXPECT_EQ(matches("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+", " héllo,wörld"),
            (Strings{" héllo", ",wörld"}));
  EXPECT_EQ(matches("[一-龥]+|[a-c]+", "ab中文xcd"),
            (Strings{"ab", "中文", "c"}));
}

TEST(TokenizerRegex, BadPatternsAreErrorsNotCrashes) {
  for (const char *bad :
       {"(", "a)", "[abc", "\\p{Xx}", "a{2", "*a", "\\", "a+?", "(?<n>a)"}) {
    std::string error;
    EXPECT_FALSE(Regex::compile(bad, error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
}

} // namespace

namespace {

TEST(TokenizerRegex, HostilePatternsFailInsteadOfOverflowingTheStack) {
  std::string error;
  EXPECT_FALSE(Regex::compile(std::string(5000, 'a'), error));
  EXPECT_FALSE(Regex::compile(
      std::string(500, '(') + "a" + std::string(500, ')'), error));
  // A repeated group stops after a bounded number of iterations.
  std::string text;
  for (int i = 0; i < 100000; ++i)
    text += "ab";
  EXPECT_TRUE(matches("(?:ab)+", text).size() >= 1);
}

} // namespace
