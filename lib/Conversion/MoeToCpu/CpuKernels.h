//===- CpuKernels.h - MLIR kernels for the CPU target ----------*- C++ -*-===//
//
// Part of moec. Every dispatch of the CPU plan runs one kernel generated
// here, specialized on the model's static sizes. A kernel body is MLIR in the
// scf/vector/memref/arith/math dialects over flat 1-D buffers; a generic
// wrapper gives it the runtime ABI
//
//   extern "C" void k(void *const *bindings, const int64_t *scalars,
//                     int64_t begin, int64_t end)
//
// (scalars[0] = tokens T of the call, scalars[1] = start position), so the
// runtime can split [begin, end) work ranges across its threads.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_CONVERSION_MOETOCPU_CPUKERNELS_H
#define MOEC_CONVERSION_MOETOCPU_CPUKERNELS_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringMap.h"
#include "llvm/ADT/StringRef.h"

#include <cstdint>
#include <string>
#include <vector>

namespace moec::cpu {

/// Launch geometry of a GPU kernel.
struct KernelLaunch {
  unsigned blockThreads, itemsPerBlock;
};

/// Element types of kernel bindings.
/// Q8: GGUF Q8_0 weight blocks in an i8 memref (see the @ld*_i8 helpers);
/// the element indices kernels use are the weights', not the bytes'.
enum class Elt { F32, BF16, Q8, I64, I32 };

/// Generates and deduplicates kernels: two dispatches with the same kernel
/// text share one function.
class KernelLibrary {
public:
  /// Each returns the kernel's index; `weight` is the element type of the
  /// large (matrix) weights (1-D weights are always f32).
  unsigned embedding(Elt weight, int64_t vocab, int64_t hidden);
  unsigned rmsNorm(int64_t hidden, double eps);
  unsigned addRmsNorm(int64_t hidden, double eps);
  unsigned elementwise(llvm::StringRef op /*addf|mulf*/);
  unsigned sigmoidGate(int64_t hidden);
  /// `roundedX` (with setBf16Dot, bf16 weights): x is bf16, rounded by a
  /// roundRows dispatch before (prefill), instead of f32 rounded in every
  /// dot product; here and in gateUp, groupedGateUp and groupedDown.
  unsigned linear(Elt weight, int64_t in, int64_t out, bool bias,
                  bool roundedX = false);
  /// y[r, :] = x[r, :] rounded to bf16; one item per row of `length`.
  unsigned roundRows(int64_t length);
  /// linear of the last token only: y[0, n] = x[T - 1, :] . w[n, :].
  unsigned lastRowLinear(Elt weight, int64_t in, int64_t out, bool bias);
  unsigned gateUp(Elt weight, int64_t hidden, int64_t inter,
                  bool roundedX = false);
  /// `packed`: one binding [E, 2 I, H] holds each expert's gate rows then
  /// its up rows (moe.fused_moe) instead of separate gate and up stacks.
  unsigned expertsGateUp(Elt weight, int64_t hidden, int64_t inter,
                         int64_t topK, bool packed = false);
  unsigned expertsDown(Elt weight, int64_t hidden, int64_t inter, int64_t topK);
  /// Token-grouped experts (prefill): expertsGroup sorts the (token,
  /// selection) slots by expert into a route buffer of 2 E + 1 + T K i32;
  /// groupedGateUp (E * I / 2 items, I even) and groupedDown (E * H / 4
  /// items, H % 4 == 0) read each expert's rows once for all its tokens;
  /// expertsCombine weights and sums the per-slot outputs.
  unsigned expertsGroup(int64_t experts, int64_t topK);
  unsigned groupedGateUp(Elt weight, int64_t hidden, int64_t inter,
                         int64_t experts, int64_t topK, bool packed = false,
                         bool roundedX = false);
  unsigned groupedDown(Elt weight, int64_t hidden, int64_t inter,
                       int64_t experts, bool roundedX = false);
  unsigned expertsCombine(int64_t hidden, int64_t topK);
  struct RouterSpec {
    int64_t experts, topK;
    bool sigmoid;
    enum { Greedy, GroupMax, GroupTop2 } grouping;
    int64_t groups, keptGroups;
    bool bias, normalize;
    double scale;
    /// Always-selected experts E .. E + appended - 1 (weight 1) after the
    /// top_k selections of each token.
    int64_t appended = 0;
    /// The appended experts' weight is sigmoid of a per-token gate binding
    /// (after the bias) instead of 1.
    bool gatedAppend = false;
    /// The gate is column `experts` of the logits rows (moe.fused_moe's
    /// router weight carries the gate row) rather than its own binding.
    bool gateInLogits = false;
    int64_t logitsRow() const { return experts + (gateInLogits ? 1 : 0); }
  };
  unsigned router(const RouterSpec &spec);
  /// An RMSNorm (of a + b with `add`) that a single-token kernel computes
  /// for itself before its work, instead of a dispatch of its own: its
  /// bindings a, [b,] weight, [sum out] lead the kernel's; the first work
  /// range stores the sum (the residual stream), every range keeps the
  /// normalized row in a local array.
  struct NormPrologue {
    bool present = false, add = false;
    int64_t hidden = 0;
    double eps = 0;
    unsigned bindings() const { return present ? (add ? 4u : 2u) : 0u; }
  };
  /// One token: y = rms_norm(x) W^T (+ bias). Bindings: the norm's, W,
  /// [bias,] y. Work: `out` rows.
  unsigned normLinear(const NormPrologue &norm, Elt weight, int64_t out,
                      bool bias);
  /// One token: h = silu(rms_norm(x) G^T) * (rms_norm(x) U^T) (moe.mlp's
  /// first half). Bindings: the norm's, G, U, h. Work: I / 2 row pairs.
  unsigned normGateUp(const NormPrologue &norm, Elt weight, int64_t inter);
  /// Single-token moe.fused_moe (decode), in two dispatches. routedGateUp:
  /// bindings (the norm's or x, router weight, [bias,] weights out, indices
  /// out, gate_up, h); KS * I / 2 items (slot, row pair), every range
  /// computing the normalized row, the router logits and the top-k itself
  /// (the first range also stores the routing for routedDown). routedDown:
  /// bindings (h, weights, indices, down, y); H / 4 items (four output
  /// features over all KS slots, weighted and summed as expertsDown does).
  unsigned routedGateUp(const RouterSpec &spec, const NormPrologue &norm,
                        Elt weight, int64_t hidden, int64_t inter);
  unsigned routedDown(Elt weight, int64_t hidden, int64_t inter, int64_t slots);
  /// Rotates dimensions [offset, dim) of each head, copies [0, offset).
  unsigned rope(int64_t heads, int64_t dim, bool interleaved,
                llvm::ArrayRef<float> invFreq, double attentionFactor,
                int64_t offset = 0);
  unsigned kvWrite(int64_t kvHeads, int64_t keyDim, int64_t valueDim);
  /// Absorbed MLA (moe.mla_attention) over latent/rope caches; bindings
  /// (query, kv_b weight, latent cache, rope cache, result).
  unsigned mlaAttention(Elt weight, int64_t heads, int64_t nope, int64_t rope,
                        int64_t valueDim, int64_t rank, double scale);
  /// The same for many tokens on the CPU: one item per token with all its
  /// heads, so each latent/rope cache row is read once per token (not once
  /// per head); tokens in groups of four share each W_UK / W_UV row load.
  /// Needs rank % 8 == 0.
  unsigned mlaAttentionByToken(Elt weight, int64_t heads, int64_t nope,
                               int64_t rope, int64_t valueDim, int64_t rank,
                               double scale);
  unsigned attention(int64_t heads, int64_t kvHeads, int64_t keyDim,
                     int64_t valueDim, double scale);
  /// out[r, :] = in[r, offset : offset + size] for rows of `inRow` values.
  unsigned sliceColumns(int64_t inRow, int64_t offset, int64_t size);
  /// out[r, :] = concat(a[r, :], b[r, :]).
  unsigned concatColumns(int64_t aRow, int64_t bRow);
  /// out[t, h, :] = in[t, :] for `heads` heads of `row` values.
  unsigned broadcastRows(int64_t heads, int64_t row);

