//===- MoeDialect.cpp - moe dialect registration --------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moe/IR/MoeDialect.h"
#include "moe/IR/MoeOps.h"

using namespace mlir;
using namespace mlir::moe;

#include "moe/IR/MoeOpsDialect.cpp.inc"

void MoeDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "moe/IR/MoeOps.cpp.inc"
      >();
}
