//===- ModelConfigTest.cpp - config.json normalization --------------------===//
//
// Part of moec. The family tests use config.json files as published on the
// HuggingFace hub (DeepSeek-V3, DeepSeek-V2-Lite, Mixtral-8x7B-v0.1,
// Qwen1.5-MoE-A2.7B, Qwen3-30B-A3B, Meta-Llama-3-8B, Llama-3.1-8B-Instruct,
// Qwen2-0.5B), minus auto_map boilerplate.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/ModelConfig.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cmath>
#include <string>

using namespace llvm;
using namespace moec;

namespace {

constexpr const char *kDeepSeekV3 = R"({
  "architectures": ["DeepseekV3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001,
  "bos_token_id": 0,
  "eos_token_id": 1,
  "ep_size": 1,
  "first_k_dense_replace": 3,
  "hidden_act": "silu",
  "hidden_size": 7168,
  "initializer_range": 0.02,
  "intermediate_size": 18432,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v3",
  "moe_intermediate_size": 2048,
  "moe_layer_freq": 1,
  "n_group": 8,
  "n_routed_experts": 256,
  "n_shared_experts": 1,
  "norm_topk_prob": true,
  "num_attention_heads": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 61,
  "num_key_value_heads": 128,
  "num_nextn_predict_layers": 1,
  "pretraining_tp": 1,
  "q_lora_rank": 1536,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "quantization_config": {
    "activation_scheme": "dynamic",
    "fmt": "e4m3",
    "quant_method": "fp8",
    "weight_block_size": [128, 128]
  },
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 1.0,
    "mscale_all_dim": 1.0,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 2.5,
  "scoring_func": "sigmoid",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 4,
  "topk_method": "noaux_tc",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 129280
})";

constexpr const char *kDeepSeekV2Lite = R"({
  "architectures": ["DeepseekV2ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "aux_loss_alpha": 0.001,
  "bos_token_id": 100000,
  "eos_token_id": 100001,
  "first_k_dense_replace": 1,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 10944,
  "kv_lora_rank": 512,
  "max_position_embeddings": 163840,
  "model_type": "deepseek_v2",
  "moe_intermediate_size": 1408,
  "moe_layer_freq": 1,
  "n_group": 1,
  "n_routed_experts": 64,
  "n_shared_experts": 2,
  "norm_topk_prob": false,
  "num_attention_heads": 16,
  "num_experts_per_tok": 6,
  "num_hidden_layers": 27,
  "num_key_value_heads": 16,
  "pretraining_tp": 1,
  "q_lora_rank": null,
  "qk_nope_head_dim": 128,
  "qk_rope_head_dim": 64,
  "rms_norm_eps": 1e-06,
  "rope_scaling": {
    "beta_fast": 32,
    "beta_slow": 1,
    "factor": 40,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
    "original_max_position_embeddings": 4096,
    "type": "yarn"
  },
  "rope_theta": 10000,
  "routed_scaling_factor": 1.0,
  "scoring_func": "softmax",
  "seq_aux": true,
  "tie_word_embeddings": false,
  "topk_group": 1,
  "topk_method": "greedy",
  "torch_dtype": "bfloat16",
  "transformers_version": "4.33.1",
  "use_cache": true,
  "v_head_dim": 128,
  "vocab_size": 102400
})";

constexpr const char *kMixtral8x7B = R"({
  "architectures": ["MixtralForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 32768,
  "model_type": "mixtral",
  "num_attention_heads": 32,
  "num_experts_per_tok": 2,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "num_local_experts": 8,
  "output_router_logits": false,
  "rms_norm_eps": 1e-05,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.02,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.36.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
})";

constexpr const char *kQwen15MoeA27B = R"({
  "architectures": ["Qwen2MoeForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 5632,
  "max_position_embeddings": 8192,
  "max_window_layers": 21,
  "model_type": "qwen2_moe",
  "num_attention_heads": 16,
  "num_hidden_layers": 24,
  "num_key_value_heads": 16,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.39.0.dev0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936,
  "decoder_sparse_step": 1,
  "moe_intermediate_size": 1408,
  "shared_expert_intermediate_size": 5632,
  "num_experts_per_tok": 4,
  "num_experts": 60,
  "norm_topk_prob": false,
  "output_router_logits": false,
  "router_aux_loss_coef": 0.001
})";

constexpr const char *kQwen3_30B_A3B = R"({
  "architectures": ["Qwen3MoeForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "decoder_sparse_step": 1,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 6144,
  "max_position_embeddings": 40960,
  "max_window_layers": 48,
  "mlp_only_layers": [],
  "model_type": "qwen3_moe",
  "moe_intermediate_size": 768,
  "norm_topk_prob": true,
  "num_attention_heads": 32,
  "num_experts": 128,
  "num_experts_per_tok": 8,
  "num_hidden_layers": 48,
  "num_key_value_heads": 4,
  "output_router_logits": false,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000.0,
  "router_aux_loss_coef": 0.001,
  "sliding_window": null,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.51.0",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

constexpr const char *kLlama3_8B = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": 128001,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 8192,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr const char *kLlama31_8BInstruct = R"({
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3",
  "use_cache": true,
  "vocab_size": 128256
})";

constexpr const char *kQwen2_05B = R"({
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151643,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 131072,
  "max_window_layers": 24,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
})";

ModelConfig parseOrDie(StringRef json) {
  Expected<ModelConfig> config = ModelConfig::fromJson(json);
  if (!config) {
    ADD_FAILURE() << toString(config.takeError());
    return ModelConfig();
  }
  return std::move(*config);
}

std::string errorOf(StringRef json) {
  Expected<ModelConfig> config = ModelConfig::fromJson(json);
  if (config)
    return "<no error>";
  return toString(config.takeError());
}

