//===- CpuKernels.cpp - MLIR kernels for the CPU target -------------------===//
//
// Part of moec. Kernel bodies are MLIR text with `$NAME` placeholders filled
// from the op's static sizes. Text keeps the math readable next to the
// transformers code it mirrors; every kernel is parsed and verified before
// lowering, so a malformed template fails the compile, never the model.
//
// Conventions inside a body: bindings are `%b0, %b1, ...` of type
// `memref<?xT>` (flat, row-major), scalars are `%T`, `%pos`, `%begin`,
// `%end` (index), and `%c0 %c1 %c8 %f0 %f1` are predefined constants.
// Weight loads go through `@ld_<dtype>` / `@ld8_<dtype>` so one body serves
// f32 and bf16 weights.
//
//===----------------------------------------------------------------------===//

#include "CpuKernels.h"
#include "KernelText.h"

#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>

using namespace moec::cpu;
using namespace moec::cpu::text;
using llvm::formatv;

//===----------------------------------------------------------------------===//
// Library bookkeeping
//===----------------------------------------------------------------------===//

unsigned KernelLibrary::add(const std::string &key,
                            llvm::ArrayRef<Elt> bindings,
                            const std::string &body,
                            const std::string &warpBody) {
  auto [it, inserted] = byKey.try_emplace(key, kernels.size());
  if (inserted) {
    // On the GPU, @copy is lane-cooperative: a body that calls it runs one
    // warp per work item.
    bool warpItems =
        warpBody.empty() && body.find("@copy(") != std::string::npos;
    kernels.push_back({"k" + std::to_string(kernels.size()),
                       llvm::SmallVector<Elt, 8>(bindings), body, warpBody,
                       warpItems});
  }
  return it->second;
}

std::vector<std::string> KernelLibrary::names() const {
  std::vector<std::string> result;
  for (const Kernel &kernel : kernels)
    result.push_back(kernel.name);
  return result;
}

// Loads of Q8_0 weights (Elt::Q8): element i lives in block i / 32, 34
// bytes each (an f16 scale d, then 32 int8 q), and reads as d * q. A vector
// load stays inside one block: rows are whole blocks (the planner checks)
// and vectors start at multiples of their width.
static constexpr const char *kQ8Helpers = R"(
  func.func private @q8_scale(%m: memref<?xi8>, %s: index) -> f32 $INTERNAL {
    %v = vector.load %m[%s] : memref<?xi8>, vector<2xi8>
    %h = vector.bitcast %v : vector<2xi8> to vector<1xf16>
    %f = arith.extf %h : vector<1xf16> to vector<1xf32>
    %r = vector.extract %f[0] : f32 from vector<1xf32>
    return %r : f32
  }
  func.func private @q8_at(%i: index) -> (index, index) $INTERNAL {
    %c2 = arith.constant 2 : index
    %c32 = arith.constant 32 : index
    %c34 = arith.constant 34 : index
    %b = arith.divui %i, %c32 : index
    %e = arith.remui %i, %c32 : index
    %s = arith.muli %b, %c34 : index
    %q0 = arith.addi %s, %c2 : index
    %q = arith.addi %q0, %e : index
    return %s, %q : index, index
  }
  func.func private @ld_i8(%m: memref<?xi8>, %i: index) -> f32 $INTERNAL {
    %s, %qi = func.call @q8_at(%i) : (index) -> (index, index)
    %q = memref.load %m[%qi] : memref<?xi8>
    %qf = arith.sitofp %q : i8 to f32
    %d = func.call @q8_scale(%m, %s) : (memref<?xi8>, index) -> f32
    %r = arith.mulf %qf, %d : f32
    return %r : f32
  }
  // One whole block (i a multiple of 32): its values as two f32 vectors,
  // unscaled, and the scale in every lane. Widening makes the loop slow
  // enough per byte that the hardware prefetchers fall behind: blocks 8 KiB
  // ahead are prefetched (decode 1.5-1.8x faster, measured; a prefetch past
  // the mapping's end does not fault).
  func.func private @ldq32_i8(%m: memref<?xi8>, %i: index) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>) $INTERNAL {
    %c2 = arith.constant 2 : index
    %c18 = arith.constant 18 : index
    %c32 = arith.constant 32 : index
    %c34 = arith.constant 34 : index
    %b = arith.divui %i, %c32 : index
    %s = arith.muli %b, %c34 : index
    %lo = arith.addi %s, %c2 : index
    %hi = arith.addi %s, %c18 : index
    %ahead = arith.constant 8704 : index
    %pf = arith.addi %s, %ahead : index
    memref.prefetch %m[%pf], read, locality<3>, data : memref<?xi8>
    %ql = vector.load %m[%lo] : memref<?xi8>, vector<16xi8>
    %qh = vector.load %m[%hi] : memref<?xi8>, vector<16xi8>
    %fl = arith.sitofp %ql : vector<16xi8> to vector<16xf32>
    %fh = arith.sitofp %qh : vector<16xi8> to vector<16xf32>
    %dv = vector.load %m[%s] : memref<?xi8>, vector<2xi8>
    %dh = vector.bitcast %dv : vector<2xi8> to vector<1xf16>
    %dx = vector.extract %dh[0] : f16 from vector<1xf16>
    %db = vector.broadcast %dx : f16 to vector<16xf16>
    %d = arith.extf %db : vector<16xf16> to vector<16xf32>
    return %fl, %fh, %d : vector<16xf32>, vector<16xf32>, vector<16xf32>
  }
)";

// $LANES consecutive Q8_0 weights (a vector never straddles a block), each
// scaled by its block's d; instantiated for 8 and 16 lanes.
static constexpr const char *kQ8LanesHelper = R"(
  func.func private @ld$LANES_i8(%m: memref<?xi8>, %i: index) -> vector<$LANESxf32> $INTERNAL {
    %s, %qi = func.call @q8_at(%i) : (index) -> (index, index)
    %q = vector.load %m[%qi] : memref<?xi8>, vector<$LANESxi8>
    %qf = arith.sitofp %q : vector<$LANESxi8> to vector<$LANESxf32>
    %d = func.call @q8_scale(%m, %s) : (memref<?xi8>, index) -> f32
    %dv = vector.broadcast %d : f32 to vector<$LANESxf32>
    %r = arith.mulf %qf, %dv : vector<$LANESxf32>
    return %r : vector<$LANESxf32>
  }
)";

std::string KernelLibrary::helpers(bool gpu) const {
  std::string text;
  for (const char *wt : {"f32", "bf16"}) {
    std::string ext = std::string(wt) == "f32"
                          ? "    %r = arith.addf %v, %zero : f32\n"
                          : "    %r = arith.extf %v : bf16 to f32\n";
    std::string ext8 =
        std::string(wt) == "f32"
            ? "    %r = arith.addf %v, %zero : vector<8xf32>\n"
            : "    %r = arith.extf %v : vector<8xbf16> to vector<8xf32>\n";
    std::string ext16 =
        std::string(wt) == "f32"
            ? "    %r = arith.addf %v, %zero : vector<16xf32>\n"
            : "    %r = arith.extf %v : vector<16xbf16> to vector<16xf32>\n";
    text += subst(R"(
  func.func private @ld_$W(%m: memref<?x$W>, %i: index) -> f32 $INTERNAL {
    %zero = arith.constant -0.0 : f32
    %v = memref.load %m[%i] : memref<?x$W>
$EXT    return %r : f32
  }
  func.func private @ld8_$W(%m: memref<?x$W>, %i: index) -> vector<8xf32> $INTERNAL {
    %zero = arith.constant dense<-0.0> : vector<8xf32>
    %v = vector.load %m[%i] : memref<?x$W>, vector<8x$W>
$EXT8    return %r : vector<8xf32>
  }
  func.func private @ld16_$W(%m: memref<?x$W>, %i: index) -> vector<16xf32> $INTERNAL {
    %zero = arith.constant dense<-0.0> : vector<16xf32>
    %v = vector.load %m[%i] : memref<?x$W>, vector<16x$W>
$EXT16    return %r : vector<16xf32>
  }
)",
                  {{"W", wt}, {"EXT", ext}, {"EXT8", ext8}, {"EXT16", ext16}});
  }
  if (!gpu) {
    text += kQ8Helpers;
    for (const char *lanes : {"8", "16"})
      text += subst(kQ8LanesHelper, {{"LANES", lanes}});
  }
  text += R"(
  func.func private @sigmoid(%a: f32) -> f32 $INTERNAL {
    %one = arith.constant 1.0 : f32
    %n = arith.negf %a : f32
    %e = math.exp %n : f32
    %d = arith.addf %one, %e : f32
    %r = arith.divf %one, %d : f32
    return %r : f32
  }
  func.func private @silu(%a: f32) -> f32 $INTERNAL {
    %s = func.call @sigmoid(%a) : (f32) -> f32
    %r = arith.mulf %a, %s : f32
    return %r : f32
  }
  // One step of an online softmax: running max m and sum l, a new score s
  // -> the new max and sum, the factor rescaling what was accumulated, and
  // the new score's weight.
  func.func private @online_softmax(%m: f32, %l: f32, %s: f32) -> (f32, f32, f32, f32) $INTERNAL {
    %m2 = arith.maximumf %m, %s : f32
    %dm = arith.subf %m, %m2 : f32
    %corr = math.exp %dm : f32
    %ds = arith.subf %s, %m2 : f32
    %pr = math.exp %ds : f32
    %lc = arith.mulf %l, %corr : f32
    %l2 = arith.addf %lc, %pr : f32
    return %m2, %l2, %corr, %pr : f32, f32, f32, f32
  }
  // Sum of squares of x[o : o + n].
  func.func private @sumsq(%x: memref<?xf32>, %o: index, %n: index) -> f32 $INTERNAL {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %f0 = arith.constant 0.0 : f32
    %s = scf.for %i = %c0 to %n step %c1 iter_args(%a = %f0) -> (f32) {
      %j = arith.addi %o, %i : index
      %v = memref.load %x[%j] : memref<?xf32>
      %r = math.fma %v, %v, %a : f32
      scf.yield %r : f32
    }
    return %s : f32
  }
  // dst[do : do + n] = src[so : so + n]
  func.func private @copy(%src: memref<?xf32>, %so: index, %dst: memref<?xf32>, %do: index, %n: index) $INTERNAL {
$COPYLOOP
      %s = arith.addi %so, %i : index
      %d = arith.addi %do, %i : index
      %v = memref.load %src[%s] : memref<?xf32>
      memref.store %v, %dst[%d] : memref<?xf32>
    }
    return
  }
)";
  for (const auto &entry : helperText)
    text += entry.second;
  if (gpu) {
    // Butterfly sum over a warp: every lane gets the total.
    text += R"(
  func.func private @warp_sum(%s: f32) -> f32 $INTERNAL {
    %width = arith.constant 32 : i32
    %o16 = arith.constant 16 : i32
    %o8 = arith.constant 8 : i32
    %o4 = arith.constant 4 : i32
    %o2 = arith.constant 2 : i32
    %o1 = arith.constant 1 : i32
    %p16, %v16 = gpu.shuffle xor %s, %o16, %width : f32
    %s16 = arith.addf %s, %p16 : f32
    %p8, %v8 = gpu.shuffle xor %s16, %o8, %width : f32
    %s8 = arith.addf %s16, %p8 : f32
    %p4, %v4 = gpu.shuffle xor %s8, %o4, %width : f32
    %s4 = arith.addf %s8, %p4 : f32
    %p2, %v2 = gpu.shuffle xor %s4, %o2, %width : f32
    %s2 = arith.addf %s4, %p2 : f32
    %p1, %v1 = gpu.shuffle xor %s2, %o1, %width : f32
    %sum = arith.addf %s2, %p1 : f32
    return %sum : f32
  }
)";
    for (const auto &entry : gpuHelperText)
      text += entry.second;
  }
  for (const std::string &global : globals)
    text += global;
  // On the GPU a warp copies together: lane l copies every 32nd value
  // (kernels calling @copy run one warp per work item).
  const char *copyLoop = gpu ? R"(    %c32 = arith.constant 32 : index
    %thread = gpu.thread_id x
    %lane = arith.remui %thread, %c32 : index
    scf.for %i = %lane to %n step %c32 {)"
                             : R"(    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    scf.for %i = %c0 to %n step %c1 {)";
  return subst(text, {{"INTERNAL", kInternal}, {"COPYLOOP", copyLoop}});
}

// The activations of a bf16-pair dot product (setBf16Dot): x[i : i + 32]
// rounded to bf16 (to nearest even, as a torch bf16 cast) in order, to pair
// with 32 weights in `x86vector.avx512.dot`; and one value rounded, for the
// tails.
static constexpr const char *kBf16PairHelpers = R"(
  func.func private @ldx32_bf16(%x: memref<?xf32>, %i: index) -> vector<32xbf16> $INTERNAL {
    %c16 = arith.constant 16 : index
    %j = arith.addi %i, %c16 : index
    %lo = vector.load %x[%i] : memref<?xf32>, vector<16xf32>
    %hi = vector.load %x[%j] : memref<?xf32>, vector<16xf32>
    %l = arith.truncf %lo : vector<16xf32> to vector<16xbf16>
    %h = arith.truncf %hi : vector<16xf32> to vector<16xbf16>
    %r = vector.shuffle %l, %h [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31] : vector<16xbf16>, vector<16xbf16>
    return %r : vector<32xbf16>
  }
  func.func private @round_bf16(%v: f32) -> f32 $INTERNAL {
    %t = arith.truncf %v : f32 to bf16
    %r = arith.extf %t : bf16 to f32
    return %r : f32
  }
  // dst[do : do + n] = src[so : so + n] rounded to bf16, 16 at a time, then
  // the rest.
  func.func private @round_row_bf16(%src: memref<?xf32>, %so: index, %dst: memref<?xbf16>, %do: index, %n: index) $INTERNAL {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c16 = arith.constant 16 : index
    %n16 = arith.divui %n, %c16 : index
    %nv = arith.muli %n16, %c16 : index
    scf.for %i = %c0 to %nv step %c16 {
      %si = arith.addi %so, %i : index
      %di = arith.addi %do, %i : index
      %v = vector.load %src[%si] : memref<?xf32>, vector<16xf32>
      %t = arith.truncf %v : vector<16xf32> to vector<16xbf16>
      vector.store %t, %dst[%di] : memref<?xbf16>, vector<16xbf16>
    }
    scf.for %i = %nv to %n step %c1 {
      %si = arith.addi %so, %i : index
      %di = arith.addi %do, %i : index
      %v = memref.load %src[%si] : memref<?xf32>
      %t = arith.truncf %v : f32 to bf16
      memref.store %t, %dst[%di] : memref<?xbf16>
    }
    return
  }
)";

KernelLibrary::DotStep KernelLibrary::dotStep(Elt weight, bool roundedX) {
  if (weight == Elt::BF16 && bf16Dot) {
    // vdpbf16ps: lane i accumulates x[2i] w[2i] + x[2i + 1] w[2i + 1].
    helperText["@ldx32_bf16"] = kBf16PairHelpers;
    if (roundedX)
      return {32,
              "%$V = vector.load %x[%$I] : memref<?xbf16>, vector<32xbf16>",
              "%$V = vector.load %$M[%$I] : memref<?xbf16>, vector<32xbf16>",
              "%$R = x86vector.avx512.dot %$A, %$X, %$WV : vector<32xbf16> -> "
              "vector<16xf32>",
              "%$V.b = memref.load %x[%$I] : memref<?xbf16>\n      %$V = "
              "arith.extf %$V.b : bf16 to f32",
              "bf16"};
    return {32,
            "%$V = func.call @ldx32_bf16(%x, %$I) : (memref<?xf32>, index) -> "
            "vector<32xbf16>",
            "%$V = vector.load %$M[%$I] : memref<?xbf16>, vector<32xbf16>",
            "%$R = x86vector.avx512.dot %$A, %$X, %$WV : vector<32xbf16> -> "
            "vector<16xf32>",
            "%$V.f = memref.load %x[%$I] : memref<?xf32>\n      %$V = "
            "func.call @round_bf16(%$V.f) : (f32) -> f32",
            "f32"};
  }
  if (weight == Elt::Q8 && vectorWidth == 16)
    // A whole Q8_0 block per step: its 32 products summed, then scaled once.
    return {32,
            "%$V.l = vector.load %x[%$I] : memref<?xf32>, vector<16xf32>\n"
            "      %$V.o = arith.constant 16 : index\n"
            "      %$V.j = arith.addi %$I, %$V.o : index\n"
            "      %$V.h = vector.load %x[%$V.j] : memref<?xf32>, "
            "vector<16xf32>",
            "%$V.l, %$V.h, %$V.d = func.call @ldq32_i8(%$M, %$I) : "
            "(memref<?xi8>, index) -> (vector<16xf32>, vector<16xf32>, "
            "vector<16xf32>)",
            "%$R.m = arith.mulf %$X.l, %$WV.l : vector<16xf32>\n"
            "      %$R.n = vector.fma %$X.h, %$WV.h, %$R.m : vector<16xf32>\n"
            "      %$R = vector.fma %$R.n, %$WV.d, %$A : vector<16xf32>",
            "%$V = memref.load %x[%$I] : memref<?xf32>",
            "f32"};
  std::string vw = num(vectorWidth), w = eltName(weight);
  return {vectorWidth,
          "%$V = vector.load %x[%$I] : memref<?xf32>, vector<" + vw + "xf32>",
          "%$V = func.call @ld" + vw + "_" + w + "(%$M, %$I) : (memref<?x" + w +
              ">, index) -> vector<" + vw + "xf32>",
          "%$R = vector.fma %$X, %$WV, %$A : vector<" + vw + "xf32>",
          "%$V = memref.load %x[%$I] : memref<?xf32>",
          "f32"};
}

std::vector<std::pair<std::string, std::string>>
KernelLibrary::latentRowValues(Elt weight, const std::string &source,
                               const std::string &offset, int64_t rank) {
  if (!(weight == Elt::BF16 && bf16Dot))
    return {{"DOTW", dot(weight, rank)},
            {"LALLOC", ""},
            {"LROUND", ""},
            {"LV", source},
            {"LO", offset},
            {"LT", "memref<?xf32>"}};
  helperText["@ldx32_bf16"] = kBf16PairHelpers;
  return {{"DOTW", dot(weight, rank, /*roundedX=*/true)},
          {"LALLOC", subst(R"(    %lrba = memref.alloca() : memref<$Rxbf16>
    %lrb = memref.cast %lrba : memref<$Rxbf16> to memref<?xbf16>
    %lrbn = arith.constant $R : index
)",
                           {{"R", num(rank)}})},
          {"LROUND",
           subst("        func.call @round_row_bf16($SRC, $OFF, %lrb, %c0, "
                 "%lrbn) : (memref<?xf32>, index, memref<?xbf16>, index, "
                 "index) -> ()\n",
                 {{"SRC", source}, {"OFF", offset}})},
          {"LV", "%lrb"},
          {"LO", "%c0"},
          {"LT", "memref<?xbf16>"}};
}

std::string KernelLibrary::xType(bool roundedX) const {
  return roundedX && bf16Dot ? "memref<?xbf16>" : "memref<?xf32>";
}

unsigned KernelLibrary::roundRows(int64_t length) {
  helperText["@ldx32_bf16"] = kBf16PairHelpers;
  std::string body = subst(R"(    %n = arith.constant $N : index
    scf.for %item = %begin to %end step %c1 {
      %o = arith.muli %item, %n : index
      func.call @round_row_bf16(%b0, %o, %b1, %o, %n) : (memref<?xf32>, index, memref<?xbf16>, index, index) -> ()
    }
)",
                           {{"N", num(length)}});
  return add(body, {Elt::F32, Elt::BF16}, body);
}

KernelLibrary::XOperand KernelLibrary::singleTokenX(Elt weight,
                                                    const std::string &source,
                                                    const std::string &offset,
                                                    int64_t length) {
  if (!(weight == Elt::BF16 && bf16Dot))
    return {"", source, "memref<?xf32>", offset};
  // Rounded once per range: every row's dot products then load bf16 pairs.
  helperText["@ldx32_bf16"] = kBf16PairHelpers;
  return {subst(R"(    %xbfa = memref.alloca() : memref<$Nxbf16>
    %xbf = memref.cast %xbfa : memref<$Nxbf16> to memref<?xbf16>
    %xbfn = arith.constant $N : index
    func.call @round_row_bf16($SRC, $OFF, %xbf, %c0, %xbfn) : (memref<?xf32>, index, memref<?xbf16>, index, index) -> ()
)",
                {{"N", num(length)}, {"SRC", source}, {"OFF", offset}}),
          "%xbf", "memref<?xbf16>", "%c0"};
}

// Bytes per element as the kernels index memrefs (Q8_0: the int8 values,
// its blocks add a 2-byte scale per 32).
static int64_t eltBytes(Elt elt) {
  switch (elt) {
  case Elt::BF16:
    return 2;
  case Elt::Q8:
    return 1;
  case Elt::I64:
    return 8;
  case Elt::F32:
  case Elt::I32:
    return 4;
  }
  return 4;
}

// How far ahead of where a single-token dot product reads its weight row
// it prefetches (bytes): far enough to cover memory latency at one core's
// streaming rate, near enough to stay in L1/L2 until used.
static constexpr int64_t kDotPrefetchBytes = 8192;

