//===- MoeOpsTest.cpp - C++ API of the moe dialect ------------------------===//
//
// Part of moec. The importer builds moe ops through the generated C++
// builders; these tests pin the parts of that API it relies on: type
// inference, verifier diagnostics, and the optimization pipeline.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeOps.h"
#include "moe/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"

#include <gtest/gtest.h>

using namespace mlir;

namespace {

class MoeOpsTest : public ::testing::Test {
protected:
  MoeOpsTest() { context.loadDialect<moe::MoeDialect, func::FuncDialect>(); }

  // Verifies `op`, returning the first diagnostic message ("" if none).
  std::string verifyMessage(Operation *op) {
    std::string message;
    ScopedDiagnosticHandler handler(&context, [&](Diagnostic &diag) {
      if (message.empty())
        message = diag.str();
      return success();
    });
    (void)verify(op);
    return message;
  }

  MLIRContext context;
  OpBuilder builder{&context};
  Location loc = UnknownLoc::get(&context);
};

TEST_F(MoeOpsTest, MlpInfersResultTypeFromInput) {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module->getBody());
  auto bf16 = builder.getBF16Type();
  auto x = moe::ParamOp::create(
      builder, loc, RankedTensorType::get({3, 8}, builder.getF32Type()),
      builder.getStringAttr("x"));
  auto gate =
      moe::ParamOp::create(builder, loc, RankedTensorType::get({16, 8}, bf16),
                           builder.getStringAttr("g"));
  auto down =
      moe::ParamOp::create(builder, loc, RankedTensorType::get({8, 16}, bf16),
                           builder.getStringAttr("d"));
  auto mlp = moe::MlpOp::create(builder, loc, x, gate, gate, down);
  EXPECT_EQ(mlp.getType(), x.getType());
  EXPECT_EQ(verifyMessage(*module), "");
}

TEST_F(MoeOpsTest, RouterVerifierNamesTheBadAttribute) {
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  builder.setInsertionPointToEnd(module->getBody());
  auto f32 = builder.getF32Type();
  auto logits =
      moe::ParamOp::create(builder, loc, RankedTensorType::get({2, 12}, f32),
                           builder.getStringAttr("logits"));
  // 12 experts cannot be split into 5 groups.
  moe::RouterOp::create(
      builder, loc, RankedTensorType::get({2, 2}, f32),
      RankedTensorType::get({2, 2}, builder.getI32Type()), logits, Value(),
      /*appended_gate=*/Value(),
      moe::ScoringFuncAttr::get(&context, moe::ScoringFunc::softmax),
      moe::TopKMethodAttr::get(&context, moe::TopKMethod::group_limited_greedy),
      builder.getI64IntegerAttr(2), builder.getI64IntegerAttr(5),
      builder.getI64IntegerAttr(2), UnitAttr(), builder.getF32FloatAttr(1.0f),
      /*appended_experts=*/IntegerAttr());
  EXPECT_EQ(verifyMessage(*module),
            "'moe.router' op n_group (5) must divide the number of experts "
            "(12)");
}

TEST_F(MoeOpsTest, OptimizationPipelineFusesResidualNorm) {
  const char *source = R"mlir(
    func.func @f(%x: tensor<?x8xf32>, %r: tensor<?x8xf32>, %w: tensor<8xf32>) -> (tensor<?x8xf32>, tensor<?x8xf32>) {
      %s = moe.add %x, %r : tensor<?x8xf32>
      %n = moe.rms_norm %s, %w eps(1.0e-05) : tensor<?x8xf32>, tensor<8xf32>
      return %s, %n : tensor<?x8xf32>, tensor<?x8xf32>
    })mlir";
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(source, &context);
  ASSERT_TRUE(module);
  PassManager pm(&context);
  moe::buildMoeOptimizationPipeline(pm);
  ASSERT_TRUE(succeeded(pm.run(*module)));
  unsigned fused = 0, adds = 0;
  module->walk([&](Operation *op) {
    fused += isa<moe::AddRmsNormOp>(op);
    adds += isa<moe::AddOp>(op);
  });
  EXPECT_EQ(fused, 1u);
  EXPECT_EQ(adds, 0u);
}

} // namespace
