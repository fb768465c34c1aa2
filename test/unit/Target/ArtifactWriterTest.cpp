//===- ArtifactWriterTest.cpp - the ArtifactBuilder -----------------------===//
//
// Part of moec. Artifacts written with the builder read back through the
// runtime's verifier: layout, alignment, checksums, streaming, the table
// outgrowing its reservation, and errors leaving nothing behind.
//
//===----------------------------------------------------------------------===//

#include "TestArtifact.h"
#include "TestDirectory.h"

#include "ArtifactFile.h"
#include "moec/Support/Fnv.h"
#include "moec/Target/ArtifactWriter.h"

#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

using namespace llvm;
using namespace moec;
using namespace moec::test;

namespace {

ArtifactModelInfo tinyModel() {
  ArtifactModelInfo info;
  info.modelType = "tiny";
  info.vocabSize = 8;
  info.maxSeqLen = 16;
  return info;
}

/// A minimal valid prefill: no dispatches (the runtime accepts it; the
/// writer tests are about the file, not the kernels).
ArtifactEntryPoint emptyPrefill() {
  ArtifactEntryPoint entry;
  entry.name = "prefill";
  entry.maxTokens = 4;
  return entry;
}

std::unique_ptr<runtime::ArtifactFile> open(const std::string &path,
                                            bool verifyChecksums = true) {
  runtime::ArtifactFile::Options options;
  options.verifyChecksums = verifyChecksums;
  std::unique_ptr<runtime::ArtifactFile> file;
  runtime::Status status = runtime::ArtifactFile::open(path, options, file);
  EXPECT_TRUE(status.ok()) << status.message();
  return file;
}

std::vector<char> pattern(size_t size, char seed) {
  std::vector<char> bytes(size);
  for (size_t i = 0; i < size; ++i)
    bytes[i] = static_cast<char>(seed + i * 7);
  return bytes;
}

TEST(TargetArtifactWriter, Fnv1a64MatchesTheReferenceVectors) {
  // Published FNV-1a 64 test vectors.
  EXPECT_EQ(fnv1a64("", 0), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a", 1), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar", 6), 0x85944171f73967e8ULL);
  Fnv1a64 incremental;
  incremental.update("foo", 3);
  incremental.update("bar", 3);
  EXPECT_EQ(incremental.value(), 0x85944171f73967e8ULL);
}

TEST(TargetArtifactWriter, WeightsAreAlignedChecksummedAndReadBack) {
  TestDirectory dir;
  std::string path = dir.path("w.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  (*builder)->setModelInfo(tinyModel());
  std::vector<char> small = pattern(12, 1);         // f32 [3]
  std::vector<char> large = pattern(128 * 1024, 2); // bf16 [256, 256]
  std::vector<char> tiny = pattern(2, 3);           // f16 [1]
  Expected<uint32_t> first =
      (*builder)->addWeight("small", ArtifactDType::F32, {3}, small);
  ASSERT_EQ(messageOf(first), "");
  EXPECT_EQ(*first, 0u);
  Expected<uint32_t> second =
      (*builder)->addWeight("large", ArtifactDType::BF16, {256, 256}, large);
  ASSERT_EQ(messageOf(second), "");
  EXPECT_EQ(*second, 1u);
  // Streamed in pieces, as a checkpoint reader would.
  Expected<uint32_t> third = (*builder)->addWeight("tiny", ArtifactDType::F16,
                                                   {1}, [&](raw_ostream &os) {
                                                     os << tiny[0];
                                                     os << tiny[1];
                                                     return Error::success();
                                                   });
  ASSERT_EQ(messageOf(third), "");
  EXPECT_EQ(*third, 2u);
  (*builder)->addEntryPoint(emptyPrefill());
  ASSERT_EQ(messageOf((*builder)->finish()), "");
  EXPECT_EQ(dir.files(), std::vector<std::string>{"w.moec"});

  auto file = open(path);
  ASSERT_TRUE(file);
  const fb::FileHeader &header = file->header();
  EXPECT_EQ(
      std::string(reinterpret_cast<const char *>(header.magic()->data()), 8),
      std::string("MOECART\0", 8));
  EXPECT_EQ(header.version_major(), 1);
  EXPECT_EQ(header.table_offset(), 64u);
  EXPECT_EQ(header.weights_offset() % 4096, 0u);
  EXPECT_GE(header.weights_offset(), 64 + header.table_size());
  EXPECT_EQ(file->artifact().producer()->str(), "moec");

  const auto &weights = *file->artifact().weights();
  ASSERT_EQ(weights.size(), 3u);
  const std::vector<char> *contents[] = {&small, &large, &tiny};
  for (uint32_t i = 0; i < 3; ++i) {
    const fb::Weight &weight = *weights.Get(i);
    const std::vector<char> &expected = *contents[i];
    EXPECT_EQ(weight.size(), expected.size());
    EXPECT_EQ(weight.checksum(), fnv1a64(expected.data(), expected.size()));
    const uint8_t *data = file->weightData(weight);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(data) % 64, 0u)
        << weight.name()->str();
    EXPECT_EQ(std::memcmp(data, expected.data(), expected.size()), 0);
  }
  // Weights of 64 KiB and more start on a page.
  EXPECT_EQ(weights.Get(1)->offset() % 4096, 0u);
  EXPECT_EQ(weights.Get(1)->shape()->Get(0), 256);
}

