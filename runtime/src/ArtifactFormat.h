//===- ArtifactFormat.h - constants of the .moec layout ---------*- C++ -*-===//
//
// Part of moec. What the writer (lib/Target) and the reader (runtime/) must
// agree on beyond the FlatBuffers schema: magic, version, alignments, dtype
// sizes. docs/artifact.md describes each of them.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_ARTIFACTFORMAT_H
#define MOEC_RUNTIME_ARTIFACTFORMAT_H

#include "moec/schema/moec_artifact_generated.h"

#include <cstdint>

namespace moec::artifact {

/// The first 8 bytes of every artifact.
inline constexpr char kMagic[8] = {'M', 'O', 'E', 'C', 'A', 'R', 'T', '\0'};
inline constexpr uint16_t kVersionMajor = 1;
inline constexpr uint16_t kVersionMinor = 1;

inline constexpr uint64_t kHeaderSize = 64;
/// Start of the FlatBuffer: right after the header (64 keeps it aligned for
/// every FlatBuffers scalar once the file is mmapped).
inline constexpr uint64_t kTableOffset = kHeaderSize;
/// FlatBuffers offsets are 32-bit: the table must stay below 2 GiB.
inline constexpr uint64_t kMaxTableSize = (uint64_t{1} << 31) - 1;
/// Weight and blob segments start on page boundaries.
inline constexpr uint64_t kSegmentAlignment = 4096;
/// Every weight and blob starts 64-byte aligned inside its segment ...
inline constexpr uint64_t kItemAlignment = 64;
/// ... and weights of at least this size start page-aligned.
inline constexpr uint64_t kPageAlignThreshold = 64 * 1024;

static_assert(sizeof(fb::FileHeader) == kHeaderSize);

/// Bytes per element of `dtype`; 0 for a value outside the enum.
inline uint64_t dtypeSize(fb::DType dtype) {
  switch (dtype) {
  case fb::DType::F32:
  case fb::DType::I32:
    return 4;
  case fb::DType::F16:
  case fb::DType::BF16:
    return 2;
  case fb::DType::F8_E4M3:
    return 1;
  case fb::DType::I64:
    return 8;
  case fb::DType::Q8_0:
    return 0; // not a whole number of bytes: see tensorBytes
  }
  return 0;
}

/// Elements per Q8_0 block, and the block's bytes (f16 scale + 32 int8).
inline constexpr uint64_t kQ8BlockElements = 32;
inline constexpr uint64_t kQ8BlockBytes = 34;

/// Whether `dtype` is a value of the enum.
inline bool knownDType(fb::DType dtype) {
  return dtypeSize(dtype) != 0 || dtype == fb::DType::Q8_0;
}

/// Bytes of `elements` values of `dtype`; false where that is no whole
/// number of Q8_0 blocks or the dtype is unknown.
inline bool tensorBytes(fb::DType dtype, uint64_t elements, uint64_t &bytes) {
  if (dtype == fb::DType::Q8_0) {
    if (elements % kQ8BlockElements != 0)
      return false;
    bytes = elements / kQ8BlockElements * kQ8BlockBytes;
    return true;
  }
  bytes = dtypeSize(dtype) * elements;
  return dtypeSize(dtype) != 0;
}

/// Lower-case dtype name as in safetensors ("f32", "bf16", ...);
/// "invalid" for a value outside the enum.
inline const char *dtypeName(fb::DType dtype) {
  switch (dtype) {
  case fb::DType::F32:
    return "f32";
  case fb::DType::F16:
    return "f16";
  case fb::DType::BF16:
    return "bf16";
  case fb::DType::F8_E4M3:
    return "f8e4m3";
  case fb::DType::I32:
    return "i32";
  case fb::DType::I64:
    return "i64";
  case fb::DType::Q8_0:
    return "q8_0";
  }
  return "invalid";
}

/// "arena", "weight", ...; "invalid" for a value outside the enum.
inline const char *bindingKindName(fb::BindingKind kind) {
  switch (kind) {
  case fb::BindingKind::Arena:
    return "arena";
  case fb::BindingKind::Weight:
    return "weight";
  case fb::BindingKind::KeyCache:
    return "key-cache";
  case fb::BindingKind::ValueCache:
    return "value-cache";
  case fb::BindingKind::TokenIds:
    return "token-ids";
  case fb::BindingKind::Logits:
    return "logits";
  }
  return "invalid";
}

/// `value` rounded up to a multiple of the power of two `alignment`.
inline constexpr uint64_t alignTo(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) & ~(alignment - 1);
}

/// Alignment of a weight of `size` bytes inside the weight segment.
inline constexpr uint64_t weightAlignment(uint64_t size) {
  return size >= kPageAlignThreshold ? kSegmentAlignment : kItemAlignment;
}

} // namespace moec::artifact

#endif // MOEC_RUNTIME_ARTIFACTFORMAT_H
