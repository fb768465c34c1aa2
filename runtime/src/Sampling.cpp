//===- Sampling.cpp - picking the next token from logits ------------------===//
//
// Part of moec. Greedy argmax, and temperature + nucleus (top-p) sampling
// with a caller-held splitmix64 state, so runs are reproducible from a seed.
//
//===----------------------------------------------------------------------===//

#include "Sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

namespace moec::runtime {

namespace {

/// splitmix64: a tiny, well-mixed generator whose whole state is one
/// uint64_t the caller can seed and keep.
uint64_t nextRandom(uint64_t &state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

/// Uniform in [0, 1) with 53 random bits.
double uniform(uint64_t &state) {
  return static_cast<double>(nextRandom(state) >> 11) * 0x1.0p-53;
}

} // namespace

int64_t argmax(const float *logits, int64_t vocab) {
  int64_t best = 0;
  for (int64_t i = 1; i < vocab; ++i)
    if (logits[i] > logits[best])
      best = i;
  return best;
}

Status sample(const float *logits, int64_t vocab,
              const moec_sampling_t &sampling, uint64_t *rngState,
              int64_t &token) {
  // Working copies reused across calls: sampling allocates once per thread.
  thread_local std::vector<float> work;
  thread_local std::vector<int64_t> order;
  thread_local std::vector<double> weights;
  const float *scores = logits;
  if (sampling.repeat_penalty > 0.0f && sampling.repeat_penalty != 1.0f &&
      sampling.history_size > 0) {
    work.assign(logits, logits + vocab);
    // Each distinct token once, like transformers' gather/scatter: the
    // penalized copy is compared with the original to skip repeats, which
    // keeps this linear in the history.
    for (size_t i = 0; i < sampling.history_size; ++i) {
      int64_t id = sampling.history[i];
      if (id < 0 || id >= vocab || work[id] != logits[id])
        continue;
      float &score = work[id];
      score = score < 0 ? score * sampling.repeat_penalty
                        : score / sampling.repeat_penalty;
    }
    scores = work.data();
  }
  if (sampling.temperature <= 0.0f) {
    token = argmax(scores, vocab);
    return Status();
  }

  // Token order by descending score (ties to the lower id) when a filter
  // needs it.
  order.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  bool filters =
      sampling.top_k > 0 || sampling.top_p < 1.0f || sampling.min_p > 0.0f;
  if (filters)
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
  int64_t kept = vocab;
  if (sampling.top_k > 0)
    kept = std::min<int64_t>(kept, sampling.top_k);
  const double maxScore = scores[argmax(scores, vocab)];
  weights.resize(vocab);
  double total = 0;
  for (int64_t i = 0; i < kept; ++i) {
    weights[i] = std::exp((scores[order[i]] - maxScore) / sampling.temperature);
    total += weights[i];
  }
  if (sampling.top_p < 1.0f) {
    // The smallest prefix whose probability reaches top_p (at least one
    // token), as transformers' TopPLogitsWarper keeps.
    double cumulative = 0;
    int64_t prefix = 0;
    while (prefix < kept) {
      cumulative += weights[prefix++];
      if (cumulative >= sampling.top_p * total)
        break;
    }
    kept = prefix;
    total = cumulative;
  }
  if (sampling.min_p > 0.0f) {
    // Probabilities relative to the most probable token's (weights[0]).
    double threshold = sampling.min_p * weights[0];
    int64_t prefix = 1;
    double sum = weights[0];
    while (prefix < kept && weights[prefix] >= threshold)
      sum += weights[prefix++];
    kept = prefix;
    total = sum;
  }
  double target = uniform(*rngState) * total;
  for (int64_t i = 0; i < kept; ++i) {
    target -= weights[i];
    if (target < 0) {
      token = order[i];
      return Status();
    }
  }
  token = order[kept - 1]; // rounding left a sliver past the last weight
  return Status();
}

} // namespace moec::runtime
