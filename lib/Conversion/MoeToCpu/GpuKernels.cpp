//===- GpuKernels.cpp - the CUDA forms of the kernels ---------------------===//
//
// Part of moec. The GPU side of KernelLibrary: the `gpu.module` with one
// `gpu.func` per kernel (the CPU body run by one thread per work item, a
// warp body run by one warp per item, or a cooperative body run by the four
// warps of a block with workgroup memory), the warp-wide dot product and
// reduction helpers, and the cooperative MLA kernel. The warp bodies of the
// other kernels sit beside their CPU bodies in CpuKernels.cpp.
//
//===----------------------------------------------------------------------===//

#include "CpuKernels.h"
#include "KernelText.h"

#include "llvm/Support/FormatVariadic.h"

using namespace moec::cpu;
using namespace moec::cpu::text;
using llvm::formatv;

// Warp-wide dot product of x[xo : xo + length] (f32) and w[wo : wo +
// length] on the GPU: lane l reads 8-element vectors at l * 8, l * 8 + 256,
// ... (a warp's loads of one step are contiguous and 16-byte aligned when
// `length` is a multiple of 8), then a scalar tail, then a butterfly
// reduction so every lane holds the sum.
std::string KernelLibrary::warpDot(Elt weight, int64_t length) {
  std::string name = formatv("@wdot_{0}_{1}", eltName(weight), length).str();
  if (gpuHelperText.count(name))
    return name;
  int64_t vectorEnd = length % 8 == 0 ? length : 0;
  gpuHelperText[name] =
      subst(R"(
  func.func private $NAME(%x: memref<?xf32>, %xo: index, %w: memref<?x$W>, %wo: index, %lane: index) -> f32 $INTERNAL {
    %c8 = arith.constant 8 : index
    %c32 = arith.constant 32 : index
    %c256 = arith.constant 256 : index
    %kv = arith.constant $KV : index
    %kk = arith.constant $K : index
    %z = arith.constant dense<0.0> : vector<8xf32>
    %first = arith.muli %lane, %c8 : index
    %acc = scf.for %k = %first to %kv step %c256 iter_args(%a = %z) -> (vector<8xf32>) {
      %xi = arith.addi %xo, %k : index
      %wi = arith.addi %wo, %k : index
      %xv = vector.load %x[%xi] {alignment = 16} : memref<?xf32>, vector<8xf32>
      %wr = vector.load %w[%wi] {alignment = 16} : memref<?x$W>, vector<8x$W>
$WIDEN      %r = vector.fma %xv, %wv, %a : vector<8xf32>
      scf.yield %r : vector<8xf32>
    }
    %vs = vector.reduction <add>, %acc : vector<8xf32> into f32
    %tail = arith.addi %kv, %lane : index
    %s = scf.for %k = %tail to %kk step %c32 iter_args(%a = %vs) -> (f32) {
      %xi = arith.addi %xo, %k : index
      %wi = arith.addi %wo, %k : index
      %xs = memref.load %x[%xi] : memref<?xf32>
      %ws = func.call @ld_$W(%w, %wi) : (memref<?x$W>, index) -> f32
      %r = math.fma %xs, %ws, %a : f32
      scf.yield %r : f32
    }
    %sum = func.call @warp_sum(%s) : (f32) -> f32
    return %sum : f32
  }
)",
            {{"NAME", name},
             {"W", eltName(weight)},
             {"KV", num(vectorEnd)},
             {"K", num(length)},
             {"WIDEN", weight == Elt::BF16 ? "      %wv = arith.extf %wr : "
                                             "vector<8xbf16> to vector<8xf32>\n"
                                           : "      %wv = arith.addf %wr, %z : "
                                             "vector<8xf32>\n"}});
  return name;
}

