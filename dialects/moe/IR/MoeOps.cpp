//===- MoeOps.cpp - moe dialect operations --------------------------------===//
//
// Part of moec. Verifiers and custom assembly of the `moe` ops. Every
// verifier names the offending operand and both sizes, so that an importer
// bug or a hand-written test points straight at the mismatch.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpImplementation.h"
#include "llvm/ADT/STLExtras.h"

using namespace mlir;
using namespace mlir::moe;

#include "moe/IR/MoeEnums.cpp.inc"

#define GET_OP_CLASSES
#include "moe/IR/MoeOps.cpp.inc"

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

static RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

// Two sizes are compatible when equal or when either is dynamic.
static bool compatible(int64_t lhs, int64_t rhs) {
  return ShapedType::isDynamic(lhs) || ShapedType::isDynamic(rhs) || lhs == rhs;
}

static std::string sizeStr(int64_t size) {
  return ShapedType::isDynamic(size) ? "?" : std::to_string(size);
}

// Checks `value` has rank `rank`; reports "<what> must have rank N (shape ...)"
static LogicalResult expectRank(Operation *op, Value value, int64_t rank,
                                StringRef what) {
  RankedTensorType type = tensorType(value);
  if (type.getRank() == rank)
    return success();
  return op->emitOpError() << what << " must have rank " << rank << ", got "
                           << type;
}

// Checks dimension `dim` of `value` against `expected`.
static LogicalResult expectDim(Operation *op, Value value, int64_t dim,
                               int64_t expected, StringRef what,
                               StringRef expectedWhat) {
  int64_t actual = tensorType(value).getDimSize(dim);
  if (compatible(actual, expected))
    return success();
  return op->emitOpError() << what << " dimension " << dim << " ("
                           << sizeStr(actual) << ") does not match "
                           << expectedWhat << " (" << sizeStr(expected) << ")";
}

static LogicalResult expectStatic(Operation *op, Value value, StringRef what) {
  if (tensorType(value).hasStaticShape())
    return success();
  return op->emitOpError() << what << " must have a static shape, got "
                           << value.getType();
}

//===----------------------------------------------------------------------===//
// moe.param
//===----------------------------------------------------------------------===//

LogicalResult ParamOp::verify() {
  if (getName().empty())
    return emitOpError("needs a non-empty checkpoint tensor name");
  return expectStatic(*this, getResult(), "result");
}

//===----------------------------------------------------------------------===//
// moe.stack
//===----------------------------------------------------------------------===//

// moe.stack %a, %b : tensor<S> -> tensor<2xS>
ParseResult StackOp::parse(OpAsmParser &parser, OperationState &result) {
  SmallVector<OpAsmParser::UnresolvedOperand> inputs;
  Type inputType, resultType;
  llvm::SMLoc loc = parser.getCurrentLocation();
  if (parser.parseOperandList(inputs) ||
      parser.parseOptionalAttrDict(result.attributes) || parser.parseColon() ||
      parser.parseType(inputType) || parser.parseArrow() ||
      parser.parseType(resultType))
    return failure();
  if (inputs.empty())
    return parser.emitError(loc, "expected at least one operand");
  if (parser.resolveOperands(inputs, inputType, loc, result.operands))
    return failure();
  result.addTypes(resultType);
  return success();
}

void StackOp::print(OpAsmPrinter &printer) {
  printer << ' ' << getInputs();
  printer.printOptionalAttrDict((*this)->getAttrs());
  printer << " : " << getInputs().front().getType() << " -> "
          << getResult().getType();
}

LogicalResult StackOp::verify() {
  if (getInputs().empty())
    return emitOpError("needs at least one operand");
  RankedTensorType input = tensorType(getInputs().front());
  RankedTensorType result = getResult().getType();
  if (result.getElementType() != input.getElementType())
    return emitOpError() << "result element type " << result.getElementType()
                         << " differs from operand element type "
                         << input.getElementType();
  SmallVector<int64_t> expected{static_cast<int64_t>(getInputs().size())};
  llvm::append_range(expected, input.getShape());
  if (result.getShape() != ArrayRef<int64_t>(expected))
    return emitOpError() << "result type " << result << " should be "
                         << RankedTensorType::get(expected,
                                                  input.getElementType())
                         << " for " << getInputs().size()
                         << " operands of type " << input;
  return success();
}