// The same JSON with one top-level field replaced or added (`value` is raw
// JSON) — keeps the error tests anchored to real configs.
std::string withField(StringRef json, StringRef key, StringRef value) {
  std::string text = json.str();
  std::string needle = "\"" + key.str() + "\":";
  size_t at = text.find(needle);
  if (at == std::string::npos) {
    size_t brace = text.find('{');
    return text.substr(0, brace + 1) + "\"" + key.str() + "\": " + value.str() +
           ", " + text.substr(brace + 1);
  }
  size_t start = at + needle.size();
  // Replace up to the end of this value: a balanced {...} / [...] or up to
  // the next comma or closing brace.
  size_t end = start;
  while (text[end] == ' ')
    ++end;
  if (text[end] == '{' || text[end] == '[') {
    int depth = 0;
    for (; end < text.size(); ++end) {
      if (text[end] == '{' || text[end] == '[')
        ++depth;
      if ((text[end] == '}' || text[end] == ']') && --depth == 0) {
        ++end;
        break;
      }
    }
  } else {
    end = text.find_first_of(",}", end);
    while (text[end - 1] == '\n' || text[end - 1] == ' ')
      --end;
  }
  return text.substr(0, start) + " " + value.str() + text.substr(end);
}

double inverseSqrt(double x) { return 1.0 / std::sqrt(x); }

} // namespace

//===----------------------------------------------------------------------===//
// Published configs
//===----------------------------------------------------------------------===//

TEST(ModelConfig, DeepSeekV3) {
  ModelConfig c = parseOrDie(kDeepSeekV3);
  EXPECT_EQ(c.modelType, "deepseek_v3");
  EXPECT_EQ(c.family, ModelFamily::DeepSeekV3);
  EXPECT_EQ(c.hiddenSize, 7168);
  EXPECT_EQ(c.vocabSize, 129280);
  EXPECT_EQ(c.numLayers, 61);
  EXPECT_EQ(c.numHeads, 128);
  EXPECT_EQ(c.numKvHeads, 128);
  EXPECT_EQ(c.intermediateSize, 18432);
  EXPECT_EQ(c.rmsNormEps, 1e-6);
  EXPECT_FALSE(c.tieWordEmbeddings);
  EXPECT_FALSE(c.attentionBias);
  EXPECT_FALSE(c.qkNorm);

  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->qLoraRank, 1536);
  EXPECT_EQ(c.mla->kvLoraRank, 512);
  EXPECT_EQ(c.mla->qkNopeHeadDim, 128);
  EXPECT_EQ(c.mla->qkRopeHeadDim, 64);
  EXPECT_EQ(c.mla->vHeadDim, 128);
  EXPECT_EQ(c.headDim, 192);
  EXPECT_EQ(c.valueHeadDim, 128);
  EXPECT_EQ(c.kvCacheHeads(), 128);
  EXPECT_EQ(c.kvCacheKeyDim(), 192);
  EXPECT_EQ(c.kvCacheValueDim(), 128);

  EXPECT_EQ(c.rope.type, RopeType::Yarn);
  EXPECT_EQ(c.rope.theta, 10000.0);
  EXPECT_EQ(c.rope.dim, 64);
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_EQ(c.rope.factor, 40.0);
  EXPECT_EQ(c.rope.originalMaxPositions, 4096);
  EXPECT_EQ(c.rope.betaFast, 32.0);
  EXPECT_EQ(c.rope.betaSlow, 1.0);
  EXPECT_EQ(c.rope.mscale, 1.0);
  EXPECT_EQ(c.rope.mscaleAllDim, 1.0);
  EXPECT_TRUE(c.rope.truncate);
  EXPECT_EQ(c.rope.attentionFactor, 1.0); // mscale == mscale_all_dim
  // 192^-0.5 * (0.1 * ln 40 + 1)^2
  EXPECT_NEAR(c.softmaxScale, 0.1352337788608801, 1e-15);

  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->numExperts, 256);
  EXPECT_EQ(c.moe->topK, 8);
  EXPECT_EQ(c.moe->intermediateSize, 2048);
  EXPECT_EQ(c.moe->scoring, ScoringFunc::Sigmoid);
  EXPECT_EQ(c.moe->topKMethod, TopKMethod::NoAuxTc);
  EXPECT_EQ(c.moe->numGroups, 8);
  EXPECT_EQ(c.moe->topKGroups, 4);
  EXPECT_TRUE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->routedScalingFactor, 2.5);
  EXPECT_TRUE(c.moe->scoreCorrectionBias);
  EXPECT_EQ(c.moe->sharedExperts, SharedExperts::DeepSeek);
  EXPECT_EQ(c.moe->numSharedExperts, 1);
  EXPECT_EQ(c.moe->sharedIntermediateSize, 2048);
  EXPECT_EQ(c.expertNaming, ExpertNaming::Standard);
  EXPECT_FALSE(c.isMoeLayer(0));
  EXPECT_FALSE(c.isMoeLayer(2));
  EXPECT_TRUE(c.isMoeLayer(3));
  EXPECT_TRUE(c.isMoeLayer(60));
  EXPECT_FALSE(c.isMoeLayer(61)); // the MTP layer is not a decoder layer
  EXPECT_EQ(c.numNextnPredictLayers, 1);

  EXPECT_EQ(c.bosTokenId, 0);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{1});
  EXPECT_EQ(c.padTokenId, std::nullopt);
  EXPECT_EQ(c.maxPositionEmbeddings, 163840);
  EXPECT_EQ(c.dtype, "bfloat16");
  ASSERT_TRUE(c.quantization.has_value());
  EXPECT_EQ(c.quantization->blockRows, 128);
  EXPECT_EQ(c.quantization->blockCols, 128);
  EXPECT_EQ(c.quantization->activationScheme, "dynamic");

  std::string summary = c.summary();
  for (StringRef part :
       {"deepseek_v3, 61 layers (3 dense, 58 MoE)", "attention: MLA, 128 heads",
        "q_lora_rank 1536", "softmax scale 0.135234",
        "rope: yarn, theta 10000, dim 64, interleaved, factor 40",
        "original max positions 4096", "beta 32/1", "mscale 1/1",
        "dense mlp: SwiGLU, intermediate 18432",
        "moe: 256 experts, top-8, intermediate 2048, sigmoid scoring, "
        "noaux_tc (8 groups, top-4 groups), normalized, routed scaling 2.5, "
        "e_score_correction_bias",
        "shared experts: 1 (one MLP of 2048)", "mtp layers: 1",
        "tokens: bos 0, eos 1",
        "quantization: fp8 e4m3, blocks [128, 128], activations dynamic"})
    EXPECT_TRUE(StringRef(summary).contains(part))
        << "missing '" << part.str() << "' in:\n"
        << summary;
}

