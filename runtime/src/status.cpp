//===- status.cpp - runtime version and status names ----------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moec/runtime.h"

#define MOEC_EXPORT __attribute__((visibility("default")))

extern "C" MOEC_EXPORT const char *moec_runtime_version(void) {
  return "0.1.0";
}

extern "C" MOEC_EXPORT const char *moec_status_string(moec_status status) {
  switch (status) {
  case MOEC_OK:
    return "ok";
  case MOEC_INVALID_ARGUMENT:
    return "invalid argument";
  case MOEC_IO_ERROR:
    return "i/o error";
  case MOEC_INVALID_ARTIFACT:
    return "invalid artifact";
  case MOEC_UNSUPPORTED:
    return "unsupported";
  case MOEC_OUT_OF_MEMORY:
    return "out of memory";
  case MOEC_DEVICE_ERROR:
    return "device error";
  }
  return "unknown status";
}
