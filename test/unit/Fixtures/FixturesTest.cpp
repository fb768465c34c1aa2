//===- FixturesTest.cpp - well-formedness of the HF reference fixtures ----===//
//
// Part of moec. Every later numerical test compares against the fixtures in
// test/fixtures/, so a broken regeneration must fail here first: each
// fixture's files parse, agree with each other (shapes, vocab, greedy ids)
// and match the checksums recorded when they were made.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Npy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/SHA256.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

using namespace llvm;
using namespace moec;

namespace {

// The fixtures test/fixtures/README.md promises; removing one must fail.
const char *const kExpectedFixtures[] = {
    "deepseek_v3", "deepseek_v3_yarn", "deepseek_v2_lite", "mixtral",
    "qwen2_moe",   "qwen3_moe",        "llama_dense",      "qwen3_moe_bf16"};

std::string fixturePath(StringRef name, StringRef file = "") {
  SmallString<256> path(MOEC_FIXTURES_DIR);
  sys::path::append(path, name, file);
  return std::string(path);
}

std::vector<std::string> listFixtures() {
  std::vector<std::string> names;
  std::error_code ec;
  for (sys::fs::directory_iterator it(MOEC_FIXTURES_DIR, ec), end;
       it != end && !ec; it.increment(ec))
    if (sys::fs::exists(it->path() + "/fixture.json"))
      names.push_back(sys::path::filename(it->path()).str());
  std::sort(names.begin(), names.end());
  return names;
}

TEST(Fixtures, AllExpectedFamiliesArePresent) {
  std::vector<std::string> names = listFixtures();
  for (const char *expected : kExpectedFixtures)
    EXPECT_TRUE(llvm::is_contained(names, expected))
        << "missing fixture " << expected;
}

class FixtureTest : public ::testing::TestWithParam<std::string> {
protected:
  void SetUp() override {
    auto buffer =
        MemoryBuffer::getFile(fixturePath(GetParam(), "fixture.json"));
    ASSERT_TRUE(buffer) << "cannot read fixture.json";
    Expected<json::Value> parsed = json::parse((*buffer)->getBuffer());
    ASSERT_TRUE(bool(parsed)) << toString(parsed.takeError());
    manifest = std::move(*parsed);
    ASSERT_NE(manifest.getAsObject(), nullptr);
  }

  const json::Object &object() { return *manifest.getAsObject(); }

  std::vector<int64_t> intList(StringRef key) {
    std::vector<int64_t> values;
    const json::Array *array = object().getArray(key);
    EXPECT_NE(array, nullptr) << "fixture.json lacks '" << key.str() << "'";
    if (array)
      for (const json::Value &value : *array)
        values.push_back(value.getAsInteger().value_or(-1));
    return values;
  }

  NpyArray readF32(StringRef file, int64_t rows, int64_t cols) {
    Expected<NpyArray> array = readNpy(fixturePath(GetParam(), file));
    EXPECT_TRUE(bool(array)) << toString(array.takeError());
    if (!array)
      return {};
    EXPECT_EQ(array->dtype, NpyDType::F32) << file.str();
    EXPECT_EQ(array->shape, (SmallVector<int64_t, 4>{rows, cols}))
        << file.str();
    for (float value : array->f32)
      EXPECT_TRUE(std::isfinite(value)) << file.str() << " has non-finite";
    return std::move(*array);
  }

  json::Value manifest = nullptr;
};

TEST_P(FixtureTest, ConfigAndCheckpointLoad) {
  Expected<ModelConfig> config =
      ModelConfig::fromDirectory(fixturePath(GetParam()));
  ASSERT_TRUE(bool(config)) << toString(config.takeError());
  EXPECT_EQ(config->vocabSize, object().getInteger("vocab_size"));
  EXPECT_EQ(config->modelType, object().getString("model_type"));
  EXPECT_LE(config->vocabSize, 1024);

  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(fixturePath(GetParam()));
  ASSERT_TRUE(bool(checkpoint)) << toString(checkpoint.takeError());
  const TensorInfo *embed = checkpoint->find("model.embed_tokens.weight");
  ASSERT_NE(embed, nullptr);
  EXPECT_EQ(embed->shape[0], config->vocabSize);
  EXPECT_EQ(embed->shape[1], config->hiddenSize);
  StringRef dtype = object().getString("checkpoint_dtype").value_or("");
  EXPECT_EQ(dtypeName(embed->dtype), dtype == "bfloat16" ? "BF16" : "F32");
}

TEST_P(FixtureTest, LogitsAgreeWithGeneratedIds) {
  std::vector<int64_t> prompt = intList("prompt_ids");
  std::vector<int64_t> generated = intList("generated_ids");
  int64_t vocab = object().getInteger("vocab_size").value_or(0);
  int64_t newTokens = object().getInteger("num_new_tokens").value_or(0);
  ASSERT_GE(newTokens, 8);
  ASSERT_EQ(static_cast<int64_t>(generated.size()), newTokens);
  ASSERT_FALSE(prompt.empty());

  NpyArray prefill = readF32("prefill_logits.npy", prompt.size(), vocab);
  NpyArray decode = readF32("generate_logits.npy", newTokens, vocab);
  if (HasFailure())
    return;

  // Greedy decoding picks the argmax of each step's logits.
  for (int64_t step = 0; step < newTokens; ++step) {
    const float *row = decode.f32.data() + step * vocab;
    int64_t argmax = std::max_element(row, row + vocab) - row;
    EXPECT_EQ(argmax, generated[step]) << "step " << step;
  }
  // The first generated token comes from the prompt's last position.
  const float *last = prefill.f32.data() + (prompt.size() - 1) * vocab;
  float maxAbs = 0, maxDiff = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    maxAbs = std::max(maxAbs, std::fabs(last[i]));
    maxDiff = std::max(maxDiff, std::fabs(last[i] - decode.f32[i]));
  }
  EXPECT_LE(maxDiff, 1e-4f * std::max(1.0f, maxAbs));
  // Logits with no spread would make every comparison vacuous.
  EXPECT_GT(maxAbs, 0.1f);
  std::vector<int64_t> distinct(generated);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  EXPECT_GT(distinct.size(), 1u) << "greedy generation repeats one token";
}

TEST_P(FixtureTest, FilesMatchRecordedChecksums) {
  const json::Object *files = object().getObject("files");
  ASSERT_NE(files, nullptr) << "fixture.json lacks 'files'";
  ASSERT_FALSE(files->empty());
  for (const auto &[name, digest] : *files) {
    auto buffer = MemoryBuffer::getFile(fixturePath(GetParam(), name.str()));
    ASSERT_TRUE(buffer) << "cannot read " << name.str();
    SHA256 hasher;
    hasher.update(arrayRefFromStringRef((*buffer)->getBuffer()));
    std::array<uint8_t, 32> hash = hasher.final();
    EXPECT_EQ(toHex(hash, /*LowerCase=*/true),
              digest.getAsString().value_or(""))
        << name.str();
  }
}

INSTANTIATE_TEST_SUITE_P(All, FixtureTest, ::testing::ValuesIn(listFixtures()),
                         [](const ::testing::TestParamInfo<std::string> &info) {
                           return info.param;
                         });

} // namespace
