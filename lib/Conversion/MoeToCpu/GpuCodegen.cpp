//===- GpuCodegen.cpp - CUDA kernels -> NVVM -> PTX / cubin / fatbin ------===//
//
// Part of moec. The CUDA kernels are one `gpu.module` (KernelLibrary::
// gpuModuleText). Upstream MLIR does the rest: the kernel bodies' vector/scf
// code and the gpu ops lower to the NVVM and LLVM dialects
// (convert-gpu-to-nvvm), `nvvm-attach-target` names the chip, and
// `gpu-module-to-binary` runs LLVM's NVPTX backend (linking libdevice for
// the math functions) and, for cubin and fatbin, the toolkit's ptxas and
// fatbinary. A fatbin holds the cubin for the chip and its PTX, so newer
// GPUs JIT the PTX.
//
//===----------------------------------------------------------------------===//

#include "moec/Conversion/CpuBackend.h"

#include "KernelModule.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/All.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

using namespace mlir;

namespace moec::cpu {

bool hasCudaAssembler(llvm::StringRef toolkit) {
  llvm::SmallString<256> ptxas(toolkit), fatbinary(toolkit);
  llvm::sys::path::append(ptxas, "bin", "ptxas");
  llvm::sys::path::append(fatbinary, "bin", "fatbinary");
  return llvm::sys::fs::can_execute(ptxas) &&
         llvm::sys::fs::can_execute(fatbinary);
}

llvm::Expected<std::string> compileGpuKernels(const std::string &kernelModule,
                                              const CpuOptions &options,
                                              GpuEmit emit) {
  llvm::SmallString<256> libdevice(options.cudaToolkit);
  llvm::sys::path::append(libdevice, "nvvm", "libdevice", "libdevice.10.bc");
  if (!llvm::sys::fs::exists(libdevice))
    return llvm::createStringError(
        "--target=cuda: the CUDA toolkit's libdevice is missing (" + libdevice +
        "); install the CUDA Toolkit or set CUDA_HOME");
  if ((emit == GpuEmit::Cubin || emit == GpuEmit::Fatbin) &&
      !hasCudaAssembler(options.cudaToolkit))
    return llvm::createStringError("--target=cuda: ptxas/fatbinary not found "
                                   "under " +
                                   options.cudaToolkit + "/bin");

  // The pipeline is textual: its passes must be registered (once).
  static const bool passesRegistered = [] {
    registerAllPasses();
    return true;
  }();
  (void)passesRegistered;
  DialectRegistry registry;
  registerAllDialects(registry);
  registerAllExtensions(registry);
  registerAllToLLVMIRTranslations(registry);
  MLIRContext context(registry);
  KernelDiagnostics diagnostics(context);
  llvm::Expected<OwningOpRef<ModuleOp>> parsed =
      parseKernelModule(kernelModule, context, diagnostics, "CUDA");
  if (!parsed)
    return parsed.takeError();
  OwningOpRef<ModuleOp> module = std::move(*parsed);

  // PTX 8.0 for sm_90a (its default 7.8 does not support it); the chip's
  // default otherwise.
  llvm::StringRef chip = options.cudaChip;
  std::string features = chip.ends_with("a") ? "features=+ptx80 " : "";
  const char *format = emit == GpuEmit::Ptx     ? "isa"
                       : emit == GpuEmit::Cubin ? "bin"
                                                : "fatbin";
  std::string lowering =
      "gpu.module(convert-vector-to-scf,convert-scf-to-cf,"
      "expand-strided-metadata,lower-affine,"
      "convert-gpu-to-nvvm{index-bitwidth=64},canonicalize,cse,"
      "reconcile-unrealized-casts)";
  std::string pipeline =
      emit == GpuEmit::Nvvm
          ? lowering
          : llvm::formatv("{0},nvvm-attach-target{{chip={1} "
                          "{2}O=3},gpu-module-to-binary{{format={3} "
                          "toolkit={4}}",
                          lowering, chip, features, format, options.cudaToolkit)
                .str();
  PassManager pm(&context);
  if (options.instrument)
    options.instrument(pm);
  // The pipeline's passes, nested under this module-anchored manager.
  std::string pipelineError;
  llvm::raw_string_ostream pipelineErrorStream(pipelineError);
  if (failed(parsePassPipeline(pipeline, pm, pipelineErrorStream)))
    return llvm::createStringError("internal error: bad CUDA pipeline '" +
                                   pipeline + "': " + pipelineError);
  if (failed(pm.run(*module)))
    return llvm::createStringError("lowering the CUDA kernels for " +
                                   options.cudaChip +
                                   " failed: " + diagnostics.text());

  std::string text;
  llvm::raw_string_ostream os(text);
  if (emit == GpuEmit::Nvvm) {
    module->print(os);
    return text;
  }
  for (auto binary : module->getOps<gpu::BinaryOp>())
    for (Attribute object : binary.getObjects())
      if (auto gpuObject = dyn_cast<gpu::ObjectAttr>(object)) {
        return gpuObject.getObject().getValue().str();
      }
  return llvm::createStringError("internal error: gpu-module-to-binary "
                                 "produced no object");
}

} // namespace moec::cpu
