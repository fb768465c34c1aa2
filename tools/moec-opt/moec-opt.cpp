//===- moec-opt.cpp - mlir-opt with the moec dialects and passes ----------===//
//
// Part of moec. Parses `moe` IR mixed with the upstream dialects moec lowers
// through, and runs any moec or upstream pass on it.
//
//===----------------------------------------------------------------------===//

#include "moec/InitAll.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::registerAllPasses();
  moec::registerAllMoecPasses();

  mlir::DialectRegistry registry;
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  // gpu-module-to-binary needs the LLVM IR translations of every dialect.
  mlir::registerAllToLLVMIRTranslations(registry);
  moec::registerAllMoecDialects(registry);

  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "moec optimizer driver: moe dialect and passes\n", registry));
}