// Weight rows stream from memory once per token. A single core issues too
// few requests on its own to keep up (the hardware prefetchers stop at page
// boundaries), so single-token dot products prefetch the row
// kDotPrefetchBytes ahead of where they read; rows are contiguous, so that
// reaches into the next rows. Q8_0's block loads prefetch themselves
// (@ldq32_i8), so only f32 and bf16 rows get this: the text for one
// prefetch at `memref`[`index` + ahead], its values named after `tag`.
static std::string rowPrefetch(Elt weight, const std::string &memref,
                               const std::string &index,
                               const std::string &tag) {
  if (weight != Elt::F32 && weight != Elt::BF16)
    return "";
  return subst(R"(      %pfd$T = arith.constant $D : index
      %pf$T = arith.addi $I, %pfd$T : index
      memref.prefetch $M[%pf$T], read, locality<3>, data : memref<?x$W>
)",
               {{"T", tag},
                {"D", num(kDotPrefetchBytes / eltBytes(weight))},
                {"I", index},
                {"M", memref},
                {"W", eltName(weight)}});
}

// Dot product of x[xo : xo + length] (f32) and w[wo : wo + length]: four
// vector accumulators, then one, then a scalar tail.
std::string KernelLibrary::dot(Elt weight, int64_t length, bool roundedX) {
  // Vector width VW: 8 lanes, or 16 on AVX-512 targets (setVectorWidth).
  int vw = vectorWidth;
  DotStep step = dotStep(weight, roundedX);
  std::string name =
      weight == Elt::BF16 && bf16Dot
          ? formatv("@dotbf_{0}_x{1}", length, step.xElt).str()
      : vw == 8 ? formatv("@dot_{0}_{1}", eltName(weight), length).str()
                : formatv("@dot{0}_{1}_{2}", vw, eltName(weight), length).str();
  if (helperText.count(name))
    return name;
  auto loads = [&](int q) {
    std::string i = num(q);
    return "      " +
           subst(step.loadX, {{"V", "x" + i}, {"I", "x" + i + "i"}}) +
           "\n      " +
           subst(step.loadW,
                 {{"V", "w" + i}, {"I", "w" + i + "i"}, {"M", "w"}}) +
           "\n";
  };
  auto madd = [&](const std::string &r, const std::string &a,
                  const std::string &x, const std::string &w) {
    return "      " +
           subst(step.multiplyAdd, {{"R", r}, {"A", a}, {"X", x}, {"WV", w}}) +
           "\n";
  };
  // One prefetch per 64-byte cache line of the four loads.
  std::string prefetches;
  for (int q = 0; q < 4; ++q)
    if (q * step.step * eltBytes(weight) % 64 == 0)
      prefetches += rowPrefetch(weight, "%w", "%w" + num(q) + "i", num(q));
  std::string text =
      R"(
  func.func private $NAME(%x: memref<?x$XE>, %xo: index, %w: memref<?x$W>, %wo: index) -> f32 $INTERNAL {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c8 = arith.constant $S : index
    %c16 = arith.constant $S2 : index
    %c24 = arith.constant $S3 : index
    %c32 = arith.constant $S4 : index
    %k32 = arith.constant $K32 : index
    %k8 = arith.constant $K8 : index
    %kk = arith.constant $K : index
    %z = arith.constant dense<0.0> : vector<$VWxf32>
    %a:4 = scf.for %k = %c0 to %k32 step %c32 iter_args(%a0 = %z, %a1 = %z, %a2 = %z, %a3 = %z)
        -> (vector<$VWxf32>, vector<$VWxf32>, vector<$VWxf32>, vector<$VWxf32>) {
      %x0i = arith.addi %xo, %k : index
      %w0i = arith.addi %wo, %k : index
      %x1i = arith.addi %x0i, %c8 : index
      %w1i = arith.addi %w0i, %c8 : index
      %x2i = arith.addi %x0i, %c16 : index
      %w2i = arith.addi %w0i, %c16 : index
      %x3i = arith.addi %x0i, %c24 : index
      %w3i = arith.addi %w0i, %c24 : index
)" + prefetches +
      loads(0) + loads(1) + loads(2) + loads(3) + madd("r0", "a0", "x0", "w0") +
      madd("r1", "a1", "x1", "w1") + madd("r2", "a2", "x2", "w2") +
      madd("r3", "a3", "x3", "w3") +
      R"(      scf.yield %r0, %r1, %r2, %r3 : vector<$VWxf32>, vector<$VWxf32>, vector<$VWxf32>, vector<$VWxf32>
    }
    %s01 = arith.addf %a#0, %a#1 : vector<$VWxf32>
    %s23 = arith.addf %a#2, %a#3 : vector<$VWxf32>
    %s = arith.addf %s01, %s23 : vector<$VWxf32>
    %b = scf.for %k = %k32 to %k8 step %c8 iter_args(%acc = %s) -> (vector<$VWxf32>) {
      %xi = arith.addi %xo, %k : index
      %wi = arith.addi %wo, %k : index
      )" +
      subst(step.loadX, {{"V", "xv"}, {"I", "xi"}}) + "\n      " +
      subst(step.loadW, {{"V", "wv"}, {"I", "wi"}, {"M", "w"}}) + "\n" +
      madd("r", "acc", "xv", "wv") + R"(      scf.yield %r : vector<$VWxf32>
    }
    %red = vector.reduction <add>, %b fastmath<reassoc> : vector<$VWxf32> into f32
    %t = scf.for %k = %k8 to %kk step %c1 iter_args(%acc = %red) -> (f32) {
      %xi = arith.addi %xo, %k : index
      %wi = arith.addi %wo, %k : index
      )" +
      subst(step.loadXScalar, {{"V", "xv"}, {"I", "xi"}}) + R"(
      %wv = func.call @ld_$W(%w, %wi) : (memref<?x$W>, index) -> f32
      %r = math.fma %xv, %wv, %acc : f32
      scf.yield %r : f32
    }
    return %t : f32
  }
)";
  int64_t s = step.step;
  helperText[name] = subst(text, {{"NAME", name},
                                  {"W", eltName(weight)},
                                  {"XE", step.xElt},
                                  {"K32", num(length / (4 * s) * (4 * s))},
                                  {"K8", num(length / s * s)},
                                  {"K", num(length)},
                                  {"VW", num(vw)},
                                  {"S", num(s)},
                                  {"S2", num(2 * s)},
                                  {"S3", num(3 * s)},
                                  {"S4", num(4 * s)}});
  return name;
}

// Four dot products of rows x[xo0..3 : + length] with one weight row: each
// weight vector is loaded once for four tokens (prefill's register
// blocking). A 1 x 4 dotTile: the same lanes and order as a 4 x 4 one, so
// that a row computes the same bits through either (ranges of rows may
// start anywhere).
std::string KernelLibrary::dot4(Elt weight, int64_t length, bool roundedX) {
  return dotTile(weight, length, 1, 4, roundedX);
}

std::string KernelLibrary::bodyFunction(const Kernel &kernel) const {
  std::string params;
  for (auto [i, elt] : llvm::enumerate(kernel.bindings))
    params += formatv("%b{0}: memref<?x{1}>, ", i, eltName(elt)).str();
  std::string text =
      formatv("  func.func private @{0}_body({1}%T: index, %pos: index, "
              "%begin: index, %end: index) {2} {{\n",
              kernel.name, params, kInternal)
          .str();
  text += R"(    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c8 = arith.constant 8 : index
    %f0 = arith.constant 0.0 : f32
    %f1 = arith.constant 1.0 : f32
)";
  text += kernel.body;
  text += "    return\n  }\n";
  return text;
}

std::string KernelLibrary::moduleText() const {
  std::string text = "module {\n" + helpers(/*gpu=*/false);
  for (const Kernel &kernel : kernels) {
    text += bodyFunction(kernel);

    // The ABI wrapper: raw pointers -> flat memref descriptors.
    const char *desc =
        "!llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>";
    text += formatv("  func.func @{0}(%bind: !llvm.ptr, %scal: !llvm.ptr, "
                    "%begin64: i64, %end64: i64) {{\n",
                    kernel.name)
                .str();
    text += formatv(R"(    %zero = llvm.mlir.constant(0 : i64) : i64
    %one = llvm.mlir.constant(1 : i64) : i64
    %huge = llvm.mlir.constant(4611686018427387904 : i64) : i64
    %u = llvm.mlir.undef : {0}
    %u1 = llvm.insertvalue %zero, %u[2] : {0}
    %u2 = llvm.insertvalue %huge, %u1[3, 0] : {0}
    %u3 = llvm.insertvalue %one, %u2[4, 0] : {0}
)",
                    desc)
                .str();
    std::string args;
    for (auto [i, elt] : llvm::enumerate(kernel.bindings)) {
      text +=
          formatv(
              R"(    %g{0} = llvm.getelementptr %bind[{0}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr
    %p{0} = llvm.load %g{0} : !llvm.ptr -> !llvm.ptr
    %d{0}a = llvm.insertvalue %p{0}, %u3[0] : {1}
    %d{0} = llvm.insertvalue %p{0}, %d{0}a[1] : {1}
    %m{0} = builtin.unrealized_conversion_cast %d{0} : {1} to memref<?x{2}>
)",
              i, desc, eltName(elt))
              .str();
      args += formatv("%m{0}, ", i).str();
    }
    std::string types;
    for (Elt elt : kernel.bindings)
      types += formatv("memref<?x{0}>, ", eltName(elt)).str();
    text += formatv(R"(    %T64 = llvm.load %scal : !llvm.ptr -> i64
    %gpos = llvm.getelementptr %scal[1] : (!llvm.ptr) -> !llvm.ptr, i64
    %pos64 = llvm.load %gpos : !llvm.ptr -> i64
    %T = arith.index_cast %T64 : i64 to index
    %pos = arith.index_cast %pos64 : i64 to index
    %begin = arith.index_cast %begin64 : i64 to index
    %end = arith.index_cast %end64 : i64 to index
    func.call @{0}_body({1}%T, %pos, %begin, %end) : ({2}index, index, index, index) -> ()
    return
  }
)",
                    kernel.name, args, types)
                .str();
  }
  return text + "}\n";
}

//===----------------------------------------------------------------------===//
// Kernels
//===----------------------------------------------------------------------===//

// Work: T rows. out[t, :] = table[clamp(ids[t]), :]
unsigned KernelLibrary::embedding(Elt weight, int64_t vocab, int64_t hidden) {
  std::string body = subst(
      R"(    %H = arith.constant $H : index
    %vmax = arith.constant $VMAX : i64
    %zero64 = arith.constant 0 : i64
    scf.for %t = %begin to %end step %c1 {
      %id0 = memref.load %b1[%t] : memref<?xi64>
      %id1 = arith.maxsi %id0, %zero64 : i64
      %id2 = arith.minsi %id1, %vmax : i64
      %id = arith.index_cast %id2 : i64 to index
      %src = arith.muli %id, %H : index
      %dst = arith.muli %t, %H : index
      scf.for %i = %c0 to %H step %c1 {
        %si = arith.addi %src, %i : index
        %di = arith.addi %dst, %i : index
        %v = func.call @ld_$W(%b0, %si) : (memref<?x$W>, index) -> f32
        memref.store %v, %b2[%di] : memref<?xf32>
      }
    }
)",
      {{"H", num(hidden)}, {"VMAX", num(vocab - 1)}, {"W", eltName(weight)}});
  // GPU: a warp per token, lanes copy every 32nd value.
  std::string warpBody = subst(
      R"(      %H = arith.constant $H : index
      %vmax = arith.constant $VMAX : i64
      %zero64 = arith.constant 0 : i64
      %id0 = memref.load %b1[%item] : memref<?xi64>
      %id1 = arith.maxsi %id0, %zero64 : i64
      %id2 = arith.minsi %id1, %vmax : i64
      %id = arith.index_cast %id2 : i64 to index
      %src = arith.muli %id, %H : index
      %dst = arith.muli %item, %H : index
      scf.for %i = %lane to %H step %c32 {
        %si = arith.addi %src, %i : index
        %di = arith.addi %dst, %i : index
        %v = func.call @ld_$W(%b0, %si) : (memref<?x$W>, index) -> f32
        memref.store %v, %b2[%di] : memref<?xf32>
      }
)",
      {{"H", num(hidden)}, {"VMAX", num(vocab - 1)}, {"W", eltName(weight)}});
  return add(body, {weight, Elt::I64, Elt::F32}, body, warpBody);
}

// The normalization of row %o of `src` into `dst` with weight `w`:
// x * rsqrt(mean(x^2) + eps) * w, in transformers' order.
static std::string normalizeRow(const char *src, const char *w,
                                const char *dst) {
  return subst(
      R"(      %ss = func.call @sumsq($SRC, %o, %H) : (memref<?xf32>, index, index) -> f32
      %mean = arith.divf %ss, %Hf : f32
      %var = arith.addf %mean, %eps : f32
      %inv = math.rsqrt %var : f32
      scf.for %i = %c0 to %H step %c1 {
        %j = arith.addi %o, %i : index
        %x = memref.load $SRC[%j] : memref<?xf32>
        %w = memref.load $W[%i] : memref<?xf32>
        %n = arith.mulf %x, %inv : f32
        %y = arith.mulf %w, %n : f32
        memref.store %y, $DST[%j] : memref<?xf32>
      }
)",
      {{"SRC", src}, {"W", w}, {"DST", dst}});
}

// The same on the GPU, one warp per row: lane l handles values l, l + 32,
// ... (only its own, so no lane reads another lane's stores).
static std::string warpNormalizeRow(const char *src, const char *w,
                                    const char *dst) {
  return subst(
      R"(      %part = scf.for %i = %lane to %H step %c32 iter_args(%a = %f0) -> (f32) {
        %j = arith.addi %o, %i : index
        %x = memref.load $SRC[%j] : memref<?xf32>
        %r = math.fma %x, %x, %a : f32
        scf.yield %r : f32
      }
      %ws = func.call @warp_sum(%part) : (f32) -> f32
$COMBINE      %mean = arith.divf %ss, %Hf : f32
      %var = arith.addf %mean, %eps : f32
      %inv = math.rsqrt %var : f32
      scf.for %i = %lane to %H step %c32 {
        %j = arith.addi %o, %i : index
        %x = memref.load $SRC[%j] : memref<?xf32>
        %w = memref.load $W[%i] : memref<?xf32>
        %n = arith.mulf %x, %inv : f32
        %y = arith.mulf %w, %n : f32
        memref.store %y, $DST[%j] : memref<?xf32>
      }
)",
      {{"SRC", src}, {"W", w}, {"DST", dst}});
}

// The GPU row norm for rows of a multiple of 4 values: lane l holds the
// 4-vectors at 4l, 4l + 128, ... as SSA values (the text is unrolled), so
// all of a row's loads are issued before any store -- a store through one
// memref could alias the next load and would serialize them. With
// `residual`, the row is src + %b1 and the sum is stored to `sum`.
//
// `cooperative` (rows of a multiple of 512): the four warps of a block share
// one row, a quarter each, and add their sums of squares through workgroup
// memory (%shm).
static std::string warpVectorNormRow(int64_t hidden, const char *src,
                                     bool residual, const char *sum,
                                     const char *w, const char *dst,
                                     bool cooperative = false) {
  int64_t pieces = cooperative ? hidden / 512 : (hidden + 127) / 128;
  std::string text = R"(      %o = arith.muli %item, %H : index
      %c4 = arith.constant 4 : index
      %zv = arith.constant dense<0.0> : vector<4xf32>
      %l4 = arith.muli %lane, %c4 : index
)";
  if (cooperative)
    text = R"(      %o = arith.muli %item, %H : index
      %c4 = arith.constant 4 : index
      %zv = arith.constant dense<0.0> : vector<4xf32>
      %quarter = arith.constant )" +
           num(hidden / 4) + R"( : index
      %wq = arith.muli %warp, %quarter : index
      %lane4 = arith.muli %lane, %c4 : index
      %l4 = arith.addi %wq, %lane4 : index
)";
  std::string loads, stores;
  for (int64_t p = 0; p < pieces; ++p) {
    // Only the last piece can run past the row.
    bool partial = (p + 1) * 128 > hidden;
    std::string load =
        residual
            ? R"(%xa$P = vector.load $SRC[%j$P] {alignment = 16} : memref<?xf32>, vector<4xf32>
        %xb$P = vector.load %b1[%j$P] {alignment = 16} : memref<?xf32>, vector<4xf32>
        %x$P = arith.addf %xa$P, %xb$P : vector<4xf32>
)"
            : R"(%x$P = vector.load $SRC[%j$P] {alignment = 16} : memref<?xf32>, vector<4xf32>
)";
    std::string store =
        (residual
             ? std::string("vector.store %v$P, $SUM[%j$P] {alignment = 16} : "
                           "memref<?xf32>, vector<4xf32>\n        ")
             : std::string()) +
        R"(%wv$P = vector.load $W[%i$P] {alignment = 16} : memref<?xf32>, vector<4xf32>
        %n$P = arith.mulf %v$P, %invv : vector<4xf32>
        %y$P = arith.mulf %wv$P, %n$P : vector<4xf32>
        vector.store %y$P, $DST[%j$P] {alignment = 16} : memref<?xf32>, vector<4xf32>
)";
    loads += R"(      %k$P = arith.constant $OFF : index
      %i$P = arith.addi %l4, %k$P : index
      %j$P = arith.addi %o, %i$P : index
)";
    if (partial) {
      loads += R"(      %in$P = arith.cmpi ult, %i$P, %H : index
      %v$P = scf.if %in$P -> (vector<4xf32>) {
        )" + load +
               R"(        scf.yield %x$P : vector<4xf32>
      } else {
        scf.yield %zv : vector<4xf32>
      }
)";
      stores += R"(      scf.if %in$P {
        )" + store +
                "      }\n";
    } else {
      loads += "      " + load +
               "      %v$P = arith.addf %x$P, %zv : vector<4xf32>\n";
      stores += "        " + store;
    }
    loads += R"(      %a$NEXT = vector.fma %v$P, %v$P, %a$P : vector<4xf32>
)";
    loads = subst(loads,
                  {{"P", num(p)}, {"NEXT", num(p + 1)}, {"OFF", num(128 * p)}});
    stores = subst(stores, {{"P", num(p)}});
  }
  text +=
      "      %a0 = arith.addf %zv, %zv : vector<4xf32>\n" + loads +
      subst(
          R"(      %part = vector.reduction <add>, %a$N : vector<4xf32> into f32
      %ws = func.call @warp_sum(%part) : (f32) -> f32
$COMBINE      %mean = arith.divf %ss, %Hf : f32
      %var = arith.addf %mean, %eps : f32
      %inv = math.rsqrt %var : f32
      %invv = vector.broadcast %inv : f32 to vector<4xf32>
)",
          {{"N", num(pieces)},
           {"COMBINE", cooperative
                           ? R"(      scf.if %lead {
        memref.store %ws, %shm[%warp] : memref<8xf32, #gpu.address_space<workgroup>>
      }
      gpu.barrier
      %sw0 = memref.load %shm[%c0] : memref<8xf32, #gpu.address_space<workgroup>>
      %sw1 = memref.load %shm[%c1] : memref<8xf32, #gpu.address_space<workgroup>>
      %c2w = arith.constant 2 : index
      %c3w = arith.constant 3 : index
      %sw2 = memref.load %shm[%c2w] : memref<8xf32, #gpu.address_space<workgroup>>
      %sw3 = memref.load %shm[%c3w] : memref<8xf32, #gpu.address_space<workgroup>>
      %s01 = arith.addf %sw0, %sw1 : f32
      %s23 = arith.addf %sw2, %sw3 : f32
      %ss = arith.addf %s01, %s23 : f32
)"
                           : "      %ss = arith.addf %ws, %f0 : f32\n"}}) +
      stores;
  return subst(text, {{"SRC", src}, {"SUM", sum}, {"W", w}, {"DST", dst}});
}

// Workgroup memory of the cooperative norms: the four warps' partial sums.
constexpr const char *kNormWorkgroup =
    "%shm: memref<8xf32, #gpu.address_space<workgroup>>";

static std::string normConstants(int64_t hidden, double eps) {
  return subst(R"(    %H = arith.constant $H : index
    %Hf = arith.constant $HF : f32
    %eps = arith.constant $EPS : f32
)",
               {{"H", num(hidden)},
                {"HF", f32Literal(hidden)},
                {"EPS", f32Literal(eps)}});
}

// Work: rows. out = rms_norm(x) * w.
unsigned KernelLibrary::rmsNorm(int64_t hidden, double eps) {
  std::string body = normConstants(hidden, eps) +
                     "    scf.for %r = %begin to %end step %c1 {\n"
                     "      %o = arith.muli %r, %H : index\n" +
                     normalizeRow("%b0", "%b1", "%b2") + "    }\n";
  bool cooperative = hidden % 512 == 0;
  std::string warpBody =
      normConstants(hidden, eps) +
      (hidden % 4 == 0 ? warpVectorNormRow(hidden, "%b0", false, "", "%b1",
                                           "%b2", cooperative)
                       : "      %o = arith.muli %item, %H : index\n" +
                             warpNormalizeRow("%b0", "%b1", "%b2"));
  unsigned index = add(body, {Elt::F32, Elt::F32, Elt::F32}, body, warpBody);
  if (cooperative)
    kernels[index].workgroup = kNormWorkgroup;
  return index;
}

