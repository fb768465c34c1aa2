//===- CudaDevice.cpp - running an artifact on an NVIDIA GPU --------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "CudaDevice.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string_view>

namespace moec::runtime {

using namespace cuda;
using ull = unsigned long long;

namespace {

/// Host staging for the weight upload: two buffers of this size, filled
/// alternately while the other one's copy is in flight.
constexpr uint64_t kStagingBytes = 64ull << 20;
/// Alignment of each KV cache inside the session's cache allocation.
constexpr uint64_t kCacheAlignment = 256;
/// Passed as the `size` of every memref descriptor (kernels do not read it).
constexpr int64_t kMemRefSize = int64_t{1} << 62;

std::string formatArch(const CudaArch &arch) {
  return formatString("sm_%d%d%s", arch.major, arch.minor,
                      arch.archSpecific ? "a" : "");
}

/// Free device memory, for out-of-memory messages ("" when unknown).
std::string freeMemoryNote(const Driver &driver) {
  size_t freeBytes = 0, totalBytes = 0;
  if (driver.cuMemGetInfo(&freeBytes, &totalBytes) != CUDA_SUCCESS)
    return "";
  return formatString(" (%llu of %llu bytes free)", static_cast<ull>(freeBytes),
                      static_cast<ull>(totalBytes));
}

/// The first line of a JIT log, or "".
std::string firstLine(const char *log) {
  std::string_view text(log);
  while (!text.empty() && (text.front() == '\n' || text.front() == ' '))
    text.remove_prefix(1);
  return std::string(text.substr(0, text.find('\n')));
}

} // namespace

//===----------------------------------------------------------------------===//
// Buffers
//===----------------------------------------------------------------------===//

Status DeviceBuffer::allocate(const Driver &api, uint64_t bytes,
                              const char *what) {
  release();
  driver = &api;
  if (bytes == 0)
    return Status();
  CUresult result = api.cuMemAlloc(&pointer, bytes);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) {
    pointer = 0;
    return makeStatus(MOEC_OUT_OF_MEMORY,
                      "cannot allocate %llu bytes of device memory for %s%s",
                      static_cast<ull>(bytes), what,
                      freeMemoryNote(api).c_str());
  }
  if (result != CUDA_SUCCESS) {
    pointer = 0;
    return api.failure(result, "cuMemAlloc_v2").prefix(what);
  }
  length = bytes;
  return Status();
}

void DeviceBuffer::release() {
  if (pointer)
    driver->cuMemFree(pointer);
  pointer = 0;
  length = 0;
}

Status PinnedBuffer::allocate(const Driver &api, uint64_t bytes,
                              const char *what) {
  release();
  driver = &api;
  void *memory = nullptr;
  CUresult result = api.cuMemHostAlloc(&memory, bytes, 0);
  if (result == CUDA_ERROR_OUT_OF_MEMORY)
    return makeStatus(MOEC_OUT_OF_MEMORY,
                      "cannot allocate %llu bytes of page-locked host memory "
                      "for %s",
                      static_cast<ull>(bytes), what);
  if (result != CUDA_SUCCESS)
    return api.failure(result, "cuMemHostAlloc").prefix(what);
  this->bytes = static_cast<uint8_t *>(memory);
  return Status();
}

void PinnedBuffer::release() {
  if (bytes)
    driver->cuMemFreeHost(bytes);
  bytes = nullptr;
}

//===----------------------------------------------------------------------===//
// CudaModel
//===----------------------------------------------------------------------===//

