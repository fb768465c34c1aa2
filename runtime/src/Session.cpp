//===- Session.cpp - one sequence: caches, arena, threads -----------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "Session.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <sys/mman.h>
#include <utility>

using namespace moec;
using namespace moec::runtime;

//===----------------------------------------------------------------------===//
// PageBuffer
//===----------------------------------------------------------------------===//

PageBuffer::~PageBuffer() {
  if (bytes)
    ::munmap(bytes, length);
}

PageBuffer::PageBuffer(PageBuffer &&other) noexcept
    : bytes(std::exchange(other.bytes, nullptr)),
      length(std::exchange(other.length, 0)) {}

PageBuffer &PageBuffer::operator=(PageBuffer &&other) noexcept {
  if (this != &other) {
    if (bytes)
      ::munmap(bytes, length);
    bytes = std::exchange(other.bytes, nullptr);
    length = std::exchange(other.length, 0);
  }
  return *this;
}

bool PageBuffer::allocate(uint64_t size) {
  if (size == 0)
    return true;
  void *mapping = ::mmap(nullptr, size, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapping == MAP_FAILED)
    return false;
  bytes = static_cast<uint8_t *>(mapping);
  length = size;
  return true;
}

//===----------------------------------------------------------------------===//
// Session creation
//===----------------------------------------------------------------------===//

namespace {

/// Rows of logits an entry point writes for T tokens.
int64_t logitsRows(const fb::EntryPoint &entry, int64_t tokens) {
  return entry.all_logits() ? tokens : 1;
}

} // namespace

Status moec_session::create(const moec_model &model, int64_t maxSeqLen,
                            int threads, std::unique_ptr<moec_session> &out) {
  out.reset();
  const fb::ModelInfo &info = model.info();
  if (maxSeqLen < 0 || maxSeqLen > info.max_seq_len())
    return makeStatus(MOEC_INVALID_ARGUMENT,
                      "moec_session_create: max_seq_len %lld exceeds the "
                      "artifact's KV-cache capacity %lld (recompile with a "
                      "larger --max-seq-len)",
                      static_cast<long long>(maxSeqLen),
                      static_cast<long long>(info.max_seq_len()));
  if (threads < 0 || threads > 4096)
    return makeStatus(MOEC_INVALID_ARGUMENT,
                      "moec_session_create: threads %d outside [0, 4096]",
                      threads);
  if (threads == 0)
    threads = std::max(1u, std::thread::hardware_concurrency());

  auto session = std::make_unique<moec_session>();
  session->model = &model;
  session->capacity = maxSeqLen ? maxSeqLen : info.max_seq_len();
  session->profile = moec::runtime::profilingRequested();
  int64_t rows =
      std::max(logitsRows(*model.prefill, model.prefill->max_tokens()),
               logitsRows(*model.decode, 1));
  uint64_t logitsBytes =
      static_cast<uint64_t>(rows) * info.vocab_size() * sizeof(float);

  if (model.cuda) {
    // Everything lives on the device; `threads` does not apply.
    MOEC_RETURN_IF_ERROR(CudaSession::create(*model.cuda, *model.file,
                                             *model.prefill, *model.decode,
                                             session->capacity, logitsBytes,
                                             session->cuda)
                             .prefix("moec_session_create"));
    session->hostLogits = session->cuda->hostLogits();
    session->prefill.entry = model.prefill;
    session->decode.entry = model.decode;
    out = std::move(session);
    return Status();
  }

  auto outOfMemory = [](const char *what, uint64_t bytes) {
    return makeStatus(MOEC_OUT_OF_MEMORY,
                      "moec_session_create: cannot allocate %llu bytes for %s",
                      static_cast<unsigned long long>(bytes), what);
  };

  // KV caches: `capacity` rows each.
  const fb::Artifact &artifact = model.file->artifact();
  uint32_t numCaches = artifact.kv_caches() ? artifact.kv_caches()->size() : 0;
  session->keyCaches.resize(numCaches);
  session->valueCaches.resize(numCaches);
  for (uint32_t i = 0; i < numCaches; ++i) {
    const fb::KvCache &cache = *artifact.kv_caches()->Get(i);
    uint64_t keyBytes =
        cacheBytes(cache.key_shape(), cache.dtype(), session->capacity);
    uint64_t valueBytes =
        cacheBytes(cache.value_shape(), cache.dtype(), session->capacity);
    if (!session->keyCaches[i].allocate(keyBytes))
      return outOfMemory("a key cache", keyBytes);
    if (!session->valueCaches[i].allocate(valueBytes))
      return outOfMemory("a value cache", valueBytes);
  }

  // One arena serves both entry points (they never run at once) and one
  // logits buffer holds the largest call's rows.
  uint64_t arenaBytes =
      std::max(model.prefill->arena_bytes(), model.decode->arena_bytes());
  if (!session->arena.allocate(arenaBytes))
    return outOfMemory("the activation arena", arenaBytes);
  if (!session->logits.allocate(logitsBytes))
    return outOfMemory("the logits", logitsBytes);
  session->hostLogits = reinterpret_cast<float *>(session->logits.data());

  MOEC_RETURN_IF_ERROR(session->prepare(*model.prefill, session->prefill));
  MOEC_RETURN_IF_ERROR(session->prepare(*model.decode, session->decode));

  std::string error;
  if (!session->pool.start(threads, error))
    return makeStatus(MOEC_OUT_OF_MEMORY,
                      "moec_session_create: cannot start %d threads: %s",
                      threads, error.c_str());
  out = std::move(session);
  return Status();
}