TEST(ModelConfig, DeepSeekV2Lite) {
  ModelConfig c = parseOrDie(kDeepSeekV2Lite);
  EXPECT_EQ(c.family, ModelFamily::DeepSeekV2);
  EXPECT_EQ(c.hiddenSize, 2048);
  EXPECT_EQ(c.numLayers, 27);
  EXPECT_EQ(c.intermediateSize, 10944);
  ASSERT_TRUE(c.mla.has_value());
  EXPECT_EQ(c.mla->qLoraRank, std::nullopt); // "q_lora_rank": null
  EXPECT_EQ(c.mla->kvLoraRank, 512);
  EXPECT_EQ(c.headDim, 192);
  // V2 always rotates adjacent pairs (complex multiplication).
  EXPECT_TRUE(c.rope.interleaved);
  EXPECT_EQ(c.rope.type, RopeType::Yarn);
  EXPECT_EQ(c.rope.mscale, 0.707);
  EXPECT_EQ(c.rope.attentionFactor, 1.0);
  // 192^-0.5 * (0.1 * 0.707 * ln 40 + 1)^2: transformers 5 applies it to V2
  // too (4.x did not).
  EXPECT_NEAR(c.softmaxScale, 0.1147213867929261, 1e-15);

  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->numExperts, 64);
  EXPECT_EQ(c.moe->topK, 6);
  EXPECT_EQ(c.moe->intermediateSize, 1408);
  EXPECT_EQ(c.moe->scoring, ScoringFunc::Softmax);
  EXPECT_EQ(c.moe->topKMethod, TopKMethod::Greedy);
  EXPECT_FALSE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->routedScalingFactor, 1.0);
  EXPECT_FALSE(c.moe->scoreCorrectionBias);
  EXPECT_EQ(c.moe->sharedExperts, SharedExperts::DeepSeek);
  EXPECT_EQ(c.moe->numSharedExperts, 2);
  EXPECT_EQ(c.moe->sharedIntermediateSize, 2816);
  EXPECT_FALSE(c.isMoeLayer(0));
  EXPECT_TRUE(c.isMoeLayer(1));
  EXPECT_TRUE(c.isMoeLayer(26));
  EXPECT_EQ(c.numNextnPredictLayers, 0);
  EXPECT_EQ(c.bosTokenId, 100000);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{100001});
  EXPECT_FALSE(c.quantization.has_value());
  EXPECT_TRUE(StringRef(c.summary()).contains("q_lora_rank none"));
}

TEST(ModelConfig, DeepSeekV2GroupLimitedGreedy) {
  // DeepSeek-V2 (236B) routing: 160 experts in 8 groups, top-3 groups.
  std::string json =
      withField(kDeepSeekV2Lite, "topk_method", "\"group_limited_greedy\"");
  json = withField(json, "n_group", "8");
  json = withField(json, "topk_group", "3");
  json = withField(json, "n_routed_experts", "160");
  json = withField(json, "routed_scaling_factor", "16.0");
  ModelConfig c = parseOrDie(json);
  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->topKMethod, TopKMethod::GroupLimitedGreedy);
  EXPECT_EQ(c.moe->numGroups, 8);
  EXPECT_EQ(c.moe->topKGroups, 3);
  EXPECT_EQ(c.moe->routedScalingFactor, 16.0);

  EXPECT_EQ(errorOf(withField(kDeepSeekV2Lite, "topk_method",
                              "\"group_limited_greedy\"")),
            "<no error>"); // n_group 1 / topk_group 1 from the file
  std::string noGroups =
      withField(kDeepSeekV2Lite, "topk_method", "\"group_limited_greedy\"");
  noGroups = withField(noGroups, "n_group", "null");
  EXPECT_EQ(errorOf(noGroups), "config.json: missing required field 'n_group' "
                               "(group_limited_greedy needs expert groups)");
  std::string badGroups = withField(json, "n_group", "7");
  EXPECT_EQ(errorOf(badGroups),
            "config.json: n_group 7 must divide n_routed_experts 160");
}

TEST(ModelConfig, Mixtral8x7B) {
  ModelConfig c = parseOrDie(kMixtral8x7B);
  EXPECT_EQ(c.family, ModelFamily::Mixtral);
  EXPECT_EQ(c.numHeads, 32);
  EXPECT_EQ(c.numKvHeads, 8);
  EXPECT_EQ(c.headDim, 128);
  EXPECT_EQ(c.valueHeadDim, 128);
  EXPECT_EQ(c.kvCacheHeads(), 8);
  EXPECT_FALSE(c.mla.has_value());
  EXPECT_FALSE(c.attentionBias);
  EXPECT_FALSE(c.attentionOutputBias);
  EXPECT_EQ(c.rmsNormEps, 1e-5);
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.rope.theta, 1e6);
  EXPECT_EQ(c.rope.dim, 128);
  EXPECT_FALSE(c.rope.interleaved);
  EXPECT_DOUBLE_EQ(c.softmaxScale, inverseSqrt(128));
  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->numExperts, 8);
  EXPECT_EQ(c.moe->topK, 2);
  EXPECT_EQ(c.moe->intermediateSize, 14336);
  EXPECT_EQ(c.moe->scoring, ScoringFunc::Softmax);
  EXPECT_EQ(c.moe->topKMethod, TopKMethod::Greedy);
  EXPECT_TRUE(c.moe->normTopKProb); // MixtralTopKRouter always renormalizes
  EXPECT_EQ(c.moe->sharedExperts, SharedExperts::None);
  EXPECT_EQ(c.expertNaming, ExpertNaming::Mixtral);
  for (int64_t layer = 0; layer < 32; ++layer)
    EXPECT_TRUE(c.isMoeLayer(layer)) << layer;
  EXPECT_EQ(c.maxPositionEmbeddings, 32768);
  EXPECT_EQ(c.bosTokenId, 1);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{2});
}