  /// Composite kernels of the single-token CPU plan, calling the parts'
  /// bodies; each part's bindings follow the previous part's. A part runs
  /// `perToken * T + fixed` items.
  struct Part {
    unsigned kernel;
    int64_t perToken, fixed;
  };
  /// Per item i: item i of `first`, then item i of `second` (one item space;
  /// item i of `second` reads only what item i of `first` wrote).
  unsigned itemwise(unsigned first, unsigned second);
  /// One item: the parts in order, each over all its items.
  unsigned sequence(llvm::ArrayRef<Part> parts);
  /// `main` over the range; the range that holds item 0 then runs `side`
  /// (work independent of `main`'s) in order.
  unsigned withSideJob(unsigned main, llvm::ArrayRef<Part> side);

  /// Lanes of the f32 vectors in the dot-product helpers: 8 (AVX2), or 16
  /// for targets with AVX-512, whose 512-bit units do twice the work per
  /// instruction. Set before any kernel is requested.
  void setVectorWidth(int lanes) { vectorWidth = lanes; }
  /// bf16 weights meet activations rounded to bf16 in the dot products
  /// (AVX512-BF16 `vdpbf16ps`, two products per f32 lane, f32 sums) instead
  /// of being widened to f32. Needs 16 lanes. Set before any kernel.
  void setBf16Dot(bool enable) { bf16Dot = enable; }
  bool usesBf16Dot() const { return bf16Dot; }

  /// Kernel names in index order ("k0", "k1", ...).
  std::vector<std::string> names() const;
  /// The module text of every kernel, wrappers included.
  std::string moduleText() const;
  /// The same kernels as one `gpu.module` of `gpu.func` kernels (the CUDA
  /// ABI of docs/artifact.md), and their launch geometry in index order.
  std::string gpuModuleText() const;
  std::vector<KernelLaunch> launches() const;