Status moec_session::prepare(const fb::EntryPoint &entry,
                             PreparedEntry &prepared) {
  prepared.entry = &entry;
  const fb::Artifact &artifact = model->file->artifact();
  for (const fb::Dispatch *dispatch : *entry.dispatches()) {
    PreparedEntry::Step step;
    step.kernel =
        model->executables[dispatch->executable()]->kernel(dispatch->kernel());
    step.firstBinding = static_cast<uint32_t>(prepared.pointers.size());
    step.perToken = dispatch->work() ? dispatch->work()->per_token() : 0;
    step.fixed = dispatch->work() ? dispatch->work()->fixed() : 0;
    step.grain = dispatch->grain();
    prepared.steps.push_back(step);
    for (const fb::Binding *binding : *dispatch->bindings()) {
      void *pointer = nullptr;
      switch (binding->kind()) {
      case fb::BindingKind::Arena:
        pointer = arena.data() + binding->offset();
        break;
      case fb::BindingKind::Weight: {
        const fb::Weight &weight = *artifact.weights()->Get(binding->index());
        pointer = const_cast<uint8_t *>(model->file->weightData(weight));
        break;
      }
      case fb::BindingKind::KeyCache:
        pointer = keyCaches[binding->index()].data();
        break;
      case fb::BindingKind::ValueCache:
        pointer = valueCaches[binding->index()].data();
        break;
      case fb::BindingKind::TokenIds:
        prepared.tokenIdSlots.push_back(prepared.pointers.size());
        break;
      case fb::BindingKind::Logits:
        pointer = logits.data();
        break;
      }
      prepared.pointers.push_back(pointer);
    }
  }
  return Status();
}

//===----------------------------------------------------------------------===//
// Calls
//===----------------------------------------------------------------------===//