Status CudaModel::load(const ArtifactFile &file, const std::vector<bool> &used,
                       std::unique_ptr<CudaModel> &out) {
  out.reset();
  const fb::Artifact &artifact = file.artifact();
  const auto &executables = *artifact.executables();
  uint32_t first = 0;
  while (first < used.size() && !used[first])
    ++first;
  if (first == used.size())
    return makeStatus(MOEC_UNSUPPORTED, "no cuda executable to load");
  const char *target = executables.Get(first)->target()->c_str();

  std::unique_ptr<CudaModel> model(new CudaModel());
  Status driverStatus = loadDriver(model->api);
  if (!driverStatus.ok())
    return Status(driverStatus.code(),
                  driverStatus.message() +
                      formatString("; this artifact was compiled for %s — "
                                   "recompile with --target=cpu to run on "
                                   "the CPU",
                                   target));
  const Driver &driver = *model->api;

  // The device: $MOEC_CUDA_DEVICE, default 0.
  if (const char *env = std::getenv("MOEC_CUDA_DEVICE"); env && *env) {
    std::string_view text(env);
    auto [end, error] =
        std::from_chars(text.data(), text.data() + text.size(), model->ordinal);
    if (error != std::errc() || end != text.data() + text.size() ||
        model->ordinal < 0)
      return makeStatus(MOEC_INVALID_ARGUMENT,
                        "MOEC_CUDA_DEVICE='%s' is not a device ordinal", env);
  }
  int count = 0;
  MOEC_RETURN_IF_ERROR(
      driver.check(driver.cuDeviceGetCount(&count), "cuDeviceGetCount"));
  if (count == 0)
    return makeStatus(MOEC_DEVICE_ERROR,
                      "no CUDA device found; this artifact was compiled for "
                      "%s — recompile with --target=cpu to run on the CPU",
                      target);
  if (model->ordinal >= count)
    return makeStatus(MOEC_DEVICE_ERROR,
                      "MOEC_CUDA_DEVICE=%d, but there %s %d CUDA device%s",
                      model->ordinal, count == 1 ? "is" : "are", count,
                      count == 1 ? "" : "s");
  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuDeviceGet(&model->device, model->ordinal), "cuDeviceGet"));
  char name[256] = {};
  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuDeviceGetName(name, sizeof(name) - 1, model->device),
      "cuDeviceGetName"));
  model->deviceName = name;
  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuDeviceGetAttribute(&model->ccMajor,
                                  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR,
                                  model->device),
      "cuDeviceGetAttribute"));
  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuDeviceGetAttribute(&model->ccMinor,
                                  CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR,
                                  model->device),
      "cuDeviceGetAttribute"));
  size_t totalMemory = 0;
  MOEC_RETURN_IF_ERROR(
      driver.check(driver.cuDeviceTotalMem(&totalMemory, model->device),
                   "cuDeviceTotalMem_v2"));
  model->totalMemory = totalMemory;
  model->deviceDescription =
      formatString("%s (sm_%d%d)", name, model->ccMajor, model->ccMinor);

  // The arch each executable needs, before anything is allocated.
  for (uint32_t i = 0; i < used.size(); ++i) {
    if (!used[i])
      continue;
    const fb::Executable &executable = *executables.Get(i);
    CudaArch arch;
    if (!parseCudaTarget(executable.target()->string_view(), arch))
      return invalidArtifact("executables[%u]: target '%s' is not "
                             "cuda:sm_<digits>[a]",
                             i, executable.target()->c_str());
    int need = arch.major * 10 + arch.minor;
    int have = model->ccMajor * 10 + model->ccMinor;
    bool exact =
        arch.archSpecific || executable.format()->string_view() == "cubin";
    if (have < need || (exact && have != need))
      return makeStatus(
          MOEC_UNSUPPORTED,
          "executables[%u]: artifact built for %s%s, device %d is sm_%d%d "
          "(%s)",
          i, formatArch(arch).c_str(),
          exact && have > need
              ? executable.format()->string_view() == "cubin"
                    ? " (cubin only: no PTX to compile for another arch)"
                    : " (arch-specific)"
              : "",
          model->ordinal, model->ccMajor, model->ccMinor, name);
  }

  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuDevicePrimaryCtxRetain(&model->context, model->device),
      "cuDevicePrimaryCtxRetain"));
  MOEC_RETURN_IF_ERROR(model->makeCurrent());

  // Modules and kernels.
  model->modules.assign(executables.size(), nullptr);
  model->kernels.resize(executables.size());
  for (uint32_t i = 0; i < used.size(); ++i) {
    if (!used[i])
      continue;
    const fb::Executable &executable = *executables.Get(i);
    const uint8_t *blob = file.blobData(executable);
    std::vector<char> text;
    const void *image = blob;
    if (executable.format()->string_view() == "ptx") {
      // PTX must be NUL-terminated; the blob may or may not be.
      text.assign(blob, blob + executable.blob_size());
      text.push_back('\0');
      image = text.data();
    }
    char errorLog[4096] = {};
    int options[] = {CU_JIT_ERROR_LOG_BUFFER,
                     CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *values[] = {errorLog, reinterpret_cast<void *>(
                                    static_cast<uintptr_t>(sizeof(errorLog)))};
    CUresult result = driver.cuModuleLoadDataEx(&model->modules[i], image, 2,
                                                options, values);
    if (result != CUDA_SUCCESS) {
      model->modules[i] = nullptr;
      std::string log = firstLine(errorLog);
      return makeStatus(
          result == CUDA_ERROR_INVALID_IMAGE || result == CUDA_ERROR_INVALID_PTX
              ? MOEC_INVALID_ARTIFACT
              : MOEC_DEVICE_ERROR,
          "executables[%u]: cuModuleLoadDataEx (%s) failed: "
          "%s%s%s",
          i, executable.format()->c_str(), driver.describe(result).c_str(),
          log.empty() ? "" : ": ", log.c_str());
    }
    const auto &names = *executable.kernel_names();
    const auto &launches = *executable.launches(); // verified at open
    for (uint32_t k = 0; k < names.size(); ++k) {
      Kernel kernel;
      result = driver.cuModuleGetFunction(&kernel.function, model->modules[i],
                                          names.Get(k)->c_str());
      if (result == CUDA_ERROR_NOT_FOUND)
        return invalidArtifact("executables[%u]: kernel '%s' "
                               "(kernel_names[%u]) is not defined by the "
                               "module",
                               i, names.Get(k)->c_str(), k);
      MOEC_RETURN_IF_ERROR(driver.check(result, "cuModuleGetFunction")
                               .prefix(formatString("executables[%u]", i)));
      kernel.blockThreads = launches.Get(k)->block_threads();
      kernel.itemsPerBlock = launches.Get(k)->items_per_block();
      model->kernels[i].push_back(kernel);
    }
  }

  MOEC_RETURN_IF_ERROR(model->uploadWeights(file));
  out = std::move(model);
  return Status();
}