TEST(ModelConfig, Qwen15MoeA27B) {
  ModelConfig c = parseOrDie(kQwen15MoeA27B);
  EXPECT_EQ(c.family, ModelFamily::Qwen2Moe);
  EXPECT_EQ(c.headDim, 128);
  EXPECT_EQ(c.numKvHeads, 16);
  EXPECT_TRUE(c.attentionBias); // qkv_bias defaults to true
  EXPECT_FALSE(c.attentionOutputBias);
  EXPECT_FALSE(c.qkNorm);
  EXPECT_EQ(c.rope.theta, 1e6);
  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->numExperts, 60);
  EXPECT_EQ(c.moe->topK, 4);
  EXPECT_EQ(c.moe->intermediateSize, 1408);
  EXPECT_FALSE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->routedScalingFactor, 1.0);
  EXPECT_EQ(c.moe->sharedExperts, SharedExperts::QwenGated);
  EXPECT_EQ(c.moe->numSharedExperts, 1);
  EXPECT_EQ(c.moe->sharedIntermediateSize, 5632);
  EXPECT_EQ(c.expertNaming, ExpertNaming::Standard);
  EXPECT_TRUE(c.isMoeLayer(0));
  EXPECT_TRUE(c.isMoeLayer(23));
  EXPECT_EQ(c.maxPositionEmbeddings, 8192);
  EXPECT_EQ(c.bosTokenId, 151643);
  EXPECT_TRUE(StringRef(c.summary())
                  .contains("shared expert: intermediate 5632, sigmoid-gated"));

  // The qwen2_moe layer pattern: MoE iff (l + 1) % step == 0 and l is not
  // listed in mlp_only_layers.
  std::string json = withField(kQwen15MoeA27B, "decoder_sparse_step", "2");
  json = withField(json, "mlp_only_layers", "[3]");
  ModelConfig sparse = parseOrDie(json);
  std::vector<int64_t> moeLayers;
  for (int64_t layer = 0; layer < sparse.numLayers; ++layer)
    if (sparse.isMoeLayer(layer))
      moeLayers.push_back(layer);
  EXPECT_EQ(moeLayers,
            (std::vector<int64_t>{1, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23}));
  // No experts at all: transformers builds dense MLPs only.
  ModelConfig dense = parseOrDie(withField(kQwen15MoeA27B, "num_experts", "0"));
  EXPECT_FALSE(dense.moe.has_value());
  EXPECT_FALSE(dense.isMoeLayer(0));
}

TEST(ModelConfig, Qwen3_30B_A3B) {
  ModelConfig c = parseOrDie(kQwen3_30B_A3B);
  EXPECT_EQ(c.family, ModelFamily::Qwen3Moe);
  // head_dim is explicit and differs from hidden_size / heads (64).
  EXPECT_EQ(c.headDim, 128);
  EXPECT_EQ(c.rope.dim, 128);
  EXPECT_DOUBLE_EQ(c.softmaxScale, inverseSqrt(128));
  EXPECT_EQ(c.numHeads, 32);
  EXPECT_EQ(c.numKvHeads, 4);
  EXPECT_TRUE(c.qkNorm);
  EXPECT_FALSE(c.attentionBias);
  EXPECT_FALSE(c.attentionOutputBias);
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.rope.theta, 1e6);
  ASSERT_TRUE(c.moe.has_value());
  EXPECT_EQ(c.moe->numExperts, 128);
  EXPECT_EQ(c.moe->topK, 8);
  EXPECT_EQ(c.moe->intermediateSize, 768);
  EXPECT_TRUE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->sharedExperts, SharedExperts::None);
  EXPECT_TRUE(c.isMoeLayer(0));
  EXPECT_TRUE(c.isMoeLayer(47));
  EXPECT_EQ(c.bosTokenId, 151643);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{151645});
  EXPECT_EQ(c.maxPositionEmbeddings, 40960);
}

TEST(ModelConfig, Llama3_8B) {
  ModelConfig c = parseOrDie(kLlama3_8B);
  EXPECT_EQ(c.family, ModelFamily::Llama);
  EXPECT_FALSE(c.moe.has_value());
  EXPECT_FALSE(c.mla.has_value());
  for (int64_t layer = 0; layer < 32; ++layer)
    EXPECT_FALSE(c.isMoeLayer(layer));
  EXPECT_EQ(c.vocabSize, 128256);
  EXPECT_EQ(c.intermediateSize, 14336);
  EXPECT_EQ(c.numKvHeads, 8);
  EXPECT_EQ(c.headDim, 128);
  EXPECT_EQ(c.rope.theta, 500000.0);
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.rmsNormEps, 1e-5);
  EXPECT_EQ(c.bosTokenId, 128000);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{128001});
  EXPECT_FALSE(c.attentionBias);
  std::string summary = c.summary();
  EXPECT_TRUE(StringRef(summary).contains("attention: GQA, 32 heads, 8 kv "
                                          "heads, head_dim 128"))
      << summary;
  EXPECT_FALSE(StringRef(summary).contains("moe:")) << summary;

  ModelConfig biased =
      parseOrDie(withField(kLlama3_8B, "attention_bias", "true"));
  EXPECT_TRUE(biased.attentionBias);
  EXPECT_TRUE(biased.attentionOutputBias); // llama: q, k, v and o
}

TEST(ModelConfig, Llama31Llama3Rope) {
  ModelConfig c = parseOrDie(kLlama31_8BInstruct);
  EXPECT_EQ(c.rope.type, RopeType::Llama3);
  EXPECT_EQ(c.rope.factor, 8.0);
  EXPECT_EQ(c.rope.lowFreqFactor, 1.0);
  EXPECT_EQ(c.rope.highFreqFactor, 4.0);
  EXPECT_EQ(c.rope.originalMaxPositions, 8192);
  EXPECT_EQ(c.rope.attentionFactor, 1.0);
  EXPECT_EQ(c.eosTokenIds, (std::vector<int64_t>{128001, 128008, 128009}));
  EXPECT_EQ(c.maxPositionEmbeddings, 131072);
}

