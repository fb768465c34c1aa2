//===- Planner.cpp - moe entry points -> CPU dispatch plans ---------------===//
//
// Part of moec. Walks each entry function of the optimized `moe` module (a
// straight-line list of ops) and turns it into dispatches of generated
// kernels. Every tensor value gets a binding: a weight (compile-time
// expression over checkpoint tensors), a KV cache, the call's token ids or
// logits, or a slot of the activation arena. Arena slots are planned for the
// entry's largest token count with liveness-based reuse; reshapes alias
// their source, since all buffers are dense row-major.
//
//===----------------------------------------------------------------------===//

#include "moec/Conversion/CpuBackend.h"

#include "CpuKernels.h"
#include "moe/IR/MoeOps.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FormatVariadic.h"

#include <cmath>
#include <map>

using namespace mlir;
using llvm::formatv;

namespace moec::cpu {

uint64_t PlannedWeight::parameters() const {
  uint64_t count = 1;
  for (int64_t dim : shape)
    count *= static_cast<uint64_t>(dim);
  return count;
}

uint64_t PlannedWeight::bytes() const {
  uint64_t count = parameters();
  switch (type) {
  case WeightType::F32:
    return count * 4;
  case WeightType::BF16:
    return count * 2;
  case WeightType::Q8_0:
    return count / 32 * 34;
  }
  return 0;
}

namespace {

constexpr uint64_t kArenaAlignment = 64;

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

// Elements per token of an activation ([T, ...] with T dynamic or fixed).
int64_t perToken(Value value) {
  int64_t count = 1;
  for (int64_t dim : tensorType(value).getShape().drop_front())
    count *= dim;
  return count;
}

//===----------------------------------------------------------------------===//
// RoPE frequencies, as transformers' rope init functions compute them
//===----------------------------------------------------------------------===//

double getMscale(double scale, double mscale) {
  return scale <= 1.0 ? 1.0 : 0.1 * mscale * std::log(scale) + 1.0;
}

void ropeTables(moe::RopeOp op, std::vector<float> &invFreq,
                double &attentionFactor) {
  int64_t dim = tensorType(op.getInput()).getDimSize(2) -
                (op.getRotaryOffset() ? *op.getRotaryOffset() : 0);
  float base = static_cast<float>(op.getTheta().convertToDouble());
  invFreq.clear();
  for (int64_t i = 0; i < dim; i += 2)
    invFreq.push_back(
        1.0f / std::pow(base, static_cast<float>(i) / static_cast<float>(dim)));
  attentionFactor = 1.0;
  auto attr = [&](std::optional<llvm::APFloat> value, double fallback) {
    return value ? value->convertToDouble() : fallback;
  };
  double factor = attr(op.getFactor(), 1.0);
  switch (op.getScaling()) {
  case moe::RopeScaling::none:
    break;
  case moe::RopeScaling::linear:
    for (float &f : invFreq)
      f = static_cast<float>(f / factor);
    break;
  case moe::RopeScaling::yarn: {
    double betaFast = attr(op.getBetaFast(), 32.0);
    double betaSlow = attr(op.getBetaSlow(), 1.0);
    double original =
        static_cast<double>(*op.getOriginalMaxPositionEmbeddings());
    std::optional<llvm::APFloat> mscale = op.getMscale();
    std::optional<llvm::APFloat> mscaleAll = op.getMscaleAllDim();
    if (mscale && mscaleAll && mscale->convertToDouble() != 0.0 &&
        mscaleAll->convertToDouble() != 0.0)
      attentionFactor = getMscale(factor, mscale->convertToDouble()) /
                        getMscale(factor, mscaleAll->convertToDouble());
    else
      attentionFactor = getMscale(factor, 1.0);
    auto correctionDim = [&](double rotations) {
      return (dim * std::log(original / (rotations * 2 * M_PI))) /
             (2 * std::log(static_cast<double>(base)));
    };
    double low = std::max(std::floor(correctionDim(betaFast)), 0.0);
    double high = std::min(std::ceil(correctionDim(betaSlow)),
                           static_cast<double>(dim - 1));
    if (low == high)
      high += 0.001;
    for (size_t i = 0; i < invFreq.size(); ++i) {
      float pos =
          std::pow(base, static_cast<float>(2 * i) / static_cast<float>(dim));
      float extrapolation = 1.0f / pos;
      float interpolation = 1.0f / (static_cast<float>(factor) * pos);
      float ramp =
          static_cast<float>((static_cast<double>(i) - low) / (high - low));
      ramp = std::clamp(ramp, 0.0f, 1.0f);
      float extrapolationFactor = 1.0f - ramp;
      invFreq[i] = interpolation * (1.0f - extrapolationFactor) +
                   extrapolation * extrapolationFactor;
    }
    break;
  }
  case moe::RopeScaling::llama3: {
    double low = attr(op.getLowFreqFactor(), 1.0);
    double high = attr(op.getHighFreqFactor(), 4.0);
    double original =
        static_cast<double>(*op.getOriginalMaxPositionEmbeddings());
    double lowWavelen = original / low, highWavelen = original / high;
    for (float &f : invFreq) {
      double wavelen = 2 * M_PI / f;
      double scaled = wavelen > lowWavelen ? f / factor : f;
      double smooth = (original / wavelen - low) / (high - low);
      double smoothed = (1 - smooth) * scaled / factor + smooth * scaled;
      bool medium = !(wavelen < highWavelen) && !(wavelen > lowWavelen);
      f = static_cast<float>(medium ? smoothed : scaled);
    }
    break;
  }
  }
}

// The router kernel's spec from the routing attributes moe.router and
// moe.fused_moe share; `experts` are the scored (routed) experts.
template <typename RoutingOp>
static KernelLibrary::RouterSpec routerSpec(RoutingOp op, int64_t experts) {
  KernelLibrary::RouterSpec spec;
  spec.experts = experts;
  spec.topK = static_cast<int64_t>(op.getTopK());
  spec.sigmoid = op.getScoring() == moe::ScoringFunc::sigmoid;
  spec.grouping = op.getMethod() == moe::TopKMethod::greedy
                      ? KernelLibrary::RouterSpec::Greedy
                  : op.getMethod() == moe::TopKMethod::noaux_tc
                      ? KernelLibrary::RouterSpec::GroupTop2
                      : KernelLibrary::RouterSpec::GroupMax;
  spec.groups = op.getNGroup() ? *op.getNGroup() : 1;
  spec.keptGroups = op.getTopkGroup() ? *op.getTopkGroup() : 1;
  spec.bias = static_cast<bool>(op.getBias());
  spec.normalize = op.getNormTopkProb();
  spec.scale = op.getRoutedScalingFactor().convertToDouble();
  return spec;
}

//===----------------------------------------------------------------------===//
// The planner
//===----------------------------------------------------------------------===//

// A binding before arena offsets are known: Arena bindings name a virtual
// buffer.
struct VirtualBinding {
  PlannedBinding::Kind kind;
  uint32_t index;
  // Arena: bytes into the buffer (a view of part of it).
  uint64_t byteOffset = 0;
};

struct VirtualDispatch {
  unsigned kernel;
  llvm::SmallVector<VirtualBinding, 8> bindings;
  int64_t workPerToken, workFixed;
  std::string what;
  uint64_t weightBytesRead;
  // A few items of little work (a decode token's norms, ropes, cache
  // writes): may run on one thread inside a neighbouring dispatch.
  bool tiny = false;
  bool hasSideJob = false;
  int64_t grain = 0;
};

class Planner {
public:
  Planner(CpuProgram &program, KernelLibrary &kernels,
          const CpuOptions &options)
      : program(program), kernels(kernels), options(options) {}