Status CudaModel::uploadWeights(const ArtifactFile &file) {
  const Driver &driver = *api;
  uint64_t size = file.header().weights_size();
  MOEC_RETURN_IF_ERROR(
      weightSegment.allocate(driver, size, "the weights")
          .prefix(formatString("device %d (%s)", ordinal, deviceName.c_str())));
  if (size == 0)
    return Status();
  const uint8_t *source = file.weightSegment();

  // Double-buffered: the host copies chunk i + 1 into one pinned buffer
  // (faulting the mapping in) while the DMA of chunk i reads the other.
  uint64_t chunk = std::min(size, kStagingBytes);
  PinnedBuffer staging[2];
  for (PinnedBuffer &buffer : staging)
    MOEC_RETURN_IF_ERROR(
        buffer.allocate(driver, chunk, "the weight upload staging"));
  CUstream stream = nullptr;
  CUevent done[2] = {nullptr, nullptr};
  auto cleanup = [&] {
    if (stream)
      driver.cuStreamSynchronize(stream);
    for (CUevent event : done)
      if (event)
        driver.cuEventDestroy(event);
    if (stream)
      driver.cuStreamDestroy(stream);
  };
  Status status = driver.check(
      driver.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING), "cuStreamCreate");
  for (CUevent &event : done)
    if (status.ok())
      status =
          driver.check(driver.cuEventCreate(&event, CU_EVENT_DISABLE_TIMING),
                       "cuEventCreate");
  bool pending[2] = {false, false};
  for (uint64_t offset = 0, index = 0; status.ok() && offset < size;
       offset += chunk, index ^= 1) {
    uint64_t bytes = std::min(chunk, size - offset);
    if (pending[index]) {
      status = driver.check(driver.cuEventSynchronize(done[index]),
                            "cuEventSynchronize");
      if (!status.ok())
        break;
    }
    std::memcpy(staging[index].data(), source + offset, bytes);
    status = driver.check(driver.cuMemcpyHtoDAsync(weightSegment.get() + offset,
                                                   staging[index].data(), bytes,
                                                   stream),
                          "cuMemcpyHtoDAsync_v2");
    if (status.ok())
      status = driver.check(driver.cuEventRecord(done[index], stream),
                            "cuEventRecord");
    pending[index] = true;
  }
  if (status.ok())
    status =
        driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize");
  cleanup();
  return status.prefix("uploading the weights");
}

