//===- Passes.td - moe dialect passes ----------------------*- tablegen -*-===//
//
// Part of moec. Passes that rewrite `moe` IR into `moe` IR.
//
// File organization: passes are grouped under banners (fusion, weight
// transforms, analysis) and kept alphabetical within a group. Each pass
// `MoeFooBarPass` is implemented in `FooBar.cpp`.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TRANSFORMS_PASSES_TD
#define MOE_TRANSFORMS_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

def MoeFuseNormsPass : Pass<"moe-fuse-norms"> {
  let summary = "Fuse residual adds into the RMSNorm that consumes them";
  let description = [{
    Rewrites

    ```mlir
    %sum = moe.add %x, %residual : tensor<?x64xf32>
    %n = moe.rms_norm %sum, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
    ```

    into

    ```mlir
    %sum, %n = moe.add_rms_norm %x, %residual, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
    ```

    so the residual stream is read once per layer boundary instead of twice.
    Every use of `%sum` (the residual stream feeding the next block) is
    redirected to the fused op's first result. When one sum feeds several
    norms, only the first norm in block order absorbs it; the others keep
    their own `moe.rms_norm` of the fused sum. A sum that is used before its
    norm is left unfused (the fused op could not dominate that use).
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
