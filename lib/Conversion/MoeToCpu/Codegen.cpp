//===- Codegen.cpp - CPU kernels -> native code; weight materialization ---===//
//
// Part of moec. Lowers the kernel module through the upstream conversions
// (vector/scf/memref/math/arith/func -> llvm), translates it to LLVM IR,
// optimizes it for the chosen CPU and emits an object file in-process with
// LLVM's TargetMachine; the system compiler driver links it into the shared
// object the runtime loads from memory.
//
//===----------------------------------------------------------------------===//

#include "moec/Conversion/CpuBackend.h"

#include "KernelModule.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Float.h"

#include "mlir/Conversion/Passes.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/ControlFlow/IR/ControlFlow.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Index/IR/IndexDialect.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/MemRef/Transforms/Passes.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/UB/IR/UBOps.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/Dialect/X86Vector/X86VectorDialect.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/Passes.h"

#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

#include <cmath>
#include <cstring>
#include <vector>

using namespace mlir;

namespace moec::cpu {

static std::unique_ptr<llvm::TargetMachine>
createTargetMachine(const std::string &cpuOption, std::string &cpuName,
                    std::string &features, std::string &error) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getDefaultTargetTriple());
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return nullptr;
  cpuName = cpuOption;
  features.clear();
  if (cpuOption == "native") {
    cpuName = llvm::sys::getHostCPUName().str();
    llvm::StringMap<bool> hostFeatures = llvm::sys::getHostCPUFeatures();
    std::vector<std::string> enabled;
    for (const auto &feature : hostFeatures)
      if (feature.second)
        enabled.push_back("+" + feature.first().str());
    std::sort(enabled.begin(), enabled.end());
    features = llvm::join(enabled, ",");
  }
  llvm::TargetOptions options;
  auto machine =
      std::unique_ptr<llvm::TargetMachine>(target->createTargetMachine(
          triple, cpuName, features, options, llvm::Reloc::PIC_, std::nullopt,
          llvm::CodeGenOptLevel::Aggressive));
  if (!machine)
    error = "cannot create an LLVM target machine for --cpu=" + cpuOption;
  return machine;
}

static bool cpuHasFeatures(const std::string &cpuOption,
                           llvm::StringRef features) {
  std::string cpuName, allFeatures, error;
  std::unique_ptr<llvm::TargetMachine> machine =
      createTargetMachine(cpuOption, cpuName, allFeatures, error);
  return machine && machine->getMCSubtargetInfo()->checkFeatures(features);
}

bool cpuHasAvx512(const std::string &cpuOption) {
  return cpuHasFeatures(cpuOption, "+avx512f");
}

bool cpuHasF16c(const std::string &cpuOption) {
  return cpuHasFeatures(cpuOption, "+f16c");
}

bool cpuHasAvx512Bf16(const std::string &cpuOption) {
  return cpuHasFeatures(cpuOption, "+avx512f,+avx512bf16");
}

