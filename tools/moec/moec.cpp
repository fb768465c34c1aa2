//===- moec.cpp - the moec compiler driver --------------------------------===//
//
// Part of moec. `moec import | compile | inspect`: the command a user runs
// on a HuggingFace checkpoint. Every failure is one line on stderr naming the
// file, tensor or flag at fault, and a non-zero exit; outputs are written to
// a temporary file and renamed, so nothing half-written is left behind.
//
//===----------------------------------------------------------------------===//

#include "moec/Conversion/CpuBackend.h"
#include "moec/Frontend/Importer.h"
#include "moec/Frontend/Inspect.h"
#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"
#include "moec/InitAll.h"
#include "moec/Support/Format.h"
#include "moec/Tokenizer/Tokenizer.h"
#include "moec/runtime.h"

#include "mlir/IR/AsmState.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/WithColor.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace llvm;

namespace {

cl::SubCommand importCommand(
    "import", "Import a HuggingFace checkpoint directory into the moe dialect "
              "and print the module (weights stay references)");
cl::SubCommand
    compileCommand("compile",
                   "Compile a HuggingFace checkpoint directory for a target");
cl::SubCommand inspectCommand(
    "inspect", "Describe a checkpoint directory (config, layers, weight "
               "table) or a .moec artifact (header, weights, kernels, plan)");

cl::SubCommand tokenizeCommand(
    "tokenize", "Tokenize stdin (all bytes, nothing stripped) with a "
                "tokenizer.json or a checkpoint directory's; prints the ids");

cl::OptionCategory moecCategory("moec options");

cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                               cl::desc("<checkpoint directory>"),
                               cl::sub(importCommand), cl::sub(compileCommand),
                               cl::sub(inspectCommand),
                               cl::sub(tokenizeCommand), cl::cat(moecCategory));

cl::opt<std::string> outputPath("o", cl::desc("Output file ('-' for stdout)"),
                                cl::value_desc("file"), cl::init("-"),
                                cl::sub(importCommand), cl::sub(compileCommand),
                                cl::cat(moecCategory));

cl::opt<int64_t>
    maxSeqLen("max-seq-len",
              cl::desc("KV-cache capacity in tokens (default: min(max_position_"
                       "embeddings, 4096))"),
              cl::init(0), cl::sub(importCommand), cl::sub(compileCommand),
              cl::cat(moecCategory));

cl::opt<bool> importSummary(
    "summary",
    cl::desc("Print a per-layer table (attention, experts, parameters, "
             "active parameters per token) instead of the module"),
    cl::sub(importCommand), cl::cat(moecCategory));

cl::opt<bool> addSpecial(
    "add-special",
    cl::desc("Add the special tokens the tokenizer's post-processor or "
             "tokenizer_config.json asks for (e.g. BOS)"),
    cl::sub(tokenizeCommand), cl::cat(moecCategory));
cl::opt<bool> decodeIds("decode",
                        cl::desc("Read whitespace-separated ids from stdin "
                                 "and print their text"),
                        cl::sub(tokenizeCommand), cl::cat(moecCategory));

cl::opt<bool>
    verifyChecksums("verify",
                    cl::desc("Also check every weight's and kernel's checksum"),
                    cl::sub(inspectCommand), cl::cat(moecCategory));

cl::opt<std::string> target("target",
                            cl::desc("Code generation target: cpu, cuda, or "
                                     "cuda:sm_XX"),
                            cl::init("cpu"), cl::sub(compileCommand),
                            cl::cat(moecCategory));

