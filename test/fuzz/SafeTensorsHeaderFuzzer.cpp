//===- SafeTensorsHeaderFuzzer.cpp - libFuzzer target ---------------------===//
//
// Part of moec. Feeds arbitrary bytes to the safetensors parser: it must
// return an error or a checkpoint whose every tensor lies inside the buffer,
// never crash, hang or read out of bounds (built with ASan).
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/SafeTensors.h"

#include <cstdint>
#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  llvm::Expected<moec::SafeTensorsCheckpoint> checkpoint =
      moec::SafeTensorsCheckpoint::parseBuffer({data, size}, "fuzz");
  if (!checkpoint) {
    llvm::consumeError(checkpoint.takeError());
    return 0;
  }
  for (const moec::TensorInfo &tensor : checkpoint->tensors()) {
    if (tensor.data < data || tensor.data + tensor.nbytes > data + size)
      std::abort();
    if (tensor.nbytes !=
        static_cast<uint64_t>(tensor.numElements()) * dtypeSize(tensor.dtype))
      std::abort();
    // Touch the bytes so ASan checks the bounds.
    volatile uint8_t sink = 0;
    for (uint64_t i = 0; i < tensor.nbytes; i += 64)
      sink ^= tensor.data[i];
    (void)sink;
  }
  return 0;
}