TEST(ModelConfig, Qwen2Dense) {
  ModelConfig c = parseOrDie(kQwen2_05B);
  EXPECT_EQ(c.family, ModelFamily::Qwen2);
  EXPECT_FALSE(c.moe.has_value());
  EXPECT_TRUE(c.tieWordEmbeddings);
  EXPECT_TRUE(c.attentionBias); // always on q/k/v
  EXPECT_FALSE(c.attentionOutputBias);
  EXPECT_EQ(c.numHeads, 14);
  EXPECT_EQ(c.numKvHeads, 2);
  EXPECT_EQ(c.headDim, 64);
  // A sliding window that no layer uses is fine.
  EXPECT_EQ(errorOf(withField(kQwen2_05B, "use_sliding_window", "true")),
            "<no error>"); // max_window_layers 24 == num_hidden_layers
  EXPECT_EQ(
      errorOf(withField(withField(kQwen2_05B, "use_sliding_window", "true"),
                        "max_window_layers", "12")),
      "config.json: field 'use_sliding_window' is true; sliding-window "
      "attention is not supported");
  // transformers 5 writes layer_types; full attention everywhere is fine.
  EXPECT_EQ(errorOf(withField(kQwen2_05B, "layer_types",
                              "[\"full_attention\", \"full_attention\"]")),
            "<no error>");
  EXPECT_EQ(errorOf(withField(kQwen2_05B, "layer_types",
                              "[\"full_attention\", \"sliding_attention\"]")),
            "config.json: field 'layer_types' names a layer type other than "
            "'full_attention', which is not supported");
}

//===----------------------------------------------------------------------===//
// transformers defaults for absent fields
//===----------------------------------------------------------------------===//

TEST(ModelConfig, DeepSeekV3Defaults) {
  ModelConfig c = parseOrDie(R"({"model_type": "deepseek_v3"})");
  EXPECT_EQ(c.vocabSize, 129280);
  EXPECT_EQ(c.hiddenSize, 7168);
  EXPECT_EQ(c.intermediateSize, 18432);
  EXPECT_EQ(c.numLayers, 61);
  EXPECT_EQ(c.numHeads, 128);
  EXPECT_EQ(c.numKvHeads, 128);
  EXPECT_EQ(c.maxPositionEmbeddings, 4096);
  EXPECT_EQ(c.mla->qLoraRank, 1536);
  EXPECT_EQ(c.mla->kvLoraRank, 512);
  EXPECT_EQ(c.moe->numExperts, 256);
  EXPECT_EQ(c.moe->topK, 8);
  EXPECT_EQ(c.moe->numGroups, 8);
  EXPECT_EQ(c.moe->topKGroups, 4);
  EXPECT_TRUE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->routedScalingFactor, 2.5);
  EXPECT_EQ(c.firstKDenseReplace, 3);
  EXPECT_TRUE(c.rope.interleaved); // rope_interleave defaults to true
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.rope.theta, 10000.0);
  EXPECT_DOUBLE_EQ(c.softmaxScale, inverseSqrt(192)); // no yarn, no mscale
  EXPECT_EQ(c.numNextnPredictLayers, 1);
  EXPECT_EQ(c.bosTokenId, 0);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{1});
  EXPECT_EQ(c.rmsNormEps, 1e-6);
  EXPECT_FALSE(c.tieWordEmbeddings);
  EXPECT_TRUE(c.dtype.empty());

  ModelConfig plain =
      parseOrDie(R"({"model_type": "deepseek_v3", "rope_interleave": false})");
  EXPECT_FALSE(plain.rope.interleaved);
}

TEST(ModelConfig, DeepSeekV2Defaults) {
  ModelConfig c =
      parseOrDie(R"({"model_type": "deepseek_v2", "num_experts_per_tok": 6})");
  EXPECT_EQ(c.vocabSize, 102400);
  EXPECT_EQ(c.hiddenSize, 4096);
  EXPECT_EQ(c.numLayers, 32);
  EXPECT_EQ(c.numHeads, 32);
  EXPECT_EQ(c.numKvHeads, 32); // None -> num_attention_heads
  EXPECT_EQ(c.maxPositionEmbeddings, 2048);
  EXPECT_EQ(c.mla->qLoraRank, 1536);
  EXPECT_EQ(c.moe->numExperts, 64);
  EXPECT_EQ(c.moe->intermediateSize, 1407);
  EXPECT_EQ(c.moe->sharedIntermediateSize, 2 * 1407);
  EXPECT_EQ(c.moe->topKMethod, TopKMethod::Greedy);
  EXPECT_FALSE(c.moe->normTopKProb);
  EXPECT_EQ(c.moe->routedScalingFactor, 1.0);
  EXPECT_EQ(c.firstKDenseReplace, 0);
  EXPECT_TRUE(c.isMoeLayer(0));
  EXPECT_EQ(c.numNextnPredictLayers, 0);
  EXPECT_EQ(c.bosTokenId, 1);
  EXPECT_EQ(c.eosTokenIds, std::vector<int64_t>{2});
  EXPECT_EQ(c.rope.theta, 10000.0);
  // num_experts_per_tok has no default (None) in DeepseekV2Config.
  EXPECT_EQ(errorOf(R"({"model_type": "deepseek_v2"})"),
            "config.json: missing required field 'num_experts_per_tok' "
            "(deepseek_v2 has no default)");
}