  llvm::Error planEntry(func::FuncOp func, int64_t maxTokens);

private:
  llvm::Error planOp(Operation *op);
  /// The routed SwiGLU experts given routing weights/indices bindings
  /// ([T, slots] each): token-grouped on the CPU, per token on CUDA.
  /// `upWeight` is null for a packed [E, 2 I, H] gate/up weight.
  void planExperts(Operation *op, VirtualBinding x, VirtualBinding routing,
                   VirtualBinding indices, Value gateWeight, Value upWeight,
                   Value downWeight, Value result, int64_t slots);
  llvm::Error fail(Operation *op, const llvm::Twine &message) {
    std::string text;
    llvm::raw_string_ostream os(text);
    os << "cannot lower '" << op->getName() << "' for the CPU: " << message;
    return llvm::createStringError(text);
  }

  // Bindings of values.
  std::optional<WeightExpr> weightExpr(Value value);
  VirtualBinding weight(Value value);
  VirtualBinding input(Value value) {
    auto it = bound.find(value);
    if (it != bound.end())
      return it->second;
    badOperand = true; // reported by planEntry for the op being planned
    return {PlannedBinding::TokenIds, 0};
  }
  VirtualBinding output(Value value);
  VirtualBinding temporary(uint64_t bytes);
  /// `weightShare`: the fraction of the weights bound from binding
  /// `sharedFrom` on that one call reads (those before are read whole).
  void dispatch(unsigned kernel, llvm::ArrayRef<VirtualBinding> bindings,
                int64_t workPerToken, int64_t workFixed, Operation *op,
                double weightShare = 1.0, unsigned sharedFrom = 0);
  Elt weightElt() const {
    switch (options.weightType) {
    case WeightType::BF16:
      return Elt::BF16;
    case WeightType::Q8_0:
      return Elt::Q8;
    case WeightType::F32:
      break;
    }
    return Elt::F32;
  }
  /// Prefill with bf16-pair dot products: the activations' rows are rounded
  /// to bf16 once, by a dispatch of their own, instead of in every dot
  /// product (a single token's kernels round their row themselves).
  bool roundsInputs() const {
    return kernels.usesBf16Dot() && weightElt() == Elt::BF16 && maxTokens > 1;
  }
  /// x, or (roundsInputs) its bf16 copy: `perToken` rows of `length`.
  VirtualBinding roundedInput(VirtualBinding x, int64_t perToken,
                              int64_t length, Operation *op) {
    if (!roundsInputs())
      return x;
    VirtualBinding rounded =
        temporary(static_cast<uint64_t>(maxTokens) * perToken * length * 2);
    dispatch(kernels.roundRows(length), {x, rounded}, perToken, 0, op);
    return rounded;
  }
  uint64_t bytesOf(Value value) const {
    auto type = tensorType(value);
    uint64_t count = 1;
    for (int64_t dim : type.getShape())
      count *= ShapedType::isDynamic(dim) ? maxTokens : dim;
    return count * 4; // f32 activations, i32 expert indices
  }

  CpuProgram &program;
  KernelLibrary &kernels;
  const CpuOptions &options;
  llvm::StringMap<unsigned> weightIndex;

  // Per entry.
  int64_t maxTokens = 0;
  llvm::DenseMap<Value, VirtualBinding> bound;
  Value logitsValue;
  bool lastLogitsOnly = false; // the logits are the last position's row
  std::vector<uint64_t> bufferBytes;
  std::vector<unsigned> bufferFirst, bufferLast; // dispatch indices
  std::vector<VirtualDispatch> dispatches;
  // Set when an operand has no binding or a weight operand is not a
  // compile-time weight expression.
  bool badOperand = false, badWeight = false;
  // The weight --dtype=q8_0 cannot store (its rows are not whole blocks).
  std::string q8Misfit;

