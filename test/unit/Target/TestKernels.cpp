//===- TestKernels.cpp - a tiny CPU executable for runtime tests ----------===//
//
// Part of moec (test). Compiled into a shared object that test artifacts
// carry as their CPU executable. The kernels follow the artifact ABI
// (docs/artifact.md) and compute something whose every number the tests can
// predict: a toy "model" whose logits are
//   logits[t][v] = bias[(v + p) % V] + sum(key cache rows 0 .. p) + 1000 * p,
// p = start_pos + t the absolute position and the key cache holding the
// token id of every position seen so far (so greedy decoding walks
// backwards through the vocabulary from the bias's argmax). That checks
// bindings, positions, KV-cache persistence across calls and chunks, and the
// barrier between dispatches (each kernel reads what other threads wrote in the
// previous one).
//
//===----------------------------------------------------------------------===//

#include <cstdint>

namespace {
enum Scalar { kTokens = 0, kStartPos = 1, kCapacity = 2 };
} // namespace

extern "C" {

/// bindings: token ids int64[T], key cache f32[S], value cache f32[S].
/// work: 1 per token.
void moec_test_store_kv(void *const *bindings, const int64_t *scalars,
                        int64_t begin, int64_t end) {
  const auto *ids = static_cast<const int64_t *>(bindings[0]);
  auto *keys = static_cast<float *>(bindings[1]);
  auto *values = static_cast<float *>(bindings[2]);
  for (int64_t t = begin; t < end; ++t) {
    int64_t position = scalars[kStartPos] + t;
    if (position >= scalars[kCapacity])
      __builtin_trap(); // the runtime must never let this happen
    keys[position] = static_cast<float>(ids[t]);
    values[position] = 2.0f * static_cast<float>(ids[t]);
  }
}

/// bindings: key cache f32[S], value cache f32[S], sums f32[T] (arena).
/// work: 1 per token. sums[t] = sum of keys[0 .. p]; values must be 2x keys.
void moec_test_prefix_sum(void *const *bindings, const int64_t *scalars,
                          int64_t begin, int64_t end) {
  const auto *keys = static_cast<const float *>(bindings[0]);
  const auto *values = static_cast<const float *>(bindings[1]);
  auto *sums = static_cast<float *>(bindings[2]);
  for (int64_t t = begin; t < end; ++t) {
    float sum = 0;
    for (int64_t p = 0; p <= scalars[kStartPos] + t; ++p)
      sum += values[p] == 2.0f * keys[p] ? keys[p] : -1e6f;
    sums[t] = sum;
  }
}

/// bindings: bias f32[V] (weight), sums f32[T] (arena), logits f32[T, V].
/// work: V per token (one item per logit), so rows are split across threads.
/// Like a compiled kernel, it is specialized on its static shapes (V = 37).
void moec_test_logits_v37(void *const *bindings, const int64_t *scalars,
                          int64_t begin, int64_t end) {
  constexpr int64_t vocab = 37;
  const auto *bias = static_cast<const float *>(bindings[0]);
  const auto *sums = static_cast<const float *>(bindings[1]);
  auto *logits = static_cast<float *>(bindings[2]);
  for (int64_t i = begin; i < end; ++i) {
    int64_t t = i / vocab, v = i % vocab;
    int64_t position = scalars[kStartPos] + t;
    logits[i] = bias[(v + position) % vocab] + sums[t] +
                1000.0f * static_cast<float>(position);
  }
}

/// Like moec_test_logits_v37 for the last token only (an entry point with
/// all_logits = false). work: fixed V.
void moec_test_last_logits_v37(void *const *bindings, const int64_t *scalars,
                               int64_t begin, int64_t end) {
  constexpr int64_t vocab = 37;
  const auto *bias = static_cast<const float *>(bindings[0]);
  const auto *sums = static_cast<const float *>(bindings[1]);
  auto *logits = static_cast<float *>(bindings[2]);
  int64_t last = scalars[kTokens] - 1;
  int64_t position = scalars[kStartPos] + last;
  for (int64_t v = begin; v < end; ++v)
    logits[v] = bias[(v + position) % vocab] + sums[last] +
                1000.0f * static_cast<float>(position);
}

/// bindings: logits f32[T, V]. Every work item records the range it ran in:
/// logits[i] = begin * 4096 + (end - begin), exact in f32 for small works.
void moec_test_record_ranges(void *const *bindings, const int64_t *scalars,
                             int64_t begin, int64_t end) {
  auto *logits = static_cast<float *>(bindings[0]);
  for (int64_t i = begin; i < end; ++i)
    logits[i] = static_cast<float>(begin * 4096 + (end - begin));
}

} // extern "C"
