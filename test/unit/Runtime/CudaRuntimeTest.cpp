//===- CudaRuntimeTest.cpp - the CUDA device of the runtime ---------------===//
//
// Part of moec. Artifacts whose kernels target cuda:sm_XX (written by
// CudaTestArtifact.cpp): the verifier's cuda checks, device selection and
// the "no driver" error run everywhere; the RuntimeCudaGpu tests run the toy
// model on a GPU and skip when the machine has no driver or no device.
//
//===----------------------------------------------------------------------===//

#include "CudaTestArtifact.h"

#include "moec/runtime.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace moec::test;

namespace {

/// Sets an environment variable for one scope.
class ScopedEnv {
public:
  ScopedEnv(const char *name, const char *value) : name(name) {
    if (const char *old = std::getenv(name))
      previous = old, hadPrevious = true;
    ::setenv(name, value, 1);
  }
  ~ScopedEnv() {
    if (hadPrevious)
      ::setenv(name, previous.c_str(), 1);
    else
      ::unsetenv(name);
  }

private:
  const char *name;
  std::string previous;
  bool hadPrevious = false;
};

class RuntimeCuda : public ::testing::Test {
protected:
  void SetUp() override {
    char pattern[] = "/tmp/moec-cuda-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    directory = pattern;
  }
  void TearDown() override {
    for (const std::string &path : written)
      ::unlink(path.c_str());
    ::rmdir(directory.c_str());
  }

  std::string write(const CudaTestArtifactOptions &options,
                    const std::string &name = "m.moec") {
    std::string path = directory + "/" + name;
    std::string error = writeCudaTestArtifact(path, options);
    EXPECT_EQ(error, "");
    written.push_back(path);
    return path;
  }

  /// Loads `options`' artifact; the status, with the message in `message`.
  moec_status load(const CudaTestArtifactOptions &options,
                   const char *device = nullptr) {
    std::string path = write(options);
    moec_model_options_t modelOptions;
    moec_model_options_initialize(&modelOptions);
    modelOptions.device = device;
    moec_model_t *model = nullptr;
    moec_status status = moec_model_load(path.c_str(), &modelOptions, &model);
    message = status == MOEC_OK ? "" : moec_last_error();
    // Drop the "<path>: " prefix.
    if (message.rfind(path + ": ", 0) == 0)
      message = message.substr(path.size() + 2);
    moec_model_free(model);
    return status;
  }

  std::string directory;
  std::vector<std::string> written;
  std::string message;
};

TEST_F(RuntimeCuda, NoDriverIsAOneLineDeviceError) {
  ScopedEnv driver("MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1");
  CudaTestArtifactOptions options;
  options.target = "cuda:sm_90";
  EXPECT_EQ(load(options), MOEC_DEVICE_ERROR);
  EXPECT_EQ(
      message.rfind("CUDA driver not found (/nonexistent/libcuda.so.1: ", 0),
      0u)
      << message;
  EXPECT_NE(message.find("; this artifact was compiled for cuda:sm_90 — "
                         "recompile with --target=cpu to run on the CPU"),
            std::string::npos)
      << message;
  EXPECT_EQ(message.find('\n'), std::string::npos);
  // The next load tries again (and fails the same way).
  EXPECT_EQ(load(options), MOEC_DEVICE_ERROR);
}

TEST_F(RuntimeCuda, MissingLaunchesAreInvalid) {
  CudaTestArtifactOptions options;
  options.omitLaunches = true;
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: launches is missing (a cuda executable "
                     "needs one per kernel name, 4)");
}

TEST_F(RuntimeCuda, LaunchCountMustMatchTheKernels) {
  CudaTestArtifactOptions options;
  options.launches = {{32, 64}, {32, 64}};
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: 2 launches for 4 kernel names");
}

TEST_F(RuntimeCuda, LaunchGeometryIsChecked) {
  CudaTestArtifactOptions options;
  options.launches = {{32, 64}, {0, 64}, {32, 64}, {32, 64}};
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: launches[1] 'moec_test_prefix_sum': "
                     "block_threads 0 outside [1, 1024]");
  options.launches = {{32, 64}, {32, 64}, {2048, 64}, {32, 64}};
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: launches[2] 'moec_test_logits_v37': "
                     "block_threads 2048 outside [1, 1024]");
  options.launches = {{32, 0}, {32, 64}, {32, 64}, {32, 64}};
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: launches[0] 'moec_test_store_kv': "
                     "items_per_block must be at least 1");
}

