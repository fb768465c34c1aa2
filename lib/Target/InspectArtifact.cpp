//===- InspectArtifact.cpp - `moec inspect` for .moec files ---------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moec/Target/InspectArtifact.h"
#include "moec/Support/Format.h"

#include "ArtifactFile.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>

using namespace llvm;

namespace moec {

namespace {

std::string shapeString(const flatbuffers::Vector<int64_t> *shape) {
  std::string text = "[";
  if (shape)
    for (auto [i, dim] : llvm::enumerate(*shape))
      text += (i ? ", " : "") + std::to_string(dim);
  return text + "]";
}

StringRef str(const flatbuffers::String *string) {
  return string ? StringRef(string->c_str(), string->size()) : StringRef();
}

/// Bytes one position occupies in a cache of `shape` (all but dimension 0).
uint64_t bytesPerPosition(const flatbuffers::Vector<int64_t> *shape,
                          fb::DType dtype) {
  if (!shape || shape->size() == 0)
    return 0;
  uint64_t bytes = artifact::dtypeSize(dtype);
  for (uint32_t i = 1; i < shape->size(); ++i)
    bytes *= shape->Get(i);
  return bytes;
}

void printHeader(const runtime::ArtifactFile &file, raw_ostream &os) {
  const fb::FileHeader &header = file.header();
  os << formatv("artifact: {0} ({1})\n", file.path(),
                formatBytes(file.fileSize()));
  os << formatv("format: {0}.{1}, producer: {2}\n", header.version_major(),
                header.version_minor(), str(file.artifact().producer()));
  auto section = [&](StringRef name, uint64_t offset, uint64_t size) {
    os << formatv("  {0,-8} offset {1,12}  size {2,12}  ({3})\n", name, offset,
                  size, formatBytes(size));
  };
  os << "sections:\n";
  section("table", header.table_offset(), header.table_size());
  section("weights", header.weights_offset(), header.weights_size());
  section("blobs", header.blobs_offset(), header.blobs_size());
}

void printModel(const fb::ModelInfo &model, raw_ostream &os) {
  os << "\nmodel:\n";
  os << formatv("  model_type     {0}\n", str(model.model_type()));
  os << formatv("  vocab_size     {0}\n", model.vocab_size());
  os << formatv("  hidden_size    {0}\n", model.hidden_size());
  os << formatv("  num_layers     {0}\n", model.num_layers());
  os << formatv("  max_seq_len    {0} (KV-cache capacity)\n",
                model.max_seq_len());
  os << formatv("  compute_dtype  {0}\n",
                artifact::dtypeName(model.compute_dtype()));
  os << formatv("  bos_token_id   {0}\n", model.bos_token_id());
  os << "  eos_token_ids  [";
  if (model.eos_token_ids())
    for (auto [i, id] : llvm::enumerate(*model.eos_token_ids()))
      os << (i ? ", " : "") << id;
  os << "]\n";
  os << formatv("  config.json    {0} bytes\n",
                model.config_json() ? model.config_json()->size() : 0);
  if (model.tokenizer_json())
    os << formatv("  tokenizer      tokenizer.json {0} bytes, "
                  "tokenizer_config.json {1} bytes\n",
                  model.tokenizer_json()->size(),
                  model.tokenizer_config_json()
                      ? model.tokenizer_config_json()->size()
                      : 0);
  else
    os << "  tokenizer      none (token ids only)\n";
}

void printWeights(const runtime::ArtifactFile &file, raw_ostream &os) {
  const auto *weights = file.artifact().weights();
  uint32_t count = weights ? weights->size() : 0;
  uint64_t total = 0;
  size_t nameWidth = 4;
  for (uint32_t i = 0; i < count; ++i) {
    total += weights->Get(i)->size();
    nameWidth =
        std::max<size_t>(nameWidth, str(weights->Get(i)->name()).size());
  }
  os << formatv("\nweights: {0} tensors, {1}\n", count, formatBytes(total));
  if (count == 0)
    return;
  os << formatv("  {0,5}  {1}  {2,-6} {3,-20} {4,12} {5,12}  {6}\n", "index",
                left_justify("name", nameWidth), "dtype", "shape", "offset",
                "size", "fnv1a64");
  for (uint32_t i = 0; i < count; ++i) {
    const fb::Weight &weight = *weights->Get(i);
    os << formatv("  {0,5}  {1}  {2,-6} {3,-20} {4,12} {5,12}  {6}\n", i,
                  left_justify(str(weight.name()), nameWidth),
                  artifact::dtypeName(weight.dtype()),
                  shapeString(weight.shape()), weight.offset(), weight.size(),
                  format_hex_no_prefix(weight.checksum(), 16));
  }
}

void printKvCaches(const runtime::ArtifactFile &file, raw_ostream &os) {
  const auto *caches = file.artifact().kv_caches();
  uint32_t count = caches ? caches->size() : 0;
  uint64_t perToken = 0;
  for (uint32_t i = 0; i < count; ++i) {
    const fb::KvCache &cache = *caches->Get(i);
    perToken += bytesPerPosition(cache.key_shape(), cache.dtype()) +
                bytesPerPosition(cache.value_shape(), cache.dtype());
  }
  int64_t capacity = file.model().max_seq_len();
  os << formatv("\nKV caches: {0}, {1} per token, {2} at capacity {3}\n", count,
                formatBytes(perToken), formatBytes(perToken * capacity),
                capacity);
  if (count == 0)
    return;
  os << formatv("  {0,5}  {1,5}  {2,-6} {3,-22} {4,-22} {5}\n", "index",
                "layer", "dtype", "key", "value", "bytes/token (K+V)");
  for (uint32_t i = 0; i < count; ++i) {
    const fb::KvCache &cache = *caches->Get(i);
    bool hasValue = cache.value_shape() && cache.value_shape()->size() > 0;
    os << formatv("  {0,5}  {1,5}  {2,-6} {3,-22} {4,-22} {5}\n", i,
                  cache.layer(), artifact::dtypeName(cache.dtype()),
                  shapeString(cache.key_shape()),
                  hasValue ? shapeString(cache.value_shape()) : "-",
                  bytesPerPosition(cache.key_shape(), cache.dtype()) +
                      bytesPerPosition(cache.value_shape(), cache.dtype()));
  }
}

void printExecutables(const runtime::ArtifactFile &file, raw_ostream &os) {
  const auto *executables = file.artifact().executables();
  uint32_t count = executables ? executables->size() : 0;
  os << formatv("\nexecutables: {0}\n", count);
  for (uint32_t i = 0; i < count; ++i) {
    const fb::Executable &executable = *executables->Get(i);
    os << formatv("  [{0}] target {1}, format {2}, features \"{3}\", blob "
                  "offset {4} size {5} ({6}), fnv1a64 {7}\n",
                  i, str(executable.target()), str(executable.format()),
                  str(executable.cpu_features()), executable.blob_offset(),
                  executable.blob_size(), formatBytes(executable.blob_size()),
                  format_hex_no_prefix(executable.checksum(), 16));
    const auto *launches = executable.launches();
    for (auto [k, name] : llvm::enumerate(*executable.kernel_names())) {
      os << formatv("      kernel {0,3}  {1}", k, str(name));
      if (launches && k < launches->size())
        os << formatv("  block {0} threads, {1} items/block",
                      launches->Get(k)->block_threads(),
                      launches->Get(k)->items_per_block());
      os << "\n";
    }
  }
}

std::string bindingString(const runtime::ArtifactFile &file,
                          const fb::Binding &binding) {
  const fb::Artifact &artifact = file.artifact();
  switch (binding.kind()) {
  case fb::BindingKind::Arena:
    return formatv("arena[{0}, +{1})", binding.offset(), binding.size());
  case fb::BindingKind::Weight:
    return formatv("weight {0} '{1}'", binding.index(),
                   str(artifact.weights()->Get(binding.index())->name()));
  case fb::BindingKind::KeyCache:
  case fb::BindingKind::ValueCache:
    return formatv("{0} {1} (layer {2})",
                   artifact::bindingKindName(binding.kind()), binding.index(),
                   artifact.kv_caches()->Get(binding.index())->layer());
  case fb::BindingKind::TokenIds:
  case fb::BindingKind::Logits:
    return artifact::bindingKindName(binding.kind());
  }
  return "invalid";
}

void printEntryPoints(const runtime::ArtifactFile &file, raw_ostream &os) {
  const fb::Artifact &artifact = file.artifact();
  for (const fb::EntryPoint *entry : *artifact.entry_points()) {
    os << formatv("\nentry point '{0}': max_tokens {1}, arena {2} ({3}), "
                  "logits of {4}, {5} dispatches\n",
                  str(entry->name()), entry->max_tokens(), entry->arena_bytes(),
                  formatBytes(entry->arena_bytes()),
                  entry->all_logits() ? "every position" : "the last position",
                  entry->dispatches()->size());
    for (auto [d, dispatch] : llvm::enumerate(*entry->dispatches())) {
      const fb::Executable &executable =
          *artifact.executables()->Get(dispatch->executable());
      int64_t perToken = dispatch->work() ? dispatch->work()->per_token() : 0;
      int64_t fixed = dispatch->work() ? dispatch->work()->fixed() : 0;
      os << formatv("  {0,4}  {1}  work {2}*T + {3}", d,
                    str(executable.kernel_names()->Get(dispatch->kernel())),
                    perToken, fixed);
      if (dispatch->grain())
        os << formatv(", grain {0}", dispatch->grain());
      os << "\n";
      for (auto [b, binding] : llvm::enumerate(*dispatch->bindings()))
        os << formatv("          {0}: {1}\n", b, bindingString(file, *binding));
    }
  }
}

} // namespace

bool isArtifactFile(StringRef path) {
  return runtime::hasArtifactMagic(path.str());
}

Error inspectArtifact(StringRef path, raw_ostream &os, bool verifyChecksums) {
  runtime::ArtifactFile::Options options;
  options.verifyChecksums = verifyChecksums;
  std::unique_ptr<runtime::ArtifactFile> file;
  runtime::Status status =
      runtime::ArtifactFile::open(path.str(), options, file);
  if (!status.ok())
    return createStringError(status.message());

  printHeader(*file, os);
  printModel(file->model(), os);
  printWeights(*file, os);
  printKvCaches(*file, os);
  printExecutables(*file, os);
  printEntryPoints(*file, os);
  if (verifyChecksums)
    os << "\nchecksums: every weight and blob verified\n";
  return Error::success();
}

} // namespace moec
