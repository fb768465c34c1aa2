// RUN: moec-opt %s -split-input-file -verify-diagnostics
// Every verifier error of the moe dialect, one case each.

func.func @case0() {
  // expected-error @+1 {{needs a non-empty checkpoint tensor name}}
  %0 = moe.param "" : tensor<4xf32>
  return
}

// -----

func.func @case1() {
  // expected-error @+1 {{result must have a static shape, got 'tensor<?x4xf32>'}}
  %0 = moe.param "w" : tensor<?x4xf32>
  return
}

// -----

func.func @case2(%a: tensor<4x8xbf16>) {
  // expected-error @+1 {{result element type 'f32' differs from operand element type 'bf16'}}
  %0 = moe.stack %a, %a : tensor<4x8xbf16> -> tensor<2x4x8xf32>
  return
}

// -----

func.func @case3(%a: tensor<4x8xbf16>) {
  // expected-error @+1 {{result type 'tensor<3x4x8xbf16>' should be 'tensor<2x4x8xbf16>' for 2 operands of type 'tensor<4x8xbf16>'}}
  %0 = moe.stack %a, %a : tensor<4x8xbf16> -> tensor<3x4x8xbf16>
  return
}

// -----

func.func @case4(%t: tensor<8xbf16>, %i: tensor<?xi64>) {
  // expected-error @+1 {{table must have rank 2, got 'tensor<8xbf16>'}}
  %0 = moe.embedding %t[%i] : tensor<8xbf16>, tensor<?xi64> -> tensor<?x4xf32>
  return
}

// -----

func.func @case5(%t: tensor<?x4xbf16>, %i: tensor<?xi64>) {
  // expected-error @+1 {{table must have a static shape}}
  %0 = moe.embedding %t[%i] : tensor<?x4xbf16>, tensor<?xi64> -> tensor<?x4xf32>
  return
}

// -----

func.func @case6(%t: tensor<8x4xbf16>, %i: tensor<1x?xi64>) {
  // expected-error @+1 {{ids must have rank 1}}
  %0 = moe.embedding %t[%i] : tensor<8x4xbf16>, tensor<1x?xi64> -> tensor<?x4xf32>
  return
}

// -----

func.func @case7(%t: tensor<8x4xbf16>, %i: tensor<3xi64>) {
  // expected-error @+1 {{result dimension 0 (5) does not match the number of ids (3)}}
  %0 = moe.embedding %t[%i] : tensor<8x4xbf16>, tensor<3xi64> -> tensor<5x4xf32>
  return
}

// -----

func.func @case8(%t: tensor<8x4xbf16>, %i: tensor<?xi64>) {
  // expected-error @+1 {{result dimension 1 (6) does not match the table's embedding size (4)}}
  %0 = moe.embedding %t[%i] : tensor<8x4xbf16>, tensor<?xi64> -> tensor<?x6xf32>
  return
}

// -----

func.func @case9(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{epsilon must be positive}}
  %0 = moe.rms_norm %x, %w eps(0.0) : tensor<?x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @case10(%x: tensor<?x64xf32>, %w: tensor<32xf32>) {
  // expected-error @+1 {{weight dimension 0 (32) does not match the last input dimension (64)}}
  %0 = moe.rms_norm %x, %w eps(1.0e-6) : tensor<?x64xf32>, tensor<32xf32>
  return
}

// -----

func.func @case11(%x: tensor<?x64xf32>, %w: tensor<1x64xf32>) {
  // expected-error @+1 {{weight must have rank 1}}
  %0 = moe.rms_norm %x, %w eps(1.0e-6) : tensor<?x64xf32>, tensor<1x64xf32>
  return
}

// -----

func.func @case12(%x: tensor<4x?xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{the normalized (last) input dimension must be static}}
  %0 = moe.rms_norm %x, %w eps(1.0e-6) : tensor<4x?xf32>, tensor<64xf32>
  return
}

// -----

func.func @case13(%x: tensor<f32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{input must have rank >= 1}}
  %0 = moe.rms_norm %x, %w eps(1.0e-6) : tensor<f32>, tensor<64xf32>
  return
}

// -----

