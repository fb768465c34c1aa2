//===- ArtifactWriter.h - writing .moec artifacts ---------------*- C++ -*-===//
//
// Part of moec. The compiler's side of the artifact contract
// (runtime/schema/moec_artifact.fbs, docs/artifact.md): an ArtifactBuilder
// collects the model description, weights, KV-cache geometry, executables
// and entry points, and writes one file.
//
// Weights are streamed: each addWeight() call writes its bytes straight to
// the output's temporary file (hashing them on the way), so a multi-GB model
// is never held in memory. The FlatBuffer table, which must precede the
// weights, is written last into a region reserved at the start of the file
// (Options::tableReserveBytes, 1 MiB by default, left sparse); when the
// table outgrows the reservation, finish() moves the weight and blob
// segments up (a streaming copy inside the file) to make room.
//
// Nothing half-written is ever visible: the file is built under a temporary
// name next to the destination and renamed by finish() only after the
// runtime's own verifier (the one moec_model_load runs) accepts it. A
// builder destroyed without a successful finish() deletes its temporary
// file.
//
// Typical use:
//   auto builder = ArtifactBuilder::create("m.moec");
//   (*builder)->setModelInfo(info);
//   auto embed = (*builder)->addWeight("model.embed_tokens.weight",
//       ArtifactDType::BF16, {vocab, hidden},
//       [&](raw_ostream &os) { os << bytes; return Error::success(); });
//   uint32_t layer0 = (*builder)->addKvCache({0, ArtifactDType::BF16,
//       {maxSeqLen, kvHeads, headDim}, {maxSeqLen, kvHeads, headDim}});
//   auto cpu = (*builder)->addExecutable(
//       {"cpu", "elf-shared-object", "+avx2,+fma", {"embed", ...}}, soBytes);
//   (*builder)->addEntryPoint({"prefill", /*maxTokens=*/64, arenaBytes,
//       /*allLogits=*/true, {dispatches...}});
//   if (Error error = (*builder)->finish()) ...
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TARGET_ARTIFACTWRITER_H
#define MOEC_TARGET_ARTIFACTWRITER_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/STLFunctionalExtras.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace flatbuffers {
class DetachedBuffer;
} // namespace flatbuffers

namespace moec {

/// Element type of a weight or KV cache (the schema's DType).
/// Q8_0 (weights only) is GGUF's block format: 32 elements as an f16 scale
/// and 32 int8 (34 bytes).
enum class ArtifactDType : uint8_t { F32, F16, BF16, F8E4M3, I32, I64, Q8_0 };

/// Bytes per element of `dtype` (0 for Q8_0: see artifactTensorBytes).
uint64_t artifactDTypeSize(ArtifactDType dtype);
/// Bytes of `elements` values of `dtype`; false where they are no whole
/// number of Q8_0 blocks.
bool artifactTensorBytes(ArtifactDType dtype, uint64_t elements,
                         uint64_t &bytes);

/// ModelInfo of the schema: what moec-run and `moec inspect` show.
struct ArtifactModelInfo {
  std::string modelType; // config.json model_type
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t numLayers = 0;
  int64_t maxSeqLen = 0; // KV-cache capacity the kernels were built for
  int64_t bosTokenId = -1;
  std::vector<int64_t> eosTokenIds;
  ArtifactDType computeDType = ArtifactDType::F32;
  std::string configJson; // the checkpoint's config.json, verbatim
  /// The checkpoint's tokenizer files, verbatim; empty: none embedded.
  std::string tokenizerJson;
  std::string tokenizerConfigJson;
};

/// Where one kernel argument points (the schema's Binding). Use the
/// factories; the runtime turns each binding into a pointer.
struct ArtifactBinding {
  enum class Kind : uint8_t {
    Arena,      // the activation arena + offset
    Weight,     // weights[index] (as returned by addWeight)
    KeyCache,   // key cache of kv_caches[index] (as returned by addKvCache)
    ValueCache, // value cache of kv_caches[index]
    TokenIds,   // int64[T], the call's token ids (read-only)
    Logits,     // float32[T, vocab] (or [1, vocab], see allLogits)
  };
  Kind kind = Kind::Arena;
  uint32_t index = 0;
  uint64_t offset = 0; // Arena only
  uint64_t size = 0;   // Arena only: bytes used at T = maxTokens