  // Single-token (CPU decode) fusion: an RMSNorm whose only user is a
  // projection or a moe.fused_moe runs inside that user's kernel.
  struct PendingNorm {
    KernelLibrary::NormPrologue prologue;
    llvm::SmallVector<VirtualBinding, 4> bindings; // a, [b,] weight, [sum]
  };
  llvm::DenseMap<Value, PendingNorm> pendingNorms;
  bool singleTokenCpu() const {
    return options.cudaChip.empty() && maxTokens == 1;
  }
  bool takesNormPrologue(Value normalized);
  bool fusedMoeDecode(moe::FusedMoeOp op);
  void markTiny() { dispatches.back().tiny = true; }
  // A rope whose only user is the query of an absorbed MLA runs item by
  // item inside the attention dispatch (one token on the CPU).
  struct PendingRope {
    unsigned kernel;
    VirtualBinding input;
  };
  llvm::DenseMap<Value, PendingRope> pendingRopes;
  void mergeTinyDispatches();
  void recomputeLiveness();
};

std::optional<WeightExpr> Planner::weightExpr(Value value) {
  Operation *def = value.getDefiningOp();
  if (!def)
    return std::nullopt;
  WeightExpr expr;
  expr.shape.assign(tensorType(value).getShape().begin(),
                    tensorType(value).getShape().end());
  if (auto param = dyn_cast<moe::ParamOp>(def)) {
    expr.kind = WeightExpr::Param;
    expr.name = param.getName().str();
    return expr;
  }
  if (auto stack = dyn_cast<moe::StackOp>(def)) {
    expr.kind = WeightExpr::Stack;
    for (Value operand : stack.getInputs()) {
      std::optional<WeightExpr> child = weightExpr(operand);
      if (!child)
        return std::nullopt;
      expr.operands.push_back(std::move(*child));
    }
    return expr;
  }
  if (auto concat = dyn_cast<tensor::ConcatOp>(def)) {
    expr.kind = WeightExpr::Concat;
    expr.dim = static_cast<int64_t>(concat.getDim());
    for (Value operand : concat.getInputs()) {
      std::optional<WeightExpr> child = weightExpr(operand);
      if (!child)
        return std::nullopt;
      expr.operands.push_back(std::move(*child));
    }
    return expr;
  }
  if (auto dequant = dyn_cast<moe::DequantizeFp8Op>(def)) {
    std::optional<WeightExpr> q = weightExpr(dequant.getInput());
    std::optional<WeightExpr> s = weightExpr(dequant.getScaleInv());
    if (!q || !s)
      return std::nullopt;
    expr.kind = WeightExpr::DequantizeFp8;
    expr.operands = {std::move(*q), std::move(*s)};
    expr.blockRows = static_cast<int64_t>(dequant.getBlockRows());
    expr.blockCols = static_cast<int64_t>(dequant.getBlockCols());
    return expr;
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(def)) {
    std::optional<WeightExpr> source = weightExpr(slice.getSource());
    if (!source || !slice.hasUnitStride() || !slice.getStaticOffsets().size())
      return std::nullopt;
    // Exactly one sliced dimension.
    int64_t slicedDim = -1;
    for (auto [dim, size] :
         llvm::enumerate(tensorType(slice.getSource()).getShape()))
      if (slice.getStaticSizes()[dim] != size)
        slicedDim = dim;
    if (slicedDim < 0)
      return source;
    expr.kind = WeightExpr::Slice;
    expr.dim = slicedDim;
    expr.offset = slice.getStaticOffsets()[slicedDim];
    expr.size = slice.getStaticSizes()[slicedDim];
    expr.operands = {std::move(*source)};
    return expr;
  }
  return std::nullopt;
}

// A readable, unique key and display name of a weight expression.
static std::string exprKey(const WeightExpr &expr) {
  switch (expr.kind) {
  case WeightExpr::Param:
    return expr.name;
  case WeightExpr::Stack:
  case WeightExpr::Concat: {
    std::string key = expr.kind == WeightExpr::Stack ? "stack("
                      : expr.dim == 0                ? "concat("
                                      : formatv("concat{0}(", expr.dim).str();
    for (const WeightExpr &child : expr.operands)
      key += exprKey(child) + ",";
    return key + ")";
  }
  case WeightExpr::Slice:
    return formatv("{0}[dim {1}: {2}+{3}]", exprKey(expr.operands[0]), expr.dim,
                   expr.offset, expr.size)
        .str();
  case WeightExpr::DequantizeFp8:
    return exprKey(expr.operands[0]);
  }
  return "";
}

// "a.experts.0.b", "a.experts.1.b", ... -> "a.experts.*.b". A concatenation
// of parts with different names ("stack + shared slices") joins them.
static std::string displayName(const WeightExpr &expr) {
  if (expr.kind != WeightExpr::Stack && expr.kind != WeightExpr::Concat)
    return exprKey(expr);
  // Side by side along a later dim (packed gate/up): "gate | up".
  if (expr.kind == WeightExpr::Concat && expr.dim != 0) {
    std::string name;
    for (const WeightExpr &operand : expr.operands)
      name += (name.empty() ? "" : " | ") + displayName(operand);
    return name;
  }
  if (expr.kind == WeightExpr::Concat &&
      llvm::any_of(expr.operands, [](const WeightExpr &operand) {
        return operand.kind == WeightExpr::Stack;
      })) {
    std::string name;
    for (const WeightExpr &operand : expr.operands)
      name += (name.empty() ? "" : " + ") + displayName(operand);
    return name;
  }
  std::string first = displayName(expr.operands.front());
  std::string last = displayName(expr.operands.back());
  size_t prefix = 0;
  while (prefix < first.size() && prefix < last.size() &&
         first[prefix] == last[prefix])
    ++prefix;
  size_t suffix = 0;
  while (suffix < first.size() - prefix && suffix < last.size() - prefix &&
         first[first.size() - 1 - suffix] == last[last.size() - 1 - suffix])
    ++suffix;
  return first.substr(0, prefix) + "*" + first.substr(first.size() - suffix);
}

VirtualBinding Planner::weight(Value value) {
  std::optional<WeightExpr> expr = weightExpr(value);
  if (!expr) {
    badWeight = true; // reported by planEntry for the op being planned
    return {PlannedBinding::Weight, 0};
  }
  std::string key = exprKey(*expr);
  auto [it, inserted] = weightIndex.try_emplace(key, program.weights.size());
  if (inserted && expr->shape.size() >= 2 &&
      options.weightType == WeightType::Q8_0 && expr->shape.back() % 32 != 0) {
    // Rows must be whole Q8_0 blocks for the kernels' vector loads.
    q8Misfit = displayName(*expr) + " (rows of " +
               std::to_string(expr->shape.back()) + ")";
    badWeight = true;
    weightIndex.erase(it);
    return {PlannedBinding::Weight, 0};
  }
  if (inserted) {
    PlannedWeight planned;
    planned.name = displayName(*expr);
    planned.shape = expr->shape;
    // Vectors (norms, biases, router bias) stay f32; matrices follow
    // --dtype.
    planned.type =
        expr->shape.size() >= 2 ? options.weightType : WeightType::F32;
    planned.expr = std::move(*expr);
    program.weights.push_back(std::move(planned));
  }
  return {PlannedBinding::Weight, it->second};
}

VirtualBinding Planner::temporary(uint64_t bytes) {
  bufferBytes.push_back(bytes);
  bufferFirst.push_back(dispatches.size());
  bufferLast.push_back(dispatches.size());
  return {PlannedBinding::Arena, static_cast<uint32_t>(bufferBytes.size() - 1)};
}

VirtualBinding Planner::output(Value value) {
  VirtualBinding binding = value == logitsValue
                               ? VirtualBinding{PlannedBinding::Logits, 0}
                               : temporary(bytesOf(value));
  bound[value] = binding;
  return binding;
}

void Planner::dispatch(unsigned kernel, llvm::ArrayRef<VirtualBinding> bindings,
                       int64_t workPerToken, int64_t workFixed, Operation *op,
                       double weightShare, unsigned sharedFrom) {
  double weightBytes = 0;
  for (auto [position, binding] : llvm::enumerate(bindings))
    if (binding.kind == PlannedBinding::Weight &&
        binding.index < program.weights.size())
      weightBytes +=
          static_cast<double>(program.weights[binding.index].bytes()) *
          (position >= sharedFrom ? weightShare : 1.0);
  for (const VirtualBinding &binding : bindings)
    if (binding.kind == PlannedBinding::Arena) {
      bufferFirst[binding.index] =
          std::min<unsigned>(bufferFirst[binding.index], dispatches.size());
      bufferLast[binding.index] = dispatches.size();
    }
  std::string what;
  llvm::raw_string_ostream os(what);
  os << op->getName();
  dispatches.push_back({kernel, llvm::SmallVector<VirtualBinding, 8>(bindings),
                        workPerToken, workFixed, what,
                        static_cast<uint64_t>(weightBytes)});
}

llvm::Error Planner::planEntry(func::FuncOp func, int64_t entryMaxTokens) {
  maxTokens = entryMaxTokens;
  bound.clear();
  pendingNorms.clear();
  pendingRopes.clear();
  bufferBytes.clear();
  bufferFirst.clear();
  bufferLast.clear();
  dispatches.clear();

  // Arguments: ids, start_pos, then a key and a value cache per layer.
  Block &body = func.getBody().front();
  if (body.getNumArguments() < 2 || body.getNumArguments() % 2 != 0)
    return llvm::createStringError("entry point @" + func.getName() +
                                   " does not have the (ids, start_pos, "
                                   "caches...) signature");
  bound[body.getArgument(0)] = {PlannedBinding::TokenIds, 0};
  unsigned layers = (body.getNumArguments() - 2) / 2;
  for (unsigned layer = 0; layer < layers; ++layer) {
    bound[body.getArgument(2 + 2 * layer)] = {PlannedBinding::KeyCache, layer};
    bound[body.getArgument(3 + 2 * layer)] = {PlannedBinding::ValueCache,
                                              layer};
  }
  if (program.kvCaches.empty())
    for (unsigned layer = 0; layer < layers; ++layer) {
      PlannedKvCache cache;
      auto key = tensorType(body.getArgument(2 + 2 * layer)).getShape();
      auto value = tensorType(body.getArgument(3 + 2 * layer)).getShape();
      cache.keyShape.assign(key.begin(), key.end());
      cache.valueShape.assign(value.begin(), value.end());
      program.kvCaches.push_back(cache);
    }
  auto ret = cast<func::ReturnOp>(body.getTerminator());
  logitsValue = ret.getOperand(0);
  lastLogitsOnly = false;

  for (Operation &op : body.without_terminator()) {
    badOperand = badWeight = false;
    if (llvm::Error err = planOp(&op))
      return err;
    if (badOperand)
      return fail(&op, "an operand is not produced by an op the CPU backend "
                       "lowers");
    if (badWeight && !q8Misfit.empty())
      return llvm::createStringError(
          "--dtype=q8_0 needs weight rows of a multiple of 32 values; " +
          q8Misfit + " is not");
    if (badWeight)
      return fail(&op, "a weight operand is not a compile-time weight "
                       "(moe.param and transforms of it)");
  }
  if (bound.lookup(logitsValue).kind != PlannedBinding::Logits)
    return llvm::createStringError("entry point @" + func.getName() +
                                   ": the logits are not produced by a "
                                   "kernel");
  for (unsigned i = 1; i < ret.getNumOperands(); ++i) {
    VirtualBinding cache = bound.lookup(ret.getOperand(i));
    if (cache.kind != PlannedBinding::KeyCache &&
        cache.kind != PlannedBinding::ValueCache)
      return llvm::createStringError("entry point @" + func.getName() +
                                     ": returned cache is not a cache");
  }

  if (singleTokenCpu()) {
    mergeTinyDispatches();
    recomputeLiveness();
  }

  // Arena offsets: first fit over buffers sorted by first use; a buffer's
  // bytes are free again after its last use.
  std::vector<uint64_t> offsets(bufferBytes.size(), 0);
  std::vector<unsigned> order(bufferBytes.size());
  for (unsigned i = 0; i < order.size(); ++i)
    order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](unsigned a, unsigned b) {
    return bufferFirst[a] < bufferFirst[b];
  });
  std::vector<unsigned> placed;
  uint64_t arenaBytes = 0;
  for (unsigned buffer : order) {
    uint64_t size = llvm::alignTo(bufferBytes[buffer], kArenaAlignment);
    // Intervals of live buffers overlapping this one in time.
    std::vector<std::pair<uint64_t, uint64_t>> busy;
    for (unsigned other : placed)
      if (!(bufferLast[other] < bufferFirst[buffer] ||
            bufferLast[buffer] < bufferFirst[other]))
        busy.push_back(
            {offsets[other], offsets[other] + llvm::alignTo(bufferBytes[other],
                                                            kArenaAlignment)});
    std::sort(busy.begin(), busy.end());
    uint64_t candidate = 0;
    for (auto [begin, end] : busy) {
      if (candidate + size <= begin)
        break;
      candidate = std::max(candidate, end);
    }
    offsets[buffer] = candidate;
    arenaBytes = std::max(arenaBytes, candidate + size);
    placed.push_back(buffer);
  }

