//===- FuseAttention.cpp - MLA absorption over a latent KV cache ----------===//
//
// Part of moec. Implements `--moe-fuse-attention`.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Transforms/RegionUtils.h"
#include "llvm/ADT/DenseMap.h"
#include "llvm/ADT/DenseSet.h"
#include "llvm/ADT/SetVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEATTENTIONPASS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

// A slice of the last dimension of a rank-3 tensor that keeps the other
// dimensions whole: returns the source and the slice's [offset, size).
struct LastDimSlice {
  Value source;
  int64_t offset = 0, size = 0;
};
std::optional<LastDimSlice> matchLastDimSlice(Value value) {
  auto slice = value.getDefiningOp<tensor::ExtractSliceOp>();
  if (!slice || !slice.hasUnitStride())
    return std::nullopt;
  RankedTensorType source = tensorType(slice.getSource());
  if (source.getRank() != 3)
    return std::nullopt;
  ArrayRef<int64_t> offsets = slice.getStaticOffsets();
  ArrayRef<int64_t> sizes = slice.getStaticSizes();
  if (offsets[0] != 0 || offsets[1] != 0 || sizes[1] != source.getDimSize(1) ||
      ShapedType::isDynamic(offsets[2]) || ShapedType::isDynamic(sizes[2]))
    return std::nullopt;
  // Dimension 0 (tokens) must be whole: static and equal, or dynamic in both.
  if (!ShapedType::isDynamic(sizes[0]) && sizes[0] != source.getDimSize(0))
    return std::nullopt;
  return LastDimSlice{slice.getSource(), offsets[2], sizes[2]};
}

// What the rewrite of one moe.attention needs.
struct MlaMatch {
  AttentionOp attention;
  Value latent, keyRope, kvBWeight;
  int64_t nope = 0, valueDim = 0, rank = 0, ropeDim = 0;
};

// Matches the importer's unabsorbed MLA around `attention` (see the pass
// description); failure leaves the op alone.
std::optional<MlaMatch> matchMla(AttentionOp attention) {
  MlaMatch match;
  match.attention = attention;
  // V = E[..., Dn : Dn + Dv], E = expand(linear(latent, kv_b)).
  std::optional<LastDimSlice> value = matchLastDimSlice(attention.getValue());
  if (!value)
    return std::nullopt;
  auto expand = value->source.getDefiningOp<tensor::ExpandShapeOp>();
  if (!expand)
    return std::nullopt;
  auto kvB = expand.getSrc().getDefiningOp<LinearOp>();
  if (!kvB || kvB.getBias() || tensorType(kvB.getInput()).getRank() != 2)
    return std::nullopt;
  RankedTensorType expanded = tensorType(expand.getResult());
  int64_t heads = expanded.getDimSize(1), perHead = expanded.getDimSize(2);
  if (expand.getReassociationIndices().size() != 2 ||
      value->offset + value->size != perHead)
    return std::nullopt;
  match.nope = value->offset;
  match.valueDim = value->size;
  // K = concat(E[..., 0 : Dn], broadcast(k_rope [T, Dr]) along heads).
  auto concat = attention.getKey().getDefiningOp<tensor::ConcatOp>();
  if (!concat || concat.getDim() != 2 || concat.getInputs().size() != 2)
    return std::nullopt;
  std::optional<LastDimSlice> keyNope =
      matchLastDimSlice(concat.getInputs()[0]);
  if (!keyNope || keyNope->source != value->source || keyNope->offset != 0 ||
      keyNope->size != match.nope)
    return std::nullopt;
  auto broadcast = concat.getInputs()[1].getDefiningOp<linalg::BroadcastOp>();
  if (!broadcast || broadcast.getDimensions() != ArrayRef<int64_t>{1} ||
      tensorType(broadcast.getInput()).getRank() != 2)
    return std::nullopt;
  match.keyRope = broadcast.getInput();
  match.ropeDim = tensorType(match.keyRope).getDimSize(1);
  match.latent = kvB.getInput();
  match.kvBWeight = kvB.getWeight();
  match.rank = tensorType(match.latent).getDimSize(1);
  RankedTensorType query = tensorType(attention.getQuery());
  if (query.getDimSize(1) != heads ||
      query.getDimSize(2) != match.nope + match.ropeDim ||
      tensorType(match.kvBWeight).getDimSize(0) !=
          heads * (match.nope + match.valueDim))
    return std::nullopt;
  // The caches must be the function's arguments (their types change).
  if (!isa<BlockArgument>(attention.getKeyCache()) ||
      !isa<BlockArgument>(attention.getValueCache()))
    return std::nullopt;
  return match;
}