//===----------------------------------------------------------------------===//
// moe.dequantize_fp8
//===----------------------------------------------------------------------===//

LogicalResult DequantizeFp8Op::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input")) ||
      failed(expectStatic(*this, getInput(), "input")) ||
      failed(expectRank(*this, getScaleInv(), 2, "scale_inv")))
    return failure();
  auto blockRows = static_cast<int64_t>(getBlockRows());
  auto blockCols = static_cast<int64_t>(getBlockCols());
  if (blockRows <= 0 || blockCols <= 0)
    return emitOpError("block sizes must be positive");
  ArrayRef<int64_t> shape = tensorType(getInput()).getShape();
  int64_t rowBlocks = llvm::divideCeil(shape[0], blockRows);
  int64_t colBlocks = llvm::divideCeil(shape[1], blockCols);
  if (failed(expectDim(*this, getScaleInv(), 0, rowBlocks, "scale_inv",
                       "the number of row blocks")) ||
      failed(expectDim(*this, getScaleInv(), 1, colBlocks, "scale_inv",
                       "the number of column blocks")))
    return failure();
  if (getResult().getType().getShape() != shape)
    return emitOpError() << "result shape must match the input shape, got "
                         << getResult().getType();
  return success();
}

//===----------------------------------------------------------------------===//
// moe.embedding
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  if (failed(expectRank(*this, getTable(), 2, "table")) ||
      failed(expectStatic(*this, getTable(), "table")) ||
      failed(expectRank(*this, getIds(), 1, "ids")) ||
      failed(expectRank(*this, getResult(), 2, "result")))
    return failure();
  if (failed(expectDim(*this, getResult(), 0,
                       tensorType(getIds()).getDimSize(0), "result",
                       "the number of ids")) ||
      failed(expectDim(*this, getResult(), 1,
                       tensorType(getTable()).getDimSize(1), "result",
                       "the table's embedding size")))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// moe.rms_norm / moe.add_rms_norm
//===----------------------------------------------------------------------===//

static LogicalResult verifyNorm(Operation *op, Value input, Value weight,
                                double epsilon) {
  if (!(epsilon > 0.0))
    return op->emitOpError() << "epsilon must be positive, got " << epsilon;
  RankedTensorType inputType = tensorType(input);
  if (inputType.getRank() < 1)
    return op->emitOpError("input must have rank >= 1");
  if (failed(expectRank(op, weight, 1, "weight")))
    return failure();
  int64_t hidden = inputType.getDimSize(inputType.getRank() - 1);
  if (ShapedType::isDynamic(hidden))
    return op->emitOpError(
        "the normalized (last) input dimension must be static");
  return expectDim(op, weight, 0, hidden, "weight", "the last input dimension");
}

LogicalResult RmsNormOp::verify() {
  return verifyNorm(*this, getInput(), getWeight(),
                    getEpsilon().convertToDouble());
}

LogicalResult AddRmsNormOp::verify() {
  return verifyNorm(*this, getInput(), getWeight(),
                    getEpsilon().convertToDouble());
}

//===----------------------------------------------------------------------===//
// moe.linear
//===----------------------------------------------------------------------===//

LogicalResult LinearOp::verify() {
  RankedTensorType input = tensorType(getInput());
  RankedTensorType result = getResult().getType();
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (failed(expectRank(*this, getWeight(), 2, "weight")))
    return failure();
  int64_t outFeatures = tensorType(getWeight()).getDimSize(0);
  int64_t inFeatures = tensorType(getWeight()).getDimSize(1);
  int64_t last = input.getRank() - 1;
  if (failed(expectDim(*this, getInput(), last, inFeatures, "input",
                       "weight dimension 1 (in features)")))
    return failure();
  if (result.getRank() != input.getRank())
    return emitOpError() << "result rank " << result.getRank()
                         << " differs from input rank " << input.getRank();
  for (int64_t dim = 0; dim < last; ++dim)
    if (failed(expectDim(*this, getResult(), dim, input.getDimSize(dim),
                         "result", "the input")))
      return failure();
  if (failed(expectDim(*this, getResult(), last, outFeatures, "result",
                       "weight dimension 0 (out features)")))
    return failure();
  if (Value bias = getBias()) {
    if (failed(expectRank(*this, bias, 1, "bias")) ||
        failed(expectDim(*this, bias, 0, outFeatures, "bias",
                         "weight dimension 0 (out features)")))
      return failure();
  }
  return success();
}

