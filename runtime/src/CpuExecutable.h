//===- CpuExecutable.h - kernels of a CPU shared object ---------*- C++ -*-===//
//
// Part of moec. The CPU executable of an artifact is an ELF shared object
// stored as a blob. It is loaded from memory (memfd_create + dlopen of
// /proc/self/fd/N; a temporary file where memfd is unavailable) and every
// kernel name is resolved once, at model load.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CPUEXECUTABLE_H
#define MOEC_RUNTIME_CPUEXECUTABLE_H

#include "ArtifactFile.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moec::runtime {

/// The CPU kernel ABI (docs/artifact.md): pointers in binding order, the
/// call's scalars (T, start_pos, capacity), and the work range [begin, end).
using CpuKernel = void (*)(void *const *bindings, const int64_t *scalars,
                           int64_t begin, int64_t end);

class CpuExecutable {
public:
  /// Loads executables[index] of `file`. MOEC_UNSUPPORTED when it is not a
  /// CPU shared object; MOEC_INVALID_ARTIFACT when the shared object does not
  /// load or lacks a kernel.
  static Status load(const ArtifactFile &file, uint32_t index,
                     std::unique_ptr<CpuExecutable> &out);
  ~CpuExecutable();
  CpuExecutable(const CpuExecutable &) = delete;
  CpuExecutable &operator=(const CpuExecutable &) = delete;

  CpuKernel kernel(uint32_t index) const { return kernels[index]; }

private:
  CpuExecutable() = default;

  void *handle = nullptr;
  // The memfd stays open while the object is loaded so that its
  // /proc/self/fd/N name cannot be reused by another model's blob.
  int memfd = -1;
  std::vector<CpuKernel> kernels;
};

} // namespace moec::runtime

#endif // MOEC_RUNTIME_CPUEXECUTABLE_H
