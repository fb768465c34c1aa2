//===- ArtifactWriter.cpp - writing .moec artifacts -----------------------===//
//
// Part of moec. File construction, in order:
//   create():     temp file; the weight segment starts at the first 4096
//                 boundary after the reserved table region
//   addWeight():  bytes stream to the segment, hashed on the way
//   finish():     blob segment after the weights, then the FlatBuffer (its
//                 offsets are segment-relative, so it does not depend on
//                 where the segments land), then — if the table did not fit
//                 the reservation — the segments move up; finally header and
//                 table at the start, verification, rename.
//
//===----------------------------------------------------------------------===//

#include "moec/Target/ArtifactWriter.h"

#include "ArtifactFile.h"
#include "moec/Support/Fnv.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>

using namespace llvm;

namespace moec {

namespace fb = moec::fb;
using artifact::alignTo;

uint64_t artifactDTypeSize(ArtifactDType dtype) {
  return artifact::dtypeSize(static_cast<fb::DType>(dtype));
}

bool artifactTensorBytes(ArtifactDType dtype, uint64_t elements,
                         uint64_t &bytes) {
  return artifact::tensorBytes(static_cast<fb::DType>(dtype), elements, bytes);
}

// The public enums mirror the schema's so that conversions are casts.
static_assert(
    static_cast<int>(ArtifactDType::F32) == static_cast<int>(fb::DType::F32) &&
    static_cast<int>(ArtifactDType::F8E4M3) ==
        static_cast<int>(fb::DType::F8_E4M3) &&
    static_cast<int>(ArtifactDType::I64) == static_cast<int>(fb::DType::I64) &&
    static_cast<int>(ArtifactDType::Q8_0) == static_cast<int>(fb::DType::Q8_0));
static_assert(static_cast<int>(ArtifactBinding::Kind::Arena) ==
                  static_cast<int>(fb::BindingKind::Arena) &&
              static_cast<int>(ArtifactBinding::Kind::Logits) ==
                  static_cast<int>(fb::BindingKind::Logits));

namespace {

/// Forwards to the artifact file while counting and hashing the bytes of
/// one weight.
class HashingStream : public raw_ostream {
public:
  explicit HashingStream(raw_ostream &out) : out(out) {}
  ~HashingStream() override { flush(); }

  uint64_t bytesWritten() const { return count; }
  uint64_t checksum() const { return hash.value(); }

private:
  void write_impl(const char *data, size_t size) override {
    hash.update(data, size);
    count += size;
    out.write(data, size);
  }
  uint64_t current_pos() const override { return count; }