TEST(ModelConfig, OtherFamilyDefaults) {
  ModelConfig mixtral = parseOrDie(R"({"model_type": "mixtral"})");
  EXPECT_EQ(mixtral.rope.theta, 1e6); // MixtralConfig.default_theta
  EXPECT_EQ(mixtral.numKvHeads, 8);
  EXPECT_EQ(mixtral.maxPositionEmbeddings, 131072);
  EXPECT_EQ(mixtral.rmsNormEps, 1e-5);
  EXPECT_EQ(mixtral.moe->numExperts, 8);
  EXPECT_EQ(mixtral.moe->topK, 2);
  EXPECT_EQ(mixtral.moe->intermediateSize, 14336);
  EXPECT_EQ(mixtral.bosTokenId, 1);

  ModelConfig qwen2Moe = parseOrDie(R"({"model_type": "qwen2_moe"})");
  EXPECT_EQ(qwen2Moe.moe->numExperts, 60);
  EXPECT_EQ(qwen2Moe.moe->topK, 4);
  EXPECT_EQ(qwen2Moe.moe->intermediateSize, 1408);
  EXPECT_EQ(qwen2Moe.moe->sharedIntermediateSize, 5632);
  EXPECT_TRUE(qwen2Moe.attentionBias);
  EXPECT_EQ(qwen2Moe.rope.theta, 10000.0);
  EXPECT_EQ(qwen2Moe.bosTokenId, std::nullopt);
  EXPECT_TRUE(qwen2Moe.eosTokenIds.empty());
  EXPECT_FALSE(parseOrDie(R"({"model_type": "qwen2_moe", "qkv_bias": false})")
                   .attentionBias);

  ModelConfig qwen3Moe = parseOrDie(R"({"model_type": "qwen3_moe"})");
  EXPECT_EQ(qwen3Moe.numHeads, 32);
  EXPECT_EQ(qwen3Moe.numKvHeads, 4);
  EXPECT_EQ(qwen3Moe.headDim, 64); // 2048 / 32 without head_dim
  EXPECT_EQ(qwen3Moe.moe->numExperts, 128);
  EXPECT_EQ(qwen3Moe.moe->topK, 8);
  EXPECT_EQ(qwen3Moe.moe->intermediateSize, 768);
  EXPECT_FALSE(qwen3Moe.moe->normTopKProb);
  EXPECT_EQ(parseOrDie(R"({"model_type": "qwen3_moe",
                           "num_local_experts": 16})")
                .moe->numExperts,
            16); // attribute_map alias

  ModelConfig llama = parseOrDie(R"({"model_type": "llama"})");
  EXPECT_EQ(llama.numKvHeads, 32);
  EXPECT_EQ(llama.headDim, 128);
  EXPECT_EQ(llama.maxPositionEmbeddings, 2048);
  EXPECT_EQ(llama.vocabSize, 32000);
  EXPECT_EQ(llama.intermediateSize, 11008);
  EXPECT_EQ(parseOrDie(R"({"model_type": "llama", "head_dim": null})").headDim,
            128);
  EXPECT_EQ(parseOrDie(R"({"model_type": "llama", "num_key_value_heads":
                           null})")
                .numKvHeads,
            32);

  ModelConfig qwen2 = parseOrDie(R"({"model_type": "qwen2"})");
  EXPECT_EQ(qwen2.numKvHeads, 32);
  EXPECT_EQ(qwen2.intermediateSize, 22016);
  EXPECT_TRUE(qwen2.attentionBias);
}

//===----------------------------------------------------------------------===//
// RoPE: 4.x and 5.x spellings
//===----------------------------------------------------------------------===//

namespace {
void expectSameRope(const ModelConfig &a, const ModelConfig &b) {
  EXPECT_EQ(a.rope.type, b.rope.type);
  EXPECT_EQ(a.rope.theta, b.rope.theta);
  EXPECT_EQ(a.rope.dim, b.rope.dim);
  EXPECT_EQ(a.rope.interleaved, b.rope.interleaved);
  EXPECT_EQ(a.rope.factor, b.rope.factor);
  EXPECT_EQ(a.rope.originalMaxPositions, b.rope.originalMaxPositions);
  EXPECT_EQ(a.rope.betaFast, b.rope.betaFast);
  EXPECT_EQ(a.rope.betaSlow, b.rope.betaSlow);
  EXPECT_EQ(a.rope.mscale, b.rope.mscale);
  EXPECT_EQ(a.rope.mscaleAllDim, b.rope.mscaleAllDim);
  EXPECT_EQ(a.rope.lowFreqFactor, b.rope.lowFreqFactor);
  EXPECT_EQ(a.rope.highFreqFactor, b.rope.highFreqFactor);
  EXPECT_EQ(a.rope.attentionFactor, b.rope.attentionFactor);
  EXPECT_EQ(a.softmaxScale, b.softmaxScale);
}
} // namespace

TEST(ModelConfig, Transformers5RopeParametersMatch4x) {
  // DeepSeek-V3 as transformers 5 saves it: one rope_parameters dict.
  std::string v5 = withField(kDeepSeekV3, "rope_scaling", "null");
  v5 = withField(v5, "rope_theta", "null");
  v5 = withField(v5, "rope_parameters", R"({
    "beta_fast": 32.0, "beta_slow": 1.0, "factor": 40.0, "mscale": 1.0,
    "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096,
    "rope_theta": 10000.0, "rope_type": "yarn"})");
  // A null top-level rope_theta is never read when the dict has one.
  ModelConfig fromV5 = parseOrDie(v5);
  ModelConfig fromV4 = parseOrDie(kDeepSeekV3);
  EXPECT_EQ(fromV5.rope.type, RopeType::Yarn);
  expectSameRope(fromV4, fromV5);

  std::string llamaV5 = withField(kLlama31_8BInstruct, "rope_scaling", "null");
  llamaV5 = withField(llamaV5, "rope_theta", "null");
  llamaV5 = withField(llamaV5, "rope_parameters", R"({
    "factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192, "rope_theta": 500000.0,
    "rope_type": "llama3"})");
  expectSameRope(parseOrDie(kLlama31_8BInstruct), parseOrDie(llamaV5));

  std::string qwenV5 = withField(kQwen3_30B_A3B, "rope_scaling", "null");
  qwenV5 = withField(qwenV5, "rope_theta", "null");
  qwenV5 = withField(qwenV5, "rope_parameters",
                     R"({"rope_theta": 1000000.0, "rope_type": "default"})");
  expectSameRope(parseOrDie(kQwen3_30B_A3B), parseOrDie(qwenV5));
  EXPECT_EQ(parseOrDie(qwenV5).rope.theta, 1e6);
}