  /// The x operand of a single-token kernel's dot products (singleTokenX):
  /// text that prepares it, its SSA value, memref type and offset.
  struct XOperand {
    std::string prepare, value, type, offset;
    bool rounded() const { return type != "memref<?xf32>"; }
  };

private:
  /// `warpBody`, when given, is the kernel's CUDA form: one warp per work
  /// item (%item, %lane, with the body's constants), instead of one thread
  /// running `body` for one item.
  unsigned add(const std::string &key, llvm::ArrayRef<Elt> bindings,
               const std::string &body, const std::string &warpBody = "");
  std::string helpers(bool gpu) const;
  struct Kernel;
  std::string bodyFunction(const Kernel &kernel) const;
  std::string warpKernel(const Kernel &kernel) const;
  std::string mlaTiledPositions(int64_t heads, int64_t rank, int64_t rope);
  std::string vectorMlaBody(Elt weight, int64_t heads, int64_t nope,
                            int64_t rope, int64_t valueDim, int64_t rank,
                            double scale, bool cooperative);

  struct Kernel {
    std::string name;
    llvm::SmallVector<Elt, 8> bindings;
    std::string body; // function body text using %b0.. and %T %pos %begin %end
    std::string warpBody;
    // GPU: one warp per work item runs `body` (set for bodies that call the
    // lane-cooperative @copy).
    bool warpItems = false;
    // GPU: workgroup memory of a cooperative warp body (all warps of a
    // block work on one item).
    std::string workgroup;
  };
  std::vector<Kernel> kernels;
  llvm::StringMap<unsigned> byKey;
  int vectorWidth = 8;
  bool bf16Dot = false;
  // Shared helper functions (dot products) requested by kernels.
  llvm::StringMap<std::string> helperText;
  // GPU-only helpers (warp reductions), emitted in the gpu.module alone.
  llvm::StringMap<std::string> gpuHelperText;
  std::vector<std::string> globals;

  std::string dot(Elt weight, int64_t length, bool roundedX = false);
  std::string dot4(Elt weight, int64_t length, bool roundedX = false);
  /// The memref type of x in the helpers' calls.
  std::string xType(bool roundedX) const;
  /// `rows` weight rows against `tokens` (4 or 1) rows of x.
  std::string dotTile(Elt weight, int64_t length, int rows, int tokens = 4,
                      bool roundedX = false);
  /// How a dot-product helper steps through x (f32) and a weight row:
  /// `step` elements per accumulator update, with the MLIR text that loads
  /// x and weight vectors and multiply-accumulates (placeholders %$V value,
  /// %$I index, %$M weight memref, %$R result, %$A accumulator, %$X / %$WV
  /// operands), and that loads one x value of the scalar tail.
  struct DotStep {
    int64_t step;
    std::string loadX, loadW, multiplyAdd, loadXScalar;
    std::string xElt; // x's element type: f32, or bf16 for roundedX
  };
  /// Widened weights times f32 x, or (setBf16Dot, bf16 weights) pairs of
  /// bf16 weights times x rounded to bf16: as it is loaded, or, with
  /// `roundedX`, x already rounded (a bf16 buffer, see singleTokenX).
  DotStep dotStep(Elt weight, bool roundedX = false);
  /// The x operand of a single-token kernel's dot products: `source` at
  /// `offset` as is, or with bf16 pairs a bf16 copy of its `length` values
  /// that `prepare` rounds once per work range (pass roundedX = true to the
  /// helpers then).
  XOperand singleTokenX(Elt weight, const std::string &source,
                        const std::string &offset, int64_t length);
  /// Substitutions for the MLA output's W_UV products over the latent row
  /// `source` at `offset`: $DOTW (the helper), $LV/$LO/$LT (its x operand)
  /// and, with bf16 pairs, $LALLOC (a bf16 buffer, at the top of the body)
  /// and $LROUND (fills it from the finished row); empty otherwise.
  std::vector<std::pair<std::string, std::string>>
  latentRowValues(Elt weight, const std::string &source,
                  const std::string &offset, int64_t rank);
  /// The router's body for tokens [tBegin, tEnd), writing the selections'
  /// weights and indices to the memrefs named `weightsOut`/`indicesOut`.
  static std::string
  routerText(const RouterSpec &spec, const std::string &logits,
             const std::string &bias, const std::string &weightsOut,
             const std::string &indicesOut, const std::string &tBegin,
             const std::string &tEnd);
  /// A warp-wide dot product (GPU): every lane of the warp gets the sum.
  std::string warpDot(Elt weight, int64_t length);
};

/// Whether the CPU named by `--cpu` ("native": this machine) has AVX-512F
/// (implemented with the LLVM target machine in Codegen.cpp).
bool cpuHasAvx512(const std::string &cpuOption);
/// Whether that CPU has AVX512-BF16 (vdpbf16ps).
bool cpuHasAvx512Bf16(const std::string &cpuOption);
/// Whether it converts f16 in hardware (the Q8_0 scales).
bool cpuHasF16c(const std::string &cpuOption);

} // namespace moec::cpu

#endif // MOEC_CONVERSION_MOETOCPU_CPUKERNELS_H
