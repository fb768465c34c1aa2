//===- Pipelines.cpp - moe optimization pipeline --------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

llvm::ArrayRef<llvm::StringRef> mlir::moe::moeOptimizationPassNames() {
  static const llvm::StringRef names[] = {"canonicalize",
                                          "moe-fuse-attention",
                                          "moe-fuse-experts",
                                          "moe-fuse-blocks",
                                          "moe-fuse-norms",
                                          "moe-fuse-qkv",
                                          "cse"};
  return names;
}

void mlir::moe::buildMoeOptimizationPipeline(
    OpPassManager &pm, llvm::ArrayRef<std::string> disabled) {
  auto enabled = [&](llvm::StringRef name) {
    return !llvm::is_contained(disabled, name);
  };
  if (enabled("canonicalize"))
    pm.addPass(createCanonicalizerPass());
  if (enabled("moe-fuse-attention"))
    pm.addPass(createMoeFuseAttentionPass());
  // "moe-fuse-blocks" names the second step of moe-fuse-experts (router +
  // experts -> moe.fused_moe), so that it can be left out alone.
  if (enabled("moe-fuse-experts"))
    pm.addPass(createMoeFuseExpertsPass(
        MoeFuseExpertsPassOptions{enabled("moe-fuse-blocks")}));
  if (enabled("moe-fuse-norms"))
    pm.addPass(createMoeFuseNormsPass());
  if (enabled("moe-fuse-qkv"))
    pm.addPass(createMoeFuseQkvPass());
  if (enabled("cse"))
    pm.addPass(createCSEPass());
}

void mlir::moe::registerMoePassesAndPipelines() {
  registerMoePasses();
  PassPipelineRegistration<>(
      "moe-optimize",
      "The moe-to-moe pipeline of `moec compile` (canonicalize, absorb MLA, "
      "fold shared experts, "
      "fuse norms, "
      "fuse sibling projections, cse)",
      [](OpPassManager &pm) { buildMoeOptimizationPipeline(pm); });
}
