//===- ModelConfig.cpp - config.json -> normalized model description ------===//
//
// Part of moec. Defaults and derivations follow transformers 5.x
// (configuration_<family>.py / modeling_<family>.py); where transformers
// ignores a field that the original model code honours, a non-default value
// is rejected rather than silently reinterpreted. Differences from 4.x that
// matter:
//  - deepseek_v2: 4.x computed the attention scale without the yarn mscale
//    correction; 5.x (and DeepSeek's own code) apply it. We follow 5.x.
//  - deepseek_v2: the vocab_size default is 102400 in 5.x (32000 in 4.x).
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/ModelConfig.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/ADT/Twine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <charconv>
#include <cmath>

using namespace llvm;

namespace moec {

StringRef familyName(ModelFamily family) {
  switch (family) {
  case ModelFamily::DeepSeekV2:
    return "deepseek_v2";
  case ModelFamily::DeepSeekV3:
    return "deepseek_v3";
  case ModelFamily::Mixtral:
    return "mixtral";
  case ModelFamily::Qwen2Moe:
    return "qwen2_moe";
  case ModelFamily::Qwen3Moe:
    return "qwen3_moe";
  case ModelFamily::Llama:
    return "llama";
  case ModelFamily::Qwen2:
    return "qwen2";
  }
  llvm_unreachable("unknown ModelFamily");
}

StringRef ropeTypeName(RopeType type) {
  switch (type) {
  case RopeType::Default:
    return "default";
  case RopeType::Linear:
    return "linear";
  case RopeType::Yarn:
    return "yarn";
  case RopeType::Llama3:
    return "llama3";
  }
  llvm_unreachable("unknown RopeType");
}

StringRef scoringFuncName(ScoringFunc scoring) {
  return scoring == ScoringFunc::Softmax ? "softmax" : "sigmoid";
}

StringRef topKMethodName(TopKMethod method) {
  switch (method) {
  case TopKMethod::Greedy:
    return "greedy";
  case TopKMethod::GroupLimitedGreedy:
    return "group_limited_greedy";
  case TopKMethod::NoAuxTc:
    return "noaux_tc";
  }
  llvm_unreachable("unknown TopKMethod");
}

namespace {

//===----------------------------------------------------------------------===//
// Field access with transformers' "absent means default" rule
//===----------------------------------------------------------------------===//

StringRef jsonKind(const json::Value &value) {
  switch (value.kind()) {
  case json::Value::Null:
    return "null";
  case json::Value::Boolean:
    return "a boolean";
  case json::Value::Number:
    return "a number";
  case json::Value::String:
    return "a string";
  case json::Value::Array:
    return "an array";
  case json::Value::Object:
    return "an object";
  }
  llvm_unreachable("unknown json kind");
}

// Reads typed fields of one JSON object. The first error is kept and later
// reads return their defaults, so normalization code stays linear; callers
// check `failed()` / `takeError()` once.
class FieldReader {
public:
  FieldReader(const json::Object *object, StringRef source, std::string prefix,
              std::optional<Error> *error)
      : object(object), source(source), prefix(std::move(prefix)),
        error(error) {}

  FieldReader nested(StringRef key, const json::Object *child) const {
    return FieldReader(child, source, prefix + key.str() + ".", error);
  }

  const json::Value *raw(StringRef key) const {
    return object ? object->get(key) : nullptr;
  }
  /// Present and not null: transformers treats both absent and null as None.
  bool has(StringRef key) const {
    const json::Value *value = raw(key);
    return value && value->kind() != json::Value::Null;
  }

  void fail(const Twine &message) const {
    if (!*error)
      *error = createStringError(source + ": " + message);
  }
  void failField(StringRef key, const Twine &message) const {
    fail("field '" + prefix + key + "' " + message);
  }
  bool failed() const { return error->has_value(); }

  std::optional<int64_t> optionalInt(StringRef key) const {
    if (!has(key))
      return std::nullopt;
    std::optional<int64_t> value = raw(key)->getAsInteger();
    if (!value)
      failField(key, "must be an integer, got " + jsonKind(*raw(key)));
    return value;
  }
  int64_t getInt(StringRef key, int64_t defaultValue) const {
    if (const json::Value *value = raw(key);
        value && value->kind() == json::Value::Null) {
      failField(key, "must be an integer, got null");
      return defaultValue;
    }
    return optionalInt(key).value_or(defaultValue);
  }
  int64_t requireInt(StringRef key, const Twine &why) const {
    if (!has(key)) {
      fail("missing required field '" + prefix + key + "' (" + why + ")");
      return 0;
    }
    return optionalInt(key).value_or(0);
  }
  int64_t getPositive(StringRef key, int64_t defaultValue) const {
    int64_t value = getInt(key, defaultValue);
    if (value <= 0)
      failField(key, "must be positive, got " + Twine(value));
    return value;
  }

  std::optional<double> optionalDouble(StringRef key) const {
    if (!has(key))
      return std::nullopt;
    std::optional<double> value = raw(key)->getAsNumber();
    if (!value)
      failField(key, "must be a number, got " + jsonKind(*raw(key)));
    return value;
  }
  double getDouble(StringRef key, double defaultValue) const {
    if (const json::Value *value = raw(key);
        value && value->kind() == json::Value::Null) {
      failField(key, "must be a number, got null");
      return defaultValue;
    }
    return optionalDouble(key).value_or(defaultValue);
  }

