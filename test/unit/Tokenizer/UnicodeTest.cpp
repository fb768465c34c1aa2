//===- UnicodeTest.cpp - Categories, NFC and UTF-8 ------------------------===//

#include "Unicode.h"

#include <gtest/gtest.h>

using namespace moec::tokenizer::unicode;

TEST(TokenizerUnicode, Categories) {
  EXPECT_EQ(category('a'), Letter);
  EXPECT_EQ(category(U'中'), Letter);
  EXPECT_EQ(category(0x0301), Mark);
  EXPECT_EQ(category(U'٣'), Number);
  EXPECT_EQ(category(U'½'), Number);
  EXPECT_EQ(category(U'，'), Punctuation);
  EXPECT_EQ(category(U'😀'), Symbol);
  EXPECT_EQ(category(' '), 0);
  EXPECT_TRUE(isWhiteSpace(0x3000));
  EXPECT_FALSE(isWhiteSpace(0x200B));
}

TEST(TokenizerUnicode, Nfc) {
  EXPECT_EQ(toNfc("cafe\xCC\x81"), "caf\xC3\xA9");                // é
  EXPECT_EQ(toNfc("\xE2\x84\xAB"), "\xC3\x85");                   // Å sign
  EXPECT_EQ(toNfc("e\xCC\x81\xCC\xA3"), "\xE1\xBA\xB9\xCC\x81");  // ẹ́
  EXPECT_EQ(toNfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8"), "각"); // jamo
  EXPECT_EQ(toNfc("plain ascii"), "plain ascii");
}

TEST(TokenizerUnicode, LossyUtf8AndIncompleteSuffix) {
  EXPECT_EQ(toValidUtf8("a\xFF"
                        "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(toValidUtf8("\xE4\xB8"), "\xEF\xBF\xBD");
  EXPECT_EQ(incompleteUtf8Suffix("a\xE4\xB8"), 2u);
  EXPECT_EQ(incompleteUtf8Suffix("a\xE4\xB8\xAD"), 0u);
  EXPECT_EQ(incompleteUtf8Suffix("a\xF0\x9F\x98"), 3u);
  EXPECT_EQ(incompleteUtf8Suffix("a\xFF"), 0u);
}
