//===- moec-check-fixture.cpp - compare moec's logits with transformers' --===//
//
// Part of moec (test utility). Compares the logits moec-run dumped for a
// fixture's prompt with the ones HuggingFace transformers computed (the
// fixture's prefill_logits.npy / generate_logits.npy) under the fixture's
// tolerance rule, prints the measured max |Δlogit|, and fails on a miss.
//
//   moec-check-fixture FIXTURE_DIR --prefill P.npy --generate G.npy
//                      [--dtype f32|bf16|q8_0]
//   moec-check-fixture FIXTURE_DIR --print prompt|steps
//
//===----------------------------------------------------------------------===//

#include "moec/Support/Npy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>

using namespace llvm;
using namespace moec;

static cl::opt<std::string> fixtureDir(cl::Positional, cl::Required,
                                       cl::desc("<fixture directory>"));
static cl::opt<std::string>
    prefillPath("prefill",
                cl::desc("moec's prefill logits (absent for an artifact "
                         "compiled with --prefill-logits=last: the last "
                         "position's row is generate step 0)"));
static cl::opt<std::string> generatePath("generate",
                                         cl::desc("moec's generation logits"));
static cl::opt<std::string> dtype("dtype", cl::init("f32"),
                                  cl::desc("weight type moec ran with"));
static cl::opt<std::string> print("print",
                                  cl::desc("print 'prompt' ids or 'steps'"));
// bf16 weights round every weight to 8 mantissa bits: logits move by about
// 1e-2 relative on the tiny fixtures (measured, see test/fixtures/README.md).
static cl::opt<double>
    bf16Tolerance("bf16-tolerance", cl::init(3e-2),
                  cl::desc("relative logit tolerance for --dtype=bf16"));
// Rounding the activations to bf16 as well (bf16-pair dot products) adds
// about as much again: up to 3.1e-2 on these fixtures (mixtral). For
// scale: transformers computing in bf16 is 1.15e-2 off its own f32 logits
// on qwen3_moe_bf16, whose weights are exact in bf16 (moec there: 4.3e-3).
static cl::opt<std::string>
    activations("activations", cl::init("f32"),
                cl::desc("the dot products' activations: f32, or bf16 "
                         "(moec compile --stats says which)"));
static cl::opt<double> bf16ActivationTolerance(
    "bf16-activation-tolerance", cl::init(4e-2),
    cl::desc("relative logit tolerance for --dtype=bf16 --activations=bf16"));

[[noreturn]] static void fail(const Twine &message) {
  errs() << "moec-check-fixture: error: " << message << "\n";
  std::exit(1);
}

static NpyArray load(StringRef path) {
  Expected<NpyArray> array = readNpy(path);
  if (!array)
    fail(toString(array.takeError()));
  if (array->dtype != NpyDType::F32 || array->shape.size() != 2)
    fail(path + ": expected a float32 [rows, vocab] array");
  return std::move(*array);
}

struct Comparison {
  double maxDiff = 0, maxRef = 0;
};

static Comparison compare(const NpyArray &ref, const NpyArray &got,
                          int64_t rows, StringRef what) {
  if (got.shape[1] != ref.shape[1] || got.shape[0] < rows)
    fail(what + ": shape mismatch with the reference");
  Comparison c;
  int64_t vocab = ref.shape[1];
  for (int64_t i = 0; i < rows * vocab; ++i) {
    c.maxRef = std::max(c.maxRef, std::fabs(double(ref.f32[i])));
    c.maxDiff =
        std::max(c.maxDiff, std::fabs(double(ref.f32[i]) - double(got.f32[i])));
  }
  return c;
}

