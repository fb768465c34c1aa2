//===- Pipelines.cpp - moe optimization pipeline --------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moe/Transforms/Passes.h"

#include "mlir/Pass/PassRegistry.h"
#include "mlir/Transforms/Passes.h"

void mlir::moe::buildMoeOptimizationPipeline(OpPassManager &pm) {
  pm.addPass(createCanonicalizerPass());
  pm.addPass(createMoeFuseAttentionPass());
  pm.addPass(createMoeFuseNormsPass());
  pm.addPass(createMoeFuseQkvPass());
  pm.addPass(createCSEPass());
}

void mlir::moe::registerMoePassesAndPipelines() {
  registerMoePasses();
  PassPipelineRegistration<>(
      "moe-optimize",
      "The moe-to-moe pipeline of `moec compile` (canonicalize, absorb MLA, "
      "fuse norms, "
      "fuse sibling projections, cse)",
      [](OpPassManager &pm) { buildMoeOptimizationPipeline(pm); });
}