  static ArtifactBinding arena(uint64_t offset, uint64_t size) {
    return {Kind::Arena, 0, offset, size};
  }
  static ArtifactBinding weight(uint32_t weightIndex) {
    return {Kind::Weight, weightIndex, 0, 0};
  }
  static ArtifactBinding keyCache(uint32_t cacheIndex) {
    return {Kind::KeyCache, cacheIndex, 0, 0};
  }
  static ArtifactBinding valueCache(uint32_t cacheIndex) {
    return {Kind::ValueCache, cacheIndex, 0, 0};
  }
  static ArtifactBinding tokenIds() { return {Kind::TokenIds, 0, 0, 0}; }
  static ArtifactBinding logits() { return {Kind::Logits, 0, 0, 0}; }
};

/// One kernel launch: work items [0, workPerToken * T + workFixed) split
/// into ranges whose boundaries are multiples of `grain` (0: any).
struct ArtifactDispatch {
  uint32_t executable = 0; // as returned by addExecutable
  uint32_t kernel = 0;     // index into that executable's kernelNames
  std::vector<ArtifactBinding> bindings;
  int64_t workPerToken = 0;
  int64_t workFixed = 0;
  int64_t grain = 0;
};

/// A flat list of dispatches run in order with a barrier between each.
struct ArtifactEntryPoint {
  std::string name;      // "prefill" (required) or "decode"
  int64_t maxTokens = 1; // T of one call is in [1, maxTokens]
  uint64_t arenaBytes = 0;
  /// true: Logits is [T, vocab]; false: only the last position's row.
  bool allLogits = true;
  std::vector<ArtifactDispatch> dispatches;
};

/// KV-cache geometry of one layer. Dimension 0 of each shape is the
/// capacity (== ArtifactModelInfo::maxSeqLen); an empty valueShape means
/// the layer has no separate value cache.
struct ArtifactKvCache {
  uint32_t layer = 0;
  ArtifactDType dtype = ArtifactDType::F32;
  std::vector<int64_t> keyShape;
  std::vector<int64_t> valueShape;
};

/// Description of an executable blob (its bytes are passed separately).
struct ArtifactExecutable {
  std::string target;      // "cpu", "cuda:sm_90"
  std::string format;      // "elf-shared-object", "fatbin", "cubin", "ptx"
  std::string cpuFeatures; // "+avx2,+fma" (cpu)
  /// extern "C" symbols the dispatches call, in kernel-index order.
  std::vector<std::string> kernelNames;
  /// GPU executables: the launch geometry of each kernel, in the same order.
  struct Launch {
    uint32_t blockThreads, itemsPerBlock;
  };
  std::vector<Launch> launches;
};

class ArtifactBuilder {
public:
  struct Options {
    /// Written to Artifact.producer.
    std::string producer = "moec";
    /// Bytes reserved for the FlatBuffer before the weight segment. The
    /// unused part stays a hole in the file (no disk blocks on Linux
    /// filesystems). A larger table still works, but finish() must then move
    /// every weight (a copy of the file): pass suggestedTableReserve() for
    /// models whose table may exceed the default.
    uint64_t tableReserveBytes = 1 << 20;
    /// Deferred weights: addWeight() does not call its writer (the weight
    /// segment stays a hole, checksums are 0) and finish() publishes a
    /// *skeleton*: the artifact with its weight segment cut out, i.e. bytes
    /// [0, weights_offset) followed by the blob segment. A packer that
    /// writes each weight at weights_offset + offset and the blobs at
    /// blobs_offset rebuilds a runnable artifact (bench/pack_deferred.py).
    bool deferWeights = false;
  };

  /// Where finish() put the segments, and each weight's offset in its
  /// segment (valid after a successful finish()).
  struct Layout {
    uint64_t weightsOffset, weightsSize, blobsOffset, blobsSize;
    std::vector<uint64_t> weightOffsets;
  };
  const Layout &layout() const { return finalLayout; }

  /// A reservation comfortably above the table size of an artifact with
  /// `numWeights` weights, `numDispatches` dispatches over all entry points
  /// and a config.json of `configJsonBytes` (budgets 512 bytes per weight
  /// and per dispatch: names, shapes, a dozen bindings).
  static uint64_t suggestedTableReserve(uint64_t numWeights,
                                        uint64_t numDispatches,
                                        uint64_t configJsonBytes) {
    return (64 << 10) + configJsonBytes + 512 * (numWeights + numDispatches);
  }