TEST_F(RuntimeCuda, MalformedTargetsAreInvalid) {
  for (const char *target :
       {"cuda", "cuda:", "cuda:sm90", "cuda:sm_", "cuda:sm_9", "cuda:sm_9x",
        "cuda:sm_90b", "cuda:sm_09", "cuda:sm_12345", "cuda:compute_90"}) {
    CudaTestArtifactOptions options;
    options.target = target;
    EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT) << target;
    EXPECT_EQ(message, std::string("executables[0]: target '") + target +
                           "' is malformed (expected cuda:sm_<digits>[a], "
                           "e.g. cuda:sm_90)");
  }
}

TEST_F(RuntimeCuda, UnknownFormatIsInvalid) {
  CudaTestArtifactOptions options;
  options.format = "elf-shared-object";
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: format 'elf-shared-object' is not one "
                     "of fatbin, cubin, ptx (target 'cuda:sm_75')");
}

TEST_F(RuntimeCuda, MixedCpuAndCudaIsUnsupported) {
  CudaTestArtifactOptions options;
  options.mixedWithCpu = true;
  EXPECT_EQ(load(options), MOEC_UNSUPPORTED);
  EXPECT_EQ(message, "the entry points dispatch to both 'cpu' and "
                     "'cuda:sm_75' executables (one artifact runs on one "
                     "device)");
}

TEST_F(RuntimeCuda, RequestingTheOtherDeviceFailsBeforeTheDriver) {
  // Proves no driver is loaded: it would fail differently.
  ScopedEnv driver("MOEC_CUDA_DRIVER", "/nonexistent/libcuda.so.1");
  CudaTestArtifactOptions options;
  options.target = "cuda:sm_90";
  EXPECT_EQ(load(options, "cpu"), MOEC_UNSUPPORTED);
  EXPECT_EQ(message.substr(message.find(" was compiled")),
            " was compiled for cuda:sm_90; the cpu device needs an artifact "
            "compiled with --target=cpu");
  EXPECT_EQ(load(options, "tpu"), MOEC_INVALID_ARGUMENT);
  EXPECT_EQ(message, "unknown device 'tpu' (expected cpu or cuda)");
  EXPECT_EQ(load(options, "cuda"), MOEC_DEVICE_ERROR);
}

TEST_F(RuntimeCuda, CpuArtifactsStayOnTheCpu) {
  CudaTestArtifactOptions options;
  options.noKernels = true; // no executables, no dispatches
  std::string path = write(options);
  moec_model_t *model = nullptr;
  ASSERT_EQ(moec_model_load(path.c_str(), nullptr, &model), MOEC_OK)
      << moec_last_error();
  EXPECT_STREQ(moec_model_device(model), "cpu");
  EXPECT_STREQ(moec_model_device_name(model), "cpu");
  moec_session_t *session = nullptr;
  ASSERT_EQ(moec_session_create(model, 0, 2, &session), MOEC_OK);
  EXPECT_EQ(moec_session_threads(session), 2);
  int64_t ids[] = {3, 17};
  EXPECT_EQ(moec_prefill(session, ids, 2, nullptr), MOEC_OK);
  moec_session_free(session);
  moec_model_free(model);

  moec_model_options_t modelOptions;
  moec_model_options_initialize(&modelOptions);
  EXPECT_EQ(modelOptions.device, nullptr);
  modelOptions.device = "cuda";
  EXPECT_EQ(moec_model_load(path.c_str(), &modelOptions, &model),
            MOEC_UNSUPPORTED);
  EXPECT_EQ(std::string(moec_last_error()), path + " was compiled for cpu; the "
                                                   "cuda device needs an "
                                                   "artifact compiled with "
                                                   "--target=cuda");
  modelOptions.device = "cpu";
  ASSERT_EQ(moec_model_load(path.c_str(), &modelOptions, &model), MOEC_OK);
  moec_model_free(model);
}

