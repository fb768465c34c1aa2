//===- Pipelines.cpp - moe optimization pipeline --------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

llvm::ArrayRef<llvm::StringRef> mlir::moe::moeOptimizationPassNames() {
  static const llvm::StringRef names[] = {
      "canonicalize",   "moe-fuse-attention", "moe-fuse-experts",
      "moe-fuse-norms", "moe-fuse-qkv",       "cse"};
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
  if (enabled("moe-fuse-experts"))
    pm.addPass(createMoeFuseExpertsPass());
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