std::string KernelLibrary::gpuModuleText() const {
  std::string text = "module attributes {gpu.container_module} {\n"
                     "gpu.module @moec_kernels {\n" +
                     helpers(/*gpu=*/true);
  for (const Kernel &kernel : kernels) {
    if (kernel.warpItems) {
      // Every lane runs the body for the warp's item; its @copy calls
      // split the values among the lanes.
      Kernel warp = kernel;
      std::string args, types;
      for (auto [i, elt] : llvm::enumerate(kernel.bindings)) {
        args += formatv("%b{0}, ", i).str();
        types += formatv("memref<?x{0}>, ", eltName(elt)).str();
      }
      warp.warpBody =
          formatv("      %next = arith.addi %item, %c1 : index\n"
                  "      func.call @{0}_body({1}%T, %pos, %item, %next) : "
                  "({2}index, index, index, index) -> ()\n",
                  kernel.name, args, types)
              .str();
      text += bodyFunction(kernel) + warpKernel(warp);
      continue;
    }
    if (!kernel.warpBody.empty()) {
      text += warpKernel(kernel);
      continue;
    }
    text += bodyFunction(kernel);
    // The kernel: bindings and the scalars buffer as memrefs (the runtime
    // passes expanded descriptors), the work item count by value. Each
    // thread runs one work item of the body.
    std::string params, args, types;
    for (auto [i, elt] : llvm::enumerate(kernel.bindings)) {
      params += formatv("%b{0}: memref<?x{1}>, ", i, eltName(elt)).str();
      args += formatv("%b{0}, ", i).str();
      types += formatv("memref<?x{0}>, ", eltName(elt)).str();
    }
    text +=
        formatv(
            R"(  gpu.func @{0}({1}%scal: memref<?xi64>, %work64: i64) kernel {{
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %T64 = memref.load %scal[%c0] : memref<?xi64>
    %pos64 = memref.load %scal[%c1] : memref<?xi64>
    %T = arith.index_cast %T64 : i64 to index
    %pos = arith.index_cast %pos64 : i64 to index
    %work = arith.index_cast %work64 : i64 to index
    %block = gpu.block_id x
    %size = gpu.block_dim x
    %thread = gpu.thread_id x
    %first = arith.muli %block, %size : index
    %item = arith.addi %first, %thread : index
    %inside = arith.cmpi ult, %item, %work : index
    scf.if %inside {{
      %next = arith.addi %item, %c1 : index
      func.call @{0}_body({2}%T, %pos, %item, %next) : ({3}index, index, index, index) -> ()
    }
    gpu.return
  }
)",
            kernel.name, params, args, types)
            .str();
  }
  return text + "}\n}\n";
}

// Warp kernels: four warps per block, one work item per warp.
constexpr unsigned kWarpsPerBlock = 4;

std::string KernelLibrary::warpKernel(const Kernel &kernel) const {
  std::string params;
  for (auto [i, elt] : llvm::enumerate(kernel.bindings))
    params += formatv("%b{0}: memref<?x{1}>, ", i, eltName(elt)).str();
  // A cooperative kernel (workgroup memory) gives each block one item.
  bool cooperative = !kernel.workgroup.empty();
  std::string workgroup =
      cooperative ? "workgroup(" + kernel.workgroup + ") " : "";
  return formatv(
             R"(  gpu.func @{0}({1}%scal: memref<?xi64>, %work64: i64) {4}kernel {{
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c32 = arith.constant 32 : index
    %f0 = arith.constant 0.0 : f32
    %warps = arith.constant {2} : index
    %T64 = memref.load %scal[%c0] : memref<?xi64>
    %T = arith.index_cast %T64 : i64 to index
    %pos64 = memref.load %scal[%c1] : memref<?xi64>
    %pos = arith.index_cast %pos64 : i64 to index
    %work = arith.index_cast %work64 : i64 to index
    %block = gpu.block_id x
    %thread = gpu.thread_id x
    %lane = arith.remui %thread, %c32 : index
    %warp = arith.divui %thread, %c32 : index
    %first = arith.muli %block, %warps : index
    %warpItem = arith.addi %first, %warp : index
    %item = {5}
    %inside = arith.cmpi ult, %item, %work : index
    %lead = arith.cmpi eq, %lane, %c0 : index
    scf.if %inside {{
{3}    }
    gpu.return
  }
)",
             kernel.name, params, kWarpsPerBlock, kernel.warpBody, workgroup,
             cooperative ? "arith.addi %block, %c0 : index"
                         : "arith.addi %warpItem, %c0 : index")
      .str();
}

std::vector<KernelLaunch> KernelLibrary::launches() const {
  std::vector<KernelLaunch> result;
  for (const Kernel &kernel : kernels)
    result.push_back(kernel.warpBody.empty() && !kernel.warpItems
                         ? KernelLaunch{128, 128}
                     : kernel.workgroup.empty()
                         ? KernelLaunch{32 * kWarpsPerBlock, kWarpsPerBlock}
                         : KernelLaunch{32 * kWarpsPerBlock, 1});
  return result;
}

