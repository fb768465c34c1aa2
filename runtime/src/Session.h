//===- Session.h - one sequence: caches, arena, threads ---------*- C++ -*-===//
//
// Part of moec. moec_session_t behind the C API. Everything a call needs is
// allocated at creation: binding pointer tables are resolved once per entry
// point, so a prefill or decode call only patches the token-id and logits
// pointers and runs the dispatches.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_SESSION_H
#define MOEC_RUNTIME_SESSION_H

#include "Model.h"
#include "Profile.h"
#include "ThreadPool.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace moec::runtime {

/// Zero-initialized, page-aligned memory from an anonymous mapping (KV
/// caches, arena, logits): no allocator involvement, pages are committed
/// on first touch.
class PageBuffer {
public:
  PageBuffer() = default;
  ~PageBuffer();
  PageBuffer(PageBuffer &&other) noexcept;
  PageBuffer &operator=(PageBuffer &&other) noexcept;

  /// Maps `size` bytes (none for 0); false when the mapping fails.
  bool allocate(uint64_t size);
  uint8_t *data() const { return bytes; }
  uint64_t size() const { return length; }

private:
  uint8_t *bytes = nullptr;
  uint64_t length = 0;
};

/// An entry point with its bindings resolved to this session's buffers.
struct PreparedEntry {
  struct Step {
    CpuKernel kernel;
    uint32_t firstBinding; // into `pointers`
    int64_t perToken, fixed, grain;
  };
  const fb::EntryPoint *entry = nullptr;
  std::vector<void *> pointers;
  std::vector<Step> steps;
  // Slots of `pointers` that receive the call's token ids.
  std::vector<uint32_t> tokenIdSlots;
  // MOEC_PROFILE=1: wall time of each step, summed over calls.
  KernelProfile timings;
};

} // namespace moec::runtime

struct moec_session {
  const moec_model *model = nullptr;
  int64_t capacity = 0;
  int64_t position = 0;
  moec::runtime::ThreadPool pool;
  moec::runtime::PageBuffer arena, logits;
  std::vector<moec::runtime::PageBuffer> keyCaches, valueCaches;
  moec::runtime::PreparedEntry prefill, decode;
  /// The device side of a session of a cuda model (then the CPU arena, KV
  /// caches and thread pool are not allocated), or null.
  std::unique_ptr<moec::runtime::CudaSession> cuda;
  /// The logits of the last call: `logits` (cpu) or the cuda session's
  /// page-locked copy.
  float *hostLogits = nullptr;
  /// The last processed position's logits row in `hostLogits`, or null.
  const float *lastLogits = nullptr;

  static moec::runtime::Status create(const moec_model &model,
                                      int64_t maxSeqLen, int threads,
                                      std::unique_ptr<moec_session> &out);

  moec::runtime::Status runPrefill(const int64_t *ids, size_t n,
                                   float *outLogits);
  moec::runtime::Status runDecode(int64_t id, float *outLogits);
  /// Whether MOEC_PROFILE=1 asked for per-kernel timings (CPU sessions;
  /// a cuda session keeps its own).
  bool profile = false;

  ~moec_session();

  void reset() {
    position = 0;
    lastLogits = nullptr;
  }

private:
  moec::runtime::Status prepare(const moec::fb::EntryPoint &entry,
                                moec::runtime::PreparedEntry &prepared);
  moec::runtime::Status checkTokens(const char *call, const int64_t *ids,
                                    size_t n) const;
  /// Runs `prepared` on T tokens at the current position; sets `rows` to
  /// the rows of logits it produced (T or 1) in `hostLogits`. Only a cuda
  /// session can fail.
  moec::runtime::Status run(moec::runtime::PreparedEntry &prepared,
                            const int64_t *ids, int64_t tokens, int64_t &rows);
};

#endif // MOEC_RUNTIME_SESSION_H
