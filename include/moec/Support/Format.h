//===- Format.h - small text formatting helpers -----------------*- C++ -*-===//
//
// Part of moec. Shared by error messages and the inspect printers so that
// shapes and sizes read the same everywhere.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_SUPPORT_FORMAT_H
#define MOEC_SUPPORT_FORMAT_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/Support/FormatVariadic.h"

#include <cstdint>
#include <iterator>
#include <string>

namespace moec {

/// "[2, 3, 4]"
inline std::string formatShape(llvm::ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    text += (i ? ", " : "") + std::to_string(shape[i]);
  return text + "]";
}

/// "512 B", "1.50 KiB", "2.00 GiB"
inline std::string formatBytes(uint64_t bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  unsigned unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? llvm::formatv("{0} B", bytes).str()
                   : llvm::formatv("{0:f2} {1}", value, units[unit]).str();
}

/// "950", "1.5K", "2.30M", "671.03B"
inline std::string formatCount(int64_t count) {
  if (count >= 1000000000)
    return llvm::formatv("{0:f2}B", count / 1e9).str();
  if (count >= 1000000)
    return llvm::formatv("{0:f2}M", count / 1e6).str();
  if (count >= 1000)
    return llvm::formatv("{0:f1}K", count / 1e3).str();
  return std::to_string(count);
}

} // namespace moec

#endif // MOEC_SUPPORT_FORMAT_H
