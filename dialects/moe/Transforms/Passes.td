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

def MoeFuseQkvPass : Pass<"moe-fuse-qkv"> {
  let summary = "Fuse projections of one input into a single moe.linear";
  let description = [{
    Rewrites sibling `moe.linear`s of the same input whose weights (and
    biases) are compile-time weights (`moe.param` and transforms of them),
    typically the q/k/v projections of MHA/GQA attention,

    ```mlir
    %q = moe.linear %x, %wq : tensor<?x64xf32>, tensor<64x64xf32> -> tensor<?x64xf32>
    %k = moe.linear %x, %wk : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x16xf32>
    ```

    into one projection with the weights concatenated along the output
    features (a compile-time weight transform) and slices of its result:

    ```mlir
    %w = tensor.concat dim(0) %wq, %wk : (tensor<64x64xf32>, tensor<16x64xf32>) -> tensor<80x64xf32>
    %qk = moe.linear %x, %w : tensor<?x64xf32>, tensor<80x64xf32> -> tensor<?x80xf32>
    %q = tensor.extract_slice %qk[0, 0] [%T, 64] [1, 1] : tensor<?x80xf32> to tensor<?x64xf32>
    %k = tensor.extract_slice %qk[0, 64] [%T, 16] [1, 1] : tensor<?x80xf32> to tensor<?x16xf32>
    ```

    so the input is read once. Linears fuse only when all or none of them
    have a bias and their weights share an element type.
  }];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::tensor::TensorDialect"];
}

#endif // MOE_TRANSFORMS_PASSES_TD