// Work: rows. sum = a + b; out = rms_norm(sum) * w.
unsigned KernelLibrary::addRmsNorm(int64_t hidden, double eps) {
  std::string body = normConstants(hidden, eps) +
                     R"(    scf.for %r = %begin to %end step %c1 {
      %o = arith.muli %r, %H : index
      scf.for %i = %c0 to %H step %c1 {
        %j = arith.addi %o, %i : index
        %a = memref.load %b0[%j] : memref<?xf32>
        %b = memref.load %b1[%j] : memref<?xf32>
        %s = arith.addf %a, %b : f32
        memref.store %s, %b3[%j] : memref<?xf32>
      }
)" + normalizeRow("%b3", "%b2", "%b4") +
                     "    }\n";
  bool cooperative = hidden % 512 == 0;
  std::string vectorBody =
      normConstants(hidden, eps) +
      warpVectorNormRow(hidden, "%b0", true, "%b3", "%b2", "%b4", cooperative);
  std::string warpBody = hidden % 4 == 0
                             ? vectorBody
                             : normConstants(hidden, eps) +
                                   R"(      %o = arith.muli %item, %H : index
      scf.for %i = %lane to %H step %c32 {
        %j = arith.addi %o, %i : index
        %a = memref.load %b0[%j] : memref<?xf32>
        %b = memref.load %b1[%j] : memref<?xf32>
        %s = arith.addf %a, %b : f32
        memref.store %s, %b3[%j] : memref<?xf32>
      }
)" + warpNormalizeRow("%b3", "%b2", "%b4");
  unsigned index = add(body, {Elt::F32, Elt::F32, Elt::F32, Elt::F32, Elt::F32},
                       body, warpBody);
  if (cooperative)
    kernels[index].workgroup = kNormWorkgroup;
  return index;
}

// Work: elements. out = a (op) b.
unsigned KernelLibrary::elementwise(llvm::StringRef op) {
  std::string body = subst(R"(    scf.for %i = %begin to %end step %c1 {
      %a = memref.load %b0[%i] : memref<?xf32>
      %b = memref.load %b1[%i] : memref<?xf32>
      %y = arith.$OP %a, %b : f32
      memref.store %y, %b2[%i] : memref<?xf32>
    }
)",
                           {{"OP", op.str()}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32}, body);
}

// Work: elements of x [T, H]. out = x * sigmoid(gate[t]).
unsigned KernelLibrary::sigmoidGate(int64_t hidden) {
  std::string body = subst(R"(    %H = arith.constant $H : index
    scf.for %i = %begin to %end step %c1 {
      %t = arith.divui %i, %H : index
      %g = memref.load %b1[%t] : memref<?xf32>
      %s = func.call @sigmoid(%g) : (f32) -> f32
      %x = memref.load %b0[%i] : memref<?xf32>
      %y = arith.mulf %x, %s : f32
      memref.store %y, %b2[%i] : memref<?xf32>
    }
)",
                           {{"H", num(hidden)}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32}, body);
}

// Work: output features N (each reads its weight row once for all tokens).
// y[t, n] = x[t, :] . w[n, :] (+ bias[n])
// The loop nest shared by the projection kernels: for each output feature
// `feature` in [begin, end) (weight row offset %wo = feature * $STRIDE), the
// tokens in blocks of four (one weight load feeds four dot products of
// `input`), then the remaining tokens one by one. Each `dots` entry names
// the f32 value (%<name>) computed against weight binding `weight`;
// `store` uses them and %t.
static std::string
projectionLoops(const std::string &feature, const char *input,
                llvm::ArrayRef<std::pair<std::string, std::string>> dots,
                const std::string &preamble, const std::string &store,
                const std::string &from = "%begin") {
  std::string block, selects, tail;
  for (const auto &[name, weightBinding] : dots) {
    block += subst(
        R"(        %q$N:4 = func.call $DOT4($IN, %o0, %o1, %o2, %o3, $WB, %wo) : ($XT, index, index, index, index, memref<?x$W>, index) -> (f32, f32, f32, f32)
)",
        {{"N", name}, {"IN", input}, {"WB", weightBinding}});
    selects +=
        subst(R"(          %$N01 = arith.select %is1, %q$N#1, %q$N#0 : f32
          %$N012 = arith.select %is2, %q$N#2, %$N01 : f32
          %$N = arith.select %is3, %q$N#3, %$N012 : f32
)",
              {{"N", name}});
    tail += subst(
        R"(        %$N = func.call $DOT($IN, %xo, $WB, %wo) : ($XT, index, memref<?x$W>, index) -> f32
)",
        {{"N", name}, {"IN", input}, {"WB", weightBinding}});
  }
  return R"(    %c2 = arith.constant 2 : index
    %c3 = arith.constant 3 : index
    %c4 = arith.constant 4 : index
    %T4 = arith.divui %T, %c4 : index
    %tb = arith.muli %T4, %c4 : index
    scf.for %)" +
         feature + " = " + from + R"( to %end step %c1 {
      %wo = arith.muli %)" +
         feature + R"(, $STRIDE : index
)" + preamble +
         R"(      scf.for %t0 = %c0 to %tb step %c4 {
        %t1 = arith.addi %t0, %c1 : index
        %t2 = arith.addi %t0, %c2 : index
        %t3 = arith.addi %t0, %c3 : index
        %o0 = arith.muli %t0, $STRIDE : index
        %o1 = arith.muli %t1, $STRIDE : index
        %o2 = arith.muli %t2, $STRIDE : index
        %o3 = arith.muli %t3, $STRIDE : index
)" + block +
         R"(        scf.for %j = %c0 to %c4 step %c1 {
          %t = arith.addi %t0, %j : index
          %is1 = arith.cmpi eq, %j, %c1 : index
          %is2 = arith.cmpi eq, %j, %c2 : index
          %is3 = arith.cmpi eq, %j, %c3 : index
)" + selects +
         store + R"(        }
      }
      scf.for %t = %tb to %T step %c1 {
        %xo = arith.muli %t, $STRIDE : index
)" + tail +
         store + R"(      }
    }
)";
}

// `rows` weight rows (each its own binding and offset) against `tokens`
// (four, or one for decode) rows of x: rows * tokens dot products in
// registers, row-major (row r, token j at r * tokens + j). Each x vector is
// loaded once for all rows and each weight vector once for all four tokens:
// prefill's register-blocked micro-kernel.
std::string KernelLibrary::dotTile(Elt weight, int64_t length, int rows,
                                   int tokens, bool roundedX) {
  int vw = vectorWidth;
  DotStep step = dotStep(weight, roundedX);
  std::string elt = weight == Elt::BF16 && bf16Dot
                        ? "bfpairs_x" + step.xElt
                        : std::string(eltName(weight));
  std::string name =
      tokens == 4
          ? formatv("@dottile{0}_{1}_{2}", rows, elt, length).str()
          : formatv("@dottile{0}x{1}_{2}_{3}", rows, tokens, elt, length).str();
  if (vw != 8)
    name += "_v" + num(vw);
  if (helperText.count(name))
    return name;
  int n = rows * tokens;
  auto list = [&](const std::string &pattern, int count,
                  const std::string &separator) {
    std::string out;
    for (int i = 0; i < count; ++i)
      out += (i ? separator : "") + subst(pattern, {{"I", num(i)}});
    return out;
  };
  std::string params = "%x: memref<?x" + step.xElt + ">, " +
                       list("%o$I: index", tokens, ", ") + ", " +
                       list("%w$I: memref<?x$W>, %v$I: index", rows, ", ");
  std::string vecTypes = list("vector<$VWxf32>", n, ", ");
  std::string f32Types = list("f32", n, ", ");
  std::string text = "\n  func.func private $NAME(" + params + ") -> (" +
                     f32Types + R"() $INTERNAL {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c8 = arith.constant $S : index
    %k8 = arith.constant $K8 : index
    %kk = arith.constant $K : index
    %z = arith.constant dense<0.0> : vector<$VWxf32>
    %a:$N = scf.for %k = %c0 to %k8 step %c8 iter_args()" +
                     list("%p$I = %z", n, ", ") + ") -> (" + vecTypes + ") {\n";
  for (int j = 0; j < tokens; ++j)
    text +=
        "      " +
        subst("%i$J = arith.addi %o$J, %k : index\n      ", {{"J", num(j)}}) +
        subst(step.loadX, {{"V", "x" + num(j)}, {"I", "i" + num(j)}}) + "\n";
  for (int r = 0; r < rows; ++r) {
    text +=
        "      " +
        subst("%wi$R = arith.addi %v$R, %k : index\n      ", {{"R", num(r)}}) +
        subst(
            step.loadW,
            {{"V", "wv" + num(r)}, {"I", "wi" + num(r)}, {"M", "w" + num(r)}}) +
        "\n";
    // One token's tiles (decode) stream their rows like dot(); four tokens'
    // (prefill) reuse each row enough that prefetching did not pay.
    if (tokens == 1)
      text += rowPrefetch(weight, "%w" + num(r), "%wi" + num(r), "r" + num(r));
    for (int j = 0; j < tokens; ++j) {
      std::string a = num(r * tokens + j);
      text += "      " +
              subst(step.multiplyAdd, {{"R", "r" + a},
                                       {"A", "p" + a},
                                       {"X", "x" + num(j)},
                                       {"WV", "wv" + num(r)}}) +
              "\n";
    }
  }
  text += "      scf.yield " + list("%r$I", n, ", ") + " : " + vecTypes +
          "\n    }\n";
  // A tree over the lanes (reassoc): lane-by-lane chains made the prefill
  // kernels ~8% slower.
  text += list("    %e$I = vector.reduction <add>, %a#$I fastmath<reassoc> : "
               "vector<$VWxf32> into f32\n",
               n, "");
  text += "    %t:$N = scf.for %k = %k8 to %kk step %c1 iter_args(" +
          list("%b$I = %e$I", n, ", ") + ") -> (" + f32Types + ") {\n";
  for (int j = 0; j < tokens; ++j)
    text +=
        "      " +
        subst("%i$J = arith.addi %o$J, %k : index\n      ", {{"J", num(j)}}) +
        subst(step.loadXScalar, {{"V", "x" + num(j)}, {"I", "i" + num(j)}}) +
        "\n";
  for (int r = 0; r < rows; ++r) {
    text += subst(R"(      %wi$R = arith.addi %v$R, %k : index
      %wv$R = func.call @ld_$W(%w$R, %wi$R) : (memref<?x$W>, index) -> f32
)",
                  {{"R", num(r)}});
    for (int j = 0; j < tokens; ++j)
      text += subst("      %r$A = math.fma %x$J, %wv$R, %b$A : f32\n",
                    {{"A", num(r * tokens + j)}, {"J", num(j)}, {"R", num(r)}});
  }
  text += "      scf.yield " + list("%r$I", n, ", ") + " : " + f32Types +
          "\n    }\n    return " + list("%t#$I", n, ", ") + " : " + f32Types +
          "\n  }\n";
  helperText[name] = subst(text, {{"NAME", name},
                                  {"N", num(n)},
                                  {"W", eltName(weight)},
                                  {"K8", num(length / step.step * step.step)},
                                  {"VW", num(vw)},
                                  {"S", num(step.step)},
                                  {"K", num(length)}});
  return name;
}

// The result types of a 4 x 4 dotTile call.
static constexpr const char *kSixteenF32 =
    "f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, "
    "f32, f32";

// The row-blocked loop nest of the projection kernels (CPU prefill): from
// %begin, `step` output features %r0 .. %r0 + step - 1 at a time, the
// tokens four at a time through `tile` (its call text reads %o0..%o3, the
// tokens' x offsets, and %r0; `blockStore` stores its results for tokens
// %t0..%t3), then the remaining tokens one by one (`tokenTail`, with %t).
// Sets %rowEnd: the features from there to %end are left to the caller.
static std::string blockedRows(int64_t step, const std::string &stride,
                               const std::string &tile,
                               const std::string &blockStore,
                               const std::string &tokenTail) {
  return subst(R"(    %bc2 = arith.constant 2 : index
    %bc3 = arith.constant 3 : index
    %bc4 = arith.constant 4 : index
    %bstep = arith.constant $STEP : index
    %bspan = arith.subi %end, %begin : index
    %bn = arith.divui %bspan, %bstep : index
    %bnx = arith.muli %bn, %bstep : index
    %rowEnd = arith.addi %begin, %bnx : index
    %bT4 = arith.divui %T, %bc4 : index
    %btb = arith.muli %bT4, %bc4 : index
    scf.for %r0 = %begin to %rowEnd step %bstep {
      scf.for %t0 = %c0 to %btb step %bc4 {
        %t1 = arith.addi %t0, %c1 : index
        %t2 = arith.addi %t0, %bc2 : index
        %t3 = arith.addi %t0, %bc3 : index
        %o0 = arith.muli %t0, $STRIDE : index
        %o1 = arith.muli %t1, $STRIDE : index
        %o2 = arith.muli %t2, $STRIDE : index
        %o3 = arith.muli %t3, $STRIDE : index
)",
               {{"STEP", num(step)}, {"STRIDE", stride}}) +
         tile + blockStore + R"(      }
      scf.for %t = %btb to %T step %c1 {
)" + tokenTail +
         R"(      }
    }
)";
}

// Work: output features N (each reads its weight row once for all tokens,
// four tokens per weight load). y[t, n] = x[t, :] . w[n, :] (+ bias[n])
unsigned KernelLibrary::linear(Elt weight, int64_t in, int64_t out, bool bias,
                               bool roundedX) {
  std::string store = R"(        %y = arith.addf %d, %bias : f32
        %tn = arith.muli %t, %N : index
        %yo = arith.addi %tn, %n : index
        memref.store %y, %b$OUT[%yo] : memref<?xf32>
)";
  std::string preamble = bias ? "      %bias = memref.load %b2[%n] : "
                                "memref<?xf32>\n"
                              : "      %bias = arith.addf %f0, %f0 : f32\n";
  // Four features x four tokens per tile; the features left over after the
  // last whole block of four go through the one-feature loop.
  std::string tile = R"(        %v0 = arith.muli %r0, %K : index
        %v1 = arith.addi %v0, %K : index
        %v2 = arith.addi %v1, %K : index
        %v3 = arith.addi %v2, %K : index
        %z:16 = func.call $TILE(%b0, %o0, %o1, %o2, %o3, %b1, %v0, %b1, %v1, %b1, %v2, %b1, %v3) : ($XT, index, index, index, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> ($F16)
)";
  std::string blockStore, tokenTail;
  auto rowConstant = [](int r) {
    return std::string(r == 0   ? "%c0"
                       : r == 1 ? "%c1"
                       : r == 2 ? "%bc2"
                                : "%bc3");
  };
  for (int r = 0; r < 4; ++r) {
    std::string row = subst(R"(        %n$R = arith.addi %r0, $CR : index
$BIASR)",
                            {{"R", num(r)},
                             {"CR", rowConstant(r)},
                             {"BIASR", bias ? "        %bias$R = memref.load "
                                              "%b2[%n$R] : memref<?xf32>\n"
                                            : "        %bias$R = arith.addf "
                                              "%f0, %f0 : f32\n"}});
    blockStore += row;
    tokenTail += subst(R"(        %n$R = arith.addi %r0, $CR : index
$BIASR        %xo$R = arith.muli %t, %K : index
        %d$R = func.call $DOT(%b0, %xo$R, %b1, %v$R) : ($XT, index, memref<?x$W>, index) -> f32
        %y$R = arith.addf %d$R, %bias$R : f32
        %tn$R = arith.muli %t, %N : index
        %yo$R = arith.addi %tn$R, %n$R : index
        memref.store %y$R, %b$OUT[%yo$R] : memref<?xf32>
)",
                       {{"R", num(r)},
                        {"CR", rowConstant(r)},
                        {"BIASR", bias ? "        %bias$R = memref.load "
                                         "%b2[%n$R] : memref<?xf32>\n"
                                       : "        %bias$R = arith.addf "
                                         "%f0, %f0 : f32\n"}});
    for (int j = 0; j < 4; ++j)
      blockStore +=
          subst(R"(        %y$R$J = arith.addf %z#$A, %bias$R : f32
        %tn$R$J = arith.muli %t$J, %N : index
        %yo$R$J = arith.addi %tn$R$J, %n$R : index
        memref.store %y$R$J, %b$OUT[%yo$R$J] : memref<?xf32>
)",
                {{"R", num(r)}, {"J", num(j)}, {"A", num(r * 4 + j)}});
  }
  // The token tail needs the rows' offsets too.
  tokenTail = R"(        %v0 = arith.muli %r0, %K : index
        %v1 = arith.addi %v0, %K : index
        %v2 = arith.addi %v1, %K : index
        %v3 = arith.addi %v2, %K : index
)" + tokenTail;
  std::string body =
      R"(    %K = arith.constant $K : index
    %N = arith.constant $N : index
)" + blockedRows(4, "%K", tile, blockStore, tokenTail) +
      projectionLoops("n", "%b0", {{"d", "%b1"}}, preamble, store, "%rowEnd");
  body = subst(body, {{"K", num(in)},
                      {"TILE", dotTile(weight, in, 4, 4, roundedX)},
                      {"F16", kSixteenF32},
                      {"N", num(out)},
                      {"STRIDE", "%K"},
                      {"DOT4", dot4(weight, in, roundedX)},
                      {"DOT", dot(weight, in, roundedX)},
                      {"W", eltName(weight)},
                      {"XT", xType(roundedX)},
                      {"OUT", bias ? "3" : "2"}});
  // GPU: a warp per output feature, the tokens one after another (the
  // row stays in cache).
  std::string warpBody = subst(R"(      %K = arith.constant $K : index
      %N = arith.constant $N : index
      %wo = arith.muli %item, %K : index
$BIAS      scf.for %t = %c0 to %T step %c1 {
        %xo = arith.muli %t, %K : index
        %d = func.call $WDOT(%b0, %xo, %b1, %wo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
        scf.if %lead {
          %y = arith.addf %d, %bias : f32
          %tn = arith.muli %t, %N : index
          %yo = arith.addi %tn, %item : index
          memref.store %y, %b$OUT[%yo] : memref<?xf32>
        }
      }
)",
                               {{"K", num(in)},
                                {"N", num(out)},
                                {"BIAS", bias ? "      %bias = memref.load "
                                                "%b2[%item] : memref<?xf32>\n"
                                              : "      %bias = arith.addf %f0, "
                                                "%f0 : f32\n"},
                                {"WDOT", warpDot(weight, in)},
                                {"W", eltName(weight)},
                                {"OUT", bias ? "3" : "2"}});
  Elt x = roundedX ? Elt::BF16 : Elt::F32;
  if (bias)
    return add(body, {x, weight, Elt::F32, Elt::F32}, body, warpBody);
  return add(body, {x, weight, Elt::F32}, body, warpBody);
}

// Work: output features N. y[0, n] = x[T - 1, :] . w[n, :] (+ bias[n])
unsigned KernelLibrary::lastRowLinear(Elt weight, int64_t in, int64_t out,
                                      bool bias) {
  std::string body = subst(R"(    %K = arith.constant $K : index
    %last = arith.subi %T, %c1 : index
    %xo = arith.muli %last, %K : index
    scf.for %n = %begin to %end step %c1 {
      %wo = arith.muli %n, %K : index
      %d = func.call $DOT(%b0, %xo, %b1, %wo) : (memref<?xf32>, index, memref<?x$W>, index) -> f32
$BIAS      %y = arith.addf %d, %bias : f32
      memref.store %y, %b$OUT[%n] : memref<?xf32>
    }
)",
                           {{"K", num(in)},
                            {"DOT", dot(weight, in)},
                            {"W", eltName(weight)},
                            {"BIAS", bias ? "      %bias = memref.load "
                                            "%b2[%n] : memref<?xf32>\n"
                                          : "      %bias = arith.addf %f0, "
                                            "%f0 : f32\n"},
                            {"OUT", bias ? "3" : "2"}});
  if (bias)
    return add(body, {Elt::F32, weight, Elt::F32, Elt::F32}, body);
  return add(body, {Elt::F32, weight, Elt::F32}, body);
}

