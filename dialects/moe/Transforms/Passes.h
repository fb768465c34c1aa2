//===- Passes.h - moe dialect passes ----------------------------*- C++ -*-===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_PASSES_H
#define MOE_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"
#include "mlir/Pass/PassManager.h"
#include "moe/IR/MoeDialect.h"

namespace mlir::moe {

#define GEN_PASS_DECL
#include "moe/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe/Transforms/Passes.h.inc"

/// The moe-to-moe optimization pipeline `moec compile` runs after import, in
/// order: canonicalize, --moe-fuse-norms, --moe-fuse-qkv, cse. Later fusion
/// passes (attention, experts) slot in here. Also registered as
/// `--moe-optimize`.
/// The moe-to-moe pipeline of `moec compile`, without the passes named in
/// `disabled` (by their command-line argument).
void buildMoeOptimizationPipeline(OpPassManager &pm,
                                  llvm::ArrayRef<std::string> disabled = {});
/// The arguments of the passes in that pipeline, in order.
llvm::ArrayRef<llvm::StringRef> moeOptimizationPassNames();

/// Registers the passes and the `moe-optimize` pipeline.
void registerMoePassesAndPipelines();

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_PASSES_H