Status CudaModel::makeCurrent() const {
  return api->check(api->cuCtxSetCurrent(context), "cuCtxSetCurrent");
}

CudaModel::~CudaModel() {
  if (!api)
    return;
  if (context) {
    api->cuCtxSetCurrent(context);
    weightSegment.release();
    for (CUmodule module : modules)
      if (module)
        api->cuModuleUnload(module);
    api->cuDevicePrimaryCtxRelease(device);
  }
}

//===----------------------------------------------------------------------===//
// CudaSession
//===----------------------------------------------------------------------===//

Status CudaSession::create(const CudaModel &model, const ArtifactFile &file,
                           const fb::EntryPoint &prefill,
                           const fb::EntryPoint &decode, int64_t capacity,
                           uint64_t logitsBytes,
                           std::unique_ptr<CudaSession> &out) {
  out.reset();
  const Driver &driver = model.driver();
  MOEC_RETURN_IF_ERROR(model.makeCurrent());
  std::unique_ptr<CudaSession> session(new CudaSession());
  session->model = &model;
  session->file = &file;
  session->capacity = capacity;
  session->vocab = file.model().vocab_size();
  const char *graphs = std::getenv("MOEC_CUDA_GRAPHS");
  session->useGraphs = !(graphs && std::string_view(graphs) == "0");
  // MOEC_PROFILE=1: time every dispatch with events (no graphs) and print
  // the time per kernel when the session ends.
  session->profile = profilingRequested();
  if (session->profile)
    session->useGraphs = false;
  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuStreamCreate(&session->stream, CU_STREAM_NON_BLOCKING),
      "cuStreamCreate"));

  // KV caches: one allocation, each cache at an aligned offset, zeroed.
  const fb::Artifact &artifact = file.artifact();
  uint32_t numCaches = artifact.kv_caches() ? artifact.kv_caches()->size() : 0;
  uint64_t cachesBytes = 0;
  for (uint32_t i = 0; i < numCaches; ++i) {
    const fb::KvCache &cache = *artifact.kv_caches()->Get(i);
    session->keyOffsets.push_back(cachesBytes);
    cachesBytes = artifact::alignTo(
        cachesBytes + cacheBytes(cache.key_shape(), cache.dtype(), capacity),
        kCacheAlignment);
    session->valueOffsets.push_back(cachesBytes);
    cachesBytes = artifact::alignTo(
        cachesBytes + cacheBytes(cache.value_shape(), cache.dtype(), capacity),
        kCacheAlignment);
  }
  MOEC_RETURN_IF_ERROR(
      session->caches.allocate(driver, cachesBytes, "the KV caches"));

  uint64_t arenaBytes = std::max(prefill.arena_bytes(), decode.arena_bytes());
  MOEC_RETURN_IF_ERROR(
      session->arena.allocate(driver, arenaBytes, "the activation arena"));
  int64_t maxTokens = std::max(prefill.max_tokens(), decode.max_tokens());
  MOEC_RETURN_IF_ERROR(session->tokenIds.allocate(
      driver, sizeof(int64_t) * maxTokens, "the token ids"));
  MOEC_RETURN_IF_ERROR(session->scalars.allocate(driver, 4 * sizeof(int64_t),
                                                 "the call scalars"));
  MOEC_RETURN_IF_ERROR(
      session->logits.allocate(driver, logitsBytes, "the logits"));
  MOEC_RETURN_IF_ERROR(session->staging.allocate(
      driver, sizeof(int64_t) * (4 + maxTokens), "the token-id staging"));
  MOEC_RETURN_IF_ERROR(
      session->logitsHost.allocate(driver, logitsBytes, "the host logits"));
  std::memset(session->logitsHost.data(), 0, logitsBytes);

  // Zero-filled like the CPU session's buffers.
  for (const DeviceBuffer *buffer :
       {&session->caches, &session->arena, &session->logits, &session->scalars})
    if (buffer->size())
      MOEC_RETURN_IF_ERROR(
          driver.check(driver.cuMemsetD8Async(buffer->get(), 0, buffer->size(),
                                              session->stream),
                       "cuMemsetD8Async"));
  MOEC_RETURN_IF_ERROR(driver.check(driver.cuStreamSynchronize(session->stream),
                                    "cuStreamSynchronize"));

  MOEC_RETURN_IF_ERROR(session->prepare(prefill, session->prefill));
  MOEC_RETURN_IF_ERROR(session->prepare(decode, session->decode));
  out = std::move(session);
  return Status();
}

