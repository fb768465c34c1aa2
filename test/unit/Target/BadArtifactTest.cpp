//===- BadArtifactTest.cpp - the loader rejects broken artifacts ----------===//
//
// Part of moec. A valid test artifact, damaged one way at a time (bytes of
// the header, fields of the FlatBuffer patched in place, a truncated file),
// must fail moec_model_load with a status and a message naming the field —
// never crash. The last test damages every byte of header and table in turn.
//
//===----------------------------------------------------------------------===//

#include "TestArtifact.h"
#include "TestDirectory.h"

#include "ArtifactFormat.h"
#include "moec/runtime.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <functional>

using namespace moec;
using namespace moec::test;
using testing::HasSubstr;
using testing::StartsWith;

namespace {

class RuntimeBadArtifact : public testing::Test {
protected:
  void SetUp() override {
    good = dir.path("good.moec");
    // A small reservation keeps the file small: it is rewritten thousands
    // of times below.
    options.tableReserveBytes = 4096;
    ASSERT_EQ(messageOf(writeTestArtifact(good, options)), "");
    bytes = readBytes(good);
    ASSERT_GT(bytes.size(), 4096u);
    bad = dir.path("bad.moec");
  }

  fb::FileHeader &header() {
    return *reinterpret_cast<fb::FileHeader *>(bytes.data());
  }
  fb::Artifact &table() {
    return *fb::GetMutableArtifact(bytes.data() + artifact::kTableOffset);
  }
  fb::Dispatch &dispatch(uint32_t entry, uint32_t index) {
    return *table()
                .mutable_entry_points()
                ->GetMutableObject(entry)
                ->mutable_dispatches()
                ->GetMutableObject(index);
  }

  /// Writes `bytes` to the bad file and loads it; returns the status and
  /// leaves the message in `message` (prefixed with the path, stripped).
  moec_status load(bool verifyChecksums = false) {
    writeBytes(bad, bytes);
    moec_model_options_t options;
    moec_model_options_initialize(&options);
    options.verify_checksums = verifyChecksums;
    moec_model_t *model = nullptr;
    moec_status status = moec_model_load(bad.c_str(), &options, &model);
    moec_model_free(model);
    message = moec_last_error();
    if (status != MOEC_OK && message.rfind(bad + ": ", 0) == 0)
      message = message.substr(bad.size() + 2);
    return status;
  }

  TestDirectory dir;
  TestArtifactOptions options;
  std::string good, bad, message;
  std::vector<char> bytes;
};

TEST_F(RuntimeBadArtifact, TheGoodOneLoads) { EXPECT_EQ(load(true), MOEC_OK); }

TEST_F(RuntimeBadArtifact, MissingFile) {
  moec_model_t *model = nullptr;
  std::string path = dir.path("absent.moec");
  EXPECT_EQ(moec_model_load(path.c_str(), nullptr, &model), MOEC_IO_ERROR);
  EXPECT_EQ(moec_last_error(),
            path + ": cannot open: No such file or directory");
}

TEST_F(RuntimeBadArtifact, WrongMagic) {
  bytes[3] = 'X';
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "not a .moec artifact (bad magic)");
}

TEST_F(RuntimeBadArtifact, ShorterThanTheHeader) {
  bytes.resize(40);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message,
            "file is 40 bytes, shorter than the 64-byte header (truncated?)");
}

TEST_F(RuntimeBadArtifact, Truncated) {
  uint64_t blobsOffset = header().blobs_offset();
  uint64_t blobsSize = header().blobs_size();
  bytes.resize(bytes.size() - 100);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "header: blobs section [" + std::to_string(blobsOffset) +
                         ", +" + std::to_string(blobsSize) +
                         ") extends beyond the end of the file (" +
                         std::to_string(bytes.size()) + " bytes; truncated?)");
}

TEST_F(RuntimeBadArtifact, HeaderOffsetBeyondTheFile) {
  uint64_t weightsSize = header().weights_size();
  header().mutate_weights_offset(uint64_t{1} << 40);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "header: weights section [1099511627776, +" +
                         std::to_string(weightsSize) +
                         ") extends beyond the end of the file (" +
                         std::to_string(bytes.size()) + " bytes; truncated?)");
}

