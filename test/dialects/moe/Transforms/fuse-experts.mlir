// RUN: moec-opt %s -split-input-file --moe-fuse-experts | FileCheck %s
// RUN: moec-opt %s -split-input-file --moe-fuse-experts=fuse-blocks=false | FileCheck %s --check-prefix=SHARED-ONLY

// With fuse-blocks=false only the shared experts fold.
// SHARED-ONLY-LABEL: func.func @block
// SHARED-ONLY: moe.linear
// SHARED-ONLY: moe.router sigmoid noaux_tc %{{.+}} bias %{{.+}} top_k(3) append(1)
// SHARED-ONLY: moe.experts
// SHARED-ONLY-NOT: moe.fused_moe

// DeepSeek: a shared MLP of 2 x the experts' intermediate size becomes two
// always-selected experts appended to the stacks.
// CHECK-LABEL: func.func @shared
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>, %[[L:.+]]: tensor<?x8xf32>)
// CHECK-DAG: %[[G:.+]] = moe.param "experts.gate"
// CHECK-DAG: %[[SG:.+]] = moe.param "shared.gate"
// CHECK-DAG: %[[SD:.+]] = moe.param "shared.down"
// CHECK: %[[G0:.+]] = tensor.extract_slice %[[SG]][0, 0] [32, 64] [1, 1]
// CHECK: %[[G1:.+]] = tensor.extract_slice %[[SG]][32, 0] [32, 64] [1, 1]
// CHECK: %[[GS:.+]] = moe.stack %[[G0]], %[[G1]]
// CHECK: %[[GA:.+]] = tensor.concat dim(0) %[[G]], %[[GS]] : (tensor<8x32x64xf32>, tensor<2x32x64xf32>) -> tensor<10x32x64xf32>
// CHECK: tensor.extract_slice %[[SD]][0, 0] [64, 32] [1, 1]
// CHECK: tensor.extract_slice %[[SD]][0, 32] [64, 32] [1, 1]
// CHECK: %[[W:.+]], %[[I:.+]] = moe.router softmax greedy %[[L]] top_k(3) append(2) scale(1.000000e+00) : (tensor<?x8xf32>) -> (tensor<?x5xf32>, tensor<?x5xi32>)
// CHECK: %[[Y:.+]] = moe.experts %[[X]] routed(%[[W]], %[[I]]) weights(%[[GA]], %{{.+}}, %{{.+}}) : (tensor<?x64xf32>, tensor<?x5xf32>, tensor<?x5xi32>, tensor<10x32x64xf32>, tensor<10x32x64xf32>, tensor<10x64x32xf32>) -> tensor<?x64xf32>
// CHECK-NOT: moe.mlp
// CHECK-NOT: moe.add
// CHECK: return %[[Y]]
func.func @shared(%x: tensor<?x64xf32>, %logits: tensor<?x8xf32>) -> tensor<?x64xf32> {
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.param "shared.gate" : tensor<64x64xf32>
  %su = moe.param "shared.up" : tensor<64x64xf32>
  %sd = moe.param "shared.down" : tensor<64x64xf32>
  %w, %i = moe.router softmax greedy %logits top_k(3) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  %r = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>
  %y = moe.add %r, %s : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Qwen2-MoE's gated shared expert: the gate becomes the appended experts'
// weight (sigmoid in the router).
// CHECK-LABEL: func.func @gated
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>, %[[L:.+]]: tensor<?x8xf32>, %[[GL:.+]]: tensor<?x1xf32>)
// CHECK: %[[W:.+]], %[[I:.+]] = moe.router softmax greedy %[[L]] top_k(3) append(2) gated %[[GL]] scale(1.000000e+00) : (tensor<?x8xf32>, tensor<?x1xf32>) -> (tensor<?x5xf32>, tensor<?x5xi32>)
// CHECK: moe.experts %[[X]] routed(%[[W]], %[[I]])
// CHECK-NOT: moe.sigmoid_gate
// CHECK-NOT: moe.mlp
// CHECK-NOT: moe.add
func.func @gated(%x: tensor<?x64xf32>, %logits: tensor<?x8xf32>, %gl: tensor<?x1xf32>) -> tensor<?x64xf32> {
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.param "shared.gate" : tensor<64x64xf32>
  %su = moe.param "shared.up" : tensor<64x64xf32>
  %sd = moe.param "shared.down" : tensor<64x64xf32>
  %w, %i = moe.router softmax greedy %logits top_k(3) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  %r = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>
  %sgated = moe.sigmoid_gate %s, %gl : tensor<?x64xf32>, tensor<?x1xf32>
  %y = moe.add %r, %sgated : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// A shared size that is not a multiple of the experts' stays as it is.
// CHECK-LABEL: func.func @indivisible
// CHECK: moe.mlp
// CHECK: moe.add
func.func @indivisible(%x: tensor<?x64xf32>, %logits: tensor<?x8xf32>) -> tensor<?x64xf32> {
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.param "shared.gate" : tensor<48x64xf32>
  %su = moe.param "shared.up" : tensor<48x64xf32>
  %sd = moe.param "shared.down" : tensor<64x48xf32>
  %w, %i = moe.router softmax greedy %logits top_k(3) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  %r = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<48x64xf32>, tensor<48x64xf32>, tensor<64x48xf32>
  %y = moe.add %s, %r : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Shared weights that are derived (FP8 to dequantize) stay as they are.
// CHECK-LABEL: func.func @derived
// CHECK: moe.mlp
func.func @derived(%x: tensor<?x64xf32>, %logits: tensor<?x8xf32>, %sq: tensor<64x64xf8E4M3FN>, %ss: tensor<1x1xf32>) -> tensor<?x64xf32> {
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.dequantize_fp8 %sq, %ss block(128, 128) : tensor<64x64xf8E4M3FN>, tensor<1x1xf32> -> tensor<64x64xf32>
  %su = moe.param "shared.up" : tensor<64x64xf32>
  %sd = moe.param "shared.down" : tensor<64x64xf32>
  %w, %i = moe.router softmax greedy %logits top_k(3) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  %r = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>, tensor<64x64xf32>
  %y = moe.add %r, %s : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// DeepSeek-V3: router projection + noaux_tc router + experts (with the
// shared expert folded in) become one moe.fused_moe; gate and up stacks are
// concatenated along their rows.
// CHECK-LABEL: func.func @block
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>)
// CHECK-DAG: %[[R:.+]] = moe.param "gate.weight"
// CHECK-DAG: %[[B:.+]] = moe.param "gate.bias"
// CHECK-DAG: %[[D:.+]] = moe.param "experts.down"
// CHECK: %[[GA:.+]] = tensor.concat dim(0) %{{.+}}, %{{.+}} : (tensor<8x32x64xf32>, tensor<1x32x64xf32>) -> tensor<9x32x64xf32>
// CHECK: %[[UA:.+]] = tensor.concat dim(0) %{{.+}}, %{{.+}} : (tensor<8x32x64xf32>, tensor<1x32x64xf32>) -> tensor<9x32x64xf32>
// CHECK: %[[DA:.+]] = tensor.concat dim(0) %[[D]], %{{.+}} : (tensor<8x64x32xf32>, tensor<1x64x32xf32>) -> tensor<9x64x32xf32>
// CHECK: %[[GU:.+]] = tensor.concat dim(1) %[[GA]], %[[UA]] : (tensor<9x32x64xf32>, tensor<9x32x64xf32>) -> tensor<9x64x64xf32>
// CHECK: %[[Y:.+]] = moe.fused_moe %[[X]] router(%[[R]]) sigmoid noaux_tc bias %[[B]] top_k(3) groups(4, 2) norm_topk_prob scale(2.500000e+00) shared(1) experts(%[[GU]], %[[DA]]) : (tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32>, tensor<9x64x64xf32>, tensor<9x64x32xf32>) -> tensor<?x64xf32>
// CHECK-NOT: moe.linear
// CHECK-NOT: moe.router
// CHECK-NOT: moe.experts
// CHECK: return %[[Y]]
func.func @block(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.param "gate.weight" : tensor<8x64xf32>
  %b = moe.param "gate.bias" : tensor<8xf32>
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.param "shared.gate" : tensor<32x64xf32>
  %su = moe.param "shared.up" : tensor<32x64xf32>
  %sd = moe.param "shared.down" : tensor<64x32xf32>
  %logits = moe.linear %x, %r : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  %w, %i = moe.router sigmoid noaux_tc %logits bias %b top_k(3) groups(4, 2) norm_topk_prob scale(2.5) : (tensor<?x8xf32>, tensor<8xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x3xf32>, tensor<?x3xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>
  %y = moe.add %e, %s : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Qwen2-MoE: the shared expert's gate projection joins the router weight as
// its last row (`gated`).
// CHECK-LABEL: func.func @gated_block
// CHECK-DAG: %[[R:.+]] = moe.param "gate.weight"
// CHECK-DAG: %[[SGW:.+]] = moe.param "shared_expert_gate.weight"
// CHECK: %[[RG:.+]] = tensor.concat dim(0) %[[R]], %[[SGW]] : (tensor<8x64xf32>, tensor<1x64xf32>) -> tensor<9x64xf32>
// CHECK: moe.fused_moe %{{.+}} router(%[[RG]]) softmax greedy top_k(2) scale(1.000000e+00) shared(1) gated experts(%{{.+}}, %{{.+}}) : (tensor<?x64xf32>, tensor<9x64xf32>, tensor<9x64x64xf32>, tensor<9x64x32xf32>) -> tensor<?x64xf32>
// CHECK-NOT: moe.sigmoid_gate
// CHECK-NOT: moe.linear
func.func @gated_block(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.param "gate.weight" : tensor<8x64xf32>
  %sgw = moe.param "shared_expert_gate.weight" : tensor<1x64xf32>
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %sg = moe.param "shared.gate" : tensor<32x64xf32>
  %su = moe.param "shared.up" : tensor<32x64xf32>
  %sd = moe.param "shared.down" : tensor<64x32xf32>
  %logits = moe.linear %x, %r : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  %w, %i = moe.router softmax greedy %logits top_k(2) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  %s = moe.mlp %x weights(%sg, %su, %sd) : tensor<?x64xf32>, tensor<32x64xf32>, tensor<32x64xf32>, tensor<64x32xf32>
  %gl = moe.linear %x, %sgw : tensor<?x64xf32>, tensor<1x64xf32> -> tensor<?x1xf32>
  %sgated = moe.sigmoid_gate %s, %gl : tensor<?x64xf32>, tensor<?x1xf32>
  %y = moe.add %e, %sgated : tensor<?x64xf32>
  return %y : tensor<?x64xf32>
}

// -----

// Mixtral / Qwen3-MoE: no shared experts.
// CHECK-LABEL: func.func @routed_only
// CHECK: %[[GU:.+]] = tensor.concat dim(1) %{{.+}}, %{{.+}} : (tensor<8x32x64xbf16>, tensor<8x32x64xbf16>) -> tensor<8x64x64xbf16>
// CHECK: moe.fused_moe %{{.+}} router(%{{.+}}) softmax greedy top_k(2) norm_topk_prob scale(1.000000e+00) shared(0) experts(%[[GU]], %{{.+}})
func.func @routed_only(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.param "gate.weight" : tensor<8x64xbf16>
  %g = moe.param "experts.gate" : tensor<8x32x64xbf16>
  %u = moe.param "experts.up" : tensor<8x32x64xbf16>
  %d = moe.param "experts.down" : tensor<8x64x32xbf16>
  %logits = moe.linear %x, %r : tensor<?x64xf32>, tensor<8x64xbf16> -> tensor<?x8xf32>
  %w, %i = moe.router softmax greedy %logits top_k(2) norm_topk_prob scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return %e : tensor<?x64xf32>
}

// -----

// Not fused: router logits also returned, a router projection with a bias,
// a router projection of another value.
// CHECK-LABEL: func.func @logits_used
// CHECK: moe.router
// CHECK: moe.experts
// CHECK-NOT: moe.fused_moe
func.func @logits_used(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x8xf32>) {
  %r = moe.param "gate.weight" : tensor<8x64xf32>
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %logits = moe.linear %x, %r : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  %w, %i = moe.router softmax greedy %logits top_k(2) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %e, %logits : tensor<?x64xf32>, tensor<?x8xf32>
}

// CHECK-LABEL: func.func @biased_projection
// CHECK: moe.router
// CHECK-NOT: moe.fused_moe
func.func @biased_projection(%x: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.param "gate.weight" : tensor<8x64xf32>
  %rb = moe.param "gate.proj_bias" : tensor<8xf32>
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %logits = moe.linear %x, %r bias %rb : tensor<?x64xf32>, tensor<8x64xf32>, tensor<8xf32> -> tensor<?x8xf32>
  %w, %i = moe.router softmax greedy %logits top_k(2) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %e : tensor<?x64xf32>
}

// CHECK-LABEL: func.func @other_input
// CHECK: moe.router
// CHECK-NOT: moe.fused_moe
func.func @other_input(%x: tensor<?x64xf32>, %z: tensor<?x64xf32>) -> tensor<?x64xf32> {
  %r = moe.param "gate.weight" : tensor<8x64xf32>
  %g = moe.param "experts.gate" : tensor<8x32x64xf32>
  %u = moe.param "experts.up" : tensor<8x32x64xf32>
  %d = moe.param "experts.down" : tensor<8x64x32xf32>
  %logits = moe.linear %z, %r : tensor<?x64xf32>, tensor<8x64xf32> -> tensor<?x8xf32>
  %w, %i = moe.router softmax greedy %logits top_k(2) scale(1.0) : (tensor<?x8xf32>) -> (tensor<?x2xf32>, tensor<?x2xi32>)
  %e = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xf32>, tensor<8x32x64xf32>, tensor<8x64x32xf32>) -> tensor<?x64xf32>
  return %e : tensor<?x64xf32>
}
