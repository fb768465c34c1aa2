//===- Inspect.cpp - human-readable description of inputs -----------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/Inspect.h"
#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Format.h"
#include "moec/Target/InspectArtifact.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <map>

using namespace llvm;

namespace moec {

// "model.layers.12.mlp.experts.3.w1.weight" -> 12; -1 for non-layer tensors.
static int64_t layerOf(StringRef name) {
  int64_t layer;
  if (!name.consume_front("model.layers.") || name.consumeInteger(10, layer))
    return -1;
  return layer;
}

static bool isRoutedExpert(StringRef name) {
  return name.contains(".experts.");
}

ParameterCounts printLayerSummary(const ModelConfig &config,
                                  const SafeTensorsCheckpoint &checkpoint,
                                  raw_ostream &os) {
  // Per layer: all parameters and the routed-expert share.
  std::vector<int64_t> layerTotal(config.numLayers, 0);
  std::vector<int64_t> layerRouted(config.numLayers, 0);
  int64_t outside = 0;
  for (const TensorInfo &tensor : checkpoint.tensors()) {
    StringRef name = tensor.name;
    // Block scales of FP8 weights are not parameters.
    if (name.ends_with("_scale_inv"))
      continue;
    int64_t layer = layerOf(name);
    if (layer < 0) {
      if (!(config.tieWordEmbeddings && name == "lm_head.weight"))
        outside += tensor.numElements();
      continue;
    }
    if (layer >= config.numLayers)
      continue; // multi-token-prediction layers are not imported
    layerTotal[layer] += tensor.numElements();
    if (isRoutedExpert(name))
      layerRouted[layer] += tensor.numElements();
  }

  std::string attention;
  if (config.mla)
    attention = formatv("MLA{0} h{1}", config.mla->qLoraRank ? "+q_lora" : "",
                        config.numHeads)
                    .str();
  else
    attention = formatv("{0} {1}/{2}",
                        config.numKvHeads == config.numHeads ? "MHA" : "GQA",
                        config.numHeads, config.numKvHeads)
                    .str();

  ParameterCounts counts;
  counts.total = counts.active = outside;
  os << formatv("{0,5}  {1,-16} {2,-34} {3,10} {4,10}\n", "layer", "attention",
                "feed-forward", "params", "active");
  for (int64_t layer = 0; layer < config.numLayers; ++layer) {
    std::string ffn;
    int64_t active = layerTotal[layer];
    if (config.moe && config.isMoeLayer(layer)) {
      const MoeConfig &moe = *config.moe;
      ffn = formatv("MoE {0}x{1} top-{2}", moe.numExperts, moe.intermediateSize,
                    moe.topK)
                .str();
      if (moe.sharedExperts != SharedExperts::None)
        ffn += formatv(" +shared {0}", moe.sharedIntermediateSize).str();
      active -=
          layerRouted[layer] * (moe.numExperts - moe.topK) / moe.numExperts;
    } else {
      ffn = formatv("dense {0}", config.intermediateSize).str();
    }
    counts.total += layerTotal[layer];
    counts.active += active;
    os << formatv("{0,5}  {1,-16} {2,-34} {3,10} {4,10}\n", layer, attention,
                  ffn, formatCount(layerTotal[layer]), formatCount(active));
  }
  os << formatv("{0,5}  {1,-16} {2,-34} {3,10} {4,10}\n", "other", "",
                "embeddings, final norm, lm_head", formatCount(outside),
                formatCount(outside));
  os << formatv("total parameters: {0} ({1}), active per token: {2} ({3})\n",
                formatCount(counts.total), counts.total,
                formatCount(counts.active), counts.active);
  return counts;
}

Error inspectPath(StringRef path, raw_ostream &os, bool verifyChecksums) {
  if (!sys::fs::exists(path))
    return createStringError(path + ": no such file or directory");
  if (!sys::fs::is_directory(path)) {
    if (!isArtifactFile(path))
      return createStringError(path + ": not a checkpoint directory nor a "
                                      ".moec artifact (no MOECART magic)");
    return inspectArtifact(path, os, verifyChecksums);
  }
  Expected<ModelConfig> config = ModelConfig::fromDirectory(path);
  if (!config)
    return config.takeError();
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(path);
  if (!checkpoint)
    return checkpoint.takeError();

  os << "checkpoint: " << path << "\n\n";
  os << config->summary() << "\n";
  printLayerSummary(*config, *checkpoint, os);
  os << "\n";

  os << "weights:\n";
  std::map<std::string, std::pair<uint64_t, uint64_t>> byDtype;
  uint64_t totalBytes = 0;
  for (const TensorInfo &tensor : checkpoint->tensors()) {
    os << formatv("  {0,-64} {1,-8} {2,-20} {3,12}  {4}\n", tensor.name,
                  dtypeName(tensor.dtype), formatShape(tensor.shape),
                  formatBytes(tensor.nbytes),
                  sys::path::filename(tensor.shardPath));
    auto &[count, bytes] = byDtype[dtypeName(tensor.dtype).str()];
    ++count;
    bytes += tensor.nbytes;
    totalBytes += tensor.nbytes;
  }
  os << "\ntotals:\n";
  for (const auto &[dtype, entry] : byDtype)
    os << formatv("  {0,-8} {1,6} tensors  {2}\n", dtype, entry.first,
                  formatBytes(entry.second));
  os << formatv("  {0,-8} {1,6} tensors  {2}\n", "all",
                checkpoint->tensors().size(), formatBytes(totalBytes));
  return Error::success();
}

} // namespace moec
