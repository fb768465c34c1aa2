//===- FuseQkv.cpp - fuse sibling projections of one input ----------------===//
//
// Part of moec. Implements `--moe-fuse-qkv`.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/MapVector.h"

namespace mlir::moe {
#define GEN_PASS_DEF_MOEFUSEQKVPASS
#include "moe/Transforms/Passes.h.inc"
} // namespace mlir::moe

using namespace mlir;
using namespace mlir::moe;

namespace {

// A weight the pass can concatenate: a moe.param, or a dequantization of
// moe.params; `ops` are its defining ops, operands first.
bool collectWeight(Value value, SmallVectorImpl<Operation *> &ops) {
  Operation *def = value.getDefiningOp();
  if (isa_and_nonnull<ParamOp>(def)) {
    ops.push_back(def);
    return true;
  }
  if (auto dequant = dyn_cast_or_null<DequantizeFp8Op>(def)) {
    if (!dequant.getInput().getDefiningOp<ParamOp>() ||
        !dequant.getScaleInv().getDefiningOp<ParamOp>())
      return false;
    ops.push_back(dequant.getInput().getDefiningOp());
    ops.push_back(dequant.getScaleInv().getDefiningOp());
    ops.push_back(def);
    return true;
  }
  return false;
}

void fuseGroup(ArrayRef<LinearOp> group) {
  LinearOp first = group.front();
  bool hasBias = static_cast<bool>(first.getBias());
  Type elementType = first.getWeight().getType().getElementType();
  SmallVector<Operation *> weightOps;
  for (LinearOp linear : group) {
    if (static_cast<bool>(linear.getBias()) != hasBias ||
        linear.getWeight().getType().getElementType() != elementType ||
        !collectWeight(linear.getWeight(), weightOps) ||
        (hasBias && !collectWeight(linear.getBias(), weightOps)))
      return;
  }
  // Every weight must exist where the fused projection goes: move their
  // (operand-free or param-only) definitions up, operands first.
  for (Operation *op : weightOps)
    if (op->getBlock() == first->getBlock() && first->isBeforeInBlock(op))
      op->moveBefore(first);

  OpBuilder builder(first);
  Location loc = first.getLoc();
  SmallVector<Value> weights, biases;
  int64_t outFeatures = 0;
  for (LinearOp linear : group) {
    weights.push_back(linear.getWeight());
    if (hasBias)
      biases.push_back(linear.getBias());
    outFeatures += linear.getWeight().getType().getDimSize(0);
  }
  Value weight = tensor::ConcatOp::create(builder, loc, /*dim=*/0, weights);
  Value bias =
      hasBias ? tensor::ConcatOp::create(builder, loc, 0, biases) : Value();
  auto inputType = cast<RankedTensorType>(first.getInput().getType());
  SmallVector<int64_t> shape(inputType.getShape());
  shape.back() = outFeatures;
  auto resultType =
      RankedTensorType::get(shape, first.getType().getElementType());
  Value fused = LinearOp::create(builder, loc, resultType, first.getInput(),
                                 weight, bias);

  // Slices of the fused result replace each projection (all created before
  // any projection is erased: the builder inserts before the first one).
  int64_t rank = inputType.getRank(), offset = 0;
  SmallVector<Value> slices;
  for (LinearOp linear : group) {
    SmallVector<OpFoldResult> offsets, sizes, strides;
    for (int64_t dim = 0; dim < rank; ++dim) {
      bool last = dim == rank - 1;
      offsets.push_back(builder.getIndexAttr(last ? offset : 0));
      if (last)
        sizes.push_back(
            builder.getIndexAttr(linear.getType().getShape().back()));
      else if (inputType.isDynamicDim(dim))
        sizes.push_back(
            tensor::DimOp::create(builder, loc, fused, dim).getResult());
      else
        sizes.push_back(builder.getIndexAttr(inputType.getDimSize(dim)));
      strides.push_back(builder.getIndexAttr(1));
    }
    Value slice = tensor::ExtractSliceOp::create(
        builder, loc, linear.getType(), fused, offsets, sizes, strides);
    offset += linear.getType().getShape().back();
    slices.push_back(slice);
  }
  for (size_t i = 0; i < group.size(); ++i) {
    LinearOp linear = group[i];
    linear.getResult().replaceAllUsesWith(slices[i]);
    linear.erase();
  }
}

struct MoeFuseQkvPass : mlir::moe::impl::MoeFuseQkvPassBase<MoeFuseQkvPass> {
  void runOnOperation() override {
    // Linears grouped by (block, input), in block order.
    llvm::MapVector<std::pair<Block *, Value>, SmallVector<LinearOp>> groups;
    getOperation()->walk([&](LinearOp linear) {
      groups[{linear->getBlock(), linear.getInput()}].push_back(linear);
    });
    for (auto &[key, group] : groups)
      if (group.size() > 1)
        fuseGroup(group);
  }
};

} // namespace
