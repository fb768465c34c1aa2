//===- Model.h - a loaded artifact ------------------------------*- C++ -*-===//
//
// Part of moec. moec_model_t behind the C API: the verified artifact and its
// loaded kernels. Immutable after load.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_MODEL_H
#define MOEC_RUNTIME_MODEL_H

#include "ArtifactFile.h"
#include "CpuExecutable.h"
#include "CudaDevice.h"

#include <memory>
#include <vector>

struct moec_model {
  std::unique_ptr<moec::runtime::ArtifactFile> file;
  /// Indexed like Artifact.executables; null for those no dispatch uses.
  /// (cpu models only).
  std::vector<std::unique_ptr<moec::runtime::CpuExecutable>> executables;
  /// The GPU side of a model whose kernels are cuda executables; null for a
  /// cpu model.
  std::unique_ptr<moec::runtime::CudaModel> cuda;
  const moec::fb::EntryPoint *prefill = nullptr;
  /// The "decode" entry point, or `prefill` when the artifact has none
  /// (then decode runs prefill with T = 1).
  const moec::fb::EntryPoint *decode = nullptr;
  std::vector<int64_t> eosTokenIds;

  const moec::fb::ModelInfo &info() const { return file->model(); }
  int64_t vocabSize() const { return info().vocab_size(); }

  /// "cpu" or "cuda".
  const char *device() const { return cuda ? "cuda" : "cpu"; }

  /// Loads the artifact at `path`. `device` is "" (whatever the artifact
  /// was compiled for), "cpu" or "cuda" (MOEC_UNSUPPORTED when the kernels
  /// are for the other one, checked before any driver is loaded).
  static moec::runtime::Status
  load(const std::string &path,
       const moec::runtime::ArtifactFile::Options &options,
       std::string_view device, std::unique_ptr<moec_model> &out);
};

#endif // MOEC_RUNTIME_MODEL_H
