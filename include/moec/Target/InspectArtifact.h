//===- InspectArtifact.h - `moec inspect` for .moec files -------*- C++ -*-===//
//
// Part of moec. A readable dump of an artifact, read through the runtime's
// verifier (runtime/src/ArtifactFile.h), so that what is printed is exactly
// what moec_model_load would accept.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TARGET_INSPECTARTIFACT_H
#define MOEC_TARGET_INSPECTARTIFACT_H

#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

namespace moec {

/// True when the file at `path` starts with the artifact magic.
bool isArtifactFile(llvm::StringRef path);

/// Verifies the artifact at `path` (and, with `verifyChecksums`, every
/// weight's and blob's checksum), then prints its header, model information,
/// weight table, KV-cache layout, executables with their kernels and every
/// entry point's dispatch list. Errors name the path and the field at fault.
llvm::Error inspectArtifact(llvm::StringRef path, llvm::raw_ostream &os,
                            bool verifyChecksums = false);

} // namespace moec

#endif // MOEC_TARGET_INSPECTARTIFACT_H