llvm::Expected<std::string> compileKernels(const std::string &kernelModule,
                                           const CpuOptions &options,
                                           CpuEmit emit, std::string *cpuName,
                                           std::string *cpuFeatures) {
  DialectRegistry registry;
  registry
      .insert<arith::ArithDialect, cf::ControlFlowDialect, func::FuncDialect,
              index::IndexDialect, LLVM::LLVMDialect, math::MathDialect,
              memref::MemRefDialect, scf::SCFDialect, ub::UBDialect,
              vector::VectorDialect, x86vector::X86VectorDialect>();
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  MLIRContext context(registry);
  KernelDiagnostics diagnostics(context);
  llvm::Expected<OwningOpRef<ModuleOp>> parsed =
      parseKernelModule(kernelModule, context, diagnostics, "CPU");
  if (!parsed)
    return parsed.takeError();
  OwningOpRef<ModuleOp> module = std::move(*parsed);

  PassManager pm(&context);
  if (options.instrument)
    options.instrument(pm);
  pm.addPass(createConvertVectorToSCFPass());
  pm.addPass(createSCFToControlFlowPass());
  pm.addPass(memref::createExpandStridedMetadataPass());
  pm.addPass(createLowerAffinePass());
  // x86vector: the bf16-pair dot products (x86vector.avx512.dot).
  ConvertVectorToLLVMPassOptions vectorToLLVM;
  vectorToLLVM.x86Vector = true;
  pm.addPass(createConvertVectorToLLVMPass(vectorToLLVM));
  pm.addPass(createConvertMathToLLVMPass());
  pm.addPass(createFinalizeMemRefToLLVMConversionPass());
  pm.addPass(createArithToLLVMConversionPass());
  pm.addPass(createConvertIndexToLLVMPass());
  pm.addPass(createUBToLLVMConversionPass());
  pm.addPass(createConvertFuncToLLVMPass());
  pm.addPass(createConvertControlFlowToLLVMPass());
  pm.addPass(createReconcileUnrealizedCastsPass());
  pm.addPass(createCanonicalizerPass());
  if (failed(pm.run(*module)))
    return llvm::createStringError("internal error: lowering the CPU kernels "
                                   "to the LLVM dialect failed: " +
                                   diagnostics.text());

  std::string error, cpu, features;
  std::unique_ptr<llvm::TargetMachine> machine =
      createTargetMachine(options.cpu, cpu, features, error);
  if (!machine)
    return llvm::createStringError("--cpu=" + options.cpu + ": " + error);
  if (cpuName)
    *cpuName = cpu;
  if (cpuFeatures)
    *cpuFeatures = features;

  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*module, llvmContext, "moec_kernels");
  if (!llvmModule)
    return llvm::createStringError("internal error: translating the CPU "
                                   "kernels to LLVM IR failed: " +
                                   diagnostics.text());
  llvmModule->setDataLayout(machine->createDataLayout());
  llvmModule->setTargetTriple(machine->getTargetTriple());
  auto optimize = makeOptimizingTransformer(3, 0, machine.get());
  if (llvm::Error err = optimize(llvmModule.get()))
    return std::move(err);

  std::string text;
  llvm::raw_string_ostream os(text);
  if (emit == CpuEmit::LlvmIR) {
    llvmModule->print(os, nullptr);
    return text;
  }
  llvm::SmallString<0> object;
  {
    llvm::raw_svector_ostream objectStream(object);
    llvm::legacy::PassManager codegen;
    if (machine->addPassesToEmitFile(codegen, objectStream, nullptr,
                                     emit == CpuEmit::Assembly
                                         ? llvm::CodeGenFileType::AssemblyFile
                                         : llvm::CodeGenFileType::ObjectFile))
      return llvm::createStringError("LLVM cannot emit code for --cpu=" +
                                     options.cpu);
    codegen.run(*llvmModule);
  }
  if (emit != CpuEmit::SharedObject)
    return std::string(object.str());

  // Link: cc -shared kernels.o -lm -o kernels.so, in a temporary directory.
  llvm::SmallString<128> dir;
  if (std::error_code ec =
          llvm::sys::fs::createUniqueDirectory("moec-link", dir))
    return llvm::createStringError("cannot create a temporary directory: " +
                                   ec.message());
  std::string objectPath = (dir + "/kernels.o").str();
  std::string sharedPath = (dir + "/kernels.so").str();
  llvm::scope_exit cleanup([&] {
    llvm::sys::fs::remove(objectPath);
    llvm::sys::fs::remove(sharedPath);
    llvm::sys::fs::remove(dir);
  });
  {
    std::error_code ec;
    llvm::raw_fd_ostream out(objectPath, ec);
    if (ec)
      return llvm::createStringError(objectPath + ": " + ec.message());
    out << object;
  }
  llvm::ErrorOr<std::string> linker = llvm::sys::findProgramByName("cc");
  if (!linker)
    return llvm::createStringError("cannot find the system linker driver "
                                   "'cc' to link the CPU kernels");
  std::vector<llvm::StringRef> args = {
      *linker, "-shared",           "-o", sharedPath, objectPath,
      "-lm",   "-Wl,-z,noexecstack"};
  std::string linkError;
  int status = llvm::sys::ExecuteAndWait(*linker, args, std::nullopt, {}, 0, 0,
                                         &linkError);
  if (status != 0)
    return llvm::createStringError("linking the CPU kernels failed (" +
                                   *linker + "): " + linkError);
  llvm::ErrorOr<std::unique_ptr<llvm::MemoryBuffer>> shared =
      llvm::MemoryBuffer::getFile(sharedPath);
  if (!shared)
    return llvm::createStringError(sharedPath + ": " +
                                   shared.getError().message());
  return (*shared)->getBuffer().str();
}