  PlannedEntry entry;
  entry.name = func.getName().str();
  entry.maxTokens = maxTokens;
  entry.arenaBytes = arenaBytes;
  entry.allLogits = !lastLogitsOnly;
  for (const VirtualDispatch &d : dispatches) {
    PlannedDispatch planned;
    planned.kernel = d.kernel;
    planned.workPerToken = d.workPerToken;
    planned.workFixed = d.workFixed;
    planned.grain = d.grain;
    planned.what = d.what;
    planned.weightBytesRead = d.weightBytesRead;
    for (const VirtualBinding &b : d.bindings) {
      bool arena = b.kind == PlannedBinding::Arena;
      planned.bindings.push_back(
          {b.kind, arena ? 0 : b.index,
           arena ? offsets[b.index] + b.byteOffset : 0,
           arena ? bufferBytes[b.index] - b.byteOffset : 0});
    }
    entry.dispatches.push_back(std::move(planned));
  }
  program.entries.push_back(std::move(entry));
  return llvm::Error::success();
}

llvm::Error Planner::planOp(Operation *op) {
  // Scalars and shapes: nothing to run.
  if (isa<arith::ConstantOp, tensor::DimOp, tensor::EmptyOp>(op))
    return llvm::Error::success();
  // Weights: compile-time expressions, bound on first use.
  if (isa<moe::ParamOp, moe::StackOp, moe::DequantizeFp8Op>(op))
    return llvm::Error::success();
  if (isa<tensor::ExtractSliceOp, tensor::ConcatOp>(op) &&
      weightExpr(op->getResult(0)))
    return llvm::Error::success();
  auto w = [&](Value value) { return weight(value); };

  // Reshapes of dense row-major buffers are free.
  if (isa<tensor::ExpandShapeOp, tensor::CollapseShapeOp>(op)) {
    bound[op->getResult(0)] = input(op->getOperand(0));
    return llvm::Error::success();
  }

  if (auto embed = dyn_cast<moe::EmbeddingOp>(op)) {
    if (input(embed.getIds()).kind != PlannedBinding::TokenIds)
      return fail(op, "ids must be the entry point's token ids");
    auto table = tensorType(embed.getTable());
    unsigned k = kernels.embedding(weightElt(), table.getDimSize(0),
                                   table.getDimSize(1));
    VirtualBinding t = w(embed.getTable()), ids = input(embed.getIds());
    // A token reads one row of the table.
    dispatch(k, {t, ids, output(embed.getResult())}, 1, 0, op,
             1.0 / static_cast<double>(table.getDimSize(0)));
    return llvm::Error::success();
  }
  if (auto norm = dyn_cast<moe::RmsNormOp>(op)) {
    int64_t hidden = tensorType(norm.getInput()).getShape().back();
    if (takesNormPrologue(norm.getResult())) {
      PendingNorm pending;
      pending.prologue = {true, false, hidden,
                          norm.getEpsilon().convertToDouble()};
      pending.bindings = {input(norm.getInput()), w(norm.getWeight())};
      pendingNorms[norm.getResult()] = std::move(pending);
      return llvm::Error::success();
    }
    unsigned k = kernels.rmsNorm(hidden, norm.getEpsilon().convertToDouble());
    VirtualBinding x = input(norm.getInput()), wt = w(norm.getWeight());
    dispatch(k, {x, wt, output(norm.getResult())},
             perToken(norm.getInput()) / hidden, 0, op);
    markTiny();
    return llvm::Error::success();
  }
  if (auto norm = dyn_cast<moe::AddRmsNormOp>(op)) {
    int64_t hidden = tensorType(norm.getInput()).getShape().back();
    if (takesNormPrologue(norm.getResult())) {
      PendingNorm pending;
      pending.prologue = {true, true, hidden,
                          norm.getEpsilon().convertToDouble()};
      pending.bindings = {input(norm.getInput()), input(norm.getResidual()),
                          w(norm.getWeight()), output(norm.getSum())};
      pendingNorms[norm.getResult()] = std::move(pending);
      return llvm::Error::success();
    }
    unsigned k =
        kernels.addRmsNorm(hidden, norm.getEpsilon().convertToDouble());
    VirtualBinding a = input(norm.getInput()), b = input(norm.getResidual()),
                   wt = w(norm.getWeight());
    VirtualBinding sum = output(norm.getSum());
    dispatch(k, {a, b, wt, sum, output(norm.getResult())},
             perToken(norm.getInput()) / hidden, 0, op);
    return llvm::Error::success();
  }
  if (isa<moe::AddOp, moe::MulOp>(op)) {
    unsigned k = kernels.elementwise(isa<moe::AddOp>(op) ? "addf" : "mulf");
    VirtualBinding a = input(op->getOperand(0)), b = input(op->getOperand(1));
    dispatch(k, {a, b, output(op->getResult(0))}, perToken(op->getResult(0)), 0,
             op);
    return llvm::Error::success();
  }
  if (auto gate = dyn_cast<moe::SigmoidGateOp>(op)) {
    int64_t hidden = perToken(gate.getInput());
    unsigned k = kernels.sigmoidGate(hidden);
    VirtualBinding x = input(gate.getInput()), g = input(gate.getGate());
    dispatch(k, {x, g, output(gate.getResult())}, hidden, 0, op);
    return llvm::Error::success();
  }
  if (auto linear = dyn_cast<moe::LinearOp>(op)) {
    if (tensorType(linear.getInput()).getRank() != 2)
      return fail(op, "only [tokens, features] inputs are supported");
    auto weightType = tensorType(linear.getWeight());
    int64_t out = weightType.getDimSize(0), in = weightType.getDimSize(1);
    // Generation reads only the last position's logits: skip the other
    // rows of the (vocabulary-sized) lm_head in prefill when asked.
    bool lastRow = options.lastLogitsOnly && maxTokens > 1 &&
                   linear.getResult() == logitsValue;
    lastLogitsOnly |= lastRow;
    // One token (a norm in front or not): the single-token kernel, rows
    // four at a time from tile boundaries, x rounded once per range for
    // bf16 pairs.
    auto pending = pendingNorms.find(linear.getInput());
    if (pending != pendingNorms.end() ||
        (maxTokens == 1 && options.cudaChip.empty())) {
      KernelLibrary::NormPrologue prologue;
      prologue.hidden = in;
      llvm::SmallVector<VirtualBinding, 8> bindings;
      if (pending != pendingNorms.end()) {
        prologue = pending->second.prologue;
        bindings.assign(pending->second.bindings.begin(),
                        pending->second.bindings.end());
      } else {
        bindings.push_back(input(linear.getInput()));
      }
      bindings.push_back(w(linear.getWeight()));
      if (linear.getBias())
        bindings.push_back(w(linear.getBias()));
      bindings.push_back(output(linear.getResult()));
      dispatch(kernels.normLinear(prologue, weightElt(), out,
                                  static_cast<bool>(linear.getBias())),
               bindings, 0, out, op);
      dispatches.back().grain = 4;
      return llvm::Error::success();
    }
    unsigned k =
        lastRow ? kernels.lastRowLinear(weightElt(), in, out,
                                        static_cast<bool>(linear.getBias()))
                : kernels.linear(weightElt(), in, out,
                                 static_cast<bool>(linear.getBias()),
                                 roundsInputs());
    VirtualBinding x = input(linear.getInput());
    if (!lastRow)
      x = roundedInput(x, 1, in, op);
    llvm::SmallVector<VirtualBinding, 4> bindings{x, w(linear.getWeight())};
    if (linear.getBias())
      bindings.push_back(w(linear.getBias()));
    bindings.push_back(output(linear.getResult()));
    dispatch(k, bindings, 0, out, op);
    return llvm::Error::success();
  }
  if (auto mlp = dyn_cast<moe::MlpOp>(op)) {
    auto gateType = tensorType(mlp.getGateWeight());
    int64_t inter = gateType.getDimSize(0), hidden = gateType.getDimSize(1);
    VirtualBinding h = temporary(static_cast<uint64_t>(maxTokens) * inter * 4);
    if (auto pending = pendingNorms.find(mlp.getInput());
        pending != pendingNorms.end()) {
      llvm::SmallVector<VirtualBinding, 8> bindings(
          pending->second.bindings.begin(), pending->second.bindings.end());
      bindings.append({w(mlp.getGateWeight()), w(mlp.getUpWeight()), h});
      dispatch(kernels.normGateUp(pending->second.prologue, weightElt(), inter),
               bindings, 0, inter / 2, op);
    } else {
      VirtualBinding x = roundedInput(input(mlp.getInput()), 1, hidden, op);
      dispatch(kernels.gateUp(weightElt(), hidden, inter, roundsInputs()),
               {x, w(mlp.getGateWeight()), w(mlp.getUpWeight()), h}, 0, inter,
               op);
    }
    dispatch(kernels.linear(weightElt(), inter, hidden, false, roundsInputs()),
             {roundedInput(h, 1, inter, op), w(mlp.getDownWeight()),
              output(mlp.getResult())},
             0, hidden, op);
    return llvm::Error::success();
  }
  if (auto router = dyn_cast<moe::RouterOp>(op)) {
    if (tensorType(router.getIndices())
            .getElementType()
            .getIntOrFloatBitWidth() != 32)
      return fail(op, "expert indices must be i32");
    KernelLibrary::RouterSpec spec =
        routerSpec(router, tensorType(router.getLogits()).getDimSize(1));
    spec.appended = router.getAppendedExperts()
                        ? static_cast<int64_t>(*router.getAppendedExperts())
                        : 0;
    spec.gatedAppend = static_cast<bool>(router.getAppendedGate());
    llvm::SmallVector<VirtualBinding, 4> bindings{input(router.getLogits())};
    if (router.getBias())
      bindings.push_back(w(router.getBias()));
    if (router.getAppendedGate())
      bindings.push_back(input(router.getAppendedGate()));
    bindings.push_back(output(router.getWeights()));
    bindings.push_back(output(router.getIndices()));
    dispatch(kernels.router(spec), bindings, 1, 0, op);
    return llvm::Error::success();
  }
  if (auto experts = dyn_cast<moe::ExpertsOp>(op)) {
    planExperts(
        op, input(experts.getInput()), input(experts.getRoutingWeights()),
        input(experts.getExpertIndices()), experts.getGateWeight(),
        experts.getUpWeight(), experts.getDownWeight(), experts.getResult(),
        tensorType(experts.getExpertIndices()).getDimSize(1));
    return llvm::Error::success();
  }
  if (auto fused = dyn_cast<moe::FusedMoeOp>(op)) {
    auto gateUpType = tensorType(fused.getGateUpWeight());
    int64_t hidden = gateUpType.getDimSize(2);
    int64_t inter = fused.getIntermediateSize();
    KernelLibrary::RouterSpec spec =
        routerSpec(fused, fused.getNumRoutedExperts());
    spec.appended = static_cast<int64_t>(fused.getSharedExperts());
    spec.gatedAppend = fused.getGatedShared();
    spec.gateInLogits = true;
    int64_t slots = spec.topK + spec.appended;
    int64_t rows = spec.logitsRow();
    uint64_t routeBytes = static_cast<uint64_t>(maxTokens) * slots * 4;
    VirtualBinding routing = temporary(routeBytes),
                   indices = temporary(routeBytes);
    if (fusedMoeDecode(fused)) {
      // One token: the norm before the block (when it has no other user),
      // the router logits and the top-k run inside the gate/up dispatch;
      // the weighted sum inside the down dispatch.
      KernelLibrary::NormPrologue norm;
      llvm::SmallVector<VirtualBinding, 12> bindings;
      if (auto pending = pendingNorms.find(fused.getInput());
          pending != pendingNorms.end()) {
        norm = pending->second.prologue;
        bindings.append(pending->second.bindings);
      } else {
        bindings.push_back(input(fused.getInput()));
      }
      bindings.push_back(w(fused.getRouterWeight()));
      if (fused.getBias())
        bindings.push_back(w(fused.getBias()));
      double share = static_cast<double>(slots) /
                     static_cast<double>(gateUpType.getDimSize(0));
      VirtualBinding h = temporary(static_cast<uint64_t>(slots) * inter * 4);
      bindings.append({routing, indices});
      // The norm and router weights are read whole, the experts' in part.
      unsigned experts = bindings.size();
      bindings.append({w(fused.getGateUpWeight()), h});
      dispatch(kernels.routedGateUp(spec, norm, weightElt(), hidden, inter),
               bindings, 0, slots * inter / 2, op, share, experts);
      dispatch(kernels.routedDown(weightElt(), hidden, inter, slots),
               {h, routing, indices, w(fused.getDownWeight()),
                output(fused.getResult())},
               0, hidden / 4, op, share);
      return llvm::Error::success();
    }
    VirtualBinding x = input(fused.getInput());
    // Router logits (+ the shared gate's in the last column).
    VirtualBinding logits =
        temporary(static_cast<uint64_t>(maxTokens) * rows * 4);
    dispatch(kernels.linear(weightElt(), hidden, rows, false),
             {x, w(fused.getRouterWeight()), logits}, 0, rows, op);
    llvm::SmallVector<VirtualBinding, 8> route{logits};
    if (fused.getBias())
      route.push_back(w(fused.getBias()));
    route.append({routing, indices});
    dispatch(kernels.router(spec), route, 1, 0, op);
    planExperts(op, x, routing, indices, fused.getGateUpWeight(), Value(),
                fused.getDownWeight(), fused.getResult(), slots);
    return llvm::Error::success();
  }
  if (auto rope = dyn_cast<moe::RopeOp>(op)) {
    auto type = tensorType(rope.getInput());
    std::vector<float> invFreq;
    double attentionFactor;
    ropeTables(rope, invFreq, attentionFactor);
    unsigned k = kernels.rope(
        type.getDimSize(1), type.getDimSize(2), rope.getInterleaved(), invFreq,
        attentionFactor, rope.getRotaryOffset() ? *rope.getRotaryOffset() : 0);
    VirtualBinding x = input(rope.getInput());
    Value result = rope.getResult();
    if (singleTokenCpu() && result.hasOneUse())
      if (auto mla = dyn_cast<moe::MlaAttentionOp>(*result.getUsers().begin()))
        if (mla.getQuery() == result) {
          pendingRopes[result] = {k, x};
          return llvm::Error::success();
        }
    dispatch(k, {x, output(result)}, type.getDimSize(1), 0, op);
    markTiny();
    return llvm::Error::success();
  }
  if (auto attn = dyn_cast<moe::AttentionOp>(op)) {
    auto q = tensorType(attn.getQuery()), v = tensorType(attn.getValue());
    int64_t heads = q.getDimSize(1), kvHeads = v.getDimSize(1);
    int64_t keyDim = q.getDimSize(2), valueDim = v.getDimSize(2);
    VirtualBinding kc = input(attn.getKeyCache()),
                   vc = input(attn.getValueCache());
    if (kc.kind != PlannedBinding::KeyCache ||
        vc.kind != PlannedBinding::ValueCache)
      return fail(op, "caches must be the entry point's cache arguments");
    dispatch(kernels.kvWrite(kvHeads, keyDim, valueDim),
             {input(attn.getKey()), input(attn.getValue()), kc, vc}, kvHeads, 0,
             op);
    markTiny();
    dispatch(kernels.attention(heads, kvHeads, keyDim, valueDim,
                               attn.getScale().convertToDouble()),
             {input(attn.getQuery()), kc, vc, output(attn.getResult())}, heads,
             0, op);
    bound[attn.getNewKeyCache()] = kc;
    bound[attn.getNewValueCache()] = vc;
    return llvm::Error::success();
  }
  if (auto mla = dyn_cast<moe::MlaAttentionOp>(op)) {
    auto query = tensorType(mla.getQuery()),
         result = tensorType(mla.getResult());
    int64_t heads = query.getDimSize(1);
    int64_t nope = static_cast<int64_t>(mla.getNopeDim());
    int64_t rope = query.getDimSize(2) - nope;
    int64_t rank = tensorType(mla.getLatentCache()).getDimSize(1);
    VirtualBinding lc = input(mla.getLatentCache()),
                   rc = input(mla.getRopeCache());
    if (lc.kind != PlannedBinding::KeyCache ||
        rc.kind != PlannedBinding::ValueCache)
      return fail(op, "caches must be the entry point's cache arguments");
    // The latent and the rope key are one "head" of a KV write.
    dispatch(kernels.kvWrite(1, rank, rope),
             {input(mla.getLatent()), input(mla.getKeyRope()), lc, rc}, 1, 0,
             op);
    markTiny();
    unsigned attention = kernels.mlaAttention(weightElt(), heads, nope, rope,
                                              result.getDimSize(2), rank,
                                              mla.getScale().convertToDouble());
    if (options.cudaChip.empty() && maxTokens > 1 && rank % 8 == 0) {
      // Many tokens: one item per token, the cache rows read once for all
      // its heads.
      dispatch(kernels.mlaAttentionByToken(weightElt(), heads, nope, rope,
                                           result.getDimSize(2), rank,
                                           mla.getScale().convertToDouble()),
               {input(mla.getQuery()), w(mla.getKvBWeight()), lc, rc,
                output(mla.getResult())},
               1, 0, op);
      bound[mla.getNewLatentCache()] = lc;
      bound[mla.getNewRopeCache()] = rc;
      return llvm::Error::success();
    }
    if (auto pending = pendingRopes.find(mla.getQuery());
        pending != pendingRopes.end()) {
      // Item (t, h) ropes the query of head h, then attends with it.
      VirtualBinding query = output(mla.getQuery());
      dispatch(kernels.itemwise(pending->second.kernel, attention),
               {pending->second.input, query, query, w(mla.getKvBWeight()), lc,
                rc, output(mla.getResult())},
               heads, 0, op);
    } else {
      dispatch(attention,
               {input(mla.getQuery()), w(mla.getKvBWeight()), lc, rc,
                output(mla.getResult())},
               heads, 0, op);
    }
    bound[mla.getNewLatentCache()] = lc;
    bound[mla.getNewRopeCache()] = rc;
    return llvm::Error::success();
  }
  if (auto slice = dyn_cast<tensor::ExtractSliceOp>(op)) {
    auto source = tensorType(slice.getSource());
    int64_t last = source.getRank() - 1;
    for (int64_t dim = 1; dim < last; ++dim)
      if (slice.getStaticOffsets()[dim] != 0 ||
          slice.getStaticSizes()[dim] != source.getDimSize(dim))
        return fail(op, "only slices of the last dimension are supported");
    if (!slice.hasUnitStride() ||
        ShapedType::isDynamic(slice.getStaticOffsets()[last]))
      return fail(op, "only static unit-stride slices are supported");
    int64_t inRow = source.getDimSize(last);
    // One row (a single-token entry, nothing between the token and the
    // sliced dimension): the slice is a contiguous part of its source, so
    // it is a view, not a copy -- when it starts on a 16-byte boundary, as
    // the GPU kernels' vector loads need.
    VirtualBinding in = input(slice.getSource());
    int64_t sliceOffset = slice.getStaticOffsets()[last];
    if (maxTokens == 1 && perToken(slice.getSource()) == inRow &&
        in.kind == PlannedBinding::Arena && sliceOffset % 4 == 0) {
      in.byteOffset += 4 * static_cast<uint64_t>(sliceOffset);
      bound[slice.getResult()] = in;
      return llvm::Error::success();
    }
    unsigned k = kernels.sliceColumns(inRow, slice.getStaticOffsets()[last],
                                      slice.getStaticSizes()[last]);
    dispatch(k, {in, output(slice.getResult())},
             perToken(slice.getSource()) / inRow, 0, op);
    markTiny();
    return llvm::Error::success();
  }
  if (auto concat = dyn_cast<tensor::ConcatOp>(op)) {
    auto type = tensorType(concat.getResult());
    if (concat.getDim() != static_cast<uint64_t>(type.getRank() - 1) ||
        concat.getInputs().size() != 2)
      return fail(op, "only two-operand concatenation of the last dimension "
                      "is supported");
    int64_t aRow = tensorType(concat.getInputs()[0]).getShape().back();
    int64_t bRow = tensorType(concat.getInputs()[1]).getShape().back();
    VirtualBinding a = input(concat.getInputs()[0]),
                   b = input(concat.getInputs()[1]);
    dispatch(kernels.concatColumns(aRow, bRow),
             {a, b, output(concat.getResult())},
             perToken(concat.getResult()) / (aRow + bRow), 0, op);
    markTiny();
    return llvm::Error::success();
  }
  if (auto broadcast = dyn_cast<linalg::BroadcastOp>(op)) {
    auto out = tensorType(broadcast.getInit());
    if (out.getRank() != 3 || broadcast.getDimensions() != ArrayRef<int64_t>{1})
      return fail(op, "only [T, R] -> [T, H, R] broadcasts are supported");
    VirtualBinding in = input(broadcast.getInput());
    dispatch(kernels.broadcastRows(out.getDimSize(1), out.getDimSize(2)),
             {in, output(broadcast->getResult(0))}, out.getDimSize(1), 0, op);
    markTiny();
    return llvm::Error::success();
  }
  return fail(op, "no CPU kernel for this op");
}

} // namespace