  bool getBool(StringRef key, bool defaultValue) const {
    if (!has(key))
      return defaultValue;
    std::optional<bool> value = raw(key)->getAsBoolean();
    if (!value) {
      failField(key, "must be true or false, got " + jsonKind(*raw(key)));
      return defaultValue;
    }
    return *value;
  }

  std::optional<std::string> optionalString(StringRef key) const {
    if (!has(key))
      return std::nullopt;
    std::optional<StringRef> value = raw(key)->getAsString();
    if (!value) {
      failField(key, "must be a string, got " + jsonKind(*raw(key)));
      return std::nullopt;
    }
    return value->str();
  }
  std::string getString(StringRef key, StringRef defaultValue) const {
    return optionalString(key).value_or(defaultValue.str());
  }

  /// An integer or a list of integers (eos_token_id); null means none.
  std::vector<int64_t> intOrIntList(StringRef key,
                                    std::optional<int64_t> defaultValue) const {
    std::vector<int64_t> values;
    const json::Value *value = raw(key);
    if (!value) {
      if (defaultValue)
        values.push_back(*defaultValue);
      return values;
    }
    if (value->kind() == json::Value::Null)
      return values;
    if (const json::Array *list = value->getAsArray()) {
      for (const json::Value &item : *list) {
        std::optional<int64_t> id = item.getAsInteger();
        if (!id) {
          failField(key, "must hold integers");
          return {};
        }
        values.push_back(*id);
      }
      return values;
    }
    if (std::optional<int64_t> id = value->getAsInteger()) {
      values.push_back(*id);
      return values;
    }
    failField(key, "must be an integer or a list of integers, got " +
                       jsonKind(*value));
    return values;
  }

  std::vector<int64_t> intList(StringRef key) const {
    std::vector<int64_t> values;
    if (!has(key))
      return values;
    const json::Array *list = raw(key)->getAsArray();
    if (!list) {
      failField(key, "must be a list of integers, got " + jsonKind(*raw(key)));
      return values;
    }
    for (const json::Value &item : *list) {
      std::optional<int64_t> number = item.getAsInteger();
      if (!number) {
        failField(key, "must hold integers");
        return {};
      }
      values.push_back(*number);
    }
    return values;
  }

  const json::Object *optionalObject(StringRef key) const {
    if (!has(key))
      return nullptr;
    const json::Object *child = raw(key)->getAsObject();
    if (!child)
      failField(key, "must be an object, got " + jsonKind(*raw(key)));
    return child;
  }

