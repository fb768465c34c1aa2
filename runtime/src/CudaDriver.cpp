//===- CudaDriver.cpp - the CUDA driver API, loaded at run time -----------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "CudaDriver.h"

#include <cstdlib>
#include <dlfcn.h>
#include <memory>
#include <mutex>
#include <type_traits>

namespace moec::runtime::cuda {

namespace {

std::mutex driverMutex;
/// The loaded driver; never freed (the library stays loaded, and sessions
/// may still use it from static destructors).
Driver *loadedDriver = nullptr;
void *loadedHandle = nullptr;

/// Resolves every entry point of `driver` from `handle`; false (with the
/// missing symbol in `missing`) when one is absent.
bool resolve(void *handle, Driver &driver, const char *&missing) {
  bool ok = true;
  auto get = [&](auto &pointer, const char *symbol) {
    void *address = ok ? ::dlsym(handle, symbol) : nullptr;
    if (!address) {
      if (ok)
        missing = symbol;
      ok = false;
      return;
    }
    pointer =
        reinterpret_cast<std::remove_reference_t<decltype(pointer)>>(address);
  };
  get(driver.cuInit, "cuInit");
  get(driver.cuDriverGetVersion, "cuDriverGetVersion");
  get(driver.cuGetErrorName, "cuGetErrorName");
  get(driver.cuGetErrorString, "cuGetErrorString");
  get(driver.cuDeviceGetCount, "cuDeviceGetCount");
  get(driver.cuDeviceGet, "cuDeviceGet");
  get(driver.cuDeviceGetName, "cuDeviceGetName");
  get(driver.cuDeviceGetAttribute, "cuDeviceGetAttribute");
  get(driver.cuDeviceTotalMem, "cuDeviceTotalMem_v2");
  get(driver.cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain");
  get(driver.cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2");
  get(driver.cuCtxSetCurrent, "cuCtxSetCurrent");
  get(driver.cuMemGetInfo, "cuMemGetInfo_v2");
  get(driver.cuMemAlloc, "cuMemAlloc_v2");
  get(driver.cuMemFree, "cuMemFree_v2");
  get(driver.cuMemHostAlloc, "cuMemHostAlloc");
  get(driver.cuMemFreeHost, "cuMemFreeHost");
  get(driver.cuMemsetD8Async, "cuMemsetD8Async");
  get(driver.cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2");
  get(driver.cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2");
  get(driver.cuModuleLoadDataEx, "cuModuleLoadDataEx");
  get(driver.cuModuleUnload, "cuModuleUnload");
  get(driver.cuModuleGetFunction, "cuModuleGetFunction");
  get(driver.cuStreamCreate, "cuStreamCreate");
  get(driver.cuStreamDestroy, "cuStreamDestroy_v2");
  get(driver.cuStreamSynchronize, "cuStreamSynchronize");
  get(driver.cuEventCreate, "cuEventCreate");
  get(driver.cuEventDestroy, "cuEventDestroy_v2");
  get(driver.cuEventRecord, "cuEventRecord");
  get(driver.cuEventSynchronize, "cuEventSynchronize");
  get(driver.cuEventElapsedTime, "cuEventElapsedTime");
  get(driver.cuLaunchKernel, "cuLaunchKernel");
  get(driver.cuStreamBeginCapture, "cuStreamBeginCapture_v2");
  get(driver.cuStreamEndCapture, "cuStreamEndCapture");
  get(driver.cuGraphInstantiateWithFlags, "cuGraphInstantiateWithFlags");
  get(driver.cuGraphLaunch, "cuGraphLaunch");
  get(driver.cuGraphExecDestroy, "cuGraphExecDestroy");
  get(driver.cuGraphDestroy, "cuGraphDestroy");
  return ok;
}

/// dlerror() as one line ("unknown error" when it has nothing).
std::string lastDlError() {
  const char *error = ::dlerror();
  std::string text = error ? error : "unknown error";
  for (char &c : text)
    if (c == '\n')
      c = ' ';
  return text;
}

} // namespace

std::string Driver::describe(CUresult error) const {
  const char *name = nullptr, *text = nullptr;
  if (cuGetErrorName(error, &name) != CUDA_SUCCESS || !name)
    name = nullptr;
  if (cuGetErrorString(error, &text) != CUDA_SUCCESS || !text)
    text = nullptr;
  std::string result =
      name ? std::string(name) : "CUDA error " + std::to_string(error);
  if (text)
    result += std::string(" (") + text + ")";
  return result;
}

Status Driver::failure(CUresult result, const char *call) const {
  return makeStatus(MOEC_DEVICE_ERROR, "%s failed: %s", call,
                    describe(result).c_str());
}

std::string driverLibraryName() {
  const char *name = std::getenv("MOEC_CUDA_DRIVER");
  return name && *name ? name : "libcuda.so.1";
}

/// dlopen()s the driver library `library` into `handle`.
static Status openLibrary(const std::string &library, void *&handle) {
  handle = ::dlopen(library.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    return makeStatus(MOEC_DEVICE_ERROR, "CUDA driver not found (%s: %s)",
                      library.c_str(), lastDlError().c_str());
  return Status();
}

Status loadDriver(const Driver *&out) {
  out = nullptr;
  std::string library = driverLibraryName();
  std::lock_guard<std::mutex> lock(driverMutex);

  if (loadedDriver) {
    if (library == loadedDriver->library) {
      out = loadedDriver;
      return Status();
    }
    // Another name: fine when it is the same library, an error otherwise
    // (the process already uses one driver).
    void *handle;
    MOEC_RETURN_IF_ERROR(openLibrary(library, handle));
    bool same = handle == loadedHandle;
    ::dlclose(handle);
    if (!same)
      return makeStatus(MOEC_DEVICE_ERROR,
                        "MOEC_CUDA_DRIVER names %s, but this process already "
                        "uses the CUDA driver %s",
                        library.c_str(), loadedDriver->library.c_str());
    out = loadedDriver;
    return Status();
  }

  void *handle;
  MOEC_RETURN_IF_ERROR(openLibrary(library, handle));
  auto driver = std::make_unique<Driver>();
  const char *missing = "";
  if (!resolve(handle, *driver, missing)) {
    ::dlclose(handle);
    return makeStatus(MOEC_DEVICE_ERROR,
                      "the CUDA driver %s lacks %s (driver too old?)",
                      library.c_str(), missing);
  }
  driver->library = library;
  CUresult result = driver->cuInit(0);
  if (result != CUDA_SUCCESS) {
    Status status =
        result == CUDA_ERROR_NO_DEVICE
            ? makeStatus(MOEC_DEVICE_ERROR, "no CUDA device found (cuInit: %s)",
                         driver->describe(result).c_str())
            : driver->failure(result, "cuInit");
    ::dlclose(handle);
    return status;
  }
  if (driver->cuDriverGetVersion(&driver->version) != CUDA_SUCCESS)
    driver->version = 0;
  loadedHandle = handle;
  loadedDriver = driver.release();
  out = loadedDriver;
  return Status();
}

} // namespace moec::runtime::cuda
