//===- CudaTestArtifact.cpp - cuda artifacts for runtime tests ------------===//
//
// Part of moec (test).
//
//===----------------------------------------------------------------------===//

#include "CudaTestArtifact.h"

#include "ArtifactFormat.h"
#include "moec/Support/Fnv.h"

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace moec::test {

namespace {

const char kPtx[] =
#include "CudaTestKernels.ptx.inc"
    ;

enum Kernel : uint32_t { kStoreKv, kPrefixSum, kLogits, kLastLogits };

float bias(int64_t v) { return 0.25f * static_cast<float>((5 * v) % 37); }

template <typename T> void put(std::string &bytes, size_t offset, T value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(T));
}

} // namespace

const char *cudaTestPtx() { return kPtx; }

float cudaExpectedLogit(const std::vector<int64_t> &history, int64_t v) {
  int64_t position = static_cast<int64_t>(history.size()) - 1;
  float sum = 0;
  for (int64_t id : history)
    sum += static_cast<float>(id);
  return bias((v + position) % kCudaVocab) + sum +
         1000.0f * static_cast<float>(position);
}

std::string writeCudaTestArtifact(const std::string &path,
                                  const CudaTestArtifactOptions &options) {
  using namespace moec::fb;
  flatbuffers::FlatBufferBuilder fbb;
  fbb.ForceDefaults(true);

  // Weight segment: an optional filler (a byte pattern), then the bias,
  // f32[V].
  std::string weights(options.fillerBytes, '\0');
  for (uint64_t i = 0; i < options.fillerBytes; ++i)
    weights[i] = static_cast<char>(i * 7 + i / 4096);
  uint64_t biasOffset = artifact::alignTo(weights.size(), 4096);
  weights.resize(biasOffset + kCudaVocab * sizeof(float));
  for (int64_t v = 0; v < kCudaVocab; ++v)
    put(weights, biasOffset + v * sizeof(float), bias(v));
  std::vector<int64_t> biasShape = {kCudaVocab};
  std::vector<int64_t> fillerShape = {
      static_cast<int64_t>(options.fillerBytes / 4)};
  std::vector<flatbuffers::Offset<Weight>> weightTables;
  weightTables.push_back(CreateWeightDirect(
      fbb, "bias", DType::F32, &biasShape, biasOffset,
      kCudaVocab * sizeof(float),
      fnv1a64(weights.data() + biasOffset, kCudaVocab * sizeof(float))));
  if (options.fillerBytes)
    weightTables.push_back(CreateWeightDirect(
        fbb, "filler", DType::F32, &fillerShape, 0, options.fillerBytes,
        fnv1a64(weights.data(), options.fillerBytes)));

  std::vector<int64_t> cacheShape = {options.capacity, 1, 1};
  std::vector<flatbuffers::Offset<KvCache>> caches = {
      CreateKvCacheDirect(fbb, 0, DType::F32, &cacheShape, &cacheShape)};

  // Blob segment: the kernels (and a dummy cpu blob when mixed).
  std::string blob = options.blob.empty() ? std::string(kPtx) : options.blob;
  if (options.nulTerminated)
    blob.push_back('\0');
  std::string blobs = blob;
  std::vector<std::string> names = {
      "moec_test_store_kv", "moec_test_prefix_sum", "moec_test_logits_v37",
      "moec_test_last_logits_v37"};
  names.insert(names.end(), options.extraKernelNames.begin(),
               options.extraKernelNames.end());
  std::vector<KernelLaunch> launches;
  for (const CudaLaunch &launch : options.launches)
    launches.emplace_back(launch.blockThreads, launch.itemsPerBlock);
  if (options.launches.empty())
    for (size_t i = 0; i < names.size(); ++i)
      launches.emplace_back(32, 64);
  std::vector<flatbuffers::Offset<flatbuffers::String>> nameStrings;
  for (const std::string &name : names)
    nameStrings.push_back(fbb.CreateString(name));
  auto checksum = [](const std::string &bytes) {
    return fnv1a64(reinterpret_cast<const uint8_t *>(bytes.data()),
                   bytes.size());
  };
  std::vector<flatbuffers::Offset<Executable>> executables = {
      CreateExecutableDirect(fbb, options.target.c_str(),
                             options.format.c_str(), "", 0, blob.size(),
                             &nameStrings, checksum(blob),
                             options.omitLaunches ? nullptr : &launches)};
  if (options.noKernels) {
    executables.clear();
    blobs = "unused";
  }
  if (options.mixedWithCpu) {
    uint64_t offset = artifact::alignTo(blobs.size(), artifact::kItemAlignment);
    std::string cpuBlob = "not really a shared object";
    blobs.resize(offset);
    blobs += cpuBlob;
    std::vector<flatbuffers::Offset<flatbuffers::String>> cpuNames = {
        fbb.CreateString("moec_test_store_kv")};
    executables.push_back(
        CreateExecutableDirect(fbb, "cpu", "elf-shared-object", "", offset,
                               cpuBlob.size(), &cpuNames, checksum(cpuBlob)));
  }

  // Entry points: the toy model (store, prefix sum, logits).
  auto entry = [&](const char *name, int64_t maxTokens, uint64_t sumsOffset,
                   bool allLogits, uint32_t executable) {
    std::vector<flatbuffers::Offset<Dispatch>> dispatches;
    if (options.noKernels)
      return CreateEntryPointDirect(fbb, name, maxTokens, 0, &dispatches,
                                    allLogits);
    Binding sums(BindingKind::Arena, 0, sumsOffset, 4 * maxTokens);
    std::vector<Binding> store = {Binding(BindingKind::TokenIds, 0, 0, 0),
                                  Binding(BindingKind::KeyCache, 0, 0, 0),
                                  Binding(BindingKind::ValueCache, 0, 0, 0)};
    std::vector<Binding> prefix = {Binding(BindingKind::KeyCache, 0, 0, 0),
                                   Binding(BindingKind::ValueCache, 0, 0, 0),
                                   sums};
    std::vector<Binding> logits = {Binding(BindingKind::Weight, 0, 0, 0), sums,
                                   Binding(BindingKind::Logits, 0, 0, 0)};
    WorkSize perToken(1, 0);
    WorkSize logitsWork(allLogits ? kCudaVocab : 0, allLogits ? 0 : kCudaVocab);
    dispatches.push_back(
        CreateDispatchDirect(fbb, kStoreKv, &store, &perToken, 0, executable));
    if (executable == 0) {
      dispatches.push_back(CreateDispatchDirect(fbb, kPrefixSum, &prefix,
                                                &perToken, 0, executable));
      dispatches.push_back(
          CreateDispatchDirect(fbb, allLogits ? kLogits : kLastLogits, &logits,
                               &logitsWork, 0, executable));
    }
    return CreateEntryPointDirect(fbb, name, maxTokens,
                                  sumsOffset + 4 * maxTokens, &dispatches,
                                  allLogits);
  };
  std::vector<flatbuffers::Offset<EntryPoint>> entries = {
      entry("prefill", options.prefillTile, 256, options.allLogits, 0)};
  if (options.withDecode)
    entries.push_back(
        entry("decode", 1, 64, true, options.mixedWithCpu ? 1 : 0));

  std::vector<int64_t> eos = {36};
  auto model = CreateModelInfoDirect(fbb, "moec_test", kCudaVocab, 1, 1,
                                     options.capacity, 0, &eos, DType::F32,
                                     R"({"model_type": "moec_test"})");
  fbb.Finish(CreateArtifactDirect(fbb, artifact::kVersionMajor, "moec test",
                                  model, &weightTables, &caches, &executables,
                                  &entries),
             ArtifactIdentifier());

  // The file: header, table, weights, blobs.
  uint64_t tableSize = fbb.GetSize();
  uint64_t weightsOffset = artifact::alignTo(artifact::kTableOffset + tableSize,
                                             artifact::kSegmentAlignment);
  uint64_t blobsOffset = artifact::alignTo(weightsOffset + weights.size(),
                                           artifact::kSegmentAlignment);
  std::string file(blobsOffset + blobs.size(), '\0');
  std::memcpy(file.data(), artifact::kMagic, sizeof(artifact::kMagic));
  put<uint16_t>(file, 8, artifact::kVersionMajor);
  put<uint16_t>(file, 10, artifact::kVersionMinor);
  put<uint32_t>(file, 12, 0);
  put<uint64_t>(file, 16, artifact::kTableOffset);
  put<uint64_t>(file, 24, tableSize);
  put<uint64_t>(file, 32, weightsOffset);
  put<uint64_t>(file, 40, weights.size());
  put<uint64_t>(file, 48, blobsOffset);
  put<uint64_t>(file, 56, blobs.size());
  std::memcpy(file.data() + artifact::kTableOffset, fbb.GetBufferPointer(),
              tableSize);
  std::memcpy(file.data() + weightsOffset, weights.data(), weights.size());
  std::memcpy(file.data() + blobsOffset, blobs.data(), blobs.size());

  std::FILE *out = std::fopen(path.c_str(), "wb");
  if (!out)
    return path + ": " + std::strerror(errno);
  bool ok = std::fwrite(file.data(), 1, file.size(), out) == file.size();
  ok = std::fclose(out) == 0 && ok;
  return ok ? "" : path + ": write failed";
}

} // namespace moec::test