// The GPU MLA kernel for latent widths that are multiples of 256 (DeepSeek
// V2/V3: 512). Lane l owns the latent columns 8l + 256r + [0, 8) as
// vector<8xf32> SSA values; the loops over the nope and value rows and over
// cache positions are unrolled by 4 so that four rows' loads are in flight
// at once (the kernel is latency-bound: one warp per token and head).
std::string KernelLibrary::vectorMlaBody(Elt weight, int64_t heads,
                                         int64_t nope, int64_t rope,
                                         int64_t valueDim, int64_t rank,
                                         double scale, bool cooperative) {
  constexpr int64_t kUnroll = 4;
  int64_t vectors = rank / 256;
  auto each = [&](const std::string &pattern) {
    std::string text;
    for (int64_t r = 0; r < vectors; ++r)
      text +=
          subst(pattern,
                {{"R", num(r)}, {"ROFF", num(256 * r)}, {"ACC", num(2 + r)}});
    return text;
  };
  auto list = [&](const std::string &prefix, const std::string &suffix) {
    std::string text;
    for (int64_t r = 0; r < vectors; ++r)
      text += (r ? ", " : "") + prefix + num(r) + suffix;
    return text;
  };
  std::string vecTypes;
  for (int64_t r = 0; r < vectors; ++r)
    vecTypes += (r ? ", " : "") + std::string("vector<8xf32>");
  std::string widen =
      weight == Elt::BF16
          ? "arith.extf %wr$U_$R : vector<8xbf16> to vector<8xf32>"
          : "arith.addf %wr$U_$R, %zv : vector<8xf32>";
  std::string text = R"(      %H = arith.constant $H : index
      %DN = arith.constant $DN : index
      %DR = arith.constant $DR : index
      %DQ = arith.constant $DQ : index
      %DV = arith.constant $DV : index
      %R = arith.constant $RANK : index
      %ROW = arith.constant $ROW : index
      %c4 = arith.constant 4 : index
      %c8 = arith.constant 8 : index
      %scale = arith.constant $SCALE : f32
      %lowest = arith.constant 0xFF7FFFFF : f32
      %zv = arith.constant dense<0.0> : vector<8xf32>
      %t = arith.divui %item, %H : index
      %h = arith.remui %item, %H : index
      %qo = arith.muli %item, %DQ : index
      %hrow = arith.muli %h, %ROW : index
      %l8 = arith.muli %lane, %c8 : index
$BOUNDS)";
  // 1. q_lat = W_UK[h]^T q_nope, four nope rows per iteration.
  std::string qBody;
  for (int64_t u = 0; u < kUnroll; ++u) {
    qBody += subst(R"(        %d$U = arith.addi %dq, %k$U : index
        %qi$U = arith.addi %qo, %d$U : index
        %qs$U = memref.load %b0[%qi$U] : memref<?xf32>
        %qb$U = vector.broadcast %qs$U : f32 to vector<8xf32>
        %wrow$U = arith.addi %hrow, %d$U : index
        %wo$U = arith.muli %wrow$U, %R : index
        %wl$U = arith.addi %wo$U, %l8 : index
)",
                   {{"U", num(u)}});
    qBody +=
        each(subst(R"(        %wi$U_$R = arith.addi %wl$U, %roff$R : index
        %wr$U_$R = vector.load %b1[%wi$U_$R] {alignment = 16} : memref<?x$W>, vector<8x$W>
        %wv$U_$R = $WIDEN
)",
                   {{"U", num(u)}, {"WIDEN", subst(widen, {{"U", num(u)}})}}));
  }
  for (int64_t u = 0; u < kUnroll; ++u)
    qBody +=
        each(subst("        %qn$U_$R = vector.fma %qb$U, %wv$U_$R, "
                   "$PREV : vector<8xf32>\n",
                   {{"U", num(u)},
                    {"PREV", u == 0 ? "%q$R" : "%qn" + num(u - 1) + "_$R"}}));
  for (int64_t u = 0; u < kUnroll; ++u)
    text += subst("      %k$U = arith.constant $U : index\n", {{"U", num(u)}});
  text += "      %ql:" + num(vectors) +
          " = scf.for %dq = %dqs to %dqe step %c4 iter_args(" +
          [&] {
            std::string args;
            for (int64_t r = 0; r < vectors; ++r)
              args += (r ? ", " : "") + ("%q" + num(r)) + " = %zv";
            return args;
          }() +
          ") -> (" + vecTypes + ") {\n" + qBody + "        scf.yield " +
          list("%qn" + num(kUnroll - 1) + "_", "") + " : " + vecTypes + "\n}\n";
  if (cooperative)
    // Sum the four warps' partial q_lat through shared memory.
    text +=
        each(R"(      %qsi$R = arith.addi %wbase, %lr$R : index
      vector.store %ql#$R, %shq[%qsi$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
)") + "      gpu.barrier\n" +
        each(
            R"(      %qp0_$R = vector.load %shq[%lr$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %qi1_$R = arith.addi %lr$R, %R : index
      %qp1_$R = vector.load %shq[%qi1_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %qi2_$R = arith.addi %qi1_$R, %R : index
      %qp2_$R = vector.load %shq[%qi2_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %qi3_$R = arith.addi %qi2_$R, %R : index
      %qp3_$R = vector.load %shq[%qi3_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %qs01_$R = arith.addf %qp0_$R, %qp1_$R : vector<8xf32>
      %qs23_$R = arith.addf %qp2_$R, %qp3_$R : vector<8xf32>
      %qf$R = arith.addf %qs01_$R, %qs23_$R : vector<8xf32>
)") + "      gpu.barrier\n";
  else
    text += each("      %qf$R = arith.addf %ql#$R, %zv : vector<8xf32>\n");
  // 2. Online softmax over positions, four per iteration (a position past
  // the last reads the last row again and gets weight 0).
  std::string accArgs, accYield;
  for (int64_t r = 0; r < vectors; ++r) {
    accArgs += ", %acc" + num(r) + " = %zv";
  }
  std::string pBody;
  for (int64_t u = 0; u < kUnroll; ++u) {
    pBody += subst(R"(        %j$U = arith.addi %jq, %k$U : index
        %ok$U = arith.cmpi ult, %j$U, %je : index
        %jc$U = arith.select %ok$U, %j$U, %last : index
        %lo$U = arith.muli %jc$U, %R : index
        %ll$U = arith.addi %lo$U, %l8 : index
        %ro$U = arith.muli %jc$U, %DR : index
)",
                   {{"U", num(u)}});
    pBody += each(subst(R"(        %li$U_$R = arith.addi %ll$U, %roff$R : index
        %lat$U_$R = vector.load %b2[%li$U_$R] {alignment = 16} : memref<?xf32>, vector<8xf32>
        %pr$U_$R = arith.mulf %qf$R, %lat$U_$R : vector<8xf32>
        %ps$U_$R = vector.reduction <add>, %pr$U_$R : vector<8xf32> into f32
)",
                        {{"U", num(u)}}));
    std::string sum = "%ps" + num(u) + "_0";
    for (int64_t r = 1; r < vectors; ++r) {
      pBody += subst("        %pa$U_$R = arith.addf $PREV, %ps$U_$R : f32\n",
                     {{"U", num(u)}, {"R", num(r)}, {"PREV", sum}});
      sum = "%pa" + num(u) + "_" + num(r);
    }
    pBody += subst(
        R"(        %pe$U = scf.for %e = %lane to %DR step %c32 iter_args(%a = $SUM) -> (f32) {
          %qi = arith.addi %qro, %e : index
          %ri = arith.addi %ro$U, %e : index
          %q = memref.load %b0[%qi] : memref<?xf32>
          %k = memref.load %b3[%ri] : memref<?xf32>
          %y = math.fma %q, %k, %a : f32
          scf.yield %y : f32
        }
        %dot$U = func.call @warp_sum(%pe$U) : (f32) -> f32
        %sr$U = arith.mulf %dot$U, %scale : f32
        %s$U = arith.select %ok$U, %sr$U, %lowest : f32
)",
        {{"U", num(u)}, {"SUM", sum}});
  }
  pBody += "        %mx0 = arith.maximumf %m, %s0 : f32\n";
  for (int64_t u = 1; u < kUnroll; ++u)
    pBody += subst("        %mx$U = arith.maximumf %mx$P, %s$U : f32\n",
                   {{"U", num(u)}, {"P", num(u - 1)}});
  pBody += subst(R"(        %m2 = arith.addf %mx$L, %f0 : f32
        %dm = arith.subf %m, %m2 : f32
        %corr = math.exp %dm : f32
        %lc = arith.mulf %l, %corr : f32
        %corrv = vector.broadcast %corr : f32 to vector<8xf32>
)",
                 {{"L", num(kUnroll - 1)}});
  std::string lsum = "%lc";
  for (int64_t u = 0; u < kUnroll; ++u) {
    pBody += subst(R"(        %ds$U = arith.subf %s$U, %m2 : f32
        %pe_$U = math.exp %ds$U : f32
        %p$U = arith.select %ok$U, %pe_$U, %f0 : f32
        %pv$U = vector.broadcast %p$U : f32 to vector<8xf32>
        %ls$U = arith.addf $PREV, %p$U : f32
)",
                   {{"U", num(u)}, {"PREV", lsum}});
    lsum = "%ls" + num(u);
  }
  pBody += each("        %ac$R = arith.mulf %acc$R, %corrv : vector<8xf32>\n");
  for (int64_t u = 0; u < kUnroll; ++u)
    pBody +=
        each(subst("        %an$U_$R = vector.fma %pv$U, %lat$U_$R, "
                   "$PREV : vector<8xf32>\n",
                   {{"U", num(u)},
                    {"PREV", u == 0 ? "%ac$R" : "%an" + num(u - 1) + "_$R"}}));
  text += R"(      %qro = arith.addi %qo, %DN : index
      %p = arith.addi %pos, %t : index
      %n = arith.addi %p, %c1 : index