//===----------------------------------------------------------------------===//
// Weights
//===----------------------------------------------------------------------===//

namespace {

// Produces a weight expression's values as f32, in row-major chunks.
class WeightReader {
public:
  explicit WeightReader(const SafeTensorsCheckpoint &checkpoint)
      : checkpoint(checkpoint) {}

  using Sink = llvm::function_ref<llvm::Error(llvm::ArrayRef<float>)>;

  llvm::Error read(const WeightExpr &expr, Sink sink) {
    switch (expr.kind) {
    case WeightExpr::Param:
      return readParam(expr.name, 0, elements(expr.shape), sink);
    case WeightExpr::Stack:
    case WeightExpr::Concat:
      if (expr.kind == WeightExpr::Concat && expr.dim != 0)
        return readRows(expr, 0, expr.shape[0], sink);
      for (const WeightExpr &child : expr.operands)
        if (llvm::Error err = read(child, sink))
          return err;
      return llvm::Error::success();
    case WeightExpr::Slice:
      return readSlice(expr, sink);
    case WeightExpr::DequantizeFp8:
      return readFp8(expr, sink);
    }
    return llvm::Error::success();
  }

  /// Rows [begin, begin + count) along dim 0 of `expr`: what a concatenation
  /// along a later dim needs of its operands, one leading index at a time
  /// (e.g. an expert's gate rows, then its up rows).
  llvm::Error readRows(const WeightExpr &expr, int64_t begin, int64_t count,
                       Sink sink) {
    int64_t inner = elements(llvm::ArrayRef<int64_t>(expr.shape).drop_front());
    switch (expr.kind) {
    case WeightExpr::Param:
      return readParam(expr.name, begin * inner, count * inner, sink);
    case WeightExpr::Stack:
      for (int64_t row = begin; row < begin + count; ++row)
        if (llvm::Error err = read(expr.operands[row], sink))
          return err;
      return llvm::Error::success();
    case WeightExpr::Concat:
      if (expr.dim == 0) {
        int64_t first = 0;
        for (const WeightExpr &child : expr.operands) {
          int64_t lo = std::max(begin, first);
          int64_t hi = std::min(begin + count, first + child.shape[0]);
          if (lo < hi)
            if (llvm::Error err = readRows(child, lo - first, hi - lo, sink))
              return err;
          first += child.shape[0];
        }
        return llvm::Error::success();
      }
      for (int64_t row = begin; row < begin + count; ++row)
        for (const WeightExpr &child : expr.operands)
          if (llvm::Error err = readRows(child, row, 1, sink))
            return err;
      return llvm::Error::success();
    case WeightExpr::Slice:
      if (expr.dim == 0)
        return readRows(expr.operands[0], expr.offset + begin, count, sink);
      return readSlice(expr, sink, begin, count);
    case WeightExpr::DequantizeFp8:
      return readFp8(expr, sink, begin, count);
    }
    return llvm::Error::success();
  }

private:
  static int64_t elements(llvm::ArrayRef<int64_t> shape) {
    int64_t count = 1;
    for (int64_t dim : shape)
      count *= dim;
    return count;
  }

  llvm::Error readParam(llvm::StringRef name, int64_t first, int64_t count,
                        Sink sink) {
    llvm::Expected<const TensorInfo &> tensor = checkpoint.get(name);
    if (!tensor)
      return tensor.takeError();
    constexpr int64_t kChunk = 1 << 20;
    buffer.resize(std::min(count, kChunk));
    for (int64_t done = 0; done < count; done += kChunk) {
      int64_t n = std::min(kChunk, count - done);
      llvm::MutableArrayRef<float> out(buffer.data(), n);
      if (llvm::Error err = convertToF32(*tensor, first + done, out))
        return err;
      if (llvm::Error err = sink(out))
        return err;
    }
    return llvm::Error::success();
  }

  // A slice along dim > 0 of rows [begin, begin + count) of dim 0 (all
  // rows by default).
  llvm::Error readSlice(const WeightExpr &expr, Sink sink, int64_t begin = 0,
                        int64_t count = -1) {
    const WeightExpr &source = expr.operands[0];
    if (source.kind != WeightExpr::Param)
      return llvm::createStringError("internal error: slices of derived "
                                     "weights are not supported");
    llvm::ArrayRef<int64_t> shape = source.shape;
    int64_t outer = elements(shape.take_front(expr.dim));
    int64_t inner = elements(shape.drop_front(expr.dim + 1));
    int64_t perRow = expr.dim == 0 ? 1 : outer / shape[0];
    int64_t first = 0, last = outer;
    if (count >= 0 && expr.dim > 0) {
      first = begin * perRow;
      last = (begin + count) * perRow;
    }
    for (int64_t o = first; o < last; ++o)
      if (llvm::Error err = readParam(
              source.name, (o * shape[expr.dim] + expr.offset) * inner,
              expr.size * inner, sink))
        return err;
    return llvm::Error::success();
  }

