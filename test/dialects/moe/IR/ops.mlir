// RUN: moec-opt %s -split-input-file | FileCheck %s
// Round-trip through the custom and the generic form.
// RUN: moec-opt %s -split-input-file | moec-opt -split-input-file | FileCheck %s
// RUN: moec-opt %s -split-input-file --mlir-print-op-generic | moec-opt -split-input-file | FileCheck %s

// CHECK-LABEL: func.func @weights_and_tokens
func.func @weights_and_tokens(%ids: tensor<?xi64>) -> tensor<?x128xf32> {
  // CHECK: %[[TABLE:.+]] = moe.param "model.embed_tokens.weight" : tensor<1024x64xbf16>
  %table = moe.param "model.embed_tokens.weight" : tensor<1024x64xbf16>
  // CHECK: %[[H:.+]] = moe.embedding %[[TABLE]][%{{.+}}] : tensor<1024x64xbf16>, tensor<?xi64> -> tensor<?x64xf32>
  %h = moe.embedding %table[%ids] : tensor<1024x64xbf16>, tensor<?xi64> -> tensor<?x64xf32>
  %nw = moe.param "model.norm.weight" : tensor<64xf32>
  // CHECK: %[[N:.+]] = moe.rms_norm %[[H]], %{{.+}} eps({{.+}}) : tensor<?x64xf32>, tensor<64xf32>
  %n = moe.rms_norm %h, %nw eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
  %w = moe.param "w" : tensor<128x64xbf16>
  %b = moe.param "b" : tensor<128xbf16>
  // CHECK: moe.linear %[[N]], %{{.+}} : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
  %l = moe.linear %n, %w : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
  // CHECK: %[[LB:.+]] = moe.linear %[[N]], %{{.+}} bias %{{.+}} : tensor<?x64xf32>, tensor<128x64xbf16>, tensor<128xbf16> -> tensor<?x128xf32>
  %lb = moe.linear %n, %w bias %b : tensor<?x64xf32>, tensor<128x64xbf16>, tensor<128xbf16> -> tensor<?x128xf32>
  // CHECK: %[[S:.+]] = moe.add %{{.+}}, %[[LB]] : tensor<?x128xf32>
  %s = moe.add %l, %lb : tensor<?x128xf32>
  // CHECK: moe.mul %[[S]], %[[S]] : tensor<?x128xf32>
  %m = moe.mul %s, %s : tensor<?x128xf32>
  return %m : tensor<?x128xf32>
}

// -----

// CHECK-LABEL: func.func @per_head_norm_and_rope
func.func @per_head_norm_and_rope(%q: tensor<?x4x16xf32>, %pos: index) -> (tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>) {
  %qw = moe.param "model.layers.0.self_attn.q_norm.weight" : tensor<16xbf16>
  // CHECK: %[[QN:.+]] = moe.rms_norm %{{.+}}, %{{.+}} eps({{.+}}) : tensor<?x4x16xf32>, tensor<16xbf16>
  %qn = moe.rms_norm %q, %qw eps(1.0e-06) : tensor<?x4x16xf32>, tensor<16xbf16>
  // CHECK: moe.rope %[[QN]] at %{{.+}} theta(1.000000e+06) : tensor<?x4x16xf32>
  %r = moe.rope %qn at %pos theta(1.0e+06) : tensor<?x4x16xf32>
  // CHECK: moe.rope %[[QN]] at %{{.+}} theta(1.000000e+04) interleaved scaling(yarn)
  // CHECK-SAME: factor = 4.000000e+01 : f64
  // CHECK-SAME: mscale = 1.000000e+00 : f64
  // CHECK-SAME: mscale_all_dim = 7.070000e-01 : f64
  // CHECK-SAME: original_max_position_embeddings = 4096 : i64
  %y = moe.rope %qn at %pos theta(1.0e+04) interleaved scaling(yarn)
         {factor = 40.0 : f64, original_max_position_embeddings = 4096 : i64,
          mscale = 1.0 : f64, mscale_all_dim = 0.707 : f64} : tensor<?x4x16xf32>
  // CHECK: moe.rope %[[QN]] at %{{.+}} theta(5.000000e+05) scaling(llama3)
  %l3 = moe.rope %qn at %pos theta(5.0e+05) scaling(llama3)
         {factor = 8.0 : f64, low_freq_factor = 1.0 : f64, high_freq_factor = 4.0 : f64,
          original_max_position_embeddings = 8192 : i64} : tensor<?x4x16xf32>
  return %r, %y, %l3 : tensor<?x4x16xf32>, tensor<?x4x16xf32>, tensor<?x4x16xf32>
}

