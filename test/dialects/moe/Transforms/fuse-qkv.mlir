// RUN: moec-opt %s -split-input-file --moe-fuse-qkv | FileCheck %s

// q/k/v of GQA attention become one projection and three slices.
// CHECK-LABEL: func.func @qkv
// CHECK-SAME: (%[[X:.+]]: tensor<?x64xf32>)
func.func @qkv(%x: tensor<?x64xf32>) -> (tensor<?x64xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  // CHECK-DAG: %[[WQ:.+]] = moe.param "q_proj.weight"
  // CHECK-DAG: %[[WK:.+]] = moe.param "k_proj.weight"
  // CHECK-DAG: %[[WV:.+]] = moe.param "v_proj.weight"
  // CHECK-DAG: %[[BQ:.+]] = moe.param "q_proj.bias"
  // CHECK: %[[W:.+]] = tensor.concat dim(0) %[[WQ]], %[[WK]], %[[WV]] : (tensor<64x64xbf16>, tensor<16x64xbf16>, tensor<16x64xbf16>) -> tensor<96x64xbf16>
  // CHECK: %[[B:.+]] = tensor.concat dim(0) %[[BQ]], %{{.+}}, %{{.+}} : (tensor<64xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<96xf32>
  // CHECK: %[[QKV:.+]] = moe.linear %[[X]], %[[W]] bias %[[B]] : tensor<?x64xf32>, tensor<96x64xbf16>, tensor<96xf32> -> tensor<?x96xf32>
  // CHECK: %[[Q:.+]] = tensor.extract_slice %[[QKV]][0, 0] [%{{.+}}, 64] [1, 1] : tensor<?x96xf32> to tensor<?x64xf32>
  // CHECK: %[[K:.+]] = tensor.extract_slice %[[QKV]][0, 64] [%{{.+}}, 16] [1, 1] : tensor<?x96xf32> to tensor<?x16xf32>
  // CHECK: %[[V:.+]] = tensor.extract_slice %[[QKV]][0, 80] [%{{.+}}, 16] [1, 1] : tensor<?x96xf32> to tensor<?x16xf32>
  // CHECK-NOT: moe.linear
  // CHECK: return %[[Q]], %[[K]], %[[V]]
  %wq = moe.param "q_proj.weight" : tensor<64x64xbf16>
  %bq = moe.param "q_proj.bias" : tensor<64xf32>
  %q = moe.linear %x, %wq bias %bq : tensor<?x64xf32>, tensor<64x64xbf16>, tensor<64xf32> -> tensor<?x64xf32>
  %wk = moe.param "k_proj.weight" : tensor<16x64xbf16>
  %bk = moe.param "k_proj.bias" : tensor<16xf32>
  %k = moe.linear %x, %wk bias %bk : tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32> -> tensor<?x16xf32>
  %wv = moe.param "v_proj.weight" : tensor<16x64xbf16>
  %bv = moe.param "v_proj.bias" : tensor<16xf32>
  %v = moe.linear %x, %wv bias %bv : tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16xf32> -> tensor<?x16xf32>
  return %q, %k, %v : tensor<?x64xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}

// -----

// The first projection's result may be used before the others are defined:
// the fused projection sits at the first one.
// CHECK-LABEL: func.func @used_in_between
func.func @used_in_between(%x: tensor<?x64xf32>) -> tensor<?x16xf32> {
  // CHECK: moe.linear %{{.+}} : tensor<?x64xf32>, tensor<32x64xf32> -> tensor<?x32xf32>
  // CHECK: %[[A:.+]] = tensor.extract_slice {{.+}} to tensor<?x16xf32>
  // CHECK: %[[B:.+]] = tensor.extract_slice {{.+}} to tensor<?x16xf32>
  // CHECK: %[[S:.+]] = moe.add %[[A]], %[[A]]
  // CHECK: moe.add %[[S]], %[[B]]
  %wa = moe.param "a" : tensor<16x64xf32>
  %a = moe.linear %x, %wa : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x16xf32>
  %s = moe.add %a, %a : tensor<?x16xf32>
  %wb = moe.param "b" : tensor<16x64xf32>
  %b = moe.linear %x, %wb : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x16xf32>
  %r = moe.add %s, %b : tensor<?x16xf32>
  return %r : tensor<?x16xf32>
}

// -----

// Mixed weight types, or bias on only some projections: left alone.
// CHECK-LABEL: func.func @not_fusable
func.func @not_fusable(%x: tensor<?x64xf32>, %b: tensor<16xf32>) -> (tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>) {
  // CHECK-NOT: tensor.concat
  // CHECK-COUNT-3: moe.linear
  %w1 = moe.param "w1" : tensor<16x64xf32>
  %w2 = moe.param "w2" : tensor<16x64xbf16>
  %r1 = moe.linear %x, %w1 : tensor<?x64xf32>, tensor<16x64xf32> -> tensor<?x16xf32>
  %r2 = moe.linear %x, %w2 : tensor<?x64xf32>, tensor<16x64xbf16> -> tensor<?x16xf32>
  %y = moe.add %x, %x : tensor<?x64xf32>
  %bw = moe.param "b" : tensor<16xf32>
  %w3 = moe.param "w3" : tensor<16x64xf32>
  %r3 = moe.linear %y, %w3 bias %bw : tensor<?x64xf32>, tensor<16x64xf32>, tensor<16xf32> -> tensor<?x16xf32>
  return %r1, %r2, %r3 : tensor<?x16xf32>, tensor<?x16xf32>, tensor<?x16xf32>
}
