//===- MakeTestArtifact.cpp - test artifacts and .npy checks for lit ------===//
//
// Part of moec (test utility).
//   moec-make-test-artifact OUT.moec [--tile N] [--capacity N] [--last-logits]
//                           [--no-decode] [--missing-kernel]
//                           [--record-ranges [--grain G]]
//     writes a toy-model artifact (TestArtifact.h) for moec-run's lit tests
//   moec-make-test-artifact --print-npy FILE.npy
//     prints the shape of a float32 [rows, cols] .npy file and, per row, its
//     argmax and maximum, so lit tests can check moec-run's dumps
//
//===----------------------------------------------------------------------===//

#include "TestArtifact.h"

#include "moec/Support/Npy.h"

#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

using namespace llvm;

static cl::opt<std::string> outputPath(cl::Positional, cl::desc("<output>"));
static cl::opt<int64_t> tile("tile", cl::desc("prefill max_tokens"),
                             cl::init(4));
static cl::opt<int64_t> capacity("capacity", cl::desc("KV-cache capacity"),
                                 cl::init(64));
static cl::opt<bool> lastLogits("last-logits",
                                cl::desc("prefill computes the last row only"));
static cl::opt<bool> noDecode("no-decode", cl::desc("omit the decode entry"));
static cl::opt<bool>
    missingKernel("missing-kernel",
                  cl::desc("name a kernel the shared object lacks"));
static cl::opt<bool> recordRanges("record-ranges",
                                  cl::desc("kernels record their work ranges"));
static cl::opt<int64_t> grain("grain", cl::desc("grain of --record-ranges"),
                              cl::init(0));
static cl::opt<std::string> printNpy("print-npy",
                                     cl::desc("describe a .npy file instead"));

static int fail(Error error) {
  errs() << "moec-make-test-artifact: error: " << toString(std::move(error))
         << "\n";
  return 1;
}

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv, "moec test artifacts\n");
  if (!printNpy.empty()) {
    Expected<moec::NpyArray> array = moec::readNpy(printNpy);
    if (!array)
      return fail(array.takeError());
    if (array->dtype != moec::NpyDType::F32 || array->shape.size() != 2)
      return fail(createStringError("%s: expected a float32 2-d array",
                                    printNpy.c_str()));
    int64_t rows = array->shape[0], cols = array->shape[1];
    outs() << formatv("shape [{0}, {1}]\n", rows, cols);
    for (int64_t row = 0; row < rows; ++row) {
      const float *values = array->f32.data() + row * cols;
      int64_t best = 0;
      for (int64_t col = 1; col < cols; ++col)
        if (values[col] > values[best])
          best = col;
      outs() << formatv("row {0}: argmax {1} max {2:f2}\n", row, best,
                        values[best]);
    }
    return 0;
  }
  if (outputPath.empty())
    return fail(createStringError("missing output path"));
  moec::test::TestArtifactOptions options;
  options.prefillTile = tile;
  options.capacity = capacity;
  options.allLogits = !lastLogits;
  options.withDecode = !noDecode;
  options.recordRanges = recordRanges;
  options.grain = grain;
  if (missingKernel)
    options.extraKernelNames.push_back("moec_test_missing_kernel");
  if (Error error = moec::test::writeTestArtifact(outputPath, options))
    return fail(std::move(error));
  return 0;
}
