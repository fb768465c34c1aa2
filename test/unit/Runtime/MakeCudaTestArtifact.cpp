//===- MakeCudaTestArtifact.cpp - cuda test artifacts for lit -------------===//
//
// Part of moec (test utility).
//   moec-make-cuda-test-artifact OUT.moec [--target cuda:sm_XX]
//       [--format ptx|cubin|fatbin] [--blob FILE] [--tile N] [--capacity N]
//       [--last-logits] [--no-decode]
// writes a toy-model artifact for the CUDA device (CudaTestArtifact.h): by
// default the embedded PTX of CudaTestKernels.cu; --blob wraps another
// compiled form of the same kernels (a cubin or fatbin).
//
//===----------------------------------------------------------------------===//

#include "CudaTestArtifact.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

static int fail(const std::string &message) {
  std::fprintf(stderr, "moec-make-cuda-test-artifact: error: %s\n",
               message.c_str());
  return 1;
}

int main(int argc, char **argv) {
  moec::test::CudaTestArtifactOptions options;
  std::string output;
  for (int i = 1; i < argc; ++i) {
    std::string_view argument = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::exit(fail(std::string(argument) + ": missing value"));
      }
      return argv[++i];
    };
    if (argument == "--target") {
      options.target = value();
    } else if (argument == "--format") {
      options.format = value();
    } else if (argument == "--blob") {
      std::string path = value();
      std::ifstream file(path, std::ios::binary);
      if (!file)
        return fail(path + ": cannot read");
      std::ostringstream bytes;
      bytes << file.rdbuf();
      options.blob = bytes.str();
    } else if (argument == "--tile") {
      options.prefillTile = std::atoll(value().c_str());
    } else if (argument == "--capacity") {
      options.capacity = std::atoll(value().c_str());
    } else if (argument == "--last-logits") {
      options.allLogits = false;
    } else if (argument == "--no-decode") {
      options.withDecode = false;
    } else if (!argument.empty() && argument[0] != '-' && output.empty()) {
      output = argument;
    } else {
      return fail("unexpected argument '" + std::string(argument) + "'");
    }
  }
  if (output.empty())
    return fail("missing output path");
  std::string error = moec::test::writeCudaTestArtifact(output, options);
  return error.empty() ? 0 : fail(error);
}
