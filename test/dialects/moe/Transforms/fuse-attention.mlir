// RUN: moec-opt %s -split-input-file --moe-fuse-attention | FileCheck %s
// RUN: moec-opt %s -split-input-file --moe-fuse-attention=absorb-mla=false | FileCheck %s --check-prefix=OFF

// The importer's unabsorbed MLA (per-head keys/values expanded by kv_b_proj)
// becomes moe.mla_attention over a latent [S, R] + rope-key [S, Dr] cache;
// the function's cache arguments and results change type with it.
// CHECK-LABEL: func.func @mla
// CHECK-SAME: (%[[Q:.+]]: tensor<?x4x24xf32>, %[[LAT:.+]]: tensor<?x32xf32>, %[[KR:.+]]: tensor<?x8xf32>, %[[POS:.+]]: index, %[[LC:.+]]: tensor<256x32xf32>, %[[RC:.+]]: tensor<256x8xf32>)
// CHECK-SAME: -> (tensor<?x4x16xf32>, tensor<256x32xf32>, tensor<256x8xf32>)
// CHECK: %[[W:.+]] = moe.param "kv_b_proj.weight"
// CHECK-NOT: moe.linear
// CHECK-NOT: tensor.concat
// CHECK-NOT: linalg.broadcast
// CHECK: %[[O:.+]], %[[LC2:.+]], %[[RC2:.+]] = moe.mla_attention %[[Q]], %[[LAT]], %[[KR]], %[[W]] cache(%[[LC]], %[[RC]]) at %[[POS]] nope(16) scale(2.500000e-01) : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<128x32xf32>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
// CHECK: return %[[O]], %[[LC2]], %[[RC2]]
// OFF-LABEL: func.func @mla
// OFF: moe.attention
// OFF-NOT: moe.mla_attention
func.func @mla(%q: tensor<?x4x24xf32>, %latent: tensor<?x32xf32>, %k_rope: tensor<?x8xf32>, %pos: index, %kc: tensor<256x4x24xf32>, %vc: tensor<256x4x16xf32>) -> (tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>) {
  %c0 = arith.constant 0 : index
  %T = tensor.dim %latent, %c0 : tensor<?x32xf32>
  %w = moe.param "kv_b_proj.weight" : tensor<128x32xf32>
  %kv = moe.linear %latent, %w : tensor<?x32xf32>, tensor<128x32xf32> -> tensor<?x128xf32>
  %e = tensor.expand_shape %kv [[0], [1, 2]] output_shape [%T, 4, 32] : tensor<?x128xf32> into tensor<?x4x32xf32>
  %k_nope = tensor.extract_slice %e[0, 0, 0] [%T, 4, 16] [1, 1, 1] : tensor<?x4x32xf32> to tensor<?x4x16xf32>
  %v = tensor.extract_slice %e[0, 0, 16] [%T, 4, 16] [1, 1, 1] : tensor<?x4x32xf32> to tensor<?x4x16xf32>
  %init = tensor.empty(%T) : tensor<?x4x8xf32>
  %k_rope_b = linalg.broadcast ins(%k_rope : tensor<?x8xf32>) outs(%init : tensor<?x4x8xf32>) dimensions = [1]
  %k = tensor.concat dim(2) %k_nope, %k_rope_b : (tensor<?x4x16xf32>, tensor<?x4x8xf32>) -> tensor<?x4x24xf32>
  %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25) : tensor<?x4x24xf32>, tensor<?x4x24xf32>, tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32> -> tensor<?x4x16xf32>
  return %o, %kc2, %vc2 : tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>
}

// -----

// GQA attention has nothing to absorb: unchanged.
// CHECK-LABEL: func.func @gqa
// CHECK: moe.attention
// CHECK-NOT: moe.mla_attention
func.func @gqa(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x16xf32>, %pos: index, %kc: tensor<256x2x16xf32>, %vc: tensor<256x2x16xf32>) -> (tensor<?x4x16xf32>, tensor<256x2x16xf32>, tensor<256x2x16xf32>) {
  %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x16xf32>, tensor<256x2x16xf32>, tensor<256x2x16xf32> -> tensor<?x4x16xf32>
  return %o, %kc2, %vc2 : tensor<?x4x16xf32>, tensor<256x2x16xf32>, tensor<256x2x16xf32>
}

// -----