  raw_ostream &out;
  Fnv1a64 hash;
  uint64_t count = 0;
};

} // namespace

//===----------------------------------------------------------------------===//
// Lifetime
//===----------------------------------------------------------------------===//

Expected<std::unique_ptr<ArtifactBuilder>>
ArtifactBuilder::create(StringRef outputPath, Options options) {
  std::unique_ptr<ArtifactBuilder> builder(new ArtifactBuilder());
  builder->options = std::move(options);
  builder->outputPath = outputPath.str();

  // Same directory as the output, so that the final rename is atomic.
  int fd;
  SmallString<256> tempPath;
  if (std::error_code error =
          sys::fs::createUniqueFile(outputPath + ".tmp-%%%%%%", fd, tempPath))
    return createStringError(error, "%s: cannot create a temporary file: %s",
                             outputPath.str().c_str(), error.message().c_str());
  builder->tempPath = tempPath.str().str();
  builder->fd = fd;
  builder->file = std::make_unique<raw_fd_ostream>(fd, /*shouldClose=*/true);

  builder->weightsOffset =
      alignTo(artifact::kTableOffset + builder->options.tableReserveBytes,
              artifact::kSegmentAlignment);
  builder->file->seek(builder->weightsOffset);
  return std::move(builder);
}

ArtifactBuilder::~ArtifactBuilder() {
  if (!finished)
    discard();
}

void ArtifactBuilder::discard() {
  if (file) {
    file->clear_error();
    file->close();
    file->clear_error();
    file.reset();
  }
  if (!tempPath.empty())
    sys::fs::remove(tempPath);
  tempPath.clear();
}

Error ArtifactBuilder::fail(Error error) {
  failed = true;
  discard();
  return error;
}

Error ArtifactBuilder::checkUsable() const {
  if (finished)
    return createStringError("%s: the artifact builder has already finished",
                             outputPath.c_str());
  if (failed)
    return createStringError("%s: the artifact builder failed earlier",
                             outputPath.c_str());
  return Error::success();
}

Error ArtifactBuilder::writeZeros(uint64_t count) {
  static const char zeros[4096] = {};
  while (count > 0) {
    uint64_t chunk = std::min<uint64_t>(count, sizeof(zeros));
    file->write(zeros, chunk);
    count -= chunk;
  }
  return Error::success();
}

//===----------------------------------------------------------------------===//
// Contents
//===----------------------------------------------------------------------===//

void ArtifactBuilder::setModelInfo(ArtifactModelInfo info) {
  modelInfo = std::move(info);
  hasModelInfo = true;
}

Expected<uint32_t> ArtifactBuilder::addWeight(StringRef name,
                                              ArtifactDType dtype,
                                              ArrayRef<int64_t> shape,
                                              WeightWriter write) {
  if (Error error = checkUsable())
    return std::move(error);
  uint64_t elements = 1, size = 0;
  for (int64_t dim : shape)
    if (dim < 0 ||
        __builtin_mul_overflow(elements, static_cast<uint64_t>(dim), &elements))
      return fail(createStringError(
          "%s: weight '%s': shape has a negative dimension or overflows",
          outputPath.c_str(), name.str().c_str()));
  if (elements > UINT64_MAX / 8 || !artifactTensorBytes(dtype, elements, size))
    return fail(createStringError(
        "%s: weight '%s': %llu elements are not whole q8_0 blocks",
        outputPath.c_str(), name.str().c_str(),
        static_cast<unsigned long long>(elements)));
  if (!weightNames.insert(name).second)
    return fail(createStringError("%s: duplicate weight name '%s'",
                                  outputPath.c_str(), name.str().c_str()));

  uint64_t offset = alignTo(weightsSize, artifact::weightAlignment(size));
  if (options.deferWeights) {
    // A hole now; the packer fills it.
    file->seek(weightsOffset + offset + size);
    weightsSize = offset + size;
    weights.push_back({name.str(), dtype,
                       std::vector<int64_t>(shape.begin(), shape.end()), offset,
                       size, /*checksum=*/0});
    return static_cast<uint32_t>(weights.size() - 1);
  }
  if (Error error = writeZeros(offset - weightsSize))
    return fail(std::move(error));
  HashingStream stream(*file);
  if (Error error = write(stream))
    return fail(
        joinErrors(createStringError("%s: weight '%s':", outputPath.c_str(),
                                     name.str().c_str()),
                   std::move(error)));
  stream.flush();
  if (stream.bytesWritten() != size)
    return fail(createStringError(
        "%s: weight '%s': the writer produced %llu bytes, expected %llu "
        "(shape x dtype)",
        outputPath.c_str(), name.str().c_str(),
        static_cast<unsigned long long>(stream.bytesWritten()),
        static_cast<unsigned long long>(size)));
  if (file->has_error())
    return fail(createStringError(file->error(), "%s: writing weight '%s': %s",
                                  outputPath.c_str(), name.str().c_str(),
                                  file->error().message().c_str()));
  weightsSize = offset + size;
  weights.push_back({name.str(), dtype,
                     std::vector<int64_t>(shape.begin(), shape.end()), offset,
                     size, stream.checksum()});
  return static_cast<uint32_t>(weights.size() - 1);
}

Expected<uint32_t> ArtifactBuilder::addWeight(StringRef name,
                                              ArtifactDType dtype,
                                              ArrayRef<int64_t> shape,
                                              ArrayRef<char> bytes) {
  return addWeight(name, dtype, shape, [&](raw_ostream &os) {
    os.write(bytes.data(), bytes.size());
    return Error::success();
  });
}

uint32_t ArtifactBuilder::addKvCache(ArtifactKvCache cache) {
  kvCaches.push_back(std::move(cache));
  return static_cast<uint32_t>(kvCaches.size() - 1);
}

uint32_t ArtifactBuilder::addExecutable(ArtifactExecutable executable,
                                        ArrayRef<char> blob) {
  executables.push_back(
      {std::move(executable), std::vector<char>(blob.begin(), blob.end())});
  return static_cast<uint32_t>(executables.size() - 1);
}

void ArtifactBuilder::addEntryPoint(ArtifactEntryPoint entry) {
  entryPoints.push_back(std::move(entry));
}

//===----------------------------------------------------------------------===//
// The FlatBuffer and the final layout
//===----------------------------------------------------------------------===//

flatbuffers::DetachedBuffer
ArtifactBuilder::buildTable(ArrayRef<uint64_t> blobOffsets) const {
  flatbuffers::FlatBufferBuilder fbb(64 * 1024);
  // Every field is stored, defaults included: the layout of a table does
  // not depend on its values, so tools and tests can patch fields in place.
  fbb.ForceDefaults(true);

  auto model = fb::CreateModelInfo(
      fbb, fbb.CreateString(modelInfo.modelType), modelInfo.vocabSize,
      modelInfo.hiddenSize, modelInfo.numLayers, modelInfo.maxSeqLen,
      modelInfo.bosTokenId, fbb.CreateVector(modelInfo.eosTokenIds),
      static_cast<fb::DType>(modelInfo.computeDType),
      fbb.CreateString(modelInfo.configJson),
      modelInfo.tokenizerJson.empty()
          ? 0
          : fbb.CreateString(modelInfo.tokenizerJson),
      modelInfo.tokenizerConfigJson.empty()
          ? 0
          : fbb.CreateString(modelInfo.tokenizerConfigJson));

  std::vector<flatbuffers::Offset<fb::Weight>> weightTables;
  weightTables.reserve(weights.size());
  for (const WeightRecord &weight : weights)
    weightTables.push_back(fb::CreateWeight(
        fbb, fbb.CreateString(weight.name),
        static_cast<fb::DType>(weight.dtype), fbb.CreateVector(weight.shape),
        weight.offset, weight.size, weight.checksum));

  std::vector<flatbuffers::Offset<fb::KvCache>> cacheTables;
  for (const ArtifactKvCache &cache : kvCaches)
    cacheTables.push_back(fb::CreateKvCache(
        fbb, cache.layer, static_cast<fb::DType>(cache.dtype),
        fbb.CreateVector(cache.keyShape), fbb.CreateVector(cache.valueShape)));

  std::vector<flatbuffers::Offset<fb::Executable>> executableTables;
  for (auto [record, offset] : llvm::zip(executables, blobOffsets)) {
    const ArtifactExecutable &description = record.description;
    std::vector<fb::KernelLaunch> launches;
    for (const ArtifactExecutable::Launch &launch : description.launches)
      launches.emplace_back(launch.blockThreads, launch.itemsPerBlock);
    executableTables.push_back(fb::CreateExecutable(
        fbb, fbb.CreateString(description.target),
        fbb.CreateString(description.format),
        fbb.CreateString(description.cpuFeatures), offset, record.blob.size(),
        fbb.CreateVectorOfStrings(description.kernelNames),
        fnv1a64(record.blob.data(), record.blob.size()),
        launches.empty() ? 0 : fbb.CreateVectorOfStructs(launches)));
  }

  std::vector<flatbuffers::Offset<fb::EntryPoint>> entryTables;
  for (const ArtifactEntryPoint &entry : entryPoints) {
    std::vector<flatbuffers::Offset<fb::Dispatch>> dispatchTables;
    for (const ArtifactDispatch &dispatch : entry.dispatches) {
      std::vector<fb::Binding> bindings;
      for (const ArtifactBinding &binding : dispatch.bindings)
        bindings.emplace_back(static_cast<fb::BindingKind>(binding.kind),
                              binding.index, binding.offset, binding.size);
      fb::WorkSize work(dispatch.workPerToken, dispatch.workFixed);
      dispatchTables.push_back(fb::CreateDispatch(
          fbb, dispatch.kernel, fbb.CreateVectorOfStructs(bindings), &work,
          dispatch.grain, dispatch.executable));
    }
    entryTables.push_back(fb::CreateEntryPoint(
        fbb, fbb.CreateString(entry.name), entry.maxTokens, entry.arenaBytes,
        fbb.CreateVector(dispatchTables), entry.allLogits));
  }

  auto root = fb::CreateArtifact(
      fbb, artifact::kVersionMajor, fbb.CreateString(options.producer), model,
      fbb.CreateVector(weightTables), fbb.CreateVector(cacheTables),
      fbb.CreateVector(executableTables), fbb.CreateVector(entryTables));
  fb::FinishArtifactBuffer(fbb, root);
  return fbb.Release();
}

Error ArtifactBuilder::moveSegments(uint64_t from, uint64_t to, uint64_t end) {
  // Copy backwards: the destination overlaps the source's tail.
  file->flush();
  file->seek(end + (to - from)); // pwrite must stay inside the stream
  std::vector<char> buffer(8 << 20);
  for (uint64_t position = end; position > from;) {
    uint64_t chunk = std::min<uint64_t>(buffer.size(), position - from);
    position -= chunk;
    Expected<size_t> read = sys::fs::readNativeFileSlice(
        fd, MutableArrayRef<char>(buffer.data(), chunk), position);
    if (!read)
      return read.takeError();
    if (*read != chunk)
      return createStringError("short read while moving the weight segment");
    file->pwrite(buffer.data(), chunk, position + (to - from));
  }
  return Error::success();
}

Error ArtifactBuilder::finish() {
  if (Error error = checkUsable())
    return error;
  if (!hasModelInfo)
    return fail(createStringError("%s: setModelInfo() was never called",
                                  outputPath.c_str()));

  // Blob segment: the first page boundary after the weights, each blob
  // 64-byte aligned inside it.
  uint64_t weightsEnd = weightsOffset + weightsSize;
  uint64_t blobsOffset = alignTo(weightsEnd, artifact::kSegmentAlignment);
  if (Error error = writeZeros(blobsOffset - weightsEnd))
    return fail(std::move(error));
  std::vector<uint64_t> blobOffsets;
  uint64_t blobsSize = 0;
  for (const ExecutableRecord &record : executables) {
    uint64_t offset = alignTo(blobsSize, artifact::kItemAlignment);
    if (Error error = writeZeros(offset - blobsSize))
      return fail(std::move(error));
    file->write(record.blob.data(), record.blob.size());
    blobOffsets.push_back(offset);
    blobsSize = offset + record.blob.size();
  }

  flatbuffers::DetachedBuffer table = buildTable(blobOffsets);
  if (table.size() > artifact::kMaxTableSize)
    return fail(createStringError(
        "%s: the FlatBuffer table is %zu bytes, over the 2 GiB limit",
        outputPath.c_str(), table.size()));

  // Make room when the table outgrew the reserved region.
  uint64_t tableEnd = artifact::kTableOffset + table.size();
  bool moved = tableEnd > weightsOffset;
  if (moved) {
    uint64_t newOffset = alignTo(tableEnd, artifact::kSegmentAlignment);
    if (Error error =
            moveSegments(weightsOffset, newOffset, blobsOffset + blobsSize))
      return fail(joinErrors(createStringError("%s: moving the weight segment:",
                                               outputPath.c_str()),
                             std::move(error)));
    blobsOffset += newOffset - weightsOffset;
    weightsOffset = newOffset;
  }

  fb::FileHeader header(
      flatbuffers::span<const uint8_t, 8>(
          reinterpret_cast<const uint8_t *>(artifact::kMagic), 8),
      artifact::kVersionMajor, artifact::kVersionMinor, /*flags=*/0,
      artifact::kTableOffset, table.size(), weightsOffset, weightsSize,
      blobsOffset, blobsSize);
  file->pwrite(reinterpret_cast<const char *>(&header), sizeof(header), 0);
  file->pwrite(reinterpret_cast<const char *>(table.data()), table.size(),
               artifact::kTableOffset);
  // The gap up to the weights is a hole that reads as zeros, unless moved
  // bytes were left there: equal inputs give byte-identical artifacts.
  if (moved) {
    std::vector<char> gap(weightsOffset - tableEnd, 0);
    file->pwrite(gap.data(), gap.size(), tableEnd);
  }
  file->close();
  if (file->has_error()) {
    std::error_code error = file->error();
    return fail(createStringError(error, "%s: cannot write: %s",
                                  outputPath.c_str(), error.message().c_str()));
  }
  file.reset();

  // The runtime's own checks, so that the compiler can never publish an
  // artifact moec_model_load would reject.
  std::unique_ptr<runtime::ArtifactFile> check;
  runtime::Status status = runtime::ArtifactFile::open(
      tempPath, runtime::ArtifactFile::Options(), check);
  if (!status.ok()) {
    StringRef message = status.message();
    message.consume_front(tempPath + ": ");
    return fail(createStringError("%s: invalid artifact: %s",
                                  outputPath.c_str(), message.str().c_str()));
  }
  check.reset();

  finalLayout = {weightsOffset, weightsSize, blobsOffset, blobsSize, {}};
  for (const WeightRecord &weight : weights)
    finalLayout.weightOffsets.push_back(weight.offset);
  if (options.deferWeights) {
    if (Error error = writeSkeleton(blobsOffset, blobsSize))
      return fail(std::move(error));
    finished = true;
    return Error::success();
  }

  if (std::error_code error = sys::fs::rename(tempPath, outputPath))
    return fail(createStringError(error, "%s: cannot rename %s: %s",
                                  outputPath.c_str(), tempPath.c_str(),
                                  error.message().c_str()));
  tempPath.clear();
  finished = true;
  return Error::success();
}

// The finished file minus its weight segment, published atomically in place
// of the full (mostly hole) file.
Error ArtifactBuilder::writeSkeleton(uint64_t blobsOffset, uint64_t blobsSize) {
  auto full = MemoryBuffer::getFile(tempPath, /*IsText=*/false,
                                    /*RequiresNullTerminator=*/false);
  if (!full)
    return createStringError(full.getError(), "%s: cannot read back %s: %s",
                             outputPath.c_str(), tempPath.c_str(),
                             full.getError().message().c_str());
  StringRef bytes = (*full)->getBuffer();
  int skeletonFd;
  SmallString<256> skeletonPath;
  if (std::error_code error = sys::fs::createUniqueFile(
          outputPath + ".tmp-%%%%%%", skeletonFd, skeletonPath))
    return createStringError(error, "%s: cannot create a temporary file: %s",
                             outputPath.c_str(), error.message().c_str());
  {
    raw_fd_ostream skeleton(skeletonFd, /*shouldClose=*/true);
    skeleton << bytes.substr(0, finalLayout.weightsOffset)
             << bytes.substr(blobsOffset, blobsSize);
    skeleton.close();
    if (skeleton.has_error()) {
      sys::fs::remove(skeletonPath);
      return createStringError(skeleton.error(), "%s: cannot write: %s",
                               outputPath.c_str(),
                               skeleton.error().message().c_str());
    }
  }
  full->reset();
  sys::fs::remove(tempPath);
  tempPath.clear();
  if (std::error_code error = sys::fs::rename(skeletonPath, outputPath)) {
    sys::fs::remove(skeletonPath);
    return createStringError(error, "%s: cannot rename %s: %s",
                             outputPath.c_str(), skeletonPath.c_str(),
                             error.message().c_str());
  }
  return Error::success();
}

} // namespace moec