TEST(ModelConfig, Transformers5SavedDeepSeekFields) {
  // transformers 5 saves head_dim = qk_rope_head_dim and qk_head_dim for
  // DeepSeek, and `dtype` instead of `torch_dtype`; none of that changes
  // the MLA geometry.
  std::string json = withField(kDeepSeekV3, "head_dim", "64");
  json = withField(json, "qk_head_dim", "192");
  json = withField(json, "dtype", "\"float32\"");
  ModelConfig c = parseOrDie(json);
  EXPECT_EQ(c.headDim, 192);
  EXPECT_EQ(c.rope.dim, 64);
  EXPECT_EQ(c.dtype, "float32"); // `dtype` wins over `torch_dtype`
  EXPECT_NEAR(c.softmaxScale, 0.1352337788608801, 1e-15);
}

TEST(ModelConfig, RopePrecedenceAndDefaults) {
  // A non-empty rope_scaling wins over rope_parameters...
  ModelConfig c = parseOrDie(R"({"model_type": "llama",
      "rope_scaling": {"rope_type": "linear", "factor": 2.0},
      "rope_parameters": {"rope_type": "default", "rope_theta": 7.0}})");
  EXPECT_EQ(c.rope.type, RopeType::Linear);
  EXPECT_EQ(c.rope.factor, 2.0);
  EXPECT_EQ(c.rope.theta, 10000.0);
  // ...an empty one does not.
  c = parseOrDie(R"({"model_type": "llama", "rope_scaling": {},
      "rope_parameters": {"rope_type": "default", "rope_theta": 7.0}})");
  EXPECT_EQ(c.rope.type, RopeType::Default);
  EXPECT_EQ(c.rope.theta, 7.0);
  // rope_theta inside the dict wins over the top-level field.
  c = parseOrDie(R"({"model_type": "llama", "rope_theta": 5.0,
      "rope_parameters": {"rope_type": "default", "rope_theta": 7.0}})");
  EXPECT_EQ(c.rope.theta, 7.0);
  c = parseOrDie(R"({"model_type": "llama", "rope_theta": 5.0,
      "rope_parameters": {"rope_type": "default"}})");
  EXPECT_EQ(c.rope.theta, 5.0);

  // yarn without original_max_position_embeddings: max_position_embeddings.
  c = parseOrDie(R"({"model_type": "qwen3_moe", "max_position_embeddings":
      32768, "rope_scaling": {"rope_type": "yarn", "factor": 4.0}})");
  EXPECT_EQ(c.rope.type, RopeType::Yarn);
  EXPECT_EQ(c.rope.originalMaxPositions, 32768);
  EXPECT_EQ(c.rope.betaFast, 32.0);
  EXPECT_EQ(c.rope.betaSlow, 1.0);
  EXPECT_EQ(c.rope.mscale, std::nullopt);
  // attention factor 0.1 * ln(4) + 1; no DeepSeek softmax correction.
  EXPECT_NEAR(c.rope.attentionFactor, 1.138629436111989, 1e-15);
  EXPECT_DOUBLE_EQ(c.softmaxScale, inverseSqrt(64));
  // A top-level original_max_position_embeddings overrides the dict's.
  c = parseOrDie(R"({"model_type": "qwen3_moe",
      "original_max_position_embeddings": 2048, "rope_scaling":
      {"type": "yarn", "factor": 4.0, "original_max_position_embeddings":
      4096, "beta_fast": 0, "attention_factor": 1.25, "truncate": false}})");
  EXPECT_EQ(c.rope.originalMaxPositions, 2048);
  EXPECT_EQ(c.rope.betaFast, 32.0); // read with `or 32`
  EXPECT_EQ(c.rope.attentionFactor, 1.25);
  EXPECT_FALSE(c.rope.truncate);
  // Distinct mscales: the cos/sin factor is their ratio.
  c = parseOrDie(R"({"model_type": "deepseek_v3", "rope_scaling":
      {"type": "yarn", "factor": 40, "mscale": 1.0, "mscale_all_dim": 0.707,
       "original_max_position_embeddings": 4096}})");
  EXPECT_NEAR(c.rope.attentionFactor, 1.0857263992561355, 1e-15);
  EXPECT_NEAR(c.softmaxScale, 0.1147213867929261, 1e-15);
}

//===----------------------------------------------------------------------===//
// Errors
//===----------------------------------------------------------------------===//

