// CudaTestKernels.cu - the toy model of test/unit/Target/TestKernels.cpp for
// the CUDA kernel ABI (docs/artifact.md, "CUDA device").
//
// Part of moec (test). Not built: CudaTestKernels.ptx.inc holds its PTX,
// regenerated (CUDA 12 or newer) with
//   nvcc -ptx -arch=compute_75 -o k.ptx CudaTestKernels.cu
//   (then lower `.version` to 7.0 so that older drivers JIT it too)
// Every kernel takes its bindings and the scalars as flat memref descriptors
// (allocated, aligned, offset, size, stride), then the work item count; it
// is launched with blocks of 32 threads, each block covering kItems items.
#include <cstdint>

#define MEMREF(type, name)                                                     \
  type *name##Allocated, type *name, int64_t name##Offset, int64_t name##Size,  \
      int64_t name##Stride

namespace {
constexpr int64_t kItems = 64; // KernelLaunch.items_per_block
constexpr int64_t kVocab = 37;
} // namespace

// The items of this block, strided over its threads.
#define FOR_ITEMS(i)                                                           \
  for (int64_t i = blockIdx.x * kItems + threadIdx.x,                          \
               end_ = min(work, (int64_t)(blockIdx.x + 1) * kItems);           \
       i < end_; i += blockDim.x)

extern "C" {

__global__ void moec_test_store_kv(MEMREF(const int64_t, ids),
                                   MEMREF(float, keys), MEMREF(float, values),
                                   MEMREF(const int64_t, scalars),
                                   int64_t work) {
  FOR_ITEMS(t) {
    int64_t position = scalars[1] + t;
    if (position >= scalars[2])
      __trap(); // the runtime must never let this happen
    keys[position] = (float)ids[t];
    values[position] = 2.0f * (float)ids[t];
  }
}

__global__ void moec_test_prefix_sum(MEMREF(const float, keys),
                                     MEMREF(const float, values),
                                     MEMREF(float, sums),
                                     MEMREF(const int64_t, scalars),
                                     int64_t work) {
  FOR_ITEMS(t) {
    float sum = 0;
    for (int64_t p = 0; p <= scalars[1] + t; ++p)
      sum += values[p] == 2.0f * keys[p] ? keys[p] : -1e6f;
    sums[t] = sum;
  }
}

__global__ void moec_test_logits_v37(MEMREF(const float, bias),
                                     MEMREF(const float, sums),
                                     MEMREF(float, logits),
                                     MEMREF(const int64_t, scalars),
                                     int64_t work) {
  FOR_ITEMS(i) {
    int64_t t = i / kVocab, v = i % kVocab;
    int64_t position = scalars[1] + t;
    logits[i] =
        bias[(v + position) % kVocab] + sums[t] + 1000.0f * (float)position;
  }
}

__global__ void moec_test_last_logits_v37(MEMREF(const float, bias),
                                          MEMREF(const float, sums),
                                          MEMREF(float, logits),
                                          MEMREF(const int64_t, scalars),
                                          int64_t work) {
  int64_t last = scalars[0] - 1;
  int64_t position = scalars[1] + last;
  FOR_ITEMS(v) {
    logits[v] =
        bias[(v + position) % kVocab] + sums[last] + 1000.0f * (float)position;
  }
}

} // extern "C"
