//===- Float.h - narrow float formats to and from f32 -----------*- C++ -*-===//
//
// Part of moec. Bit-exact conversions between the checkpoint element types
// (bf16, f16, float8_e4m3fn) and f32. Header-only so that tools and tests can
// use them without linking anything; no LLVM dependency either.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_SUPPORT_FLOAT_H
#define MOEC_SUPPORT_FLOAT_H

#include <bit>
#include <cstdint>

namespace moec {

/// bf16 is the high half of an f32, so widening is exact.
inline float bf16ToF32(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

/// IEEE binary16 -> f32, exact for every input: subnormals become normal
/// f32 values, infinities stay infinite and NaN payloads are kept.
inline float f16ToF32(uint16_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x8000u) << 16;
  uint32_t exponent = (bits >> 10) & 0x1fu;
  uint32_t mantissa = bits & 0x3ffu;
  if (exponent == 0x1f) // inf / NaN
    return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) // normal: rebias 15 -> 127
    return std::bit_cast<float>(sign | ((exponent + 112) << 23) |
                                (mantissa << 13));
  if (mantissa == 0)
    return std::bit_cast<float>(sign);
  // Subnormal: mantissa * 2^-24 is exactly representable in f32.
  float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
}

/// float8_e4m3fn (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no
/// infinities, S.1111.111 is NaN, exponent 0 is subnormal) -> f32, exact.
inline float f8e4m3fnToF32(uint8_t bits) {
  uint32_t sign = static_cast<uint32_t>(bits & 0x80u) << 24;
  uint32_t exponent = (bits >> 3) & 0xfu;
  uint32_t mantissa = bits & 0x7u;
  if (exponent == 0xf && mantissa == 0x7)
    return std::bit_cast<float>(sign | 0x7fc00000u);
  if (exponent != 0) // normal: rebias 7 -> 127
    return std::bit_cast<float>(sign | ((exponent + 120) << 23) |
                                (mantissa << 20));
  // Zero or subnormal: mantissa * 2^-9, exact in f32.
  float magnitude = static_cast<float>(mantissa) * 0x1p-9f;
  return std::bit_cast<float>(sign | std::bit_cast<uint32_t>(magnitude));
}

/// f32 -> bf16 with round-to-nearest-even; NaN stays a (quiet) NaN.
inline uint16_t f32ToBf16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  if ((bits & 0x7fffffffu) > 0x7f800000u)
    return static_cast<uint16_t>((bits >> 16) | 0x40u);
  uint32_t roundingBias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + roundingBias) >> 16);
}

/// f32 -> IEEE binary16 with round-to-nearest-even, overflow to infinity,
/// gradual underflow to subnormals; NaN stays a (quiet) NaN.
inline uint16_t f32ToF16(float value) {
  uint32_t bits = std::bit_cast<uint32_t>(value);
  uint16_t sign = static_cast<uint16_t>((bits >> 16) & 0x8000u);
  uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) // NaN: keep the top payload bits, set quiet
    return sign | 0x7e00u | static_cast<uint16_t>((magnitude >> 13) & 0x1ffu);
  if (magnitude >= 0x477ff000u) // >= 65520 rounds to infinity
    return sign | 0x7c00u;
  if (magnitude < 0x38800000u) { // below 2^-14: subnormal or zero in f16
    if (magnitude < 0x33000000u) // below 2^-25: rounds to zero
      return sign;
    // Scale so that the f16 subnormal quantum 2^-24 becomes 1, then let the
    // FPU round to nearest even.
    float scaled = std::bit_cast<float>(magnitude) * 0x1p24f;
    float rounded = scaled + 0x1p23f - 0x1p23f;
    return sign | static_cast<uint16_t>(rounded);
  }
  uint32_t roundingBias = 0xfffu + ((magnitude >> 13) & 1u);
  magnitude += roundingBias;
  return sign | static_cast<uint16_t>((magnitude - 0x38000000u) >> 13);
}

} // namespace moec

#endif // MOEC_SUPPORT_FLOAT_H
