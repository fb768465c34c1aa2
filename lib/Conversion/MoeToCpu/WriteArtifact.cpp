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

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"

namespace moec::cpu {

static ArtifactDType artifactType(WeightType type) {
  switch (type) {
  case WeightType::BF16:
    return ArtifactDType::BF16;
  case WeightType::Q8_0:
    return ArtifactDType::Q8_0;
  case WeightType::F32:
    break;
  }
  return ArtifactDType::F32;
}

static const char *weightTypeName(WeightType type) {
  switch (type) {
  case WeightType::BF16:
    return "bf16";
  case WeightType::Q8_0:
    return "q8_0";
  case WeightType::F32:
    break;
  }
  return "f32";
}

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

// The recipe of a deferred weight, for the packer.
static llvm::json::Value recipe(const WeightExpr &expr) {
  auto list = [](const std::vector<WeightExpr> &operands) {
    llvm::json::Array array;
    for (const WeightExpr &operand : operands)
      array.push_back(recipe(operand));
    return array;
  };
  switch (expr.kind) {
  case WeightExpr::Param:
    return llvm::json::Object{{"param", expr.name}};
  case WeightExpr::Stack:
    return llvm::json::Object{{"stack", list(expr.operands)}};
  case WeightExpr::Concat:
    if (expr.dim != 0)
      return llvm::json::Object{{"concat", list(expr.operands)},
                                {"dim", expr.dim}};
    return llvm::json::Object{{"concat", list(expr.operands)}};
  case WeightExpr::Slice:
    return llvm::json::Object{{"slice", recipe(expr.operands[0])},
                              {"dim", expr.dim},
                              {"offset", expr.offset},
                              {"size", expr.size}};
  case WeightExpr::DequantizeFp8:
    return llvm::json::Object{
        {"dequantize_fp8",
         llvm::json::Object{
             {"weight", recipe(expr.operands[0])},
             {"scale_inv", recipe(expr.operands[1])},
             {"block", llvm::json::Array{expr.blockRows, expr.blockCols}}}}};
  }
  return nullptr;
}

static llvm::Error writeManifest(const CpuProgram &program,
                                 const ArtifactBuilder::Layout &layout,
                                 llvm::StringRef outputPath) {
  llvm::json::Array weights;
  for (auto [weight, offset] :
       llvm::zip(program.weights, layout.weightOffsets)) {
    llvm::json::Array shape;
    for (int64_t dim : weight.shape)
      shape.push_back(dim);
    weights.push_back(llvm::json::Object{{"name", weight.name},
                                         {"dtype", weightTypeName(weight.type)},
                                         {"shape", std::move(shape)},
                                         {"offset", offset},
                                         {"size", weight.bytes()},
                                         {"source", recipe(weight.expr)}});
  }
  llvm::json::Object manifest{
      {"format", "moec-deferred-weights-1"},
      {"weights_offset", layout.weightsOffset},
      {"weights_size", layout.weightsSize},
      {"blobs_offset", layout.blobsOffset},
      {"blobs_size", layout.blobsSize},
      {"file_size", layout.blobsOffset + layout.blobsSize},
      {"weights", std::move(weights)}};
  std::string path = (outputPath + ".weights.json").str();
  std::string tempPath = path + ".tmp";
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(tempPath, ec);
    if (ec)
      return llvm::createStringError(tempPath + ": " + ec.message());
    os << llvm::formatv("{0:2}", llvm::json::Value(std::move(manifest)))
       << "\n";
    if (os.has_error())
      return llvm::createStringError(tempPath + ": " + os.error().message());
  }
  if (std::error_code ec = llvm::sys::fs::rename(tempPath, path))
    return llvm::createStringError(path + ": " + ec.message());
  return llvm::Error::success();
}

llvm::Error writeArtifact(const CpuProgram &program, const ModelConfig &config,
                          llvm::StringRef configJson,
                          const SafeTensorsCheckpoint &checkpoint,
                          llvm::StringRef outputPath,
                          const ArtifactOutput &output) {
  ArtifactBuilder::Options builderOptions;
  builderOptions.deferWeights = output.deferWeights;
  llvm::Expected<std::unique_ptr<ArtifactBuilder>> created =
      ArtifactBuilder::create(outputPath, builderOptions);
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
  // The matrices' type (1-D weights are f32 whatever --dtype says).
  info.computeDType = ArtifactDType::F32;
  for (const PlannedWeight &weight : program.weights)
    if (weight.type != WeightType::F32)
      info.computeDType = artifactType(weight.type);
  info.configJson = configJson.str();
  info.tokenizerJson = output.tokenizerJson;
  info.tokenizerConfigJson = output.tokenizerConfigJson;
  builder.setModelInfo(std::move(info));

  // Weight indices are the plan's: added in order.
  uint64_t total = 0, written = 0;
  for (const PlannedWeight &weight : program.weights)
    total += weight.bytes();
  for (const PlannedWeight &weight : program.weights) {
    llvm::Expected<uint32_t> index =
        builder.addWeight(weight.name, artifactType(weight.type), weight.shape,
                          [&](llvm::raw_ostream &os) {
                            return writeWeight(weight, checkpoint, os);
                          });
    if (!index)
      return index.takeError();
    written += weight.bytes();
    if (output.progress)
      output.progress(written, total);
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
    entry.allLogits = planned.allLogits;
    for (const PlannedDispatch &d : planned.dispatches) {
      ArtifactDispatch dispatch;
      dispatch.executable = executableIndex;
      dispatch.kernel = d.kernel;
      dispatch.workPerToken = d.workPerToken;
      dispatch.workFixed = d.workFixed;
      dispatch.grain = d.grain;
      for (const PlannedBinding &b : d.bindings)
        dispatch.bindings.push_back(toArtifact(b));
      entry.dispatches.push_back(std::move(dispatch));
    }
    builder.addEntryPoint(std::move(entry));
  }
  if (llvm::Error err = builder.finish())
    return err;
  if (output.deferWeights)
    return writeManifest(program, builder.layout(), outputPath);
  return llvm::Error::success();
}

} // namespace moec::cpu