  std::string fieldName(StringRef key) const { return prefix + key.str(); }

private:
  const json::Object *object;
  StringRef source;
  std::string prefix;
  std::optional<Error> *error;
};

//===----------------------------------------------------------------------===//
// Per-family defaults (transformers 5.x configuration classes)
//===----------------------------------------------------------------------===//

struct FamilyDefaults {
  int64_t vocabSize, hiddenSize, intermediateSize, numLayers, numHeads;
  std::optional<int64_t> numKvHeads = std::nullopt; // None: numHeads
  int64_t maxPositions;
  double rmsNormEps = 1e-6;
  std::optional<int64_t> bos = std::nullopt, eos = std::nullopt;
  double ropeTheta = 1e4;
};

FamilyDefaults defaultsFor(ModelFamily family) {
  switch (family) {
  case ModelFamily::DeepSeekV2:
    return {.vocabSize = 102400,
            .hiddenSize = 4096,
            .intermediateSize = 11008,
            .numLayers = 32,
            .numHeads = 32,
            .maxPositions = 2048,
            .bos = 1,
            .eos = 2};
  case ModelFamily::DeepSeekV3:
    return {.vocabSize = 129280,
            .hiddenSize = 7168,
            .intermediateSize = 18432,
            .numLayers = 61,
            .numHeads = 128,
            .numKvHeads = 128,
            .maxPositions = 4096,
            .bos = 0,
            .eos = 1};
  case ModelFamily::Mixtral:
    return {.vocabSize = 32000,
            .hiddenSize = 4096,
            .intermediateSize = 14336,
            .numLayers = 32,
            .numHeads = 32,
            .numKvHeads = 8,
            .maxPositions = 4096 * 32,
            .rmsNormEps = 1e-5,
            .bos = 1,
            .eos = 2,
            .ropeTheta = 1e6};
  case ModelFamily::Qwen2Moe:
    return {.vocabSize = 151936,
            .hiddenSize = 2048,
            .intermediateSize = 5632,
            .numLayers = 24,
            .numHeads = 16,
            .numKvHeads = 16,
            .maxPositions = 32768};
  case ModelFamily::Qwen3Moe:
    return {.vocabSize = 151936,
            .hiddenSize = 2048,
            .intermediateSize = 6144,
            .numLayers = 24,
            .numHeads = 32,
            .numKvHeads = 4,
            .maxPositions = 32768};
  case ModelFamily::Llama:
    return {.vocabSize = 32000,
            .hiddenSize = 4096,
            .intermediateSize = 11008,
            .numLayers = 32,
            .numHeads = 32,
            .maxPositions = 2048,
            .bos = 1,
            .eos = 2};
  case ModelFamily::Qwen2:
    return {.vocabSize = 151936,
            .hiddenSize = 4096,
            .intermediateSize = 22016,
            .numLayers = 32,
            .numHeads = 32,
            .numKvHeads = 32,
            .maxPositions = 32768};
  }
  llvm_unreachable("unknown ModelFamily");
}

std::optional<ModelFamily> parseFamily(StringRef modelType) {
  return StringSwitch<std::optional<ModelFamily>>(modelType)
      .Case("deepseek_v2", ModelFamily::DeepSeekV2)
      .Case("deepseek_v3", ModelFamily::DeepSeekV3)
      .Case("mixtral", ModelFamily::Mixtral)
      .Case("qwen2_moe", ModelFamily::Qwen2Moe)
      .Case("qwen3_moe", ModelFamily::Qwen3Moe)
      .Case("llama", ModelFamily::Llama)
      .Case("qwen2", ModelFamily::Qwen2)
      .Default(std::nullopt);
}

bool isDeepSeek(ModelFamily family) {
  return family == ModelFamily::DeepSeekV2 || family == ModelFamily::DeepSeekV3;
}

// Integers as integers (500000, not 5e+05), everything else in the shortest
// round-trip spelling (1e-06, 0.707).
std::string formatNumber(double value) {
  if (value == std::trunc(value) && std::fabs(value) < 1e15)
    return std::to_string(static_cast<int64_t>(value));
  char buffer[32];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  return std::string(buffer, result.ptr);
}

// DeepSeek's yarn_get_mscale (and the `get_mscale` of transformers' yarn).
double yarnGetMscale(double scale, double mscale) {
  if (scale <= 1.0)
    return 1.0;
  return 0.1 * mscale * std::log(scale) + 1.0;
}

//===----------------------------------------------------------------------===//
// RoPE: 4.x `rope_theta` + `rope_scaling`, 5.x `rope_parameters`
//===----------------------------------------------------------------------===//

// Mirrors RotaryEmbeddingConfigMixin.convert_rope_params_to_dict and
// standardize_rope_params: a non-empty `rope_scaling` wins over
// `rope_parameters`; `rope_theta` inside the dict wins over the top-level
// one, which wins over the family default; `type` is the old spelling of
// `rope_type`; yarn and llama3 default original_max_position_embeddings to
// the top-level field if present, else to max_position_embeddings.
void resolveRope(const FieldReader &top, ModelConfig &config,
                 double defaultTheta,
                 std::optional<double> &deepseekMscaleAllDim) {
  RopeConfig &rope = config.rope;
  const json::Object *params = top.optionalObject("rope_scaling");
  StringRef dictName = "rope_scaling";
  if (!params || params->empty()) {
    params = top.optionalObject("rope_parameters");
    dictName = "rope_parameters";
  }
  FieldReader dict = top.nested(dictName, params);
  if (params)
    for (StringRef perLayer : {"full_attention", "sliding_attention"})
      if (params->get(perLayer))
        dict.failField(perLayer, "(per-layer-type RoPE) is not supported");

  if (dict.has("rope_theta"))
    rope.theta = dict.getDouble("rope_theta", defaultTheta);
  else
    rope.theta = top.getDouble("rope_theta", defaultTheta);
  if (rope.theta <= 0)
    top.fail("rope_theta must be positive, got " + formatNumber(rope.theta));

  std::optional<std::string> typeName = dict.optionalString("rope_type");
  if (!typeName)
    typeName = dict.optionalString("type");
  StringRef type = typeName ? StringRef(*typeName) : StringRef("default");

  double partial =
      dict.has("partial_rotary_factor")
          ? dict.getDouble("partial_rotary_factor", 1.0)
          : top.optionalDouble("partial_rotary_factor").value_or(1.0);
  if (partial != 1.0)
    top.fail("partial_rotary_factor " + formatNumber(partial) +
             " is not supported (moec rotates whole heads)");

  auto originalMaxPositions = [&]() -> std::optional<int64_t> {
    if (top.has("original_max_position_embeddings"))
      return top.getPositive("original_max_position_embeddings", 1);
    if (dict.has("original_max_position_embeddings"))
      return dict.getPositive("original_max_position_embeddings", 1);
    return config.maxPositionEmbeddings;
  };
  auto requireFactor = [&]() -> double {
    if (!dict.has("factor")) {
      top.fail("missing required field '" + dict.fieldName("factor") +
               "' for rope type '" + type + "'");
      return 1.0;
    }
    double factor = dict.getDouble("factor", 1.0);
    if (factor < 1.0)
      dict.failField("factor", "must be >= 1, got " + formatNumber(factor));
    return factor;
  };

  if (type == "default") {
    rope.type = RopeType::Default;
  } else if (type == "linear") {
    rope.type = RopeType::Linear;
    rope.factor = requireFactor();
  } else if (type == "yarn") {
    rope.type = RopeType::Yarn;
    rope.factor = requireFactor();
    rope.originalMaxPositions = originalMaxPositions();
    // transformers reads these with `or`, so 0 also means the default.
    double betaFast = dict.getDouble("beta_fast", 0.0);
    double betaSlow = dict.getDouble("beta_slow", 0.0);
    rope.betaFast = betaFast != 0.0 ? betaFast : 32.0;
    rope.betaSlow = betaSlow != 0.0 ? betaSlow : 1.0;
    rope.mscale = dict.optionalDouble("mscale");
    rope.mscaleAllDim = dict.optionalDouble("mscale_all_dim");
    rope.truncate = dict.getBool("truncate", true);
    // _compute_yarn_parameters: an explicit attention_factor wins; else the
    // DeepSeek ratio when both mscales are non-zero; else get_mscale(factor).
    if (std::optional<double> given = dict.optionalDouble("attention_factor"))
      rope.attentionFactor = *given;
    else if (rope.mscale.value_or(0.0) != 0.0 &&
             rope.mscaleAllDim.value_or(0.0) != 0.0)
      rope.attentionFactor = yarnGetMscale(*rope.factor, *rope.mscale) /
                             yarnGetMscale(*rope.factor, *rope.mscaleAllDim);
    else
      rope.attentionFactor = yarnGetMscale(*rope.factor, 1.0);
  } else if (type == "llama3") {
    rope.type = RopeType::Llama3;
    rope.factor = requireFactor();
    rope.originalMaxPositions = originalMaxPositions();
    for (StringRef key : {"low_freq_factor", "high_freq_factor"})
      if (!dict.has(key))
        top.fail("missing required field '" + dict.fieldName(key) +
                 "' for rope type 'llama3'");
    rope.lowFreqFactor = dict.optionalDouble("low_freq_factor");
    rope.highFreqFactor = dict.optionalDouble("high_freq_factor");
    if (rope.lowFreqFactor && rope.highFreqFactor &&
        *rope.highFreqFactor <= *rope.lowFreqFactor)
      top.fail(dict.fieldName("high_freq_factor") +
               " must be greater than low_freq_factor");
  } else {
    top.fail("rope type '" + type + "' (" + dict.fieldName("rope_type") +
             ") is not supported (moec supports default, linear, yarn, "
             "llama3)");
  }

  // DeepSeek's yarn_apply_mscale applies for any non-default rope type.
  if (rope.type != RopeType::Default)
    deepseekMscaleAllDim = dict.optionalDouble("mscale_all_dim");
}

//===----------------------------------------------------------------------===//
// Family-specific pieces
//===----------------------------------------------------------------------===//

void requireValue(const FieldReader &reader, StringRef key,
                  const std::optional<std::string> &value, StringRef wanted,
                  StringRef why) {
  if (value && *value != wanted)
    reader.failField(key, "is '" + *value + "', but " + why);
}

void readDeepSeekMoe(const FieldReader &top, ModelConfig &config) {
  bool v3 = config.family == ModelFamily::DeepSeekV3;
  MoeConfig moe;
  moe.numExperts = top.getPositive("n_routed_experts", v3 ? 256 : 64);
  moe.topK =
      v3 ? top.getPositive("num_experts_per_tok", 8)
         : top.requireInt("num_experts_per_tok", "deepseek_v2 has no default");
  if (moe.topK <= 0 && !top.failed())
    top.failField("num_experts_per_tok", "must be positive");
  moe.intermediateSize =
      top.getPositive("moe_intermediate_size", v3 ? 2048 : 1407);
  moe.routedScalingFactor =
      top.getDouble("routed_scaling_factor", v3 ? 2.5 : 1);

  std::optional<std::string> scoring = top.optionalString("scoring_func");
  std::optional<std::string> method = top.optionalString("topk_method");
  if (v3) {
    // transformers' DeepseekV3TopkRouter hard-codes sigmoid scoring and
    // bias-corrected group-limited selection; other values would be ignored.
    requireValue(top, "scoring_func", scoring, "sigmoid",
                 "deepseek_v3 routers always score with sigmoid");
    requireValue(top, "topk_method", method, "noaux_tc",
                 "deepseek_v3 routers always select with noaux_tc");
    moe.scoring = ScoringFunc::Sigmoid;
    moe.topKMethod = TopKMethod::NoAuxTc;
    moe.scoreCorrectionBias = true;
    moe.normTopKProb = top.getBool("norm_topk_prob", true);
    // null would crash transformers' router: getPositive rejects it.
    moe.numGroups = top.getPositive("n_group", 8);
    moe.topKGroups = top.getPositive("topk_group", 4);
  } else {
    requireValue(top, "scoring_func", scoring, "softmax",
                 "deepseek_v2 routers always score with softmax");
    moe.scoring = ScoringFunc::Softmax;
    std::string name = method.value_or("greedy");
    if (name == "greedy") {
      moe.topKMethod = TopKMethod::Greedy;
    } else if (name == "group_limited_greedy") {
      moe.topKMethod = TopKMethod::GroupLimitedGreedy;
      moe.numGroups = top.requireInt("n_group", "group_limited_greedy needs "
                                                "expert groups");
      moe.topKGroups = top.requireInt("topk_group", "group_limited_greedy "
                                                    "needs expert groups");
    } else {
      top.failField("topk_method", "is '" + name +
                                       "', but deepseek_v2 supports only "
                                       "'greedy' and 'group_limited_greedy'");
    }
    // transformers' DeepseekV2TopkRouter never renormalizes; DeepSeek's own
    // code would. Refuse the ambiguous case instead of guessing.
    if (top.getBool("norm_topk_prob", false))
      top.failField("norm_topk_prob",
                    "is true, which transformers' deepseek_v2 ignores; "
                    "not supported");
  }
  if (moe.topKMethod != TopKMethod::Greedy && !top.failed()) {
    if (moe.numGroups <= 0 || moe.numExperts % moe.numGroups != 0)
      top.fail(formatv("n_group {0} must divide n_routed_experts {1}",
                       moe.numGroups, moe.numExperts)
                   .str());
    else if (moe.topKGroups <= 0 || moe.topKGroups > moe.numGroups)
      top.fail(formatv("topk_group {0} must be in [1, n_group {1}]",
                       moe.topKGroups, moe.numGroups)
                   .str());
    else if (moe.topK > moe.topKGroups * (moe.numExperts / moe.numGroups))
      top.fail(formatv("num_experts_per_tok {0} exceeds the {1} experts of "
                       "topk_group {2} groups",
                       moe.topK,
                       moe.topKGroups * (moe.numExperts / moe.numGroups),
                       moe.topKGroups)
                   .str());
    else if (moe.topKMethod == TopKMethod::NoAuxTc &&
             moe.numExperts / moe.numGroups < 2)
      top.fail(formatv("noaux_tc ranks groups by their two best experts, but "
                       "n_group {0} leaves {1} expert per group",
                       moe.numGroups, moe.numExperts / moe.numGroups)
                   .str());
  }

  int64_t shared = top.getInt("n_shared_experts", v3 ? 1 : 2);
  if (shared < 0)
    top.failField("n_shared_experts", "must not be negative");
  if (shared > 0) {
    moe.sharedExperts = SharedExperts::DeepSeek;
    moe.numSharedExperts = shared;
    moe.sharedIntermediateSize = shared * moe.intermediateSize;
  }

  // transformers makes layer l MoE iff l >= first_k_dense_replace and
  // ignores moe_layer_freq; only the value every release uses is accepted.
  config.firstKDenseReplace = top.getInt("first_k_dense_replace", v3 ? 3 : 0);
  if (config.firstKDenseReplace < 0)
    top.failField("first_k_dense_replace", "must not be negative");
  if (int64_t freq = top.getInt("moe_layer_freq", 1); freq != 1)
    top.failField("moe_layer_freq", "is " + Twine(freq) +
                                        ", but transformers ignores it; only "
                                        "1 is supported");
  config.moe = moe;
}

void readDeepSeekAttention(const FieldReader &top, ModelConfig &config) {
  bool v3 = config.family == ModelFamily::DeepSeekV3;
  MlaConfig mla;
  // q_lora_rank: null selects the plain q_proj (DeepSeek-V2-Lite).
  if (const json::Value *raw = top.raw("q_lora_rank");
      raw && raw->kind() == json::Value::Null)
    mla.qLoraRank = std::nullopt;
  else
    mla.qLoraRank = top.getPositive("q_lora_rank", 1536);
  mla.kvLoraRank = top.getPositive("kv_lora_rank", 512);
  mla.qkNopeHeadDim = top.getPositive("qk_nope_head_dim", 128);
  mla.qkRopeHeadDim = top.getPositive("qk_rope_head_dim", 64);
  mla.vHeadDim = top.getPositive("v_head_dim", 128);
  if (mla.qkRopeHeadDim % 2)
    top.failField("qk_rope_head_dim", "must be even");
  config.mla = mla;
  config.headDim = mla.qkHeadDim();
  config.valueHeadDim = mla.vHeadDim;
  config.rope.dim = mla.qkRopeHeadDim;
  // V2 rotates with complex multiplication of adjacent pairs; V3 does the
  // same when rope_interleave (the default) and rotate_half otherwise. The
  // V3 kernel writes the rotated pairs de-interleaved, which permutes q and k
  // alike and so leaves every q.k — the only use — unchanged.
  config.rope.interleaved = v3 ? top.getBool("rope_interleave", true) : true;

  if (config.numKvHeads != config.numHeads)
    top.failField("num_key_value_heads",
                  formatv("is {0}, but MLA expands keys and values to all {1} "
                          "heads",
                          config.numKvHeads, config.numHeads)
                      .str());
  if (top.getBool("attention_bias", false))
    top.failField("attention_bias", "is true, which moec does not support for "
                                    "MLA");
}

void readQwenMoe(const FieldReader &top, ModelConfig &config) {
  bool qwen2 = config.family == ModelFamily::Qwen2Moe;
  // Qwen3's attribute_map spells num_experts as num_local_experts.
  StringRef expertsKey =
      !qwen2 && !top.raw("num_experts") && top.raw("num_local_experts")
          ? "num_local_experts"
          : "num_experts";
  int64_t numExperts = top.getInt(expertsKey, qwen2 ? 60 : 128);
  if (numExperts < 0)
    top.failField(expertsKey, "must not be negative");
  config.decoderSparseStep = top.getPositive("decoder_sparse_step", 1);
  config.mlpOnlyLayers = top.intList("mlp_only_layers");
  if (numExperts <= 0)
    return; // transformers builds only dense MLPs then

  MoeConfig moe;
  moe.numExperts = numExperts;
  moe.topK = top.getPositive("num_experts_per_tok", qwen2 ? 4 : 8);
  moe.intermediateSize =
      top.getPositive("moe_intermediate_size", qwen2 ? 1408 : 768);
  moe.normTopKProb = top.getBool("norm_topk_prob", false);
  if (qwen2) {
    moe.sharedExperts = SharedExperts::QwenGated;
    moe.numSharedExperts = 1;
    moe.sharedIntermediateSize =
        top.getPositive("shared_expert_intermediate_size", 5632);
  }
  config.moe = moe;
}

void readMixtralMoe(const FieldReader &top, ModelConfig &config) {
  StringRef expertsKey = !top.raw("num_local_experts") && top.raw("num_experts")
                             ? "num_experts"
                             : "num_local_experts";
  MoeConfig moe;
  moe.numExperts = top.getPositive(expertsKey, 8);
  moe.topK = top.getPositive("num_experts_per_tok", 2);
  // Every Mixtral expert is a full-size FFN; the router always renormalizes.
  moe.intermediateSize = config.intermediateSize;
  moe.normTopKProb = true;
  config.moe = moe;
  config.expertNaming = ExpertNaming::Mixtral;
}

// transformers derives sliding-window layers from these fields; moec has no
// windowed attention, so any sliding layer is an error.
void rejectSlidingWindow(const FieldReader &top, ModelConfig &config) {
  switch (config.family) {
  case ModelFamily::Mixtral:
    if (top.has("sliding_window"))
      top.failField("sliding_window",
                    "is set; sliding-window attention is not supported");
    return;
  case ModelFamily::Qwen2:
  case ModelFamily::Qwen2Moe:
  case ModelFamily::Qwen3Moe: {
    if (const json::Value *types = top.raw("layer_types");
        types && types->kind() != json::Value::Null) {
      const json::Array *list = types->getAsArray();
      if (!list) {
        top.failField("layer_types", "must be a list of strings");
        return;
      }
      for (const json::Value &type : *list)
        if (type.getAsString() != std::optional<StringRef>("full_attention"))
          top.failField("layer_types", "names a layer type other than "
                                       "'full_attention', which is not "
                                       "supported");
    }
    if (!top.getBool("use_sliding_window", false))
      return;
    int64_t maxWindowLayers = top.getInt("max_window_layers", 28);
    bool anySliding = config.family == ModelFamily::Qwen3Moe ||
                      (config.family == ModelFamily::Qwen2
                           ? maxWindowLayers < config.numLayers
                           : maxWindowLayers > 0);
    if (anySliding)
      top.failField("use_sliding_window", "is true; sliding-window attention "
                                          "is not supported");
    return;
  }
  default:
    return;
  }
}

void readQuantization(const FieldReader &top, ModelConfig &config) {
  const json::Object *object = top.optionalObject("quantization_config");
  if (!object)
    return;
  FieldReader quant = top.nested("quantization_config", object);
  std::optional<std::string> method = quant.optionalString("quant_method");
  if (!method) {
    quant.fail("missing required field '" + quant.fieldName("quant_method") +
               "'");
    return;
  }
  if (*method != "fp8") {
    quant.failField("quant_method", "is '" + *method +
                                        "'; moec supports only 'fp8' "
                                        "(DeepSeek block fp8)");
    return;
  }
  Fp8Quantization fp8;
  requireValue(quant, "fmt", quant.optionalString("fmt"), "e4m3",
               "moec supports only e4m3 weights");
  std::string scaleFormat = quant.getString("scale_fmt", "float");
  if (scaleFormat != "float")
    quant.failField("scale_fmt", "is '" + scaleFormat +
                                     "'; moec supports only f32 block scales");
  fp8.activationScheme = quant.getString("activation_scheme", "dynamic");
  if (fp8.activationScheme != "dynamic" && fp8.activationScheme != "static")
    quant.failField("activation_scheme",
                    "is '" + fp8.activationScheme +
                        "'; expected 'dynamic' or 'static'");
  if (quant.raw("weight_block_size")) {
    std::vector<int64_t> block = quant.intList("weight_block_size");
    if (block.size() != 2 || block[0] <= 0 || block[1] <= 0) {
      quant.failField("weight_block_size",
                      "must be two positive integers [rows, cols]");
    } else {
      fp8.blockRows = block[0];
      fp8.blockCols = block[1];
    }
  }
  if (const json::Value *modules = quant.raw("modules_to_not_convert");
      modules && modules->kind() != json::Value::Null) {
    const json::Array *list = modules->getAsArray();
    for (size_t i = 0; list && i < list->size(); ++i)
      if (std::optional<StringRef> name = (*list)[i].getAsString())
        fp8.modulesToNotConvert.push_back(name->str());
      else
        list = nullptr;
    if (!list)
      quant.failField("modules_to_not_convert", "must be a list of strings");
  }
  config.quantization = fp8;
}

} // namespace

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

Expected<ModelConfig> ModelConfig::fromJson(StringRef text, StringRef source) {
  Expected<json::Value> parsed = json::parse(text);
  if (!parsed)
    return createStringError(source +
                             ": invalid JSON: " + toString(parsed.takeError()));
  const json::Object *object = parsed->getAsObject();
  if (!object)
    return createStringError(source + ": the top level is not a JSON object");

  std::optional<Error> error;
  FieldReader top(object, source, "", &error);
  auto finish = [&](ModelConfig config) -> Expected<ModelConfig> {
    if (error)
      return std::move(*error);
    return config;
  };

  ModelConfig config;
  std::optional<std::string> modelType = top.optionalString("model_type");
  if (!modelType) {
    if (!error)
      top.fail("missing required field 'model_type'");
    return finish(config);
  }
  std::optional<ModelFamily> family = parseFamily(*modelType);
  if (!family) {
    top.failField("model_type",
                  "is '" + *modelType +
                      "', which moec does not support (supported: "
                      "deepseek_v2, deepseek_v3, mixtral, qwen2_moe, "
                      "qwen3_moe, llama, qwen2)");
    return finish(config);
  }
  config.modelType = *modelType;
  config.family = *family;
  FamilyDefaults defaults = defaultsFor(*family);

  // Sizes shared by every family.
  config.vocabSize = top.getPositive("vocab_size", defaults.vocabSize);
  config.hiddenSize = top.getPositive("hidden_size", defaults.hiddenSize);
  config.intermediateSize =
      top.getPositive("intermediate_size", defaults.intermediateSize);
  config.numLayers = top.getPositive("num_hidden_layers", defaults.numLayers);
  config.numHeads = top.getPositive("num_attention_heads", defaults.numHeads);
  // null (like absent where the default is None) means one kv head per head.
  std::optional<int64_t> kvHeads = top.optionalInt("num_key_value_heads");
  if (!top.raw("num_key_value_heads"))
    kvHeads = defaults.numKvHeads;
  config.numKvHeads = kvHeads.value_or(config.numHeads);
  if (config.numKvHeads <= 0 || config.numHeads % config.numKvHeads != 0)
    top.failField("num_key_value_heads",
                  formatv("is {0}, which must be positive and divide "
                          "num_attention_heads {1}",
                          config.numKvHeads, config.numHeads)
                      .str());
  config.maxPositionEmbeddings =
      top.getPositive("max_position_embeddings", defaults.maxPositions);
  config.rmsNormEps = top.getDouble("rms_norm_eps", defaults.rmsNormEps);
  if (!(config.rmsNormEps > 0))
    top.failField("rms_norm_eps", "must be positive");
  config.tieWordEmbeddings = top.getBool("tie_word_embeddings", false);

  std::string act = top.getString("hidden_act", "silu");
  if (act != "silu")
    top.failField("hidden_act",
                  "is '" + act + "'; moec supports only 'silu' (SwiGLU)");
  if (top.getBool("mlp_bias", false))
    top.failField("mlp_bias", "is true; MLP biases are not supported");

  // Token ids: absent means the family default, null means none.
  if (top.raw("bos_token_id"))
    config.bosTokenId = top.optionalInt("bos_token_id");
  else
    config.bosTokenId = defaults.bos;
  config.eosTokenIds = top.intOrIntList("eos_token_id", defaults.eos);
  config.padTokenId = top.optionalInt("pad_token_id");

  // 5.x writes `dtype`, 4.x `torch_dtype`.
  config.dtype = top.optionalString("dtype").value_or(
      top.optionalString("torch_dtype").value_or(""));

  // Head geometry and attention flavour.
  bool deepSeek = isDeepSeek(*family);
  if (!deepSeek) {
    std::optional<int64_t> headDim = top.optionalInt("head_dim");
    // Mixtral reads `head_dim or hidden // heads`, so 0 also derives it.
    if (headDim && *headDim == 0 && *family == ModelFamily::Mixtral)
      headDim.reset();
    if (headDim) {
      if (*headDim <= 0)
        top.failField("head_dim", "must be positive");
      config.headDim = *headDim;
    } else if (config.hiddenSize % config.numHeads != 0) {
      top.fail(formatv("hidden_size {0} is not a multiple of "
                       "num_attention_heads {1}, so head_dim cannot be derived",
                       config.hiddenSize, config.numHeads)
                   .str());
    } else {
      config.headDim = config.hiddenSize / config.numHeads;
    }
    if (config.headDim % 2)
      top.fail("head_dim " + Twine(config.headDim) + " must be even for RoPE");
    config.valueHeadDim = config.headDim;
    config.rope.dim = config.headDim;
  }

  switch (*family) {
  case ModelFamily::Llama:
  case ModelFamily::Qwen3Moe:
    // One flag for q, k, v and o.
    config.attentionBias = top.getBool("attention_bias", false);
    config.attentionOutputBias = config.attentionBias;
    break;
  case ModelFamily::Qwen2:
    config.attentionBias = true;
    break;
  case ModelFamily::Qwen2Moe:
    config.attentionBias = top.getBool("qkv_bias", true);
    break;
  default:
    break;
  }
  config.qkNorm = *family == ModelFamily::Qwen3Moe;

  if (deepSeek) {
    readDeepSeekAttention(top, config);
    readDeepSeekMoe(top, config);
    config.numNextnPredictLayers = top.getInt(
        "num_nextn_predict_layers", *family == ModelFamily::DeepSeekV3 ? 1 : 0);
    if (config.numNextnPredictLayers < 0)
      top.failField("num_nextn_predict_layers", "must not be negative");
  } else if (*family == ModelFamily::Mixtral) {
    readMixtralMoe(top, config);
  } else if (*family == ModelFamily::Qwen2Moe ||
             *family == ModelFamily::Qwen3Moe) {
    readQwenMoe(top, config);
  }
  if (config.moe && config.moe->topK > config.moe->numExperts)
    top.fail(formatv("num_experts_per_tok {0} exceeds the {1} experts",
                     config.moe->topK, config.moe->numExperts)
                 .str());
  rejectSlidingWindow(top, config);

  std::optional<double> mscaleAllDim;
  resolveRope(top, config, defaults.ropeTheta, mscaleAllDim);
  config.softmaxScale = 1.0 / std::sqrt(static_cast<double>(config.headDim));
  if (deepSeek && mscaleAllDim.value_or(0.0) != 0.0) {
    double m = yarnGetMscale(config.rope.factor.value_or(1.0), *mscaleAllDim);
    config.softmaxScale *= m * m;
  }

  readQuantization(top, config);
  return finish(std::move(config));
}

Expected<ModelConfig> ModelConfig::fromFile(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/true);
  if (!buffer)
    return createStringError(buffer.getError(),
                             path + ": " + buffer.getError().message());
  return fromJson((*buffer)->getBuffer(), path);
}