bool Planner::fusedMoeDecode(moe::FusedMoeOp op) {
  auto gateUpType = tensorType(op.getGateUpWeight());
  return singleTokenCpu() && op.getIntermediateSize() % 2 == 0 &&
         gateUpType.getDimSize(2) % 4 == 0;
}

// Whether the normalized row's only user computes the norm itself (one
// token on the CPU): a projection of it, or a moe.fused_moe of it.
bool Planner::takesNormPrologue(Value normalized) {
  if (!singleTokenCpu() || !normalized.hasOneUse() ||
      tensorType(normalized).getRank() != 2)
    return false;
  Operation *user = *normalized.getUsers().begin();
  if (auto linear = dyn_cast<moe::LinearOp>(user))
    return linear.getInput() == normalized;
  if (auto fused = dyn_cast<moe::FusedMoeOp>(user))
    return fused.getInput() == normalized && fusedMoeDecode(fused);
  if (auto mlp = dyn_cast<moe::MlpOp>(user))
    return mlp.getInput() == normalized &&
           tensorType(mlp.getGateWeight()).getDimSize(0) % 2 == 0;
  return false;
}

// One token on the CPU: consecutive tiny dispatches run as one sequence,
// and a sequence that reads nothing the dispatch before it writes runs as
// that dispatch's side job (on the thread that holds its first item).
void Planner::mergeTinyDispatches() {
  using Part = KernelLibrary::Part;
  std::vector<VirtualDispatch> chained;
  std::vector<llvm::SmallVector<Part, 4>> parts;
  for (VirtualDispatch &d : dispatches) {
    Part part{d.kernel, d.workPerToken, d.workFixed};
    if (d.tiny && !chained.empty() && chained.back().tiny) {
      VirtualDispatch &run = chained.back();
      run.bindings.append(d.bindings.begin(), d.bindings.end());
      run.what += " + " + d.what;
      run.weightBytesRead += d.weightBytesRead;
      parts.back().push_back(part);
      continue;
    }
    chained.push_back(std::move(d));
    parts.push_back({part});
  }
  for (auto [d, run] : llvm::zip(chained, parts))
    if (run.size() > 1) {
      d.kernel = kernels.sequence(run);
      d.workPerToken = 0;
      d.workFixed = 1;
    }

  // What each dispatch writes: the arena buffers it is the first to use
  // (every output is a fresh buffer) and, conservatively, the KV caches it
  // binds.
  std::vector<unsigned> firstUse(bufferBytes.size(), ~0u);
  for (auto [index, d] : llvm::enumerate(chained))
    for (const VirtualBinding &b : d.bindings)
      if (b.kind == PlannedBinding::Arena)
        firstUse[b.index] =
            std::min<unsigned>(firstUse[b.index], static_cast<unsigned>(index));
  auto isCache = [](const VirtualBinding &b) {
    return b.kind == PlannedBinding::KeyCache ||
           b.kind == PlannedBinding::ValueCache;
  };
  auto independent = [&](unsigned main, const VirtualDispatch &side) {
    for (const VirtualBinding &b : side.bindings) {
      if (b.kind == PlannedBinding::Arena && firstUse[b.index] == main)
        return false;
      if (isCache(b))
        for (const VirtualBinding &m : chained[main].bindings)
          if (m.kind == b.kind && m.index == b.index)
            return false;
      if (b.kind == PlannedBinding::Logits)
        return false;
    }
    return true;
  };

  std::vector<VirtualDispatch> merged;
  for (auto [index, d] : llvm::enumerate(chained)) {
    // The host: the dispatch just before, parallel (more than one item)
    // and without a side job yet.
    bool attach = d.tiny && index > 0 && !merged.back().tiny &&
                  !merged.back().hasSideJob &&
                  merged.back().workPerToken + merged.back().workFixed > 1 &&
                  independent(index - 1, d);
    if (!attach) {
      merged.push_back(std::move(d));
      continue;
    }
    VirtualDispatch &main = merged.back();
    main.kernel = kernels.withSideJob(main.kernel, parts[index]);
    main.bindings.append(d.bindings.begin(), d.bindings.end());
    main.what += " + " + d.what;
    main.weightBytesRead += d.weightBytesRead;
    main.hasSideJob = true;
  }
  dispatches = std::move(merged);
}

