// RUN: moec-opt %s -split-input-file --moe-fuse-norms | FileCheck %s

// The residual add before a block's norm becomes one op; the next block's
// residual reads the fused sum.
// CHECK-LABEL: func.func @residual_then_norm
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>, %[[R:.+]]: tensor<?x64xf32>)
func.func @residual_then_norm(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>) -> tensor<?x64xf32> {
  // CHECK: %[[W:.+]] = moe.param "model.layers.0.post_attention_layernorm.weight"
  %w = moe.param "model.layers.0.post_attention_layernorm.weight" : tensor<64xbf16>
  // CHECK-NOT: moe.add
  // CHECK: %[[SUM:.+]], %[[NORMED:.+]] = moe.add_rms_norm %[[X]], %[[R]], %[[W]] eps({{.+}}) : tensor<?x64xf32>, tensor<64xbf16>
  %sum = moe.add %x, %r : tensor<?x64xf32>
  %n = moe.rms_norm %sum, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xbf16>
  // CHECK: %[[M:.+]] = moe.mul %[[NORMED]], %[[NORMED]]
  %m = moe.mul %n, %n : tensor<?x64xf32>
  // CHECK: moe.add %[[SUM]], %[[M]]
  %next = moe.add %sum, %m : tensor<?x64xf32>
  return %next : tensor<?x64xf32>
}

// -----

// Two norms of one sum: the first absorbs the add, the second normalizes
// the fused sum.
// CHECK-LABEL: func.func @two_norms
func.func @two_norms(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>, %w: tensor<64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  // CHECK: %[[SUM:.+]], %[[N1:.+]] = moe.add_rms_norm
  // CHECK: %[[N2:.+]] = moe.rms_norm %[[SUM]]
  // CHECK: return %[[N1]], %[[N2]]
  %sum = moe.add %x, %r : tensor<?x64xf32>
  %n1 = moe.rms_norm %sum, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
  %n2 = moe.rms_norm %sum, %w eps(1.0e-05) : tensor<?x64xf32>, tensor<64xf32>
  return %n1, %n2 : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// A sum used before its norm stays unfused: the fused op would be created
// after that use.
// CHECK-LABEL: func.func @sum_used_before_norm
func.func @sum_used_before_norm(%x: tensor<?x64xf32>, %r: tensor<?x64xf32>, %w: tensor<64xf32>) -> (tensor<?x64xf32>, tensor<?x64xf32>) {
  // CHECK: moe.add
  // CHECK: moe.mul
  // CHECK: moe.rms_norm
  // CHECK-NOT: moe.add_rms_norm
  %sum = moe.add %x, %r : tensor<?x64xf32>
  %m = moe.mul %sum, %sum : tensor<?x64xf32>
  %n = moe.rms_norm %sum, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
  return %m, %n : tensor<?x64xf32>, tensor<?x64xf32>
}

// -----

// A norm of something other than an add is left alone.
// CHECK-LABEL: func.func @no_add
func.func @no_add(%x: tensor<?x64xf32>, %w: tensor<64xf32>) -> tensor<?x64xf32> {
  // CHECK: moe.rms_norm
  // CHECK-NOT: moe.add_rms_norm
  %n = moe.rms_norm %x, %w eps(1.0e-06) : tensor<?x64xf32>, tensor<64xf32>
  return %n : tensor<?x64xf32>
}
