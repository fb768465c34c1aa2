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

// Busy-wait this many pause instructions (tens of microseconds) before
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

// Fields of ThreadPool::claim.
constexpr uint64_t kFieldMask = 0xffff;
inline uint64_t claimWord(uint32_t run, int ranges) {
  return (uint64_t{run} << 32) | (static_cast<uint64_t>(ranges) << 16);
}
inline int rangesOf(uint64_t word) {
  return static_cast<int>((word >> 16) & kFieldMask);
}
inline int nextOf(uint64_t word) { return static_cast<int>(word & kFieldMask); }

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
  // Ranges and claims are 16-bit fields of `claim`.
  numThreads = std::clamp(threads, 1, static_cast<int>(kFieldMask / 2));
  try {
    helpers.reserve(numThreads - 1);
    for (int worker = 1; worker < numThreads; ++worker)
      helpers.emplace_back([this] { helperLoop(/*seen=*/0); });
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

void ThreadPool::runRanges() {
  uint64_t word = claim.load(std::memory_order_acquire);
  while (nextOf(word) < rangesOf(word)) {
    if (!claim.compare_exchange_weak(word, word + 1, std::memory_order_acquire))
      continue; // `word` was reloaded
    int range = nextOf(word);
    const Job &work = job;
    WorkRange items = workRangeOf(work.total, work.grain, range, work.workers);
    work.kernel(work.bindings, work.scalars, items.begin, items.end);
    // Read before counting: once the count is complete, run() may return
    // and overwrite `job`.
    int workers = work.workers;
    // seq_cst: the kernel's writes happen-before the caller's return, and
    // either this thread sees the caller asleep or the caller sees the count.
    if (rangesDone.fetch_add(1) + 1 == workers && callerSleeping.load())
      rangesDone.notify_one();
    word = claim.load(std::memory_order_acquire);
  }
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
  rangesDone.store(0, std::memory_order_relaxed);
  claim.store(claimWord(++runs, workers), std::memory_order_release);
  generation.fetch_add(1); // seq_cst: pairs with sleepingHelpers
  if (sleepingHelpers.load() > 0)
    generation.notify_all();

  runRanges();

  for (int i = 0; i < kSpinIterations; ++i) {
    if (rangesDone.load(std::memory_order_acquire) == workers)
      return;
    spinPause(i);
  }
  callerSleeping.store(true);
  for (int done = rangesDone.load(); done != workers; done = rangesDone.load())
    rangesDone.wait(done);
  callerSleeping.store(false);
}

void ThreadPool::helperLoop(uint32_t seen) {
  // `seen` is the generation before any run: a helper that starts late still
  // notices every later run and a stop() that came before it started.
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
    runRanges();
  }
}

} // namespace moec::runtime