// concat(x[..., :o], rope(x[..., o:])) -> rope(x) from(o): the MLA query's
// nope part is copied by the rope instead of being sliced out and joined
// back (three copies fewer per layer).
struct FoldPartialRope : OpRewritePattern<tensor::ConcatOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(tensor::ConcatOp concat,
                                PatternRewriter &rewriter) const override {
    if (concat.getDim() != 2 || concat.getInputs().size() != 2)
      return rewriter.notifyMatchFailure(concat, "not a two-part head concat");
    std::optional<LastDimSlice> head = matchLastDimSlice(concat.getInputs()[0]);
    auto rope = concat.getInputs()[1].getDefiningOp<RopeOp>();
    if (!head || head->offset != 0 || !rope || rope.getRotaryOffset())
      return rewriter.notifyMatchFailure(concat, "not nope + rope(tail)");
    std::optional<LastDimSlice> tail = matchLastDimSlice(rope.getInput());
    if (!tail || tail->source != head->source || tail->offset != head->size ||
        tail->offset + tail->size != tensorType(head->source).getDimSize(2) ||
        concat.getType() != head->source.getType())
      return rewriter.notifyMatchFailure(concat, "parts of different tensors");
    auto fused = cast<RopeOp>(rewriter.clone(*rope));
    fused->setOperand(0, head->source);
    fused.getResult().setType(cast<RankedTensorType>(concat.getType()));
    fused.setRotaryOffsetAttr(rewriter.getI64IntegerAttr(head->size));
    rewriter.replaceOp(concat, fused.getResult());
    return success();
  }
};

struct MoeFuseAttentionPass
    : mlir::moe::impl::MoeFuseAttentionPassBase<MoeFuseAttentionPass> {
  using MoeFuseAttentionPassBase::MoeFuseAttentionPassBase;

  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldPartialRope>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    if (!absorbMla)
      return;
    // Cache arguments are identified by their position, which prefill and
    // decode share: absorb a layer only where every use matches.
    llvm::DenseMap<unsigned, SmallVector<MlaMatch>> byKeyCacheArg;
    llvm::DenseSet<unsigned> unmatched;
    getOperation().walk([&](AttentionOp attention) {
      auto keyCache = dyn_cast<BlockArgument>(attention.getKeyCache());
      std::optional<MlaMatch> match = matchMla(attention);
      if (!keyCache)
        return;
      if (!match)
        unmatched.insert(keyCache.getArgNumber());
      else
        byKeyCacheArg[keyCache.getArgNumber()].push_back(*match);
    });

    llvm::SetVector<func::FuncOp> changed;
    for (auto &[argNumber, matches] : byKeyCacheArg) {
      if (unmatched.contains(argNumber))
        continue;
      for (const MlaMatch &match : matches)
        rewrite(match);
      for (const MlaMatch &match : matches)
        changed.insert(match.attention->getParentOfType<func::FuncOp>());
      for (const MlaMatch &match : matches)
        match.attention->erase();
    }
    // Drop the unabsorbed form's now-dead ops and update the signatures.
    for (func::FuncOp func : changed) {
      IRRewriter rewriter(func.getContext());
      (void)runRegionDCE(rewriter, func.getBody());
      auto ret = cast<func::ReturnOp>(func.getBody().front().getTerminator());
      func.setType(FunctionType::get(func.getContext(),
                                     func.getBody().front().getArgumentTypes(),
                                     ret.getOperandTypes()));
    }
  }

  void rewrite(const MlaMatch &match) {
    AttentionOp attention = match.attention;
    auto keyCache = cast<BlockArgument>(attention.getKeyCache());
    auto valueCache = cast<BlockArgument>(attention.getValueCache());
    int64_t capacity = tensorType(keyCache).getDimSize(0);
    Type element = tensorType(keyCache).getElementType();
    keyCache.setType(RankedTensorType::get({capacity, match.rank}, element));
    valueCache.setType(
        RankedTensorType::get({capacity, match.ropeDim}, element));
    OpBuilder builder(attention);
    RankedTensorType result = tensorType(attention.getResult());
    auto fused = MlaAttentionOp::create(
        builder, attention.getLoc(), result, keyCache.getType(),
        valueCache.getType(), attention.getQuery(), match.latent, match.keyRope,
        match.kvBWeight, keyCache, valueCache, attention.getStartPos(),
        builder.getI64IntegerAttr(match.nope), attention.getScaleAttr());
    attention.getResult().replaceAllUsesWith(fused.getResult());
    attention.getNewKeyCache().replaceAllUsesWith(fused.getNewLatentCache());
    attention.getNewValueCache().replaceAllUsesWith(fused.getNewRopeCache());
  }
};

} // namespace
