//===- FuseExperts.cpp - shared experts as always-selected experts --------===//
//
// Part of moec. Implements `--moe-fuse-experts`.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEEXPERTSPASS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

RankedTensorType tensorType(Value value) {
  return cast<RankedTensorType>(value.getType());
}

// add(experts(x), mlp(x)) -> experts(x) over stacks with the shared MLP's
// slices appended, the router appending their indices.
struct FoldSharedExperts : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(AddOp add,
                                PatternRewriter &rewriter) const override {
    Value lhs = add.getLhs(), rhs = add.getRhs();
    if (!lhs.getDefiningOp<ExpertsOp>())
      std::swap(lhs, rhs);
    auto experts = lhs.getDefiningOp<ExpertsOp>();
    // Qwen2-MoE: the shared output scaled by sigmoid(gate).
    auto gated = rhs.getDefiningOp<SigmoidGateOp>();
    Value sharedGate;
    if (gated) {
      if (!gated->hasOneUse())
        return rewriter.notifyMatchFailure(add, "gated output used elsewhere");
      sharedGate = gated.getGate();
      rhs = gated.getInput();
    }
    auto mlp = rhs.getDefiningOp<MlpOp>();
    if (!experts || !mlp || experts.getInput() != mlp.getInput())
      return rewriter.notifyMatchFailure(add, "not routed + shared experts");
    if (!experts->hasOneUse() || !mlp->hasOneUse())
      return rewriter.notifyMatchFailure(add, "partial results used elsewhere");

    auto router = experts.getExpertIndices().getDefiningOp<RouterOp>();
    if (!router || router.getWeights() != experts.getRoutingWeights() ||
        !router.getWeights().hasOneUse() || !router.getIndices().hasOneUse() ||
        router.getAppendedExperts())
      return rewriter.notifyMatchFailure(add, "router used elsewhere");
    for (Value weight :
         {mlp.getGateWeight(), mlp.getUpWeight(), mlp.getDownWeight()})
      if (!weight.getDefiningOp<ParamOp>())
        return rewriter.notifyMatchFailure(add, "shared weights are derived");

    RankedTensorType gateType = tensorType(experts.getGateWeight());
    int64_t numExperts = gateType.getDimSize(0);
    int64_t inter = gateType.getDimSize(1), hidden = gateType.getDimSize(2);
    int64_t sharedInter = tensorType(mlp.getGateWeight()).getDimSize(0);
    if (ShapedType::isDynamic(inter) || inter <= 0 || sharedInter % inter)
      return rewriter.notifyMatchFailure(add, "sizes do not divide");
    int64_t slots = sharedInter / inter;
    Location loc = add.getLoc();
    Type element = gateType.getElementType();

    // The shared MLP's rows (gate, up) or columns (down) of slot s, stacked
    // behind the routed experts.
    auto appendSlots = [&](Value routed, Value shared, bool columns) {
      SmallVector<Value> pieces;
      for (int64_t s = 0; s < slots; ++s) {
        SmallVector<OpFoldResult> offsets =
            columns
                ? SmallVector<OpFoldResult>{rewriter.getIndexAttr(0),
                                            rewriter.getIndexAttr(s * inter)}
                : SmallVector<OpFoldResult>{rewriter.getIndexAttr(s * inter),
                                            rewriter.getIndexAttr(0)};
        SmallVector<OpFoldResult> sizes =
            columns ? SmallVector<OpFoldResult>{rewriter.getIndexAttr(hidden),
                                                rewriter.getIndexAttr(inter)}
                    : SmallVector<OpFoldResult>{rewriter.getIndexAttr(inter),
                                                rewriter.getIndexAttr(hidden)};
        SmallVector<OpFoldResult> strides(2, rewriter.getIndexAttr(1));
        pieces.push_back(tensor::ExtractSliceOp::create(
            rewriter, loc, shared, offsets, sizes, strides));
      }
      SmallVector<int64_t> pieceShape =
          columns ? SmallVector<int64_t>{hidden, inter}
                  : SmallVector<int64_t>{inter, hidden};
      SmallVector<int64_t> stackShape{slots};
      stackShape.append(pieceShape);
      Value stacked = StackOp::create(
          rewriter, loc, RankedTensorType::get(stackShape, element), pieces);
      SmallVector<int64_t> allShape{numExperts + slots};
      allShape.append(pieceShape);
      return tensor::ConcatOp::create(rewriter, loc,
                                      RankedTensorType::get(allShape, element),
                                      0, ValueRange{routed, stacked});
    };
    rewriter.setInsertionPoint(add);
    Value gate =
        appendSlots(experts.getGateWeight(), mlp.getGateWeight(), false);
    Value up = appendSlots(experts.getUpWeight(), mlp.getUpWeight(), false);
    Value down =
        appendSlots(experts.getDownWeight(), mlp.getDownWeight(), true);

    // The router, with S more selections per token, where the add was: its
    // logits come before the old router, the gate before the add.
    rewriter.setInsertionPoint(add);
    auto widen = [&](Value value) {
      RankedTensorType type = tensorType(value);
      return RankedTensorType::get(
          {type.getDimSize(0), type.getDimSize(1) + slots},
          type.getElementType());
    };
    auto routed = cast<RouterOp>(rewriter.clone(*router));
    routed.getWeights().setType(widen(router.getWeights()));
    routed.getIndices().setType(widen(router.getIndices()));
    routed.setAppendedExpertsAttr(rewriter.getI64IntegerAttr(slots));
    if (sharedGate)
      routed.getAppendedGateMutable().assign(sharedGate);

    rewriter.setInsertionPoint(add);
    auto fused = ExpertsOp::create(rewriter, loc, add.getType(),
                                   experts.getInput(), routed.getWeights(),
                                   routed.getIndices(), gate, up, down);
    rewriter.replaceOp(add, fused.getResult());
    rewriter.eraseOp(experts);
    if (gated)
      rewriter.eraseOp(gated);
    rewriter.eraseOp(mlp);
    rewriter.eraseOp(router);
    return success();
  }
};

struct MoeFuseExpertsPass
    : mlir::moe::impl::MoeFuseExpertsPassBase<MoeFuseExpertsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FoldSharedExperts>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