//===----------------------------------------------------------------------===//
// On a GPU
//===----------------------------------------------------------------------===//

class RuntimeCudaGpu : public RuntimeCuda {
protected:
  void SetUp() override {
    RuntimeCuda::SetUp();
    CudaTestArtifactOptions options;
    moec_status status = load(options);
    if (status == MOEC_DEVICE_ERROR)
      GTEST_SKIP() << "no CUDA driver or device: " << message;
    ASSERT_EQ(status, MOEC_OK) << message;
  }

  moec_model_t *loadModel(const CudaTestArtifactOptions &options,
                          const std::string &name = "m.moec") {
    std::string path = write(options, name);
    moec_model_t *model = nullptr;
    EXPECT_EQ(moec_model_load(path.c_str(), nullptr, &model), MOEC_OK)
        << moec_last_error();
    return model;
  }

  /// Prefills `prompt` then decodes greedily `steps` times, checking every
  /// logit against the toy model.
  void generate(moec_model_t *model, std::vector<int64_t> prompt, int steps,
                bool allLogits = true) {
    moec_session_t *session = nullptr;
    ASSERT_EQ(moec_session_create(model, 0, 0, &session), MOEC_OK)
        << moec_last_error();
    EXPECT_EQ(moec_session_threads(session), 0);
    for (int round = 0; round < 2; ++round) { // again after a reset
      std::vector<float> all(prompt.size() * kCudaVocab);
      ASSERT_EQ(moec_prefill(session, prompt.data(), prompt.size(),
                             allLogits ? all.data() : nullptr),
                MOEC_OK)
          << moec_last_error();
      std::vector<int64_t> history;
      for (size_t t = 0; t < prompt.size(); ++t) {
        history.push_back(prompt[t]);
        for (int64_t v = 0; allLogits && v < kCudaVocab; ++v)
          ASSERT_EQ(all[t * kCudaVocab + v], cudaExpectedLogit(history, v))
              << "prompt position " << t << " logit " << v;
      }
      for (int step = 0; step <= steps; ++step) {
        const float *logits = moec_session_logits(session);
        ASSERT_NE(logits, nullptr);
        int64_t best = 0;
        for (int64_t v = 0; v < kCudaVocab; ++v) {
          ASSERT_EQ(logits[v], cudaExpectedLogit(history, v))
              << "step " << step << " logit " << v;
          if (logits[v] > logits[best])
            best = v;
        }
        if (step == steps)
          break;
        std::vector<float> out(kCudaVocab);
        ASSERT_EQ(moec_decode(session, best, out.data()), MOEC_OK)
            << moec_last_error();
        history.push_back(best);
        EXPECT_EQ(out[0], cudaExpectedLogit(history, 0));
      }
      EXPECT_EQ(moec_session_position(session),
                static_cast<int64_t>(history.size()));
      ASSERT_EQ(moec_session_reset(session), MOEC_OK);
    }
    moec_session_free(session);
  }
};

