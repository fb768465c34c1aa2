//===- ModelConfig.h - config.json -> normalized model ----------*- C++ -*-===//
//
// Part of moec. Reads a HuggingFace config.json of a supported family
// (deepseek_v2, deepseek_v3 — DeepSeek-R1 is deepseek_v3 —, mixtral,
// qwen2_moe, qwen3_moe, llama, qwen2) and normalizes it into one
// family-independent description of everything that changes the computation.
// Absent fields take the defaults of transformers' configuration classes
// (5.x; where 4.x differs, the differences are noted in ModelConfig.cpp).
// Both the 4.x (`rope_theta` + `rope_scaling`) and the 5.x (`rope_parameters`)
// spellings of RoPE settings are accepted.
//
// Links only LLVMSupport so tools other than the compiler can reuse it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_FRONTEND_MODELCONFIG_H
#define MOEC_FRONTEND_MODELCONFIG_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace moec {

enum class ModelFamily {
  DeepSeekV2,
  DeepSeekV3,
  Mixtral,
  Qwen2Moe,
  Qwen3Moe,
  Llama,
  Qwen2,
};

/// RoPE frequency scaling (transformers' `rope_type`). "dynamic" and
/// "longrope" are rejected: no supported family ships them.
enum class RopeType { Default, Linear, Yarn, Llama3 };

struct RopeConfig {
  RopeType type = RopeType::Default;
  double theta = 10000.0;
  /// Rotated dimensions per head (qk_rope_head_dim for MLA, else head_dim).
  int64_t dim = 0;
  /// Pairs are adjacent dimensions (2i, 2i+1) instead of (i, i + dim/2).
  /// DeepSeek-V2 always; DeepSeek-V3 when `rope_interleave` (default true).
  bool interleaved = false;
  /// linear, yarn, llama3: the context extension factor.
  std::optional<double> factor;
  /// yarn, llama3: the pre-extension context length.
  std::optional<int64_t> originalMaxPositions;
  /// yarn: ramp bounds (resolved to transformers' defaults 32 and 1), the
  /// optional DeepSeek mscale pair and whether the ramp is truncated.
  std::optional<double> betaFast, betaSlow, mscale, mscaleAllDim;
  bool truncate = true;
  /// llama3: wavelength band factors.
  std::optional<double> lowFreqFactor, highFreqFactor;
  /// Multiplier of cos and sin (yarn's attention_factor, resolved the way
  /// transformers' _compute_yarn_parameters does; 1.0 otherwise).
  double attentionFactor = 1.0;
};

/// DeepSeek Multi-head Latent Attention sizes.
struct MlaConfig {
  /// Rank of the query down-projection; absent means a plain q_proj.
  std::optional<int64_t> qLoraRank;
  int64_t kvLoraRank = 0;
  int64_t qkNopeHeadDim = 0;
  int64_t qkRopeHeadDim = 0;
  int64_t vHeadDim = 0;
  int64_t qkHeadDim() const { return qkNopeHeadDim + qkRopeHeadDim; }
};

enum class ScoringFunc { Softmax, Sigmoid };
enum class TopKMethod { Greedy, GroupLimitedGreedy, NoAuxTc };
enum class SharedExperts {
  None,
  DeepSeek,  // `shared_experts` MLP added to the routed output
  QwenGated, // `shared_expert` MLP scaled by sigmoid(shared_expert_gate(x))
};
/// How per-expert checkpoint tensors are named.
enum class ExpertNaming {
  Standard, // mlp.experts.<e>.{gate,up,down}_proj
  Mixtral,  // block_sparse_moe.experts.<e>.{w1,w3,w2}
};

struct MoeConfig {
  int64_t numExperts = 0;
  int64_t topK = 0;
  /// Intermediate size of one routed expert.
  int64_t intermediateSize = 0;
  ScoringFunc scoring = ScoringFunc::Softmax;
  TopKMethod topKMethod = TopKMethod::Greedy;
  /// Expert groups for group_limited_greedy / noaux_tc (1 otherwise).
  int64_t numGroups = 1;
  int64_t topKGroups = 1;
  /// Renormalize the selected weights to sum to one.
  bool normTopKProb = false;
  double routedScalingFactor = 1.0;
  /// noaux_tc: `gate.e_score_correction_bias` biases the selection.
  bool scoreCorrectionBias = false;
  SharedExperts sharedExperts = SharedExperts::None;
  /// DeepSeek: n_shared_experts (one MLP of n * moe_intermediate_size);
  /// Qwen2-MoE: 1.
  int64_t numSharedExperts = 0;
  /// Intermediate size of the (combined) shared expert MLP.
  int64_t sharedIntermediateSize = 0;
};

