//===- KernelText.cpp - building kernels as MLIR text ---------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "KernelText.h"

#include "llvm/ADT/StringExtras.h"

#include <algorithm>
#include <cstring>

namespace moec::cpu::text {

const char *eltName(Elt elt) {
  switch (elt) {
  case Elt::F32:
    return "f32";
  case Elt::BF16:
    return "bf16";
  case Elt::Q8:
    return "i8";
  case Elt::I64:
    return "i64";
  case Elt::I32:
    return "i32";
  }
  return "f32";
}

std::string subst(std::string text,
                  std::vector<std::pair<std::string, std::string>> values) {
  std::sort(values.begin(), values.end(), [](const auto &a, const auto &b) {
    return a.first.size() > b.first.size();
  });
  for (const auto &[key, value] : values) {
    std::string pattern = "$" + key;
    for (size_t at = text.find(pattern); at != std::string::npos;
         at = text.find(pattern, at + value.size()))
      text.replace(at, pattern.size(), value);
  }
  return text;
}

std::string f32Literal(double value) {
  float f = static_cast<float>(value);
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof(bits));
  std::string hex = llvm::utohexstr(bits, /*LowerCase=*/false);
  return "0x" + std::string(8 - hex.size(), '0') + hex;
}

} // namespace moec::cpu::text
