//===- MoeOps.td - moe dialect operations ------------------*- tablegen -*-===//
//
// Part of moec. Operations of the `moe` dialect, grouped as: weights,
// per-token ops, attention, mixture of experts, elementwise, fused ops.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_IR_MOEOPS_TD
#define MOE_IR_MOEOPS_TD

include "moe/IR/MoeBase.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

//===----------------------------------------------------------------------===//
// Type constraints
//===----------------------------------------------------------------------===//

// Element types a checkpoint tensor may have once imported.
def Moe_WeightTensor : RankedTensorOf<[F32, F16, BF16, F8E4M3FN, I8, I32]>;
// Activations are computed in f32 or a 16-bit float type.
def Moe_ActTensor : RankedTensorOf<[F32, F16, BF16]>;
def Moe_IndexTensor : RankedTensorOf<[I32, I64]>;

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

def Moe_ParamOp : Moe_PureOp<"param"> {
  let summary = "a named checkpoint tensor";
  let description = [{
    Refers to the tensor `name` of the checkpoint the module was imported
    from. The IR holds only the name and the type; the artifact writer
    streams the bytes from the checkpoint. The result type is the tensor's
    shape and its element type in the checkpoint (or after a compile-time
    dequantization).

    Example:

    ```mlir
    %w = moe.param "model.layers.0.self_attn.q_proj.weight" : tensor<64x64xbf16>
    ```
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs Moe_WeightTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Moe_StackOp : Moe_PureOp<"stack", [SameTypeOperands]> {
  let summary = "stacks same-shaped weights along a new leading dimension";
  let description = [{
    A compile-time weight transform: builds `tensor<N x S>` from `N`
    operands of type `tensor<S>`, operand `i` at index `i`. The importer uses
    it to turn per-expert checkpoint tensors into the `[E, ...]` tensors
    `moe.experts` takes; the compiler evaluates it before writing the
    artifact, so the runtime never stacks anything.

    Example:

    ```mlir
    %g = moe.stack %g0, %g1, %g2, %g3 : tensor<32x64xbf16> -> tensor<4x32x64xbf16>
    ```
  }];
  let arguments = (ins Variadic<Moe_WeightTensor>:$inputs);
  let results = (outs Moe_WeightTensor:$result);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
}

def Moe_DequantizeFp8Op : Moe_PureOp<"dequantize_fp8"> {
  let summary = "block-scaled float8 weight to a wider float type";
  let description = [{
    A compile-time weight transform for DeepSeek's FP8 checkpoints:
    `result[i, j] = float(input[i, j]) * scale_inv[i / block_rows][j / block_cols]`
    for an `f8E4M3FN` weight `[M, N]` and its `weight_scale_inv` tensor
    `[ceil(M / block_rows), ceil(N / block_cols)]`, exactly as DeepSeek's
    reference `weight_dequant` computes it (edge blocks are partial). The
    compiler evaluates it block by block while writing the artifact, so
    kernels see ordinary `bf16`/`f32` weights until FP8 kernels exist.

    Example:

    ```mlir
    %w = moe.dequantize_fp8 %q, %s block(128, 128)
        : tensor<300x200xf8E4M3FN>, tensor<3x2xf32> -> tensor<300x200xbf16>
    ```
  }];
  let arguments = (ins RankedTensorOf<[F8E4M3FN]>:$input,
                       RankedTensorOf<[F32, BF16]>:$scale_inv,
                       I64Attr:$block_rows, I64Attr:$block_cols);
  let results = (outs RankedTensorOf<[F32, BF16, F16]>:$result);
  let assemblyFormat = [{
    $input `,` $scale_inv `block` `(` $block_rows `,` $block_cols `)` attr-dict
    `:` type($input) `,` type($scale_inv) `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Per-token ops
//===----------------------------------------------------------------------===//

def Moe_EmbeddingOp : Moe_PureOp<"embedding"> {
  let summary = "token embedding lookup";
  let description = [{
    `result[t, :] = table[ids[t], :]`, converted to the result element type.
    Ids outside `[0, vocab)` are a runtime error of the caller; lowerings
    clamp them so that they never read outside the table.

    Example:

    ```mlir
    %h = moe.embedding %table[%ids] : tensor<1024x64xbf16>, tensor<?xi64> -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Moe_WeightTensor:$table, Moe_IndexTensor:$ids);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $table `[` $ids `]` attr-dict `:` type($table) `,` type($ids) `->` type($result)
  }];
  let hasVerifier = 1;
}

def Moe_RmsNormOp : Moe_PureOp<"rms_norm", [AllTypesMatch<["input", "result"]>]> {
  let summary = "RMS normalization over the last dimension";
  let description = [{
    `result = input / sqrt(mean(input^2, -1) + epsilon) * weight`, computed
    in f32. The weight has the size of the last input dimension, so the same
    op normalizes whole hidden states (`[T, H]`) and, for Qwen3's per-head
    q/k norms, each head (`[T, heads, head_dim]`).

    Example:

    ```mlir
    %n = moe.rms_norm %x, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xbf16>
    %qn = moe.rms_norm %q, %qw eps(1.0e-06) : tensor<?x4x16xf32>, tensor<16xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_WeightTensor:$weight,
                       F64Attr:$epsilon);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `eps` `(` $epsilon `)` attr-dict `:` type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

def Moe_LinearOp : Moe_PureOp<"linear"> {
  let summary = "y = x W^T (+ b), weights in HuggingFace [out, in] layout";
  let description = [{
    Applies a linear projection to the last dimension of `input`:
    `result[..., n] = sum_k input[..., k] * weight[n, k] (+ bias[n])`, with
    f32 accumulation. The weight keeps the checkpoint's `[out, in]` layout;
    packing it for a target is a compile-time transform.

    Example:

    ```mlir
    %q = moe.linear %x, %wq : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
    %k = moe.linear %x, %wk bias %bk : tensor<?x64xf32>, tensor<32x64xbf16>, tensor<32xbf16> -> tensor<?x32xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_WeightTensor:$weight,
                       Optional<Moe_WeightTensor>:$bias);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? attr-dict `:` type($input) `,` type($weight)
    (`,` type($bias)^)? `->` type($result)
  }];
  let hasVerifier = 1;
}

def Moe_RopeOp : Moe_PureOp<"rope", [AllTypesMatch<["input", "result"]>]> {
  let summary = "rotary position embedding";
  let description = [{
    Rotates each head vector of `input : tensor<T x heads x D>` by the angle
    `(start_pos + t) * inv_freq[i]` for the frequency pairs `i < D/2`, with
    `inv_freq[i] = theta^(-2i/D)` adjusted by `scaling`:

    * `none`: unchanged;
    * `linear`: divided by `factor`;
    * `yarn`: YaRN blend between interpolated and extrapolated frequencies
      with `factor`, `beta_fast` (default 32), `beta_slow` (default 1) and
      `original_max_position_embeddings`; cos/sin are multiplied by the YaRN
      attention factor derived from `mscale`/`mscale_all_dim` exactly as
      HuggingFace transformers does;
    * `llama3`: Llama 3.1 wavelength bands with `factor`, `low_freq_factor`,
      `high_freq_factor` and `original_max_position_embeddings`.

    Pairs are `(x[2i], x[2i+1])` when `interleaved` is set (DeepSeek's
    layout) and `(x[i], x[i + D/2])` otherwise (rotate-half, Llama/Qwen).

    With `from(o)` only the last `D - o` values of each head vector are
    rotated (as above, with `D - o` in place of `D`) and the first `o` are
    copied: DeepSeek's MLA query, whose nope part stays as it is
    (`--moe-fuse-attention` forms it from a slice/rope/concat).

    Example:

    ```mlir
    %r = moe.rope %q at %pos theta(1.0e+04) : tensor<?x4x16xf32>
    %y = moe.rope %k at %pos theta(1.0e+04) interleaved scaling(yarn)
           {factor = 40.0 : f64, original_max_position_embeddings = 4096 : i64,
            mscale = 1.0 : f64, mscale_all_dim = 1.0 : f64} : tensor<?x1x64xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Index:$start_pos, F64Attr:$theta,
                       UnitAttr:$interleaved,
                       DefaultValuedAttr<Moe_RopeScaling,
                                         "::mlir::moe::RopeScaling::none">:$scaling,
                       OptionalAttr<F64Attr>:$factor,
                       OptionalAttr<F64Attr>:$beta_fast,
                       OptionalAttr<F64Attr>:$beta_slow,
                       OptionalAttr<F64Attr>:$mscale,
                       OptionalAttr<F64Attr>:$mscale_all_dim,
                       OptionalAttr<F64Attr>:$low_freq_factor,
                       OptionalAttr<F64Attr>:$high_freq_factor,
                       OptionalAttr<I64Attr>:$original_max_position_embeddings,
                       OptionalAttr<I64Attr>:$rotary_offset);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `at` $start_pos (`from` `(` $rotary_offset^ `)`)? `theta` `(` $theta `)`
    (`interleaved` $interleaved^)? (`scaling` `(` $scaling^ `)`)? attr-dict `:`
    type($input)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Attention
//===----------------------------------------------------------------------===//

def Moe_AttentionOp : Moe_PureOp<"attention", [
    AllTypesMatch<["key_cache", "new_key_cache"]>,
    AllTypesMatch<["value_cache", "new_value_cache"]>]> {
  let summary = "causal multi-head / grouped-query attention over a KV cache";
  let description = [{
    One call of causal attention for `T` new tokens at positions
    `start_pos .. start_pos + T - 1`:

    1. writes `key[t]` and `value[t]` into row `start_pos + t` of the caches
       and returns the updated caches (functional update: bufferization turns
       it into an in-place write);
    2. for each token `t` and query head `h`, attends over cache rows
       `0 .. start_pos + t` of KV head `h / (Hq / Hkv)`:
       `result[t, h] = softmax_j(scale * query[t, h] . k_cache[j]) v_cache[j]`.

    Shapes: `query : [T, Hq, D]`, `key : [T, Hkv, D]`, `value : [T, Hkv, Dv]`,
    `key_cache : [S, Hkv, D]`, `value_cache : [S, Hkv, Dv]`,
    `result : [T, Hq, Dv]`, where `Hq` is a multiple of `Hkv` (MHA when equal,
    GQA/MQA otherwise) and `S` is the static cache capacity. Calls with
    `start_pos + T > S` are rejected by the runtime before any kernel runs.
    MLA in its unabsorbed form is this op with `Hkv = Hq` and
    `D = qk_nope_head_dim + qk_rope_head_dim`, `Dv = v_head_dim`.

    Example:

    ```mlir
    %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25)
        : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>,
          tensor<256x2x16xf32>, tensor<256x2x16xf32> -> tensor<?x4x16xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$query, Moe_ActTensor:$key,
                       Moe_ActTensor:$value, Moe_ActTensor:$key_cache,
                       Moe_ActTensor:$value_cache, Index:$start_pos,
                       F32Attr:$scale);
  let results = (outs Moe_ActTensor:$result, Moe_ActTensor:$new_key_cache,
                      Moe_ActTensor:$new_value_cache);
  let assemblyFormat = [{
    $query `,` $key `,` $value `cache` `(` $key_cache `,` $value_cache `)`
    `at` $start_pos `scale` `(` $scale `)` attr-dict `:` type($query) `,`
    type($key) `,` type($value) `,` type($key_cache) `,` type($value_cache)
    `->` type($result)
  }];
  let hasVerifier = 1;
}

def Moe_MlaAttentionOp : Moe_PureOp<"mla_attention", [
    AllTypesMatch<["latent_cache", "new_latent_cache"]>,
    AllTypesMatch<["rope_cache", "new_rope_cache"]>]> {
  let summary = "multi-head latent attention in DeepSeek's absorbed form";
  let description = [{
    DeepSeek-V2/V3 attention computed over the compressed cache, as DeepSeek's
    inference code does in its "absorb" mode. The cache holds, per position,
    only the normalized compressed KV (`latent`, `kv_lora_rank` values) and
    the rotated rope key shared by all heads (`Dr` values), instead of
    per-head keys and values.

    `kv_b_weight : [H * (Dn + Dv), R]` is the checkpoint's `kv_b_proj`
    weight: for head `h`, rows `h*(Dn+Dv) .. +Dn` are `W_UK[h]` (latent ->
    key nope part) and the following `Dv` rows are `W_UV[h]` (latent ->
    value). One call for `T` tokens at positions `start_pos ..`:

    1. writes `latent[t]` and `key_rope[t]` into row `start_pos + t` of the
       caches (functional update, like `moe.attention`);
    2. for each token `t` and head `h`, with `q = query[t, h]`
       (`[Dn + Dr]`, its last `Dr` values already rotated):
       `q_lat = W_UK[h]^T q[:Dn]` (`[R]`),
       `score_j = scale * (q_lat . latent_cache[j] + q[Dn:] . rope_cache[j])`
       for `j` in `0 .. start_pos + t`,
       `result[t, h] = W_UV[h] (softmax_j(score) latent_cache)`.

    This equals `moe.attention` over keys `[W_UK[h] latent_j, rope_j]` and
    values `W_UV[h] latent_j` (what the unabsorbed form caches), reassociated
    so that no per-head key or value is materialized. Produced by
    `--moe-fuse-attention`.

    Shapes: `query : [T, H, Dn + Dr]`, `latent : [T, R]`,
    `key_rope : [T, Dr]`, `kv_b_weight : [H * (Dn + Dv), R]`,
    `latent_cache : [S, R]`, `rope_cache : [S, Dr]`, `result : [T, H, Dv]`.

    Example:

    ```mlir
    %o, %lc2, %rc2 = moe.mla_attention %q, %latent, %k_rope, %kv_b
        cache(%lc, %rc) at %pos nope(16) scale(0.2)
        : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>,
          tensor<128x32xf32>, tensor<256x32xf32>, tensor<256x8xf32>
          -> tensor<?x4x16xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$query, Moe_ActTensor:$latent,
                       Moe_ActTensor:$key_rope, Moe_ActTensor:$kv_b_weight,
                       Moe_ActTensor:$latent_cache, Moe_ActTensor:$rope_cache,
                       Index:$start_pos, I64Attr:$nope_dim, F32Attr:$scale);
  let results = (outs Moe_ActTensor:$result, Moe_ActTensor:$new_latent_cache,
                      Moe_ActTensor:$new_rope_cache);
  let assemblyFormat = [{
    $query `,` $latent `,` $key_rope `,` $kv_b_weight
    `cache` `(` $latent_cache `,` $rope_cache `)` `at` $start_pos
    `nope` `(` $nope_dim `)` `scale` `(` $scale `)` attr-dict `:`
    type($query) `,` type($latent) `,` type($key_rope) `,`
    type($kv_b_weight) `,` type($latent_cache) `,` type($rope_cache)
    `->` type($result)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def Moe_RouterOp : Moe_PureOp<"router", [AttrSizedOperandSegments]> {
  let summary = "expert scoring and top-k selection";
  let description = [{
    Turns router logits `[T, E]` (the output of the gate projection) into
    `top_k` routing weights and expert indices per token:

    1. scores: `softmax(logits)` or `sigmoid(logits)` (`scoring`);
    2. selection (`method`):
       * `greedy`: the `top_k` highest scores;
       * `group_limited_greedy`: split the experts into `n_group` groups,
         keep the `topk_group` groups with the highest max score, then
         `top_k` within them;
       * `noaux_tc`: add `bias` (the checkpoint's
         `e_score_correction_bias`) to the scores for selection only; rank
         groups by the sum of their two best biased scores, keep
         `topk_group` groups, then `top_k` biased scores within them;
    3. weights: the *unbiased* scores of the selected experts, divided by
       their sum (+1e-20) when `norm_topk_prob` is set, then multiplied by
       `routed_scaling_factor`.

    Indices are ordered by descending selection score; ties break toward the
    lower expert index.

    With `append(S)`, each token's `top_k` selections are followed by `S`
    more: indices `E .. E + S - 1` with weight 1, or `sigmoid(gate[t, 0])`
    with `gated %gate` (`[T, 1]`, Qwen2-MoE's shared-expert gate).
    `--moe-fuse-experts` uses them for shared experts folded into the routed
    stacks as experts every token takes.

    Example:

    ```mlir
    %w, %i = moe.router sigmoid noaux_tc %logits bias %b top_k(8) groups(8, 4)
               norm_topk_prob scale(2.5)
        : (tensor<?x256xf32>, tensor<256xf32>) -> (tensor<?x8xf32>, tensor<?x8xi32>)
    ```
  }];
  let arguments = (ins Moe_ActTensor:$logits,
                       Optional<RankedTensorOf<[F32, BF16]>>:$bias,
                       Optional<Moe_ActTensor>:$appended_gate,
                       Moe_ScoringFunc:$scoring, Moe_TopKMethod:$method,
                       I64Attr:$top_k, OptionalAttr<I64Attr>:$n_group,
                       OptionalAttr<I64Attr>:$topk_group,
                       UnitAttr:$norm_topk_prob,
                       DefaultValuedAttr<F32Attr, "1.0f">:$routed_scaling_factor,
                       OptionalAttr<I64Attr>:$appended_experts);
  let results = (outs RankedTensorOf<[F32]>:$weights,
                      Moe_IndexTensor:$indices);
  let assemblyFormat = [{
    $scoring $method $logits (`bias` $bias^)? `top_k` `(` $top_k `)`
    (`append` `(` $appended_experts^ `)`)? (`gated` $appended_gate^)?
    (`groups` `(` $n_group^ `,` $topk_group `)`)?
    (`norm_topk_prob` $norm_topk_prob^)?
    `scale` `(` $routed_scaling_factor `)` attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_ExpertsOp : Moe_PureOp<"experts"> {
  let summary = "routed SwiGLU experts combined with routing weights";
  let description = [{
    For each token `t` and each of its `K` selections `(w, e)` from
    `moe.router`, applies expert `e`'s SwiGLU FFN and sums:

    `result[t] = sum_k w[t,k] * down[e] (silu(gate[e] x[t]) * up[e] x[t])`,
    `e = indices[t, k]`.

    Expert weights are stacked along a leading expert dimension:
    `gate, up : [E, I, H]`, `down : [E, H, I]`. Shared experts are not part of
    this op (they are a `moe.mlp`); `--moe-fuse-experts` folds both into one
    dispatch.

    Example:

    ```mlir
    %y = moe.experts %x routed(%w, %i) weights(%gate, %up, %down)
        : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
           tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>)
          -> tensor<?x64xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input,
                       RankedTensorOf<[F32]>:$routing_weights,
                       Moe_IndexTensor:$expert_indices,
                       Moe_WeightTensor:$gate_weight,
                       Moe_WeightTensor:$up_weight,
                       Moe_WeightTensor:$down_weight);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `routed` `(` $routing_weights `,` $expert_indices `)`
    `weights` `(` $gate_weight `,` $up_weight `,` $down_weight `)`
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Moe_FusedMoeOp : Moe_PureOp<"fused_moe"> {
  let summary = "a whole MoE block: router, top-k, routed and shared experts, combine";
  let description = [{
    One op for everything a MoE layer does to its (normalized) input `x`,
    produced by `--moe-fuse-experts` so that a lowering sees the routing
    decision and the expert work together and runs only the selected
    experts:

    1. router logits `x R^T` with `router_weight : [E, H]` (`[E + 1, H]`
       with `gated_shared`: the last row is Qwen2-MoE's
       `shared_expert_gate`);
    2. scores, selection and weights exactly as `moe.router` with the same
       `scoring`, `method`, `top_k`, `groups`, `norm_topk_prob`, `scale`
       and score correction `bias`;
    3. `shared(S)` always-selected experts `E .. E + S - 1` after each
       token's `top_k` selections, with weight 1 (or `sigmoid` of the gate
       row's logit with `gated_shared`): shared experts folded into the
       stacks;
    4. per selection `(w, e)`: `w * down[e] (silu(g) * u)`, where
       `gate_up[e] : [2 I, H]` holds expert `e`'s gate rows then its up rows
       (`g = gate_up[e][0:I] x`, `u = gate_up[e][I:2I] x`), `down : [E + S,
       H, I]`, summed per token in selection order.

    The expert weights are stacked and gate/up concatenated at compile
    time (weight expressions over checkpoint tensors), so one weight read
    serves both halves of the SwiGLU.

    Example (DeepSeek-V3: sigmoid scores, group-limited noaux_tc, one shared
    expert):

    ```mlir
    %y = moe.fused_moe %x router(%r) sigmoid noaux_tc bias %b top_k(8)
           groups(8, 4) norm_topk_prob scale(2.5) shared(1)
           experts(%gate_up, %down)
        : (tensor<?x7168xbf16>, tensor<256x7168xbf16>, tensor<256xf32>,
           tensor<257x4096x7168xbf16>, tensor<257x7168x2048xbf16>)
          -> tensor<?x7168xbf16>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_WeightTensor:$router_weight,
                       Optional<RankedTensorOf<[F32, BF16]>>:$bias,
                       Moe_WeightTensor:$gate_up_weight,
                       Moe_WeightTensor:$down_weight,
                       Moe_ScoringFunc:$scoring, Moe_TopKMethod:$method,
                       I64Attr:$top_k, OptionalAttr<I64Attr>:$n_group,
                       OptionalAttr<I64Attr>:$topk_group,
                       UnitAttr:$norm_topk_prob,
                       DefaultValuedAttr<F32Attr, "1.0f">:$routed_scaling_factor,
                       DefaultValuedAttr<I64Attr, "0">:$shared_experts,
                       UnitAttr:$gated_shared);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `router` `(` $router_weight `)` $scoring $method
    (`bias` $bias^)? `top_k` `(` $top_k `)`
    (`groups` `(` $n_group^ `,` $topk_group `)`)?
    (`norm_topk_prob` $norm_topk_prob^)?
    `scale` `(` $routed_scaling_factor `)`
    `shared` `(` $shared_experts `)` (`gated` $gated_shared^)?
    `experts` `(` $gate_up_weight `,` $down_weight `)`
    attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{
    /// Routed experts E (the router's scored experts).
    int64_t getNumRoutedExperts();
    /// The experts' intermediate size I.
    int64_t getIntermediateSize();
  }];
  let hasVerifier = 1;
}

def Moe_MlpOp : Moe_PureOp<"mlp", [AllTypesMatch<["input", "result"]>]> {
  let summary = "dense SwiGLU feed-forward block";
  let description = [{
    `result = down (silu(gate x) * up x)` with `gate, up : [I, H]` and
    `down : [H, I]` in HuggingFace layout. Used for dense layers, for the
    dense prefix of DeepSeek models (`first_k_dense_replace`) and for shared
    experts.

    Example:

    ```mlir
    %y = moe.mlp %x weights(%g, %u, %d)
        : tensor<?x64xf32>, tensor<128x64xbf16>, tensor<128x64xbf16>, tensor<64x128xbf16>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_WeightTensor:$gate_weight,
                       Moe_WeightTensor:$up_weight,
                       Moe_WeightTensor:$down_weight);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `weights` `(` $gate_weight `,` $up_weight `,` $down_weight `)`
    attr-dict `:` type($input) `,` type($gate_weight) `,` type($up_weight)
    `,` type($down_weight)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Elementwise
//===----------------------------------------------------------------------===//

class Moe_BinaryOp<string mnemonic, string expr>
    : Moe_PureOp<mnemonic, [SameOperandsAndResultType, Commutative]> {
  let summary = "elementwise " # expr;
  let description = "`result = " # expr # "` elementwise, on identical "
      # "types.\n\nExample:\n\n```mlir\n%c = moe." # mnemonic
      # " %a, %b : tensor<?x64xf32>\n```\n";
  let arguments = (ins Moe_ActTensor:$lhs, Moe_ActTensor:$rhs);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def Moe_AddOp : Moe_BinaryOp<"add", "lhs + rhs">;
def Moe_MulOp : Moe_BinaryOp<"mul", "lhs * rhs">;

def Moe_SigmoidGateOp : Moe_PureOp<"sigmoid_gate",
                                   [AllTypesMatch<["input", "result"]>]> {
  let summary = "scales each token's row by sigmoid of a per-token gate";
  let description = [{
    `result[t, :] = sigmoid(gate[t, 0]) * input[t, :]`: Qwen2-MoE's gated
    shared expert, where `gate` is the output of `shared_expert_gate`
    (`[T, 1]`).

    Example:

    ```mlir
    %y = moe.sigmoid_gate %shared, %g : tensor<?x64xf32>, tensor<?x1xf32>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_ActTensor:$gate);
  let results = (outs Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate attr-dict `:` type($input) `,` type($gate)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Fused ops (produced by passes)
//===----------------------------------------------------------------------===//

def Moe_AddRmsNormOp : Moe_PureOp<"add_rms_norm", [
    AllTypesMatch<["input", "residual", "sum", "result"]>]> {
  let summary = "residual add followed by RMS normalization";
  let description = [{
    Produced by `--moe-fuse-norms`: `sum = input + residual` and
    `result = rms_norm(sum, weight, epsilon)` in one pass over the row, so
    the residual stream is read once. `sum` is the new residual stream.

    Example:

    ```mlir
    %s, %n = moe.add_rms_norm %x, %r, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xbf16>
    ```
  }];
  let arguments = (ins Moe_ActTensor:$input, Moe_ActTensor:$residual,
                       Moe_WeightTensor:$weight, F64Attr:$epsilon);
  let results = (outs Moe_ActTensor:$sum, Moe_ActTensor:$result);
  let assemblyFormat = [{
    $input `,` $residual `,` $weight `eps` `(` $epsilon `)` attr-dict `:`
    type($input) `,` type($weight)
  }];
  let hasVerifier = 1;
}

#endif // MOE_IR_MOEOPS_TD
