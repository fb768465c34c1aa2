//===- Sampling.h - picking the next token from logits ----------*- C++ -*-===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_SAMPLING_H
#define MOEC_RUNTIME_SAMPLING_H

#include "Status.h"
#include "moec/runtime.h"

#include <cstdint>

namespace moec::runtime {

/// Index of the largest of `vocab` logits; the first among equal maxima.
int64_t argmax(const float *logits, int64_t vocab);

/// Picks a token as moec_sample documents (arguments validated by the
/// caller), advancing `rngState` when it samples.
Status sample(const float *logits, int64_t vocab,
              const moec_sampling_t &sampling, uint64_t *rngState,
              int64_t &token);

} // namespace moec::runtime

#endif // MOEC_RUNTIME_SAMPLING_H
