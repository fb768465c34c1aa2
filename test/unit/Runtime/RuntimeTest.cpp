//===- RuntimeTest.cpp - runtime C API basics -----------------------------===//
//
// Part of moec. Versioning, status names, options defaults and sampling:
// the parts of the C API that need no artifact (running artifacts is tested
// in test/unit/Target, where they are written).
//
//===----------------------------------------------------------------------===//

#include "moec/runtime.h"

#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <set>
#include <string>
#include <vector>

namespace {

TEST(Runtime, VersionIsSemver) {
  std::string version = moec_runtime_version();
  EXPECT_TRUE(std::regex_match(version, std::regex(R"(\d+\.\d+\.\d+)")))
      << version;
}

TEST(Runtime, EveryStatusHasADistinctName) {
  std::set<std::string> names;
  for (int status = MOEC_OK; status <= MOEC_RESOURCE_EXHAUSTED; ++status)
    names.insert(moec_status_string(static_cast<moec_status>(status)));
  EXPECT_EQ(names.size(), static_cast<size_t>(MOEC_RESOURCE_EXHAUSTED + 1));
  EXPECT_EQ(names.count("unknown status"), 0u);
  EXPECT_STREQ(moec_status_string(MOEC_OK), "ok");
  EXPECT_STREQ(moec_status_string(static_cast<moec_status>(1234)),
               "unknown status");
}

TEST(Runtime, OptionDefaults) {
  moec_model_options_t options;
  options.verify_checksums = options.prefault = 7;
  moec_model_options_initialize(&options);
  EXPECT_EQ(options.verify_checksums, 0);
  EXPECT_EQ(options.prefault, 0);
  moec_sampling_t sampling;
  moec_sampling_initialize(&sampling);
  EXPECT_EQ(sampling.temperature, 0.0f);
  EXPECT_EQ(sampling.top_p, 1.0f);
}

TEST(Runtime, LastErrorIsPerThreadAndNeverNull) {
  EXPECT_NE(moec_last_error(), nullptr);
  moec_model_t *model;
  EXPECT_EQ(moec_model_load(nullptr, nullptr, &model), MOEC_INVALID_ARGUMENT);
  std::string mine = moec_last_error();
  EXPECT_FALSE(mine.empty());
}

TEST(RuntimeSampling, GreedyPicksTheFirstMaximum) {
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  int64_t token = -1;
  ASSERT_EQ(moec_sample(logits.data(), 4, nullptr, nullptr, &token), MOEC_OK);
  EXPECT_EQ(token, 1);
  moec_sampling_t greedy;
  moec_sampling_initialize(&greedy);
  ASSERT_EQ(moec_sample(logits.data(), 4, &greedy, nullptr, &token), MOEC_OK);
  EXPECT_EQ(token, 1);
}

TEST(RuntimeSampling, SeededSamplingIsReproducible) {
  std::vector<float> logits = {1.0f, 1.5f, 0.2f, 2.0f, 0.0f};
  moec_sampling_t sampling = {/*temperature=*/1.0f, /*top_p=*/1.0f};
  auto draw = [&](uint64_t seed) {
    std::vector<int64_t> tokens;
    uint64_t state = seed;
    for (int i = 0; i < 50; ++i) {
      int64_t token;
      EXPECT_EQ(moec_sample(logits.data(), 5, &sampling, &state, &token),
                MOEC_OK);
      tokens.push_back(token);
    }
    return tokens;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
}

TEST(RuntimeSampling, FrequenciesFollowTheSoftmax) {
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(5.0f)};
  moec_sampling_t sampling = {/*temperature=*/1.0f, /*top_p=*/1.0f};
  uint64_t state = 1;
  int counts[3] = {};
  const int draws = 80000;
  for (int i = 0; i < draws; ++i) {
    int64_t token;
    ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, &state, &token),
              MOEC_OK);
    ++counts[token];
  }
  // Probabilities 1/8, 2/8, 5/8; five standard deviations of slack.
  const double expected[] = {0.125, 0.25, 0.625};
  for (int i = 0; i < 3; ++i) {
    double sigma = std::sqrt(draws * expected[i] * (1 - expected[i]));
    EXPECT_NEAR(counts[i], draws * expected[i], 5 * sigma) << "token " << i;
  }
}