void Planner::recomputeLiveness() {
  std::fill(bufferFirst.begin(), bufferFirst.end(), ~0u);
  std::fill(bufferLast.begin(), bufferLast.end(), 0u);
  for (auto [index, d] : llvm::enumerate(dispatches))
    for (const VirtualBinding &b : d.bindings)
      if (b.kind == PlannedBinding::Arena) {
        bufferFirst[b.index] = std::min<unsigned>(bufferFirst[b.index],
                                                  static_cast<unsigned>(index));
        bufferLast[b.index] = std::max<unsigned>(bufferLast[b.index],
                                                 static_cast<unsigned>(index));
      }
  for (unsigned &first : bufferFirst)
    if (first == ~0u)
      first = 0;
}

void Planner::planExperts(Operation *op, VirtualBinding x,
                          VirtualBinding routing, VirtualBinding indices,
                          Value gateWeight, Value upWeight, Value downWeight,
                          Value result, int64_t slots) {
  bool packed = !upWeight;
  auto gateType = tensorType(gateWeight);
  int64_t numExperts = gateType.getDimSize(0);
  int64_t inter = gateType.getDimSize(1) / (packed ? 2 : 1),
          hidden = gateType.getDimSize(2);
  VirtualBinding h =
      temporary(static_cast<uint64_t>(maxTokens) * slots * inter * 4);
  llvm::SmallVector<VirtualBinding, 5> gateUp{x, indices, weight(gateWeight)};
  if (!packed)
    gateUp.push_back(weight(upWeight));
  gateUp.push_back(h);
  // Per token only the selected experts' rows are read (decode's weight
  // bytes; a prefill reads each selected expert once).
  double share = static_cast<double>(slots) / static_cast<double>(numExperts);
  if (options.cudaChip.empty() && inter % 2 == 0 && hidden % 4 == 0) {
    // CPU: group the (token, selection) slots by expert, so that each
    // expert's rows are read once per call for all its tokens (prefill)
    // and as contiguous row blocks of one expert (decode: the experts' down
    // rows no longer interleave eight streams per output feature).
    uint64_t slotCount = static_cast<uint64_t>(maxTokens) * slots;
    VirtualBinding route = temporary((2 * numExperts + 1 + slotCount) * 4);
    VirtualBinding perSlot = temporary(slotCount * hidden * 4);
    dispatch(kernels.expertsGroup(numExperts, slots), {indices, route}, 0, 1,
             op);
    gateUp[0] = roundedInput(x, 1, hidden, op);
    gateUp[1] = route;
    dispatch(kernels.groupedGateUp(weightElt(), hidden, inter, numExperts,
                                   slots, packed, roundsInputs()),
             gateUp, 0, numExperts * inter / 2, op, share);
    dispatch(
        kernels.groupedDown(weightElt(), hidden, inter, numExperts,
                            roundsInputs()),
        {roundedInput(h, slots, inter, op), route, weight(downWeight), perSlot},
        0, numExperts * hidden / 4, op, share);
    dispatch(kernels.expertsCombine(hidden, slots),
             {perSlot, routing, output(result)}, hidden, 0, op);
    return;
  }
  gateUp[1] = indices;
  dispatch(kernels.expertsGateUp(weightElt(), hidden, inter, slots, packed),
           gateUp, slots * inter, 0, op, share);
  dispatch(kernels.expertsDown(weightElt(), hidden, inter, slots),
           {h, indices, routing, weight(downWeight), output(result)}, hidden, 0,
           op, share);
}

