//===- InspectArtifactTest.cpp - `moec inspect` on an artifact ------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "TestArtifact.h"
#include "TestDirectory.h"

#include "moec/Target/InspectArtifact.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace moec;
using namespace moec::test;
using testing::HasSubstr;

namespace {

TEST(TargetInspectArtifact, PrintsEveryPart) {
  TestDirectory dir;
  std::string path = dir.path("m.moec");
  ASSERT_EQ(messageOf(writeTestArtifact(path, {})), "");
  EXPECT_TRUE(isArtifactFile(path));

  std::string text;
  llvm::raw_string_ostream os(text);
  ASSERT_EQ(messageOf(inspectArtifact(path, os, /*verifyChecksums=*/true)), "");
  EXPECT_THAT(text, HasSubstr("format: 1.1, producer: moec test"));
  EXPECT_THAT(text, HasSubstr("model_type     moec_test"));
  EXPECT_THAT(text, HasSubstr("vocab_size     37"));
  EXPECT_THAT(text, HasSubstr("eos_token_ids  [36]"));
  EXPECT_THAT(text, HasSubstr("weights: 1 tensors, 148 B"));
  EXPECT_THAT(text, HasSubstr("bias  f32    [37]"));
  // One f32 key and one f32 value per position.
  EXPECT_THAT(text, HasSubstr("KV caches: 1, 8 B per token, 512 B at capacity "
                              "64"));
  EXPECT_THAT(text, HasSubstr("target cpu, format elf-shared-object"));
  EXPECT_THAT(text, HasSubstr("kernel   4  moec_test_record_ranges"));
  EXPECT_THAT(text, HasSubstr("entry point 'prefill': max_tokens 4, arena 272 "
                              "(272 B), logits of every position, 3 "
                              "dispatches"));
  EXPECT_THAT(text, HasSubstr("moec_test_logits_v37  work 37*T + 0"));
  EXPECT_THAT(text, HasSubstr("0: weight 0 'bias'"));
  EXPECT_THAT(text, HasSubstr("1: arena[256, +16)"));
  EXPECT_THAT(text, HasSubstr("1: key-cache 0 (layer 0)"));
  EXPECT_THAT(text, HasSubstr("0: token-ids"));
  EXPECT_THAT(text, HasSubstr("2: logits"));
  EXPECT_THAT(text, HasSubstr("checksums: every weight and blob verified"));
}

TEST(TargetInspectArtifact, ReportsWhyAnArtifactIsInvalid) {
  TestDirectory dir;
  std::string path = dir.path("m.moec");
  ASSERT_EQ(messageOf(writeTestArtifact(path, {})), "");
  std::vector<char> bytes = readBytes(path);
  bytes.resize(bytes.size() / 2);
  writeBytes(path, bytes);
  std::string text;
  llvm::raw_string_ostream os(text);
  std::string message = messageOf(inspectArtifact(path, os));
  EXPECT_THAT(message, testing::StartsWith(path + ": header: "));
  EXPECT_THAT(message, HasSubstr("truncated?"));
  EXPECT_TRUE(text.empty());

  writeBytes(path, {'n', 'o', 'p', 'e'});
  EXPECT_FALSE(isArtifactFile(path));
}

} // namespace