func.func @case14(%x: tensor<?x64xf32>, %w: tensor<128xbf16>) {
  // expected-error @+1 {{weight must have rank 2}}
  %0 = moe.linear %x, %w : tensor<?x64xf32>, tensor<128xbf16> -> tensor<?x128xf32>
  return
}

// -----

func.func @case15(%x: tensor<?x32xf32>, %w: tensor<128x64xbf16>) {
  // expected-error @+1 {{input dimension 1 (32) does not match weight dimension 1 (in features) (64)}}
  %0 = moe.linear %x, %w : tensor<?x32xf32>, tensor<128x64xbf16> -> tensor<?x128xf32>
  return
}

// -----

func.func @case16(%x: tensor<?x64xf32>, %w: tensor<128x64xbf16>) {
  // expected-error @+1 {{result rank 3 differs from input rank 2}}
  %0 = moe.linear %x, %w : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x4x128xf32>
  return
}

// -----

func.func @case17(%x: tensor<3x64xf32>, %w: tensor<128x64xbf16>) {
  // expected-error @+1 {{result dimension 0 (4) does not match the input (3)}}
  %0 = moe.linear %x, %w : tensor<3x64xf32>, tensor<128x64xbf16> -> tensor<4x128xf32>
  return
}

// -----

func.func @case18(%x: tensor<?x64xf32>, %w: tensor<128x64xbf16>) {
  // expected-error @+1 {{result dimension 1 (96) does not match weight dimension 0 (out features) (128)}}
  %0 = moe.linear %x, %w : tensor<?x64xf32>, tensor<128x64xbf16> -> tensor<?x96xf32>
  return
}

// -----

func.func @case19(%x: tensor<?x64xf32>, %w: tensor<128x64xbf16>, %b: tensor<64xbf16>) {
  // expected-error @+1 {{bias dimension 0 (64) does not match weight dimension 0 (out features) (128)}}
  %0 = moe.linear %x, %w bias %b : tensor<?x64xf32>, tensor<128x64xbf16>, tensor<64xbf16> -> tensor<?x128xf32>
  return
}

// -----

func.func @case20(%x: tensor<?x64xf32>, %p: index) {
  // expected-error @+1 {{input ([tokens, heads, dim]) must have rank 3}}
  %0 = moe.rope %x at %p theta(1.0e+04) : tensor<?x64xf32>
  return
}

// -----

func.func @case21(%x: tensor<?x4x7xf32>, %p: index) {
  // expected-error @+1 {{rotary dimension must be static and even, got 7}}
  %0 = moe.rope %x at %p theta(1.0e+04) : tensor<?x4x7xf32>
  return
}

// -----

func.func @case22(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{theta must be positive}}
  %0 = moe.rope %x at %p theta(0.0) : tensor<?x4x8xf32>
  return
}

// -----

func.func @case23(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{'factor' is not a parameter of rope scaling 'none'}}
  %0 = moe.rope %x at %p theta(1.0e+04) {factor = 2.0 : f64} : tensor<?x4x8xf32>
  return
}

// -----

func.func @case24(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{rope scaling 'yarn' requires 'original_max_position_embeddings'}}
  %0 = moe.rope %x at %p theta(1.0e+04) scaling(yarn) {factor = 2.0 : f64} : tensor<?x4x8xf32>
  return
}

// -----

func.func @case25(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{'mscale' is not a parameter of rope scaling 'linear'}}
  %0 = moe.rope %x at %p theta(1.0e+04) scaling(linear) {factor = 2.0 : f64, mscale = 1.0 : f64} : tensor<?x4x8xf32>
  return
}

// -----

func.func @case26(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{factor must be positive}}
  %0 = moe.rope %x at %p theta(1.0e+04) scaling(linear) {factor = -2.0 : f64} : tensor<?x4x8xf32>
  return
}

// -----

func.func @case27(%x: tensor<?x4x8xf32>, %p: index) {
  // expected-error @+1 {{original_max_position_embeddings must be positive}}
  %0 = moe.rope %x at %p theta(1.0e+04) scaling(yarn) {factor = 2.0 : f64, original_max_position_embeddings = 0 : i64} : tensor<?x4x8xf32>
  return
}

// -----

