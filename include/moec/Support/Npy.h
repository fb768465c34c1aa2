//===- Npy.h - NumPy .npy reader --------------------------------*- C++ -*-===//
//
// Part of moec. Reads the NumPy .npy files that hold reference tensors (the
// logits transformers computed for the test fixtures). Only what those files
// use is accepted: format versions 1-3, C order, little-endian f4/i8/i4.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_SUPPORT_NPY_H
#define MOEC_SUPPORT_NPY_H

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <vector>

namespace moec {

enum class NpyDType { F32, I64, I32 };

/// The NumPy descr string of `dtype` ("<f4", "<i8", "<i4").
llvm::StringRef npyDTypeName(NpyDType dtype);

/// A whole array in host memory. Exactly one of the element vectors is
/// filled: the one matching `dtype`.
struct NpyArray {
  NpyDType dtype = NpyDType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  std::vector<float> f32;
  std::vector<int64_t> i64;
  std::vector<int32_t> i32;

  /// Product of `shape` (1 for a 0-d array).
  int64_t numElements() const;
};

/// Parses the contents of a .npy file. `name` only labels error messages.
llvm::Expected<NpyArray> parseNpy(llvm::StringRef contents,
                                  llvm::StringRef name);

/// Reads and parses the .npy file at `path`; errors start with the path.
llvm::Expected<NpyArray> readNpy(llvm::StringRef path);

} // namespace moec

#endif // MOEC_SUPPORT_NPY_H