  /// Writes bytes of one weight into the artifact.
  using WeightWriter = llvm::function_ref<llvm::Error(llvm::raw_ostream &)>;

  /// Starts an artifact that finish() will publish at `outputPath`; creates
  /// its temporary file in the same directory.
  static llvm::Expected<std::unique_ptr<ArtifactBuilder>>
  create(llvm::StringRef outputPath, Options options);
  static llvm::Expected<std::unique_ptr<ArtifactBuilder>>
  create(llvm::StringRef outputPath) {
    return create(outputPath, Options());
  }

  ~ArtifactBuilder();
  ArtifactBuilder(const ArtifactBuilder &) = delete;
  ArtifactBuilder &operator=(const ArtifactBuilder &) = delete;

  void setModelInfo(ArtifactModelInfo info);

  /// Appends a weight of `shape` x `dtype`: `write` must write exactly
  /// product(shape) * sizeof(dtype) bytes to the stream it is given, which
  /// goes to disk as they come. Returns the weight's index for
  /// ArtifactBinding::weight. Names must be unique. An error (from `write`,
  /// a size mismatch or the disk) fails the whole builder.
  llvm::Expected<uint32_t> addWeight(llvm::StringRef name, ArtifactDType dtype,
                                     llvm::ArrayRef<int64_t> shape,
                                     WeightWriter write);
  /// Convenience for bytes already in memory.
  llvm::Expected<uint32_t> addWeight(llvm::StringRef name, ArtifactDType dtype,
                                     llvm::ArrayRef<int64_t> shape,
                                     llvm::ArrayRef<char> bytes);

  /// Returns the cache's index for ArtifactBinding::keyCache/valueCache.
  uint32_t addKvCache(ArtifactKvCache cache);

  /// Adds an executable; `blob` is copied (written by finish(), after the
  /// weights). Returns its index for ArtifactDispatch::executable.
  uint32_t addExecutable(ArtifactExecutable executable,
                         llvm::ArrayRef<char> blob);

  void addEntryPoint(ArtifactEntryPoint entry);

  /// Writes the blobs, the FlatBuffer and the header, checks the file with
  /// the runtime's verifier (indices, offsets, sizes: the same checks
  /// moec_model_load runs) and renames it to the output path. On error the
  /// temporary file is removed and nothing exists at the output path that
  /// was not there before. Call at most once.
  llvm::Error finish();

  uint32_t numWeights() const { return weights.size(); }

private:
  struct WeightRecord {
    std::string name;
    ArtifactDType dtype;
    std::vector<int64_t> shape;
    uint64_t offset, size, checksum;
  };
  struct ExecutableRecord {
    ArtifactExecutable description;
    std::vector<char> blob;
  };

  ArtifactBuilder() = default;
  llvm::Error fail(llvm::Error error);
  llvm::Error checkUsable() const;
  llvm::Error writeZeros(uint64_t count);
  llvm::Error moveSegments(uint64_t from, uint64_t to, uint64_t end);
  flatbuffers::DetachedBuffer
  buildTable(llvm::ArrayRef<uint64_t> blobOffsets) const;
  void discard();

  Options options;
  std::string outputPath;
  std::string tempPath;
  int fd = -1; // of `file`, for reading back when segments move
  std::unique_ptr<llvm::raw_fd_ostream> file;
  bool failed = false;
  bool finished = false;

  // File offset of the weight segment while weights stream in.
  uint64_t weightsOffset = 0;
  // Bytes of the weight segment written so far.
  uint64_t weightsSize = 0;
  Layout finalLayout;
  llvm::Error writeSkeleton(uint64_t blobsOffset, uint64_t blobsSize);

  bool hasModelInfo = false;
  ArtifactModelInfo modelInfo;
  std::vector<WeightRecord> weights;
  llvm::StringSet<> weightNames;
  std::vector<ArtifactKvCache> kvCaches;
  std::vector<ExecutableRecord> executables;
  std::vector<ArtifactEntryPoint> entryPoints;
};

} // namespace moec

#endif // MOEC_TARGET_ARTIFACTWRITER_H