Status CudaSession::prepare(const fb::EntryPoint &entry, Prepared &prepared) {
  const fb::Artifact &artifact = file->artifact();
  prepared.entry = &entry;
  size_t numMemRefs = 0;
  for (const fb::Dispatch *dispatch : *entry.dispatches())
    numMemRefs += dispatch->bindings()->size() + 1;
  // Kernel parameters point into `memrefs` and each step's `work`: neither
  // vector may reallocate once a pointer is taken.
  prepared.memrefs.reserve(numMemRefs);
  prepared.steps.reserve(entry.dispatches()->size());
  auto addMemRef = [&](Step &step, CUdeviceptr pointer) {
    prepared.memrefs.push_back({pointer, pointer, 0, kMemRefSize, 1});
    MemRef &memref = prepared.memrefs.back();
    for (void *param : {static_cast<void *>(&memref.allocated),
                        static_cast<void *>(&memref.aligned),
                        static_cast<void *>(&memref.offset),
                        static_cast<void *>(&memref.size),
                        static_cast<void *>(&memref.stride)})
      step.params.push_back(param);
  };
  for (const fb::Dispatch *dispatch : *entry.dispatches()) {
    prepared.steps.emplace_back();
    Step &step = prepared.steps.back();
    step.kernel = &model->kernel(dispatch->executable(), dispatch->kernel());
    step.perToken = dispatch->work() ? dispatch->work()->per_token() : 0;
    step.fixed = dispatch->work() ? dispatch->work()->fixed() : 0;
    step.work = 0;
    for (const fb::Binding *binding : *dispatch->bindings()) {
      CUdeviceptr pointer = 0;
      switch (binding->kind()) {
      case fb::BindingKind::Arena:
        pointer = arena.get() + binding->offset();
        break;
      case fb::BindingKind::Weight:
        pointer = model->weights() +
                  artifact.weights()->Get(binding->index())->offset();
        break;
      case fb::BindingKind::KeyCache:
        pointer = caches.get() + keyOffsets[binding->index()];
        break;
      case fb::BindingKind::ValueCache:
        pointer = caches.get() + valueOffsets[binding->index()];
        break;
      case fb::BindingKind::TokenIds:
        pointer = tokenIds.get();
        break;
      case fb::BindingKind::Logits:
        pointer = logits.get();
        break;
      }
      addMemRef(step, pointer);
    }
    addMemRef(step, scalars.get());
    step.params.push_back(&step.work);
  }
  return Status();
}

Status CudaSession::launch(Prepared &prepared, int64_t tokens) {
  const Driver &driver = model->driver();
  if (profile && prepared.events.empty()) {
    prepared.events.resize(prepared.steps.size() + 1);
    for (cuda::CUevent &event : prepared.events)
      MOEC_RETURN_IF_ERROR(
          driver.check(driver.cuEventCreate(&event, 0), "cuEventCreate"));
    prepared.timings.describe(file->artifact(), *prepared.entry);
  }
  for (size_t i = 0; i < prepared.steps.size(); ++i) {
    Step &step = prepared.steps[i];
    if (profile)
      driver.cuEventRecord(prepared.events[i], stream);
    step.work = step.perToken * tokens + step.fixed;
    if (step.work == 0)
      continue;
    const CudaModel::Kernel &kernel = *step.kernel;
    int64_t blocks = (step.work + kernel.itemsPerBlock - 1) /
                     static_cast<int64_t>(kernel.itemsPerBlock);
    if (blocks > INT32_MAX)
      return makeStatus(MOEC_UNSUPPORTED,
                        "a dispatch of %lld work items needs %lld blocks of "
                        "%u items, more than a grid holds",
                        static_cast<long long>(step.work),
                        static_cast<long long>(blocks), kernel.itemsPerBlock);
    MOEC_RETURN_IF_ERROR(driver.check(
        driver.cuLaunchKernel(kernel.function, static_cast<unsigned>(blocks), 1,
                              1, kernel.blockThreads, 1, 1, 0, stream,
                              step.params.data(), nullptr),
        "cuLaunchKernel"));
    if (profile)
      ++prepared.timings.launches[i];
  }
  if (profile)
    driver.cuEventRecord(prepared.events.back(), stream);
  return Status();
}