TEST_F(RuntimeCudaGpu, DescribesTheDevice) {
  moec_model_t *model = loadModel({});
  ASSERT_NE(model, nullptr);
  EXPECT_STREQ(moec_model_device(model), "cuda");
  std::string name = moec_model_device_name(model);
  EXPECT_NE(name.find(" (sm_"), std::string::npos) << name;
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, PrefillAndDecodeMatchTheToyModel) {
  moec_model_t *model = loadModel({});
  generate(model, {3, 17, 5}, 6);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, WithoutGraphsTheResultsAreTheSame) {
  ScopedEnv graphs("MOEC_CUDA_GRAPHS", "0");
  moec_model_t *model = loadModel({});
  generate(model, {3, 17, 5}, 6);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, ChunkedPrefill) {
  CudaTestArtifactOptions options;
  options.prefillTile = 2;
  moec_model_t *model = loadModel(options);
  generate(model, {3, 17, 5, 8, 1}, 3);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, LastPositionOnlyPrefillAndNoDecode) {
  CudaTestArtifactOptions options;
  options.allLogits = false;
  options.withDecode = false;
  options.prefillTile = 2;
  options.nulTerminated = true;
  moec_model_t *model = loadModel(options);
  generate(model, {3, 17, 5}, 4, /*allLogits=*/false);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, LargeWeightSegmentIsUploadedInChunks) {
  // 150 MiB + 12 bytes of filler: the bias sits in the third 64 MiB chunk,
  // which reuses the first staging buffer.
  CudaTestArtifactOptions options;
  options.fillerBytes = (150ull << 20) + 12;
  std::string path = write(options);
  moec_model_options_t modelOptions;
  moec_model_options_initialize(&modelOptions);
  modelOptions.verify_checksums = 1;
  moec_model_t *model = nullptr;
  ASSERT_EQ(moec_model_load(path.c_str(), &modelOptions, &model), MOEC_OK)
      << moec_last_error();
  generate(model, {3, 17, 5}, 2);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, OddLaunchGeometry) {
  // One thread per block, one item per block: the kernels must still cover
  // every item (they stride by blockDim over kItems, so give them that).
  CudaTestArtifactOptions options;
  options.launches = {{1, 64}, {7, 64}, {64, 64}, {33, 64}};
  moec_model_t *model = loadModel(options);
  generate(model, {3, 17, 5}, 3);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, SessionsOnOtherThreads) {
  moec_model_t *model = loadModel({});
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i)
    threads.emplace_back([&] { generate(model, {3, 17, 5}, 4); });
  for (std::thread &thread : threads)
    thread.join();
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, FullCacheIsAnError) {
  moec_model_t *model = loadModel({});
  moec_session_t *session = nullptr;
  ASSERT_EQ(moec_session_create(model, 4, 0, &session), MOEC_OK);
  int64_t ids[] = {1, 2, 3, 4};
  ASSERT_EQ(moec_prefill(session, ids, 4, nullptr), MOEC_OK);
  EXPECT_EQ(moec_decode(session, 5, nullptr), MOEC_RESOURCE_EXHAUSTED);
  moec_session_free(session);
  moec_model_free(model);
}

TEST_F(RuntimeCudaGpu, ArchNewerThanTheDeviceIsUnsupported) {
  CudaTestArtifactOptions options;
  options.target = "cuda:sm_999";
  EXPECT_EQ(load(options), MOEC_UNSUPPORTED);
  EXPECT_EQ(message.rfind("executables[0]: artifact built for sm_999, device "
                          "0 is sm_",
                          0),
            0u)
      << message;
}

TEST_F(RuntimeCudaGpu, CubinForAnotherArchIsUnsupported) {
  CudaTestArtifactOptions options;
  options.target = "cuda:sm_75";
  options.format = "cubin";
  options.blob = "not a cubin";
  EXPECT_EQ(load(options), MOEC_UNSUPPORTED); // no GPU of this test is a T4
  EXPECT_NE(message.find("artifact built for sm_75 (cubin only: no PTX to "
                         "compile for another arch), device 0 is sm_"),
            std::string::npos)
      << message;
}

TEST_F(RuntimeCudaGpu, BrokenPtxAndMissingKernelsAreInvalid) {
  CudaTestArtifactOptions options;
  options.blob = ".version 7.0\n.target sm_75\nthis is not ptx";
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(
      message.rfind("executables[0]: cuModuleLoadDataEx (ptx) failed: ", 0), 0u)
      << message;
  options = {};
  options.extraKernelNames = {"moec_test_missing"};
  EXPECT_EQ(load(options), MOEC_INVALID_ARTIFACT);
  EXPECT_EQ(message, "executables[0]: kernel 'moec_test_missing' "
                     "(kernel_names[4]) is not defined by the module");
}

TEST_F(RuntimeCudaGpu, ModelsLoadAndUnloadRepeatedly) {
  for (int i = 0; i < 20; ++i) {
    moec_model_t *model = loadModel({});
    ASSERT_NE(model, nullptr);
    moec_session_t *session = nullptr;
    ASSERT_EQ(moec_session_create(model, 0, 0, &session), MOEC_OK);
    int64_t ids[] = {3, 17};
    ASSERT_EQ(moec_prefill(session, ids, 2, nullptr), MOEC_OK);
    ASSERT_EQ(moec_decode(session, 20, nullptr), MOEC_OK);
    moec_session_free(session);
    moec_model_free(model);
  }
}

} // namespace
