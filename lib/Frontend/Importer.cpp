//===- Importer.cpp - HuggingFace checkpoint -> moe IR --------------------===//
//
// Part of moec. Emits the fine-grained `moe` module of a checkpoint: the
// entry points `prefill` (T tokens) and `decode` (one token), each
//
//   func.func @prefill(%ids: tensor<?xi64>, %start_pos: index,
//                      %k_cache_0, %v_cache_0, ...) -> (logits, caches...)
//
// layer by layer, with weights as `moe.param` references. Reshapes and
// slices between ops are upstream `tensor` ops.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/Importer.h"
#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Format.h"

#include "moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <cmath>

using namespace mlir;
using llvm::Error;
using llvm::Expected;
using llvm::formatv;
using llvm::StringRef;

namespace moec {

void registerImporterDialects(DialectRegistry &registry) {
  registry.insert<moe::MoeDialect, func::FuncDialect, tensor::TensorDialect,
                  linalg::LinalgDialect, arith::ArithDialect>();
}

namespace {

constexpr int64_t kDynamic = ShapedType::kDynamic;

// Builds one module. Errors are accumulated in `error` by `param` so the
// emission code stays linear; the first error wins.
class Importer {
public:
  Importer(MLIRContext &context, const ModelConfig &config,
           const SafeTensorsCheckpoint &checkpoint, int64_t capacity)
      : context(context), builder(&context), config(config),
        checkpoint(checkpoint), capacity(capacity),
        f32(Float32Type::get(&context)) {}

  Expected<OwningOpRef<ModuleOp>> run(StringRef directory);

private:
  // Fails on a checkpoint tensor the module does not reference, except the
  // multi-token-prediction layers (skipped with a note) and tied lm_head.
  Error checkAllTensorsUsed(StringRef directory);

  // One entry point; `tokens` is kDynamic (prefill) or 1 (decode).
  void buildEntry(ModuleOp module, StringRef name, int64_t tokens);

  Value attention(unsigned layer, Value hidden, ValueRange caches,
                  SmallVectorImpl<Value> &newCaches);
  Value standardAttention(StringRef prefix, Value hidden, ValueRange caches,
                          SmallVectorImpl<Value> &newCaches);
  Value latentAttention(StringRef prefix, Value hidden, ValueRange caches,
                        SmallVectorImpl<Value> &newCaches);
  Value feedForward(unsigned layer, Value hidden);
  Value denseMlp(StringRef prefix, Value hidden, int64_t intermediate,
                 std::array<StringRef, 3> names = {"gate_proj", "up_proj",
                                                   "down_proj"});
  Value routedExperts(StringRef prefix, Value hidden);

  // The checkpoint tensor `name` as a `moe.param`; records an error (and
  // returns a placeholder of `fallbackShape`) when it is missing.
  Value param(const std::string &name, ArrayRef<int64_t> expectedShape);
  bool hasTensor(const std::string &name) const {
    return checkpoint.find(name) != nullptr;
  }

  // IR helpers.
  Value linear(Value input, const std::string &weight, int64_t outFeatures,
               std::optional<std::string> bias = std::nullopt);
  Value rmsNorm(Value input, const std::string &weight, double eps);
  Value splitHeads(Value input, int64_t heads, int64_t headDim);
  Value mergeHeads(Value input);
  Value slice(Value input, int64_t dim, int64_t offset, int64_t size);
  Value rope(Value input, bool interleaved);
  RankedTensorType actType(ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, f32);
  }
  int64_t tokensOf(Value value) {
    return cast<RankedTensorType>(value.getType()).getDimSize(0);
  }