// Work: intermediate features I. h[t, i] = silu(x.g[i]) * (x.u[i])
unsigned KernelLibrary::gateUp(Elt weight, int64_t hidden, int64_t inter,
                               bool roundedX) {
  std::string store = R"(        %a = func.call @silu(%g) : (f32) -> f32
        %h = arith.mulf %a, %u : f32
        %ti = arith.muli %t, %I : index
        %ho = arith.addi %ti, %i : index
        memref.store %h, %b3[%ho] : memref<?xf32>
)";
  // Two features x four tokens per tile, gate and up rows together (16
  // values in registers); a last odd feature goes through the one-feature
  // loop.
  std::string offsets = R"(        %v0 = arith.muli %r0, %H : index
        %v1 = arith.addi %v0, %H : index
        %i1 = arith.addi %r0, %c1 : index
)";
  std::string tile =
      offsets +
      R"(        %z:16 = func.call $TILE(%b0, %o0, %o1, %o2, %o3, %b1, %v0, %b1, %v1, %b2, %v0, %b2, %v1) : ($XT, index, index, index, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> ($F16)
)";
  std::string blockStore, tokenTail = offsets;
  for (int d = 0; d < 2; ++d) {
    const char *feature = d ? "%i1" : "%r0";
    for (int j = 0; j < 4; ++j)
      blockStore +=
          subst(R"(        %a$Q$J = func.call @silu(%z#$G) : (f32) -> f32
        %h$Q$J = arith.mulf %a$Q$J, %z#$U : f32
        %ti$Q$J = arith.muli %t$J, %I : index
        %ho$Q$J = arith.addi %ti$Q$J, $FEATURE : index
        memref.store %h$Q$J, %b3[%ho$Q$J] : memref<?xf32>
)",
                {{"Q", num(d)},
                 {"J", num(j)},
                 {"G", num(d * 4 + j)},
                 {"U", num((2 + d) * 4 + j)},
                 {"FEATURE", feature}});
    tokenTail += subst(R"(        %xo$Q = arith.muli %t, %H : index
        %g$Q = func.call $DOT(%b0, %xo$Q, %b1, %v$Q) : ($XT, index, memref<?x$W>, index) -> f32
        %u$Q = func.call $DOT(%b0, %xo$Q, %b2, %v$Q) : ($XT, index, memref<?x$W>, index) -> f32
        %a$Q = func.call @silu(%g$Q) : (f32) -> f32
        %h$Q = arith.mulf %a$Q, %u$Q : f32
        %ti$Q = arith.muli %t, %I : index
        %ho$Q = arith.addi %ti$Q, $FEATURE : index
        memref.store %h$Q, %b3[%ho$Q] : memref<?xf32>
)",
                       {{"Q", num(d)}, {"FEATURE", feature}});
  }
  std::string body = R"(    %H = arith.constant $H : index
    %I = arith.constant $I : index
)" + blockedRows(2, "%H", tile, blockStore, tokenTail) +
                     projectionLoops("i", "%b0", {{"g", "%b1"}, {"u", "%b2"}},
                                     "", store, "%rowEnd");
  body = subst(body, {{"H", num(hidden)},
                      {"TILE", dotTile(weight, hidden, 4, 4, roundedX)},
                      {"F16", kSixteenF32},
                      {"I", num(inter)},
                      {"STRIDE", "%H"},
                      {"DOT4", dot4(weight, hidden, roundedX)},
                      {"DOT", dot(weight, hidden, roundedX)},
                      {"W", eltName(weight)},
                      {"XT", xType(roundedX)}});
  std::string warpBody = subst(R"(      %H = arith.constant $H : index
      %I = arith.constant $I : index
      %wo = arith.muli %item, %H : index
      scf.for %t = %c0 to %T step %c1 {
        %xo = arith.muli %t, %H : index
        %g = func.call $WDOT(%b0, %xo, %b1, %wo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
        %u = func.call $WDOT(%b0, %xo, %b2, %wo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
        scf.if %lead {
          %a = func.call @silu(%g) : (f32) -> f32
          %h = arith.mulf %a, %u : f32
          %ti = arith.muli %t, %I : index
          %ho = arith.addi %ti, %item : index
          memref.store %h, %b3[%ho] : memref<?xf32>
        }
      }
)",
                               {{"H", num(hidden)},
                                {"I", num(inter)},
                                {"WDOT", warpDot(weight, hidden)},
                                {"W", eltName(weight)}});
  return add(body, {roundedX ? Elt::BF16 : Elt::F32, weight, weight, Elt::F32},
             body, warpBody);
}

// Work: T * K * I items (t, k, i). h[t, k, i] = silu(G[e] x) * (U[e] x),
// e = idx[t, k]: only the selected experts' rows are read.
unsigned KernelLibrary::expertsGateUp(Elt weight, int64_t hidden, int64_t inter,
                                      int64_t topK, bool packed) {
  // Packed: expert e's gate rows at e * 2 I H, its up rows I H later, both
  // in binding 2; the output moves to binding 3.
  std::string dotName = dot(weight, hidden);
  std::string body = subst(R"(    %H = arith.constant $H : index
    %I = arith.constant $I : index
    %IHU = arith.constant $IHU : index
    %KI = arith.constant $KI : index
    %K = arith.constant $K : index
    %IH = arith.constant $IH : index
    scf.for %item = %begin to %end step %c1 {
      %t = arith.divui %item, %KI : index
      %tk = arith.divui %item, %I : index
      %i = arith.remui %item, %I : index
      %e32 = memref.load %b1[%tk] : memref<?xi32>
      %e = arith.index_cast %e32 : i32 to index
      %eo = arith.muli %e, %IH : index
      %io = arith.muli %i, %H : index
      %wo = arith.addi %eo, %io : index
      %uo = arith.addi %wo, $UPOFF : index
      %xo = arith.muli %t, %H : index
      %g = func.call $DOT(%b0, %xo, %b2, %wo) : (memref<?xf32>, index, memref<?x$W>, index) -> f32
      %u = func.call $DOT(%b0, %xo, $UPB, %uo) : (memref<?xf32>, index, memref<?x$W>, index) -> f32
      %a = func.call @silu(%g) : (f32) -> f32
      %h = arith.mulf %a, %u : f32
      memref.store %h, $HB[%item] : memref<?xf32>
    }
)",
                           {{"H", num(hidden)},
                            {"I", num(inter)},
                            {"K", num(topK)},
                            {"KI", num(topK * inter)},
                            {"IH", num((packed ? 2 : 1) * inter * hidden)},
                            {"UPOFF", packed ? "%IHU" : "%c0"},
                            {"IHU", num(inter * hidden)},
                            {"UPB", packed ? "%b2" : "%b3"},
                            {"HB", packed ? "%b3" : "%b4"},
                            {"DOT", dotName},
                            {"W", eltName(weight)}});
  std::string warpBody = subst(R"(      %H = arith.constant $H : index
      %I = arith.constant $I : index
      %IHU = arith.constant $IHU : index
      %KI = arith.constant $KI : index
      %IH = arith.constant $IH : index
      %t = arith.divui %item, %KI : index
      %tk = arith.divui %item, %I : index
      %i = arith.remui %item, %I : index
      %e32 = memref.load %b1[%tk] : memref<?xi32>
      %e = arith.index_cast %e32 : i32 to index
      %eo = arith.muli %e, %IH : index
      %io = arith.muli %i, %H : index
      %wo = arith.addi %eo, %io : index
      %uo = arith.addi %wo, $UPOFF : index
      %xo = arith.muli %t, %H : index
      %g = func.call $WDOT(%b0, %xo, %b2, %wo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
      %u = func.call $WDOT(%b0, %xo, $UPB, %uo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
      scf.if %lead {
        %a = func.call @silu(%g) : (f32) -> f32
        %h = arith.mulf %a, %u : f32
        memref.store %h, $HB[%item] : memref<?xf32>
      }
)",
                               {{"H", num(hidden)},
                                {"I", num(inter)},
                                {"KI", num(topK * inter)},
                                {"IH", num((packed ? 2 : 1) * inter * hidden)},
                                {"UPOFF", packed ? "%IHU" : "%c0"},
                                {"IHU", num(inter * hidden)},
                                {"UPB", packed ? "%b2" : "%b3"},
                                {"HB", packed ? "%b3" : "%b4"},
                                {"WDOT", warpDot(weight, hidden)},
                                {"W", eltName(weight)}});
  if (packed)
    return add(body, {Elt::F32, Elt::I32, weight, Elt::F32}, body, warpBody);
  return add(body, {Elt::F32, Elt::I32, weight, weight, Elt::F32}, body,
             warpBody);
}

// Work: T * H items (t, j). y[t, j] = sum_k w[t, k] * D[e_k][j, :] . h[t, k, :]
unsigned KernelLibrary::expertsDown(Elt weight, int64_t hidden, int64_t inter,
                                    int64_t topK) {
  std::string dotName = dot(weight, inter);
  std::string body = subst(R"(    %H = arith.constant $H : index
    %I = arith.constant $I : index
    %K = arith.constant $K : index
    %HI = arith.constant $HI : index
    scf.for %item = %begin to %end step %c1 {
      %t = arith.divui %item, %H : index
      %j = arith.remui %item, %H : index
      %tK = arith.muli %t, %K : index
      %acc = scf.for %k = %c0 to %K step %c1 iter_args(%a = %f0) -> (f32) {
        %tk = arith.addi %tK, %k : index
        %e32 = memref.load %b1[%tk] : memref<?xi32>
        %e = arith.index_cast %e32 : i32 to index
        %eo = arith.muli %e, %HI : index
        %jo = arith.muli %j, %I : index
        %wo = arith.addi %eo, %jo : index
        %ho = arith.muli %tk, %I : index
        %d = func.call $DOT(%b0, %ho, %b3, %wo) : (memref<?xf32>, index, memref<?x$W>, index) -> f32
        %w = memref.load %b2[%tk] : memref<?xf32>
        %r = math.fma %w, %d, %a : f32
        scf.yield %r : f32
      }
      memref.store %acc, %b4[%item] : memref<?xf32>
    }
)",
                           {{"H", num(hidden)},
                            {"I", num(inter)},
                            {"K", num(topK)},
                            {"HI", num(hidden * inter)},
                            {"DOT", dotName},
                            {"W", eltName(weight)}});
  std::string warpBody = subst(R"(      %H = arith.constant $H : index
      %I = arith.constant $I : index
      %K = arith.constant $K : index
      %HI = arith.constant $HI : index
      %t = arith.divui %item, %H : index
      %j = arith.remui %item, %H : index
      %tK = arith.muli %t, %K : index
      %jo = arith.muli %j, %I : index
      %acc = scf.for %k = %c0 to %K step %c1 iter_args(%a = %f0) -> (f32) {
        %tk = arith.addi %tK, %k : index
        %e32 = memref.load %b1[%tk] : memref<?xi32>
        %e = arith.index_cast %e32 : i32 to index
        %eo = arith.muli %e, %HI : index
        %wo = arith.addi %eo, %jo : index
        %ho = arith.muli %tk, %I : index
        %d = func.call $WDOT(%b0, %ho, %b3, %wo, %lane) : (memref<?xf32>, index, memref<?x$W>, index, index) -> f32
        %w = memref.load %b2[%tk] : memref<?xf32>
        %r = math.fma %w, %d, %a : f32
        scf.yield %r : f32
      }
      scf.if %lead {
        memref.store %acc, %b4[%item] : memref<?xf32>
      }
)",
                               {{"H", num(hidden)},
                                {"I", num(inter)},
                                {"K", num(topK)},
                                {"HI", num(hidden * inter)},
                                {"WDOT", warpDot(weight, inter)},
                                {"W", eltName(weight)}});
  return add(body, {Elt::F32, Elt::I32, Elt::F32, weight, Elt::F32}, body,
             warpBody);
}

//===----------------------------------------------------------------------===//
// Token-grouped experts (prefill on the CPU)
//===----------------------------------------------------------------------===//
//
// With many tokens per call, reading each token's experts row by row streams
// every selected expert once per token. Grouping the (token, selection)
// slots by expert first lets each weight row be read once per call and
// reused, from L1, for all the tokens that chose its expert.

// One work item: counting sort of the T * K (token, selection) slots by
// expert. route = [offsets: E + 1][slots: T * K][cursors: E]; the slots of
// expert e are route[E + 1 + offsets[e] .. E + 1 + offsets[e + 1]), in
// ascending slot order.
unsigned KernelLibrary::expertsGroup(int64_t experts, int64_t topK) {
  std::string body =
      subst(R"(    %E = arith.constant $E : index
    %E1 = arith.constant $E1 : index
    %K = arith.constant $K : index
    %TK = arith.muli %T, %K : index
    %cur = arith.addi %E1, %TK : index
    %zero = arith.constant 0 : i32
    %one = arith.constant 1 : i32
    scf.for %item = %begin to %end step %c1 {
      scf.for %e = %c0 to %E1 step %c1 {
        memref.store %zero, %b1[%e] : memref<?xi32>
      }
      scf.for %s = %c0 to %TK step %c1 {
        %e32 = memref.load %b0[%s] : memref<?xi32>
        %e = arith.index_cast %e32 : i32 to index
        %e1 = arith.addi %e, %c1 : index
        %n = memref.load %b1[%e1] : memref<?xi32>
        %n1 = arith.addi %n, %one : i32
        memref.store %n1, %b1[%e1] : memref<?xi32>
      }
      scf.for %e = %c0 to %E step %c1 {
        %e1 = arith.addi %e, %c1 : index
        %a = memref.load %b1[%e] : memref<?xi32>
        %b = memref.load %b1[%e1] : memref<?xi32>
        %sum = arith.addi %a, %b : i32
        memref.store %sum, %b1[%e1] : memref<?xi32>
        %ci = arith.addi %cur, %e : index
        memref.store %a, %b1[%ci] : memref<?xi32>
      }
      scf.for %s = %c0 to %TK step %c1 {
        %e32 = memref.load %b0[%s] : memref<?xi32>
        %e = arith.index_cast %e32 : i32 to index
        %ci = arith.addi %cur, %e : index
        %c = memref.load %b1[%ci] : memref<?xi32>
        %cx = arith.index_cast %c : i32 to index
        %si = arith.addi %E1, %cx : index
        %s32 = arith.index_cast %s : index to i32
        memref.store %s32, %b1[%si] : memref<?xi32>
        %cn = arith.addi %c, %one : i32
        memref.store %cn, %b1[%ci] : memref<?xi32>
      }
    }
)",
            {{"E", num(experts)}, {"E1", num(experts + 1)}, {"K", num(topK)}});
  return add(body, {Elt::I32, Elt::I32}, body);
}

// The loop over one expert's slots, four at a time then one at a time:
// `slotBody4` sees %s0..%s3 (slot indices), `slotBody1` sees %s.
static std::string groupedSlots(const std::string &slotBody4,
                                const std::string &slotBody1) {
  std::string loads;
  for (int j = 0; j < 4; ++j)
    loads += subst(R"(        %p$J = arith.addi %p, %c$J : index
        %r$J = arith.addi %E1, %p$J : index
        %v$J = memref.load %b1[%r$J] : memref<?xi32>
        %s$J = arith.index_cast %v$J : i32 to index
)",
                   {{"J", num(j)}});
  return R"(      %e1 = arith.addi %e, %c1 : index
      %lo32 = memref.load %b1[%e] : memref<?xi32>
      %hi32 = memref.load %b1[%e1] : memref<?xi32>
      %lo = arith.index_cast %lo32 : i32 to index
      %hi = arith.index_cast %hi32 : i32 to index
      %n = arith.subi %hi, %lo : index
      %n4 = arith.divui %n, %c4 : index
      %n4x = arith.muli %n4, %c4 : index
      %mid = arith.addi %lo, %n4x : index
      scf.for %p = %lo to %mid step %c4 {
)" + loads +
         slotBody4 + R"(      }
      scf.for %p = %mid to %hi step %c1 {
        %r = arith.addi %E1, %p : index
        %v = memref.load %b1[%r] : memref<?xi32>
        %s = arith.index_cast %v : i32 to index
)" + slotBody1 +
         R"(      }
)";
}

// Grouped kernels order their items as chunks of `expertChunk(rows)` row
// blocks of every expert in turn: a thread's contiguous range then holds
// all experts' rows of some chunks, so the always-selected (shared) experts'
// extra tokens are split evenly, while consecutive items still reuse one
// expert's token rows from cache.
static int64_t expertChunk(int64_t rowBlocks) {
  for (int64_t chunk : {32, 16, 8, 4, 2})
    if (rowBlocks % chunk == 0)
      return chunk;
  return 1;
}

// The whole item loop of a grouped kernel, in the chunked order above: %e
// (the expert) and %<block> (its row block) per item, then `itemSetup`
// (the rows' weight offsets), then the loop over the expert's slots
// (groupedSlots with `four` and `one`). Defines the constants both need.
static std::string groupedExpertLoop(const char *block, int64_t experts,
                                     int64_t rowBlocks,
                                     const std::string &itemSetup,
                                     const std::string &four,
                                     const std::string &one) {
  int64_t chunk = expertChunk(rowBlocks);
  return subst(R"(    %c2 = arith.constant 2 : index
    %c3 = arith.constant 3 : index
    %c4 = arith.constant 4 : index
    %E1 = arith.constant $E1 : index
    %ECH = arith.constant $ECH : index
    %CH = arith.constant $CH : index
    scf.for %item = %begin to %end step %c1 {
      %chunk = arith.divui %item, %ECH : index
      %rem = arith.remui %item, %ECH : index
      %e = arith.divui %rem, %CH : index
      %inchunk = arith.remui %rem, %CH : index
      %chunkbase = arith.muli %chunk, %CH : index
      %$BLOCK = arith.addi %chunkbase, %inchunk : index
)",
               {{"E1", num(experts + 1)},
                {"ECH", num(experts * chunk)},
                {"CH", num(chunk)},
                {"BLOCK", block}}) +
         itemSetup + groupedSlots(four, one) + "    }\n";
}

// Work: E * I / 2 items (expert e, intermediate rows i0 = 2 p, i0 + 1, in
// chunks), each over the tokens that chose e: h[s, i] = silu(x[t].g[e, i]) *
// (x[t].u[e, i]) for slot s = t * K + k. Needs an even I.
unsigned KernelLibrary::groupedGateUp(Elt weight, int64_t hidden, int64_t inter,
                                      int64_t experts, int64_t topK,
                                      bool packed, bool roundedX) {
  // Packed: the up rows are binding 2's, I H after the gate rows.
  std::string four;
  for (int j = 0; j < 4; ++j)
    four += subst(R"(        %t$J = arith.divui %s$J, %K : index
        %o$J = arith.muli %t$J, %H : index
)",
                  {{"J", num(j)}});
  four +=
      R"(        %z:16 = func.call $TILE(%b0, %o0, %o1, %o2, %o3, %b2, %w0, %b2, %w1, $UPB, %uw0, $UPB, %uw1) : ($XT, index, index, index, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> ($F16)
)";
  // A slot left over after the fours: the same four rows against one token.
  std::string one = R"(        %t = arith.divui %s, %K : index
        %xo = arith.muli %t, %H : index
        %si = arith.muli %s, %I : index
        %y:4 = func.call $TILE1(%b0, %xo, %b2, %w0, %b2, %w1, $UPB, %uw0, $UPB, %uw1) : ($XT, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> (f32, f32, f32, f32)
)";
  for (int q = 0; q < 2; ++q) {
    for (int j = 0; j < 4; ++j)
      four += subst(R"(        %a$Q$J = func.call @silu(%z#$G) : (f32) -> f32
        %h$Q$J = arith.mulf %a$Q$J, %z#$U : f32
        %si$Q$J = arith.muli %s$J, %I : index
        %hi$Q$J = arith.addi %si$Q$J, %i$Q : index
        memref.store %h$Q$J, $HB[%hi$Q$J] : memref<?xf32>
)",
                    {{"Q", num(q)},
                     {"J", num(j)},
                     {"G", num(q * 4 + j)},
                     {"U", num((2 + q) * 4 + j)}});
    one += subst(
        R"(        %a$Q = func.call @silu(%y#$Q) : (f32) -> f32
        %h$Q = arith.mulf %a$Q, %y#$U : f32
        %ho$Q = arith.addi %si, %i$Q : index
        memref.store %h$Q, $HB[%ho$Q] : memref<?xf32>
)",
        {{"Q", num(q)}, {"U", num(2 + q)}});
  }
  std::string rows = R"(      %i0 = arith.muli %ip, %c2 : index
      %i1 = arith.addi %i0, %c1 : index
      %eo = arith.muli %e, %IH : index
      %io = arith.muli %i0, %H : index
      %w0 = arith.addi %eo, %io : index
      %w1 = arith.addi %w0, %H : index
      %uw0 = arith.addi %w0, $UPOFF : index
      %uw1 = arith.addi %w1, $UPOFF : index
)";
  std::string body = subst(R"(    %H = arith.constant $H : index
    %I = arith.constant $I : index
    %K = arith.constant $K : index
    %IH = arith.constant $IH : index
    %IHU = arith.constant $IHU : index
)" + groupedExpertLoop("ip", experts, inter / 2, rows, four, one),
                           {{"H", num(hidden)},
                            {"I", num(inter)},
                            {"K", num(topK)},
                            {"IH", num((packed ? 2 : 1) * inter * hidden)},
                            {"UPOFF", packed ? "%IHU" : "%c0"},
                            {"IHU", num(inter * hidden)},
                            {"UPB", packed ? "%b2" : "%b3"},
                            {"HB", packed ? "%b3" : "%b4"},
                            {"TILE", dotTile(weight, hidden, 4, 4, roundedX)},
                            {"TILE1", dotTile(weight, hidden, 4, 1, roundedX)},
                            {"F16", kSixteenF32},
                            {"W", eltName(weight)},
                            {"XT", xType(roundedX)}});
  Elt x = roundedX ? Elt::BF16 : Elt::F32;
  if (packed)
    return add(body, {x, Elt::I32, weight, Elt::F32}, body);
  return add(body, {x, Elt::I32, weight, weight, Elt::F32}, body);
}