/// DeepSeek-style fine-grained fp8: e4m3 weights with per-block f32
/// `weight_scale_inv`.
struct Fp8Quantization {
  int64_t blockRows = 128;
  int64_t blockCols = 128;
  std::string activationScheme = "dynamic";
  std::vector<std::string> modulesToNotConvert;
};

struct ModelConfig {
  std::string modelType;
  ModelFamily family = ModelFamily::Llama;

  int64_t hiddenSize = 0;
  int64_t vocabSize = 0;
  int64_t numLayers = 0;
  int64_t numHeads = 0;
  /// Key/value heads (== numHeads for MHA and MLA).
  int64_t numKvHeads = 0;
  /// Query/key head dim: head_dim (explicit or hidden/heads); for MLA
  /// qk_nope_head_dim + qk_rope_head_dim.
  int64_t headDim = 0;
  /// Value head dim (headDim except for MLA).
  int64_t valueHeadDim = 0;
  /// Dense MLP intermediate size (dense layers and dense models).
  int64_t intermediateSize = 0;
  double rmsNormEps = 1e-6;
  bool tieWordEmbeddings = false;
  /// Biases on q/k/v projections, and on the output projection.
  bool attentionBias = false;
  bool attentionOutputBias = false;
  /// Per-head RMSNorm of queries and keys before RoPE (Qwen3).
  bool qkNorm = false;
  std::optional<MlaConfig> mla;
  RopeConfig rope;
  /// Multiplier of q.k before softmax: headDim^-0.5, times DeepSeek's yarn
  /// mscale(factor, mscale_all_dim)^2 correction.
  double softmaxScale = 0.0;

  /// Absent for dense models.
  std::optional<MoeConfig> moe;
  ExpertNaming expertNaming = ExpertNaming::Standard;
  /// Which layers are MoE (DeepSeek: first_k_dense_replace; Qwen:
  /// decoder_sparse_step and mlp_only_layers).
  int64_t firstKDenseReplace = 0;
  int64_t decoderSparseStep = 1;
  std::vector<int64_t> mlpOnlyLayers;
  /// DeepSeek-V3 multi-token-prediction layers stored after the regular
  /// ones (model.layers.<numLayers>...); importers skip them.
  int64_t numNextnPredictLayers = 0;

  std::optional<int64_t> bosTokenId;
  std::vector<int64_t> eosTokenIds;
  std::optional<int64_t> padTokenId;
  int64_t maxPositionEmbeddings = 0;
  /// `dtype` (5.x) or `torch_dtype` (4.x), e.g. "bfloat16"; empty if absent.
  std::string dtype;
  std::optional<Fp8Quantization> quantization;

  /// Reads `<directory>/config.json`.
  static llvm::Expected<ModelConfig> fromDirectory(llvm::StringRef directory);
  /// Reads the config file at `path`.
  static llvm::Expected<ModelConfig> fromFile(llvm::StringRef path);
  /// Parses config JSON text; `source` names it in error messages.
  static llvm::Expected<ModelConfig>
  fromJson(llvm::StringRef json, llvm::StringRef source = "config.json");

  /// Whether decoder layer `layer` has a mixture of experts (else a dense
  /// MLP of intermediateSize).
  bool isMoeLayer(int64_t layer) const;

  /// KV-cache geometry of the unabsorbed attention transformers computes:
  /// heads, key dim and value dim per cached token.
  int64_t kvCacheHeads() const { return mla ? numHeads : numKvHeads; }
  int64_t kvCacheKeyDim() const { return headDim; }
  int64_t kvCacheValueDim() const { return valueHeadDim; }

  /// A readable multi-line description (moec inspect / import).
  std::string summary() const;
};

llvm::StringRef familyName(ModelFamily family);
llvm::StringRef ropeTypeName(RopeType type);
llvm::StringRef scoringFuncName(ScoringFunc scoring);
llvm::StringRef topKMethodName(TopKMethod method);

} // namespace moec

#endif // MOEC_FRONTEND_MODELCONFIG_H
