// RUN: moec-opt %s -split-input-file --moe-fuse-experts | FileCheck %s

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
