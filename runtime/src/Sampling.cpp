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

Status sample(const float *logits, int64_t vocab, float temperature, float topP,
              uint64_t &rngState, int64_t &token) {
  // Token order by descending logit; reused across calls so that sampling
  // allocates once per thread, not per token.
  thread_local std::vector<int64_t> order;
  thread_local std::vector<double> weights;
  order.resize(vocab);
  weights.resize(vocab);
  std::iota(order.begin(), order.end(), 0);
  int64_t kept = vocab;
  if (topP < 1.0f) {
    std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
    });
  }
  const double maxLogit = logits[argmax(logits, vocab)];
  double total = 0;
  for (int64_t i = 0; i < vocab; ++i) {
    weights[i] = std::exp((logits[order[i]] - maxLogit) / temperature);
    total += weights[i];
  }
  if (topP < 1.0f) {
    // Keep the smallest prefix whose probability reaches top_p (at least
    // one token), as transformers' TopPLogitsWarper does.
    double cumulative = 0;
    for (kept = 0; kept < vocab;) {
      cumulative += weights[kept++];
      if (cumulative >= topP * total)
        break;
    }
    total = cumulative;
  }
  double target = uniform(rngState) * total;
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
