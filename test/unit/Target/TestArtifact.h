//===- TestArtifact.h - small artifacts for runtime tests -------*- C++ -*-===//
//
// Part of moec (test). Writes artifacts with the real ArtifactBuilder around
// the toy kernels of TestKernels.cpp, and predicts their logits. Shared by
// the GoogleTest suites and `moec-make-test-artifact` (lit tests).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_TESTARTIFACT_H
#define MOEC_TEST_TESTARTIFACT_H

#include "moec/Target/ArtifactWriter.h"

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moec::test {

/// The toy model's vocabulary (the kernels are specialized on it).
inline constexpr int64_t kVocab = 37;
/// Its end-of-sequence id.
inline constexpr int64_t kEosId = 36;

struct TestArtifactOptions {
  int64_t capacity = 64;   // model.max_seq_len
  int64_t prefillTile = 4; // prefill max_tokens: longer prompts are chunked
  bool allLogits = true;   // false: prefill computes the last row only
  bool withDecode = true;  // false: decode falls back to prefill
  /// Instead of the toy model, one dispatch of moec_test_record_ranges
  /// over [0, V * T) with this grain, in both entry points.
  bool recordRanges = false;
  int64_t grain = 0;
  /// Appended to the executable's kernel names (e.g. an undefined symbol).
  std::vector<std::string> extraKernelNames;
  /// Extra f32 weights "filler.N" of `fillerElements` each, after "bias".
  int fillerWeights = 0;
  int64_t fillerElements = 16;
  uint64_t tableReserveBytes = ArtifactBuilder::Options().tableReserveBytes;
  std::string target = "cpu";
  std::string cpuFeatures;
};

/// Path of the shared object holding the toy kernels.
std::string testKernelsPath();

/// bias[v] of the toy model: 0.25 * ((5 v) mod 37), largest (9.0) at v = 22.
float testBias(int64_t v);

/// The toy model's logit `v` at absolute position p = history.size() - 1,
/// where `history` holds the token ids of positions 0 .. p.
float expectedLogit(llvm::ArrayRef<int64_t> history, int64_t v);

/// Writes a test artifact to `path` with the ArtifactBuilder.
llvm::Error writeTestArtifact(llvm::StringRef path,
                              const TestArtifactOptions &options);

} // namespace moec::test

#endif // MOEC_TEST_TESTARTIFACT_H
