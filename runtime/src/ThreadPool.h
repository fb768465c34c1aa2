//===- ThreadPool.h - persistent threads running kernel ranges --*- C++ -*-===//
//
// Part of moec. A session's kernels run on a fixed set of threads created
// once. run() splits the work items [0, total) statically into contiguous
// ranges, one per participating thread (boundaries on multiples of the
// dispatch's grain), and returns when every range is done: the barrier
// between dispatches. Which thread runs which range is decided by an atomic
// claim, and the calling thread claims ranges too, so a helper that is asleep
// or preempted (2 cores shared with other work) never stalls a dispatch: the
// caller runs its range instead. Waiting threads spin briefly (decode kernels
// last microseconds) and then sleep on a futex, so an idle session costs no
// CPU. Nothing is allocated per run.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_THREADPOOL_H
#define MOEC_RUNTIME_THREADPOOL_H

#include "CpuExecutable.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

namespace moec::runtime {

/// The contiguous range `worker` of `workers` when `total` items are split
/// in units of `grain` items (0: units of 1).
struct WorkRange {
  int64_t begin, end;
};
WorkRange workRangeOf(int64_t total, int64_t grain, int worker, int workers);

/// How many ranges a run of `total` items with `grain` is split into.
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

  /// Claims and runs ranges of the current run until none is left.
  void runRanges();
  void helperLoop(uint32_t seen);
  void stop();

  int numThreads = 1;
  std::vector<std::thread> helpers;
  /// Written by run() before it publishes `claim`; read only by a thread
  /// holding a claimed range, and run() waits for every range before it
  /// writes the next job.
  Job job;
  /// run number (32 bits) | ranges (16 bits) | next unclaimed range (16):
  /// one word, so a claim is a single compare-and-swap that cannot succeed
  /// for a finished run.
  std::atomic<uint64_t> claim{0};
  std::atomic<int> rangesDone{0};
  uint32_t runs = 0;
  /// Bumped once per parallel run; idle helpers wait for it to change.
  std::atomic<uint32_t> generation{0};
  /// Threads asleep on `generation` / the caller asleep on `rangesDone`:
  /// wakes are futex calls, made only when someone sleeps.
  std::atomic<int> sleepingHelpers{0};
  std::atomic<bool> callerSleeping{false};
  std::atomic<bool> stopping{false};
};

} // namespace moec::runtime

#endif // MOEC_RUNTIME_THREADPOOL_H
