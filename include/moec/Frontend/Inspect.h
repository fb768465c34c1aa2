//===- Inspect.h - human-readable description of inputs ---------*- C++ -*-===//
//
// Part of moec. What `moec inspect` prints.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_FRONTEND_INSPECT_H
#define MOEC_FRONTEND_INSPECT_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

namespace moec {

/// Describes `path`: for a checkpoint directory, the normalized model config,
/// the weight table (name, dtype, shape, bytes, shard) and totals by dtype.
/// Errors name the path and what is wrong with it.
llvm::Error inspectPath(llvm::StringRef path, llvm::raw_ostream &os);

} // namespace moec

#endif // MOEC_FRONTEND_INSPECT_H