// -----

// CHECK-LABEL: func.func @gqa_attention
func.func @gqa_attention(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>,
                         %kc: tensor<256x2x16xf32>, %vc: tensor<256x2x8xf32>, %pos: index)
    -> (tensor<?x4x8xf32>, tensor<256x2x16xf32>, tensor<256x2x8xf32>) {
  // CHECK: %{{.+}}, %{{.+}}, %{{.+}} = moe.attention %{{.+}}, %{{.+}}, %{{.+}} cache(%{{.+}}, %{{.+}}) at %{{.+}} scale(2.500000e-01)
  // CHECK-SAME: : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<256x2x16xf32>, tensor<256x2x8xf32> -> tensor<?x4x8xf32>
  %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25)
      : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>,
        tensor<256x2x16xf32>, tensor<256x2x8xf32> -> tensor<?x4x8xf32>
  return %o, %kc2, %vc2 : tensor<?x4x8xf32>, tensor<256x2x16xf32>, tensor<256x2x8xf32>
}

// -----

// CHECK-LABEL: func.func @routers
func.func @routers(%logits: tensor<?x16xf32>, %bias: tensor<16xf32>) {
  // CHECK: moe.router sigmoid noaux_tc %{{.+}} bias %{{.+}} top_k(4) groups(4, 2) norm_topk_prob scale(2.500000e+00) : (tensor<?x16xf32>, tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  %w0, %i0 = moe.router sigmoid noaux_tc %logits bias %bias top_k(4) groups(4, 2) norm_topk_prob scale(2.5)
      : (tensor<?x16xf32>, tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  // CHECK: moe.router softmax group_limited_greedy %{{.+}} top_k(6) groups(8, 3) scale(1.600000e+01)
  %w1, %i1 = moe.router softmax group_limited_greedy %logits top_k(6) groups(8, 3) scale(16.0)
      : (tensor<?x16xf32>) -> (tensor<?x6xf32>, tensor<?x6xi64>)
  // CHECK: moe.router softmax greedy %{{.+}} top_k(2) norm_topk_prob scale(1.000000e+00) : (tensor<?x16xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %w2, %i2 = moe.router softmax greedy %logits top_k(2) norm_topk_prob scale(1.0)
      : (tensor<?x16xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  return
}

// -----

// CHECK-LABEL: func.func @experts_and_mlps
func.func @experts_and_mlps(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>) -> tensor<?x64xf32> {
  %g0 = moe.param "model.layers.1.mlp.experts.0.gate_proj.weight" : tensor<32x64xbf16>
  %g1 = moe.param "model.layers.1.mlp.experts.1.gate_proj.weight" : tensor<32x64xbf16>
  %d0 = moe.param "model.layers.1.mlp.experts.0.down_proj.weight" : tensor<64x32xbf16>
  %d1 = moe.param "model.layers.1.mlp.experts.1.down_proj.weight" : tensor<64x32xbf16>
  // CHECK: %[[G:.+]] = moe.stack %{{.+}}, %{{.+}} : tensor<32x64xbf16> -> tensor<2x32x64xbf16>
  %g = moe.stack %g0, %g1 : tensor<32x64xbf16> -> tensor<2x32x64xbf16>
  // CHECK: %[[D:.+]] = moe.stack %{{.+}}, %{{.+}} : tensor<64x32xbf16> -> tensor<2x64x32xbf16>
  %d = moe.stack %d0, %d1 : tensor<64x32xbf16> -> tensor<2x64x32xbf16>
  // CHECK: %[[Y:.+]] = moe.experts %{{.+}} routed(%{{.+}}, %{{.+}}) weights(%[[G]], %[[G]], %[[D]])
  // CHECK-SAME: : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<2x32x64xbf16>, tensor<2x32x64xbf16>, tensor<2x64x32xbf16>) -> tensor<?x64xf32>
  %y = moe.experts %x routed(%w, %i) weights(%g, %g, %d)
      : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>,
         tensor<2x32x64xbf16>, tensor<2x32x64xbf16>, tensor<2x64x32xbf16>) -> tensor<?x64xf32>
  // CHECK: %[[SH:.+]] = moe.mlp %{{.+}} weights(%{{.+}}, %{{.+}}, %{{.+}}) : tensor<?x64xf32>, tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x32xbf16>
  %sh = moe.mlp %x weights(%g0, %g1, %d0) : tensor<?x64xf32>, tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<64x32xbf16>
  %gw = moe.param "model.layers.1.mlp.shared_expert_gate.weight" : tensor<1x64xbf16>
  %gl = moe.linear %x, %gw : tensor<?x64xf32>, tensor<1x64xbf16> -> tensor<?x1xf32>
  // CHECK: moe.sigmoid_gate %[[SH]], %{{.+}} : tensor<?x64xf32>, tensor<?x1xf32>
  %gated = moe.sigmoid_gate %sh, %gl : tensor<?x64xf32>, tensor<?x1xf32>
  %sum = moe.add %y, %gated : tensor<?x64xf32>
  return %sum : tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @fused_norm
func.func @fused_norm(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  %w = moe.param "w" : tensor<64xbf16>
  // CHECK: %{{.+}}, %{{.+}} = moe.add_rms_norm %{{.+}}, %{{.+}}, %{{.+}} eps({{.+}}) : tensor<?x64xf32>, tensor<64xbf16>
  %s, %n = moe.add_rms_norm %x, %r, %w eps(1.0e-05) : tensor<?x64xf32>, tensor<64xbf16>
  return %s, %n : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// CHECK-LABEL: func.func @fp8_weights
func.func @fp8_weights() -> tensor<300x200xbf16> {
  %q = moe.param "model.layers.0.mlp.down_proj.weight" : tensor<300x200xf8E4M3FN>
  %s = moe.param "model.layers.0.mlp.down_proj.weight_scale_inv" : tensor<3x2xf32>
  // CHECK: moe.dequantize_fp8 %{{.+}}, %{{.+}} block(128, 128) : tensor<300x200xf8E4M3FN>, tensor<3x2xf32> -> tensor<300x200xbf16>
  %w = moe.dequantize_fp8 %q, %s block(128, 128) : tensor<300x200xf8E4M3FN>, tensor<3x2xf32> -> tensor<300x200xbf16>
  return %w : tensor<300x200xbf16>
}

// -----

// CHECK-LABEL: func.func @mla_attention
func.func @mla_attention(%q: tensor<?x4x24xf32>, %lat: tensor<?x32xf32>, %kr: tensor<?x8xf32>, %w: tensor<128x32xbf16>, %lc: tensor<256x32xf32>, %rc: tensor<256x8xf32>, %pos: index) -> tensor<?x4x16xf32> {
  // CHECK: %{{.+}}, %{{.+}}, %{{.+}} = moe.mla_attention %{{.+}}, %{{.+}}, %{{.+}}, %{{.+}} cache(%{{.+}}, %{{.+}}) at %{{.+}} nope(16) scale(2.500000e-01)
  %o, %lc2, %rc2 = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %pos nope(16) scale(0.25)
      : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<128x32xbf16>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
  return %o : tensor<?x4x16xf32>
}

// -----

// CHECK-LABEL: func.func @partial_rope
func.func @partial_rope(%x: tensor<?x4x24xf32>, %pos: index) -> tensor<?x4x24xf32> {
  // CHECK: moe.rope %{{.+}} at %{{.+}} from(16) theta(1.000000e+04) interleaved : tensor<?x4x24xf32>
  %r = moe.rope %x at %pos from(16) theta(1.0e+04) interleaved : tensor<?x4x24xf32>
  return %r : tensor<?x4x24xf32>
}

// -----

// CHECK-LABEL: func.func @router_append
func.func @router_append(%l: tensor<?x8xf32>) -> tensor<?x5xi32> {
  // CHECK: moe.router softmax greedy %{{.+}} top_k(3) append(2) scale(1.000000e+00)
  %w, %i = moe.router softmax greedy %l top_k(3) append(2) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x5xf32>, tensor<?x5xi32>)
  return %i : tensor<?x5xi32>
}

// -----

// CHECK-LABEL: func.func @router_gated_append
func.func @router_gated_append(%l: tensor<?x8xf32>, %g: tensor<?x1xf32>) -> tensor<?x5xf32> {
  // CHECK: moe.router softmax greedy %{{.+}} top_k(3) append(2) gated %{{.+}} scale(1.000000e+00)
  %w, %i = moe.router softmax greedy %l top_k(3) append(2) gated %g scale(1.0) : (tensor<?x8xf32>, tensor<?x1xf32>) -> (tensor<?x5xf32>, tensor<?x5xi32>)
  return %w : tensor<?x5xf32>
}

// -----

// CHECK-LABEL: func.func @fused_moe
func.func @fused_moe(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %rg: tensor<17x64xbf16>, %b: tensor<16xf32>,
                     %gu: tensor<17x64x64xbf16>, %d: tensor<17x64x32xbf16>,
                     %gu16: tensor<16x64x64xbf16>, %d16: tensor<16x64x32xbf16>) -> (tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>) {
  // CHECK: moe.fused_moe %{{.+}} router(%{{.+}}) sigmoid noaux_tc bias %{{.+}} top_k(4) groups(4, 2) norm_topk_prob scale(2.500000e+00) shared(1) experts(%{{.+}}, %{{.+}}) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32>, tensor<17x64x64xbf16>, tensor<17x64x32xbf16>) -> tensor<?x64xf32>
  %y0 = moe.fused_moe %x router(%r) sigmoid noaux_tc bias %b top_k(4) groups(4, 2) norm_topk_prob scale(2.5) shared(1) experts(%gu, %d)
      : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32>, tensor<17x64x64xbf16>, tensor<17x64x32xbf16>) -> tensor<?x64xf32>
  // CHECK: moe.fused_moe %{{.+}} router(%{{.+}}) softmax greedy top_k(4) scale(1.000000e+00) shared(1) gated experts(%{{.+}}, %{{.+}}) : (tensor<?x64xf32>, tensor<17x64xbf16>, tensor<17x64x64xbf16>, tensor<17x64x32xbf16>) -> tensor<?x64xf32>
  %y1 = moe.fused_moe %x router(%rg) softmax greedy top_k(4) scale(1.0) shared(1) gated experts(%gu, %d)
      : (tensor<?x64xf32>, tensor<17x64xbf16>, tensor<17x64x64xbf16>, tensor<17x64x32xbf16>) -> tensor<?x64xf32>
  // CHECK: moe.fused_moe %{{.+}} router(%{{.+}}) softmax greedy top_k(2) norm_topk_prob scale(1.000000e+00) shared(0) experts(%{{.+}}, %{{.+}})
  %y2 = moe.fused_moe %x router(%r) softmax greedy top_k(2) norm_topk_prob scale(1.0) shared(0) experts(%gu16, %d16)
      : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16x64x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return %y0, %y1, %y2 : tensor<?x64xf32>, tensor<?x64xf32>, tensor<?x64xf32>
}