func.func @case28(%q: tensor<?x4x16xf32>, %k: tensor<?x3x16xf32>, %v: tensor<?x3x8xf32>, %kc: tensor<64x3x16xf32>, %vc: tensor<64x3x8xf32>, %p: index) {
  // expected-error @+1 {{query heads (4) must be a multiple of key/value heads (3)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x3x16xf32>, tensor<?x3x8xf32>, tensor<64x3x16xf32>, tensor<64x3x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case29(%q: tensor<?x4x16xf32>, %k: tensor<?x2x12xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{key dimension 2 (12) does not match the query head dimension (16)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x12xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case30(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x1x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{value dimension 1 (1) does not match the key heads (2)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x1x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case31(%q: tensor<3x4x16xf32>, %k: tensor<5x2x16xf32>, %v: tensor<5x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{key dimension 0 (5) does not match query tokens (3)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<3x4x16xf32>, tensor<5x2x16xf32>, tensor<5x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<3x4x8xf32>
  return
}

// -----

func.func @case32(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<?x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{key cache must have a static shape}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<?x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case33(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<32x2x8xf32>, %p: index) {
  // expected-error @+1 {{key cache capacity (64) differs from value cache capacity (32)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<32x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case34(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x16xf32>, %p: index) {
  // expected-error @+1 {{value cache dimension 2 (16) does not match the value head dimension (8)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x16xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case35(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{result dimension 2 (16) does not match the value head dimension (8)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @case36(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{result dimension 1 (2) does not match query heads (4)}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x2x8xf32>
  return
}

// -----

func.func @case37(%q: tensor<?x4x16xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{scale must be positive}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.0) : tensor<?x4x16xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case38(%q: tensor<?x64xf32>, %k: tensor<?x2x16xf32>, %v: tensor<?x2x8xf32>, %kc: tensor<64x2x16xf32>, %vc: tensor<64x2x8xf32>, %p: index) {
  // expected-error @+1 {{query must have rank 3}}
  %o, %a, %b = moe.attention %q, %k, %v cache(%kc, %vc) at %p scale(0.25) : tensor<?x64xf32>, tensor<?x2x16xf32>, tensor<?x2x8xf32>, tensor<64x2x16xf32>, tensor<64x2x8xf32> -> tensor<?x4x8xf32>
  return
}

// -----

func.func @case39(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{top_k (0) must be in [1, 16]}}
  %w, %i = moe.router softmax greedy %l top_k(0) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x0xf32>, tensor<?x0xi32>)
  return
}

// -----

func.func @case40(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{indices dimension 1 (2) does not match top_k + appended experts (4)}}
  %w, %i = moe.router softmax greedy %l top_k(4) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x2xi32>)
  return
}

// -----

func.func @case41(%l: tensor<?x?xf32>) {
  // expected-error @+1 {{the number of experts must be static}}
  %w, %i = moe.router softmax greedy %l top_k(4) scale(1.0) : (tensor<?x?xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case42(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{groups(...) are only meaningful for group-limited methods; use greedy without groups}}
  %w, %i = moe.router softmax greedy %l top_k(4) groups(4, 2) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case43(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{method 'noaux_tc' requires groups(n_group, topk_group)}}
  %w, %i = moe.router sigmoid noaux_tc %l top_k(4) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case44(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{n_group (3) must divide the number of experts (16)}}
  %w, %i = moe.router softmax group_limited_greedy %l top_k(4) groups(3, 2) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case45(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{topk_group (5) must be in [1, n_group = 4]}}
  %w, %i = moe.router softmax group_limited_greedy %l top_k(4) groups(4, 5) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case46(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{top_k (10) exceeds the 8 experts of the kept groups}}
  %w, %i = moe.router softmax group_limited_greedy %l top_k(10) groups(4, 2) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x10xf32>, tensor<?x10xi32>)
  return
}

// -----