TEST(TargetArtifactWriter, TableLargerThanTheReservationMovesTheSegments) {
  TestDirectory dir;
  TestArtifactOptions options;
  options.tableReserveBytes = 0;
  options.fillerWeights = 200; // a table of several KiB
  options.fillerElements = 33;
  std::string path = dir.path("moved.moec");
  ASSERT_EQ(messageOf(writeTestArtifact(path, options)), "");
  auto file = open(path);
  ASSERT_TRUE(file);
  EXPECT_GT(file->header().table_size(), 4096u);
  EXPECT_EQ(file->header().weights_offset() % 4096, 0u);
  // Checksums (verified by open) cover every moved weight and the blob;
  // spot-check the values too.
  const fb::Weight &last = *file->artifact().weights()->Get(200);
  EXPECT_EQ(last.name()->str(), "filler.199");
  float value;
  std::memcpy(&value, file->weightData(last) + 32 * 4, 4);
  EXPECT_EQ(value, 199.0f);
}

TEST(TargetArtifactWriter, EqualInputsGiveIdenticalBytes) {
  TestDirectory dir;
  TestArtifactOptions options;
  options.fillerWeights = 3;
  ASSERT_EQ(messageOf(writeTestArtifact(dir.path("a.moec"), options)), "");
  ASSERT_EQ(messageOf(writeTestArtifact(dir.path("b.moec"), options)), "");
  EXPECT_EQ(readBytes(dir.path("a.moec")), readBytes(dir.path("b.moec")));
  // Moving the segments leaves no stale bytes either.
  options.tableReserveBytes = 0;
  options.fillerWeights = 100;
  ASSERT_EQ(messageOf(writeTestArtifact(dir.path("c.moec"), options)), "");
  ASSERT_EQ(messageOf(writeTestArtifact(dir.path("d.moec"), options)), "");
  EXPECT_EQ(readBytes(dir.path("c.moec")), readBytes(dir.path("d.moec")));
}

TEST(TargetArtifactWriter, Q8WeightsAreWholeBlocksOf34Bytes) {
  TestDirectory dir;
  auto builder = ArtifactBuilder::create(dir.path("q8.moec"));
  ASSERT_EQ(messageOf(builder), "");
  (*builder)->setModelInfo(tinyModel());
  // Two rows of 32: two blocks, 68 bytes.
  Expected<uint32_t> index = (*builder)->addWeight(
      "q", ArtifactDType::Q8_0, {2, 32}, [](raw_ostream &os) {
        os << std::string(68, '\x01');
        return Error::success();
      });
  EXPECT_EQ(messageOf(index), "");
  uint64_t bytes = 0;
  EXPECT_TRUE(artifactTensorBytes(ArtifactDType::Q8_0, 64, bytes));
  EXPECT_EQ(bytes, 68u);
  EXPECT_FALSE(artifactTensorBytes(ArtifactDType::Q8_0, 60, bytes));
  Expected<uint32_t> partial =
      (*builder)->addWeight("r", ArtifactDType::Q8_0, {3, 20},
                            [](raw_ostream &os) { return Error::success(); });
  EXPECT_EQ(messageOf(partial), dir.path("q8.moec") +
                                    ": weight 'r': 60 elements are not whole "
                                    "q8_0 blocks");
}