// Work: E * H / 4 items (expert e, output features j0 = 4 b .. j0 + 3), each
// over the tokens that chose e: y[s, j] = D[e][j, :] . h[s, :] for slot s
// (combined per token by expertsCombine). Needs H divisible by 4.
unsigned KernelLibrary::groupedDown(Elt weight, int64_t hidden, int64_t inter,
                                    int64_t experts, bool roundedX) {
  std::string four;
  for (int j = 0; j < 4; ++j)
    four += subst(R"(        %ho$J = arith.muli %s$J, %I : index
        %sh$J = arith.muli %s$J, %H : index
)",
                  {{"J", num(j)}});
  four +=
      R"(        %z:16 = func.call $TILE(%b0, %ho0, %ho1, %ho2, %ho3, %b2, %w0, %b2, %w1, %b2, %w2, %b2, %w3) : ($XT, index, index, index, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> ($F16)
)";
  std::string one = R"(        %ho = arith.muli %s, %I : index
        %sh = arith.muli %s, %H : index
        %d:4 = func.call $TILE1(%b0, %ho, %b2, %w0, %b2, %w1, %b2, %w2, %b2, %w3) : ($XT, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> (f32, f32, f32, f32)
)";
  for (int r = 0; r < 4; ++r) {
    for (int j = 0; j < 4; ++j)
      four += subst(R"(        %yo$R$J = arith.addi %sh$J, %j$R : index
        memref.store %z#$A, %b3[%yo$R$J] : memref<?xf32>
)",
                    {{"R", num(r)}, {"J", num(j)}, {"A", num(r * 4 + j)}});
    one += subst(
        R"(        %yo$R = arith.addi %sh, %j$R : index
        memref.store %d#$R, %b3[%yo$R] : memref<?xf32>
)",
        {{"R", num(r)}});
  }
  std::string rows = R"(      %j0 = arith.muli %jb, %c4 : index
      %j1 = arith.addi %j0, %c1 : index
      %j2 = arith.addi %j0, %c2 : index
      %j3 = arith.addi %j0, %c3 : index
      %eo = arith.muli %e, %HI : index
      %jo = arith.muli %j0, %I : index
      %w0 = arith.addi %eo, %jo : index
      %w1 = arith.addi %w0, %I : index
      %w2 = arith.addi %w1, %I : index
      %w3 = arith.addi %w2, %I : index
)";
  std::string body = subst(R"(    %H = arith.constant $H : index
    %I = arith.constant $I : index
    %HI = arith.constant $HI : index
)" + groupedExpertLoop("jb", experts, hidden / 4, rows, four, one),
                           {{"H", num(hidden)},
                            {"I", num(inter)},
                            {"HI", num(hidden * inter)},
                            {"TILE", dotTile(weight, inter, 4, 4, roundedX)},
                            {"F16", kSixteenF32},
                            {"TILE1", dotTile(weight, inter, 4, 1, roundedX)},
                            {"W", eltName(weight)},
                            {"XT", xType(roundedX)}});
  return add(body,
             {roundedX ? Elt::BF16 : Elt::F32, Elt::I32, weight, Elt::F32},
             body);
}

// Work: T * H items (t, j). y[t, j] = sum_k w[t, k] * ys[t * K + k, j], in
// the order of expertsDown, so both lowerings round alike.
unsigned KernelLibrary::expertsCombine(int64_t hidden, int64_t topK) {
  std::string body = subst(R"(    %H = arith.constant $H : index
    %K = arith.constant $K : index
    scf.for %item = %begin to %end step %c1 {
      %t = arith.divui %item, %H : index
      %j = arith.remui %item, %H : index
      %tK = arith.muli %t, %K : index
      %acc = scf.for %k = %c0 to %K step %c1 iter_args(%a = %f0) -> (f32) {
        %s = arith.addi %tK, %k : index
        %sh = arith.muli %s, %H : index
        %yo = arith.addi %sh, %j : index
        %d = memref.load %b0[%yo] : memref<?xf32>
        %w = memref.load %b1[%s] : memref<?xf32>
        %r = math.fma %w, %d, %a : f32
        scf.yield %r : f32
      }
      memref.store %acc, %b2[%item] : memref<?xf32>
    }
)",
                           {{"H", num(hidden)}, {"K", num(topK)}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32}, body);
}

// Work: T tokens. Mirrors transformers' routers: scores (softmax|sigmoid),
// selection scores (+ bias), group ranking (max or sum of top 2) with the
// excluded groups' experts removed from the selection (masked to -inf),
// top-k by repeated argmax (ties to the lower index), weights from the
// unbiased scores, optional renormalization (+1e-20), then the scale.
std::string KernelLibrary::routerText(
    const RouterSpec &spec, const std::string &logits, const std::string &bias,
    const std::string &weightsOut, const std::string &indicesOut,
    const std::string &tBegin, const std::string &tEnd) {
  std::string scores;
  if (spec.sigmoid) {
    scores = R"(      scf.for %e = %c0 to %E step %c1 {
        %li = arith.addi %lo, %e : index
        %l = memref.load $LOGITS[%li] : memref<?xf32>
        %s = func.call @sigmoid(%l) : (f32) -> f32
        memref.store %s, %scores[%e] : memref<$Exf32>
      }
)";
  } else {
    scores =
        R"(      %mx = scf.for %e = %c0 to %E step %c1 iter_args(%m = %lowest) -> (f32) {
        %li = arith.addi %lo, %e : index
        %l = memref.load $LOGITS[%li] : memref<?xf32>
        %r = arith.maximumf %m, %l : f32
        scf.yield %r : f32
      }
      %sum = scf.for %e = %c0 to %E step %c1 iter_args(%a = %f0) -> (f32) {
        %li = arith.addi %lo, %e : index
        %l = memref.load $LOGITS[%li] : memref<?xf32>
        %d = arith.subf %l, %mx : f32
        %x = math.exp %d : f32
        memref.store %x, %scores[%e] : memref<$Exf32>
        %r = arith.addf %a, %x : f32
        scf.yield %r : f32
      }
      scf.for %e = %c0 to %E step %c1 {
        %x = memref.load %scores[%e] : memref<$Exf32>
        %s = arith.divf %x, %sum : f32
        memref.store %s, %scores[%e] : memref<$Exf32>
      }
)";
  }
  std::string choice = spec.bias ? R"(      scf.for %e = %c0 to %E step %c1 {
        %s = memref.load %scores[%e] : memref<$Exf32>
        %bi = memref.load $BIAS[%e] : memref<?xf32>
        %c = arith.addf %s, %bi : f32
        memref.store %c, %choice[%e] : memref<$Exf32>
      }
)"
                                 : R"(      scf.for %e = %c0 to %E step %c1 {
        %s = memref.load %scores[%e] : memref<$Exf32>
        memref.store %s, %choice[%e] : memref<$Exf32>
      }
)";
  std::string groups, groupBuffers;
  if (spec.grouping != RouterSpec::Greedy) {
    std::string groupScore =
        spec.grouping == RouterSpec::GroupMax
            ? R"(        %gs = scf.for %j = %c0 to %PG step %c1 iter_args(%m = %lowest) -> (f32) {
          %e = arith.addi %go, %j : index
          %c = memref.load %choice[%e] : memref<$Exf32>
          %r = arith.maximumf %m, %c : f32
          scf.yield %r : f32
        }
)"
            : R"(        %top:2 = scf.for %j = %c0 to %PG step %c1 iter_args(%m1 = %lowest, %m2 = %lowest) -> (f32, f32) {
          %e = arith.addi %go, %j : index
          %c = memref.load %choice[%e] : memref<$Exf32>
          %gt1 = arith.cmpf ogt, %c, %m1 : f32
          %gt2 = arith.cmpf ogt, %c, %m2 : f32
          %n2a = arith.select %gt2, %c, %m2 : f32
          %n2 = arith.select %gt1, %m1, %n2a : f32
          %n1 = arith.select %gt1, %c, %m1 : f32
          scf.yield %n1, %n2 : f32, f32
        }
        %gs = arith.addf %top#0, %top#1 : f32
)";
    groupBuffers = R"(    %gscore = memref.alloca() : memref<$Gxf32>
    %gkeep = memref.alloca() : memref<$Gxi8>
)";
    groups = R"(      scf.for %g = %c0 to %G step %c1 {
        %go = arith.muli %g, %PG : index
)" + groupScore +
             R"(        memref.store %gs, %gscore[%g] : memref<$Gxf32>
        memref.store %zero8, %gkeep[%g] : memref<$Gxi8>
      }
      scf.for %r = %c0 to %KG step %c1 {
        %best:2 = scf.for %g = %c0 to %G step %c1 iter_args(%bv = %lowest, %bg = %c0) -> (f32, index) {
          %k = memref.load %gkeep[%g] : memref<$Gxi8>
          %free = arith.cmpi eq, %k, %zero8 : i8
          %v = memref.load %gscore[%g] : memref<$Gxf32>
          %gt = arith.cmpf ogt, %v, %bv : f32
          %better = arith.andi %free, %gt : i1
          %nv = arith.select %better, %v, %bv : f32
          %ng = arith.select %better, %g, %bg : index
          scf.yield %nv, %ng : f32, index
        }
        memref.store %one8, %gkeep[%best#1] : memref<$Gxi8>
      }
      scf.for %e = %c0 to %E step %c1 {
        %g = arith.divui %e, %PG : index
        %k = memref.load %gkeep[%g] : memref<$Gxi8>
        %drop = arith.cmpi eq, %k, %zero8 : i8
        scf.if %drop {
          memref.store %lowest, %choice[%e] : memref<$Exf32>
        }
      }
)";
  }
  std::string normalize = spec.normalize
                              ? R"(      %den = arith.addf %wsum, %tiny : f32
      scf.for %k = %c0 to %K step %c1 {
        %o = arith.addi %ko, %k : index
        %w = memref.load $WOUT[%o] : memref<?xf32>
        %n = arith.divf %w, %den : f32
        memref.store %n, $WOUT[%o] : memref<?xf32>
      }
)"
                              : "";
  std::string body = R"(    %E = arith.constant $E : index
    %K = arith.constant $K : index
    %KS = arith.constant $KS : index
    %EA = arith.constant $EA : index
    %G = arith.constant $G : index
    %PG = arith.constant $PG : index
    %KG = arith.constant $KG : index
    %lowest = arith.constant 0xFF7FFFFF : f32
    %tiny = arith.constant 1.0e-20 : f32
    %scale = arith.constant $SCALE : f32
    %zero8 = arith.constant 0 : i8
    %one8 = arith.constant 1 : i8
    %scores = memref.alloca() : memref<$Exf32>
    %choice = memref.alloca() : memref<$Exf32>
    %taken = memref.alloca() : memref<$Exi8>
)" + groupBuffers + R"(    %LS = arith.constant $LS : index
    scf.for %t = $TBEGIN to $TEND step %c1 {
      %lo = arith.muli %t, %LS : index
      %ko = arith.muli %t, %KS : index
)" + scores + choice +
                     groups +
                     R"(      scf.for %e = %c0 to %E step %c1 {
        memref.store %zero8, %taken[%e] : memref<$Exi8>
      }
      %wsum = scf.for %k = %c0 to %K step %c1 iter_args(%a = %f0) -> (f32) {
        %best:2 = scf.for %e = %c0 to %E step %c1 iter_args(%bv = %lowest, %be = %c0) -> (f32, index) {
          %tk = memref.load %taken[%e] : memref<$Exi8>
          %free = arith.cmpi eq, %tk, %zero8 : i8
          %v = memref.load %choice[%e] : memref<$Exf32>
          %gt = arith.cmpf ogt, %v, %bv : f32
          %better = arith.andi %free, %gt : i1
          %nv = arith.select %better, %v, %bv : f32
          %ne = arith.select %better, %e, %be : index
          scf.yield %nv, %ne : f32, index
        }
        memref.store %one8, %taken[%best#1] : memref<$Exi8>
        %o = arith.addi %ko, %k : index
        %s = memref.load %scores[%best#1] : memref<$Exf32>
        memref.store %s, $WOUT[%o] : memref<?xf32>
        %e64 = arith.index_cast %best#1 : index to i32
        memref.store %e64, $IOUT[%o] : memref<?xi32>
        %r = arith.addf %a, %s : f32
        scf.yield %r : f32
      }
)" + normalize + R"(      scf.for %k = %c0 to %K step %c1 {
        %o = arith.addi %ko, %k : index
        %w = memref.load $WOUT[%o] : memref<?xf32>
        %n = arith.mulf %w, %scale : f32
        memref.store %n, $WOUT[%o] : memref<?xf32>
      }
      // Appended (shared) experts: indices E, E + 1, ... with weight 1 or
      // sigmoid of the token's gate.
      %kk = arith.addi %ko, %K : index
$APPENDWEIGHT      scf.for %a = %c0 to %EA step %c1 {
        %o = arith.addi %kk, %a : index
        memref.store %aw, $WOUT[%o] : memref<?xf32>
        %ea = arith.addi %E, %a : index
        %ea32 = arith.index_cast %ea : index to i32
        memref.store %ea32, $IOUT[%o] : memref<?xi32>
      }
    }
)";
  // The appended experts' weight: 1, or sigmoid of the token's gate logit
  // (its own binding after the bias, or column E of the logits row).
  std::string appendWeight = "      %aw = arith.addf %f1, %f0 : f32\n";
  if (spec.gatedAppend)
    appendWeight =
        (spec.gateInLogits ? "      %agi = arith.addi %lo, %E : index\n"
                             "      %ag = memref.load " +
                                 logits + "[%agi] : memref<?xf32>\n"
                           : "      %ag = memref.load %b" + num(1 + spec.bias) +
                                 "[%t] : memref<?xf32>\n") +
        "      %aw = func.call @sigmoid(%ag) : (f32) -> f32\n";
  int64_t groupsCount = spec.grouping == RouterSpec::Greedy
                            ? 1
                            : std::max<int64_t>(1, spec.groups);
  body = subst(body, {{"E", num(spec.experts)},
                      {"K", num(spec.topK)},
                      {"KS", num(spec.topK + spec.appended)},
                      {"EA", num(spec.appended)},
                      {"G", num(groupsCount)},
                      {"PG", num(spec.experts / groupsCount)},
                      {"KG", num(spec.keptGroups)},
                      {"SCALE", f32Literal(spec.scale)},
                      {"LS", num(spec.logitsRow())},
                      {"APPENDWEIGHT", appendWeight},
                      {"WOUT", weightsOut},
                      {"LOGITS", logits},
                      {"BIAS", bias},
                      {"IOUT", indicesOut},
                      {"TBEGIN", tBegin},
                      {"TEND", tEnd}});
  return body;
}

// Router bindings: logits, [bias,] [gate,] then the outputs.
static unsigned routerOutputs(const KernelLibrary::RouterSpec &spec) {
  return 1 + spec.bias + (spec.gatedAppend && !spec.gateInLogits);
}

unsigned KernelLibrary::router(const RouterSpec &spec) {
  unsigned out = routerOutputs(spec);
  std::string body = routerText(spec, "%b0", "%b1", "%b" + num(out),
                                "%b" + num(out + 1), "%begin", "%end");
  llvm::SmallVector<Elt, 5> bindings{Elt::F32};
  if (spec.bias)
    bindings.push_back(Elt::F32);
  if (spec.gatedAppend && !spec.gateInLogits)
    bindings.push_back(Elt::F32);
  bindings.append({Elt::F32, Elt::I32});
  return add(body, bindings, body);
}

//===----------------------------------------------------------------------===//
// Composite kernels (CPU, one token)
//===----------------------------------------------------------------------===//
//
// A decode token's small dispatches (norms of a few hundred values, ropes,
// cache writes) cost a barrier each; the planner runs them inside one
// dispatch instead, by calling their bodies from a composite kernel.

// `func.call @kN_body(bindings from `first`..., %T, %pos, lo, hi)`.
static std::string callBody(const std::string &name,
                            llvm::ArrayRef<Elt> bindings, unsigned first,
                            const std::string &lo, const std::string &hi) {
  std::string args, types;
  for (auto [i, elt] : llvm::enumerate(bindings)) {
    args += formatv("%b{0}, ", first + i).str();
    types += formatv("memref<?x{0}>, ", eltName(elt)).str();
  }
  return formatv("      func.call @{0}_body({1}%T, %pos, {2}, {3}) : "
                 "({4}index, index, index, index) -> ()\n",
                 name, args, lo, hi, types)
      .str();
}

unsigned KernelLibrary::itemwise(unsigned first, unsigned second) {
  const Kernel &a = kernels[first], &b = kernels[second];
  std::string body =
      "    scf.for %item = %begin to %end step %c1 {\n"
      "      %next = arith.addi %item, %c1 : index\n" +
      callBody(a.name, a.bindings, 0, "%item", "%next") +
      callBody(b.name, b.bindings, a.bindings.size(), "%item", "%next") +
      "    }\n";
  llvm::SmallVector<Elt, 16> bindings(a.bindings.begin(), a.bindings.end());
  bindings.append(b.bindings.begin(), b.bindings.end());
  return add("itemwise " + a.name + " " + b.name + "\n" + body, bindings, body);
}

// The parts' calls, each over all its items, bindings from `first` on.
static std::string
partCalls(llvm::ArrayRef<KernelLibrary::Part> parts, unsigned first,
          llvm::function_ref<const std::string &(unsigned)> name,
          llvm::function_ref<llvm::ArrayRef<Elt>(unsigned)> bindingsOf) {
  std::string text;
  for (auto [i, part] : llvm::enumerate(parts)) {
    text += subst(
        R"(      %pt$I = arith.constant $PT : index
      %pf$I = arith.constant $PF : index
      %pn$I = arith.muli %pt$I, %T : index
      %pe$I = arith.addi %pn$I, %pf$I : index
)",
        {{"I", num(i)}, {"PT", num(part.perToken)}, {"PF", num(part.fixed)}});
    text += callBody(name(part.kernel), bindingsOf(part.kernel), first, "%c0",
                     "%pe" + num(i));
    first += bindingsOf(part.kernel).size();
  }
  return text;
}

unsigned KernelLibrary::sequence(llvm::ArrayRef<Part> parts) {
  return withSideJob(~0u, parts);
}

unsigned KernelLibrary::withSideJob(unsigned main, llvm::ArrayRef<Part> side) {
  auto name = [&](unsigned k) -> const std::string & {
    return kernels[k].name;
  };
  auto bindingsOf = [&](unsigned k) -> llvm::ArrayRef<Elt> {
    return kernels[k].bindings;
  };
  llvm::SmallVector<Elt, 16> bindings;
  std::string body, key = "side";
  if (main != ~0u) {
    bindings.append(kernels[main].bindings.begin(),
                    kernels[main].bindings.end());
    body += callBody(kernels[main].name, kernels[main].bindings, 0, "%begin",
                     "%end");
    key += " " + kernels[main].name;
  }
  body += "    %sidefirst = arith.cmpi eq, %begin, %c0 : index\n"
          "    scf.if %sidefirst {\n" +
          partCalls(side, bindings.size(), name, bindingsOf) + "    }\n";
  for (const Part &part : side) {
    bindings.append(kernels[part.kernel].bindings.begin(),
                    kernels[part.kernel].bindings.end());
    key += formatv(" {0}:{1}:{2}", kernels[part.kernel].name, part.perToken,
                   part.fixed)
               .str();
  }
  return add(key + "\n" + body, bindings, body);
}

//===----------------------------------------------------------------------===//
// moe.fused_moe for one token (CPU decode)
//===----------------------------------------------------------------------===//
//
// Decode runs a MoE block in three dispatches: the router projection (a
// linear), routedGateUp and routedDown. Selecting the top-k of E scores is
// cheap next to reading the experts, so every range of routedGateUp selects
// for itself instead of waiting for a router dispatch.

// The row a single-token kernel works on, as %nx (memref<?xf32>): the
// normalized a (+ b) with a prologue, else binding %b0 itself.
static std::string normPrologue(const KernelLibrary::NormPrologue &norm) {
  if (!norm.present)
    return "    %nx = memref.cast %b0 : memref<?xf32> to memref<?xf32>\n";
  std::string load = norm.add
                         ? R"(      %a = memref.load %b0[%i] : memref<?xf32>
      %b = memref.load %b1[%i] : memref<?xf32>
      %s = arith.addf %a, %b : f32
      memref.store %s, %nx[%i] : memref<?xf32>
      scf.if %npfirst {
        memref.store %s, %b3[%i] : memref<?xf32>
      }
)"
                         : R"(      %a = memref.load %b0[%i] : memref<?xf32>
      memref.store %a, %nx[%i] : memref<?xf32>
)";
  return subst(R"(    %npH = arith.constant $H : index
    %npHf = arith.constant $HF : f32
    %npeps = arith.constant $EPS : f32
    %npfirst = arith.cmpi eq, %begin, %c0 : index
    %nxa = memref.alloca() : memref<$Hxf32>
    %nx = memref.cast %nxa : memref<$Hxf32> to memref<?xf32>
    scf.for %i = %c0 to %npH step %c1 {
$LOAD    }
    %npss = func.call @sumsq(%nx, %c0, %npH) : (memref<?xf32>, index, index) -> f32
    %npmean = arith.divf %npss, %npHf : f32
    %npvar = arith.addf %npmean, %npeps : f32
    %npinv = math.rsqrt %npvar : f32
    scf.for %i = %c0 to %npH step %c1 {
      %x = memref.load %nx[%i] : memref<?xf32>
      %w = memref.load %b$NW[%i] : memref<?xf32>
      %n = arith.mulf %x, %npinv : f32
      %y = arith.mulf %w, %n : f32
      memref.store %y, %nx[%i] : memref<?xf32>
    }
)",
               {{"LOAD", load},
                {"H", num(norm.hidden)},
                {"HF", f32Literal(static_cast<double>(norm.hidden))},
                {"EPS", f32Literal(norm.eps)},
                {"NW", num(norm.add ? 2 : 1)}});
}

