//===- TestArtifact.cpp - small artifacts for runtime tests ---------------===//
//
// Part of moec (test).
//
//===----------------------------------------------------------------------===//

#include "TestArtifact.h"

#include "moec/Target/ArtifactWriter.h"

#include "llvm/Support/MemoryBuffer.h"

using namespace llvm;

namespace moec::test {

namespace {

// Kernel indices in the test executable.
enum Kernel : uint32_t {
  kStoreKv,
  kPrefixSum,
  kLogits,
  kLastLogits,
  kRecordRanges,
};

std::vector<std::string> kernelNames() {
  return {"moec_test_store_kv", "moec_test_prefix_sum", "moec_test_logits_v37",
          "moec_test_last_logits_v37", "moec_test_record_ranges"};
}

/// The toy model: store the ids in the KV cache, prefix-sum the keys into
/// the arena at `sumsOffset`, then the logits.
std::vector<ArtifactDispatch> toyModel(uint32_t bias, uint32_t cache,
                                       uint64_t sumsOffset, int64_t maxTokens,
                                       bool allLogits) {
  ArtifactBinding sums = ArtifactBinding::arena(sumsOffset, 4 * maxTokens);
  std::vector<ArtifactDispatch> dispatches;
  dispatches.push_back(
      {0,
       kStoreKv,
       {ArtifactBinding::tokenIds(), ArtifactBinding::keyCache(cache),
        ArtifactBinding::valueCache(cache)},
       /*workPerToken=*/1,
       /*workFixed=*/0,
       /*grain=*/0});
  dispatches.push_back({0,
                        kPrefixSum,
                        {ArtifactBinding::keyCache(cache),
                         ArtifactBinding::valueCache(cache), sums},
                        1,
                        0,
                        0});
  ArtifactDispatch logits{
      0,
      allLogits ? kLogits : kLastLogits,
      {ArtifactBinding::weight(bias), sums, ArtifactBinding::logits()},
      allLogits ? kVocab : 0,
      allLogits ? 0 : kVocab,
      0};
  dispatches.push_back(logits);
  return dispatches;
}

} // namespace

std::string testKernelsPath() { return MOEC_TEST_KERNELS_PATH; }

float testBias(int64_t v) { return 0.25f * static_cast<float>((5 * v) % 37); }

float expectedLogit(ArrayRef<int64_t> history, int64_t v) {
  int64_t position = static_cast<int64_t>(history.size()) - 1;
  float sum = 0;
  for (int64_t id : history)
    sum += static_cast<float>(id);
  return testBias((v + position) % kVocab) + sum +
         1000.0f * static_cast<float>(position);
}

Error writeTestArtifact(StringRef path, const TestArtifactOptions &options) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> kernels =
      MemoryBuffer::getFile(testKernelsPath());
  if (!kernels)
    return createStringError(kernels.getError(), "%s: %s",
                             testKernelsPath().c_str(),
                             kernels.getError().message().c_str());

  ArtifactBuilder::Options builderOptions;
  builderOptions.producer = "moec test";
  builderOptions.tableReserveBytes = options.tableReserveBytes;
  auto builder = ArtifactBuilder::create(path, builderOptions);
  if (!builder)
    return builder.takeError();

  ArtifactModelInfo info;
  info.modelType = "moec_test";
  info.vocabSize = kVocab;
  info.hiddenSize = 1;
  info.numLayers = 1;
  info.maxSeqLen = options.capacity;
  info.bosTokenId = 0;
  info.eosTokenIds = {kEosId};
  info.computeDType = ArtifactDType::F32;
  info.configJson = R"({"model_type": "moec_test"})";
  (*builder)->setModelInfo(info);

  std::vector<float> bias(kVocab);
  for (int64_t v = 0; v < kVocab; ++v)
    bias[v] = testBias(v);
  Expected<uint32_t> biasIndex = (*builder)->addWeight(
      "bias", ArtifactDType::F32, {kVocab},
      ArrayRef<char>(reinterpret_cast<const char *>(bias.data()),
                     bias.size() * sizeof(float)));
  if (!biasIndex)
    return biasIndex.takeError();
  for (int i = 0; i < options.fillerWeights; ++i) {
    std::vector<float> filler(options.fillerElements, static_cast<float>(i));
    Expected<uint32_t> index = (*builder)->addWeight(
        "filler." + std::to_string(i), ArtifactDType::F32,
        {options.fillerElements},
        ArrayRef<char>(reinterpret_cast<const char *>(filler.data()),
                       filler.size() * sizeof(float)));
    if (!index)
      return index.takeError();
  }

  uint32_t cache = (*builder)->addKvCache({0,
                                           ArtifactDType::F32,
                                           {options.capacity, 1, 1},
                                           {options.capacity, 1, 1}});

  std::vector<std::string> names = kernelNames();
  names.insert(names.end(), options.extraKernelNames.begin(),
               options.extraKernelNames.end());
  (*builder)->addExecutable(
      {options.target, "elf-shared-object", options.cpuFeatures, names},
      ArrayRef<char>((*kernels)->getBufferStart(),
                     (*kernels)->getBufferSize()));

  auto entry = [&](StringRef name, int64_t maxTokens, uint64_t sumsOffset,
                   bool allLogits) {
    ArtifactEntryPoint point;
    point.name = name.str();
    point.maxTokens = maxTokens;
    point.allLogits = allLogits;
    if (options.recordRanges) {
      point.dispatches.push_back({0,
                                  kRecordRanges,
                                  {ArtifactBinding::logits()},
                                  kVocab,
                                  0,
                                  options.grain});
      point.allLogits = true; // the kernel writes every row
      point.arenaBytes = 0;
    } else {
      point.dispatches =
          toyModel(*biasIndex, cache, sumsOffset, maxTokens, allLogits);
      point.arenaBytes = sumsOffset + 4 * maxTokens;
    }
    return point;
  };
  // Different arena layouts for the two entry points: the session's one
  // arena must serve both.
  (*builder)->addEntryPoint(
      entry("prefill", options.prefillTile, 256, options.allLogits));
  if (options.withDecode)
    (*builder)->addEntryPoint(entry("decode", 1, 64, true));
  return (*builder)->finish();
}

} // namespace moec::test