llvm::Expected<CpuProgram> planCpuProgram(ModuleOp module,
                                          const CpuOptions &options) {
  CpuProgram program;
  KernelLibrary kernels;
  // Wide (512-bit) dot products where the CPU has them; the CUDA plan's
  // thread-per-item bodies keep 8 lanes.
  if (options.cudaChip.empty() && cpuHasAvx512(options.cpu))
    kernels.setVectorWidth(16);
  using DotActivations = CpuOptions::DotActivations;
  if (options.dotActivations == DotActivations::BF16) {
    if (!options.cudaChip.empty())
      return llvm::createStringError(
          "--dot-activations=bf16 is for CPU targets (the CUDA kernels "
          "widen bf16 weights)");
    if (options.weightType != WeightType::BF16)
      return llvm::createStringError(
          "--dot-activations=bf16 applies to bf16 weights; add --dtype=bf16");
    if (!cpuHasAvx512Bf16(options.cpu))
      return llvm::createStringError(
          "--dot-activations=bf16 needs AVX512-BF16, which --cpu=" +
          options.cpu + " does not have");
  }
  if (options.weightType == WeightType::Q8_0) {
    if (!options.cudaChip.empty())
      return llvm::createStringError(
          "--dtype=q8_0 is for CPU targets (the CUDA kernels take f32 or "
          "bf16 weights)");
    if (!cpuHasF16c(options.cpu))
      return llvm::createStringError(
          "--dtype=q8_0 needs F16C (its block scales are f16), which --cpu=" +
          options.cpu + " does not have");
  }
  program.bf16Dot = options.cudaChip.empty() &&
                    options.weightType == WeightType::BF16 &&
                    (options.dotActivations == DotActivations::BF16 ||
                     (options.dotActivations == DotActivations::Auto &&
                      cpuHasAvx512Bf16(options.cpu)));
  kernels.setBf16Dot(program.bf16Dot);
  Planner planner(program, kernels, options);
  for (auto [name, tokens] :
       {std::pair<StringRef, int64_t>{"prefill", options.prefillChunk},
        std::pair<StringRef, int64_t>{"decode", 1}}) {
    auto func = module.lookupSymbol<func::FuncOp>(name);
    if (!func)
      return llvm::createStringError("the module has no @" + name +
                                     " entry point");
    if (llvm::Error err = planner.planEntry(func, tokens))
      return std::move(err);
  }
  program.kernelNames = kernels.names();
  if (options.cudaChip.empty()) {
    program.kernelModule = kernels.moduleText();
  } else {
    program.kernelModule = kernels.gpuModuleText();
    program.gpuTarget = "cuda:" + options.cudaChip;
    for (KernelLaunch launch : kernels.launches())
      program.launches.push_back({launch.blockThreads, launch.itemsPerBlock});
  }
  return program;
}

} // namespace moec::cpu