TEST(RuntimeSampling, TopPKeepsTheNucleus) {
  // Probabilities 5/8, 2/8, 1/8: top_p 0.7 keeps {2, 1}, 0.5 keeps {2}.
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(5.0f)};
  uint64_t state = 9;
  std::set<int64_t> seen;
  moec_sampling_t sampling = {1.0f, 0.7f};
  for (int i = 0; i < 2000; ++i) {
    int64_t token;
    ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, &state, &token),
              MOEC_OK);
    seen.insert(token);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{1, 2}));
  seen.clear();
  sampling.top_p = 0.5f;
  for (int i = 0; i < 200; ++i) {
    int64_t token;
    ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, &state, &token),
              MOEC_OK);
    seen.insert(token);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{2}));
}

TEST(RuntimeSampling, InvalidArguments) {
  std::vector<float> logits = {1.0f, 2.0f};
  int64_t token = 5;
  moec_sampling_t sampling = {1.0f, 1.0f};
  EXPECT_EQ(moec_sample(logits.data(), 2, &sampling, nullptr, &token),
            MOEC_INVALID_ARGUMENT);
  EXPECT_STREQ(moec_last_error(),
               "moec_sample: sampling with a temperature needs rng_state");
  EXPECT_EQ(token, 0);
  uint64_t state = 0;
  sampling.top_p = 1.5f;
  EXPECT_EQ(moec_sample(logits.data(), 2, &sampling, &state, &token),
            MOEC_INVALID_ARGUMENT);
  EXPECT_STREQ(moec_last_error(), "moec_sample: top_p must be in (0, 1]");
  EXPECT_EQ(moec_sample(nullptr, 2, nullptr, nullptr, &token),
            MOEC_INVALID_ARGUMENT);
  EXPECT_EQ(moec_sample(logits.data(), 0, nullptr, nullptr, &token),
            MOEC_INVALID_ARGUMENT);
}

} // namespace

TEST(RuntimeSampling, TopKKeepsTheKMostProbable) {
  std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f, -1.0f};
  moec_sampling_t sampling;
  moec_sampling_initialize(&sampling);
  sampling.temperature = 5.0f; // nearly uniform without the filter
  sampling.top_k = 2;
  uint64_t state = 5;
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    int64_t token;
    ASSERT_EQ(moec_sample(logits.data(), 5, &sampling, &state, &token),
              MOEC_OK);
    seen.insert(token);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{1, 3}));
}

TEST(RuntimeSampling, MinPDropsTheUnlikely) {
  // Probabilities proportional to 8, 4, 1: min_p 0.3 keeps {0, 1}.
  std::vector<float> logits = {std::log(8.0f), std::log(4.0f), 0.0f};
  moec_sampling_t sampling;
  moec_sampling_initialize(&sampling);
  sampling.temperature = 1.0f;
  sampling.min_p = 0.3f;
  uint64_t state = 11;
  std::set<int64_t> seen;
  for (int i = 0; i < 2000; ++i) {
    int64_t token;
    ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, &state, &token),
              MOEC_OK);
    seen.insert(token);
  }
  EXPECT_EQ(seen, (std::set<int64_t>{0, 1}));
}

TEST(RuntimeSampling, RepeatPenaltyAsTransformersAppliesIt) {
  // Token 1 leads by 0.5; a penalty of 2 halves its positive logit (3 ->
  // 1.5) and doubles token 2's negative one, so greedy picks token 0.
  std::vector<float> logits = {2.5f, 3.0f, -1.0f};
  const int64_t history[] = {1, 2, 1};
  moec_sampling_t sampling;
  moec_sampling_initialize(&sampling);
  sampling.repeat_penalty = 2.0f;
  sampling.history = history;
  sampling.history_size = 3;
  int64_t token = -1;
  ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, nullptr, &token), MOEC_OK);
  EXPECT_EQ(token, 0);
  sampling.repeat_penalty = 1.0f;
  ASSERT_EQ(moec_sample(logits.data(), 3, &sampling, nullptr, &token), MOEC_OK);
  EXPECT_EQ(token, 1);
  // The caller's logits are not modified.
  EXPECT_EQ(logits[1], 3.0f);
  sampling.repeat_penalty = -1.0f;
  EXPECT_EQ(moec_sample(logits.data(), 3, &sampling, nullptr, &token),
            MOEC_INVALID_ARGUMENT);
  sampling.repeat_penalty = 2.0f;
  sampling.history = nullptr;
  EXPECT_EQ(moec_sample(logits.data(), 3, &sampling, nullptr, &token),
            MOEC_INVALID_ARGUMENT);
}