void CudaSession::collectProfile(Prepared &prepared) {
  const Driver &driver = model->driver();
  for (size_t i = 0; i < prepared.steps.size(); ++i) {
    float ms = 0;
    if (driver.cuEventElapsedTime(&ms, prepared.events[i],
                                  prepared.events[i + 1]) == CUDA_SUCCESS)
      prepared.timings.milliseconds[i] += ms;
  }
}

void CudaSession::captureDecode() {
  const Driver &driver = model->driver();
  if (driver.cuStreamBeginCapture(
          stream, CU_STREAM_CAPTURE_MODE_THREAD_LOCAL) != CUDA_SUCCESS) {
    graphFailed = true;
    return;
  }
  Status launched = launch(decode, 1);
  CUgraph captured = nullptr;
  CUresult ended = driver.cuStreamEndCapture(stream, &captured);
  CUgraphExec exec = nullptr;
  if (!launched.ok() || ended != CUDA_SUCCESS || !captured ||
      driver.cuGraphInstantiateWithFlags(&exec, captured, 0) != CUDA_SUCCESS) {
    if (captured)
      driver.cuGraphDestroy(captured);
    graphFailed = true;
    return;
  }
  graph = captured;
  graphExec = exec;
}

Status CudaSession::run(bool isDecode, const int64_t *ids, int64_t tokens,
                        int64_t startPos, int64_t rows) {
  const Driver &driver = model->driver();
  MOEC_RETURN_IF_ERROR(model->makeCurrent());

  // The previous call synchronized the stream: the staging is free.
  auto *host = reinterpret_cast<int64_t *>(staging.data());
  host[0] = tokens;
  host[1] = startPos;
  host[2] = capacity;
  std::memcpy(host + 4, ids, sizeof(int64_t) * tokens);
  MOEC_RETURN_IF_ERROR(
      driver.check(driver.cuMemcpyHtoDAsync(scalars.get(), host,
                                            3 * sizeof(int64_t), stream),
                   "cuMemcpyHtoDAsync_v2"));
  MOEC_RETURN_IF_ERROR(
      driver.check(driver.cuMemcpyHtoDAsync(tokenIds.get(), host + 4,
                                            sizeof(int64_t) * tokens, stream),
                   "cuMemcpyHtoDAsync_v2"));

  if (isDecode && useGraphs && !graphFailed && !graphExec)
    captureDecode();
  if (isDecode && graphExec)
    MOEC_RETURN_IF_ERROR(
        driver.check(driver.cuGraphLaunch(graphExec, stream), "cuGraphLaunch"));
  else
    MOEC_RETURN_IF_ERROR(launch(isDecode ? decode : prefill, tokens));

  MOEC_RETURN_IF_ERROR(driver.check(
      driver.cuMemcpyDtoHAsync(logitsHost.data(), logits.get(),
                               sizeof(float) * rows * vocab, stream),
      "cuMemcpyDtoHAsync_v2"));
  MOEC_RETURN_IF_ERROR(
      driver.check(driver.cuStreamSynchronize(stream), "cuStreamSynchronize"));
  if (profile)
    collectProfile(isDecode ? decode : prefill);
  return Status();
}

CudaSession::~CudaSession() {
  if (!model)
    return;
  const Driver &driver = model->driver();
  if (!model->makeCurrent().ok())
    return;
  if (stream)
    driver.cuStreamSynchronize(stream);
  if (profile) {
    prefill.timings.print("prefill", "on the GPU");
    decode.timings.print("decode", "on the GPU");
    for (Prepared *prepared : {&prefill, &decode})
      for (cuda::CUevent event : prepared->events)
        driver.cuEventDestroy(event);
  }
  if (graphExec)
    driver.cuGraphExecDestroy(graphExec);
  if (graph)
    driver.cuGraphDestroy(graph);
  if (stream)
    driver.cuStreamDestroy(stream);
  // The buffers free themselves, with the context current.
}

} // namespace moec::runtime
