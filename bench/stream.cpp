//===- stream.cpp - STREAM-like memory bandwidth probe --------------------===//
//
// Part of moec's benchmarks. Measures this machine's memory bandwidth the way
// decode uses it, with N threads over arrays far larger than the caches:
//   copy: b[i] = a[i]        (STREAM convention: 2 x bytes moved)
//   read: sum += a[i]        (what a GEMV over weights does)
// Prints one JSON object. Usage: moec-bench-stream [threads] [MiB]
//
//===----------------------------------------------------------------------===//

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

template <typename Body> double bestSeconds(int threads, Body body) {
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back(body, t);
    for (std::thread &th : pool)
      th.join();
    double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    best = std::min(best, s);
  }
  return best;
}

int main(int argc, char **argv) {
  int threads = argc > 1 ? std::atoi(argv[1]) : 2;
  size_t mib = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1024;
  size_t n = mib * (1 << 20) / sizeof(float);
  std::vector<float> a(n, 1.0f), b(n, 0.0f);
  std::vector<double> sums(threads);
  auto range = [&](int t) {
    size_t chunk = n / threads;
    return std::pair<size_t, size_t>{t * chunk,
                                     t == threads - 1 ? n : (t + 1) * chunk};
  };
  double copy = bestSeconds(threads, [&](int t) {
    auto [begin, end] = range(t);
    std::memcpy(b.data() + begin, a.data() + begin,
                (end - begin) * sizeof(float));
  });
  double read = bestSeconds(threads, [&](int t) {
    auto [begin, end] = range(t);
    float acc[16] = {};
    for (size_t i = begin; i + 16 <= end; i += 16)
      for (int j = 0; j < 16; ++j)
        acc[j] += a[i + j];
    double s = 0;
    for (float v : acc)
      s += v;
    sums[t] = s;
  });
  double bytes = static_cast<double>(n) * sizeof(float);
  std::printf("{\"threads\": %d, \"array_bytes\": %.0f, \"copy_GBps\": %.2f, "
              "\"read_GBps\": %.2f, \"checksum\": %.0f}\n",
              threads, bytes, 2 * bytes / copy / 1e9, bytes / read / 1e9,
              sums[0]);
  return 0;
}
