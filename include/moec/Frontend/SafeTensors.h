//===- SafeTensors.h - memory-mapped safetensors checkpoints ----*- C++ -*-===//
//
// Part of moec. Opens a HuggingFace checkpoint directory (model.safetensors,
// or shards listed by model.safetensors.index.json), validates every header
// strictly and exposes each tensor as a view into the mapped file. Opening
// parses headers only; tensor bytes are paged in when they are read.
//
// Links only LLVMSupport so tools other than the compiler can reuse it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_FRONTEND_SAFETENSORS_H
#define MOEC_FRONTEND_SAFETENSORS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace llvm::sys::fs {
class mapped_file_region;
} // namespace llvm::sys::fs

namespace moec {

/// Element types a safetensors header may name (the subset moec reads).
enum class DType : uint8_t {
  F64,
  F32,
  F16,
  BF16,
  F8_E4M3, // float8_e4m3fn
  I64,
  I32,
  I16,
  I8,
  U8,
  BOOL,
};

/// The safetensors spelling: "BF16", "F8_E4M3", ...
llvm::StringRef dtypeName(DType dtype);
/// Inverse of dtypeName; std::nullopt for names moec does not support.
std::optional<DType> parseDType(llvm::StringRef name);
/// Bytes per element.
uint64_t dtypeSize(DType dtype);

/// One tensor of the checkpoint. `data` points into the mapping owned by the
/// SafeTensorsCheckpoint and may be unaligned.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  std::string shardPath;   // the file holding the tensor
  uint64_t fileOffset = 0; // absolute offset of the first byte in that file
  uint64_t nbytes = 0;
  const uint8_t *data = nullptr;

  int64_t numElements() const;
  llvm::ArrayRef<uint8_t> bytes() const { return {data, nbytes}; }
};

/// A read-only, memory-mapped checkpoint. Movable, not copyable; TensorInfo
/// pointers and data stay valid for its lifetime (also across moves).
class SafeTensorsCheckpoint {
public:
  struct Shard {
    std::string path;
    /// The file's "__metadata__" (string to string, per the format).
    llvm::StringMap<std::string> metadata;
  };

  /// Opens `directory`: model.safetensors if present (transformers prefers
  /// it too), else model.safetensors.index.json and the shards it names.
  static llvm::Expected<SafeTensorsCheckpoint> open(llvm::StringRef directory);
  /// Opens one .safetensors file.
  static llvm::Expected<SafeTensorsCheckpoint> openFile(llvm::StringRef path);
  /// Parses safetensors bytes the caller keeps alive (tests, the fuzzer);
  /// `name` stands for the file in error messages.
  static llvm::Expected<SafeTensorsCheckpoint>
  parseBuffer(llvm::ArrayRef<uint8_t> bytes, llvm::StringRef name);

  SafeTensorsCheckpoint(SafeTensorsCheckpoint &&);
  SafeTensorsCheckpoint &operator=(SafeTensorsCheckpoint &&);
  ~SafeTensorsCheckpoint();

  /// All tensors in natural name order (digit runs compare as numbers, so
  /// "layers.2" precedes "layers.10").
  llvm::ArrayRef<TensorInfo> tensors() const { return tensorList; }
  /// The tensor called `name`, or nullptr.
  const TensorInfo *find(llvm::StringRef name) const;
  /// Like find, but a missing tensor is an error naming it.
  llvm::Expected<const TensorInfo &> get(llvm::StringRef name) const;

  /// Shards in file-name order (one entry for a single-file checkpoint).
  llvm::ArrayRef<Shard> shards() const { return shardList; }
  /// The union of the shards' "__metadata__"; the first shard wins on
  /// conflicting keys.
  llvm::StringMap<std::string> metadata() const;

  /// Converts tensor `name` to f32 into `out` (numElements() floats). F32,
  /// F16 and BF16 convert elementwise; an F8_E4M3 tensor with a
  /// `<name>_scale_inv` companion is block-dequantized with `blockRows` x
  /// `blockCols` blocks (DeepSeek's fp8 format).
  llvm::Error readAsF32(llvm::StringRef name, llvm::MutableArrayRef<float> out,
                        int64_t blockRows = 128, int64_t blockCols = 128) const;

private:
  SafeTensorsCheckpoint() = default;
  llvm::Error addFile(llvm::StringRef path, llvm::StringRef displayName);
  llvm::Error addBuffer(llvm::ArrayRef<uint8_t> file, llvm::StringRef path,
                        llvm::StringRef displayName);
  void finalize();

  std::vector<std::unique_ptr<llvm::sys::fs::mapped_file_region>> mappings;
  std::vector<Shard> shardList;
  std::vector<TensorInfo> tensorList;
  llvm::StringMap<size_t> index;
};

/// Converts elements [firstElement, firstElement + out.size()) of `tensor`
/// (F32, F16, BF16 or F8_E4M3) to f32. Usable chunk by chunk.
llvm::Error convertToF32(const TensorInfo &tensor, int64_t firstElement,
                         llvm::MutableArrayRef<float> out);

/// DeepSeek block-fp8 dequantization of rows [rowBegin, rowEnd) of
/// `weight` (F8_E4M3, [M, N]) with `scaleInv` (F32, [ceil(M / blockRows),
/// ceil(N / blockCols)]):
///   out[i - rowBegin][j] = f8(weight[i][j]) * scaleInv[i / blockRows]
///                                                      [j / blockCols]
/// exactly as DeepSeek-V3's reference weight_dequant; edge blocks are
/// partial. `out` holds (rowEnd - rowBegin) * N floats, row-major.
llvm::Error dequantizeFp8BlockRows(const TensorInfo &weight,
                                   const TensorInfo &scaleInv, int64_t rowBegin,
                                   int64_t rowEnd,
                                   llvm::MutableArrayRef<float> out,
                                   int64_t blockRows = 128,
                                   int64_t blockCols = 128);

/// The same on raw buffers: `weight` holds rows x cols fp8 bytes and
/// `scaleInv` ceil(rows / blockRows) x ceil(cols / blockCols) little-endian
/// f32 values (possibly unaligned). No validation; callers check shapes.
void dequantizeFp8Blocks(const uint8_t *weight, const uint8_t *scaleInv,
                         int64_t rows, int64_t cols, int64_t rowBegin,
                         int64_t rowEnd, int64_t blockRows, int64_t blockCols,
                         float *out);

} // namespace moec

#endif // MOEC_FRONTEND_SAFETENSORS_H