//===----------------------------------------------------------------------===//
// moe.rope
//===----------------------------------------------------------------------===//

LogicalResult RopeOp::verify() {
  if (failed(expectRank(*this, getInput(), 3, "input ([tokens, heads, dim])")))
    return failure();
  int64_t dim = tensorType(getInput()).getDimSize(2);
  int64_t offset =
      getRotaryOffset() ? static_cast<int64_t>(*getRotaryOffset()) : 0;
  if (!ShapedType::isDynamic(dim) && (offset < 0 || offset >= dim))
    return emitOpError() << "rotary offset " << offset
                         << " must be in [0, head dimension " << dim << ")";
  if (ShapedType::isDynamic(dim) || (dim - offset) % 2 != 0)
    return emitOpError() << "rotary dimension must be static and even, got "
                         << sizeStr(ShapedType::isDynamic(dim) ? dim
                                                               : dim - offset);
  if (!(getTheta().convertToDouble() > 0.0))
    return emitOpError("theta must be positive");

  struct Param {
    StringRef name;
    bool present;
  };
  Param params[] = {{"factor", getFactor().has_value()},
                    {"beta_fast", getBetaFast().has_value()},
                    {"beta_slow", getBetaSlow().has_value()},
                    {"mscale", getMscale().has_value()},
                    {"mscale_all_dim", getMscaleAllDim().has_value()},
                    {"low_freq_factor", getLowFreqFactor().has_value()},
                    {"high_freq_factor", getHighFreqFactor().has_value()},
                    {"original_max_position_embeddings",
                     getOriginalMaxPositionEmbeddings().has_value()}};
  // Which parameters each scaling kind requires and allows.
  ArrayRef<StringRef> required, allowed;
  static const StringRef linearParams[] = {"factor"};
  static const StringRef yarnRequired[] = {"factor",
                                           "original_max_position_embeddings"};
  static const StringRef yarnAllowed[] = {
      "factor", "beta_fast",      "beta_slow",
      "mscale", "mscale_all_dim", "original_max_position_embeddings"};
  static const StringRef llama3Params[] = {"factor", "low_freq_factor",
                                           "high_freq_factor",
                                           "original_max_position_embeddings"};
  switch (getScaling()) {
  case RopeScaling::none:
    break;
  case RopeScaling::linear:
    required = allowed = linearParams;
    break;
  case RopeScaling::yarn:
    required = yarnRequired;
    allowed = yarnAllowed;
    break;
  case RopeScaling::llama3:
    required = allowed = llama3Params;
    break;
  }
  for (const Param &param : params) {
    bool isAllowed = llvm::is_contained(allowed, param.name);
    if (param.present && !isAllowed)
      return emitOpError() << "'" << param.name
                           << "' is not a parameter of rope scaling '"
                           << stringifyRopeScaling(getScaling()) << "'";
    if (!param.present && llvm::is_contained(required, param.name))
      return emitOpError() << "rope scaling '"
                           << stringifyRopeScaling(getScaling())
                           << "' requires '" << param.name << "'";
  }
  if (std::optional<llvm::APFloat> factor = getFactor();
      factor && !(factor->convertToDouble() > 0.0))
    return emitOpError("factor must be positive");
  if (std::optional<uint64_t> original = getOriginalMaxPositionEmbeddings();
      original && static_cast<int64_t>(*original) <= 0)
    return emitOpError("original_max_position_embeddings must be positive");
  return success();
}

//===----------------------------------------------------------------------===//
// moe.attention
//===----------------------------------------------------------------------===//

