//===- MoeOps.h - moe dialect operations ------------------------*- C++ -*-===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_IR_MOEOPS_H
#define MOE_IR_MOEOPS_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "moe/IR/MoeDialect.h"

#include "moe/IR/MoeEnums.h.inc"

#define GET_OP_CLASSES
#include "moe/IR/MoeOps.h.inc"

#endif // MOE_IR_MOEOPS_H
