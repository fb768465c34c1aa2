//===- ArtifactFile.cpp - a mapped and verified .moec artifact ------------===//
//
// Part of moec. The checks run in dependency order: a check only reads what
// the previous ones proved to be inside the file, so a corrupt or truncated
// artifact yields an error message, never a fault.
//
//===----------------------------------------------------------------------===//

#include "ArtifactFile.h"

#include "moec/Support/Fnv.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace moec::runtime {

using ull = unsigned long long;

namespace {

const char *str(const flatbuffers::String *string) {
  return string ? string->c_str() : "";
}

bool isEmpty(const flatbuffers::String *string) {
  return !string || string->size() == 0;
}

/// [offset, offset + size) fits in [0, limit) without overflow.
bool rangeFits(uint64_t offset, uint64_t size, uint64_t limit) {
  uint64_t end;
  return !__builtin_add_overflow(offset, size, &end) && end <= limit;
}

bool validDType(fb::DType dtype) { return artifact::knownDType(dtype); }

/// Closes a file descriptor on scope exit.
struct FdCloser {
  int fd;
  ~FdCloser() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// The cuda-only checks of executables[index]: a well-formed target, a
/// known format, one launch geometry per kernel within CUDA's limits.
Status verifyCudaExecutable(const fb::Executable &executable, uint32_t index) {
  CudaArch arch;
  if (!parseCudaTarget(executable.target()->string_view(), arch))
    return invalidArtifact("executables[%u]: target '%s' is malformed "
                           "(expected cuda:sm_<digits>[a], e.g. cuda:sm_90)",
                           index, executable.target()->c_str());
  std::string_view format = executable.format()->string_view();
  if (format != "fatbin" && format != "cubin" && format != "ptx")
    return invalidArtifact("executables[%u]: format '%s' is not one of "
                           "fatbin, cubin, ptx (target '%s')",
                           index, executable.format()->c_str(),
                           executable.target()->c_str());
  uint32_t numKernels = executable.kernel_names()->size();
  const auto *launches = executable.launches();
  if (!launches)
    return invalidArtifact("executables[%u]: launches is missing (a cuda "
                           "executable needs one per kernel name, %u)",
                           index, numKernels);
  if (launches->size() != numKernels)
    return invalidArtifact("executables[%u]: %u launches for %u kernel names",
                           index, launches->size(), numKernels);
  for (uint32_t k = 0; k < numKernels; ++k) {
    const fb::KernelLaunch &launch = *launches->Get(k);
    if (launch.block_threads() < 1 || launch.block_threads() > 1024)
      return invalidArtifact("executables[%u]: launches[%u] '%s': "
                             "block_threads %u outside [1, 1024]",
                             index, k,
                             executable.kernel_names()->Get(k)->c_str(),
                             launch.block_threads());
    if (launch.items_per_block() < 1)
      return invalidArtifact("executables[%u]: launches[%u] '%s': "
                             "items_per_block must be at least 1",
                             index, k,
                             executable.kernel_names()->Get(k)->c_str());
  }
  return Status();
}

} // namespace

uint64_t cacheBytes(const flatbuffers::Vector<int64_t> *shape, fb::DType dtype,
                    int64_t rows) {
  if (!shape || shape->size() == 0)
    return 0;
  uint64_t bytes = artifact::dtypeSize(dtype) * static_cast<uint64_t>(rows);
  for (uint32_t i = 1; i < shape->size(); ++i)
    bytes *= static_cast<uint64_t>(shape->Get(i)); // verified at load
  return bytes;
}

bool shapeBytes(const flatbuffers::Vector<int64_t> *dims, uint64_t elementSize,
                uint64_t &bytes) {
  bytes = elementSize;
  if (!dims)
    return true;
  for (int64_t dim : *dims)
    if (dim < 0 ||
        __builtin_mul_overflow(bytes, static_cast<uint64_t>(dim), &bytes))
      return false;
  return true;
}

bool parseCudaTarget(std::string_view target, CudaArch &arch) {
  constexpr std::string_view prefix = "cuda:sm_";
  if (target.substr(0, prefix.size()) != prefix)
    return false;
  target.remove_prefix(prefix.size());
  bool archSpecific = !target.empty() && target.back() == 'a';
  if (archSpecific)
    target.remove_suffix(1);
  if (target.size() < 2 || target.size() > 4)
    return false;
  int number = 0;
  for (char c : target) {
    if (c < '0' || c > '9')
      return false;
    number = number * 10 + (c - '0');
  }
  arch = {number / 10, number % 10, archSpecific};
  return arch.major > 0;
}

bool hasArtifactMagic(const std::string &path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  FdCloser closer{fd};
  char magic[sizeof(artifact::kMagic)];
  return ::pread(fd, magic, sizeof(magic), 0) ==
             static_cast<ssize_t>(sizeof(magic)) &&
         std::memcmp(magic, artifact::kMagic, sizeof(magic)) == 0;
}

Status ArtifactFile::open(const std::string &path, const Options &options,
                          std::unique_ptr<ArtifactFile> &out) {
  out.reset();
  std::unique_ptr<ArtifactFile> file(new ArtifactFile());
  file->filePath = path;

  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return makeStatus(MOEC_IO_ERROR, "%s: cannot open: %s", path.c_str(),
                      std::strerror(errno));
  FdCloser closer{fd};
  struct stat info;
  if (::fstat(fd, &info) != 0)
    return makeStatus(MOEC_IO_ERROR, "%s: cannot stat: %s", path.c_str(),
                      std::strerror(errno));
  if (!S_ISREG(info.st_mode))
    return makeStatus(MOEC_IO_ERROR, "%s: not a regular file", path.c_str());
  file->size = static_cast<uint64_t>(info.st_size);
  if (file->size < artifact::kHeaderSize)
    return invalidArtifact(
        "%s: file is %llu bytes, shorter than the 64-byte header "
        "(truncated?)",
        path.c_str(), static_cast<ull>(file->size));

  int flags = MAP_PRIVATE | (options.prefault ? MAP_POPULATE : 0);
  void *mapping = ::mmap(nullptr, file->size, PROT_READ, flags, fd, 0);
  if (mapping == MAP_FAILED)
    return makeStatus(MOEC_IO_ERROR, "%s: cannot mmap %llu bytes: %s",
                      path.c_str(), static_cast<ull>(file->size),
                      std::strerror(errno));
  file->data = static_cast<const uint8_t *>(mapping);

  MOEC_RETURN_IF_ERROR(file->verifyHeader().prefix(path));
  MOEC_RETURN_IF_ERROR(file->verifyTables().prefix(path));
  if (options.verifyChecksums)
    MOEC_RETURN_IF_ERROR(file->verifyChecksums().prefix(path));
  out = std::move(file);
  return Status();
}

ArtifactFile::~ArtifactFile() {
  if (data)
    ::munmap(const_cast<uint8_t *>(data), size);
}

Status ArtifactFile::verifyHeader() {
  if (std::memcmp(data, artifact::kMagic, sizeof(artifact::kMagic)) != 0)
    return invalidArtifact("not a .moec artifact (bad magic)");
  fileHeader = reinterpret_cast<const fb::FileHeader *>(data);
  const fb::FileHeader &header = *fileHeader;
  if (header.version_major() != artifact::kVersionMajor)
    return invalidArtifact(
        "format version %u.%u is not supported (this runtime "
        "reads %u.x)",
        header.version_major(), header.version_minor(),
        artifact::kVersionMajor);
  if (header.flags() != 0)
    return invalidArtifact("header: flags 0x%x set (reserved, must be 0)",
                           header.flags());
  if (header.table_offset() != artifact::kTableOffset)
    return invalidArtifact("header: table_offset %llu, expected %llu",
                           static_cast<ull>(header.table_offset()),
                           static_cast<ull>(artifact::kTableOffset));
  if (header.table_size() < 8 || header.table_size() > artifact::kMaxTableSize)
    return invalidArtifact("header: table_size %llu outside [8, 2^31)",
                           static_cast<ull>(header.table_size()));

  struct Section {
    const char *name;
    uint64_t offset, size;
  };
  Section sections[] = {
      {"table", header.table_offset(), header.table_size()},
      {"weights", header.weights_offset(), header.weights_size()},
      {"blobs", header.blobs_offset(), header.blobs_size()},
  };
  uint64_t previousEnd = 0;
  const char *previousName = "header";
  for (const Section &section : sections) {
    if (section.offset != artifact::kTableOffset &&
        section.offset % artifact::kSegmentAlignment != 0)
      return invalidArtifact("header: %s_offset %llu is not 4096-aligned",
                             section.name, static_cast<ull>(section.offset));
    if (section.offset < previousEnd)
      return invalidArtifact(
          "header: %s section at offset %llu overlaps the %s "
          "section (ends at %llu)",
          section.name, static_cast<ull>(section.offset), previousName,
          static_cast<ull>(previousEnd));
    if (!rangeFits(section.offset, section.size, size))
      return invalidArtifact(
          "header: %s section [%llu, +%llu) extends beyond the end "
          "of the file (%llu bytes; truncated?)",
          section.name, static_cast<ull>(section.offset),
          static_cast<ull>(section.size), static_cast<ull>(size));
    previousEnd = section.offset + section.size;
    previousName = section.name;
  }

  const uint8_t *table = data + header.table_offset();
  // The default limit of 1M tables is within reach of a large model's weight
  // table plus its dispatches; the table's size bounds the work anyway.
  flatbuffers::Verifier verifier(table, header.table_size(), /*max_depth=*/64,
                                 /*max_tables=*/1u << 30);
  if (!fb::VerifyArtifactBuffer(verifier))
    return invalidArtifact(
        "the FlatBuffer table [64, +%llu) fails verification "
        "(corrupt, or not written by moec)",
        static_cast<ull>(header.table_size()));
  root = fb::GetArtifact(table);
  if (root->schema_version() != header.version_major())
    return invalidArtifact("table: schema_version %u differs from the header's "
                           "version %u",
                           root->schema_version(), header.version_major());
  return Status();
}

Status ArtifactFile::verifyTables() const {
  const fb::FileHeader &header = *fileHeader;
  const fb::Artifact &art = *root;

  // Model information.
  const fb::ModelInfo *model = art.model();
  if (!model)
    return invalidArtifact("table: model is missing");
  if (model->vocab_size() < 1)
    return invalidArtifact("model.vocab_size %lld must be positive",
                           static_cast<long long>(model->vocab_size()));
  if (model->max_seq_len() < 1)
    return invalidArtifact("model.max_seq_len %lld must be positive",
                           static_cast<long long>(model->max_seq_len()));
  if (!validDType(model->compute_dtype()))
    return invalidArtifact("model.compute_dtype %d is not a known dtype",
                           static_cast<int>(model->compute_dtype()));
  if (model->bos_token_id() < -1 ||
      model->bos_token_id() >= model->vocab_size())
    return invalidArtifact(
        "model.bos_token_id %lld is outside [-1, vocab_size %lld)",
        static_cast<long long>(model->bos_token_id()),
        static_cast<long long>(model->vocab_size()));
  if (model->eos_token_ids())
    for (int64_t eos : *model->eos_token_ids())
      if (eos < 0 || eos >= model->vocab_size())
        return invalidArtifact(
            "model.eos_token_ids: %lld is outside [0, vocab_size "
            "%lld)",
            static_cast<long long>(eos),
            static_cast<long long>(model->vocab_size()));
  const int64_t capacity = model->max_seq_len();

  // Weights: inside the weight segment, aligned, size == shape * dtype.
  uint32_t numWeights = art.weights() ? art.weights()->size() : 0;
  for (uint32_t i = 0; i < numWeights; ++i) {
    const fb::Weight &weight = *art.weights()->Get(i);
    if (isEmpty(weight.name()))
      return invalidArtifact("weights[%u]: name is missing", i);
    const char *name = weight.name()->c_str();
    if (!validDType(weight.dtype()))
      return invalidArtifact("weights[%u] '%s': dtype %d is not a known dtype",
                             i, name, static_cast<int>(weight.dtype()));
    if (!weight.shape())
      return invalidArtifact("weights[%u] '%s': shape is missing", i, name);
    uint64_t elements, bytes;
    if (!shapeBytes(weight.shape(), 1, elements) || elements > UINT64_MAX / 8)
      return invalidArtifact(
          "weights[%u] '%s': shape has a negative dimension or "
          "overflows",
          i, name);
    if (!artifact::tensorBytes(weight.dtype(), elements, bytes))
      return invalidArtifact(
          "weights[%u] '%s': %llu elements are not whole %s blocks", i, name,
          static_cast<ull>(elements), artifact::dtypeName(weight.dtype()));
    if (bytes != weight.size())
      return invalidArtifact(
          "weights[%u] '%s': size %llu differs from shape x dtype "
          "(%llu bytes)",
          i, name, static_cast<ull>(weight.size()), static_cast<ull>(bytes));
    if (weight.offset() % artifact::kItemAlignment != 0)
      return invalidArtifact(
          "weights[%u] '%s': offset %llu is not 64-byte aligned", i, name,
          static_cast<ull>(weight.offset()));
    if (!rangeFits(weight.offset(), weight.size(), header.weights_size()))
      return invalidArtifact(
          "weights[%u] '%s': [%llu, +%llu) is outside the weight "
          "segment (%llu bytes)",
          i, name, static_cast<ull>(weight.offset()),
          static_cast<ull>(weight.size()),
          static_cast<ull>(header.weights_size()));
  }

  // KV caches: dimension 0 is the capacity.
  uint32_t numCaches = art.kv_caches() ? art.kv_caches()->size() : 0;
  for (uint32_t i = 0; i < numCaches; ++i) {
    const fb::KvCache &cache = *art.kv_caches()->Get(i);
    if (artifact::dtypeSize(cache.dtype()) == 0)
      return invalidArtifact("kv_caches[%u]: dtype %d is not a known dtype", i,
                             static_cast<int>(cache.dtype()));
    struct {
      const char *field;
      const flatbuffers::Vector<int64_t> *shape;
      bool required;
    } shapes[] = {{"key_shape", cache.key_shape(), true},
                  {"value_shape", cache.value_shape(), false}};
    for (const auto &[field, shape, required] : shapes) {
      if (!shape || shape->size() == 0) {
        if (required)
          return invalidArtifact("kv_caches[%u]: %s is missing", i, field);
        continue;
      }
      if (shape->Get(0) != capacity)
        return invalidArtifact(
            "kv_caches[%u]: %s[0] is %lld, expected the capacity "
            "model.max_seq_len %lld",
            i, field, static_cast<long long>(shape->Get(0)),
            static_cast<long long>(capacity));
      uint64_t bytes;
      for (int64_t dim : *shape)
        if (dim < 1)
          return invalidArtifact(
              "kv_caches[%u]: %s has a non-positive dimension", i, field);
      if (!shapeBytes(shape, artifact::dtypeSize(cache.dtype()), bytes))
        return invalidArtifact("kv_caches[%u]: %s overflows", i, field);
    }
  }

  // Executables: blob inside the blob segment, kernel names present.
  uint32_t numExecutables = art.executables() ? art.executables()->size() : 0;
  for (uint32_t i = 0; i < numExecutables; ++i) {
    const fb::Executable &executable = *art.executables()->Get(i);
    if (isEmpty(executable.target()) || isEmpty(executable.format()))
      return invalidArtifact("executables[%u]: target or format is missing", i);
    if (executable.blob_size() == 0)
      return invalidArtifact("executables[%u]: blob is empty", i);
    if (executable.blob_offset() % artifact::kItemAlignment != 0)
      return invalidArtifact("executables[%u]: blob_offset %llu is not 64-byte "
                             "aligned",
                             i, static_cast<ull>(executable.blob_offset()));
    if (!rangeFits(executable.blob_offset(), executable.blob_size(),
                   header.blobs_size()))
      return invalidArtifact(
          "executables[%u]: blob [%llu, +%llu) is outside the blob "
          "segment (%llu bytes)",
          i, static_cast<ull>(executable.blob_offset()),
          static_cast<ull>(executable.blob_size()),
          static_cast<ull>(header.blobs_size()));
    if (!executable.kernel_names() || executable.kernel_names()->size() == 0)
      return invalidArtifact("executables[%u]: kernel_names is empty", i);
    for (uint32_t k = 0; k < executable.kernel_names()->size(); ++k)
      if (isEmpty(executable.kernel_names()->Get(k)))
        return invalidArtifact("executables[%u]: kernel_names[%u] is empty", i,
                               k);
    if (isCudaTarget(executable.target()->string_view()))
      MOEC_RETURN_IF_ERROR(verifyCudaExecutable(executable, i));
  }

  // Entry points: every dispatch names an existing kernel and binds
  // existing weights, caches and arena bytes.
  if (!art.entry_points())
    return invalidArtifact("table: entry_points is missing");
  std::set<std::string_view> entryNames;
  for (uint32_t e = 0; e < art.entry_points()->size(); ++e) {
    const fb::EntryPoint &entry = *art.entry_points()->Get(e);
    if (isEmpty(entry.name()))
      return invalidArtifact("entry_points[%u]: name is missing", e);
    const char *entryName = entry.name()->c_str();
    if (!entryNames.insert(entry.name()->string_view()).second)
      return invalidArtifact("entry_points[%u]: duplicate name '%s'", e,
                             entryName);
    if (entry.max_tokens() < 1 || entry.max_tokens() > capacity)
      return invalidArtifact(
          "entry_points[%u] '%s': max_tokens %lld is outside [1, "
          "model.max_seq_len %lld]",
          e, entryName, static_cast<long long>(entry.max_tokens()),
          static_cast<long long>(capacity));
    if (!entry.dispatches())
      return invalidArtifact("entry_points[%u] '%s': dispatches is missing", e,
                             entryName);
    for (uint32_t d = 0; d < entry.dispatches()->size(); ++d) {
      const fb::Dispatch &dispatch = *entry.dispatches()->Get(d);
      std::string where = formatString("entry_points[%u] '%s': dispatches[%u]",
                                       e, entryName, d);
      if (dispatch.executable() >= numExecutables)
        return invalidArtifact("%s: executable index %u out of range (%u "
                               "executables)",
                               where.c_str(), dispatch.executable(),
                               numExecutables);
      const fb::Executable &executable =
          *art.executables()->Get(dispatch.executable());
      uint32_t numKernels = executable.kernel_names()->size();
      if (dispatch.kernel() >= numKernels)
        return invalidArtifact(
            "%s: kernel index %u out of range (executables[%u] has "
            "%u kernels)",
            where.c_str(), dispatch.kernel(), dispatch.executable(),
            numKernels);
      const fb::WorkSize *work = dispatch.work();
      int64_t perToken = work ? work->per_token() : 0;
      int64_t fixed = work ? work->fixed() : 0;
      int64_t total;
      if (perToken < 0 || fixed < 0 ||
          __builtin_mul_overflow(perToken, entry.max_tokens(), &total) ||
          __builtin_add_overflow(total, fixed, &total))
        return invalidArtifact("%s: work size %lld * T + %lld is negative or "
                               "overflows at T = %lld",
                               where.c_str(), static_cast<long long>(perToken),
                               static_cast<long long>(fixed),
                               static_cast<long long>(entry.max_tokens()));
      if (dispatch.grain() < 0)
        return invalidArtifact("%s: grain %lld is negative", where.c_str(),
                               static_cast<long long>(dispatch.grain()));
      if (!dispatch.bindings())
        return invalidArtifact("%s: bindings is missing", where.c_str());
      for (uint32_t b = 0; b < dispatch.bindings()->size(); ++b) {
        const fb::Binding &binding = *dispatch.bindings()->Get(b);
        switch (binding.kind()) {
        case fb::BindingKind::Arena:
          if (!rangeFits(binding.offset(), binding.size(), entry.arena_bytes()))
            return invalidArtifact(
                "%s: bindings[%u]: arena range [%llu, +%llu) "
                "exceeds arena_bytes %llu",
                where.c_str(), b, static_cast<ull>(binding.offset()),
                static_cast<ull>(binding.size()),
                static_cast<ull>(entry.arena_bytes()));
          break;
        case fb::BindingKind::Weight:
          if (binding.index() >= numWeights)
            return invalidArtifact(
                "%s: bindings[%u]: weight index %u out of range "
                "(%u weights)",
                where.c_str(), b, binding.index(), numWeights);
          break;
        case fb::BindingKind::KeyCache:
        case fb::BindingKind::ValueCache: {
          bool isKey = binding.kind() == fb::BindingKind::KeyCache;
          if (binding.index() >= numCaches)
            return invalidArtifact(
                "%s: bindings[%u]: %s index %u out of range (%u kv "
                "caches)",
                where.c_str(), b, artifact::bindingKindName(binding.kind()),
                binding.index(), numCaches);
          const fb::KvCache &cache = *art.kv_caches()->Get(binding.index());
          if (!isKey &&
              (!cache.value_shape() || cache.value_shape()->size() == 0))
            return invalidArtifact(
                "%s: bindings[%u]: kv_caches[%u] has no value "
                "cache",
                where.c_str(), b, binding.index());
          break;
        }
        case fb::BindingKind::TokenIds:
        case fb::BindingKind::Logits:
          break;
        default:
          return invalidArtifact(
              "%s: bindings[%u]: kind %d is not a known binding "
              "kind",
              where.c_str(), b, static_cast<int>(binding.kind()));
        }
      }
    }
  }
  if (!findEntryPoint("prefill"))
    return invalidArtifact("table: no entry point named 'prefill'");
  return Status();
}

const fb::EntryPoint *
ArtifactFile::findEntryPoint(std::string_view name) const {
  if (!root->entry_points())
    return nullptr;
  for (const fb::EntryPoint *entry : *root->entry_points())
    if (entry->name() && entry->name()->string_view() == name)
      return entry;
  return nullptr;
}

Status ArtifactFile::verifyChecksums() const {
  if (root->weights())
    for (uint32_t i = 0; i < root->weights()->size(); ++i) {
      const fb::Weight &weight = *root->weights()->Get(i);
      uint64_t actual = fnv1a64(weightData(weight), weight.size());
      if (actual != weight.checksum())
        return invalidArtifact(
            "weights[%u] '%s': checksum mismatch (stored %016llx, "
            "computed %016llx)",
            i, str(weight.name()), static_cast<ull>(weight.checksum()),
            static_cast<ull>(actual));
    }
  if (root->executables())
    for (uint32_t i = 0; i < root->executables()->size(); ++i) {
      const fb::Executable &executable = *root->executables()->Get(i);
      uint64_t actual = fnv1a64(blobData(executable), executable.blob_size());
      if (actual != executable.checksum())
        return invalidArtifact(
            "executables[%u]: checksum mismatch (stored %016llx, "
            "computed %016llx)",
            i, static_cast<ull>(executable.checksum()),
            static_cast<ull>(actual));
    }
  return Status();
}

} // namespace moec::runtime