LogicalResult AttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), 3, "query")) ||
      failed(expectRank(*this, getKey(), 3, "key")) ||
      failed(expectRank(*this, getValue(), 3, "value")) ||
      failed(expectRank(*this, getKeyCache(), 3, "key cache")) ||
      failed(expectRank(*this, getValueCache(), 3, "value cache")) ||
      failed(expectRank(*this, getResult(), 3, "result")) ||
      failed(expectStatic(*this, getKeyCache(), "key cache")) ||
      failed(expectStatic(*this, getValueCache(), "value cache")))
    return failure();
  RankedTensorType query = tensorType(getQuery());
  RankedTensorType key = tensorType(getKey());
  RankedTensorType value = tensorType(getValue());
  int64_t tokens = query.getDimSize(0);
  int64_t queryHeads = query.getDimSize(1);
  int64_t headDim = query.getDimSize(2);
  int64_t kvHeads = key.getDimSize(1);
  int64_t valueDim = value.getDimSize(2);
  if (ShapedType::isDynamic(queryHeads) || ShapedType::isDynamic(kvHeads) ||
      ShapedType::isDynamic(headDim) || ShapedType::isDynamic(valueDim))
    return emitOpError("head counts and head dimensions must be static");
  if (kvHeads <= 0 || queryHeads % kvHeads != 0)
    return emitOpError() << "query heads (" << queryHeads
                         << ") must be a multiple of key/value heads ("
                         << kvHeads << ")";
  if (failed(expectDim(*this, getKey(), 0, tokens, "key", "query tokens")) ||
      failed(expectDim(*this, getKey(), 2, headDim, "key",
                       "the query head dimension")) ||
      failed(
          expectDim(*this, getValue(), 0, tokens, "value", "query tokens")) ||
      failed(
          expectDim(*this, getValue(), 1, kvHeads, "value", "the key heads")) ||
      failed(expectDim(*this, getKeyCache(), 1, kvHeads, "key cache",
                       "the key heads")) ||
      failed(expectDim(*this, getKeyCache(), 2, headDim, "key cache",
                       "the query head dimension")) ||
      failed(expectDim(*this, getValueCache(), 1, kvHeads, "value cache",
                       "the key heads")) ||
      failed(expectDim(*this, getValueCache(), 2, valueDim, "value cache",
                       "the value head dimension")) ||
      failed(
          expectDim(*this, getResult(), 0, tokens, "result", "query tokens")) ||
      failed(expectDim(*this, getResult(), 1, queryHeads, "result",
                       "query heads")) ||
      failed(expectDim(*this, getResult(), 2, valueDim, "result",
                       "the value head dimension")))
    return failure();
  int64_t capacity = tensorType(getKeyCache()).getDimSize(0);
  if (capacity != tensorType(getValueCache()).getDimSize(0))
    return emitOpError() << "key cache capacity (" << capacity
                         << ") differs from value cache capacity ("
                         << tensorType(getValueCache()).getDimSize(0) << ")";
  if (capacity <= 0)
    return emitOpError("cache capacity must be positive");
  if (!(getScale().convertToFloat() > 0.0f))
    return emitOpError("scale must be positive");
  return success();
}

//===----------------------------------------------------------------------===//
// moe.mla_attention
//===----------------------------------------------------------------------===//

