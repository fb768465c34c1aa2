//===- ThreadPool.cpp - persistent threads running kernel ranges ----------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "ThreadPool.h"

#include <algorithm>
#include <system_error>

namespace moec::runtime {

namespace {

// Busy-wait this many pause instructions (a few tens of microseconds) before
// sleeping: long enough to bridge back-to-back dispatches of a decode step,
// short enough not to burn a core while the session is idle.
constexpr int kSpinIterations = 4096;
// Yield now and then while spinning so that an oversubscribed machine still
// schedules the threads that have work.
constexpr int kYieldEvery = 256;

inline void spinPause(int iteration) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
  if (iteration % kYieldEvery == kYieldEvery - 1)
    std::this_thread::yield();
}

int64_t unitsOf(int64_t total, int64_t grain) {
  int64_t unit = grain > 0 ? grain : 1;
  return total / unit + (total % unit != 0);
}

} // namespace

int workersFor(int64_t total, int64_t grain, int threads) {
  if (total <= 0)
    return 0;
  return static_cast<int>(std::min<int64_t>(threads, unitsOf(total, grain)));
}

WorkRange workRangeOf(int64_t total, int64_t grain, int worker, int workers) {
  int64_t unit = grain > 0 ? grain : 1;
  __int128 units = unitsOf(total, grain);
  // Units [units * w / workers, units * (w + 1) / workers): contiguous, in
  // worker order, sizes differing by at most one unit.
  auto boundary = [&](int w) {
    __int128 first = units * w / workers;
    return static_cast<int64_t>(std::min<__int128>(first * unit, total));
  };
  return {boundary(worker), boundary(worker + 1)};
}

bool ThreadPool::start(int threads, std::string &error) {
  numThreads = std::max(threads, 1);
  try {
    helpers.reserve(numThreads - 1);
    for (int worker = 1; worker < numThreads; ++worker)
      helpers.emplace_back([this, worker] { helperLoop(worker); });
  } catch (const std::system_error &failure) {
    error = failure.what();
    stop();
    return false;
  }
  return true;
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::stop() {
  stopping.store(true);
  generation.fetch_add(1);
  generation.notify_all();
  for (std::thread &helper : helpers)
    helper.join();
  helpers.clear();
}

void ThreadPool::run(CpuKernel kernel, void *const *bindings,
                     const int64_t *scalars, int64_t total, int64_t grain) {
  int workers = workersFor(total, grain, numThreads);
  if (workers == 0)
    return;
  if (workers == 1 || helpers.empty()) {
    kernel(bindings, scalars, 0, total);
    return;
  }
  job = Job{kernel, bindings, scalars, total, grain, workers};
  // Every helper acknowledges every run, including those without a range:
  // then none can still be reading `job` when the next run overwrites it.
  pending.store(static_cast<int>(helpers.size()), std::memory_order_relaxed);
  generation.fetch_add(1); // seq_cst: publishes `job`, pairs with sleepers
  if (sleepingHelpers.load() > 0)
    generation.notify_all();

  WorkRange range = workRangeOf(total, grain, 0, workers);
  kernel(bindings, scalars, range.begin, range.end);

  for (int i = 0; i < kSpinIterations; ++i) {
    if (pending.load(std::memory_order_acquire) == 0)
      return;
    spinPause(i);
  }
  callerSleeping.store(true);
  for (int left = pending.load(); left != 0; left = pending.load())
    pending.wait(left);
  callerSleeping.store(false);
}

void ThreadPool::helperLoop(int worker) {
  uint32_t seen = 0;
  while (true) {
    uint32_t current = generation.load(std::memory_order_acquire);
    for (int i = 0; current == seen && i < kSpinIterations; ++i) {
      spinPause(i);
      current = generation.load(std::memory_order_acquire);
    }
    if (current == seen) {
      sleepingHelpers.fetch_add(1);
      while ((current = generation.load()) == seen)
        generation.wait(seen);
      sleepingHelpers.fetch_sub(1);
    }
    seen = current;
    if (stopping.load())
      return;

    const Job &work = job;
    if (worker < work.workers) {
      WorkRange range =
          workRangeOf(work.total, work.grain, worker, work.workers);
      work.kernel(work.bindings, work.scalars, range.begin, range.end);
    }
    // seq_cst: the kernel's writes happen-before the caller's return, and
    // either this thread sees the caller asleep or the caller sees zero.
    if (pending.fetch_sub(1) == 1 && callerSleeping.load())
      pending.notify_one();
  }
}

} // namespace moec::runtime
