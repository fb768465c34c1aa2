//===- CpuBackend.h - moe IR -> CPU kernels and a dispatch plan -*- C++ -*-===//
//
// Part of moec. Turns the optimized `moe` module into what a CPU artifact
// holds: kernels compiled to a shared object, a flat dispatch list per entry
// point with bindings into a statically planned arena, the weight table
// (each weight a compile-time expression over checkpoint tensors) and the
// KV-cache geometry.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CONVERSION_CPUBACKEND_H
#define MOEC_CONVERSION_CPUBACKEND_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace moec {
class SafeTensorsCheckpoint;
struct ModelConfig;

namespace cpu {

/// Q8_0: GGUF's blocks of 32 int8 with an f16 scale (8.5 bits per weight),
/// widened to f32 in the dot products. CPU only.
enum class WeightType { F32, BF16, Q8_0 };

struct CpuOptions {
  /// Element type of matrix weights (1-D weights stay f32); activations and
  /// accumulation are f32 either way.
  WeightType weightType = WeightType::F32;
  /// Largest number of tokens one prefill call processes (longer prompts are
  /// run in chunks by the runtime).
  int64_t prefillChunk = 512;
  /// The prefill entry computes only the last position's logits (what
  /// generation needs) instead of every position's. CPU only for now.
  bool lastLogitsOnly = false;
  /// LLVM CPU name ("native" = this machine, "x86-64-v3" = portable AVX2).
  std::string cpu = "native";
  /// The activations' precision in dot products with bf16 weights: F32
  /// widens the weights (exact products), BF16 rounds the activations to
  /// bf16 (as transformers' bf16 compute does) and multiplies pairs with
  /// AVX512-BF16's vdpbf16ps; sums are f32 either way. Auto: BF16 where
  /// the CPU has AVX512-BF16.
  enum class DotActivations { Auto, F32, BF16 };
  DotActivations dotActivations = DotActivations::Auto;
  /// Non-empty: the kernels are for CUDA on this chip ("sm_90") instead of
  /// the CPU, built with the toolkit at `cudaToolkit`.
  std::string cudaChip;
  std::string cudaToolkit = "/usr/local/cuda";
  /// Called on the pass manager that lowers the kernels to the LLVM dialect,
  /// so that the driver's IR printing, dumping and timing cover it too.
  std::function<void(mlir::PassManager &)> instrument;
};

/// How a compile-time weight is computed from checkpoint tensors.
struct WeightExpr {
  // Stack and Concat along dim 0 write their operands one after another;
  // Concat along `dim` > 0 interleaves them per index of the leading dims.
  enum Kind { Param, Stack, Concat, Slice, DequantizeFp8 } kind = Param;
  std::string name; // Param: the checkpoint tensor
  std::vector<WeightExpr> operands;
  llvm::SmallVector<int64_t, 4> shape;
  // Concat: along `dim`. Slice: along `dim`, [offset, offset + size).
  int64_t dim = 0, offset = 0, size = 0;
  // DequantizeFp8: block sizes
  int64_t blockRows = 128, blockCols = 128;
};

struct PlannedWeight {
  std::string name;
  WeightType type = WeightType::F32;
  llvm::SmallVector<int64_t, 4> shape;
  WeightExpr expr;
  uint64_t parameters() const;
  uint64_t bytes() const;
};

struct PlannedBinding {
  enum Kind { Arena, Weight, KeyCache, ValueCache, TokenIds, Logits } kind;
  uint32_t index = 0;  // Weight / cache layer
  uint64_t offset = 0; // Arena
  uint64_t size = 0;   // Arena: bytes used at the entry's max tokens
};

struct PlannedDispatch {
  unsigned kernel = 0;
  llvm::SmallVector<PlannedBinding, 8> bindings;
  int64_t workPerToken = 0, workFixed = 0;
  /// Range boundaries are multiples of this many items (0: any): kernels
  /// whose per-item arithmetic depends on where a range starts (row tiles)
  /// then give the same bits for every thread count.
  int64_t grain = 0;
  std::string what; // the op it came from, for inspect/debugging
  /// Weight bytes one call reads (routed experts: only the selected ones'
  /// share, top_k / experts of the stacks).
  uint64_t weightBytesRead = 0;
};

struct PlannedEntry {
  std::string name;
  int64_t maxTokens = 0;
  /// Logits has one row per token; otherwise only the last position's.
  bool allLogits = true;
  uint64_t arenaBytes = 0;
  std::vector<PlannedDispatch> dispatches;
};

struct PlannedKvCache {
  llvm::SmallVector<int64_t, 3> keyShape, valueShape; // [S, heads, dim], f32
};

struct CpuProgram {
  std::vector<PlannedWeight> weights;
  std::vector<PlannedEntry> entries;
  std::vector<PlannedKvCache> kvCaches;
  std::vector<std::string> kernelNames;
  std::string kernelModule; // MLIR text of every kernel (for --emit=mlir)
  std::string sharedObject; // ELF shared object with the kernels
  std::string cpuName, cpuFeatures;
  // bf16-weight dot products take bf16 activations (dotActivations).
  bool bf16Dot = false;
  // CUDA (options.cudaChip set): the kernel module is a gpu.module; the
  // binary is a fatbin, cubin or PTX and every kernel has a launch geometry.
  std::string gpuTarget; // "cuda:sm_90"
  std::string gpuFormat; // "fatbin", "cubin", "ptx"
  std::string gpuBinary;
  struct Launch {
    unsigned blockThreads, itemsPerBlock;
  };
  std::vector<Launch> launches;
};

/// Plans the entry points of `module` (output of the moe optimization
/// pipeline) and generates their kernels (not yet compiled).
llvm::Expected<CpuProgram> planCpuProgram(mlir::ModuleOp module,
                                          const CpuOptions &options);

/// Kernel module text -> LLVM IR text, assembly, or an ELF shared object
/// (objects are linked with the system C compiler driver, `cc -shared`).
enum class CpuEmit { LlvmIR, Assembly, Object, SharedObject };
llvm::Expected<std::string> compileKernels(const std::string &kernelModule,
                                           const CpuOptions &options,
                                           CpuEmit emit,
                                           std::string *cpuName = nullptr,
                                           std::string *cpuFeatures = nullptr);

/// What the CUDA kernel compilation produces: the module lowered to the
/// NVVM/LLVM dialects, PTX text, a cubin, or a fatbin (cubin + PTX).
enum class GpuEmit { Nvvm, Ptx, Cubin, Fatbin };
/// Lowers the `gpu.module` kernel module for `options.cudaChip`. Cubin and
/// fatbin need the toolkit's ptxas/fatbinary; every form needs its libdevice.
llvm::Expected<std::string> compileGpuKernels(const std::string &kernelModule,
                                              const CpuOptions &options,
                                              GpuEmit emit);

/// True when the toolkit at `toolkit` has the ptxas and fatbinary that
/// cubin and fatbin output need.
bool hasCudaAssembler(llvm::StringRef toolkit);

/// Streams weight `weight` in its planned element type, in row-major order,
/// reading only the checkpoint tensors it needs, chunk by chunk.
llvm::Error writeWeight(const PlannedWeight &weight,
                        const SafeTensorsCheckpoint &checkpoint,
                        llvm::raw_ostream &os);

/// How writeArtifact() writes the file.
struct ArtifactOutput {
  /// Called after each weight with the bytes written so far and the total.
  std::function<void(uint64_t written, uint64_t total)> progress;
  /// The checkpoint's tokenizer.json / tokenizer_config.json, embedded when
  /// non-empty.
  std::string tokenizerJson, tokenizerConfigJson;
  /// Write a skeleton without the weight segment plus a manifest
  /// (`<output>.weights.json`: layout and each weight's recipe over
  /// checkpoint tensors) instead of the weights; bench/pack_deferred.py
  /// builds the artifact from them and a checkpoint.
  bool deferWeights = false;
};

/// Writes `program` as a .moec artifact at `outputPath` (atomically): model
/// info from `config`/`configJson`, every planned weight streamed from
/// `checkpoint`, the kernels (shared object or GPU binary), the entry points
/// and the KV caches.
llvm::Error writeArtifact(const CpuProgram &program, const ModelConfig &config,
                          llvm::StringRef configJson,
                          const SafeTensorsCheckpoint &checkpoint,
                          llvm::StringRef outputPath,
                          const ArtifactOutput &output);

} // namespace cpu
} // namespace moec

#endif // MOEC_CONVERSION_CPUBACKEND_H