// The norm's bindings, or x alone.
static llvm::SmallVector<Elt, 8>
normBindings(const KernelLibrary::NormPrologue &norm) {
  if (!norm.present)
    return {Elt::F32};
  if (norm.add)
    return {Elt::F32, Elt::F32, Elt::F32, Elt::F32};
  return {Elt::F32, Elt::F32};
}

unsigned KernelLibrary::normLinear(const NormPrologue &norm, Elt weight,
                                   int64_t out, bool bias) {
  unsigned first = norm.present ? norm.bindings() : 1; // x alone: b0
  // Rows four at a time (four weight streams in flight, each dot with its
  // own four accumulators: the one-token form of `linear`), then one at a
  // time.
  auto store = [&](const std::string &row, const std::string &value) {
    std::string text =
        bias ? subst(R"(      %bv$V = memref.load %b$BB[$ROW] : memref<?xf32>
      %yb$V = arith.addf $VAL, %bv$V : f32
)",
                     {{"BB", num(first + 1)}, {"ROW", row}, {"VAL", value}})
             : subst("      %yb$V = arith.addf $VAL, %f0 : f32\n",
                     {{"VAL", value}});
    return text +
           subst("      memref.store %yb$V, %b$BY[$ROW] : memref<?xf32>\n",
                 {{"ROW", row}});
  };
  std::string four;
  for (int r = 0; r < 4; ++r)
    four += subst(store("%r" + num(r), "%z" + num(r)), {{"V", num(r)}});
  XOperand x = singleTokenX(weight, "%nx", "%c0", norm.hidden);
  std::string body =
      normPrologue(norm) + x.prepare + R"(    %IN = arith.constant $IN : index
    %lc4 = arith.constant 4 : index
    %lspan = arith.subi %end, %begin : index
    %lblocks = arith.divui %lspan, %lc4 : index
    %lrows = arith.muli %lblocks, %lc4 : index
    %lmid = arith.addi %begin, %lrows : index
    scf.for %r0 = %begin to %lmid step %lc4 {
      %r1 = arith.addi %r0, %c1 : index
      %r2 = arith.addi %r1, %c1 : index
      %r3 = arith.addi %r2, %c1 : index
      %w0 = arith.muli %r0, %IN : index
      %w1 = arith.addi %w0, %IN : index
      %w2 = arith.addi %w1, %IN : index
      %w3 = arith.addi %w2, %IN : index
      %z0 = func.call $DOT($XV, $XO, %b$BW, %w0) : ($XT, index, memref<?x$W>, index) -> f32
      %z1 = func.call $DOT($XV, $XO, %b$BW, %w1) : ($XT, index, memref<?x$W>, index) -> f32
      %z2 = func.call $DOT($XV, $XO, %b$BW, %w2) : ($XT, index, memref<?x$W>, index) -> f32
      %z3 = func.call $DOT($XV, $XO, %b$BW, %w3) : ($XT, index, memref<?x$W>, index) -> f32
$FOUR    }
    scf.for %item = %lmid to %end step %c1 {
      %wo = arith.muli %item, %IN : index
      %d = func.call $DOT($XV, $XO, %b$BW, %wo) : ($XT, index, memref<?x$W>, index) -> f32
$ONE    }
)";
  body = subst(body, {{"FOUR", four},
                      {"ONE", subst(store("%item", "%d"), {{"V", "1x"}})},
                      {"IN", num(norm.hidden)},
                      {"BW", num(first)},
                      {"BY", num(first + 1 + bias)},
                      {"DOT", dot(weight, norm.hidden, x.rounded())},
                      {"W", eltName(weight)},
                      {"XV", x.value},
                      {"XT", x.type},
                      {"XO", x.offset}});
  llvm::SmallVector<Elt, 8> bindings = normBindings(norm);
  bindings.push_back(weight);
  if (bias)
    bindings.push_back(Elt::F32);
  bindings.push_back(Elt::F32);
  return add(body, bindings, body);
}

// One SwiGLU row pair of a single-token kernel: the gate rows %w0, %w1 and
// the up rows %u0, %u1 of `gate`/`up` against %nx through one 4x1 tile,
// h[%hi0] and h[%hi1] = silu(g) * u into `h`; `tile` is the 4x1 dotTile of
// weight type `w`.
static std::string swigluPair(const std::string &tile, Elt w,
                              const KernelLibrary::XOperand &x,
                              const std::string &gate, const std::string &up,
                              const std::string &h) {
  return subst(
      R"(      %z:4 = func.call $TILE($XV, $XO, $GB, %w0, $GB, %w1, $UB, %u0, $UB, %u1) : ($XT, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> (f32, f32, f32, f32)
      %a0 = func.call @silu(%z#0) : (f32) -> f32
      %h0 = arith.mulf %a0, %z#2 : f32
      %a1 = func.call @silu(%z#1) : (f32) -> f32
      %h1 = arith.mulf %a1, %z#3 : f32
      memref.store %h0, $HB[%hi0] : memref<?xf32>
      memref.store %h1, $HB[%hi1] : memref<?xf32>
)",
      {{"GB", gate},
       {"UB", up},
       {"HB", h},
       {"TILE", tile},
       {"W", eltName(w)},
       {"XV", x.value},
       {"XT", x.type},
       {"XO", x.offset}});
}

unsigned KernelLibrary::normGateUp(const NormPrologue &norm, Elt weight,
                                   int64_t inter) {
  unsigned first = norm.present ? norm.bindings() : 1; // x alone: b0
  XOperand x = singleTokenX(weight, "%nx", "%c0", norm.hidden);
  std::string tile = dotTile(weight, norm.hidden, 4, 1, x.rounded());
  std::string body =
      normPrologue(norm) + x.prepare +
      subst(R"(    %GH = arith.constant $H : index
    %gc2 = arith.constant 2 : index
    scf.for %item = %begin to %end step %c1 {
      %i0 = arith.muli %item, %gc2 : index
      %i1 = arith.addi %i0, %c1 : index
      %w0 = arith.muli %i0, %GH : index
      %w1 = arith.addi %w0, %GH : index
      %u0 = arith.addi %w0, %c0 : index
      %u1 = arith.addi %w1, %c0 : index
      %hi0 = arith.addi %i0, %c0 : index
      %hi1 = arith.addi %i1, %c0 : index
$PAIR    }
)",
            {{"PAIR", swigluPair(tile, weight, x, "%b" + num(first),
                                 "%b" + num(first + 1), "%b" + num(first + 2))},
             {"H", num(norm.hidden)}});
  llvm::SmallVector<Elt, 8> bindings = normBindings(norm);
  bindings.append({weight, weight, Elt::F32});
  return add(body, bindings, body);
}

unsigned KernelLibrary::routedGateUp(const RouterSpec &spec,
                                     const NormPrologue &norm, Elt weight,
                                     int64_t hidden, int64_t inter) {
  unsigned first = norm.present ? norm.bindings() : 1;
  unsigned router = first, out = first + 1 + spec.bias;
  int64_t slots = spec.topK + spec.appended;
  int64_t rows = spec.logitsRow();
  std::string route =
      routerText(spec, "%lg", spec.bias ? "%b" + num(router + 1) : "%lg", "%rw",
                 "%ri", "%c0", "%c1");
  XOperand x = singleTokenX(weight, "%nx", "%c0", hidden);
  std::string tile = dotTile(weight, hidden, 4, 1, x.rounded());
  std::string body = normPrologue(norm) + x.prepare +
                     subst(R"(    %LROWS = arith.constant $ROWS : index
    %LH = arith.constant $H : index
    %lga = memref.alloca() : memref<$ROWSxf32>
    %lg = memref.cast %lga : memref<$ROWSxf32> to memref<?xf32>
    scf.for %r = %c0 to %LROWS step %c1 {
      %ro = arith.muli %r, %LH : index
      %l = func.call $RDOT($XV, $XO, %b$BR, %ro) : ($XT, index, memref<?x$W>, index) -> f32
      memref.store %l, %lg[%r] : memref<?xf32>
    }
    %rwa = memref.alloca() : memref<$SLOTSxf32>
    %rw = memref.cast %rwa : memref<$SLOTSxf32> to memref<?xf32>
    %ria = memref.alloca() : memref<$SLOTSxi32>
    %ri = memref.cast %ria : memref<$SLOTSxi32> to memref<?xi32>
)",
                           {{"ROWS", num(rows)},
                            {"H", num(hidden)},
                            {"BR", num(router)},
                            {"RDOT", dot(weight, hidden, x.rounded())},
                            {"SLOTS", num(slots)},
                            {"W", eltName(weight)},
                            {"XV", x.value},
                            {"XT", x.type},
                            {"XO", x.offset}}) +
                     route + R"(    %first = arith.cmpi eq, %begin, %c0 : index
    scf.if %first {
      scf.for %k = %c0 to %KS step %c1 {
        %wv = memref.load %rw[%k] : memref<?xf32>
        memref.store %wv, %b$BW[%k] : memref<?xf32>
        %iv = memref.load %ri[%k] : memref<?xi32>
        memref.store %iv, %b$BI[%k] : memref<?xi32>
      }
    }
    %rc2 = arith.constant 2 : index
    %H = arith.constant $H : index
    %I = arith.constant $I : index
    %IP = arith.constant $IP : index
    %EGU = arith.constant $EGU : index
    %IHU = arith.constant $IHU : index
    scf.for %item = %begin to %end step %c1 {
      %k = arith.divui %item, %IP : index
      %p = arith.remui %item, %IP : index
      %e32 = memref.load %ri[%k] : memref<?xi32>
      %e = arith.index_cast %e32 : i32 to index
      %i0 = arith.muli %p, %rc2 : index
      %eo = arith.muli %e, %EGU : index
      %io = arith.muli %i0, %H : index
      %w0 = arith.addi %eo, %io : index
      %w1 = arith.addi %w0, %H : index
      %u0 = arith.addi %w0, %IHU : index
      %u1 = arith.addi %w1, %IHU : index
      %ki = arith.muli %k, %I : index
      %hi0 = arith.addi %ki, %i0 : index
      %hi1 = arith.addi %hi0, %c1 : index
$PAIR    }
)";
  body = subst(body,
               {{"PAIR", swigluPair(tile, weight, x, "%b" + num(out + 2),
                                    "%b" + num(out + 2), "%b" + num(out + 3))},
                {"BW", num(out)},
                {"BI", num(out + 1)},
                {"H", num(hidden)},
                {"I", num(inter)},
                {"IP", num(inter / 2)},
                {"EGU", num(2 * inter * hidden)},
                {"IHU", num(inter * hidden)}});
  llvm::SmallVector<Elt, 8> bindings = normBindings(norm);
  bindings.push_back(weight);
  if (spec.bias)
    bindings.push_back(Elt::F32);
  bindings.append({Elt::F32, Elt::I32, weight, Elt::F32});
  return add(body, bindings, body);
}

unsigned KernelLibrary::routedDown(Elt weight, int64_t hidden, int64_t inter,
                                   int64_t slots) {
  // Slot-major: a range streams its block of each selected expert's rows
  // in turn (long contiguous reads, as the token-grouped kernels do), the
  // weighted sums kept in a scratch row until all slots are in.
  XOperand x = singleTokenX(weight, "%b0", "%c0", slots * inter);
  std::string body =
      x.prepare +
      subst(R"(    %c4 = arith.constant 4 : index
    %I = arith.constant $I : index
    %HI = arith.constant $HI : index
    %KS = arith.constant $KS : index
    %acc = memref.alloca() : memref<$Hxf32>
    %jb = arith.muli %begin, %c4 : index
    %je = arith.muli %end, %c4 : index
    scf.for %j = %jb to %je step %c1 {
      memref.store %f0, %acc[%j] : memref<$Hxf32>
    }
    scf.for %k = %c0 to %KS step %c1 {
      %e32 = memref.load %b2[%k] : memref<?xi32>
      %e = arith.index_cast %e32 : i32 to index
      %eo = arith.muli %e, %HI : index
      %ho = arith.muli %k, %I : index
      %w = memref.load %b1[%k] : memref<?xf32>
      scf.for %item = %begin to %end step %c1 {
        %j0 = arith.muli %item, %c4 : index
        %j1 = arith.addi %j0, %c1 : index
        %j2 = arith.addi %j1, %c1 : index
        %j3 = arith.addi %j2, %c1 : index
        %jo = arith.muli %j0, %I : index
        %w0 = arith.addi %eo, %jo : index
        %w1 = arith.addi %w0, %I : index
        %w2 = arith.addi %w1, %I : index
        %w3 = arith.addi %w2, %I : index
        %d:4 = func.call $TILE($XV, %ho, %b3, %w0, %b3, %w1, %b3, %w2, %b3, %w3) : ($XT, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index, memref<?x$W>, index) -> (f32, f32, f32, f32)
$ACCUMULATE      }
    }
    scf.for %j = %jb to %je step %c1 {
      %v = memref.load %acc[%j] : memref<$Hxf32>
      memref.store %v, %b4[%j] : memref<?xf32>
    }
)",
            {{"I", num(inter)},
             {"H", num(hidden)},
             {"HI", num(hidden * inter)},
             {"KS", num(slots)},
             {"ACCUMULATE",
              [] {
                std::string text;
                for (int r = 0; r < 4; ++r)
                  text += subst(
                      R"(        %a$R = memref.load %acc[%j$R] : memref<$Hxf32>
        %n$R = math.fma %w, %d#$R, %a$R : f32
        memref.store %n$R, %acc[%j$R] : memref<$Hxf32>
)",
                      {{"R", num(r)}});
                return text;
              }()},
             {"TILE", dotTile(weight, inter, 4, 1, x.rounded())},
             {"W", eltName(weight)},
             {"XV", x.value},
             {"XT", x.type}});
  return add(body, {Elt::F32, Elt::F32, Elt::I32, weight, Elt::F32}, body);
}

// Work: T * heads items (t, h). Rotates pairs by (start_pos + t) * inv_freq;
// cos/sin are scaled by the attention factor (YaRN).
unsigned KernelLibrary::rope(int64_t heads, int64_t dim, bool interleaved,
                             llvm::ArrayRef<float> invFreq,
                             double attentionFactor, int64_t offset) {
  std::string values;
  for (auto [i, f] : llvm::enumerate(invFreq))
    values += (i ? ", " : "") + f32Literal(f);
  std::string global = formatv("@inv_freq_{0}", globals.size()).str();
  // Same frequencies give the same global: look for an existing one.
  std::string decl =
      formatv("  memref.global \"private\" constant {0} : memref<{1}xf32> = "
              "dense<[{2}]>\n",
              global, invFreq.size(), values)
          .str();
  bool found = false;
  for (const std::string &existing : globals) {
    size_t at = existing.find(" : memref<");
    if (existing.substr(at) == decl.substr(decl.find(" : memref<"))) {
      global = existing.substr(existing.find('@'),
                               existing.find(' ', existing.find('@')) -
                                   existing.find('@'));
      found = true;
      break;
    }
  }
  if (!found)
    globals.push_back(decl);
  // Pair (a, b) positions: interleaved (2i, 2i+1) or half-split (i, i+D/2).
  std::string pairs = interleaved ? R"(        %i2 = arith.muli %i, %c2 : index
        %ia = arith.addi %or, %i2 : index
        %ib = arith.addi %ia, %c1 : index
)"
                                  : R"(        %ia = arith.addi %or, %i : index
        %ib = arith.addi %ia, %HALF : index
)";
  // One (token, head) row: copy the first OFF values, rotate the pairs;
  // $FIRST/$STEP spread the pairs over the lanes of a warp on the GPU.
  std::string row = R"(      %t = arith.divui %item, %H : index
      %p = arith.addi %pos, %t : index
      %p64 = arith.index_cast %p : index to i64
      %pf = arith.sitofp %p64 : i64 to f32
      %o = arith.muli %item, %D : index
      %or = arith.addi %o, %OFF : index
      scf.for %i = $FIRST to %OFF step $STEP {
        %ci = arith.addi %o, %i : index
        %cv = memref.load %b0[%ci] : memref<?xf32>
        memref.store %cv, %b1[%ci] : memref<?xf32>
      }
      scf.for %i = $FIRST to %HALF step $STEP {
        %f = memref.load %freq[%i] : memref<$HALFxf32>
        %ang = arith.mulf %pf, %f : f32
        %cr = math.cos %ang : f32
        %sr = math.sin %ang : f32
        %c = arith.mulf %cr, %af : f32
        %s = arith.mulf %sr, %af : f32
$PAIRS        %a = memref.load %b0[%ia] : memref<?xf32>
        %b = memref.load %b0[%ib] : memref<?xf32>
        %ac = arith.mulf %a, %c : f32
        %bs = arith.mulf %b, %s : f32
        %ra = arith.subf %ac, %bs : f32
        %bc = arith.mulf %b, %c : f32
        %as = arith.mulf %a, %s : f32
        %rb = arith.addf %bc, %as : f32
        memref.store %ra, %b1[%ia] : memref<?xf32>
        memref.store %rb, %b1[%ib] : memref<?xf32>
      }
)";
  std::string constants = R"(    %H = arith.constant $H : index
    %D = arith.constant $D : index
    %HALF = arith.constant $HALF : index
    %OFF = arith.constant $OFF : index
    %c2 = arith.constant 2 : index
    %af = arith.constant $AF : f32
    %freq = memref.get_global $GLOBAL : memref<$HALFxf32>
)";
  std::vector<std::pair<std::string, std::string>> keys = {
      {"H", num(heads)},
      {"D", num(dim)},
      {"HALF", num((dim - offset) / 2)},
      {"OFF", num(offset)},
      {"AF", f32Literal(attentionFactor)},
      {"GLOBAL", global},
      {"PAIRS", pairs}};
  std::string body =
      subst(constants + "    scf.for %item = %begin to %end step %c1 {\n" +
                subst(row, {{"FIRST", "%c0"}, {"STEP", "%c1"}}) + "    }\n",
            keys);
  // GPU: a warp per (token, head), a lane per pair (one sin/cos each).
  std::string warpBody = subst(
      constants + subst(row, {{"FIRST", "%lane"}, {"STEP", "%c32"}}), keys);
  return add(body, {Elt::F32, Elt::F32}, body, warpBody);
}

// Work: T * kvHeads items. Writes the new keys/values at start_pos + t.
unsigned KernelLibrary::kvWrite(int64_t kvHeads, int64_t keyDim,
                                int64_t valueDim) {
  std::string body =
      subst(R"(    %H = arith.constant $H : index
    %DK = arith.constant $DK : index
    %DV = arith.constant $DV : index
    %posH = arith.muli %pos, %H : index
    scf.for %item = %begin to %end step %c1 {
      %row = arith.addi %posH, %item : index
      %ks = arith.muli %item, %DK : index
      %kd = arith.muli %row, %DK : index
      func.call @copy(%b0, %ks, %b2, %kd, %DK) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
      %vs = arith.muli %item, %DV : index
      %vd = arith.muli %row, %DV : index
      func.call @copy(%b1, %vs, %b3, %vd, %DV) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
    }
)",
            {{"H", num(kvHeads)}, {"DK", num(keyDim)}, {"DV", num(valueDim)}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32, Elt::F32}, body);
}