LogicalResult MlaAttentionOp::verify() {
  if (failed(expectRank(*this, getQuery(), 3, "query")) ||
      failed(expectRank(*this, getLatent(), 2, "latent")) ||
      failed(expectRank(*this, getKeyRope(), 2, "key rope")) ||
      failed(expectRank(*this, getKvBWeight(), 2, "kv_b weight")) ||
      failed(expectRank(*this, getLatentCache(), 2, "latent cache")) ||
      failed(expectRank(*this, getRopeCache(), 2, "rope cache")) ||
      failed(expectRank(*this, getResult(), 3, "result")) ||
      failed(expectStatic(*this, getKvBWeight(), "kv_b weight")) ||
      failed(expectStatic(*this, getLatentCache(), "latent cache")) ||
      failed(expectStatic(*this, getRopeCache(), "rope cache")))
    return failure();
  RankedTensorType query = tensorType(getQuery());
  RankedTensorType result = tensorType(getResult());
  int64_t tokens = query.getDimSize(0);
  int64_t heads = query.getDimSize(1);
  int64_t queryDim = query.getDimSize(2);
  int64_t valueDim = result.getDimSize(2);
  int64_t nope = static_cast<int64_t>(getNopeDim());
  int64_t rank = tensorType(getLatentCache()).getDimSize(1);
  if (ShapedType::isDynamic(heads) || ShapedType::isDynamic(queryDim) ||
      ShapedType::isDynamic(valueDim))
    return emitOpError("head counts and head dimensions must be static");
  if (nope <= 0 || nope >= queryDim)
    return emitOpError() << "nope_dim (" << nope
                         << ") must be in [1, query head dimension ("
                         << queryDim << "))";
  int64_t ropeDim = queryDim - nope;
  if (failed(
          expectDim(*this, getLatent(), 0, tokens, "latent", "query tokens")) ||
      failed(expectDim(*this, getLatent(), 1, rank, "latent",
                       "the latent cache width")) ||
      failed(expectDim(*this, getKeyRope(), 0, tokens, "key rope",
                       "query tokens")) ||
      failed(expectDim(*this, getKeyRope(), 1, ropeDim, "key rope",
                       "the query rope dimension")) ||
      failed(expectDim(*this, getRopeCache(), 1, ropeDim, "rope cache",
                       "the query rope dimension")) ||
      failed(expectDim(*this, getKvBWeight(), 0, heads * (nope + valueDim),
                       "kv_b weight", "heads * (nope_dim + value dim)")) ||
      failed(expectDim(*this, getKvBWeight(), 1, rank, "kv_b weight",
                       "the latent cache width")) ||
      failed(
          expectDim(*this, getResult(), 0, tokens, "result", "query tokens")) ||
      failed(expectDim(*this, getResult(), 1, heads, "result", "query heads")))
    return failure();
  int64_t capacity = tensorType(getLatentCache()).getDimSize(0);
  if (capacity != tensorType(getRopeCache()).getDimSize(0))
    return emitOpError() << "latent cache capacity (" << capacity
                         << ") differs from rope cache capacity ("
                         << tensorType(getRopeCache()).getDimSize(0) << ")";
  if (capacity <= 0)
    return emitOpError("cache capacity must be positive");
  if (!(getScale().convertToFloat() > 0.0f))
    return emitOpError("scale must be positive");
  return success();
}

//===----------------------------------------------------------------------===//
// moe.router
//===----------------------------------------------------------------------===//

// The routing attributes shared by moe.router and moe.fused_moe, for
// `experts` scored experts.
static LogicalResult verifyRouting(Operation *op, int64_t experts, int64_t topK,
                                   TopKMethod method,
                                   std::optional<uint64_t> nGroup,
                                   std::optional<uint64_t> topkGroup,
                                   Value bias, APFloat scale) {
  bool grouped = method != TopKMethod::greedy;
  if (nGroup.has_value() != topkGroup.has_value())
    return op->emitOpError("n_group and topk_group must be given together");
  if (grouped && !nGroup)
    return op->emitOpError() << "method '" << stringifyTopKMethod(method)
                             << "' requires groups(n_group, topk_group)";
  if (!grouped && nGroup)
    return op->emitOpError("groups(...) are only meaningful for group-limited "
                           "methods; use greedy without groups");
  if (grouped) {
    auto groups = static_cast<int64_t>(*nGroup);
    auto keptGroups = static_cast<int64_t>(*topkGroup);
    if (groups < 1 || experts % groups != 0)
      return op->emitOpError()
             << "n_group (" << groups << ") must divide the number of experts ("
             << experts << ")";
    if (keptGroups < 1 || keptGroups > groups)
      return op->emitOpError()
             << "topk_group (" << keptGroups
             << ") must be in [1, n_group = " << groups << "]";
    int64_t perGroup = experts / groups;
    if (topK > keptGroups * perGroup)
      return op->emitOpError()
             << "top_k (" << topK << ") exceeds the " << keptGroups * perGroup
             << " experts of the kept groups";
    if (method == TopKMethod::noaux_tc && perGroup < 2)
      return op->emitOpError("noaux_tc ranks groups by their two best experts "
                             "and needs at least 2 experts per group");
  }
  if (bias) {
    if (method != TopKMethod::noaux_tc)
      return op->emitOpError(
          "a score correction bias is only used by noaux_tc");
    if (failed(expectRank(op, bias, 1, "bias")) ||
        failed(
            expectDim(op, bias, 0, experts, "bias", "the number of experts")))
      return failure();
  }
  if (!(scale.convertToFloat() > 0.0f))
    return op->emitOpError("routed_scaling_factor must be positive");
  return success();
}

