//===- CudaDevice.h - running an artifact on an NVIDIA GPU ------*- C++ -*-===//
//
// Part of moec. The CUDA device behind moec_model / moec_session when the
// artifact's kernels were compiled for `cuda:sm_XX` (docs/artifact.md, "CUDA
// device"):
//
// * CudaModel (one per moec_model): the device (primary context), the
//   loaded modules and kernel functions with their launch geometry, and the
//   weight segment, uploaded once into one device allocation.
// * CudaSession (one per moec_session): a non-blocking stream, the device
//   arena, KV caches and token-id / scalar / logits buffers, pinned host
//   staging, the kernel parameters of every dispatch resolved once, and the
//   CUDA graph that replays the decode step.
//
// Everything goes through the dlopen()ed driver (CudaDriver.h); nothing here
// links CUDA.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CUDADEVICE_H
#define MOEC_RUNTIME_CUDADEVICE_H

#include "ArtifactFile.h"
#include "CudaDriver.h"
#include "Profile.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moec::runtime {

/// A device allocation (none for 0 bytes), freed on destruction.
class DeviceBuffer {
public:
  DeviceBuffer() = default;
  ~DeviceBuffer() { release(); }
  DeviceBuffer(const DeviceBuffer &) = delete;
  DeviceBuffer &operator=(const DeviceBuffer &) = delete;

  /// Allocates `bytes`; MOEC_OUT_OF_MEMORY naming `what` when the device
  /// lacks the memory.
  Status allocate(const cuda::Driver &driver, uint64_t bytes, const char *what);
  cuda::CUdeviceptr get() const { return pointer; }
  uint64_t size() const { return length; }
  /// Frees the allocation (the context must be current).
  void release();

private:
  const cuda::Driver *driver = nullptr;
  cuda::CUdeviceptr pointer = 0;
  uint64_t length = 0;
};

/// Page-locked host memory (cuMemHostAlloc), freed on destruction.
class PinnedBuffer {
public:
  PinnedBuffer() = default;
  ~PinnedBuffer() { release(); }
  PinnedBuffer(const PinnedBuffer &) = delete;
  PinnedBuffer &operator=(const PinnedBuffer &) = delete;

  Status allocate(const cuda::Driver &driver, uint64_t bytes, const char *what);
  uint8_t *data() const { return bytes; }

private:
  void release();
  const cuda::Driver *driver = nullptr;
  uint8_t *bytes = nullptr;
};

class CudaModel {
public:
  struct Kernel {
    cuda::CUfunction function = nullptr;
    uint32_t blockThreads = 0, itemsPerBlock = 0;
  };

  /// Sets up the device for `file`, whose entry points dispatch to the
  /// (cuda) executables flagged in `used`: driver, device, arch check,
  /// modules, kernels, weights.
  static Status load(const ArtifactFile &file, const std::vector<bool> &used,
                     std::unique_ptr<CudaModel> &out);
  ~CudaModel();
  CudaModel(const CudaModel &) = delete;
  CudaModel &operator=(const CudaModel &) = delete;

  const cuda::Driver &driver() const { return *api; }
  /// Makes the model's context current on the calling thread.
  Status makeCurrent() const;
  const Kernel &kernel(uint32_t executable, uint32_t index) const {
    return kernels[executable][index];
  }
  cuda::CUdeviceptr weights() const { return weightSegment.get(); }
  /// "NVIDIA H100 80GB HBM3 (sm_90)".
  const std::string &description() const { return deviceDescription; }

private:
  CudaModel() = default;
  Status uploadWeights(const ArtifactFile &file);

  const cuda::Driver *api = nullptr;
  int ordinal = 0;
  cuda::CUdevice device = 0;
  cuda::CUcontext context = nullptr; // the retained primary context
  std::string deviceName, deviceDescription;
  int ccMajor = 0, ccMinor = 0;
  uint64_t totalMemory = 0;
  std::vector<cuda::CUmodule> modules; // indexed like executables
  std::vector<std::vector<Kernel>> kernels;
  DeviceBuffer weightSegment;
};

class CudaSession {
public:
  /// Allocates the session's device state for entry points `prefill` and
  /// `decode` (which may be the same) of a model loaded with `model`, with
  /// KV caches of `capacity` rows, and a pinned host buffer of
  /// `logitsBytes` for the logits the calls copy back.
  static Status create(const CudaModel &model, const ArtifactFile &file,
                       const fb::EntryPoint &prefill,
                       const fb::EntryPoint &decode, int64_t capacity,
                       uint64_t logitsBytes, std::unique_ptr<CudaSession> &out);
  ~CudaSession();
  CudaSession(const CudaSession &) = delete;
  CudaSession &operator=(const CudaSession &) = delete;

  /// The host copy of the logits (page-locked).
  float *hostLogits() const {
    return reinterpret_cast<float *>(logitsHost.data());
  }

  /// Runs prefill (decode = false) or decode on `tokens` ids at `startPos`
  /// and copies the first `rows` rows of logits to hostLogits(); returns
  /// when they are there.
  Status run(bool decode, const int64_t *ids, int64_t tokens, int64_t startPos,
             int64_t rows);

private:
  /// A flat 1-D memref descriptor, as the kernels take it (5 parameters).
  struct MemRef {
    uint64_t allocated, aligned;
    int64_t offset, size, stride;
  };
  struct Step {
    const CudaModel::Kernel *kernel;
    int64_t perToken, fixed;
    int64_t work; // this call's work items (a kernel parameter)
    std::vector<void *> params;
  };
  struct Prepared {
    const fb::EntryPoint *entry = nullptr;
    std::vector<MemRef> memrefs; // never resized after prepare()
    std::vector<Step> steps;
    // MOEC_PROFILE: an event before each step and one after the last, and
    // the accumulated milliseconds and launches of each step.
    std::vector<cuda::CUevent> events;
    KernelProfile timings;
  };
  /// Reads the events of the last launch of `prepared` into its totals.
  void collectProfile(Prepared &prepared);

  CudaSession() = default;
  Status prepare(const fb::EntryPoint &entry, Prepared &prepared);
  Status launch(Prepared &prepared, int64_t tokens);
  /// Captures the decode launches into `graphExec` (graph stays null when
  /// capture is not possible).
  void captureDecode();

  const CudaModel *model = nullptr;
  const ArtifactFile *file = nullptr;
  int64_t capacity = 0;
  int64_t vocab = 0;
  cuda::CUstream stream = nullptr;
  DeviceBuffer arena, caches, tokenIds, scalars, logits;
  std::vector<uint64_t> keyOffsets, valueOffsets; // into `caches`
  PinnedBuffer staging;                           // scalars, then token ids
  PinnedBuffer logitsHost;
  Prepared prefill, decode;
  bool useGraphs = true;
  bool profile = false;
  bool graphFailed = false;
  cuda::CUgraph graph = nullptr;
  cuda::CUgraphExec graphExec = nullptr;
};

} // namespace moec::runtime

#endif // MOEC_RUNTIME_CUDADEVICE_H
