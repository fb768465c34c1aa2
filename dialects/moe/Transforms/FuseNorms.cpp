//===- FuseNorms.cpp - fuse residual add + RMSNorm ------------------------===//
//
// Part of moec. Implements `--moe-fuse-norms`.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSENORMSPASS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

// rms_norm(add(a, b)) -> add_rms_norm(a, b); other users of the add take the
// fused op's `sum` result.
struct FuseAddIntoRmsNorm : OpRewritePattern<RmsNormOp> {
  using OpRewritePattern::OpRewritePattern;

  LogicalResult matchAndRewrite(RmsNormOp norm,
                                PatternRewriter &rewriter) const override {
    auto add = norm.getInput().getDefiningOp<AddOp>();
    if (!add)
      return rewriter.notifyMatchFailure(norm, "input is not a moe.add");
    // The fused op is created at the norm, so every other user of the sum
    // must come after it; this also makes the first of several norms of one
    // sum the one that absorbs the add.
    for (Operation *user : add->getUsers()) {
      if (user == norm.getOperation())
        continue;
      if (user->getBlock() != norm->getBlock() || !norm->isBeforeInBlock(user))
        return rewriter.notifyMatchFailure(norm, "sum is used before the norm");
    }
    rewriter.setInsertionPoint(norm);
    auto fused = AddRmsNormOp::create(
        rewriter, norm.getLoc(), add.getType(), norm.getType(), add.getLhs(),
        add.getRhs(), norm.getWeight(), norm.getEpsilonAttr());
    rewriter.replaceOp(norm, fused.getResult());
    // Remaining users of the sum (the residual for the next block, or other
    // norms) read the fused op's sum instead.
    rewriter.replaceAllUsesWith(add.getResult(), fused.getSum());
    rewriter.eraseOp(add);
    return success();
  }
};

struct MoeFuseNormsPass
    : mlir::moe::impl::MoeFuseNormsPassBase<MoeFuseNormsPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseAddIntoRmsNorm>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
