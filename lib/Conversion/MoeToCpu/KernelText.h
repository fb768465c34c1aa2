//===- KernelText.h - building kernels as MLIR text -------------*- C++ -*-===//
//
// Part of moec. The small helpers the CPU and GPU kernel generators share:
// kernel bodies are MLIR text with `$KEY` placeholders.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CONVERSION_MOETOCPU_KERNELTEXT_H
#define MOEC_CONVERSION_MOETOCPU_KERNELTEXT_H

#include "CpuKernels.h"

#include <string>
#include <utility>
#include <vector>

namespace moec::cpu::text {

/// The MLIR element type of a binding.
const char *eltName(Elt elt);

/// Replaces every `$KEY` of `text` (longest keys first, so $KV is not read
/// as $K followed by V).
std::string subst(std::string text,
                  std::vector<std::pair<std::string, std::string>> values);

inline std::string num(int64_t value) { return std::to_string(value); }

/// An f32 literal MLIR parses back exactly.
std::string f32Literal(double value);

/// Internal linkage for helper and body functions.
constexpr const char *kInternal =
    "attributes {llvm.linkage = #llvm.linkage<internal>}";

} // namespace moec::cpu::text

#endif // MOEC_CONVERSION_MOETOCPU_KERNELTEXT_H
