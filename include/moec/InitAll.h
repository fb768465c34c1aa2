//===- InitAll.h - register every moec dialect and pass ---------*- C++ -*-===//
//
// Part of moec. One place that every tool (moec, moec-opt) calls, so they
// all accept the same IR and the same pass flags.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_INITALL_H
#define MOEC_INITALL_H

#include "mlir/IR/DialectRegistry.h"
#include "moe/IR/MoeDialect.h"
#include "moe/Transforms/Passes.h"

namespace moec {

inline void registerAllMoecDialects(mlir::DialectRegistry &registry) {
  registry.insert<mlir::moe::MoeDialect>();
}

inline void registerAllMoecPasses() {
  mlir::moe::registerMoePassesAndPipelines();
}

} // namespace moec

#endif // MOEC_INITALL_H
