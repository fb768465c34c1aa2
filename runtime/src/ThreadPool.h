//===- ThreadPool.h - persistent threads running kernel ranges --*- C++ -*-===//
//
// Part of moec. A session's kernels run on a fixed set of threads created
// once: run() splits the work items [0, total) statically into contiguous
// ranges (boundaries on multiples of the dispatch's grain), runs range 0 on
// the calling thread and the others on the pool, and returns when every range
// is done, which is the barrier between dispatches. Waiting threads spin
// briefly (decode kernels last microseconds) and then sleep on a futex, so an
// idle session costs no CPU. Nothing is allocated per run.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_THREADPOOL_H
#define MOEC_RUNTIME_THREADPOOL_H

#include "CpuExecutable.h"

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace moec::runtime {

/// The contiguous range of work items of `worker` out of `workers`, when
/// `total` items are split in units of `grain` items (0: units of 1).
struct WorkRange {
  int64_t begin, end;
};
WorkRange workRangeOf(int64_t total, int64_t grain, int worker, int workers);

/// How many threads a run of `total` items with `grain` keeps busy.
int workersFor(int64_t total, int64_t grain, int threads);

class ThreadPool {
public:
  ThreadPool() = default;
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  /// Starts `threads - 1` helper threads (the caller of run() is the
  /// first). Returns false, with `error` set, when threads cannot be made.
  bool start(int threads, std::string &error);

  int threads() const { return numThreads; }

  /// Runs `kernel` over [0, total) and waits for every range.
  void run(CpuKernel kernel, void *const *bindings, const int64_t *scalars,
           int64_t total, int64_t grain);

private:
  struct Job {
    CpuKernel kernel = nullptr;
    void *const *bindings = nullptr;
    const int64_t *scalars = nullptr;
    int64_t total = 0;
    int64_t grain = 0;
    int workers = 0;
  };

  void helperLoop(int worker);
  void stop();

  int numThreads = 1;
  std::vector<std::thread> helpers;
  Job job;
  // Bumped once per run; helpers wait for it to change.
  std::atomic<uint32_t> generation{0};
  // Helpers still running the current job.
  std::atomic<int> pending{0};
  // Threads asleep on `generation` / the caller asleep on `pending`: wakes
  // are futex calls, made only when someone sleeps.
  std::atomic<int> sleepingHelpers{0};
  std::atomic<bool> callerSleeping{false};
  std::atomic<bool> stopping{false};
};

} // namespace moec::runtime

#endif // MOEC_RUNTIME_THREADPOOL_H
