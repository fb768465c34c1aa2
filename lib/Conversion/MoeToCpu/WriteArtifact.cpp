//===- WriteArtifact.cpp - a planned CPU program -> .moec -----------------===//
//
// Part of moec. Glue between the CPU plan and the artifact container: the
// plan's bindings map one to one onto the artifact's, weights are streamed
// from the checkpoint through the compile-time transforms.
//
//===----------------------------------------------------------------------===//

#include "moec/Conversion/CpuBackend.h"
#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/Target/ArtifactWriter.h"

namespace moec::cpu {

static ArtifactBinding toArtifact(const PlannedBinding &binding) {
  switch (binding.kind) {
  case PlannedBinding::Arena:
    return ArtifactBinding::arena(binding.offset, binding.size);
  case PlannedBinding::Weight:
    return ArtifactBinding::weight(binding.index);
  case PlannedBinding::KeyCache:
    return ArtifactBinding::keyCache(binding.index);
  case PlannedBinding::ValueCache:
    return ArtifactBinding::valueCache(binding.index);
  case PlannedBinding::TokenIds:
    return ArtifactBinding::tokenIds();
  case PlannedBinding::Logits:
    return ArtifactBinding::logits();
  }
  return ArtifactBinding::tokenIds();
}

llvm::Error writeCpuArtifact(
    const CpuProgram &program, const ModelConfig &config,
    llvm::StringRef configJson, const SafeTensorsCheckpoint &checkpoint,
    llvm::StringRef outputPath, const WeightProgress &progress,
    llvm::StringRef tokenizerJson, llvm::StringRef tokenizerConfigJson) {
  llvm::Expected<std::unique_ptr<ArtifactBuilder>> created =
      ArtifactBuilder::create(outputPath);
  if (!created)
    return created.takeError();
  ArtifactBuilder &builder = **created;

  ArtifactModelInfo info;
  info.modelType = config.modelType;
  info.vocabSize = config.vocabSize;
  info.hiddenSize = config.hiddenSize;
  info.numLayers = config.numLayers;
  info.maxSeqLen =
      program.kvCaches.empty() ? 0 : program.kvCaches.front().keyShape[0];
  info.bosTokenId = config.bosTokenId.value_or(-1);
  info.eosTokenIds = config.eosTokenIds;
  bool bf16 = llvm::any_of(program.weights,
                           [](const PlannedWeight &w) { return w.isBf16; });
  info.computeDType = bf16 ? ArtifactDType::BF16 : ArtifactDType::F32;
  info.configJson = configJson.str();
  info.tokenizerJson = tokenizerJson.str();
  info.tokenizerConfigJson = tokenizerConfigJson.str();
  builder.setModelInfo(std::move(info));

  // Weight indices are the plan's: added in order.
  uint64_t total = 0, written = 0;
  for (const PlannedWeight &weight : program.weights)
    total += weight.bytes();
  for (const PlannedWeight &weight : program.weights) {
    llvm::Expected<uint32_t> index = builder.addWeight(
        weight.name, weight.isBf16 ? ArtifactDType::BF16 : ArtifactDType::F32,
        weight.shape, [&](llvm::raw_ostream &os) {
          return writeWeight(weight, checkpoint, os);
        });
    if (!index)
      return index.takeError();
    written += weight.bytes();
    if (progress)
      progress(written, total);
  }
  for (auto [layer, cache] : llvm::enumerate(program.kvCaches))
    builder.addKvCache(
        {static_cast<uint32_t>(layer), ArtifactDType::F32,
         std::vector<int64_t>(cache.keyShape.begin(), cache.keyShape.end()),
         std::vector<int64_t>(cache.valueShape.begin(),
                              cache.valueShape.end())});
  ArtifactExecutable executable;
  executable.kernelNames = program.kernelNames;
  const std::string *blob = &program.sharedObject;
  if (program.gpuTarget.empty()) {
    executable.target = "cpu";
    executable.format = "elf-shared-object";
    executable.cpuFeatures = program.cpuName + ":" + program.cpuFeatures;
  } else {
    executable.target = program.gpuTarget;
    executable.format = program.gpuFormat;
    for (const CpuProgram::Launch &launch : program.launches)
      executable.launches.push_back(
          {launch.blockThreads, launch.itemsPerBlock});
    blob = &program.gpuBinary;
  }
  uint32_t executableIndex = builder.addExecutable(
      std::move(executable), llvm::ArrayRef<char>(blob->data(), blob->size()));
  for (const PlannedEntry &planned : program.entries) {
    ArtifactEntryPoint entry;
    entry.name = planned.name;
    entry.maxTokens = planned.maxTokens;
    entry.arenaBytes = planned.arenaBytes;
    entry.allLogits = true;
    for (const PlannedDispatch &d : planned.dispatches) {
      ArtifactDispatch dispatch;
      dispatch.executable = executableIndex;
      dispatch.kernel = d.kernel;
      dispatch.workPerToken = d.workPerToken;
      dispatch.workFixed = d.workFixed;
      for (const PlannedBinding &b : d.bindings)
        dispatch.bindings.push_back(toArtifact(b));
      entry.dispatches.push_back(std::move(dispatch));
    }
    builder.addEntryPoint(std::move(entry));
  }
  return builder.finish();
}

} // namespace moec::cpu
