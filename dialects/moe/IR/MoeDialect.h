//===- MoeDialect.h - moe dialect declaration -------------------*- C++ -*-===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_IR_MOEDIALECT_H
#define MOE_IR_MOEDIALECT_H

#include "mlir/IR/Dialect.h"

#include "moe/IR/MoeOpsDialect.h.inc"

#endif // MOE_IR_MOEDIALECT_H