TEST(ModelConfig, RejectsBadInput) {
  EXPECT_EQ(errorOf(R"({"model_type": "gpt2"})"),
            "config.json: field 'model_type' is 'gpt2', which moec does not "
            "support (supported: deepseek_v2, deepseek_v3, mixtral, "
            "qwen2_moe, qwen3_moe, llama, qwen2)");
  EXPECT_EQ(errorOf(R"({"hidden_size": 8})"),
            "config.json: missing required field 'model_type'");
  EXPECT_TRUE(StringRef(errorOf("{\"model_type\": "))
                  .starts_with("config.json: invalid JSON: "));
  EXPECT_EQ(errorOf("[]"), "config.json: the top level is not a JSON object");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "hidden_act", "\"gelu\"")),
            "config.json: field 'hidden_act' is 'gelu'; moec supports only "
            "'silu' (SwiGLU)");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "hidden_size", "\"big\"")),
            "config.json: field 'hidden_size' must be an integer, got a "
            "string");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "hidden_size", "null")),
            "config.json: field 'hidden_size' must be an integer, got null");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "num_hidden_layers", "0")),
            "config.json: field 'num_hidden_layers' must be positive, got 0");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "num_key_value_heads", "5")),
            "config.json: field 'num_key_value_heads' is 5, which must be "
            "positive and divide num_attention_heads 32");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "tie_word_embeddings", "1")),
            "config.json: field 'tie_word_embeddings' must be true or false, "
            "got a number");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "mlp_bias", "true")),
            "config.json: field 'mlp_bias' is true; MLP biases are not "
            "supported");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "eos_token_id", "\"</s>\"")),
            "config.json: field 'eos_token_id' must be an integer or a list "
            "of integers, got a string");

  // RoPE.
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "rope_scaling",
                              R"({"type": "dynamic", "factor": 2.0})")),
            "config.json: rope type 'dynamic' (rope_scaling.rope_type) is not "
            "supported (moec supports default, linear, yarn, llama3)");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "rope_scaling",
                              R"({"rope_type": "yarn"})")),
            "config.json: missing required field 'rope_scaling.factor' for "
            "rope type 'yarn'");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "rope_scaling",
                              R"({"rope_type": "llama3", "factor": 8.0,
                                  "high_freq_factor": 4.0})")),
            "config.json: missing required field "
            "'rope_scaling.low_freq_factor' for rope type 'llama3'");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "rope_scaling",
                              R"({"rope_type": "linear", "factor": "x"})")),
            "config.json: field 'rope_scaling.factor' must be a number, got a "
            "string");
  EXPECT_EQ(errorOf(withField(kLlama3_8B, "partial_rotary_factor", "0.5")),
            "config.json: partial_rotary_factor 0.5 is not supported (moec "
            "rotates whole heads)");

  // DeepSeek routing.
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "scoring_func", "\"softmax\"")),
            "config.json: field 'scoring_func' is 'softmax', but deepseek_v3 "
            "routers always score with sigmoid");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "topk_method", "\"greedy\"")),
            "config.json: field 'topk_method' is 'greedy', but deepseek_v3 "
            "routers always select with noaux_tc");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "n_group", "null")),
            "config.json: field 'n_group' must be an integer, got null");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "topk_group", "9")),
            "config.json: topk_group 9 must be in [1, n_group 8]");
  EXPECT_EQ(errorOf(withField(kDeepSeekV2Lite, "topk_method", "\"noaux_tc\"")),
            "config.json: field 'topk_method' is 'noaux_tc', but deepseek_v2 "
            "supports only 'greedy' and 'group_limited_greedy'");
  EXPECT_EQ(errorOf(withField(kDeepSeekV2Lite, "scoring_func", "\"sigmoid\"")),
            "config.json: field 'scoring_func' is 'sigmoid', but deepseek_v2 "
            "routers always score with softmax");
  EXPECT_EQ(errorOf(withField(kDeepSeekV2Lite, "norm_topk_prob", "true")),
            "config.json: field 'norm_topk_prob' is true, which transformers' "
            "deepseek_v2 ignores; not supported");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "moe_layer_freq", "2")),
            "config.json: field 'moe_layer_freq' is 2, but transformers "
            "ignores it; only 1 is supported");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "num_key_value_heads", "16")),
            "config.json: field 'num_key_value_heads' is 16, but MLA expands "
            "keys and values to all 128 heads");
  EXPECT_EQ(errorOf(withField(kMixtral8x7B, "num_experts_per_tok", "9")),
            "config.json: num_experts_per_tok 9 exceeds the 8 experts");

  // Attention variants moec lacks.
  EXPECT_EQ(errorOf(withField(kMixtral8x7B, "sliding_window", "4096")),
            "config.json: field 'sliding_window' is set; sliding-window "
            "attention is not supported");
  EXPECT_EQ(errorOf(withField(kQwen15MoeA27B, "use_sliding_window", "true")),
            "config.json: field 'use_sliding_window' is true; sliding-window "
            "attention is not supported");
  EXPECT_EQ(errorOf(withField(kQwen3_30B_A3B, "use_sliding_window", "true")),
            "config.json: field 'use_sliding_window' is true; sliding-window "
            "attention is not supported");

  // Quantization.
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "quantization_config",
                              R"({"quant_method": "awq", "bits": 4})")),
            "config.json: field 'quantization_config.quant_method' is 'awq'; "
            "moec supports only 'fp8' (DeepSeek block fp8)");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "quantization_config",
                              R"({"quant_method": "fp8", "fmt": "e5m2"})")),
            "config.json: field 'quantization_config.fmt' is 'e5m2', but moec "
            "supports only e4m3 weights");
  EXPECT_EQ(errorOf(withField(kDeepSeekV3, "quantization_config",
                              R"({"quant_method": "fp8",
                                  "weight_block_size": [128]})")),
            "config.json: field 'quantization_config.weight_block_size' must "
            "be two positive integers [rows, cols]");
  ModelConfig defaults = parseOrDie(
      withField(kDeepSeekV3, "quantization_config",
                R"({"quant_method": "fp8", "weight_block_size": [64, 32],
                    "modules_to_not_convert": ["lm_head"]})"));
  ASSERT_TRUE(defaults.quantization.has_value());
  EXPECT_EQ(defaults.quantization->blockRows, 64);
  EXPECT_EQ(defaults.quantization->blockCols, 32);
  EXPECT_EQ(defaults.quantization->modulesToNotConvert,
            std::vector<std::string>{"lm_head"});
}

TEST(ModelConfig, ReadsFromDirectory) {
  SmallString<128> dir;
  ASSERT_FALSE(sys::fs::createUniqueDirectory("moec-config", dir));
  SmallString<128> path(dir);
  sys::path::append(path, "config.json");

  Expected<ModelConfig> missing = ModelConfig::fromDirectory(dir);
  ASSERT_FALSE(bool(missing));
  EXPECT_TRUE(StringRef(toString(missing.takeError()))
                  .starts_with(path.str().str() + ": "));
  {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    ASSERT_FALSE(ec);
    os << withField(kMixtral8x7B, "hidden_act", "\"relu\"");
  }
  Expected<ModelConfig> bad = ModelConfig::fromDirectory(dir);
  ASSERT_FALSE(bool(bad));
  EXPECT_EQ(toString(bad.takeError()),
            path.str().str() + ": field 'hidden_act' is 'relu'; moec "
                               "supports only 'silu' (SwiGLU)");
  {
    std::error_code ec;
    raw_fd_ostream os(path, ec);
    ASSERT_FALSE(ec);
    os << kMixtral8x7B;
  }
  Expected<ModelConfig> good = ModelConfig::fromDirectory(dir);
  ASSERT_TRUE(bool(good)) << toString(good.takeError());
  EXPECT_EQ(good->family, ModelFamily::Mixtral);
  sys::fs::remove_directories(dir);
}