// Work: T * heads items (t, h). Causal attention over cache rows
// 0 .. start_pos + t with an online softmax (no [T, S] matrix).
unsigned KernelLibrary::attention(int64_t heads, int64_t kvHeads,
                                  int64_t keyDim, int64_t valueDim,
                                  double scale) {
  std::string dotName = dot(Elt::F32, keyDim);
  std::string body = subst(R"(    %H = arith.constant $H : index
    %HKV = arith.constant $HKV : index
    %GRP = arith.constant $GRP : index
    %DK = arith.constant $DK : index
    %DV = arith.constant $DV : index
    %DV8 = arith.constant $DV8 : index
    %scale = arith.constant $SCALE : f32
    %lowest = arith.constant 0xFF7FFFFF : f32
    %acc = memref.alloca() : memref<$DVxf32>
    scf.for %item = %begin to %end step %c1 {
      scf.for %i = %c0 to %DV step %c1 {
        memref.store %f0, %acc[%i] : memref<$DVxf32>
      }
      %t = arith.divui %item, %H : index
      %h = arith.remui %item, %H : index
      %kvh = arith.divui %h, %GRP : index
      %qo = arith.muli %item, %DK : index
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
      %ms:2 = scf.for %j = %c0 to %n step %c1 iter_args(%m = %lowest, %l = %f0) -> (f32, f32) {
        %jh = arith.muli %j, %HKV : index
        %row = arith.addi %jh, %kvh : index
        %ko = arith.muli %row, %DK : index
        %d = func.call $DOT(%b0, %qo, %b1, %ko) : (memref<?xf32>, index, memref<?xf32>, index) -> f32
        %s = arith.mulf %d, %scale : f32
        %m2, %l2, %corr, %pr = func.call @online_softmax(%m, %l, %s) : (f32, f32, f32) -> (f32, f32, f32, f32)
        %vo = arith.muli %row, %DV : index
        // acc = acc * corr + p * v, eight lanes at a time, then the rest.
        %corr8 = vector.broadcast %corr : f32 to vector<8xf32>
        %pr8 = vector.broadcast %pr : f32 to vector<8xf32>
        scf.for %i = %c0 to %DV8 step %c8 {
          %a = vector.load %acc[%i] : memref<$DVxf32>, vector<8xf32>
          %vi = arith.addi %vo, %i : index
          %v = vector.load %b2[%vi] : memref<?xf32>, vector<8xf32>
          %ac = arith.mulf %a, %corr8 : vector<8xf32>
          %na = vector.fma %pr8, %v, %ac : vector<8xf32>
          vector.store %na, %acc[%i] : memref<$DVxf32>, vector<8xf32>
        }
        scf.for %i = %DV8 to %DV step %c1 {
          %a = memref.load %acc[%i] : memref<$DVxf32>
          %vi = arith.addi %vo, %i : index
          %v = memref.load %b2[%vi] : memref<?xf32>
          %ac = arith.mulf %a, %corr : f32
          %na = math.fma %pr, %v, %ac : f32
          memref.store %na, %acc[%i] : memref<$DVxf32>
        }
        scf.yield %m2, %l2 : f32, f32
      }
      %oo = arith.muli %item, %DV : index
      scf.for %i = %c0 to %DV step %c1 {
        %a = memref.load %acc[%i] : memref<$DVxf32>
        %o = arith.divf %a, %ms#1 : f32
        %oi = arith.addi %oo, %i : index
        memref.store %o, %b3[%oi] : memref<?xf32>
      }
    }
)",
                           {{"H", num(heads)},
                            {"HKV", num(kvHeads)},
                            {"GRP", num(heads / kvHeads)},
                            {"DK", num(keyDim)},
                            {"DV", num(valueDim)},
                            {"DV8", num(valueDim / 8 * 8)},
                            {"SCALE", f32Literal(scale)},
                            {"DOT", dotName}});
  // GPU: a warp per (token, head). Each score is a warp-wide dot product;
  // lane l accumulates value dimensions l, l + 32, ... (registers once the
  // constant-trip loops over them are unrolled).
  int64_t perLane = (valueDim + 31) / 32;
  std::string warpBody = subst(R"(      %H = arith.constant $H : index
      %HKV = arith.constant $HKV : index
      %GRP = arith.constant $GRP : index
      %DK = arith.constant $DK : index
      %DV = arith.constant $DV : index
      %R = arith.constant $R : index
      %scale = arith.constant $SCALE : f32
      %lowest = arith.constant 0xFF7FFFFF : f32
      %acc = memref.alloca() : memref<$Rxf32>
      scf.for %r = %c0 to %R step %c1 {
        memref.store %f0, %acc[%r] : memref<$Rxf32>
      }
      %t = arith.divui %item, %H : index
      %h = arith.remui %item, %H : index
      %kvh = arith.divui %h, %GRP : index
      %qo = arith.muli %item, %DK : index
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
      %ms:2 = scf.for %j = %c0 to %n step %c1 iter_args(%m = %lowest, %l = %f0) -> (f32, f32) {
        %jh = arith.muli %j, %HKV : index
        %row = arith.addi %jh, %kvh : index
        %ko = arith.muli %row, %DK : index
        %d = func.call $WDOT(%b0, %qo, %b1, %ko, %lane) : (memref<?xf32>, index, memref<?xf32>, index, index) -> f32
        %s = arith.mulf %d, %scale : f32
        %m2, %l2, %corr, %pr = func.call @online_softmax(%m, %l, %s) : (f32, f32, f32) -> (f32, f32, f32, f32)
        %vo = arith.muli %row, %DV : index
        scf.for %r = %c0 to %R step %c1 {
          %r32 = arith.muli %r, %c32 : index
          %i = arith.addi %r32, %lane : index
          %valid = arith.cmpi ult, %i, %DV : index
          %v = scf.if %valid -> (f32) {
            %vi = arith.addi %vo, %i : index
            %x = memref.load %b2[%vi] : memref<?xf32>
            scf.yield %x : f32
          } else {
            scf.yield %f0 : f32
          }
          %a = memref.load %acc[%r] : memref<$Rxf32>
          %ac = arith.mulf %a, %corr : f32
          %na = math.fma %pr, %v, %ac : f32
          memref.store %na, %acc[%r] : memref<$Rxf32>
        }
        scf.yield %m2, %l2 : f32, f32
      }
      %oo = arith.muli %item, %DV : index
      scf.for %r = %c0 to %R step %c1 {
        %r32 = arith.muli %r, %c32 : index
        %i = arith.addi %r32, %lane : index
        %valid = arith.cmpi ult, %i, %DV : index
        scf.if %valid {
          %a = memref.load %acc[%r] : memref<$Rxf32>
          %o = arith.divf %a, %ms#1 : f32
          %oi = arith.addi %oo, %i : index
          memref.store %o, %b3[%oi] : memref<?xf32>
        }
      }
)",
                               {{"H", num(heads)},
                                {"HKV", num(kvHeads)},
                                {"GRP", num(heads / kvHeads)},
                                {"DK", num(keyDim)},
                                {"DV", num(valueDim)},
                                {"R", num(perLane)},
                                {"SCALE", f32Literal(scale)},
                                {"WDOT", warpDot(Elt::F32, keyDim)}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32, Elt::F32}, body, warpBody);
}

// Work: T * heads items (t, h). DeepSeek's absorbed MLA (see
// moe.mla_attention): q_lat = W_UK[h]^T q_nope, online softmax over
// q_lat . latent_j + q_rope . rope_j, then W_UV[h] times the weighted latent.
// The position loop of mlaAttentionByToken for four heads at a time and
// four positions at a time (heads % 4 == 0): the 16 scores of a block come
// out of one register tile (four q_lat rows x four latent rows, and the
// same for the rope parts), one online-softmax step covers four positions,
// and each latent vector loaded updates four heads' accumulators. Leaves
// %tailFrom, where the one-position loop takes over.
std::string KernelLibrary::mlaTiledPositions(int64_t heads, int64_t rank,
                                             int64_t rope) {
  std::string tileR = dotTile(Elt::F32, rank, 4);
  std::string tileP = dotTile(Elt::F32, rope, 4);
  std::string text = R"(      %xc4 = arith.constant 4 : index
      %xn4 = arith.divui %n, %xc4 : index
      %tailFrom = arith.muli %xn4, %xc4 : index
      scf.for %xjb = %c0 to %tailFrom step %xc4 {
)";
  for (int j = 0; j < 4; ++j)
    text += subst(R"(        %xj$J = arith.addi %xjb, %xk$J : index
        %xlo$J = arith.muli %xj$J, %R : index
        %xro$J = arith.muli %xj$J, %DR : index
)",
                  {{"J", num(j)}});
  // The constants 0..3 for the position offsets.
  text = R"(      %xk0 = arith.constant 0 : index
      %xk1 = arith.constant 1 : index
      %xk2 = arith.constant 2 : index
      %xk3 = arith.constant 3 : index
)" + text;
  text += R"(        scf.for %xhb = %c0 to %H step %xc4 {
          %xth = arith.muli %t, %H : index
)";
  for (int i = 0; i < 4; ++i)
    text += subst(R"(          %xh$I = arith.addi %xhb, %xk$I : index
          %xq$I = arith.muli %xh$I, %R : index
          %xit$I = arith.addi %xth, %xh$I : index
          %xqd$I = arith.muli %xit$I, %DQ : index
          %xqr$I = arith.addi %xqd$I, %DN : index
)",
                  {{"I", num(i)}});
  text += subst(
      R"(          %xs:16 = func.call $TR(%qlat, %xq0, %xq1, %xq2, %xq3, %b2, %xlo0, %b2, %xlo1, %b2, %xlo2, %b2, %xlo3) : (memref<?xf32>, index, index, index, index, memref<?xf32>, index, memref<?xf32>, index, memref<?xf32>, index, memref<?xf32>, index) -> ($F16)
          %xr:16 = func.call $TP(%b0, %xqr0, %xqr1, %xqr2, %xqr3, %b3, %xro0, %b3, %xro1, %b3, %xro2, %b3, %xro3) : (memref<?xf32>, index, index, index, index, memref<?xf32>, index, memref<?xf32>, index, memref<?xf32>, index, memref<?xf32>, index) -> ($F16)
)",
      {{"TR", tileR},
       {"TP", tileP},
       {"F16", "f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, f32, "
               "f32, f32, f32, f32"}});
  // Per head i: scores of positions j (result j * 4 + i), one softmax step.
  for (int i = 0; i < 4; ++i) {
    for (int j = 0; j < 4; ++j)
      text += subst(R"(          %xd$I$J = arith.addf %xs#$A, %xr#$A : f32
          %xsc$I$J = arith.mulf %xd$I$J, %scale : f32
)",
                    {{"I", num(i)}, {"J", num(j)}, {"A", num(j * 4 + i)}});
    text += subst(R"(          %xm$I = memref.load %ma[%xh$I] : memref<$Hxf32>
          %xl$I = memref.load %la[%xh$I] : memref<$Hxf32>
          %xmx$I0 = arith.maximumf %xsc$I0, %xsc$I1 : f32
          %xmx$I1 = arith.maximumf %xsc$I2, %xsc$I3 : f32
          %xmx$I2 = arith.maximumf %xmx$I0, %xmx$I1 : f32
          %xmn$I = arith.maximumf %xm$I, %xmx$I2 : f32
          %xdm$I = arith.subf %xm$I, %xmn$I : f32
          %xcorr$I = math.exp %xdm$I : f32
          %xe$I0 = arith.subf %xsc$I0, %xmn$I : f32
          %xp$I0 = math.exp %xe$I0 : f32
          %xe$I1 = arith.subf %xsc$I1, %xmn$I : f32
          %xp$I1 = math.exp %xe$I1 : f32
          %xe$I2 = arith.subf %xsc$I2, %xmn$I : f32
          %xp$I2 = math.exp %xe$I2 : f32
          %xe$I3 = arith.subf %xsc$I3, %xmn$I : f32
          %xp$I3 = math.exp %xe$I3 : f32
          %xlc$I = arith.mulf %xl$I, %xcorr$I : f32
          %xl$Ia = arith.addf %xlc$I, %xp$I0 : f32
          %xl$Ib = arith.addf %xl$Ia, %xp$I1 : f32
          %xl$Ic = arith.addf %xl$Ib, %xp$I2 : f32
          %xl$Id = arith.addf %xl$Ic, %xp$I3 : f32
          memref.store %xmn$I, %ma[%xh$I] : memref<$Hxf32>
          memref.store %xl$Id, %la[%xh$I] : memref<$Hxf32>
          %xcv$I = vector.broadcast %xcorr$I : f32 to vector<8xf32>
          %xpv$I0 = vector.broadcast %xp$I0 : f32 to vector<8xf32>
          %xpv$I1 = vector.broadcast %xp$I1 : f32 to vector<8xf32>
          %xpv$I2 = vector.broadcast %xp$I2 : f32 to vector<8xf32>
          %xpv$I3 = vector.broadcast %xp$I3 : f32 to vector<8xf32>
)",
                  {{"I", num(i)}});
  }
  // acc[h] = acc[h] * corr + sum_j p_j latent_j, eight columns at a time.
  text += R"(          scf.for %xc = %c0 to %R step %c8 {
)";
  for (int j = 0; j < 4; ++j)
    text += subst(R"(            %xvi$J = arith.addi %xlo$J, %xc : index
            %xv$J = vector.load %b2[%xvi$J] : memref<?xf32>, vector<8xf32>
)",
                  {{"J", num(j)}});
  for (int i = 0; i < 4; ++i)
    text += subst(R"(            %xai$I = arith.addi %xq$I, %xc : index
            %xa$I = vector.load %acc[%xai$I] : memref<?xf32>, vector<8xf32>
            %xac$I = arith.mulf %xa$I, %xcv$I : vector<8xf32>
            %xn$I0 = vector.fma %xpv$I0, %xv0, %xac$I : vector<8xf32>
            %xn$I1 = vector.fma %xpv$I1, %xv1, %xn$I0 : vector<8xf32>
            %xn$I2 = vector.fma %xpv$I2, %xv2, %xn$I1 : vector<8xf32>
            %xn$I3 = vector.fma %xpv$I3, %xv3, %xn$I2 : vector<8xf32>
            vector.store %xn$I3, %acc[%xai$I] : memref<?xf32>, vector<8xf32>
)",
                  {{"I", num(i)}});
  text += R"(          }
        }
      }
)";
  return text;
}

// Work: T items, one per token t with all its heads h. The latent and rope
// cache rows stream once per token and feed every head from L1: the
// absorbed form is a multi-query attention (one shared 576-wide key), so
// the per-(token, head) form re-reads the whole cache once per head.
// Per head the arithmetic is exactly mlaAttention's.
// The constants of the absorbed-MLA CPU bodies (sizes from the values
// both pass to subst); `allHeads`: also %HR, the latent rows of all heads.
static std::string mlaConstants(bool allHeads) {
  return std::string(R"(    %H = arith.constant $H : index
    %DN = arith.constant $DN : index
    %DR = arith.constant $DR : index
    %DQ = arith.constant $DQ : index
    %DV = arith.constant $DV : index
    %R = arith.constant $R : index
)") + (allHeads ? "    %HR = arith.constant $HR : index\n" : "") +
         R"(    %ROW = arith.constant $ROW : index
    %scale = arith.constant $SCALE : f32
    %lowest = arith.constant 0xFF7FFFFF : f32
)";
}

// q_lat[h] = W_UK[h]^T q_nope[t, h] for `tokens` tokens (%mtk0.. their
// indices, %msl0.. their slots in %q4), all heads: each W_UK row is loaded
// once for all the tokens into register accumulators (`lanes`-wide vectors,
// `vectors` of them per column block) and summed over d in order, so every
// value has the same bits whatever the token count.
static std::string mlaQueryLatents(int tokens, int64_t lanes, int vectors) {
  int n = tokens * vectors;
  std::string vt = "vector<" + num(lanes) + "xf32>";
  auto list = [](const std::string &pattern, int count,
                 const std::string &separator) {
    std::string out;
    for (int i = 0; i < count; ++i)
      out += (i ? separator : "") + subst(pattern, {{"I", num(i)}});
    return out;
  };
  std::string text = R"(        scf.for %h = %c0 to %H step %c1 {
          %hrow = arith.muli %h, %ROW : index
          %hr = arith.muli %h, %R : index
)";
  for (int j = 0; j < tokens; ++j)
    text += subst(R"(          %mth$J = arith.muli %mtk$J, %H : index
          %mit$J = arith.addi %mth$J, %h : index
          %mqo$J = arith.muli %mit$J, %DQ : index
          %mso$J = arith.muli %msl$J, %HR : index
          %msh$J = arith.addi %mso$J, %hr : index
)",
                  {{"J", num(j)}});
  text += "          scf.for %cb = %c0 to %R step %mcbw {\n"
          "            %macc:" +
          num(n) + " = scf.for %d = %c0 to %DN step %c1 iter_args(" +
          list("%mp$I = %mzero", n, ", ") + ") -> (" + list(vt, n, ", ") +
          R"() {
              %wr = arith.addi %hrow, %d : index
              %wo = arith.muli %wr, %R : index
              %wc = arith.addi %wo, %cb : index
)";
  for (int v = 0; v < vectors; ++v)
    text += subst(R"(              %wi$V = arith.addi %wc, %mcv$V : index
              %w$V = func.call @ld$L_$W(%b1, %wi$V) : (memref<?x$W>, index) -> $VT
)",
                  {{"V", num(v)}, {"L", num(lanes)}, {"VT", vt}});
  for (int j = 0; j < tokens; ++j) {
    text += subst(R"(              %qi$J = arith.addi %mqo$J, %d : index
              %qd$J = memref.load %b0[%qi$J] : memref<?xf32>
              %qv$J = vector.broadcast %qd$J : f32 to $VT
)",
                  {{"J", num(j)}, {"VT", vt}});
    for (int v = 0; v < vectors; ++v)
      text += subst("              %mr$A = vector.fma %qv$J, %w$V, %mp$A : "
                    "$VT\n",
                    {{"A", num(j * vectors + v)},
                     {"J", num(j)},
                     {"V", num(v)},
                     {"VT", vt}});
  }
  text += "              scf.yield " + list("%mr$I", n, ", ") + " : " +
          list(vt, n, ", ") + "\n            }\n";
  for (int j = 0; j < tokens; ++j)
    for (int v = 0; v < vectors; ++v)
      text += subst(R"(            %mst$A = arith.addi %msh$J, %cb : index
            %msi$A = arith.addi %mst$A, %mcv$V : index
            vector.store %macc#$A, %q4[%msi$A] : memref<?xf32>, $VT
)",
                    {{"A", num(j * vectors + v)},
                     {"J", num(j)},
                     {"V", num(v)},
                     {"VT", vt}});
  return text + "          }\n        }\n";
}

// out[t, h] = W_UV[h] acc[h] / l[h] for `tokens` tokens (%mtk0.. and their
// slots %msl0.. in %a4 and %l4): four rows of W_UV at a time against every
// token's latent row (`tile4`, a 4 x tokens dotTile; `tile1` the 1 x tokens
// one for the rows left over). `rounded`: the latent rows are first rounded
// to bf16 into %lrb (tokens * R).
static std::string mlaValueOutputs(int tokens, const std::string &tile4,
                                   const std::string &tile1, bool rounded) {
  std::string text = R"(        scf.for %h = %c0 to %H step %c1 {
          %hrow = arith.muli %h, %ROW : index
          %vrow = arith.addi %hrow, %DN : index
          %hr = arith.muli %h, %R : index
)";
  for (int j = 0; j < tokens; ++j) {
    text += subst(R"(          %vso$J = arith.muli %msl$J, %HR : index
          %vao$J = arith.addi %vso$J, %hr : index
          %vlh$J = arith.muli %msl$J, %H : index
          %vli$J = arith.addi %vlh$J, %h : index
          %vl$J = memref.load %l4[%vli$J] : memref<?xf32>
          %vth$J = arith.muli %mtk$J, %H : index
          %vit$J = arith.addi %vth$J, %h : index
          %voo$J = arith.muli %vit$J, %DV : index
)",
                  {{"J", num(j)}});
    // Rounded rows go to j * R in %lrb; plain ones are read from %a4.
    text += rounded
                ? subst(R"(          %vx$J = arith.muli %vxc$J, %R : index
          func.call @round_row_bf16(%a4, %vao$J, %lrb, %vx$J, %R) : (memref<?xf32>, index, memref<?xbf16>, index, index) -> ()
)",
                        {{"J", num(j)}})
                : subst("          %vx$J = arith.addi %vao$J, %c0 : index\n",
                        {{"J", num(j)}});
  }
  std::string xs, xTypes;
  for (int j = 0; j < tokens; ++j) {
    xs += ", %vx" + num(j);
    xTypes += ", index";
  }
  std::string x = rounded ? "%lrb" : "%a4";
  std::string xt = rounded ? "memref<?xbf16>" : "memref<?xf32>";
  auto rowsCall = [&](int rows, const std::string &tile) {
    std::string w, wTypes, results;
    for (int r = 0; r < rows; ++r) {
      w += ", %b1, %vw" + num(r);
      wTypes += ", memref<?x$W>, index";
    }
    for (int i = 0; i < rows * tokens; ++i)
      results += std::string(i ? ", " : "") + "f32";
    std::string out;
    for (int r = 0; r < rows; ++r)
      out += subst(R"(            %vd$R = arith.addi %vd, %vk$R : index
            %vwr$R = arith.addi %vrow, %vd$R : index
            %vw$R = arith.muli %vwr$R, %R : index
)",
                   {{"R", num(r)}});
    out += "            %vz:" + num(rows * tokens) + " = func.call " + tile +
           "(" + x + xs + w + ") : (" + xt + xTypes + wTypes + ") -> (" +
           results + ")\n";
    for (int r = 0; r < rows; ++r)
      for (int j = 0; j < tokens; ++j)
        out +=
            subst(R"(            %vo$R$J = arith.divf %vz#$A, %vl$J : f32
            %voi$R$J = arith.addi %voo$J, %vd$R : index
            memref.store %vo$R$J, %b4[%voi$R$J] : memref<?xf32>
)",
                  {{"R", num(r)}, {"J", num(j)}, {"A", num(r * tokens + j)}});
    return out;
  };
  text += "          scf.for %vd = %c0 to %vdv4 step %vk4 {\n" +
          rowsCall(4, tile4) +
          "          }\n          scf.for %vd = %vdv4 to %DV step %c1 {\n" +
          rowsCall(1, tile1) + "          }\n        }\n";
  return text;
}