enum class EmitKind {
  Moe,
  Mlir,
  Llvm,
  Asm,
  Obj,
  Nvvm,
  Ptx,
  Cubin,
  Fatbin,
  Artifact
};
cl::opt<EmitKind> emit(
    "emit", cl::desc("Where compilation stops"), cl::init(EmitKind::Artifact),
    cl::values(
        clEnumValN(EmitKind::Moe, "moe", "the optimized moe-dialect module"),
        clEnumValN(EmitKind::Mlir, "mlir",
                   "the generated kernels (MLIR, before lowering)"),
        clEnumValN(EmitKind::Llvm, "llvm", "the kernels as optimized LLVM IR"),
        clEnumValN(EmitKind::Asm, "asm", "the kernels as assembly"),
        clEnumValN(EmitKind::Obj, "obj", "the kernels as an object file"),
        clEnumValN(EmitKind::Nvvm, "nvvm",
                   "cuda: the kernels lowered to the NVVM/LLVM dialects"),
        clEnumValN(EmitKind::Ptx, "ptx", "cuda: the kernels as PTX"),
        clEnumValN(EmitKind::Cubin, "cubin", "cuda: the kernels as a cubin"),
        clEnumValN(EmitKind::Fatbin, "fatbin",
                   "cuda: the kernels as a fatbin (cubin + PTX)"),
        clEnumValN(EmitKind::Artifact, "artifact",
                   "a deployable .moec artifact")),
    cl::sub(compileCommand), cl::cat(moecCategory));

