//===- ArtifactFile.h - a mapped and verified .moec artifact ----*- C++ -*-===//
//
// Part of moec. Opens an artifact with mmap and checks everything a consumer
// relies on before anything is dereferenced: header, section bounds,
// FlatBuffer verification, then the semantic checks of docs/artifact.md
// (every index, offset and size). The runtime's model loader and the
// compiler's `moec inspect` and writer self-check share this code.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_ARTIFACTFILE_H
#define MOEC_RUNTIME_ARTIFACTFILE_H

#include "ArtifactFormat.h"
#include "Status.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace moec::runtime {

/// Product of `dims` times `elementSize`, or false on overflow or a negative
/// dimension.
bool shapeBytes(const flatbuffers::Vector<int64_t> *dims, uint64_t elementSize,
                uint64_t &bytes);

/// Whether an executable's `target` is for the CUDA device ("cuda...").
inline bool isCudaTarget(std::string_view target) {
  return target.substr(0, 4) == "cuda";
}

/// A cuda target `cuda:sm_<digits>[a]` parsed: "cuda:sm_90a" is {9, 0,
/// true}, "cuda:sm_100" {10, 0, false}.
struct CudaArch {
  int major = 0, minor = 0;
  bool archSpecific = false; // the 'a' suffix: this exact arch only
};
/// False when `target` is not of that form (2 to 4 digits, major >= 1).
bool parseCudaTarget(std::string_view target, CudaArch &arch);

/// Bytes of a KV cache of `shape` with dimension 0 replaced by `rows` (the
/// rows a session allocates); 0 for an absent shape.
uint64_t cacheBytes(const flatbuffers::Vector<int64_t> *shape, fb::DType dtype,
                    int64_t rows);

/// A verified artifact, mapped read-only for its whole lifetime.
/// Immutable after open(): thread-safe.
class ArtifactFile {
public:
  struct Options {
    /// Recompute every weight's and blob's checksum (reads the whole file).
    bool verifyChecksums = false;
    /// Fault the whole mapping in up front (MAP_POPULATE).
    bool prefault = false;
  };

  /// Maps and verifies the artifact at `path`. Errors are prefixed with the
  /// path; MOEC_IO_ERROR when the file cannot be read, MOEC_INVALID_ARTIFACT
  /// for any inconsistency.
  static Status open(const std::string &path, const Options &options,
                     std::unique_ptr<ArtifactFile> &out);

  ~ArtifactFile();
  ArtifactFile(const ArtifactFile &) = delete;
  ArtifactFile &operator=(const ArtifactFile &) = delete;

  const std::string &path() const { return filePath; }
  uint64_t fileSize() const { return size; }
  const fb::FileHeader &header() const { return *fileHeader; }
  const fb::Artifact &artifact() const { return *root; }
  const fb::ModelInfo &model() const { return *root->model(); }

  /// Bytes of a weight / blob of this artifact (inside the mapping).
  const uint8_t *weightData(const fb::Weight &weight) const {
    return data + fileHeader->weights_offset() + weight.offset();
  }
  /// The weight segment (header.weights_size() bytes).
  const uint8_t *weightSegment() const {
    return data + fileHeader->weights_offset();
  }
  const uint8_t *blobData(const fb::Executable &executable) const {
    return data + fileHeader->blobs_offset() + executable.blob_offset();
  }

  /// The entry point named `name`, or null.
  const fb::EntryPoint *findEntryPoint(std::string_view name) const;

  /// Recomputes every checksum; the first mismatch is an error naming the
  /// weight or executable.
  Status verifyChecksums() const;

private:
  ArtifactFile() = default;
  Status verifyHeader();
  Status verifyTables() const;

  std::string filePath;
  const uint8_t *data = nullptr;
  uint64_t size = 0;
  const fb::FileHeader *fileHeader = nullptr;
  const fb::Artifact *root = nullptr;
};

/// True when the first bytes of the file at `path` are the artifact magic
/// (false when it cannot be read). Lets tools tell an artifact from other
/// inputs before reporting why it is invalid.
bool hasArtifactMagic(const std::string &path);

} // namespace moec::runtime

#endif // MOEC_RUNTIME_ARTIFACTFILE_H