func.func @case47(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{noaux_tc ranks groups by their two best experts and needs at least 2 experts per group}}
  %w, %i = moe.router sigmoid noaux_tc %l top_k(4) groups(16, 8) scale(1.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case48(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{a score correction bias is only used by noaux_tc}}
  %w, %i = moe.router softmax greedy %l bias %b top_k(4) scale(1.0) : (tensor<?x16xf32>, tensor<16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case49(%l: tensor<?x16xf32>, %b: tensor<8xf32>) {
  // expected-error @+1 {{bias dimension 0 (8) does not match the number of experts (16)}}
  %w, %i = moe.router sigmoid noaux_tc %l bias %b top_k(4) groups(4, 2) scale(1.0) : (tensor<?x16xf32>, tensor<8xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case50(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{routed_scaling_factor must be positive}}
  %w, %i = moe.router softmax greedy %l top_k(4) scale(0.0) : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case51(%l: tensor<?x16xf32>, %b: tensor<16xf32>) {
  // expected-error @+1 {{n_group and topk_group must be given together}}
  %w, %i = moe.router softmax greedy %l top_k(4) scale(1.0) {n_group = 4 : i64} : (tensor<?x16xf32>) -> (tensor<?x4xf32>, tensor<?x4xi32>)
  return
}

// -----

func.func @case52(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xf32>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{gate weight 'tensor<8x32x64xbf16>' and up weight 'tensor<8x32x64xf32>' must have the same type}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xf32>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case53(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<4x64x32xbf16>) {
  // expected-error @+1 {{down weight dimension 0 (4) does not match the gate weight's experts (8)}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<4x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case54(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<8x32x48xbf16>, %u: tensor<8x32x48xbf16>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{gate weight dimension 2 (48) does not match the hidden size (64)}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x48xbf16>, tensor<8x32x48xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case55(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x16xbf16>) {
  // expected-error @+1 {{down weight dimension 2 (16) does not match the intermediate size (32)}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x16xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case56(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<32x64xbf16>, %u: tensor<32x64xbf16>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{gate weight must have rank 3}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case57(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x3xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{routing weights 'tensor<?x2xf32>' and expert indices 'tensor<?x3xi32>' must have the same shape}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x3xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @case58(%x: tensor<4x64xf32>, %w: tensor<5x2xf32>, %i: tensor<5x2xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{routing weights dimension 0 (5) does not match input tokens (4)}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<4x64xf32>, tensor<5x2xf32>, tensor<5x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<4x64xf32>
  return
}

// -----

func.func @case59(%x: tensor<?x64xf32>, %w: tensor<?x2xf32>, %i: tensor<?x2xi32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x64xbf16>, %d: tensor<8x64x32xbf16>) {
  // expected-error @+1 {{result type 'tensor<?x64xbf16>' must match the input type 'tensor<?x64xf32>'}}
  %y = moe.experts %x routed(%w, %i) weights(%g, %u, %d) : (tensor<?x64xf32>, tensor<?x2xf32>, tensor<?x2xi32>, tensor<8x32x64xbf16>, tensor<8x32x64xbf16>, tensor<8x64x32xbf16>) -> tensor<?x64xbf16>
  return
}

// -----

func.func @case60(%x: tensor<?x64xf32>, %g: tensor<32x64xbf16>, %u: tensor<32x64xbf16>, %d: tensor<32x64xbf16>) {
  // expected-error @+1 {{down weight dimension 0 (32) does not match the hidden size (64)}}
  %y = moe.mlp %x weights(%g, %u, %d) : tensor<?x64xf32>, tensor<32x64xbf16>, tensor<32x64xbf16>, tensor<32x64xbf16>
  return
}

// -----

func.func @case61(%x: tensor<?x64xf32>, %g: tensor<?x2xf32>) {
  // expected-error @+1 {{gate dimension 1 must be 1, got 2}}
  %y = moe.sigmoid_gate %x, %g : tensor<?x64xf32>, tensor<?x2xf32>
  return
}

// -----

func.func @case62(%x: tensor<3x64xf32>, %g: tensor<4x1xf32>) {
  // expected-error @+1 {{gate dimension 0 (4) does not match input tokens (3)}}
  %y = moe.sigmoid_gate %x, %g : tensor<3x64xf32>, tensor<4x1xf32>
  return
}

// -----

func.func @case63(%x: tensor<?x64xf32>, %w: tensor<64xf32>) {
  // expected-error @+1 {{epsilon must be positive}}
  %s, %n = moe.add_rms_norm %x, %x, %w eps(-1.0) : tensor<?x64xf32>, tensor<64xf32>
  return
}

// -----

func.func @case64(%x: tensor<?x64xf32>, %w: tensor<16xf32>) {
  // expected-error @+1 {{weight dimension 0 (16) does not match the last input dimension (64)}}
  %s, %n = moe.add_rms_norm %x, %x, %w eps(1.0e-6) : tensor<?x64xf32>, tensor<16xf32>
  return
}

// -----

func.func @fp8_scale_shape(%q: tensor<300x200xf8E4M3FN>, %s: tensor<2x2xf32>) {
  // expected-error @+1 {{scale_inv dimension 0 (2) does not match the number of row blocks (3)}}
  %w = moe.dequantize_fp8 %q, %s block(128, 128) : tensor<300x200xf8E4M3FN>, tensor<2x2xf32> -> tensor<300x200xbf16>
  return
}

// -----

func.func @fp8_block_size(%q: tensor<300x200xf8E4M3FN>, %s: tensor<3x2xf32>) {
  // expected-error @+1 {{block sizes must be positive}}
  %w = moe.dequantize_fp8 %q, %s block(0, 128) : tensor<300x200xf8E4M3FN>, tensor<3x2xf32> -> tensor<300x200xbf16>
  return
}

// -----

func.func @fp8_result_shape(%q: tensor<300x200xf8E4M3FN>, %s: tensor<3x2xf32>) {
  // expected-error @+1 {{result shape must match the input shape, got 'tensor<200x300xbf16>'}}
  %w = moe.dequantize_fp8 %q, %s block(128, 128) : tensor<300x200xf8E4M3FN>, tensor<3x2xf32> -> tensor<200x300xbf16>
  return
}

// -----

func.func @mla_nope(%q: tensor<?x4x24xf32>, %lat: tensor<?x32xf32>, %kr: tensor<?x8xf32>, %w: tensor<128x32xf32>, %lc: tensor<256x32xf32>, %rc: tensor<256x8xf32>, %p: index) {
  // expected-error @+1 {{nope_dim (24) must be in [1, query head dimension (24))}}
  %o, %a, %b = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %p nope(24) scale(0.25) : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<128x32xf32>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @mla_rope(%q: tensor<?x4x24xf32>, %lat: tensor<?x32xf32>, %kr: tensor<?x4xf32>, %w: tensor<128x32xf32>, %lc: tensor<256x32xf32>, %rc: tensor<256x8xf32>, %p: index) {
  // expected-error @+1 {{key rope dimension 1 (4) does not match the query rope dimension (8)}}
  %o, %a, %b = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %p nope(16) scale(0.25) : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x4xf32>, tensor<128x32xf32>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @mla_kvb(%q: tensor<?x4x24xf32>, %lat: tensor<?x32xf32>, %kr: tensor<?x8xf32>, %w: tensor<96x32xf32>, %lc: tensor<256x32xf32>, %rc: tensor<256x8xf32>, %p: index) {
  // expected-error @+1 {{kv_b weight dimension 0 (96) does not match heads * (nope_dim + value dim) (128)}}
  %o, %a, %b = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %p nope(16) scale(0.25) : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<96x32xf32>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @mla_latent(%q: tensor<?x4x24xf32>, %lat: tensor<?x16xf32>, %kr: tensor<?x8xf32>, %w: tensor<128x32xf32>, %lc: tensor<256x32xf32>, %rc: tensor<256x8xf32>, %p: index) {
  // expected-error @+1 {{latent dimension 1 (16) does not match the latent cache width (32)}}
  %o, %a, %b = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %p nope(16) scale(0.25) : tensor<?x4x24xf32>, tensor<?x16xf32>, tensor<?x8xf32>, tensor<128x32xf32>, tensor<256x32xf32>, tensor<256x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @mla_capacity(%q: tensor<?x4x24xf32>, %lat: tensor<?x32xf32>, %kr: tensor<?x8xf32>, %w: tensor<128x32xf32>, %lc: tensor<256x32xf32>, %rc: tensor<128x8xf32>, %p: index) {
  // expected-error @+1 {{latent cache capacity (256) differs from rope cache capacity (128)}}
  %o, %a, %b = moe.mla_attention %q, %lat, %kr, %w cache(%lc, %rc) at %p nope(16) scale(0.25) : tensor<?x4x24xf32>, tensor<?x32xf32>, tensor<?x8xf32>, tensor<128x32xf32>, tensor<256x32xf32>, tensor<128x8xf32> -> tensor<?x4x16xf32>
  return
}

// -----

func.func @rope_offset(%x: tensor<?x4x24xf32>, %p: index) {
  // expected-error @+1 {{rotary offset 24 must be in [0, head dimension 24)}}
  %r = moe.rope %x at %p from(24) theta(1.0e+04) : tensor<?x4x24xf32>
  return
}

// -----

func.func @rope_offset_odd(%x: tensor<?x4x24xf32>, %p: index) {
  // expected-error @+1 {{rotary dimension must be static and even, got 7}}
  %r = moe.rope %x at %p from(17) theta(1.0e+04) : tensor<?x4x24xf32>
  return
}

// -----

func.func @router_gate_without_append(%l: tensor<?x8xf32>, %g: tensor<?x1xf32>) {
  // expected-error @+1 {{a gate for appended experts needs append(S)}}
  %w, %i = moe.router softmax greedy %l top_k(3) gated %g scale(1.0) : (tensor<?x8xf32>, tensor<?x1xf32>) -> (tensor<?x3xf32>, tensor<?x3xi32>)
  return
}

// -----

func.func @router_gate_shape(%l: tensor<?x8xf32>, %g: tensor<?x2xf32>) {
  // expected-error @+1 {{appended gate dimension 1 (2) does not match one gate per token (1)}}
  %w, %i = moe.router softmax greedy %l top_k(3) append(2) gated %g scale(1.0) : (tensor<?x8xf32>, tensor<?x2xf32>) -> (tensor<?x5xf32>, tensor<?x5xi32>)
  return
}

// -----

func.func @fused_moe_experts(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %gu: tensor<16x64x64xbf16>, %d: tensor<16x64x32xbf16>) {
  // expected-error @+1 {{gate/up weight dimension 0 (16) does not match routed + shared experts (17)}}
  %y = moe.fused_moe %x router(%r) softmax greedy top_k(2) scale(1.0) shared(1) experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16x64x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @fused_moe_gate_up(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %gu: tensor<16x32x64xbf16>, %d: tensor<16x64x32xbf16>) {
  // expected-error @+1 {{gate/up weight dimension 1 (32) does not match twice the intermediate size (64)}}
  %y = moe.fused_moe %x router(%r) softmax greedy top_k(2) scale(1.0) shared(0) experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16x32x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @fused_moe_router(%x: tensor<?x64xf32>, %r: tensor<16x48xbf16>, %gu: tensor<16x64x64xbf16>, %d: tensor<16x64x32xbf16>) {
  // expected-error @+1 {{router weight dimension 1 (48) does not match the hidden size (64)}}
  %y = moe.fused_moe %x router(%r) softmax greedy top_k(2) scale(1.0) shared(0) experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x48xbf16>, tensor<16x64x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @fused_moe_gated(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %gu: tensor<15x64x64xbf16>, %d: tensor<15x64x32xbf16>) {
  // expected-error @+1 {{a gated shared expert needs shared(S) with S > 0}}
  %y = moe.fused_moe %x router(%r) softmax greedy top_k(2) scale(1.0) shared(0) gated experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<15x64x64xbf16>, tensor<15x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @fused_moe_topk(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %gu: tensor<16x64x64xbf16>, %d: tensor<16x64x32xbf16>) {
  // expected-error @+1 {{top_k (17) must be in [1, 16]}}
  %y = moe.fused_moe %x router(%r) softmax greedy top_k(17) scale(1.0) shared(0) experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16x64x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return
}

// -----

func.func @fused_moe_groups(%x: tensor<?x64xf32>, %r: tensor<16x64xbf16>, %gu: tensor<16x64x64xbf16>, %d: tensor<16x64x32xbf16>) {
  // expected-error @+1 {{n_group (3) must divide the number of experts (16)}}
  %y = moe.fused_moe %x router(%r) softmax group_limited_greedy top_k(2) groups(3, 1) scale(1.0) shared(0) experts(%gu, %d) : (tensor<?x64xf32>, tensor<16x64xbf16>, tensor<16x64x64xbf16>, tensor<16x64x32xbf16>) -> tensor<?x64xf32>
  return
}