cl::list<std::string> disabledPasses(
    "disable-pass",
    cl::desc("Leave this pass out of the moe pipeline (repeatable; e.g. "
             "moe-fuse-attention)"),
    cl::value_desc("name"), cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<bool> printStats(
    "stats",
    cl::desc("Print, per entry point, the kernel dispatches per call and per "
             "layer, the weight bytes a decode token reads and the KV-cache "
             "bytes per position (compare with --disable-pass)"),
    cl::sub(compileCommand), cl::cat(moecCategory));

enum class WeightsMode { Embedded, Deferred };
cl::opt<WeightsMode> weightsMode(
    "weights", cl::desc("Where the artifact's weights go"),
    cl::init(WeightsMode::Embedded),
    cl::values(
        clEnumValN(WeightsMode::Embedded, "embedded",
                   "in the artifact (the default)"),
        clEnumValN(WeightsMode::Deferred, "deferred",
                   "left out: a skeleton artifact plus OUTPUT.weights.json "
                   "(layout and each weight's recipe over checkpoint "
                   "tensors); bench/pack_deferred.py completes it from a "
                   "checkpoint, e.g. on a machine without the compiler")),
    cl::sub(compileCommand), cl::cat(moecCategory));

enum class DType { F32, BF16, Q8_0 };
cl::opt<DType>
    dtype("dtype", cl::desc("Weight/compute type (f32 accumulation always)"),
          cl::init(DType::F32),
          cl::values(clEnumValN(DType::F32, "f32", "float32 weights"),
                     clEnumValN(DType::BF16, "bf16", "bfloat16 weights"),
                     clEnumValN(DType::Q8_0, "q8_0",
                                "GGUF Q8_0 blocks (int8 x f16 scale per 32 "
                                "weights; CPU)")),
          cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<moec::cpu::CpuOptions::DotActivations> dotActivations(
    "dot-activations",
    cl::desc("Precision of the activations in dot products with bf16 "
             "weights (sums are f32 either way)"),
    cl::init(moec::cpu::CpuOptions::DotActivations::Auto),
    cl::values(clEnumValN(moec::cpu::CpuOptions::DotActivations::Auto, "auto",
                          "bf16 where the CPU has AVX512-BF16, else f32"),
               clEnumValN(moec::cpu::CpuOptions::DotActivations::F32, "f32",
                          "f32: bf16 weights widened, exact products"),
               clEnumValN(moec::cpu::CpuOptions::DotActivations::BF16, "bf16",
                          "rounded to bf16 as in transformers' bf16 compute; "
                          "AVX512-BF16 vdpbf16ps")),
    cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<std::string>
    cpu("cpu",
        cl::desc("CPU to generate code for: native (this machine, the default) "
                 "or an LLVM CPU name, e.g. x86-64-v3 for a portable AVX2 "
                 "baseline"),
        cl::init("native"), cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<int64_t> prefillChunk(
    "prefill-chunk",
    cl::desc("Most tokens one prefill call processes (longer prompts run in "
             "chunks)"),
    cl::init(512), cl::sub(compileCommand), cl::cat(moecCategory));

enum class PrefillLogits { Last, All };
cl::opt<PrefillLogits> prefillLogits(
    "prefill-logits",
    cl::desc("Logits a prefill call computes: last (the last position's, all "
             "generation needs; the default) or all (every position's, for "
             "moec-run --dump-prefill-logits and scoring)"),
    cl::values(clEnumValN(PrefillLogits::Last, "last",
                          "the last position's row only"),
               clEnumValN(PrefillLogits::All, "all", "every position's rows")),
    cl::init(PrefillLogits::Last), cl::sub(compileCommand),
    cl::cat(moecCategory));

cl::opt<bool> quiet("quiet", cl::desc("No progress or summary on stderr"),
                    cl::sub(compileCommand), cl::cat(moecCategory));

cl::list<std::string> printIRAfter(
    "print-ir-after", cl::desc("Print the IR after the named pass"),
    cl::value_desc("pass"), cl::sub(compileCommand), cl::cat(moecCategory));
cl::list<std::string> printIRBefore(
    "print-ir-before", cl::desc("Print the IR before the named pass"),
    cl::value_desc("pass"), cl::sub(compileCommand), cl::cat(moecCategory));
cl::opt<bool> passTiming("pass-timing",
                         cl::desc("Report the time of every pass"),
                         cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<bool> printIRAfterAll("print-ir-after-all",
                              cl::desc("Print the IR after every pass (to "
                                       "stderr)"),
                              cl::sub(compileCommand), cl::cat(moecCategory));

cl::opt<std::string>
    dumpIRDir("dump-ir-dir",
              cl::desc("Write the IR after import and after every pass to "
                       "numbered files in this directory"),
              cl::value_desc("dir"), cl::sub(compileCommand),
              cl::cat(moecCategory));

[[noreturn]] void fail(const Twine &message) {
  WithColor::error(errs(), "moec") << message << "\n";
  std::exit(1);
}

void failOn(Error error) {
  if (error)
    fail(toString(std::move(error)));
}

// Writes `text` to `path` atomically (temp file + rename); '-' is stdout.
void writeOutput(StringRef path, function_ref<void(raw_ostream &)> write) {
  failOn(llvm::writeToOutput(path, [&](raw_ostream &os) -> Error {
    write(os);
    return Error::success();
  }));
}

// Writes the module after import and after each pass to DIR/NN-name.mlir;
// the moe pipeline and the kernel lowering share one numbering.
class DumpIRInstrumentation : public mlir::PassInstrumentation {
public:
  DumpIRInstrumentation(std::string dir, std::shared_ptr<unsigned> counter,
                        std::string stage)
      : dir(std::move(dir)), counter(std::move(counter)),
        stage(std::move(stage)) {}

  void dump(StringRef name, mlir::Operation *op) {
    SmallString<256> path(dir);
    sys::path::append(
        path, formatv("{0:d2}-{1}{2}.mlir", (*counter)++, stage, name).str());
    writeOutput(path, [&](raw_ostream &os) { op->print(os); });
  }

  // The IR each stage starts from: after import, or the generated kernels.
  void runBeforePass(mlir::Pass *, mlir::Operation *op) override {
    if (!dumpedInput)
      dump(stage.empty() ? "import" : "input", op);
    dumpedInput = true;
  }

  void runAfterPass(mlir::Pass *pass, mlir::Operation *op) override {
    dump(pass->getArgument().empty() ? pass->getName() : pass->getArgument(),
         op);
  }

private:
  std::string dir;
  std::shared_ptr<unsigned> counter;
  std::string stage;
  bool dumpedInput = false;
};

struct Target {
  enum Kind { Cpu, Cuda } kind;
  std::string chip; // cuda: sm_XX
};

Target parseTarget(StringRef spec) {
  if (spec == "cpu")
    return {Target::Cpu, ""};
  if (spec == "cuda") {
    if (!quiet)
      errs() << "moec: --target=cuda builds for sm_90 (Hopper; the PTX in "
                "the artifact also runs on newer GPUs); name another with "
                "--target=cuda:sm_XX\n";
    return {Target::Cuda, "sm_90"};
  }
  if (StringRef chip = spec; chip.consume_front("cuda:")) {
    StringRef digits = chip;
    if (digits.consume_front("sm_") && !digits.empty() &&
        all_of(digits.drop_back(digits.ends_with("a") ? 1 : 0), isDigit))
      return {Target::Cuda, chip.str()};
  }
  fail("--target=" + spec +
       ": expected cpu, cuda or cuda:sm_XX (e.g. "
       "cuda:sm_90)");
}

mlir::OwningOpRef<mlir::ModuleOp> importOrFail(mlir::MLIRContext &context) {
  moec::ImportOptions options;
  options.maxSequenceLength = maxSeqLen;
  if (maxSeqLen < 0)
    fail("--max-seq-len must be positive");
  Expected<mlir::OwningOpRef<mlir::ModuleOp>> module =
      moec::importCheckpoint(context, inputPath, options);
  if (!module)
    fail(toString(module.takeError()));
  return std::move(*module);
}

int runImport(mlir::MLIRContext &context) {
  if (importSummary) {
    // The table needs only the headers: no IR is built.
    Expected<moec::ModelConfig> config =
        moec::ModelConfig::fromDirectory(inputPath);
    if (!config)
      fail(toString(config.takeError()));
    Expected<moec::SafeTensorsCheckpoint> checkpoint =
        moec::SafeTensorsCheckpoint::open(inputPath);
    if (!checkpoint)
      fail(toString(checkpoint.takeError()));
    writeOutput(outputPath, [&](raw_ostream &os) {
      moec::printLayerSummary(*config, *checkpoint, os);
    });
    return 0;
  }
  mlir::OwningOpRef<mlir::ModuleOp> module = importOrFail(context);
  writeOutput(outputPath, [&](raw_ostream &os) { module->print(os); });
  return 0;
}

// Progress of `moec compile` on stderr: one line per phase, and a live
// progress bar for the weights when stderr is a terminal.
class Progress {
public:
  Progress() : start(std::chrono::steady_clock::now()), phaseStart(start) {}

  void phase(StringRef what) {
    if (quiet)
      return;
    errs() << formatv("moec: {0,-9} {1:f2} s\n", what, elapsed(phaseStart));
    phaseStart = std::chrono::steady_clock::now();
  }

  void weights(uint64_t written, uint64_t total) {
    if (quiet || !errs().is_displayed() || total == 0)
      return;
    double seconds = elapsed(phaseStart);
    double fraction = static_cast<double>(written) / total;
    double eta = fraction > 0 ? seconds * (1 - fraction) / fraction : 0;
    unsigned filled = static_cast<unsigned>(fraction * 30);
    errs() << formatv(
        "\rmoec: weights   [{0}{1}] {2,3}% {3} / {4}  ETA {5:f0} s ",
        std::string(filled, '#'), std::string(30 - filled, ' '),
        static_cast<unsigned>(fraction * 100), moec::formatBytes(written),
        moec::formatBytes(total), eta);
    if (written == total)
      errs() << "\r" << std::string(80, ' ') << "\r";
  }

  double total() const { return elapsed(start); }

private:
  static double elapsed(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() -
                                         since)
        .count();
  }
  std::chrono::steady_clock::time_point start, phaseStart;
};

int runCompile(mlir::MLIRContext &context) {
  Progress progress;
  Target parsed = parseTarget(target);
  bool cuda = parsed.kind == Target::Cuda;
  if (cuda && (emit == EmitKind::Asm || emit == EmitKind::Obj ||
               emit == EmitKind::Llvm))
    fail("--emit=llvm/asm/obj are CPU outputs; for --target=cuda use "
         "--emit=ptx, "
         "cubin, fatbin or nvvm");
  if (!cuda && (emit == EmitKind::Ptx || emit == EmitKind::Cubin ||
                emit == EmitKind::Fatbin || emit == EmitKind::Nvvm))
    fail("--emit=ptx/cubin/fatbin/nvvm need --target=cuda");
  if (emit == EmitKind::Artifact && outputPath == "-")
    fail("-o is required with --emit=artifact");
  if (prefillChunk < 1)
    fail("--prefill-chunk must be positive");

  mlir::OwningOpRef<mlir::ModuleOp> module = importOrFail(context);
  if (!dumpIRDir.empty())
    if (std::error_code ec = sys::fs::create_directories(dumpIRDir))
      fail("--dump-ir-dir=" + dumpIRDir + ": " + ec.message());
  auto counter = std::make_shared<unsigned>(0);
  // The same printing, dumping and timing for the moe pipeline and for the
  // kernel lowering (stage "kernels-").
  auto instrument = [&](mlir::PassManager &pm, StringRef stage) {
    if (!dumpIRDir.empty())
      pm.addInstrumentation(std::make_unique<DumpIRInstrumentation>(
          dumpIRDir, counter, stage.str()));
    if (printIRAfterAll || !printIRAfter.empty() || !printIRBefore.empty()) {
      pm.getContext()->disableMultithreading();
      auto named = [](const cl::list<std::string> &names, mlir::Pass *pass) {
        return llvm::is_contained(names, pass->getArgument().str());
      };
      pm.enableIRPrinting(
          /*shouldPrintBeforePass=*/
          [named](mlir::Pass *pass, mlir::Operation *) {
            return named(printIRBefore, pass);
          },
          /*shouldPrintAfterPass=*/
          [named](mlir::Pass *pass, mlir::Operation *) {
            return printIRAfterAll || named(printIRAfter, pass);
          },
          /*printModuleScope=*/true, /*printAfterOnlyOnChange=*/false);
    }
    if (passTiming)
      pm.enableTiming();
  };
  mlir::PassManager pm(&context);
  instrument(pm, "");
  for (const std::string &name : disabledPasses)
    if (!llvm::is_contained(mlir::moe::moeOptimizationPassNames(), name))
      fail("--disable-pass=" + name + ": not a pass of the moe pipeline (" +
           join(mlir::moe::moeOptimizationPassNames(), ", ") + ")");
  mlir::moe::buildMoeOptimizationPipeline(pm, disabledPasses);
  if (mlir::failed(pm.run(*module)))
    fail("the moe optimization pipeline failed on " + inputPath);
  progress.phase("import+optimize");
  if (emit == EmitKind::Moe) {
    writeOutput(outputPath, [&](raw_ostream &os) { module->print(os); });
    return 0;
  }

  moec::cpu::CpuOptions options;
  options.weightType = dtype == DType::BF16   ? moec::cpu::WeightType::BF16
                       : dtype == DType::Q8_0 ? moec::cpu::WeightType::Q8_0
                                              : moec::cpu::WeightType::F32;
  // A prefill call cannot hold more tokens than the KV cache: the default
  // chunk shrinks to a small --max-seq-len, an explicit one must fit.
  options.prefillChunk = prefillChunk;
  if (auto capacity = module->getOperation()->getAttrOfType<mlir::IntegerAttr>(
          "moe.max_seq_len");
      capacity && options.prefillChunk > capacity.getInt()) {
    if (prefillChunk.getNumOccurrences())
      fail("--prefill-chunk=" + std::to_string(prefillChunk) +
           " exceeds the KV-cache capacity " +
           std::to_string(capacity.getInt()) + " (--max-seq-len)");
    options.prefillChunk = capacity.getInt();
  }
  options.lastLogitsOnly = prefillLogits == PrefillLogits::Last && !cuda;
  options.cpu = cpu;
  options.dotActivations = dotActivations;
  if (cuda) {
    options.cudaChip = parsed.chip;
    if (const char *home = getenv("CUDA_HOME"))
      options.cudaToolkit = home;
  }
  options.instrument = [&](mlir::PassManager &kernelPM) {
    instrument(kernelPM, "kernels-");
  };
  Expected<moec::cpu::CpuProgram> program =
      moec::cpu::planCpuProgram(*module, options);
  if (!program)
    fail(inputPath + ": " + toString(program.takeError()));
  if (printStats) {
    uint64_t kvPerPosition = 0;
    for (const moec::cpu::PlannedKvCache &cache : program->kvCaches)
      for (ArrayRef<int64_t> shape : {ArrayRef<int64_t>(cache.keyShape),
                                      ArrayRef<int64_t>(cache.valueShape)}) {
        uint64_t count = shape.empty() ? 0 : 1;
        for (int64_t dim : shape.drop_front())
          count *= static_cast<uint64_t>(dim);
        kvPerPosition += 4 * count;
      }
    int64_t layers = std::max<int64_t>(1, program->kvCaches.size());
    for (const moec::cpu::PlannedEntry &entry : program->entries) {
      uint64_t weightBytes = 0;
      for (const moec::cpu::PlannedDispatch &d : entry.dispatches)
        weightBytes += d.weightBytesRead;
      errs() << formatv("moec: stats {0,-8} {1} dispatches ({2:f1} per "
                        "layer)",
                        entry.name, entry.dispatches.size(),
                        static_cast<double>(entry.dispatches.size()) / layers);
      // Per token only for single-token calls (prefill reads more experts).
      if (entry.maxTokens == 1)
        errs() << formatv(", weights read per token {0}, KV cache {1} per "
                          "position",
                          moec::formatBytes(weightBytes),
                          moec::formatBytes(kvPerPosition));
      errs() << "\n";
    }
    if (dtype == DType::BF16 && !cuda)
      errs() << (program->bf16Dot
                     ? "moec: stats dot products: bf16 activations x bf16 "
                       "weight pairs (vdpbf16ps), f32 sums\n"
                     : "moec: stats dot products: f32 activations x widened "
                       "bf16 weights, f32 sums\n");
    if (dtype == DType::Q8_0)
      errs() << "moec: stats dot products: f32 activations x Q8_0 weights "
                "widened and scaled per block of 32, f32 sums\n";
  }
  if (emit == EmitKind::Mlir) {
    writeOutput(outputPath,
                [&](raw_ostream &os) { os << program->kernelModule; });
    return 0;
  }
  if (cuda) {
    // A fatbin (cubin + PTX) when the toolkit can assemble, else PTX only:
    // the driver JITs it at load.
    bool assemble = moec::cpu::hasCudaAssembler(options.cudaToolkit);
    moec::cpu::GpuEmit stage =
        emit == EmitKind::Ptx                  ? moec::cpu::GpuEmit::Ptx
        : emit == EmitKind::Cubin              ? moec::cpu::GpuEmit::Cubin
        : emit == EmitKind::Nvvm               ? moec::cpu::GpuEmit::Nvvm
        : emit == EmitKind::Fatbin || assemble ? moec::cpu::GpuEmit::Fatbin
                                               : moec::cpu::GpuEmit::Ptx;
    if (emit == EmitKind::Artifact && !assemble && !quiet)
      errs() << "moec: note: no ptxas/fatbinary under " << options.cudaToolkit
             << "/bin; the artifact holds PTX only (the driver compiles it "
                "at load)\n";
    Expected<std::string> binary =
        moec::cpu::compileGpuKernels(program->kernelModule, options, stage);
    if (!binary)
      fail(toString(binary.takeError()));
    if (emit != EmitKind::Artifact) {
      writeOutput(outputPath, [&](raw_ostream &os) { os << *binary; });
      return 0;
    }
    program->gpuFormat = stage == moec::cpu::GpuEmit::Fatbin ? "fatbin" : "ptx";
    program->gpuBinary = std::move(*binary);
    if (program->gpuFormat == "ptx")
      program->gpuBinary.push_back('\0'); // cuModuleLoadData reads a C string
  }
  moec::cpu::CpuEmit stage =
      emit == EmitKind::Llvm  ? moec::cpu::CpuEmit::LlvmIR
      : emit == EmitKind::Asm ? moec::cpu::CpuEmit::Assembly
      : emit == EmitKind::Obj ? moec::cpu::CpuEmit::Object
                              : moec::cpu::CpuEmit::SharedObject;
  if (!cuda) {
    Expected<std::string> code =
        moec::cpu::compileKernels(program->kernelModule, options, stage,
                                  &program->cpuName, &program->cpuFeatures);
    if (!code)
      fail(toString(code.takeError()));
    if (emit != EmitKind::Artifact) {
      writeOutput(outputPath, [&](raw_ostream &os) { os << *code; });
      return 0;
    }
    program->sharedObject = std::move(*code);
  }
  progress.phase("kernels");
  Expected<moec::ModelConfig> config =
      moec::ModelConfig::fromDirectory(inputPath);
  if (!config)
    fail(toString(config.takeError()));
  SmallString<256> configPath(inputPath);
  sys::path::append(configPath, "config.json");
  auto configText = MemoryBuffer::getFile(configPath);
  if (!configText)
    fail(configPath + ": " + configText.getError().message());
  Expected<moec::SafeTensorsCheckpoint> checkpoint =
      moec::SafeTensorsCheckpoint::open(inputPath);
  if (!checkpoint)
    fail(toString(checkpoint.takeError()));
  // The tokenizer travels in the artifact when the checkpoint has one.
  auto readOptional = [&](StringRef name) {
    SmallString<256> path(inputPath);
    sys::path::append(path, name);
    auto buffer = MemoryBuffer::getFile(path);
    return buffer ? (*buffer)->getBuffer().str() : std::string();
  };
  std::string tokenizerJson = readOptional("tokenizer.json");
  std::string tokenizerConfigJson = tokenizerJson.empty()
                                        ? std::string()
                                        : readOptional("tokenizer_config.json");
  moec::cpu::ArtifactOutput output;
  output.progress = [&](uint64_t written, uint64_t total) {
    progress.weights(written, total);
  };
  output.tokenizerJson = std::move(tokenizerJson);
  output.tokenizerConfigJson = std::move(tokenizerConfigJson);
  output.deferWeights = weightsMode == WeightsMode::Deferred;
  failOn(moec::cpu::writeArtifact(*program, *config, (*configText)->getBuffer(),
                                  *checkpoint, outputPath, output));
  progress.phase("weights");
  if (!quiet) {
    uint64_t weightBytes = 0, parameters = 0, kvBytesPerToken = 0;
    for (const moec::cpu::PlannedWeight &weight : program->weights) {
      weightBytes += weight.bytes();
      parameters += weight.parameters();
    }
    auto perPosition = [](ArrayRef<int64_t> shape) -> uint64_t {
      uint64_t count = shape.empty() ? 0 : 1;
      for (int64_t dim : shape.drop_front())
        count *= static_cast<uint64_t>(dim);
      return count;
    };
    for (const moec::cpu::PlannedKvCache &cache : program->kvCaches)
      kvBytesPerToken +=
          4 * (perPosition(cache.keyShape) + perPosition(cache.valueShape));
    uint64_t fileSize = 0;
    sys::fs::file_size(outputPath, fileSize);
    errs() << formatv("moec: wrote {0} ({1}) in {2:f2} s: {3} weights "
                      "({4} parameters, {5}), {6} kernels, KV cache {7} "
                      "per token\n",
                      outputPath, moec::formatBytes(fileSize), progress.total(),
                      program->weights.size(), moec::formatCount(parameters),
                      moec::formatBytes(weightBytes),
                      program->kernelNames.size(),
                      moec::formatBytes(kvBytesPerToken));
    if (output.deferWeights)
      errs() << "moec: the weights are deferred: " << outputPath
             << " is a skeleton; " << outputPath
             << ".weights.json says how bench/pack_deferred.py completes it\n";
  }
  return 0;
}

int runTokenize() {
  std::string error;
  std::unique_ptr<moec::tokenizer::Tokenizer> tokenizer;
  if (StringRef(inputPath).ends_with(".moec")) {
    // The tokenizer the compiler embedded from the checkpoint.
    moec_model_t *model = nullptr;
    if (moec_model_load(inputPath.c_str(), nullptr, &model) != MOEC_OK)
      fail(moec_last_error());
    size_t size = 0, configSize = 0;
    const char *json = moec_model_tokenizer_json(model, &size);
    const char *config = moec_model_tokenizer_config_json(model, &configSize);
    if (json)
      tokenizer = moec::tokenizer::Tokenizer::loadFromJson(
          std::string_view(json, size), inputPath, error,
          std::string_view(config ? config : "", configSize));
    moec_model_free(model);
    if (!json)
      fail(inputPath + ": the artifact has no tokenizer (its checkpoint "
                       "had no tokenizer.json)");
  } else {
    tokenizer = moec::tokenizer::Tokenizer::loadFile(inputPath, error);
  }
  if (!tokenizer)
    fail(error);
  ErrorOr<std::unique_ptr<MemoryBuffer>> input = MemoryBuffer::getSTDIN();
  if (!input)
    fail("stdin: " + input.getError().message());
  StringRef text = (*input)->getBuffer();
  if (decodeIds) {
    std::vector<moec::tokenizer::TokenId> ids;
    SmallVector<StringRef> words;
    text.split(words, ' ', -1, /*KeepEmpty=*/false);
    for (StringRef chunk : words) {
      SmallVector<StringRef> parts;
      chunk.split(parts, '\n', -1, false);
      for (StringRef word : parts) {
        word = word.trim();
        uint64_t id;
        if (word.empty())
          continue;
        if (word.getAsInteger(10, id) || id >= tokenizer->vocabSize())
          fail("--decode: '" + word + "' is not a token id of " + inputPath);
        ids.push_back(static_cast<moec::tokenizer::TokenId>(id));
      }
    }
    outs() << tokenizer->decode(ids);
    return 0;
  }
  std::vector<moec::tokenizer::TokenId> ids =
      tokenizer->encode(text.str(), addSpecial);
  for (size_t i = 0; i < ids.size(); ++i)
    outs() << (i ? " " : "") << ids[i];
  outs() << "\n";
  return 0;
}

int runInspect() {
  failOn(moec::inspectPath(inputPath, outs(), verifyChecksums));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(moecCategory);
  cl::ParseCommandLineOptions(
      argc, argv,
      "moec: ahead-of-time compiler for Mixture-of-Experts language models\n\n"
      "  moec import ./ckpt                 print the moe-dialect module\n"
      "  moec compile ./ckpt -o m.moec      a CPU artifact for this machine\n"
      "  moec compile ./ckpt --emit=moe -o m.mlir --print-ir-after-all\n"
      "  moec inspect ./ckpt | m.moec       config, weights, kernels, plan\n"
      "  moec tokenize ./ckpt < text.txt    token ids of stdin\n"
      "  moec-run m.moec --prompt-tokens 3,17,250 -n 16\n");

  mlir::DialectRegistry registry;
  moec::registerImporterDialects(registry);
  mlir::MLIRContext context(registry);
  context.loadAllAvailableDialects();

  if (importCommand)
    return runImport(context);
  if (compileCommand)
    return runCompile(context);
  if (inspectCommand)
    return runInspect();
  if (tokenizeCommand)
    return runTokenize();
  errs() << "moec: missing subcommand (import, compile, inspect or "
            "tokenize); see "
            "'moec --help'\n";
  return 1;
}