unsigned KernelLibrary::mlaAttentionByToken(Elt weight, int64_t heads,
                                            int64_t nope, int64_t rope,
                                            int64_t valueDim, int64_t rank,
                                            double scale) {
  // Tokens share each W_UK / W_UV row load in groups of four (the weights
  // are re-read per group, not per token), while the group buffers stay
  // small enough for a thread's stack.
  int group = heads * rank <= 65536 ? 4 : 1;
  int64_t lanes = vectorWidth == 16 && rank % 16 == 0 ? 16 : 8;
  int vectors = (rank / lanes) % 4 == 0 ? 4 : (rank / lanes) % 2 == 0 ? 2 : 1;
  bool rounded = weight == Elt::BF16 && bf16Dot;
  if (rounded)
    helperText["@ldx32_bf16"] = kBf16PairHelpers;
  std::vector<std::pair<std::string, std::string>> values = {
      {"H", num(heads)},
      {"DN", num(nope)},
      {"DR", num(rope)},
      {"DQ", num(nope + rope)},
      {"DV", num(valueDim)},
      {"R", num(rank)},
      {"HR", num(heads * rank)},
      {"G", num(group)},
      {"GHR", num(group * heads * rank)},
      {"GH", num(group * heads)},
      {"GR", num(group * rank)},
      {"L", num(lanes)},
      {"CBW", num(lanes * vectors)},
      {"DV4", num(valueDim / 4 * 4)},
      {"ROW", num(nope + valueDim)},
      {"SCALE", f32Literal(scale)},
      {"W", eltName(weight)},
      {"DOTR", dot(Elt::F32, rank)},
      {"DOTP", dot(Elt::F32, rope)},
      {"TILED", heads % 4 == 0
                    ? mlaTiledPositions(heads, rank, rope)
                    : "      %tailFrom = arith.addi %c0, %c0 : index\n"}};
  std::string laneOffsets;
  for (int v = 0; v < vectors; ++v)
    laneOffsets += subst("    %mcv$V = arith.constant $O : index\n",
                         {{"V", num(v)}, {"O", num(v * lanes)}});
  std::string roundedConstants;
  for (int j = 0; j < group; ++j)
    roundedConstants +=
        subst("    %vxc$J = arith.constant $J : index\n", {{"J", num(j)}});
  // The tokens of a whole group, or one token %g of a partial group.
  std::string fullTokens,
      oneToken = R"(            %mtk0 = arith.addi %t0, %g : index
            %msl0 = arith.addi %g, %c0 : index
)";
  for (int j = 0; j < group; ++j)
    fullTokens += subst(R"(        %mtk$J = arith.addi %t0, %vxc$J : index
        %msl$J = arith.addi %vxc$J, %c0 : index
)",
                        {{"J", num(j)}});
  auto indent = [](const std::string &text) {
    llvm::SmallVector<llvm::StringRef> lines;
    llvm::StringRef(text).split(lines, '\n', -1, /*KeepEmpty=*/false);
    std::string out;
    for (llvm::StringRef line : lines)
      out += "    " + line.str() + "\n";
    return out;
  };
  std::string tile4 = dotTile(weight, rank, 4, group, rounded);
  std::string tile1 = dotTile(weight, rank, 1, group, rounded);
  std::string single4 = dotTile(weight, rank, 4, 1, rounded);
  std::string single1 = dotTile(weight, rank, 1, 1, rounded);
  std::string body =
      subst(mlaConstants(/*allHeads=*/true) + laneOffsets + roundedConstants +
                R"(    %zero8 = arith.constant dense<0.0> : vector<8xf32>
    %mzero = arith.constant dense<0.0> : vector<$Lxf32>
    %mcbw = arith.constant $CBW : index
    %vk0 = arith.constant 0 : index
    %vk1 = arith.constant 1 : index
    %vk2 = arith.constant 2 : index
    %vk3 = arith.constant 3 : index
    %vk4 = arith.constant 4 : index
    %vdv4 = arith.constant $DV4 : index
    %Gc = arith.constant $G : index
    %qlata = memref.alloca() : memref<$HRxf32>
    %acca = memref.alloca() : memref<$HRxf32>
    %ma = memref.alloca() : memref<$Hxf32>
    %la = memref.alloca() : memref<$Hxf32>
    %q4a = memref.alloca() : memref<$GHRxf32>
    %a4a = memref.alloca() : memref<$GHRxf32>
    %l4a = memref.alloca() : memref<$GHxf32>
    %qlat = memref.cast %qlata : memref<$HRxf32> to memref<?xf32>
    %acc = memref.cast %acca : memref<$HRxf32> to memref<?xf32>
    %q4 = memref.cast %q4a : memref<$GHRxf32> to memref<?xf32>
    %a4 = memref.cast %a4a : memref<$GHRxf32> to memref<?xf32>
    %l4 = memref.cast %l4a : memref<$GHxf32> to memref<?xf32>
$BFROWS    scf.for %t0 = %begin to %end step %Gc {
      %left = arith.subi %end, %t0 : index
      %gn = arith.minui %left, %Gc : index
      %full = arith.cmpi eq, %gn, %Gc : index
      scf.if %full {
$FULLQ      } else {
        scf.for %g = %c0 to %gn step %c1 {
$ONEQ        }
      }
      scf.for %g = %c0 to %gn step %c1 {
      %t = arith.addi %t0, %g : index
      %gq = arith.muli %g, %HR : index
      scf.for %c = %c0 to %HR step %c8 {
        %qsi = arith.addi %gq, %c : index
        %qsv = vector.load %q4[%qsi] : memref<?xf32>, vector<8xf32>
        vector.store %qsv, %qlat[%c] : memref<?xf32>, vector<8xf32>
        vector.store %zero8, %acc[%c] : memref<?xf32>, vector<8xf32>
      }
      scf.for %h = %c0 to %H step %c1 {
        memref.store %lowest, %ma[%h] : memref<$Hxf32>
        memref.store %f0, %la[%h] : memref<$Hxf32>
      }
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
$TILED      scf.for %j = %tailFrom to %n step %c1 {
        %lo = arith.muli %j, %R : index
        %ro = arith.muli %j, %DR : index
        scf.for %h = %c0 to %H step %c1 {
          %th = arith.muli %t, %H : index
          %item = arith.addi %th, %h : index
          %qro0 = arith.muli %item, %DQ : index
          %qro = arith.addi %qro0, %DN : index
          %hr = arith.muli %h, %R : index
          %dl = func.call $DOTR(%qlat, %hr, %b2, %lo) : (memref<?xf32>, index, memref<?xf32>, index) -> f32
          %dp = func.call $DOTP(%b0, %qro, %b3, %ro) : (memref<?xf32>, index, memref<?xf32>, index) -> f32
          %d = arith.addf %dl, %dp : f32
          %s = arith.mulf %d, %scale : f32
          %m = memref.load %ma[%h] : memref<$Hxf32>
          %l = memref.load %la[%h] : memref<$Hxf32>
          %m2, %l2, %corr, %pr = func.call @online_softmax(%m, %l, %s) : (f32, f32, f32) -> (f32, f32, f32, f32)
          memref.store %m2, %ma[%h] : memref<$Hxf32>
          memref.store %l2, %la[%h] : memref<$Hxf32>
          %corrv = vector.broadcast %corr : f32 to vector<8xf32>
          %prv = vector.broadcast %pr : f32 to vector<8xf32>
          scf.for %c = %c0 to %R step %c8 {
            %ai = arith.addi %hr, %c : index
            %a = vector.load %acc[%ai] : memref<?xf32>, vector<8xf32>
            %li = arith.addi %lo, %c : index
            %v = vector.load %b2[%li] : memref<?xf32>, vector<8xf32>
            %ac = arith.mulf %a, %corrv : vector<8xf32>
            %na = vector.fma %prv, %v, %ac : vector<8xf32>
            vector.store %na, %acc[%ai] : memref<?xf32>, vector<8xf32>
          }
        }
      }
      scf.for %c = %c0 to %HR step %c8 {
        %asi = arith.addi %gq, %c : index
        %asv = vector.load %acc[%c] : memref<?xf32>, vector<8xf32>
        vector.store %asv, %a4[%asi] : memref<?xf32>, vector<8xf32>
      }
      %gh = arith.muli %g, %H : index
      scf.for %h = %c0 to %H step %c1 {
        %lsv = memref.load %la[%h] : memref<$Hxf32>
        %lsi = arith.addi %gh, %h : index
        memref.store %lsv, %l4[%lsi] : memref<?xf32>
      }
      }
      scf.if %full {
$FULLV      } else {
        scf.for %g = %c0 to %gn step %c1 {
$ONEV        }
      }
    }
)",
            values);
  std::string lrb =
      rounded ? subst(R"(    %lrba = memref.alloca() : memref<$GRxbf16>
    %lrb = memref.cast %lrba : memref<$GRxbf16> to memref<?xbf16>
)",
                      values)
              : "";
  body = subst(
      body,
      {{"BFROWS", lrb},
       {"FULLQ",
        fullTokens + subst(mlaQueryLatents(group, lanes, vectors), values)},
       {"ONEQ",
        oneToken + indent(subst(mlaQueryLatents(1, lanes, vectors), values))},
       {"FULLV",
        fullTokens +
            subst(mlaValueOutputs(group, tile4, tile1, rounded), values)},
       {"ONEV",
        oneToken + indent(subst(mlaValueOutputs(1, single4, single1, rounded),
                                values))}});
  return add(body, {Elt::F32, weight, Elt::F32, Elt::F32, Elt::F32}, body);
}

unsigned KernelLibrary::mlaAttention(Elt weight, int64_t heads, int64_t nope,
                                     int64_t rope, int64_t valueDim,
                                     int64_t rank, double scale) {
  std::vector<std::pair<std::string, std::string>> values = {
      {"H", num(heads)},
      {"DN", num(nope)},
      {"DR", num(rope)},
      {"DQ", num(nope + rope)},
      {"DV", num(valueDim)},
      {"R", num(rank)},
      {"ROW", num(nope + valueDim)},
      {"SCALE", f32Literal(scale)},
      {"W", eltName(weight)}};
  values.push_back({"DOTR", dot(Elt::F32, rank)});
  values.push_back({"DOTP", dot(Elt::F32, rope)});
  llvm::append_range(values, latentRowValues(weight, "%accd", "%c0", rank));
  std::string body = subst("$LALLOC" + mlaConstants(/*allHeads=*/false) +
                               R"(    %qlat = memref.alloca() : memref<$Rxf32>
    %acc = memref.alloca() : memref<$Rxf32>
    scf.for %item = %begin to %end step %c1 {
      %t = arith.divui %item, %H : index
      %h = arith.remui %item, %H : index
      %qo = arith.muli %item, %DQ : index
      %hrow = arith.muli %h, %ROW : index
      scf.for %c = %c0 to %R step %c1 {
        memref.store %f0, %qlat[%c] : memref<$Rxf32>
        memref.store %f0, %acc[%c] : memref<$Rxf32>
      }
      scf.for %d = %c0 to %DN step %c1 {
        %qi = arith.addi %qo, %d : index
        %qd = memref.load %b0[%qi] : memref<?xf32>
        %wr = arith.addi %hrow, %d : index
        %wo = arith.muli %wr, %R : index
        scf.for %c = %c0 to %R step %c1 {
          %wi = arith.addi %wo, %c : index
          %w = func.call @ld_$W(%b1, %wi) : (memref<?x$W>, index) -> f32
          %a = memref.load %qlat[%c] : memref<$Rxf32>
          %r = math.fma %qd, %w, %a : f32
          memref.store %r, %qlat[%c] : memref<$Rxf32>
        }
      }
      %qlatd = memref.cast %qlat : memref<$Rxf32> to memref<?xf32>
      %accd = memref.cast %acc : memref<$Rxf32> to memref<?xf32>
      %qro = arith.addi %qo, %DN : index
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
      %ms:2 = scf.for %j = %c0 to %n step %c1 iter_args(%m = %lowest, %l = %f0) -> (f32, f32) {
        %lo = arith.muli %j, %R : index
        %ro = arith.muli %j, %DR : index
        %dl = func.call $DOTR(%qlatd, %c0, %b2, %lo) : (memref<?xf32>, index, memref<?xf32>, index) -> f32
        %dp = func.call $DOTP(%b0, %qro, %b3, %ro) : (memref<?xf32>, index, memref<?xf32>, index) -> f32
        %d = arith.addf %dl, %dp : f32
        %s = arith.mulf %d, %scale : f32
        %m2, %l2, %corr, %pr = func.call @online_softmax(%m, %l, %s) : (f32, f32, f32) -> (f32, f32, f32, f32)
        scf.for %c = %c0 to %R step %c1 {
          %a = memref.load %acc[%c] : memref<$Rxf32>
          %li = arith.addi %lo, %c : index
          %v = memref.load %b2[%li] : memref<?xf32>
          %ac = arith.mulf %a, %corr : f32
          %na = math.fma %pr, %v, %ac : f32
          memref.store %na, %acc[%c] : memref<$Rxf32>
        }
        scf.yield %m2, %l2 : f32, f32
      }
      %oo = arith.muli %item, %DV : index
      %vrow = arith.addi %hrow, %DN : index
$LROUND      scf.for %d = %c0 to %DV step %c1 {
        %wr = arith.addi %vrow, %d : index
        %wo = arith.muli %wr, %R : index
        %o = func.call $DOTW($LV, $LO, %b1, %wo) : ($LT, index, memref<?x$W>, index) -> f32
        %on = arith.divf %o, %ms#1 : f32
        %oi = arith.addi %oo, %d : index
        memref.store %on, %b4[%oi] : memref<?xf32>
      }
    }
)",
                           values);
  // GPU: a warp per (token, head); lane l owns latent columns l, l + 32, ...
  // of q_lat and of the weighted latent (registers once the constant-trip
  // loops over them unroll).
  values.push_back({"RL", num((rank + 31) / 32)});
  std::string warpBody = subst(R"(      %H = arith.constant $H : index
      %DN = arith.constant $DN : index
      %DR = arith.constant $DR : index
      %DQ = arith.constant $DQ : index
      %DV = arith.constant $DV : index
      %R = arith.constant $R : index
      %RL = arith.constant $RL : index
      %ROW = arith.constant $ROW : index
      %scale = arith.constant $SCALE : f32
      %lowest = arith.constant 0xFF7FFFFF : f32
      %t = arith.divui %item, %H : index
      %h = arith.remui %item, %H : index
      %qo = arith.muli %item, %DQ : index
      %hrow = arith.muli %h, %ROW : index
      %qlat = memref.alloca() : memref<$RLxf32>
      %acc = memref.alloca() : memref<$RLxf32>
      scf.for %r = %c0 to %RL step %c1 {
        memref.store %f0, %qlat[%r] : memref<$RLxf32>
        memref.store %f0, %acc[%r] : memref<$RLxf32>
      }
      scf.for %d = %c0 to %DN step %c1 {
        %qi = arith.addi %qo, %d : index
        %qd = memref.load %b0[%qi] : memref<?xf32>
        %wr = arith.addi %hrow, %d : index
        %wo = arith.muli %wr, %R : index
        scf.for %r = %c0 to %RL step %c1 {
          %r32 = arith.muli %r, %c32 : index
          %c = arith.addi %r32, %lane : index
          %valid = arith.cmpi ult, %c, %R : index
          scf.if %valid {
            %wi = arith.addi %wo, %c : index
            %w = func.call @ld_$W(%b1, %wi) : (memref<?x$W>, index) -> f32
            %a = memref.load %qlat[%r] : memref<$RLxf32>
            %x = math.fma %qd, %w, %a : f32
            memref.store %x, %qlat[%r] : memref<$RLxf32>
          }
        }
      }
      %qro = arith.addi %qo, %DN : index
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
      %ms:2 = scf.for %j = %c0 to %n step %c1 iter_args(%m = %lowest, %l = %f0) -> (f32, f32) {
        %lo = arith.muli %j, %R : index
        %ro = arith.muli %j, %DR : index
        %pl = scf.for %r = %c0 to %RL step %c1 iter_args(%a = %f0) -> (f32) {
          %r32 = arith.muli %r, %c32 : index
          %c = arith.addi %r32, %lane : index
          %valid = arith.cmpi ult, %c, %R : index
          %x = scf.if %valid -> (f32) {
            %li = arith.addi %lo, %c : index
            %v = memref.load %b2[%li] : memref<?xf32>
            %q = memref.load %qlat[%r] : memref<$RLxf32>
            %y = math.fma %q, %v, %a : f32
            scf.yield %y : f32
          } else {
            scf.yield %a : f32
          }
          scf.yield %x : f32
        }
        %part = scf.for %e = %lane to %DR step %c32 iter_args(%a = %pl) -> (f32) {
          %qi = arith.addi %qro, %e : index
          %ri = arith.addi %ro, %e : index
          %q = memref.load %b0[%qi] : memref<?xf32>
          %k = memref.load %b3[%ri] : memref<?xf32>
          %y = math.fma %q, %k, %a : f32
          scf.yield %y : f32
        }
        %d = func.call @warp_sum(%part) : (f32) -> f32
        %s = arith.mulf %d, %scale : f32
        %m2, %l2, %corr, %pr = func.call @online_softmax(%m, %l, %s) : (f32, f32, f32) -> (f32, f32, f32, f32)
        scf.for %r = %c0 to %RL step %c1 {
          %r32 = arith.muli %r, %c32 : index
          %c = arith.addi %r32, %lane : index
          %valid = arith.cmpi ult, %c, %R : index
          scf.if %valid {
            %li = arith.addi %lo, %c : index
            %v = memref.load %b2[%li] : memref<?xf32>
            %a = memref.load %acc[%r] : memref<$RLxf32>
            %ac = arith.mulf %a, %corr : f32
            %na = math.fma %pr, %v, %ac : f32
            memref.store %na, %acc[%r] : memref<$RLxf32>
          }
        }
        scf.yield %m2, %l2 : f32, f32
      }
      %oo = arith.muli %item, %DV : index
      %vrow = arith.addi %hrow, %DN : index
      scf.for %d = %c0 to %DV step %c1 {
        %wr = arith.addi %vrow, %d : index
        %wo = arith.muli %wr, %R : index
        %part = scf.for %r = %c0 to %RL step %c1 iter_args(%a = %f0) -> (f32) {
          %r32 = arith.muli %r, %c32 : index
          %c = arith.addi %r32, %lane : index
          %valid = arith.cmpi ult, %c, %R : index
          %x = scf.if %valid -> (f32) {
            %wi = arith.addi %wo, %c : index
            %w = func.call @ld_$W(%b1, %wi) : (memref<?x$W>, index) -> f32
            %v = memref.load %acc[%r] : memref<$RLxf32>
            %y = math.fma %w, %v, %a : f32
            scf.yield %y : f32
          } else {
            scf.yield %a : f32
          }
          scf.yield %x : f32
        }
        %o = func.call @warp_sum(%part) : (f32) -> f32
        scf.if %lead {
          %on = arith.divf %o, %ms#1 : f32
          %oi = arith.addi %oo, %d : index
          memref.store %on, %b4[%oi] : memref<?xf32>
        }
      }
)",
                               values);
  if (rank % 256 == 0 && nope % 16 == 0 && valueDim % 16 == 0) {
    // All four warps of a block on one (token, head).
    std::string blockBody = vectorMlaBody(weight, heads, nope, rope, valueDim,
                                          rank, scale, /*cooperative=*/true);
    unsigned index = add(body, {Elt::F32, weight, Elt::F32, Elt::F32, Elt::F32},
                         body, blockBody);
    kernels[index].workgroup =
        formatv("%shq: memref<{0}xf32, #gpu.address_space<workgroup>>, "
                "%shm: memref<8xf32, #gpu.address_space<workgroup>>",
                4 * rank)
            .str();
    return index;
  }
  if (rank % 256 == 0 && nope % 4 == 0 && valueDim % 4 == 0)
    warpBody = vectorMlaBody(weight, heads, nope, rope, valueDim, rank, scale,
                             /*cooperative=*/false);
  return add(body, {Elt::F32, weight, Elt::F32, Elt::F32, Elt::F32}, body,
             warpBody);
}

// Work: rows.
unsigned KernelLibrary::sliceColumns(int64_t inRow, int64_t offset,
                                     int64_t size) {
  std::string body =
      subst(R"(    %IN = arith.constant $IN : index
    %OFF = arith.constant $OFF : index
    %N = arith.constant $N : index
    scf.for %r = %begin to %end step %c1 {
      %ri = arith.muli %r, %IN : index
      %si = arith.addi %ri, %OFF : index
      %di = arith.muli %r, %N : index
      func.call @copy(%b0, %si, %b1, %di, %N) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
    }
)",
            {{"IN", num(inRow)}, {"OFF", num(offset)}, {"N", num(size)}});
  return add(body, {Elt::F32, Elt::F32}, body);
}

// Work: rows.
unsigned KernelLibrary::concatColumns(int64_t aRow, int64_t bRow) {
  std::string body =
      subst(R"(    %A = arith.constant $A : index
    %B = arith.constant $B : index
    %AB = arith.constant $AB : index
    scf.for %r = %begin to %end step %c1 {
      %ao = arith.muli %r, %A : index
      %bo = arith.muli %r, %B : index
      %oo = arith.muli %r, %AB : index
      func.call @copy(%b0, %ao, %b2, %oo, %A) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
      %ob = arith.addi %oo, %A : index
      func.call @copy(%b1, %bo, %b2, %ob, %B) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
    }
)",
            {{"A", num(aRow)}, {"B", num(bRow)}, {"AB", num(aRow + bRow)}});
  return add(body, {Elt::F32, Elt::F32, Elt::F32}, body);
}

// Work: T * heads items (t, h).
unsigned KernelLibrary::broadcastRows(int64_t heads, int64_t row) {
  std::string body = subst(R"(    %H = arith.constant $H : index
    %R = arith.constant $R : index
    scf.for %item = %begin to %end step %c1 {
      %t = arith.divui %item, %H : index
      %so = arith.muli %t, %R : index
      %do = arith.muli %item, %R : index
      func.call @copy(%b0, %so, %b1, %do, %R) : (memref<?xf32>, index, memref<?xf32>, index, index) -> ()
    }
)",
                           {{"H", num(heads)}, {"R", num(row)}});
  return add(body, {Elt::F32, Elt::F32}, body);
}