$CHUNK      %last = arith.subi %je, %c1 : index
)";
  text +=
      "      %ms:" + num(2 + vectors) +
      " = scf.for %jq = %js to %je step %c4 iter_args(%m = %lowest, %l = %f0" +
      accArgs + ") -> (f32, f32, " + vecTypes + ") {\n" + pBody +
      "        scf.yield %m2, " + lsum + ", " +
      list("%an" + num(kUnroll - 1) + "_", "") + " : f32, f32, " + vecTypes +
      "\n}\n";
  // 3. result = W_UV[h] (weighted latent) / l, four value rows at a time.
  std::string oBody;
  for (int64_t u = 0; u < kUnroll; ++u) {
    oBody += subst(R"(        %od$U = arith.addi %dv, %k$U : index
        %vr$U = arith.addi %vrow, %od$U : index
        %vo$U = arith.muli %vr$U, %R : index
        %vl$U = arith.addi %vo$U, %l8 : index
)",
                   {{"U", num(u)}});
    oBody +=
        each(subst(R"(        %vi$U_$R = arith.addi %vl$U, %roff$R : index
        %wr$U_$R = vector.load %b1[%vi$U_$R] {alignment = 16} : memref<?x$W>, vector<8x$W>
        %wv$U_$R = $WIDEN
        %op$U_$R = arith.mulf %wv$U_$R, %af$R : vector<8xf32>
        %os$U_$R = vector.reduction <add>, %op$U_$R : vector<8xf32> into f32
)",
                   {{"U", num(u)}, {"WIDEN", subst(widen, {{"U", num(u)}})}}));
    std::string sum = "%os" + num(u) + "_0";
    for (int64_t r = 1; r < vectors; ++r) {
      oBody += subst("        %oa$U_$R = arith.addf $PREV, %os$U_$R : f32\n",
                     {{"U", num(u)}, {"R", num(r)}, {"PREV", sum}});
      sum = "%oa" + num(u) + "_" + num(r);
    }
    oBody += subst(R"(        %ot$U = func.call @warp_sum($SUM) : (f32) -> f32
)",
                   {{"U", num(u)}, {"SUM", sum}});
  }
  oBody += "        scf.if %lead {\n";
  for (int64_t u = 0; u < kUnroll; ++u)
    oBody += subst(R"(          %on$U = arith.divf %ot$U, %L : f32
          %oi$U = arith.addi %oo, %od$U : index
          memref.store %on$U, %b4[%oi$U] : memref<?xf32>
)",
                   {{"U", num(u)}});
  oBody += "        }\n";
  if (cooperative) {
    // Merge the four warps' softmax states: rescale by exp(m_w - max m).
    text += R"(      scf.if %lead {
        memref.store %ms#0, %shm[%warp] : memref<8xf32, #gpu.address_space<workgroup>>
        %lw = arith.addi %warp, %c4 : index
        memref.store %ms#1, %shm[%lw] : memref<8xf32, #gpu.address_space<workgroup>>
      }
)" + each(R"(      %asi$R = arith.addi %wbase, %lr$R : index
      vector.store %ms#$ACC, %shq[%asi$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
)") + "      gpu.barrier\n";
    for (int w = 0; w < 4; ++w)
      text += subst(R"(      %cm$W = arith.constant $W : index
      %cl$W = arith.constant $W4 : index
      %mw$W = memref.load %shm[%cm$W] : memref<8xf32, #gpu.address_space<workgroup>>
      %lw$W = memref.load %shm[%cl$W] : memref<8xf32, #gpu.address_space<workgroup>>
)",
                    {{"W", num(w)}, {"W4", num(w + 4)}});
    text += R"(      %mm01 = arith.maximumf %mw0, %mw1 : f32
      %mm23 = arith.maximumf %mw2, %mw3 : f32
      %mm = arith.maximumf %mm01, %mm23 : f32
)";
    for (int w = 0; w < 4; ++w)
      text += subst(R"(      %dw$W = arith.subf %mw$W, %mm : f32
      %fw$W = math.exp %dw$W : f32
      %fv$W = vector.broadcast %fw$W : f32 to vector<8xf32>
      %lf$W = arith.mulf %fw$W, %lw$W : f32
)",
                    {{"W", num(w)}});
    text += R"(      %lf01 = arith.addf %lf0, %lf1 : f32
      %lf23 = arith.addf %lf2, %lf3 : f32
      %L = arith.addf %lf01, %lf23 : f32
)";
    text += each(
        R"(      %ag0_$R = vector.load %shq[%lr$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %ai1_$R = arith.addi %lr$R, %R : index
      %ag1_$R = vector.load %shq[%ai1_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %ai2_$R = arith.addi %ai1_$R, %R : index
      %ag2_$R = vector.load %shq[%ai2_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %ai3_$R = arith.addi %ai2_$R, %R : index
      %ag3_$R = vector.load %shq[%ai3_$R] : memref<$SHQxf32, #gpu.address_space<workgroup>>, vector<8xf32>
      %am0_$R = arith.mulf %fv0, %ag0_$R : vector<8xf32>
      %am1_$R = vector.fma %fv1, %ag1_$R, %am0_$R : vector<8xf32>
      %am2_$R = vector.fma %fv2, %ag2_$R, %am1_$R : vector<8xf32>
      %af$R = vector.fma %fv3, %ag3_$R, %am2_$R : vector<8xf32>
)");
  } else {
    text += each("      %af$R = arith.addf %ms#$ACC, %zv : vector<8xf32>\n") +
            "      %L = arith.addf %ms#1, %f0 : f32\n";
  }
  text += R"(      %oo = arith.muli %item, %DV : index
      %vrow = arith.addi %hrow, %DN : index
      scf.for %dv = %dvs to %dve step %c4 {
)" + oBody +
          "      }\n";
  // Work split: the whole item for a warp kernel; a quarter of the nope
  // rows, positions and value rows per warp in the cooperative one.
  std::string bounds = cooperative
                           ? R"(      %wbase = arith.muli %warp, %R : index
      %dnq = arith.constant $DNQ : index
      %dvq = arith.constant $DVQ : index
      %dqs = arith.muli %warp, %dnq : index
      %dqe = arith.addi %dqs, %dnq : index
      %dvs = arith.muli %warp, %dvq : index
      %dve = arith.addi %dvs, %dvq : index
)"
                           : R"(      %dqs = arith.addi %c0, %c0 : index
      %dqe = arith.addi %DN, %c0 : index
      %dvs = arith.addi %c0, %c0 : index
      %dve = arith.addi %DV, %c0 : index
)";
  bounds += each("      %roff$R = arith.constant $ROFF : index\n"
                 "      %lr$R = arith.addi %l8, %roff$R : index\n");
  std::string chunk = cooperative ? R"(      %c3 = arith.constant 3 : index
      %n3 = arith.addi %n, %c3 : index
      %chunk = arith.divui %n3, %c4 : index
      %js0 = arith.muli %warp, %chunk : index
      %js = arith.minui %js0, %n : index
      %je0 = arith.addi %js, %chunk : index
      %je = arith.minui %je0, %n : index
)"
                                  : R"(      %js = arith.addi %c0, %c0 : index
      %je = arith.addi %n, %c0 : index
)";
  text = subst(text, {{"BOUNDS", bounds}, {"CHUNK", chunk}});
  text = subst(text, {{"H", num(heads)},
                      {"DNQ", num(nope / 4)},
                      {"DVQ", num(valueDim / 4)},
                      {"SHQ", num(4 * rank)},
                      {"DN", num(nope)},
                      {"DR", num(rope)},
                      {"DQ", num(nope + rope)},
                      {"DV", num(valueDim)},
                      {"RANK", num(rank)},
                      {"ROW", num(nope + valueDim)},
                      {"SCALE", f32Literal(scale)},
                      {"W", eltName(weight)}});
  return text;
}