TEST_F(RuntimeBadArtifact, OverflowingHeaderOffsets) {
  header().mutate_blobs_offset(~uint64_t{0} & ~uint64_t{4095});
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_THAT(message, StartsWith("header: blobs section ["));
  EXPECT_THAT(message, HasSubstr("extends beyond the end of the file"));
}

TEST_F(RuntimeBadArtifact, MisalignedAndOverlappingSections) {
  uint64_t weightsOffset = header().weights_offset();
  header().mutate_weights_offset(weightsOffset + 64);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "header: weights_offset " +
                         std::to_string(weightsOffset + 64) +
                         " is not 4096-aligned");
  header().mutate_weights_offset(0);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "header: weights section at offset 0 overlaps the table "
                     "section (ends at " +
                         std::to_string(64 + header().table_size()) + ")");
}

TEST_F(RuntimeBadArtifact, OtherFormatVersion) {
  header().mutate_version_major(2);
  header().mutate_version_minor(0);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message,
            "format version 2.0 is not supported (this runtime reads 1.x)");
}

TEST_F(RuntimeBadArtifact, ReservedFlags) {
  header().mutate_flags(4);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "header: flags 0x4 set (reserved, must be 0)");
}

TEST_F(RuntimeBadArtifact, CorruptFlatBuffer) {
  // The root offset now points far outside the table.
  uint32_t root = 0x7ffffff0;
  std::memcpy(bytes.data() + artifact::kTableOffset, &root, sizeof(root));
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "the FlatBuffer table [64, +" +
                         std::to_string(header().table_size()) +
                         ") fails verification (corrupt, or not written by "
                         "moec)");
}

TEST_F(RuntimeBadArtifact, WeightOffsetOutOfRange) {
  uint64_t segment = header().weights_size();
  table().mutable_weights()->GetMutableObject(0)->mutate_offset(4096);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "weights[0] 'bias': [4096, +148) is outside the weight "
                     "segment (" +
                         std::to_string(segment) + " bytes)");
  table().mutable_weights()->GetMutableObject(0)->mutate_offset(4);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "weights[0] 'bias': offset 4 is not 64-byte aligned");
}

TEST_F(RuntimeBadArtifact, WeightSizeDisagreesWithItsShape) {
  table().mutable_weights()->GetMutableObject(0)->mutate_size(100);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "weights[0] 'bias': size 100 differs from shape x dtype "
                     "(148 bytes)");
}

TEST_F(RuntimeBadArtifact, Q8WeightIsNotWholeBlocks) {
  // 37 values: one whole Q8_0 block of 32 and 5 over.
  table().mutable_weights()->GetMutableObject(0)->mutate_dtype(fb::DType::Q8_0);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message,
            "weights[0] 'bias': 37 elements are not whole q8_0 blocks");
}

TEST_F(RuntimeBadArtifact, KernelIndexOutOfRange) {
  dispatch(0, 1).mutate_kernel(99);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[1]: kernel index "
                     "99 out of range (executables[0] has 5 kernels)");
}

TEST_F(RuntimeBadArtifact, ExecutableIndexOutOfRange) {
  dispatch(1, 0).mutate_executable(3);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[1] 'decode': dispatches[0]: executable "
                     "index 3 out of range (1 executables)");
}

TEST_F(RuntimeBadArtifact, BindingIndicesOutOfRange) {
  // The logits dispatch binds (weight 0, arena sums, logits).
  auto *bindings = dispatch(0, 2).mutable_bindings();
  bindings->GetMutableObject(0)->mutate_index(9);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[2]: bindings[0]: "
                     "weight index 9 out of range (1 weights)");
  bindings->GetMutableObject(0)->mutate_index(0);

  // The store dispatch binds (token ids, key cache 0, value cache 0).
  dispatch(0, 0).mutable_bindings()->GetMutableObject(2)->mutate_index(1);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[0]: bindings[2]: "
                     "value-cache index 1 out of range (1 kv caches)");
}

TEST_F(RuntimeBadArtifact, ArenaRangeBeyondArenaBytes) {
  // prefill: arena_bytes 256 + 4 * 4 = 272, sums at [256, +16).
  dispatch(0, 1).mutable_bindings()->GetMutableObject(2)->mutate_offset(260);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[1]: bindings[2]: "
                     "arena range [260, +16) exceeds arena_bytes 272");
}