Expected<ModelConfig> ModelConfig::fromDirectory(StringRef directory) {
  SmallString<256> path(directory);
  sys::path::append(path, "config.json");
  return fromFile(path);
}

bool ModelConfig::isMoeLayer(int64_t layer) const {
  if (!moe || layer < 0 || layer >= numLayers)
    return false;
  return layer >= firstKDenseReplace && (layer + 1) % decoderSparseStep == 0 &&
         !is_contained(mlpOnlyLayers, layer);
}

//===----------------------------------------------------------------------===//
// Summary
//===----------------------------------------------------------------------===//

std::string ModelConfig::summary() const {
  std::string text;
  raw_string_ostream os(text);
  int64_t moeLayers = 0;
  for (int64_t layer = 0; layer < numLayers; ++layer)
    moeLayers += isMoeLayer(layer);

  os << "model: " << modelType << ", " << numLayers << " layers";
  if (moe)
    os << " (" << numLayers - moeLayers << " dense, " << moeLayers << " MoE)";
  os << ", hidden " << hiddenSize << ", vocab " << vocabSize;
  if (!dtype.empty())
    os << ", " << dtype;
  os << "\n";

  if (mla) {
    os << "attention: MLA, " << numHeads << " heads, q_lora_rank ";
    if (mla->qLoraRank)
      os << *mla->qLoraRank;
    else
      os << "none";
    os << ", kv_lora_rank " << mla->kvLoraRank << ", qk_nope "
       << mla->qkNopeHeadDim << ", qk_rope " << mla->qkRopeHeadDim << ", v "
       << mla->vHeadDim;
  } else {
    os << "attention: " << (numKvHeads == numHeads ? "MHA" : "GQA") << ", "
       << numHeads << " heads, " << numKvHeads << " kv heads, head_dim "
       << headDim;
    if (attentionBias)
      os << (attentionOutputBias ? ", qkvo bias" : ", qkv bias");
    if (qkNorm)
      os << ", qk norm";
  }
  os << formatv(", softmax scale {0:f6}\n", softmaxScale);

  os << "rope: " << ropeTypeName(rope.type) << ", theta "
     << formatNumber(rope.theta) << ", dim " << rope.dim
     << (rope.interleaved ? ", interleaved" : "");
  if (rope.factor)
    os << ", factor " << formatNumber(*rope.factor);
  if (rope.originalMaxPositions)
    os << ", original max positions " << *rope.originalMaxPositions;
  if (rope.type == RopeType::Yarn) {
    os << ", beta " << formatNumber(*rope.betaFast) << "/"
       << formatNumber(*rope.betaSlow);
    if (rope.mscale || rope.mscaleAllDim)
      os << ", mscale " << formatNumber(rope.mscale.value_or(0)) << "/"
         << formatNumber(rope.mscaleAllDim.value_or(0));
    if (!rope.truncate)
      os << ", untruncated";
  }
  if (rope.lowFreqFactor)
    os << ", low/high freq factor " << formatNumber(*rope.lowFreqFactor) << "/"
       << formatNumber(*rope.highFreqFactor);
  if (rope.attentionFactor != 1.0)
    os << formatv(", attention factor {0:f6}", rope.attentionFactor);
  os << "\n";

  if (!moe || moeLayers < numLayers)
    os << "dense mlp: SwiGLU, intermediate " << intermediateSize << "\n";
  if (moe) {
    os << "moe: " << moe->numExperts << " experts, top-" << moe->topK
       << ", intermediate " << moe->intermediateSize << ", "
       << scoringFuncName(moe->scoring) << " scoring, "
       << topKMethodName(moe->topKMethod);
    if (moe->topKMethod != TopKMethod::Greedy)
      os << " (" << moe->numGroups << " groups, top-" << moe->topKGroups
         << " groups)";
    os << (moe->normTopKProb ? ", normalized" : ", unnormalized");
    if (moe->routedScalingFactor != 1.0)
      os << ", routed scaling " << formatNumber(moe->routedScalingFactor);
    if (moe->scoreCorrectionBias)
      os << ", e_score_correction_bias";
    os << "\n";
    if (moe->sharedExperts == SharedExperts::DeepSeek)
      os << "shared experts: " << moe->numSharedExperts << " (one MLP of "
         << moe->sharedIntermediateSize << ")\n";
    else if (moe->sharedExperts == SharedExperts::QwenGated)
      os << "shared expert: intermediate " << moe->sharedIntermediateSize
         << ", sigmoid-gated\n";
    if (!mlpOnlyLayers.empty()) {
      os << "dense layers (mlp_only_layers):";
      for (int64_t layer : mlpOnlyLayers)
        os << " " << layer;
      os << "\n";
    }
  }
  if (numNextnPredictLayers)
    os << "mtp layers: " << numNextnPredictLayers << " (skipped)\n";

  os << "norm eps " << formatNumber(rmsNormEps) << ", tied embeddings "
     << (tieWordEmbeddings ? "yes" : "no") << ", max positions "
     << maxPositionEmbeddings << "\n";
  os << "tokens: bos ";
  if (bosTokenId)
    os << *bosTokenId;
  else
    os << "none";
  os << ", eos ";
  if (eosTokenIds.empty())
    os << "none";
  for (auto [i, id] : enumerate(eosTokenIds))
    os << (i ? "," : "") << id;
  if (padTokenId)
    os << ", pad " << *padTokenId;
  os << "\n";
  if (quantization)
    os << "quantization: fp8 e4m3, blocks [" << quantization->blockRows << ", "
       << quantization->blockCols << "], activations "
       << quantization->activationScheme << "\n";
  return text;
}

} // namespace moec
