//===- FloatTest.cpp - bf16/f16/f8e4m3fn conversions ----------------------===//
//
// Part of moec. Every narrow value is checked against an independent
// reference built from the format definition with std::ldexp.
//
//===----------------------------------------------------------------------===//

#include "moec/Support/Float.h"

#include "gtest/gtest.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

using namespace moec;

namespace {

uint32_t bitsOf(float value) { return std::bit_cast<uint32_t>(value); }

// float8_e4m3fn from its definition: bias 7, subnormals at exponent 0, only
// S.1111.111 is NaN.
float f8Reference(unsigned bits, bool &isNan) {
  unsigned sign = bits >> 7, exponent = (bits >> 3) & 0xf, mantissa = bits & 7;
  isNan = exponent == 0xf && mantissa == 7;
  double magnitude = exponent == 0
                         ? std::ldexp(static_cast<double>(mantissa), -9)
                         : std::ldexp(8.0 + mantissa, exponent - 10);
  return static_cast<float>(sign ? -magnitude : magnitude);
}

// binary16 from its definition: bias 15, subnormals at exponent 0.
double f16Reference(unsigned bits) {
  unsigned sign = bits >> 15, exponent = (bits >> 10) & 0x1f,
           mantissa = bits & 0x3ff;
  double magnitude;
  if (exponent == 0x1f)
    magnitude = mantissa ? NAN : INFINITY;
  else if (exponent == 0)
    magnitude = std::ldexp(static_cast<double>(mantissa), -24);
  else
    magnitude = std::ldexp(1024.0 + mantissa, exponent - 25);
  return sign ? -magnitude : magnitude;
}

} // namespace

TEST(Float, F8E4M3FnAllValuesMatchTheFormula) {
  for (unsigned bits = 0; bits < 256; ++bits) {
    bool isNan;
    float expected = f8Reference(bits, isNan);
    float actual = f8e4m3fnToF32(static_cast<uint8_t>(bits));
    if (isNan) {
      EXPECT_TRUE(std::isnan(actual)) << "bits 0x" << std::hex << bits;
      EXPECT_EQ(std::signbit(actual), (bits & 0x80) != 0);
      continue;
    }
    // Bitwise, so that -0 and +0 are told apart.
    EXPECT_EQ(bitsOf(actual), bitsOf(expected))
        << "bits 0x" << std::hex << bits;
  }
}

TEST(Float, F8E4M3FnLandmarks) {
  EXPECT_EQ(f8e4m3fnToF32(0x38), 1.0f);
  EXPECT_EQ(f8e4m3fnToF32(0xb8), -1.0f);
  EXPECT_EQ(f8e4m3fnToF32(0x7e), 448.0f); // largest finite
  EXPECT_EQ(f8e4m3fnToF32(0xfe), -448.0f);
  EXPECT_EQ(f8e4m3fnToF32(0x08), 0x1p-6f);   // smallest normal
  EXPECT_EQ(f8e4m3fnToF32(0x01), 0x1p-9f);   // smallest subnormal
  EXPECT_EQ(f8e4m3fnToF32(0x07), 0x1.cp-7f); // largest subnormal: 7 * 2^-9
  EXPECT_EQ(bitsOf(f8e4m3fnToF32(0x80)), 0x80000000u); // -0
  EXPECT_TRUE(std::isnan(f8e4m3fnToF32(0x7f)));
  EXPECT_TRUE(std::isnan(f8e4m3fnToF32(0xff)));
  // 0x78 (exponent 15, mantissa 0) is a number, not infinity: no infs.
  EXPECT_EQ(f8e4m3fnToF32(0x78), 256.0f);
}

TEST(Float, F16AllValuesMatchLdexpReference) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    float actual = f16ToF32(static_cast<uint16_t>(bits));
    double expected = f16Reference(bits);
    if (std::isnan(expected)) {
      ASSERT_TRUE(std::isnan(actual)) << "bits 0x" << std::hex << bits;
      // The payload survives in the top mantissa bits.
      EXPECT_EQ((bitsOf(actual) >> 13) & 0x3ff, bits & 0x3ff);
      EXPECT_EQ(std::signbit(actual), (bits & 0x8000) != 0);
      continue;
    }
    ASSERT_EQ(bitsOf(actual), bitsOf(static_cast<float>(expected)))
        << "bits 0x" << std::hex << bits;
  }
}

