//===- Model.cpp - a loaded artifact --------------------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "Model.h"

using namespace moec;
using namespace moec::runtime;

Status moec_model::load(const std::string &path,
                        const ArtifactFile::Options &options,
                        std::string_view device,
                        std::unique_ptr<moec_model> &out) {
  out.reset();
  auto model = std::make_unique<moec_model>();
  MOEC_RETURN_IF_ERROR(ArtifactFile::open(path, options, model->file));
  const fb::Artifact &artifact = model->file->artifact();

  model->prefill = model->file->findEntryPoint("prefill");
  model->decode = model->file->findEntryPoint("decode");
  if (!model->decode)
    model->decode = model->prefill;

  // The executables the entry points dispatch to (an artifact may carry
  // others, e.g. for another target), and the device they are for: all
  // cuda or none.
  uint32_t numExecutables =
      artifact.executables() ? artifact.executables()->size() : 0;
  std::vector<bool> used(numExecutables, false);
  for (const fb::EntryPoint *entry : *artifact.entry_points())
    for (const fb::Dispatch *dispatch : *entry->dispatches())
      used[dispatch->executable()] = true;
  const char *cudaTarget = nullptr, *otherTarget = nullptr;
  for (uint32_t i = 0; i < numExecutables; ++i) {
    if (!used[i])
      continue;
    const char *target = artifact.executables()->Get(i)->target()->c_str();
    (isCudaTarget(target) ? cudaTarget : otherTarget) = target;
  }
  if (cudaTarget && otherTarget)
    return makeStatus(MOEC_UNSUPPORTED,
                      "%s: the entry points dispatch to both '%s' and '%s' "
                      "executables (one artifact runs on one device)",
                      path.c_str(), otherTarget, cudaTarget);
  if (!device.empty() && device != "cpu" && device != "cuda")
    return makeStatus(MOEC_INVALID_ARGUMENT,
                      "unknown device '%.*s' (expected cpu or cuda)",
                      static_cast<int>(device.size()), device.data());
  const char *compiledFor = cudaTarget    ? cudaTarget
                            : otherTarget ? otherTarget
                                          : "cpu";
  if (!device.empty() && (device == "cuda") != (cudaTarget != nullptr))
    return makeStatus(MOEC_UNSUPPORTED,
                      "%s was compiled for %s; the %.*s device needs an "
                      "artifact compiled with --target=%.*s",
                      path.c_str(), compiledFor,
                      static_cast<int>(device.size()), device.data(),
                      static_cast<int>(device.size()), device.data());

  if (cudaTarget) {
    MOEC_RETURN_IF_ERROR(
        CudaModel::load(*model->file, used, model->cuda).prefix(path));
  } else {
    model->executables.resize(numExecutables);
    for (uint32_t i = 0; i < numExecutables; ++i)
      if (used[i])
        MOEC_RETURN_IF_ERROR(
            CpuExecutable::load(*model->file, i, model->executables[i])
                .prefix(path));
  }

  if (const auto *eos = model->info().eos_token_ids())
    model->eosTokenIds.assign(eos->begin(), eos->end());
  out = std::move(model);
  return Status();
}
