//===- session-reuse.cpp - one session, several prompts; threads agree ----===//
//
// Part of moec (e2e test). Through the C API only, on an artifact compiled
// from a fixture:
//  * the first prompt's prefill and greedy decode match transformers;
//  * reset + the same prompt reproduces the first run bit for bit;
//  * a second, different prompt in the reused session equals a fresh
//    session's run bit for bit (nothing leaks from the earlier sequence);
//  * 1 and 2 threads give identical logits (work splitting is exact);
//  * running past the KV-cache capacity is an error, not a crash.
//
// Usage: moec-session-reuse-test MODEL.moec FIXTURE_DIR
//
//===----------------------------------------------------------------------===//

#include "moec/Support/Npy.h"
#include "moec/runtime.h"

#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

using namespace moec;

static int failures = 0;
#define CHECK(cond, ...)                                                       \
  do {                                                                         \
    if (!(cond)) {                                                             \
      std::fprintf(stderr, "FAILED: %s: ", #cond);                             \
      std::fprintf(stderr, __VA_ARGS__);                                       \
      std::fprintf(stderr, "\n");                                              \
      ++failures;                                                              \
    }                                                                          \
  } while (0)

struct Run {
  std::vector<float> prefill;  // [T, vocab]
  std::vector<float> generate; // [steps, vocab]
  std::vector<int64_t> tokens;
};

static Run generate(moec_session_t *session, const std::vector<int64_t> &prompt,
                    int steps, int64_t vocab) {
  Run run;
  run.prefill.resize(prompt.size() * vocab);
  CHECK(moec_prefill(session, prompt.data(), prompt.size(),
                     run.prefill.data()) == MOEC_OK,
        "prefill");
  std::vector<float> logits(run.prefill.end() - vocab, run.prefill.end());
  for (int step = 0; step < steps; ++step) {
    run.generate.insert(run.generate.end(), logits.begin(), logits.end());
    int64_t token = 0;
    moec_sample(logits.data(), vocab, nullptr, nullptr, &token);
    run.tokens.push_back(token);
    if (step + 1 < steps)
      CHECK(moec_decode(session, token, logits.data()) == MOEC_OK, "decode");
  }
  return run;
}

static double relDiff(const std::vector<float> &got,
                      const std::vector<float> &ref) {
  double diff = 0, scale = 1;
  for (size_t i = 0; i < ref.size() && i < got.size(); ++i) {
    diff = std::max(diff, std::fabs(double(got[i]) - ref[i]));
    scale = std::max(scale, std::fabs(double(ref[i])));
  }
  return diff / scale;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s MODEL.moec FIXTURE_DIR\n", argv[0]);
    return 2;
  }
  std::string fixture = argv[2];
  auto manifestText = llvm::MemoryBuffer::getFile(fixture + "/fixture.json");
  llvm::Expected<llvm::json::Value> manifest =
      llvm::json::parse((*manifestText)->getBuffer());
  std::vector<int64_t> prompt, expectedIds;
  for (const llvm::json::Value &v :
       *manifest->getAsObject()->getArray("prompt_ids"))
    prompt.push_back(*v.getAsInteger());
  for (const llvm::json::Value &v :
       *manifest->getAsObject()->getArray("generated_ids"))
    expectedIds.push_back(*v.getAsInteger());
  int steps = expectedIds.size();

  moec_model_t *model = nullptr;
  if (moec_model_load(argv[1], nullptr, &model) != MOEC_OK) {
    std::fprintf(stderr, "cannot load %s\n", argv[1]);
    return 1;
  }
  int64_t vocab = moec_model_vocab_size(model);
  moec_session_t *two = nullptr, *one = nullptr, *fresh = nullptr;
  CHECK(moec_session_create(model, 0, 2, &two) == MOEC_OK, "session");
  CHECK(moec_session_create(model, 0, 1, &one) == MOEC_OK, "session");

  // 1. Against transformers.
  Run first = generate(two, prompt, steps, vocab);
  llvm::Expected<NpyArray> refPrefill =
      readNpy(fixture + "/prefill_logits.npy");
  llvm::Expected<NpyArray> refGenerate =
      readNpy(fixture + "/generate_logits.npy");
  double prefillDiff = relDiff(first.prefill, refPrefill->f32);
  double generateDiff = relDiff(first.generate, refGenerate->f32);
  CHECK(prefillDiff <= 1e-4, "prefill rel diff %g", prefillDiff);
  CHECK(generateDiff <= 1e-4, "generate rel diff %g", generateDiff);
  CHECK(first.tokens == expectedIds, "greedy tokens differ");

  // 2. Reset and repeat: bit for bit.
  CHECK(moec_session_reset(two) == MOEC_OK, "reset");
  CHECK(moec_session_position(two) == 0, "position after reset");
  Run again = generate(two, prompt, steps, vocab);
  CHECK(again.prefill == first.prefill && again.generate == first.generate,
        "a reset session does not reproduce its first run");

  // 3. A different prompt in the reused session == a fresh session.
  std::vector<int64_t> second(prompt.rbegin(), prompt.rbegin() + 9);
  CHECK(moec_session_reset(two) == MOEC_OK, "reset");
  Run reused = generate(two, second, steps, vocab);
  CHECK(moec_session_create(model, 0, 2, &fresh) == MOEC_OK, "session");
  Run clean = generate(fresh, second, steps, vocab);
  CHECK(reused.prefill == clean.prefill && reused.generate == clean.generate,
        "the reused session differs from a fresh one");

  // 4. One thread == two threads.
  Run single = generate(one, second, steps, vocab);
  CHECK(single.prefill == clean.prefill && single.generate == clean.generate,
        "1 and 2 threads disagree");

  // 5. Past the capacity: an error, and the session stays usable.
  moec_session_t *small = nullptr;
  CHECK(moec_session_create(model, prompt.size() + 2, 2, &small) == MOEC_OK,
        "small session");
  CHECK(moec_prefill(small, prompt.data(), prompt.size(), nullptr) == MOEC_OK,
        "prefill to near capacity");
  CHECK(moec_decode(small, 5, nullptr) == MOEC_OK, "decode 1");
  CHECK(moec_decode(small, 5, nullptr) == MOEC_OK, "decode 2");
  CHECK(moec_decode(small, 5, nullptr) != MOEC_OK, "decode past capacity");
  CHECK(moec_session_position(small) == static_cast<int64_t>(prompt.size() + 2),
        "position moved on a failed call");

  std::printf("session reuse: prefill rel diff %.3g, generate rel diff %.3g, "
              "%d greedy tokens %s; reset/reuse/threads bitwise equal: %s\n",
              prefillDiff, generateDiff, steps,
              first.tokens == expectedIds ? "match" : "DIFFER",
              failures ? "NO" : "yes");
  moec_session_free(small);
  moec_session_free(fresh);
  moec_session_free(one);
  moec_session_free(two);
  moec_model_free(model);
  return failures ? 1 : 0;
}
