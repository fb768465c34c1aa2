//===- Fnv.h - FNV-1a 64-bit checksum ---------------------------*- C++ -*-===//
//
// Part of moec. The checksum of every weight and executable blob in a .moec
// artifact (docs/artifact.md). Header-only and free of LLVM so that the
// compiler, the runtime and the tools compute exactly the same function.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_SUPPORT_FNV_H
#define MOEC_SUPPORT_FNV_H

#include <cstddef>
#include <cstdint>

namespace moec {

/// FNV-1a, 64 bits: start from the offset basis, then for every byte
/// `hash = (hash ^ byte) * prime`. Incremental: feed the bytes in any number
/// of update() calls and read value() at the end.
class Fnv1a64 {
public:
  static constexpr uint64_t kOffsetBasis = 0xcbf29ce484222325ULL;
  static constexpr uint64_t kPrime = 0x00000100000001b3ULL;

  void update(const void *data, size_t size) {
    const auto *bytes = static_cast<const unsigned char *>(data);
    uint64_t hash = state;
    for (size_t i = 0; i < size; ++i)
      hash = (hash ^ bytes[i]) * kPrime;
    state = hash;
  }

  uint64_t value() const { return state; }

private:
  uint64_t state = kOffsetBasis;
};

/// The FNV-1a 64 of `size` bytes at `data`.
inline uint64_t fnv1a64(const void *data, size_t size) {
  Fnv1a64 hash;
  hash.update(data, size);
  return hash.value();
}

} // namespace moec

#endif // MOEC_SUPPORT_FNV_H
