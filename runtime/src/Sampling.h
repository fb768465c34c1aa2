//===- Sampling.h - picking the next token from logits ----------*- C++ -*-===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_SAMPLING_H
#define MOEC_RUNTIME_SAMPLING_H

#include "Status.h"

#include <cstdint>

namespace moec::runtime {

/// Index of the largest of `vocab` logits; the first among equal maxima.
int64_t argmax(const float *logits, int64_t vocab);

/// Samples from softmax(logits / temperature) restricted to the top-p
/// nucleus, advancing `rngState`. Arguments are validated by the caller
/// (temperature > 0, top_p in (0, 1]).
Status sample(const float *logits, int64_t vocab, float temperature, float topP,
              uint64_t &rngState, int64_t &token);

} // namespace moec::runtime

#endif // MOEC_RUNTIME_SAMPLING_H
