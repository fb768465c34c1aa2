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

def MoeFuseAttentionPass : Pass<"moe-fuse-attention", "::mlir::ModuleOp"> {
  let summary = "Absorb MLA's kv_b projection into attention over a latent "
                "KV cache";
  let description = [{
    Rewrites DeepSeek-V2/V3 multi-head latent attention from the form the
    importer produces (per-head keys and values expanded from the compressed
    KV by `kv_b_proj`, cached per head) into `moe.mla_attention`, which
    caches only the normalized compressed KV and the shared rope key and
    applies `kv_b_proj`'s key part to the query and its value part to the
    attention output (DeepSeek's "absorb" mode):
    ```mlir
    %kv = moe.linear %latent, %kv_b : tensor<?x32xf32>, tensor<128x32xf32> -> tensor<?x128xf32>
    %e = tensor.expand_shape %kv [[0], [1, 2]] ... into tensor<?x4x32xf32>
    %k_nope = tensor.extract_slice %e[0, 0, 0] [%T, 4, 16] [1, 1, 1] ...
    %v = tensor.extract_slice %e[0, 0, 16] [%T, 4, 16] [1, 1, 1] ...
    %k_rope_b = linalg.broadcast ins(%k_rope : tensor<?x8xf32>) outs(...) dimensions = [1]
    %k = tensor.concat dim(2) %k_nope, %k_rope_b ...
    %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.2) ...
    ```
    becomes
    ```mlir
    %o, %lc2, %rc2 = moe.mla_attention %q, %latent, %k_rope, %kv_b cache(%lc, %rc) at %pos nope(16) scale(0.2) ...
    ```
    and the layer's cache arguments of every entry point change from
    `[S, H, Dn + Dr]` / `[S, H, Dv]` to `[S, kv_lora_rank]` / `[S, Dr]`:
    for DeepSeek-V3, 512 + 64 values per token and layer instead of
    128 x (192 + 128). A layer is rewritten only when the pattern matches in
    every function that uses its caches (prefill and decode share them);
    MHA/GQA attention and anything else is left alone.

    Also, independently of `absorb-mla`, a query assembled from the nope
    part of a tensor and the rotated rest of it,
    `concat(x[..., :o], rope(x[..., o:]))`, becomes `rope(x) from(o)`.
  }];
  let options = [
    Option<"absorbMla", "absorb-mla", "bool", /*default=*/"true",
           "Rewrite MLA into moe.mla_attention over the latent cache">,
  ];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::func::FuncDialect"];
}

def MoeFuseExpertsPass : Pass<"moe-fuse-experts"> {
  let summary = "Fuse each MoE block (router, top-k, routed and shared experts) into one moe.fused_moe";
  let description = [{
    Two steps. First, DeepSeek's shared experts -- a SwiGLU MLP every token
    runs next to its routed experts, the outputs added:
    ```mlir
    %w, %i = moe.router softmax greedy %logits top_k(6) scale(1.0) : ...
    %r = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : ...
    %s = moe.mlp %x weights(%sg, %su, %sd) : ...
    %y = moe.add %r, %s : tensor<?x2048xf32>
    ```
    A shared MLP of intermediate size `S * I` (`I` the routed experts') is
    exactly `S` more experts of size `I` with weight 1, so this becomes one
    `moe.experts` over stacks with the shared slices appended (compile-time
    weight transforms) and a router that appends the `S` indices
    (Qwen2-MoE's `moe.sigmoid_gate` becomes the router's `gated` weight for
    them):
    ```mlir
    %w, %i = moe.router softmax greedy %logits top_k(6) append(2) scale(1.0) : ...
    %y = moe.experts %x routed(%w, %i) weights(%g2, %u2, %d2) : ...
    ```
    Second (`fuse-blocks`, on by default), the router's projection of the
    experts' input, the router and the experts become one op, the gate and
    up stacks concatenated along their rows at compile time:
    ```mlir
    %gu = tensor.concat dim(1) %g2, %u2 : (...) -> tensor<66x2816x2048xbf16>
    %y = moe.fused_moe %x router(%r) softmax greedy top_k(6) scale(1.0)
           shared(2) experts(%gu, %d2) : ...
    ```
    whose lowering sees the whole block: on the CPU, decode runs it as
    three dispatches (router logits; top-k and the selected experts'
    gate/up; their down projection and weighted sum), prefill groups the
    tokens by expert.

    Left alone: shared weights that are not plain checkpoint tensors (FP8
    to dequantize: the writer slices only plain tensors), shared sizes that
    do not divide, routers or projections with other users, router
    projections with a bias or of another input.
  }];
  let options = [
    Option<"fuseBlocks", "fuse-blocks", "bool", /*default=*/"true",
           "Also fuse router projection + router + experts into moe.fused_moe">,
  ];
  let dependentDialects = ["::mlir::moe::MoeDialect",
                           "::mlir::tensor::TensorDialect"];
}

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