TEST(Float, F16RoundTripsThroughF32) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    uint16_t back = f32ToF16(f16ToF32(static_cast<uint16_t>(bits)));
    if (std::isnan(f16Reference(bits)))
      EXPECT_TRUE(std::isnan(f16ToF32(back)));
    else
      ASSERT_EQ(back, bits) << "bits 0x" << std::hex << bits;
  }
}

TEST(Float, F32ToF16RoundsToNearestEven) {
  // All finite non-negative f16 values in increasing order.
  std::vector<double> values;
  for (unsigned bits = 0; bits < 0x7c00; ++bits)
    values.push_back(f16Reference(bits));
  auto reference = [&](float input) -> uint16_t {
    double x = std::fabs(static_cast<double>(input));
    uint16_t sign = std::signbit(input) ? 0x8000 : 0;
    // Beyond the max (65504) by half an ulp (16) or more: infinity.
    if (x >= 65520.0)
      return sign | 0x7c00;
    auto above = std::lower_bound(values.begin(), values.end(), x);
    if (above == values.end()) // (65504, 65520) rounds down to the max
      return sign | 0x7bff;
    if (*above == x)
      return sign | static_cast<uint16_t>(above - values.begin());
    auto below = above - 1;
    double up = *above - x, down = x - *below;
    size_t pick = (above - values.begin());
    if (down < up || (down == up && (pick & 1)))
      pick -= 1;
    return sign | static_cast<uint16_t>(pick);
  };
  // A stride through all f32 bit patterns (the prime keeps it irregular),
  // plus the halfway points that decide ties.
  for (uint64_t bits = 0; bits < (1ull << 32); bits += 4099) {
    float input = std::bit_cast<float>(static_cast<uint32_t>(bits));
    if (std::isnan(input))
      continue;
    ASSERT_EQ(f32ToF16(input), reference(input))
        << "input bits 0x" << std::hex << bits;
  }
  EXPECT_EQ(f32ToF16(1.0f + 0x1p-11f), 0x3c00);   // tie -> even (down)
  EXPECT_EQ(f32ToF16(1.0f + 0x1.8p-10f), 0x3c02); // tie -> even (up)
  EXPECT_EQ(f32ToF16(65504.0f), 0x7bff);
  EXPECT_EQ(f32ToF16(65519.99f), 0x7bff);
  EXPECT_EQ(f32ToF16(65520.0f), 0x7c00); // tie -> even (infinity)
  EXPECT_EQ(f32ToF16(0x1p-24f), 0x0001); // smallest subnormal
  EXPECT_EQ(f32ToF16(0x1p-25f), 0x0000); // tie -> even zero
  EXPECT_EQ(f32ToF16(0x1.8p-25f), 0x0001);
  EXPECT_EQ(f32ToF16(0x1p-14f - 0x1p-25f), 0x0400); // tie -> min normal
  EXPECT_EQ(f32ToF16(-INFINITY), 0xfc00);
  EXPECT_TRUE(std::isnan(f16ToF32(f32ToF16(NAN))));
}

TEST(Float, Bf16IsTheHighHalf) {
  for (unsigned bits = 0; bits < 65536; ++bits) {
    float value = bf16ToF32(static_cast<uint16_t>(bits));
    ASSERT_EQ(bitsOf(value), bits << 16);
    if (!std::isnan(value))
      ASSERT_EQ(f32ToBf16(value), bits);
    else
      ASSERT_TRUE(std::isnan(bf16ToF32(f32ToBf16(value))));
  }
}

TEST(Float, F32ToBf16RoundsToNearestEven) {
  EXPECT_EQ(f32ToBf16(1.0f + 0x1p-8f), 0x3f80);   // tie -> even (down)
  EXPECT_EQ(f32ToBf16(1.0f + 0x1.8p-7f), 0x3f82); // tie -> even (up)
  EXPECT_EQ(f32ToBf16(1.0f + 0x1.2p-8f), 0x3f81); // above the tie
  EXPECT_EQ(f32ToBf16(3.4028235e38f), 0x7f80);    // FLT_MAX rounds to inf
  EXPECT_EQ(f32ToBf16(-2.0f), 0xc000);
  // A NaN whose payload sits in the discarded half stays NaN.
  float lowPayloadNan = std::bit_cast<float>(0x7f800001u);
  EXPECT_TRUE(std::isnan(bf16ToF32(f32ToBf16(lowPayloadNan))));
}
