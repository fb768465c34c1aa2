//===- FuseExperts.cpp - one moe.fused_moe per MoE block -----------------===//
//
// Part of moec. Implements `--moe-fuse-experts`: shared experts become
// always-selected experts, then router projection + moe.router +
// moe.experts become one moe.fused_moe.
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

// linear(x, R) -> router -> experts(x) (+ Qwen2-MoE's shared gate
// linear(x, G) as the router's `gated` operand) -> one moe.fused_moe with the
// gate and up stacks side by side ([E, 2 I, H]) and G appended to R.
struct FuseMoeBlock : OpRewritePattern<ExpertsOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(ExpertsOp experts,
                                PatternRewriter &rewriter) const override {
    auto router = experts.getExpertIndices().getDefiningOp<RouterOp>();
    if (!router || router.getWeights() != experts.getRoutingWeights() ||
        !router.getWeights().hasOneUse() || !router.getIndices().hasOneUse())
      return rewriter.notifyMatchFailure(experts, "routing used elsewhere");
    Value input = experts.getInput();
    // The router's projection (and the shared gate's) of the experts' input,
    // used only by the router.
    auto projection = [&](Value value) -> LinearOp {
      auto linear = value ? value.getDefiningOp<LinearOp>() : LinearOp();
      if (!linear || linear.getBias() || linear.getInput() != input ||
          !linear->hasOneUse())
        return LinearOp();
      return linear;
    };
    LinearOp logits = projection(router.getLogits());
    if (!logits)
      return rewriter.notifyMatchFailure(
          experts, "router logits are not a projection of the experts' input");
    Value sharedGate = router.getAppendedGate();
    LinearOp gateProjection = projection(sharedGate);
    if (sharedGate && !gateProjection)
      return rewriter.notifyMatchFailure(
          experts, "shared gate is not a projection of the experts' input");
    if (gateProjection &&
        tensorType(gateProjection.getWeight()).getElementType() !=
            tensorType(logits.getWeight()).getElementType())
      return rewriter.notifyMatchFailure(experts, "mixed router weight types");
    Type element = tensorType(experts.getGateWeight()).getElementType();
    if (tensorType(experts.getUpWeight()).getElementType() != element)
      return rewriter.notifyMatchFailure(experts, "mixed gate/up weight types");

    Location loc = experts.getLoc();
    rewriter.setInsertionPoint(experts);
    Value routerWeight = logits.getWeight();
    if (gateProjection) {
      RankedTensorType r = tensorType(routerWeight);
      routerWeight = tensor::ConcatOp::create(
          rewriter, loc,
          RankedTensorType::get({r.getDimSize(0) + 1, r.getDimSize(1)},
                                r.getElementType()),
          0, ValueRange{routerWeight, gateProjection.getWeight()});
    }
    RankedTensorType gateType = tensorType(experts.getGateWeight());
    Value gateUp = tensor::ConcatOp::create(
        rewriter, loc,
        RankedTensorType::get({gateType.getDimSize(0),
                               2 * gateType.getDimSize(1),
                               gateType.getDimSize(2)},
                              element),
        1, ValueRange{experts.getGateWeight(), experts.getUpWeight()});
    int64_t shared = router.getAppendedExperts()
                         ? static_cast<int64_t>(*router.getAppendedExperts())
                         : 0;
    auto fused = FusedMoeOp::create(
        rewriter, loc, experts.getType(), input, routerWeight, router.getBias(),
        gateUp, experts.getDownWeight(), router.getScoringAttr(),
        router.getMethodAttr(), router.getTopKAttr(), router.getNGroupAttr(),
        router.getTopkGroupAttr(), router.getNormTopkProbAttr(),
        router.getRoutedScalingFactorAttr(), rewriter.getI64IntegerAttr(shared),
        gateProjection ? rewriter.getUnitAttr() : UnitAttr());
    rewriter.replaceOp(experts, fused.getResult());
    rewriter.eraseOp(router);
    rewriter.eraseOp(logits);
    if (gateProjection)
      rewriter.eraseOp(gateProjection);
    return success();
  }
};

struct MoeFuseExpertsPass
    : mlir::moe::impl::MoeFuseExpertsPassBase<MoeFuseExpertsPass> {
  using MoeFuseExpertsPassBase::MoeFuseExpertsPassBase;

  void runOnOperation() override {
    // Shared experts fold into the routed ones first, so that the block
    // fusion sees a single experts op per layer.
    RewritePatternSet shared(&getContext());
    shared.add<FoldSharedExperts>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(shared))))
      return signalPassFailure();
    if (!fuseBlocks)
      return;
    RewritePatternSet blocks(&getContext());
    blocks.add<FuseMoeBlock>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(blocks))))
      signalPassFailure();
  }
};

} // namespace
