//===- CudaDriver.h - the CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// Part of moec. The runtime never links CUDA: the driver library
// (libcuda.so.1, or $MOEC_CUDA_DRIVER) is dlopen()ed the first time a model
// needs it and the few driver API entry points the CUDA device uses are
// resolved with dlsym, by their versioned names (cuMemAlloc_v2, ...). The
// types and constants below are the driver API's own (cuda.h), declared here
// so that no CUDA header is needed to build the runtime.
//
// Loading is attempted on every model load until it succeeds (reading the
// environment each time); once loaded, the driver stays loaded for the rest
// of the process.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_CUDADRIVER_H
#define MOEC_RUNTIME_CUDADRIVER_H

#include "Status.h"

#include <cstddef>
#include <string>

namespace moec::runtime::cuda {

// Driver API types (cuda.h).
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st *;
using CUmodule = struct CUmod_st *;
using CUfunction = struct CUfunc_st *;
using CUstream = struct CUstream_st *;
using CUevent = struct CUevent_st *;
using CUgraph = struct CUgraph_st *;
using CUgraphExec = struct CUgraphExec_st *;

// The constants the runtime uses.
inline constexpr CUresult CUDA_SUCCESS = 0;
inline constexpr CUresult CUDA_ERROR_OUT_OF_MEMORY = 2;
inline constexpr CUresult CUDA_ERROR_NO_DEVICE = 100;
inline constexpr CUresult CUDA_ERROR_INVALID_IMAGE = 200;
inline constexpr CUresult CUDA_ERROR_INVALID_PTX = 218;
inline constexpr CUresult CUDA_ERROR_NOT_FOUND = 500;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
inline constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
inline constexpr unsigned CU_STREAM_NON_BLOCKING = 1;
inline constexpr unsigned CU_EVENT_DISABLE_TIMING = 2;
inline constexpr int CU_STREAM_CAPTURE_MODE_GLOBAL = 0;
inline constexpr int CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1;
inline constexpr int CU_JIT_ERROR_LOG_BUFFER = 5;
inline constexpr int CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 6;

/// The resolved driver API. One process-wide instance, immutable once
/// loaded (thread-safe). Each pointer has the signature of the cuda.h
/// function of the same name (without the _v2 suffix).
struct Driver {
  CUresult (*cuInit)(unsigned flags);
  CUresult (*cuDriverGetVersion)(int *version);
  CUresult (*cuGetErrorName)(CUresult error, const char **name);
  CUresult (*cuGetErrorString)(CUresult error, const char **text);
  CUresult (*cuDeviceGetCount)(int *count);
  CUresult (*cuDeviceGet)(CUdevice *device, int ordinal);
  CUresult (*cuDeviceGetName)(char *name, int length, CUdevice device);
  CUresult (*cuDeviceGetAttribute)(int *value, int attribute, CUdevice device);
  CUresult (*cuDeviceTotalMem)(size_t *bytes, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext *context, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRelease)(CUdevice device);
  CUresult (*cuCtxSetCurrent)(CUcontext context);
  CUresult (*cuMemGetInfo)(size_t *free, size_t *total);
  CUresult (*cuMemAlloc)(CUdeviceptr *pointer, size_t bytes);
  CUresult (*cuMemFree)(CUdeviceptr pointer);
  CUresult (*cuMemHostAlloc)(void **pointer, size_t bytes, unsigned flags);
  CUresult (*cuMemFreeHost)(void *pointer);
  CUresult (*cuMemsetD8Async)(CUdeviceptr pointer, unsigned char value,
                              size_t count, CUstream stream);
  CUresult (*cuMemcpyHtoDAsync)(CUdeviceptr destination, const void *source,
                                size_t bytes, CUstream stream);
  CUresult (*cuMemcpyDtoHAsync)(void *destination, CUdeviceptr source,
                                size_t bytes, CUstream stream);
  CUresult (*cuModuleLoadDataEx)(CUmodule *module, const void *image,
                                 unsigned numOptions, int *options,
                                 void **optionValues);
  CUresult (*cuModuleUnload)(CUmodule module);
  CUresult (*cuModuleGetFunction)(CUfunction *function, CUmodule module,
                                  const char *name);
  CUresult (*cuStreamCreate)(CUstream *stream, unsigned flags);
  CUresult (*cuStreamDestroy)(CUstream stream);
  CUresult (*cuStreamSynchronize)(CUstream stream);
  CUresult (*cuEventCreate)(CUevent *event, unsigned flags);
  CUresult (*cuEventDestroy)(CUevent event);
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuEventElapsedTime)(float *milliseconds, CUevent start,
                                 CUevent end);
  CUresult (*cuLaunchKernel)(CUfunction function, unsigned gridX,
                             unsigned gridY, unsigned gridZ, unsigned blockX,
                             unsigned blockY, unsigned blockZ,
                             unsigned sharedBytes, CUstream stream,
                             void **kernelParams, void **extra);
  CUresult (*cuStreamBeginCapture)(CUstream stream, int mode);
  CUresult (*cuStreamEndCapture)(CUstream stream, CUgraph *graph);
  CUresult (*cuGraphInstantiateWithFlags)(CUgraphExec *exec, CUgraph graph,
                                          unsigned long long flags);
  CUresult (*cuGraphLaunch)(CUgraphExec exec, CUstream stream);
  CUresult (*cuGraphExecDestroy)(CUgraphExec exec);
  CUresult (*cuGraphDestroy)(CUgraph graph);

  /// The library that was loaded (as given to dlopen).
  std::string library;
  int version = 0; // cuDriverGetVersion: 1000 * major + 10 * minor

  /// "CUDA_ERROR_OUT_OF_MEMORY (out of memory)" for `error`.
  std::string describe(CUresult error) const;

  /// OK for CUDA_SUCCESS; otherwise MOEC_DEVICE_ERROR "`call` failed:
  /// <name> (<text>)".
  Status check(CUresult result, const char *call) const {
    if (result == CUDA_SUCCESS)
      return Status();
    return failure(result, call);
  }
  Status failure(CUresult result, const char *call) const;
};

/// The driver library to load: $MOEC_CUDA_DRIVER when set and non-empty,
/// else "libcuda.so.1".
std::string driverLibraryName();

/// Loads the driver (dlopen, dlsym, cuInit) unless an earlier call did, and
/// points `out` at it. Thread-safe. A failure is not remembered: the next
/// call tries again. MOEC_DEVICE_ERROR when the library cannot be loaded
/// ("CUDA driver not found (libcuda.so.1: <dlerror>)"), lacks an entry
/// point, or cuInit fails; $MOEC_CUDA_DRIVER naming another library than
/// the one already loaded is an error too (one driver per process).
Status loadDriver(const Driver *&out);

} // namespace moec::runtime::cuda

#endif // MOEC_RUNTIME_CUDADRIVER_H