Status moec_session::run(PreparedEntry &prepared, const int64_t *ids,
                         int64_t tokens, int64_t &rows) {
  rows = logitsRows(*prepared.entry, tokens);
  if (cuda)
    return cuda->run(&prepared == &decode, ids, tokens, position, rows);
  const int64_t scalars[] = {tokens, position, capacity};
  for (uint32_t slot : prepared.tokenIdSlots)
    prepared.pointers[slot] = const_cast<int64_t *>(ids);
  if (!profile) {
    for (const PreparedEntry::Step &step : prepared.steps)
      pool.run(step.kernel, prepared.pointers.data() + step.firstBinding,
               scalars, step.perToken * tokens + step.fixed, step.grain);
    return Status();
  }
  KernelProfile &timings = prepared.timings;
  if (!timings.described())
    timings.describe(model->file->artifact(), *prepared.entry);
  for (size_t i = 0; i < prepared.steps.size(); ++i) {
    const PreparedEntry::Step &step = prepared.steps[i];
    auto start = std::chrono::steady_clock::now();
    pool.run(step.kernel, prepared.pointers.data() + step.firstBinding, scalars,
             step.perToken * tokens + step.fixed, step.grain);
    timings.milliseconds[i] += std::chrono::duration<double, std::milli>(
                                   std::chrono::steady_clock::now() - start)
                                   .count();
    ++timings.launches[i];
  }
  return Status();
}

moec_session::~moec_session() {
  if (!profile)
    return;
  prefill.timings.print("prefill", "on the CPU");
  decode.timings.print("decode", "on the CPU");
}

Status moec_session::checkTokens(const char *call, const int64_t *ids,
                                 size_t n) const {
  int64_t vocab = model->vocabSize();
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= vocab)
      return makeStatus(MOEC_INVALID_ARGUMENT,
                        "%s: token id %lld at index %zu is outside the "
                        "vocabulary [0, %lld)",
                        call, static_cast<long long>(ids[i]), i,
                        static_cast<long long>(vocab));
  if (n > static_cast<uint64_t>(capacity - position))
    return makeStatus(MOEC_RESOURCE_EXHAUSTED,
                      "%s: %zu token(s) at position %lld exceed the KV-cache "
                      "capacity %lld (reset the session or create it with a "
                      "larger max_seq_len)",
                      call, n, static_cast<long long>(position),
                      static_cast<long long>(capacity));
  return Status();
}

Status moec_session::runPrefill(const int64_t *ids, size_t n,
                                float *outLogits) {
  if (!ids || n == 0)
    return makeStatus(MOEC_INVALID_ARGUMENT,
                      "moec_prefill: needs at least one token id");
  MOEC_RETURN_IF_ERROR(checkTokens("moec_prefill", ids, n));
  const fb::EntryPoint &entry = *prefill.entry;
  if (outLogits && !entry.all_logits())
    return makeStatus(MOEC_UNSUPPORTED,
                      "moec_prefill: this artifact's prefill computes only "
                      "the last position's logits (out_logits must be NULL)");

  // Prompts longer than the prefill tile run as consecutive chunks; each
  // chunk sees the previous ones through the KV caches.
  const int64_t vocab = model->vocabSize();
  const int64_t tile = entry.max_tokens();
  const float *rows = hostLogits;
  int64_t produced = 0;
  for (int64_t done = 0, total = static_cast<int64_t>(n); done < total;) {
    int64_t chunk = std::min(tile, total - done);
    lastLogits = nullptr; // on failure, the logits are not a position's
    MOEC_RETURN_IF_ERROR(run(prefill, ids + done, chunk, produced));
    if (outLogits)
      std::memcpy(outLogits + done * vocab, rows,
                  sizeof(float) * chunk * vocab);
    position += chunk;
    done += chunk;
  }
  lastLogits = rows + (produced - 1) * vocab;
  return Status();
}

Status moec_session::runDecode(int64_t id, float *outLogits) {
  MOEC_RETURN_IF_ERROR(checkTokens("moec_decode", &id, 1));
  // `id` lives on this frame for the duration of the call: kernels read it
  // through the TokenIds binding before run() returns.
  int64_t produced = 0;
  lastLogits = nullptr; // on failure, the logits are not a position's
  MOEC_RETURN_IF_ERROR(run(decode, &id, 1, produced));
  const int64_t vocab = model->vocabSize();
  lastLogits = hostLogits + (produced - 1) * vocab;
  if (outLogits)
    std::memcpy(outLogits, lastLogits, sizeof(float) * vocab);
  position += 1;
  return Status();
}