int main(int argc, char **argv) {
  cl::ParseCommandLineOptions(argc, argv, "compare moec logits with a fixture");
  SmallString<256> manifestPath(fixtureDir);
  sys::path::append(manifestPath, "fixture.json");
  auto buffer = MemoryBuffer::getFile(manifestPath);
  if (!buffer)
    fail(manifestPath + ": " + buffer.getError().message());
  Expected<json::Value> manifest = json::parse((*buffer)->getBuffer());
  if (!manifest)
    fail(manifestPath + ": " + toString(manifest.takeError()));
  const json::Object &object = *manifest->getAsObject();
  auto ints = [&](StringRef key) {
    std::vector<int64_t> values;
    if (const json::Array *array = object.getArray(key))
      for (const json::Value &v : *array)
        values.push_back(v.getAsInteger().value_or(-1));
    return values;
  };
  std::vector<int64_t> prompt = ints("prompt_ids");
  // Q8_0 weights are checked against transformers run on the same Q8_0
  // values (make_q8_0_reference.py), to the f32 tolerance: what Q8_0 itself
  // changes is recorded in fixture.json as q8_0_rel_change.
  bool q8 = dtype == "q8_0";
  std::string suffix = q8 ? "_q8_0" : "";
  if (q8 && !object.getArray("generated_ids_q8_0"))
    fail(fixtureDir + ": no Q8_0 reference (run "
                      "test/fixtures/make_q8_0_reference.py on it)");
  std::vector<int64_t> expectedIds = ints("generated_ids" + suffix);
  if (print == "prompt") {
    outs() << join(map_range(prompt, [](int64_t id) { return itostr(id); }),
                   ",")
           << "\n";
    return 0;
  }
  if (print == "steps") {
    outs() << expectedIds.size() << "\n";
    return 0;
  }

  double rel = 1e-4;
  if (const json::Object *tolerance = object.getObject("tolerance"))
    rel = tolerance->getNumber("rel_logit").value_or(rel);
  if (activations != "f32" && activations != "bf16")
    fail("--activations=" + activations + ": expected f32 or bf16");
  if (dtype == "bf16")
    rel = activations == "bf16" ? bf16ActivationTolerance : bf16Tolerance;

  auto fixtureFile = [&](StringRef name) {
    SmallString<256> path(fixtureDir);
    sys::path::append(path, name);
    return std::string(path);
  };
  NpyArray refPrefill = load(fixtureFile("prefill_logits" + suffix + ".npy"));
  NpyArray refGenerate = load(fixtureFile("generate_logits" + suffix + ".npy"));
  NpyArray gotGenerate = load(generatePath);

  Comparison prefill;
  if (!prefillPath.empty())
    prefill =
        compare(refPrefill, load(prefillPath), refPrefill.shape[0], "prefill");
  double prefillBound = rel * std::max(1.0, prefill.maxRef);

  // Greedy tokens: moec's argmax per step. Generation logits are compared up
  // to the first step where the reference's choice is ambiguous at this
  // tolerance (a tie within the bound may legitimately pick another token,
  // after which the sequences differ).
  int64_t vocab = refGenerate.shape[1];
  int64_t steps = std::min<int64_t>(refGenerate.shape[0], gotGenerate.shape[0]);
  int64_t compared = 0;
  bool tokensMatch = true;
  double generateDiff = 0, generateRef = 0;
  for (int64_t step = 0; step < steps; ++step) {
    const float *ref = refGenerate.f32.data() + step * vocab;
    const float *got = gotGenerate.f32.data() + step * vocab;
    std::vector<float> sorted(ref, ref + vocab);
    std::partial_sort(sorted.begin(), sorted.begin() + 2, sorted.end(),
                      std::greater<float>());
    double stepRef = 0, stepDiff = 0;
    for (int64_t v = 0; v < vocab; ++v) {
      stepRef = std::max(stepRef, std::fabs(double(ref[v])));
      stepDiff = std::max(stepDiff, std::fabs(double(ref[v]) - got[v]));
    }
    generateRef = std::max(generateRef, stepRef);
    generateDiff = std::max(generateDiff, stepDiff);
    ++compared;
    int64_t gotId = std::max_element(got, got + vocab) - got;
    if (gotId != expectedIds[step]) {
      double margin = sorted[0] - sorted[1];
      if (margin > 2 * rel * std::max(1.0, stepRef))
        tokensMatch = false;
      break;
    }
  }
  double generateBound = rel * std::max(1.0, generateRef);

  std::string prefillText =
      prefillPath.empty()
          ? std::string("prefill: last position only (generate step 0)")
          : formatv("prefill max|dlogit| {0:e3} (bound {1:e3})",
                    prefill.maxDiff, prefillBound)
                .str();
  outs() << formatv("{0}: dtype {1}: {2}, generate max|dlogit| {3:e3} over "
                    "{4} steps (bound {5:e3}), greedy tokens {6}\n",
                    sys::path::filename(StringRef(fixtureDir).rtrim('/')),
                    dtype, prefillText, generateDiff, compared, generateBound,
                    tokensMatch ? "match" : "DIFFER");
  bool ok = prefill.maxDiff <= prefillBound && generateDiff <= generateBound &&
            tokensMatch;
  return ok ? 0 : 1;
}
