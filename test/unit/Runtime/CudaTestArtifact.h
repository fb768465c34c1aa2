//===- CudaTestArtifact.h - cuda artifacts for runtime tests ----*- C++ -*-===//
//
// Part of moec (test). Writes small artifacts whose executable targets
// `cuda:sm_XX`, without the compiler: the FlatBuffer is built here with the
// generated schema code (the runtime's verifier then checks the file like
// any other). The kernels are the toy model of test/unit/Target
// (CudaTestKernels.cu, embedded as PTX), so a GPU run can be checked number
// by number; without a GPU the artifacts exercise the verifier and the
// "no driver" paths. Also lets tests write artifacts the ArtifactBuilder
// would refuse (bad launch geometry, malformed targets).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_CUDATESTARTIFACT_H
#define MOEC_TEST_CUDATESTARTIFACT_H

#include <cstdint>
#include <string>
#include <vector>

namespace moec::test {

/// The toy model's vocabulary (the kernels are specialized on it).
inline constexpr int64_t kCudaVocab = 37;

struct CudaLaunch {
  uint32_t blockThreads, itemsPerBlock;
};

struct CudaTestArtifactOptions {
  std::string target = "cuda:sm_75";
  std::string format = "ptx";
  /// The executable's bytes; empty: the PTX of CudaTestKernels.cu.
  std::string blob;
  /// Append a NUL to the (PTX) blob.
  bool nulTerminated = false;
  int64_t capacity = 64;
  int64_t prefillTile = 4; // prefill max_tokens
  bool allLogits = true;   // false: prefill computes the last row only
  bool withDecode = true;
  /// Omit Executable.launches entirely.
  bool omitLaunches = false;
  /// Launch geometry per kernel; empty: {32, 64} for each (what the
  /// kernels are written for).
  std::vector<CudaLaunch> launches;
  /// Appended to the kernel names (with a {32, 64} launch each).
  std::vector<std::string> extraKernelNames;
  /// The decode entry dispatches to a second, cpu executable.
  bool mixedWithCpu = false;
  /// Bytes of an unused f32 weight "filler" stored before the bias (a
  /// multiple of 4), so that the bias lands in a later upload chunk.
  uint64_t fillerBytes = 0;
  /// No executable and no dispatch at all: a (trivial) cpu artifact.
  bool noKernels = false;
};

/// The PTX of CudaTestKernels.cu.
const char *cudaTestPtx();

/// The toy model's logit `v` at position history.size() - 1 (as
/// test/unit/Target/TestArtifact.h's expectedLogit).
float cudaExpectedLogit(const std::vector<int64_t> &history, int64_t v);

/// Writes the artifact; returns "" or an error message.
std::string writeCudaTestArtifact(const std::string &path,
                                  const CudaTestArtifactOptions &options);

} // namespace moec::test

#endif // MOEC_TEST_CUDATESTARTIFACT_H
