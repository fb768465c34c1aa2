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
                        std::unique_ptr<moec_model> &out) {
  out.reset();
  auto model = std::make_unique<moec_model>();
  MOEC_RETURN_IF_ERROR(ArtifactFile::open(path, options, model->file));
  const fb::Artifact &artifact = model->file->artifact();

  model->prefill = model->file->findEntryPoint("prefill");
  model->decode = model->file->findEntryPoint("decode");
  if (!model->decode)
    model->decode = model->prefill;

  // Load the executables the entry points dispatch to (an artifact may carry
  // others, e.g. for another target).
  uint32_t numExecutables =
      artifact.executables() ? artifact.executables()->size() : 0;
  model->executables.resize(numExecutables);
  for (const fb::EntryPoint *entry : *artifact.entry_points())
    for (const fb::Dispatch *dispatch : *entry->dispatches()) {
      auto &executable = model->executables[dispatch->executable()];
      if (!executable)
        MOEC_RETURN_IF_ERROR(CpuExecutable::load(*model->file,
                                                 dispatch->executable(),
                                                 executable)
                                 .prefix(path));
    }

  if (const auto *eos = model->info().eos_token_ids())
    model->eosTokenIds.assign(eos->begin(), eos->end());
  out = std::move(model);
  return Status();
}