  MLIRContext &context;
  OpBuilder builder;
  const ModelConfig &config;
  const SafeTensorsCheckpoint &checkpoint;
  int64_t capacity;
  Type f32;
  Location loc = UnknownLoc::get(&context);
  Value startPos;
  Value tokenCount; // index: number of tokens of this call
  std::optional<std::string> error;
  // Checkpoint tensors the module references; anything else is an error
  // (a tensor the importer does not understand changes the computation).
  llvm::StringSet<> used;
};

//===----------------------------------------------------------------------===//
// Small IR helpers
//===----------------------------------------------------------------------===//

static moe::RopeScaling toIR(RopeType type) {
  switch (type) {
  case RopeType::Default:
    return moe::RopeScaling::none;
  case RopeType::Linear:
    return moe::RopeScaling::linear;
  case RopeType::Yarn:
    return moe::RopeScaling::yarn;
  case RopeType::Llama3:
    return moe::RopeScaling::llama3;
  }
  llvm_unreachable("unknown rope type");
}

static moe::ScoringFunc toIR(ScoringFunc scoring) {
  return scoring == ScoringFunc::Sigmoid ? moe::ScoringFunc::sigmoid
                                         : moe::ScoringFunc::softmax;
}

static moe::TopKMethod toIR(TopKMethod method) {
  switch (method) {
  case TopKMethod::Greedy:
    return moe::TopKMethod::greedy;
  case TopKMethod::GroupLimitedGreedy:
    return moe::TopKMethod::group_limited_greedy;
  case TopKMethod::NoAuxTc:
    return moe::TopKMethod::noaux_tc;
  }
  llvm_unreachable("unknown top-k method");
}

static Type elementTypeFor(MLIRContext &context, DType dtype) {
  switch (dtype) {
  case DType::F32:
    return Float32Type::get(&context);
  case DType::F16:
    return Float16Type::get(&context);
  case DType::BF16:
    return BFloat16Type::get(&context);
  case DType::F8_E4M3:
    return Float8E4M3FNType::get(&context);
  default:
    return {};
  }
}

Value Importer::param(const std::string &name,
                      ArrayRef<int64_t> expectedShape) {
  const TensorInfo *info = checkpoint.find(name);
  if (info && ArrayRef<int64_t>(info->shape) != expectedShape) {
    if (!error)
      error =
          formatv("tensor '{0}' has shape {1}, but config.json implies "
                  "{2}",
                  name, formatShape(info->shape), formatShape(expectedShape))
              .str();
    info = nullptr;
    return moe::ParamOp::create(builder, loc,
                                RankedTensorType::get(expectedShape, f32),
                                builder.getStringAttr(name));
  }
  Type elementType = info ? elementTypeFor(context, info->dtype) : Type();
  if (!info || !elementType) {
    if (!error)
      error = info ? formatv("tensor '{0}' has dtype {1}, expected F32, F16, "
                             "BF16 or F8_E4M3",
                             name, dtypeName(info->dtype))
                         .str()
                   : formatv("missing tensor '{0}' (needed by the {1} "
                             "architecture)",
                             name, config.modelType)
                         .str();
    // Keep building with a placeholder so the error is reported once.
    return moe::ParamOp::create(builder, loc,
                                RankedTensorType::get(expectedShape, f32),
                                builder.getStringAttr(name));
  }
  used.insert(name);
  Value value = moe::ParamOp::create(
      builder, loc, RankedTensorType::get(info->shape, elementType),
      builder.getStringAttr(name));
  if (info->dtype != DType::F8_E4M3)
    return value;

  // DeepSeek FP8: dequantize with the 128x128 block scales at compile time.
  std::string scaleName = name + "_scale_inv";
  const TensorInfo *scale = checkpoint.find(scaleName);
  int64_t blockRows =
      config.quantization ? config.quantization->blockRows : 128;
  int64_t blockCols =
      config.quantization ? config.quantization->blockCols : 128;
  SmallVector<int64_t> scaleShape;
  if (info->shape.size() == 2)
    scaleShape = {(info->shape[0] + blockRows - 1) / blockRows,
                  (info->shape[1] + blockCols - 1) / blockCols};
  if (!scale || info->shape.size() != 2 ||
      (scale->dtype != DType::F32 && scale->dtype != DType::BF16) ||
      ArrayRef<int64_t>(scale->shape) != ArrayRef<int64_t>(scaleShape)) {
    if (!error)
      error = formatv("float8 tensor '{0}' needs '{1}' of F32 block scales "
                      "with shape {2}{3}",
                      name, scaleName, formatShape(scaleShape),
                      scale ? formatv(", got {0} {1}", dtypeName(scale->dtype),
                                      formatShape(scale->shape))
                                  .str()
                            : std::string(" (missing)"))
                  .str();
    return value;
  }
  used.insert(scaleName);
  Value scaleValue = moe::ParamOp::create(
      builder, loc,
      RankedTensorType::get(scale->shape,
                            elementTypeFor(context, scale->dtype)),
      builder.getStringAttr(scaleName));
  return moe::DequantizeFp8Op::create(
      builder, loc,
      RankedTensorType::get(info->shape, BFloat16Type::get(&context)), value,
      scaleValue, builder.getI64IntegerAttr(blockRows),
      builder.getI64IntegerAttr(blockCols));
}

Value Importer::linear(Value input, const std::string &weightName,
                       int64_t outFeatures,
                       std::optional<std::string> biasName) {
  auto inputType = cast<RankedTensorType>(input.getType());
  int64_t inFeatures = inputType.getShape().back();
  Value weight = param(weightName, {outFeatures, inFeatures});
  Value bias = biasName ? param(*biasName, {outFeatures}) : Value();
  SmallVector<int64_t> shape(inputType.getShape());
  shape.back() = outFeatures;
  return moe::LinearOp::create(builder, loc, actType(shape), input, weight,
                               bias);
}

Value Importer::rmsNorm(Value input, const std::string &weightName,
                        double eps) {
  auto inputType = cast<RankedTensorType>(input.getType());
  Value weight = param(weightName, {inputType.getShape().back()});
  return moe::RmsNormOp::create(builder, loc, input, weight,
                                builder.getF64FloatAttr(eps));
}

// [T, heads * dim] -> [T, heads, dim]
Value Importer::splitHeads(Value input, int64_t heads, int64_t headDim) {
  int64_t tokens = tokensOf(input);
  auto type = actType({tokens, heads, headDim});
  SmallVector<OpFoldResult> outputShape{
      tokens == kDynamic ? OpFoldResult(tokenCount)
                         : OpFoldResult(builder.getIndexAttr(tokens)),
      builder.getIndexAttr(heads), builder.getIndexAttr(headDim)};
  return tensor::ExpandShapeOp::create(
      builder, loc, type, input, ArrayRef<ReassociationIndices>{{0}, {1, 2}},
      outputShape);
}

// [T, heads, dim] -> [T, heads * dim]
Value Importer::mergeHeads(Value input) {
  return tensor::CollapseShapeOp::create(
      builder, loc, input, ArrayRef<ReassociationIndices>{{0}, {1, 2}});
}

// input[..., offset : offset + size] along `dim`.
Value Importer::slice(Value input, int64_t dim, int64_t offset, int64_t size) {
  auto type = cast<RankedTensorType>(input.getType());
  SmallVector<OpFoldResult> offsets, sizes, strides;
  for (int64_t d = 0; d < type.getRank(); ++d) {
    offsets.push_back(builder.getIndexAttr(d == dim ? offset : 0));
    if (d == dim)
      sizes.push_back(builder.getIndexAttr(size));
    else if (type.isDynamicDim(d))
      sizes.push_back(tokenCount);
    else
      sizes.push_back(builder.getIndexAttr(type.getDimSize(d)));
    strides.push_back(builder.getIndexAttr(1));
  }
  return tensor::ExtractSliceOp::create(builder, loc, input, offsets, sizes,
                                        strides);
}

Value Importer::rope(Value input, bool interleaved) {
  const RopeConfig &r = config.rope;
  auto op = moe::RopeOp::create(
      builder, loc, input.getType(), input, startPos,
      builder.getF64FloatAttr(r.theta),
      interleaved ? builder.getUnitAttr() : UnitAttr(),
      moe::RopeScalingAttr::get(&context, toIR(r.type)), nullptr, nullptr,
      nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
      /*rotary_offset=*/nullptr);
  auto setF64 = [&](StringRef name, std::optional<double> value) {
    if (value)
      op->setAttr(name, builder.getF64FloatAttr(*value));
  };
  switch (r.type) {
  case RopeType::Default:
    break;
  case RopeType::Linear:
    setF64("factor", r.factor);
    break;
  case RopeType::Yarn:
    setF64("factor", r.factor);
    setF64("beta_fast", r.betaFast);
    setF64("beta_slow", r.betaSlow);
    setF64("mscale", r.mscale);
    setF64("mscale_all_dim", r.mscaleAllDim);
    break;
  case RopeType::Llama3:
    setF64("factor", r.factor);
    setF64("low_freq_factor", r.lowFreqFactor);
    setF64("high_freq_factor", r.highFreqFactor);
    break;
  }
  if ((r.type == RopeType::Yarn || r.type == RopeType::Llama3) &&
      r.originalMaxPositions)
    op->setAttr("original_max_position_embeddings",
                builder.getI64IntegerAttr(*r.originalMaxPositions));
  return op;
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

Value Importer::attention(unsigned layer, Value hidden, ValueRange caches,
                          SmallVectorImpl<Value> &newCaches) {
  std::string prefix = formatv("model.layers.{0}.self_attn.", layer).str();
  if (config.mla)
    return latentAttention(prefix, hidden, caches, newCaches);
  return standardAttention(prefix, hidden, caches, newCaches);
}

Value Importer::standardAttention(StringRef prefix, Value hidden,
                                  ValueRange caches,
                                  SmallVectorImpl<Value> &newCaches) {
  std::string p = prefix.str();
  auto bias = [&](StringRef proj) -> std::optional<std::string> {
    if (!config.attentionBias)
      return std::nullopt;
    return p + proj.str() + ".bias";
  };
  int64_t headDim = config.headDim;
  int64_t qOut = config.numHeads * headDim;
  int64_t kvOut = config.numKvHeads * headDim;
  Value q =
      splitHeads(linear(hidden, p + "q_proj.weight", qOut, bias("q_proj")),
                 config.numHeads, headDim);
  Value k =
      splitHeads(linear(hidden, p + "k_proj.weight", kvOut, bias("k_proj")),
                 config.numKvHeads, headDim);
  Value v = splitHeads(linear(hidden, p + "v_proj.weight",
                              config.numKvHeads * config.valueHeadDim,
                              bias("v_proj")),
                       config.numKvHeads, config.valueHeadDim);
  if (config.qkNorm) {
    q = rmsNorm(q, p + "q_norm.weight", config.rmsNormEps);
    k = rmsNorm(k, p + "k_norm.weight", config.rmsNormEps);
  }
  q = rope(q, config.rope.interleaved);
  k = rope(k, config.rope.interleaved);
  auto op = moe::AttentionOp::create(
      builder, loc,
      actType({tokensOf(q), config.numHeads, config.valueHeadDim}),
      caches[0].getType(), caches[1].getType(), q, k, v, caches[0], caches[1],
      startPos, builder.getF32FloatAttr(config.softmaxScale));
  newCaches.push_back(op.getNewKeyCache());
  newCaches.push_back(op.getNewValueCache());
  // attention output projection (no bias in any supported family)
  bool outBias = config.attentionOutputBias;
  return linear(mergeHeads(op.getResult()), p + "o_proj.weight",
                config.hiddenSize,
                outBias ? std::optional(p + "o_proj.bias") : std::nullopt);
}

// DeepSeek's Multi-head Latent Attention in the unabsorbed form transformers
// computes; --moe-fuse-attention later absorbs kv_b_proj for decode.
Value Importer::latentAttention(StringRef prefix, Value hidden,
                                ValueRange caches,
                                SmallVectorImpl<Value> &newCaches) {
  std::string p = prefix.str();
  const MlaConfig &m = *config.mla;
  int64_t heads = config.numHeads;
  int64_t qkDim = m.qkNopeHeadDim + m.qkRopeHeadDim;

  Value q;
  if (m.qLoraRank) {
    q = linear(hidden, p + "q_a_proj.weight", *m.qLoraRank);
    q = rmsNorm(q, p + "q_a_layernorm.weight", config.rmsNormEps);
    q = linear(q, p + "q_b_proj.weight", heads * qkDim);
  } else {
    q = linear(hidden, p + "q_proj.weight", heads * qkDim);
  }
  q = splitHeads(q, heads, qkDim);
  Value qNope = slice(q, 2, 0, m.qkNopeHeadDim);
  Value qRope = rope(slice(q, 2, m.qkNopeHeadDim, m.qkRopeHeadDim),
                     config.rope.interleaved);
  q = tensor::ConcatOp::create(builder, loc, /*dim=*/2,
                               ValueRange{qNope, qRope});

  Value compressed = linear(hidden, p + "kv_a_proj_with_mqa.weight",
                            m.kvLoraRank + m.qkRopeHeadDim);
  Value latent = rmsNorm(slice(compressed, 1, 0, m.kvLoraRank),
                         p + "kv_a_layernorm.weight", config.rmsNormEps);
  Value kRope = splitHeads(slice(compressed, 1, m.kvLoraRank, m.qkRopeHeadDim),
                           1, m.qkRopeHeadDim);
  kRope = rope(kRope, config.rope.interleaved);
  Value kv = splitHeads(linear(latent, p + "kv_b_proj.weight",
                               heads * (m.qkNopeHeadDim + m.vHeadDim)),
                        heads, m.qkNopeHeadDim + m.vHeadDim);
  Value kNope = slice(kv, 2, 0, m.qkNopeHeadDim);
  Value value = slice(kv, 2, m.qkNopeHeadDim, m.vHeadDim);

  // The rope key is shared by all heads: broadcast [T, R] -> [T, H, R].
  int64_t tokens = tokensOf(hidden);
  Value kRopeRows = tensor::CollapseShapeOp::create(
      builder, loc, kRope, ArrayRef<ReassociationIndices>{{0, 1}, {2}});
  SmallVector<Value> dynamicSizes;
  if (tokens == kDynamic)
    dynamicSizes.push_back(tokenCount);
  Value init = tensor::EmptyOp::create(
      builder, loc, actType({tokens, heads, m.qkRopeHeadDim}), dynamicSizes);
  Value kRopeHeads = linalg::BroadcastOp::create(builder, loc, kRopeRows, init,
                                                 ArrayRef<int64_t>{1})
                         ->getResult(0);
  Value key = tensor::ConcatOp::create(builder, loc, /*dim=*/2,
                                       ValueRange{kNope, kRopeHeads});

  auto op = moe::AttentionOp::create(
      builder, loc, actType({tokens, heads, m.vHeadDim}), caches[0].getType(),
      caches[1].getType(), q, key, value, caches[0], caches[1], startPos,
      builder.getF32FloatAttr(config.softmaxScale));
  newCaches.push_back(op.getNewKeyCache());
  newCaches.push_back(op.getNewValueCache());
  return linear(mergeHeads(op.getResult()), p + "o_proj.weight",
                config.hiddenSize);
}

//===----------------------------------------------------------------------===//
// Feed-forward: dense MLP or mixture of experts
//===----------------------------------------------------------------------===//

Value Importer::denseMlp(StringRef prefix, Value hidden, int64_t intermediate,
                         std::array<StringRef, 3> names) {
  std::string p = prefix.str();
  int64_t h = config.hiddenSize;
  Value gate = param(p + names[0].str() + ".weight", {intermediate, h});
  Value up = param(p + names[1].str() + ".weight", {intermediate, h});
  Value down = param(p + names[2].str() + ".weight", {h, intermediate});
  return moe::MlpOp::create(builder, loc, hidden, gate, up, down);
}

Value Importer::routedExperts(StringRef prefix, Value hidden) {
  std::string p = prefix.str();
  const MoeConfig &e = *config.moe;
  int64_t tokens = tokensOf(hidden);
  int64_t h = config.hiddenSize;

  // Router: gate projection, then scoring and top-k.
  Value logits = linear(hidden, p + "gate.weight", e.numExperts);
  Value bias;
  if (e.scoreCorrectionBias)
    bias = param(p + "gate.e_score_correction_bias", {e.numExperts});
  auto indexType =
      RankedTensorType::get({tokens, e.topK}, builder.getIntegerType(32));
  auto router = moe::RouterOp::create(
      builder, loc, actType({tokens, e.topK}), indexType, logits, bias,
      /*appended_gate=*/Value(),
      moe::ScoringFuncAttr::get(&context, toIR(e.scoring)),
      moe::TopKMethodAttr::get(&context, toIR(e.topKMethod)),
      builder.getI64IntegerAttr(e.topK),
      e.topKMethod == TopKMethod::Greedy
          ? IntegerAttr()
          : builder.getI64IntegerAttr(e.numGroups),
      e.topKMethod == TopKMethod::Greedy
          ? IntegerAttr()
          : builder.getI64IntegerAttr(e.topKGroups),
      e.normTopKProb ? builder.getUnitAttr() : UnitAttr(),
      builder.getF32FloatAttr(e.routedScalingFactor),
      /*appended_experts=*/IntegerAttr());

  std::array<Value, 3> stacked;
  if (hasTensor(p + "experts.gate_up_proj")) {
    // transformers 5 "fused" layout: gate and up concatenated along the
    // output features of one [E, 2I, H] tensor; slicing it is a compile-time
    // weight transform like stacking.
    int64_t inter = e.intermediateSize;
    Value gateUp =
        param(p + "experts.gate_up_proj", {e.numExperts, 2 * inter, h});
    stacked[0] = slice(gateUp, 1, 0, inter);
    stacked[1] = slice(gateUp, 1, inter, inter);
    stacked[2] = param(p + "experts.down_proj", {e.numExperts, h, inter});
  } else {
    // One tensor per expert, stacked at compile time (moe.stack).
    std::array<StringRef, 3> names = {"gate_proj", "up_proj", "down_proj"};
    if (config.expertNaming == ExpertNaming::Mixtral)
      names = {"w1", "w3", "w2"};
    for (unsigned which = 0; which < 3; ++which) {
      SmallVector<Value> perExpert;
      for (int64_t expert = 0; expert < e.numExperts; ++expert)
        perExpert.push_back(param(
            formatv("{0}experts.{1}.{2}.weight", p, expert, names[which]).str(),
            which == 2 ? SmallVector<int64_t>{h, e.intermediateSize}
                       : SmallVector<int64_t>{e.intermediateSize, h}));
      auto type = cast<RankedTensorType>(perExpert.front().getType());
      SmallVector<int64_t> shape{e.numExperts};
      llvm::append_range(shape, type.getShape());
      stacked[which] = moe::StackOp::create(
          builder, loc, RankedTensorType::get(shape, type.getElementType()),
          perExpert);
    }
  }
  Value out = moe::ExpertsOp::create(builder, loc, hidden.getType(), hidden,
                                     router.getWeights(), router.getIndices(),
                                     stacked[0], stacked[1], stacked[2]);

  switch (e.sharedExperts) {
  case SharedExperts::None:
    break;
  case SharedExperts::DeepSeek:
    out = moe::AddOp::create(
        builder, loc, out,
        denseMlp(p + "shared_experts.", hidden, e.sharedIntermediateSize));
    break;
  case SharedExperts::QwenGated: {
    Value shared =
        denseMlp(p + "shared_expert.", hidden, e.sharedIntermediateSize);
    Value gate = linear(hidden, p + "shared_expert_gate.weight", 1);
    out = moe::AddOp::create(
        builder, loc, out,
        moe::SigmoidGateOp::create(builder, loc, shared, gate));
    break;
  }
  }
  return out;
}

Value Importer::feedForward(unsigned layer, Value hidden) {
  if (!config.isMoeLayer(layer))
    return denseMlp(formatv("model.layers.{0}.mlp.", layer).str(), hidden,
                    config.intermediateSize);
  // Mixtral checkpoints name the block `block_sparse_moe` (transformers 5
  // renames it to `mlp` when it saves without save_original_format).
  StringRef block = "mlp";
  if (config.expertNaming == ExpertNaming::Mixtral &&
      hasTensor(formatv("model.layers.{0}.block_sparse_moe.gate.weight", layer)
                    .str()))
    block = "block_sparse_moe";
  return routedExperts(formatv("model.layers.{0}.{1}.", layer, block).str(),
                       hidden);
}

//===----------------------------------------------------------------------===//
// Entry points
//===----------------------------------------------------------------------===//

void Importer::buildEntry(ModuleOp module, StringRef name, int64_t tokens) {
  builder.setInsertionPointToEnd(module.getBody());
  auto idsType = RankedTensorType::get({tokens}, builder.getI64Type());
  SmallVector<Type> cacheTypes;
  for (unsigned layer = 0; layer < config.numLayers; ++layer) {
    cacheTypes.push_back(
        actType({capacity, config.kvCacheHeads(), config.kvCacheKeyDim()}));
    cacheTypes.push_back(
        actType({capacity, config.kvCacheHeads(), config.kvCacheValueDim()}));
  }
  SmallVector<Type> inputs{idsType, builder.getIndexType()};
  llvm::append_range(inputs, cacheTypes);
  SmallVector<Type> results{actType({tokens, config.vocabSize})};
  llvm::append_range(results, cacheTypes);
  auto func = func::FuncOp::create(builder, loc, name,
                                   builder.getFunctionType(inputs, results));
  Block *body = func.addEntryBlock();
  builder.setInsertionPointToStart(body);

  Value ids = body->getArgument(0);
  startPos = body->getArgument(1);
  tokenCount = tensor::DimOp::create(builder, loc, ids, 0);

  Value hidden = moe::EmbeddingOp::create(
      builder, loc, actType({tokens, config.hiddenSize}),
      param("model.embed_tokens.weight", {config.vocabSize, config.hiddenSize}),
      ids);
  SmallVector<Value> newCaches;
  for (unsigned layer = 0; layer < config.numLayers; ++layer) {
    std::string p = formatv("model.layers.{0}.", layer).str();
    Value normed =
        rmsNorm(hidden, p + "input_layernorm.weight", config.rmsNormEps);
    Value attn = attention(
        layer, normed, body->getArguments().slice(2 + 2 * layer, 2), newCaches);
    hidden = moe::AddOp::create(builder, loc, hidden, attn);
    normed = rmsNorm(hidden, p + "post_attention_layernorm.weight",
                     config.rmsNormEps);
    hidden =
        moe::AddOp::create(builder, loc, hidden, feedForward(layer, normed));
  }
  hidden = rmsNorm(hidden, "model.norm.weight", config.rmsNormEps);
  Value logits = linear(hidden,
                        config.tieWordEmbeddings ? "model.embed_tokens.weight"
                                                 : "lm_head.weight",
                        config.vocabSize);
  SmallVector<Value> returned{logits};
  llvm::append_range(returned, newCaches);
  func::ReturnOp::create(builder, loc, returned);
}

Error Importer::checkAllTensorsUsed(StringRef directory) {
  int64_t mtpTensors = 0;
  for (const TensorInfo &tensor : checkpoint.tensors()) {
    if (used.contains(tensor.name))
      continue;
    StringRef name = tensor.name;
    int64_t layer = -1;
    if (name.consume_front("model.layers.") &&
        !name.consumeInteger(10, layer) && layer >= config.numLayers &&
        layer < config.numLayers + config.numNextnPredictLayers) {
      ++mtpTensors;
      continue;
    }
    if (config.tieWordEmbeddings && tensor.name == "lm_head.weight")
      continue;
    return llvm::createStringError(
        formatv("{0}: tensor '{1}' is not used by the {2} importer; the "
                "checkpoint does not match its config.json",
                directory, tensor.name, config.modelType)
            .str());
  }
  if (mtpTensors)
    llvm::errs() << formatv(
        "moec: note: skipping {0} multi-token-prediction layer(s) "
        "(model.layers.{1}.*, {2} tensors): not used for generation\n",
        config.numNextnPredictLayers, config.numLayers, mtpTensors);
  return Error::success();
}

Expected<OwningOpRef<ModuleOp>> Importer::run(StringRef directory) {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  module->getOperation()->setAttr("moe.model_type",
                                  builder.getStringAttr(config.modelType));
  module->getOperation()->setAttr("moe.max_seq_len",
                                  builder.getI64IntegerAttr(capacity));
  buildEntry(*module, "prefill", kDynamic);
  buildEntry(*module, "decode", 1);
  if (error)
    return llvm::createStringError(directory + ": " + *error);
  if (Error unused = checkAllTensorsUsed(directory))
    return std::move(unused);
  if (failed(verify(*module)))
    return llvm::createStringError(
        directory + ": the imported module does not verify (see the "
                    "diagnostics above); this is a moec bug");
  return std::move(module);
}

} // namespace

// moe.rope carries YaRN's inputs and its lowering derives the rest the way
// transformers does by default; configs that override those derivations
// are rejected rather than computed differently.
static Error checkRopeRepresentable(const ModelConfig &config,
                                    StringRef directory) {
  const RopeConfig &rope = config.rope;
  if (rope.type != RopeType::Yarn)
    return Error::success();
  auto fail = [&](const llvm::Twine &what) {
    return llvm::createStringError(directory + "/config.json: " + what +
                                   " is not supported yet");
  };
  if (!rope.truncate)
    return fail("rope_parameters.truncate = false");
  auto mscale = [](double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * std::log(scale) + 1.0;
  };
  double factor = rope.factor.value_or(1.0);
  double derived =
      rope.mscale.value_or(0.0) != 0.0 && rope.mscaleAllDim.value_or(0.0) != 0.0
          ? mscale(factor, *rope.mscale) / mscale(factor, *rope.mscaleAllDim)
          : mscale(factor, 1.0);
  if (std::abs(derived - rope.attentionFactor) > 1e-12)
    return fail(formatv("rope_parameters.attention_factor = {0} (different "
                        "from the {1} derived from factor/mscale)",
                        rope.attentionFactor, derived)
                    .str());
  return Error::success();
}

Expected<OwningOpRef<ModuleOp>> importCheckpoint(MLIRContext &context,
                                                 StringRef directory,
                                                 const ImportOptions &options) {
  if (!llvm::sys::fs::is_directory(directory))
    return llvm::createStringError(
        directory + ": not a checkpoint directory (expected config.json and "
                    "*.safetensors inside)");
  Expected<ModelConfig> config = ModelConfig::fromDirectory(directory);
  if (!config)
    return config.takeError();
  if (Error unsupported = checkRopeRepresentable(*config, directory))
    return std::move(unsupported);
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(directory);
  if (!checkpoint)
    return checkpoint.takeError();
  int64_t capacity = options.maxSequenceLength;
  if (capacity == 0)
    capacity = std::min<int64_t>(config->maxPositionEmbeddings, 4096);
  context.loadDialect<moe::MoeDialect, func::FuncDialect, tensor::TensorDialect,
                      linalg::LinalgDialect, arith::ArithDialect>();
  Importer importer(context, *config, *checkpoint, capacity);
  return importer.run(directory);
}

} // namespace moec