LogicalResult RouterOp::verify() {
  if (failed(expectRank(*this, getLogits(), 2, "logits ([tokens, experts])")))
    return failure();
  int64_t experts = tensorType(getLogits()).getDimSize(1);
  if (ShapedType::isDynamic(experts))
    return emitOpError("the number of experts must be static");
  int64_t topK = static_cast<int64_t>(getTopK());
  if (topK < 1 || topK > experts)
    return emitOpError() << "top_k (" << topK << ") must be in [1, " << experts
                         << "]";
  int64_t appended =
      getAppendedExperts() ? static_cast<int64_t>(*getAppendedExperts()) : 0;
  if (appended < 0)
    return emitOpError() << "appended experts (" << appended
                         << ") must not be negative";
  if (getAppendedGate()) {
    if (appended == 0)
      return emitOpError("a gate for appended experts needs append(S)");
    if (failed(expectRank(*this, getAppendedGate(), 2, "appended gate")) ||
        failed(expectDim(*this, getAppendedGate(), 0,
                         tensorType(getLogits()).getDimSize(0), "appended gate",
                         "logits tokens")) ||
        failed(expectDim(*this, getAppendedGate(), 1, 1, "appended gate",
                         "one gate per token")))
      return failure();
  }
  for (auto [value, what] :
       {std::pair<Value, StringRef>{getWeights(), "weights"},
        std::pair<Value, StringRef>{getIndices(), "indices"}}) {
    if (failed(expectRank(*this, value, 2, what)) ||
        failed(expectDim(*this, value, 0, tensorType(getLogits()).getDimSize(0),
                         what, "logits tokens")) ||
        failed(expectDim(*this, value, 1, topK + appended, what,
                         "top_k + appended experts")))
      return failure();
  }

  return verifyRouting(*this, experts, topK, getMethod(), getNGroup(),
                       getTopkGroup(), getBias(), getRoutedScalingFactor());
}

//===----------------------------------------------------------------------===//
// moe.experts / moe.mlp
//===----------------------------------------------------------------------===//

// Checks gate/up `[.., I, H]` and down `[.., H, I]` against hidden size `H`;
// `lead` is the number of leading (expert) dimensions.
static LogicalResult verifySwiGlu(Operation *op, Value gate, Value up,
                                  Value down, int64_t hidden, int64_t lead) {
  int64_t rank = lead + 2;
  if (failed(expectRank(op, gate, rank, "gate weight")) ||
      failed(expectRank(op, up, rank, "up weight")) ||
      failed(expectRank(op, down, rank, "down weight")))
    return failure();
  if (gate.getType() != up.getType())
    return op->emitOpError()
           << "gate weight " << gate.getType() << " and up weight "
           << up.getType() << " must have the same type";
  int64_t inter = tensorType(gate).getDimSize(lead);
  for (int64_t dim = 0; dim < lead; ++dim)
    if (failed(expectDim(op, down, dim, tensorType(gate).getDimSize(dim),
                         "down weight", "the gate weight's experts")))
      return failure();
  if (failed(expectDim(op, gate, lead + 1, hidden, "gate weight",
                       "the hidden size")) ||
      failed(expectDim(op, down, lead, hidden, "down weight",
                       "the hidden size")) ||
      failed(expectDim(op, down, lead + 1, inter, "down weight",
                       "the intermediate size")))
    return failure();
  return success();
}

LogicalResult ExpertsOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input ([tokens, hidden])")) ||
      failed(expectRank(*this, getRoutingWeights(), 2, "routing weights")))
    return failure();
  if (getRoutingWeights().getType().getShape() !=
      tensorType(getExpertIndices()).getShape())
    return emitOpError() << "routing weights " << getRoutingWeights().getType()
                         << " and expert indices "
                         << getExpertIndices().getType()
                         << " must have the same shape";
  int64_t tokens = tensorType(getInput()).getDimSize(0);
  int64_t hidden = tensorType(getInput()).getDimSize(1);
  if (failed(expectDim(*this, getRoutingWeights(), 0, tokens, "routing weights",
                       "input tokens")))
    return failure();
  if (failed(verifySwiGlu(*this, getGateWeight(), getUpWeight(),
                          getDownWeight(), hidden, /*lead=*/1)))
    return failure();
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " must match the input type "
                         << getInput().getType();
  return success();
}

