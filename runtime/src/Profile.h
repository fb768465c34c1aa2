//===- Profile.h - MOEC_PROFILE=1 per-kernel timings ------------*- C++ -*-===//
//
// Part of moec. Accumulates the time of every dispatch of an entry point and
// prints the totals per kernel, largest first, when the session ends; the
// CPU and CUDA sessions share it so both read alike.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_PROFILE_H
#define MOEC_RUNTIME_PROFILE_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace moec::fb {
struct Artifact;
struct EntryPoint;
} // namespace moec::fb

namespace moec::runtime {

/// True when $MOEC_PROFILE is "1".
bool profilingRequested();

struct KernelProfile {
  /// Per dispatch (step) of the entry point: its kernel, the largest weight
  /// it reads (layer numbers as '*', so one line covers every layer; empty
  /// when it reads none), and the time and launches so far.
  std::vector<uint32_t> kernelIndex;
  std::vector<std::string> weight;
  std::vector<double> milliseconds;
  std::vector<int64_t> launches;

  /// Sizes the tables for `entry`'s dispatches, times zeroed.
  void describe(const fb::Artifact &artifact, const fb::EntryPoint &entry);
  bool described() const { return !milliseconds.empty(); }
  /// Prints "moec profile (NAME): ... on WHERE" and one line per kernel and
  /// weight to stderr, largest first; nothing when no call was timed.
  void print(const char *name, const char *where) const;
};

} // namespace moec::runtime

#endif // MOEC_RUNTIME_PROFILE_H