TEST(TargetArtifactWriter, WrongStreamedSizeFailsAndLeavesNothing) {
  TestDirectory dir;
  std::string path = dir.path("bad.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  (*builder)->setModelInfo(tinyModel());
  Expected<uint32_t> index = (*builder)->addWeight("short", ArtifactDType::F32,
                                                   {4}, [](raw_ostream &os) {
                                                     os << "abc";
                                                     return Error::success();
                                                   });
  EXPECT_EQ(messageOf(index), path + ": weight 'short': the writer produced "
                                     "3 bytes, expected 16 (shape x dtype)");
  EXPECT_TRUE(dir.files().empty());
  EXPECT_EQ(messageOf((*builder)->finish()),
            path + ": the artifact builder failed earlier");
  EXPECT_TRUE(dir.files().empty());
}

TEST(TargetArtifactWriter, WriterErrorsPropagate) {
  TestDirectory dir;
  std::string path = dir.path("bad.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  Expected<uint32_t> index =
      (*builder)->addWeight("w", ArtifactDType::F32, {4}, [](raw_ostream &) {
        return createStringError("checkpoint.safetensors: truncated");
      });
  EXPECT_EQ(messageOf(index),
            path + ": weight 'w':\ncheckpoint.safetensors: truncated");
  EXPECT_TRUE(dir.files().empty());
}

TEST(TargetArtifactWriter, DuplicateWeightNamesAreRejected) {
  TestDirectory dir;
  std::string path = dir.path("dup.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  std::vector<char> bytes(4);
  Expected<uint32_t> first =
      (*builder)->addWeight("w", ArtifactDType::F32, {1}, bytes);
  ASSERT_EQ(messageOf(first), "");
  Expected<uint32_t> second =
      (*builder)->addWeight("w", ArtifactDType::F32, {1}, bytes);
  EXPECT_EQ(messageOf(second), path + ": duplicate weight name 'w'");
}

TEST(TargetArtifactWriter, FinishRunsTheRuntimeChecks) {
  TestDirectory dir;
  std::string path = dir.path("bad.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  (*builder)->setModelInfo(tinyModel());
  (*builder)->addExecutable({"cpu", "elf-shared-object", "", {"k"}},
                            ArrayRef<char>("blob", 4));
  ArtifactEntryPoint entry = emptyPrefill();
  entry.dispatches.push_back({0, /*kernel=*/5, {}, 1, 0, 0});
  (*builder)->addEntryPoint(entry);
  EXPECT_EQ(messageOf((*builder)->finish()),
            path + ": invalid artifact: entry_points[0] 'prefill': "
                   "dispatches[0]: kernel index 5 out of range "
                   "(executables[0] has 1 kernels)");
  EXPECT_TRUE(dir.files().empty());
}

TEST(TargetArtifactWriter, MissingModelInfoIsAnError) {
  TestDirectory dir;
  std::string path = dir.path("m.moec");
  auto builder = ArtifactBuilder::create(path);
  ASSERT_EQ(messageOf(builder), "");
  EXPECT_EQ(messageOf((*builder)->finish()),
            path + ": setModelInfo() was never called");
  EXPECT_TRUE(dir.files().empty());
}

TEST(TargetArtifactWriter, AbandonedBuilderRemovesItsTemporaryFile) {
  TestDirectory dir;
  {
    auto builder = ArtifactBuilder::create(dir.path("m.moec"));
    ASSERT_EQ(messageOf(builder), "");
    EXPECT_EQ(dir.files().size(), 1u); // the temporary file
  }
  EXPECT_TRUE(dir.files().empty());
}

TEST(TargetArtifactWriter, FinishReplacesAnExistingFileAtomically) {
  TestDirectory dir;
  std::string path = dir.path("m.moec");
  writeBytes(path, {'o', 'l', 'd'});
  ASSERT_EQ(messageOf(writeTestArtifact(path, {})), "");
  EXPECT_TRUE(open(path));
  EXPECT_EQ(dir.files(), std::vector<std::string>{"m.moec"});
}

} // namespace
