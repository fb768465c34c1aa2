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

#include <cstdint>

namespace moec {

class ModelConfig;
class SafeTensorsCheckpoint;

/// Parameter counts of one model, from the checkpoint's tensor shapes.
struct ParameterCounts {
  int64_t total = 0;  // every weight the model uses (MTP layers excluded)
  int64_t active = 0; // weights one token touches: routed experts count
                      // top_k of num_experts
};

/// Prints a per-layer table (attention kind, feed-forward kind, parameters,
/// active parameters) and the totals; returns the totals.
ParameterCounts printLayerSummary(const ModelConfig &config,
                                  const SafeTensorsCheckpoint &checkpoint,
                                  llvm::raw_ostream &os);

/// Describes `path`: for a checkpoint directory, the normalized model config,
/// the weight table (name, dtype, shape, bytes, shard) and totals by dtype.
/// Errors name the path and what is wrong with it.
/// For a .moec artifact, everything it holds (`verifyChecksums`: also check
/// every weight's and kernel blob's checksum).
llvm::Error inspectPath(llvm::StringRef path, llvm::raw_ostream &os,
                        bool verifyChecksums = false);

} // namespace moec

#endif // MOEC_FRONTEND_INSPECT_H