LogicalResult MlpOp::verify() {
  RankedTensorType input = tensorType(getInput());
  if (input.getRank() < 1)
    return emitOpError("input must have rank >= 1");
  if (failed(verifySwiGlu(*this, getGateWeight(), getUpWeight(),
                          getDownWeight(),
                          input.getDimSize(input.getRank() - 1),
                          /*lead=*/0)))
    return failure();
  return success();
}

//===----------------------------------------------------------------------===//
// moe.fused_moe
//===----------------------------------------------------------------------===//

int64_t FusedMoeOp::getNumRoutedExperts() {
  return tensorType(getRouterWeight()).getDimSize(0) -
         (getGatedShared() ? 1 : 0);
}

int64_t FusedMoeOp::getIntermediateSize() {
  return tensorType(getDownWeight()).getDimSize(2);
}

LogicalResult FusedMoeOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input ([tokens, hidden])")) ||
      failed(expectRank(*this, getRouterWeight(), 2, "router weight")) ||
      failed(expectRank(*this, getGateUpWeight(), 3, "gate/up weight")) ||
      failed(expectRank(*this, getDownWeight(), 3, "down weight")))
    return failure();
  int64_t hidden = tensorType(getInput()).getDimSize(1);
  int64_t rows = tensorType(getRouterWeight()).getDimSize(0);
  if (ShapedType::isDynamic(hidden) || ShapedType::isDynamic(rows))
    return emitOpError("hidden size and router rows must be static");
  if (failed(expectDim(*this, getRouterWeight(), 1, hidden, "router weight",
                       "the hidden size")))
    return failure();
  int64_t shared = static_cast<int64_t>(getSharedExperts());
  if (shared < 0)
    return emitOpError() << "shared experts (" << shared
                         << ") must not be negative";
  if (getGatedShared() && shared == 0)
    return emitOpError("a gated shared expert needs shared(S) with S > 0");
  int64_t experts = getNumRoutedExperts();
  int64_t topK = static_cast<int64_t>(getTopK());
  if (topK < 1 || topK > experts)
    return emitOpError() << "top_k (" << topK << ") must be in [1, " << experts
                         << "]";
  int64_t inter = getIntermediateSize();
  if (ShapedType::isDynamic(inter) || inter < 1)
    return emitOpError("the intermediate size must be static");
  if (failed(expectDim(*this, getGateUpWeight(), 0, experts + shared,
                       "gate/up weight", "routed + shared experts")) ||
      failed(expectDim(*this, getGateUpWeight(), 1, 2 * inter, "gate/up weight",
                       "twice the intermediate size")) ||
      failed(expectDim(*this, getGateUpWeight(), 2, hidden, "gate/up weight",
                       "the hidden size")) ||
      failed(expectDim(*this, getDownWeight(), 0, experts + shared,
                       "down weight", "routed + shared experts")) ||
      failed(expectDim(*this, getDownWeight(), 1, hidden, "down weight",
                       "the hidden size")))
    return failure();
  if (getResult().getType() != getInput().getType())
    return emitOpError() << "result type " << getResult().getType()
                         << " must match the input type "
                         << getInput().getType();
  return verifyRouting(*this, experts, topK, getMethod(), getNGroup(),
                       getTopkGroup(), getBias(), getRoutedScalingFactor());
}

//===----------------------------------------------------------------------===//
// moe.sigmoid_gate
//===----------------------------------------------------------------------===//

LogicalResult SigmoidGateOp::verify() {
  if (failed(expectRank(*this, getInput(), 2, "input ([tokens, hidden])")) ||
      failed(expectRank(*this, getGate(), 2, "gate ([tokens, 1])")) ||
      failed(expectDim(*this, getGate(), 0,
                       tensorType(getInput()).getDimSize(0), "gate",
                       "input tokens")))
    return failure();
  if (tensorType(getGate()).getDimSize(1) != 1)
    return emitOpError() << "gate dimension 1 must be 1, got "
                         << sizeStr(tensorType(getGate()).getDimSize(1));
  return success();
}
