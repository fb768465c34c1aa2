/*===- moec/runtime.h - the moec runtime C API ----------------------------===*\
|*                                                                            *|
|* Part of moec. The thin runtime that loads a `.moec` artifact and runs it.  *|
|* It depends on no MLIR or LLVM library. The model-loading and execution     *|
|* entry points (moec_model_load, moec_session_create, moec_prefill,          *|
|* moec_decode, moec_sample) arrive with the CPU backend; this header starts  *|
|* with what every later call shares: versioning and status codes.            *|
|*                                                                            *|
\*===----------------------------------------------------------------------===*/

#ifndef MOEC_RUNTIME_H
#define MOEC_RUNTIME_H

#ifdef __cplusplus
extern "C" {
#endif

/* Result of every fallible runtime call. MOEC_OK is zero. */
typedef enum moec_status {
  MOEC_OK = 0,
  MOEC_INVALID_ARGUMENT = 1, /* a null pointer or out-of-range value */
  MOEC_IO_ERROR = 2,         /* the artifact could not be opened/mapped */
  MOEC_INVALID_ARTIFACT = 3, /* bad magic, schema version or checksum */
  MOEC_UNSUPPORTED = 4,      /* e.g. an artifact for a missing target */
  MOEC_OUT_OF_MEMORY = 5,
  MOEC_DEVICE_ERROR = 6, /* CUDA driver missing or failing */
} moec_status;

/* The runtime library's version, "MAJOR.MINOR.PATCH". Never NULL. */
const char *moec_runtime_version(void);

/* A short, static, human-readable name for |status|. Never NULL. */
const char *moec_status_string(moec_status status);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* MOEC_RUNTIME_H */
