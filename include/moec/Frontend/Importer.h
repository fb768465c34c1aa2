//===- Importer.h - HuggingFace checkpoint -> moe IR ------------*- C++ -*-===//
//
// Part of moec. Builds the `moe` dialect module of a checkpoint directory:
// one function per entry point, weights as `moe.param` references.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_FRONTEND_IMPORTER_H
#define MOEC_FRONTEND_IMPORTER_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>

namespace moec {

struct ImportOptions {
  /// KV-cache capacity in tokens (the static `S` of `moe.attention`). Zero
  /// picks min(max_position_embeddings, 4096).
  int64_t maxSequenceLength = 0;
};

/// Imports the checkpoint in `directory` (config.json + safetensors) into a
/// new module. Errors name the file and the tensor or field at fault.
llvm::Expected<mlir::OwningOpRef<mlir::ModuleOp>>
importCheckpoint(mlir::MLIRContext &context, llvm::StringRef directory,
                 const ImportOptions &options = {});

/// Registers the dialects the importer emits (moe, func, tensor, linalg,
/// arith) into `registry`.
void registerImporterDialects(mlir::DialectRegistry &registry);

} // namespace moec

#endif // MOEC_FRONTEND_IMPORTER_H