  llvm::Error readFp8(const WeightExpr &expr, Sink sink, int64_t begin = 0,
                      int64_t count = -1) {
    llvm::Expected<const TensorInfo &> weight =
        checkpoint.get(expr.operands[0].name);
    if (!weight)
      return weight.takeError();
    llvm::Expected<const TensorInfo &> scale =
        checkpoint.get(expr.operands[1].name);
    if (!scale)
      return scale.takeError();
    int64_t rows = count < 0 ? expr.shape[0] : begin + count,
            cols = expr.shape[1];
    int64_t step = std::max<int64_t>(1, (1 << 20) / cols);
    for (int64_t row = begin; row < rows; row += step) {
      int64_t end = std::min(rows, row + step);
      buffer.resize((end - row) * cols);
      if (llvm::Error err =
              dequantizeFp8BlockRows(*weight, *scale, row, end, buffer,
                                     expr.blockRows, expr.blockCols))
        return err;
      // DeepSeek's weight_dequant produces the default dtype, bf16.
      for (float &value : buffer)
        value = bf16ToF32(f32ToBf16(value));
      if (llvm::Error err = sink(buffer))
        return err;
    }
    return llvm::Error::success();
  }

  const SafeTensorsCheckpoint &checkpoint;
  std::vector<float> buffer;
};

/// GGUF's Q8_0 quantization of one block of 32 values: d = max |x| / 127
/// (stored as f16), q = round(x / d); the value is then d * q.
void quantizeQ8Block(const float *values, char *block) {
  float amax = 0;
  for (int i = 0; i < 32; ++i)
    amax = std::max(amax, std::fabs(values[i]));
  float scale = amax / 127;
  float inverse = scale != 0 ? 1 / scale : 0;
  uint16_t half = f32ToF16(scale);
  std::memcpy(block, &half, 2);
  for (int i = 0; i < 32; ++i)
    block[2 + i] = static_cast<char>(
        static_cast<int8_t>(std::lround(values[i] * inverse)));
}

} // namespace

llvm::Error writeWeight(const PlannedWeight &weight,
                        const SafeTensorsCheckpoint &checkpoint,
                        llvm::raw_ostream &os) {
  WeightReader reader(checkpoint);
  std::vector<uint16_t> half;
  // Q8_0: values of a block not yet complete at the end of a chunk.
  std::vector<float> pending;
  std::vector<char> blocks;
  uint64_t written = 0;
  llvm::Error err = reader.read(weight.expr, [&](llvm::ArrayRef<float> chunk) {
    if (weight.type == WeightType::Q8_0) {
      pending.insert(pending.end(), chunk.begin(), chunk.end());
      size_t whole = pending.size() / 32;
      blocks.resize(whole * 34);
      for (size_t b = 0; b < whole; ++b)
        quantizeQ8Block(pending.data() + b * 32, blocks.data() + b * 34);
      os.write(blocks.data(), blocks.size());
      written += blocks.size();
      pending.erase(pending.begin(), pending.begin() + whole * 32);
    } else if (weight.type == WeightType::BF16) {
      half.resize(chunk.size());
      for (size_t i = 0; i < chunk.size(); ++i)
        half[i] = f32ToBf16(chunk[i]);
      os.write(reinterpret_cast<const char *>(half.data()), half.size() * 2);
      written += half.size() * 2;
    } else {
      os.write(reinterpret_cast<const char *>(chunk.data()), chunk.size() * 4);
      written += chunk.size() * 4;
    }
    return llvm::Error::success();
  });
  if (err)
    return err;
  if (written != weight.bytes())
    return llvm::createStringError("internal error: weight '" + weight.name +
                                   "' produced " + std::to_string(written) +
                                   " bytes, expected " +
                                   std::to_string(weight.bytes()));
  return llvm::Error::success();
}

} // namespace moec::cpu