TEST_F(RuntimeBadArtifact, UnknownBindingKind) {
  dispatch(0, 1).mutable_bindings()->GetMutableObject(0)->mutate_kind(
      static_cast<fb::BindingKind>(42));
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[1]: bindings[0]: "
                     "kind 42 is not a known binding kind");
}

TEST_F(RuntimeBadArtifact, MaxTokensBeyondCapacity) {
  table().mutable_entry_points()->GetMutableObject(0)->mutate_max_tokens(65);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': max_tokens 65 is outside [1, "
                     "model.max_seq_len 64]");
}

TEST_F(RuntimeBadArtifact, NegativeWorkSize) {
  dispatch(0, 0).mutable_work()->mutate_per_token(-1);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "entry_points[0] 'prefill': dispatches[0]: work size -1 "
                     "* T + 0 is negative or overflows at T = 4");
}

TEST_F(RuntimeBadArtifact, KvCacheShapeDisagreesWithTheCapacity) {
  table().mutable_kv_caches()->GetMutableObject(0)->mutable_key_shape()->Mutate(
      0, 32);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "kv_caches[0]: key_shape[0] is 32, expected the capacity "
                     "model.max_seq_len 64");
}

TEST_F(RuntimeBadArtifact, EosOutsideTheVocabulary) {
  table().mutable_model()->mutable_eos_token_ids()->Mutate(0, 37);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "model.eos_token_ids: 37 is outside [0, vocab_size 37)");
}

TEST_F(RuntimeBadArtifact, BlobOutsideItsSegment) {
  auto *executable = table().mutable_executables()->GetMutableObject(0);
  executable->mutate_blob_size(header().blobs_size() + 1);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: blob [0, +" +
                         std::to_string(header().blobs_size() + 1) +
                         ") is outside the blob segment (" +
                         std::to_string(header().blobs_size()) + " bytes)");
}

TEST_F(RuntimeBadArtifact, ChecksumMismatchWhenVerifying) {
  const fb::Weight &bias = *table().weights()->Get(0);
  bytes[header().weights_offset() + bias.offset() + 5] ^= 0x40;
  EXPECT_EQ(load(/*verifyChecksums=*/false), MOEC_OK);
  EXPECT_EQ(load(/*verifyChecksums=*/true), MOEC_INVALID_ARTIFACT);
  EXPECT_THAT(message, StartsWith("weights[0] 'bias': checksum mismatch "
                                  "(stored "));
}

TEST_F(RuntimeBadArtifact, BlobThatIsNotASharedObject) {
  std::memset(bytes.data() + header().blobs_offset(), 'x', 16);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_THAT(message,
              StartsWith("executables[0]: the shared object does not load: "));
}

TEST_F(RuntimeBadArtifact, MissingKernelSymbol) {
  options.extraKernelNames = {"moec_test_missing_kernel"};
  ASSERT_EQ(messageOf(writeTestArtifact(good, options)), "");
  bytes = readBytes(good);
  EXPECT_EQ(load(), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: kernel 'moec_test_missing_kernel' "
                     "(kernel_names[5]) is not defined by the shared object");
}

TEST_F(RuntimeBadArtifact, ExecutableForAnotherTarget) {
  options.target = "rocm:gfx942";
  ASSERT_EQ(messageOf(writeTestArtifact(good, options)), "");
  bytes = readBytes(good);
  EXPECT_EQ(load(), MOEC_UNSUPPORTED);
  EXPECT_EQ(message, "executables[0]: target 'rocm:gfx942' is not supported by "
                     "this runtime (it runs 'cpu')");
}

TEST_F(RuntimeBadArtifact, EveryDamagedTableByteIsHandled) {
  // Whatever one byte of the header or the table becomes, loading either
  // succeeds or reports an error; it never crashes. (Kernels are not run:
  // a table that still verifies may describe a different, valid plan.)
  const std::vector<char> original = bytes;
  uint64_t end = artifact::kTableOffset + header().table_size();
  int rejected = 0;
  for (uint64_t i = 0; i < end; ++i) {
    for (char value : {char(0xff), char(0x00), char(original[i] ^ 0x01)}) {
      if (value == original[i])
        continue;
      bytes = original;
      bytes[i] = value;
      if (load() != MOEC_OK) {
        ++rejected;
        EXPECT_FALSE(message.empty()) << "byte " << i;
        EXPECT_EQ(message.find('\n'), std::string::npos) << message;
      }
    }
  }
  EXPECT_GT(rejected, 0);
}

} // namespace