// Prefill and decode share cache argument positions: when the pattern holds
// in one function but not in the other (here @b's value is not a slice of
// the kv_b expansion), neither is rewritten, so the layouts stay in step.
// CHECK-LABEL: func.func @a
// CHECK: moe.attention
// CHECK-LABEL: func.func @b
// CHECK: moe.attention
// CHECK-NOT: moe.mla_attention
func.func @a(%q: tensor<?x4x24xf32>, %latent: tensor<?x32xf32>, %k_rope: tensor<?x8xf32>, %pos: index, %kc: tensor<256x4x24xf32>, %vc: tensor<256x4x16xf32>) -> (tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>) {
  %c0 = arith.constant 0 : index
  %T = tensor.dim %latent, %c0 : tensor<?x32xf32>
  %w = moe.param "kv_b_proj.weight" : tensor<128x32xf32>
  %kv = moe.linear %latent, %w : tensor<?x32xf32>, tensor<128x32xf32> -> tensor<?x128xf32>
  %e = tensor.expand_shape %kv [[0], [1, 2]] output_shape [%T, 4, 32] : tensor<?x128xf32> into tensor<?x4x32xf32>
  %k_nope = tensor.extract_slice %e[0, 0, 0] [%T, 4, 16] [1, 1, 1] : tensor<?x4x32xf32> to tensor<?x4x16xf32>
  %v = tensor.extract_slice %e[0, 0, 16] [%T, 4, 16] [1, 1, 1] : tensor<?x4x32xf32> to tensor<?x4x16xf32>
  %init = tensor.empty(%T) : tensor<?x4x8xf32>
  %k_rope_b = linalg.broadcast ins(%k_rope : tensor<?x8xf32>) outs(%init : tensor<?x4x8xf32>) dimensions = [1]
  %k = tensor.concat dim(2) %k_nope, %k_rope_b : (tensor<?x4x16xf32>, tensor<?x4x8xf32>) -> tensor<?x4x24xf32>
  %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25) : tensor<?x4x24xf32>, tensor<?x4x24xf32>, tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32> -> tensor<?x4x16xf32>
  return %o, %kc2, %vc2 : tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>
}
func.func @b(%q: tensor<?x4x24xf32>, %k: tensor<?x4x24xf32>, %v: tensor<?x4x16xf32>, %pos: index, %kc: tensor<256x4x24xf32>, %vc: tensor<256x4x16xf32>) -> (tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>) {
  %o, %kc2, %vc2 = moe.attention %q, %k, %v cache(%kc, %vc) at %pos scale(0.25) : tensor<?x4x24xf32>, tensor<?x4x24xf32>, tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32> -> tensor<?x4x16xf32>
  return %o, %kc2, %vc2 : tensor<?x4x16xf32>, tensor<256x4x24xf32>, tensor<256x4x16xf32>
}

// -----

// The MLA query: nope part + rotated rope part of the same heads becomes one
// rope that rotates the tail and copies the rest.
// CHECK-LABEL: func.func @partial_rope
// CHECK-SAME: (%[[X:.+]]: tensor<?x4x24xf32>, %[[POS:.+]]: index)
// CHECK-NOT: tensor.concat
// CHECK: %[[R:.+]] = moe.rope %[[X]] at %[[POS]] from(16) theta(1.000000e+04) interleaved : tensor<?x4x24xf32>
// CHECK: return %[[R]]
// OFF-LABEL: func.func @partial_rope
// OFF: moe.rope {{.*}} from(16)
func.func @partial_rope(%x: tensor<?x4x24xf32>, %pos: index) -> tensor<?x4x24xf32> {
  %c0 = arith.constant 0 : index
  %T = tensor.dim %x, %c0 : tensor<?x4x24xf32>
  %nope = tensor.extract_slice %x[0, 0, 0] [%T, 4, 16] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x16xf32>
  %pe = tensor.extract_slice %x[0, 0, 16] [%T, 4, 8] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x8xf32>
  %r = moe.rope %pe at %pos theta(1.0e+04) interleaved : tensor<?x4x8xf32>
  %q = tensor.concat dim(2) %nope, %r : (tensor<?x4x16xf32>, tensor<?x4x8xf32>) -> tensor<?x4x24xf32>
  return %q : tensor<?x4x24xf32>
}

// -----

// Parts of different tensors stay as they are.
// CHECK-LABEL: func.func @two_sources
// CHECK: tensor.concat
func.func @two_sources(%x: tensor<?x4x24xf32>, %y: tensor<?x4x24xf32>, %pos: index) -> tensor<?x4x24xf32> {
  %c0 = arith.constant 0 : index
  %T = tensor.dim %x, %c0 : tensor<?x4x24xf32>
  %nope = tensor.extract_slice %x[0, 0, 0] [%T, 4, 16] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x16xf32>
  %pe = tensor.extract_slice %y[0, 0, 16] [%T, 4, 8] [1, 1, 1] : tensor<?x4x24xf32> to tensor<?x4x8xf32>
  %r = moe.rope %pe at %pos theta(1.0e+04) interleaved : tensor<?x4x8xf32>
  %q = tensor.concat dim(2) %nope, %r : (tensor<?x4x16xf32>, tensor<?x4x8xf32>) -> tensor<?x4x24xf32>
  return %q : tensor<?x4x24xf32>
}
