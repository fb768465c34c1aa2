//===- Profile.cpp - MOEC_PROFILE=1 per-kernel timings --------------------===//

#include "Profile.h"

#include "ArtifactFormat.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string_view>

using namespace moec::runtime;

bool moec::runtime::profilingRequested() {
  const char *profile = std::getenv("MOEC_PROFILE");
  return profile && std::string_view(profile) == "1";
}

// "model.layers.12.mlp.experts.*.down_proj.weight" ->
// "model.layers.*.mlp.experts.*.down_proj.weight".
static std::string anyLayer(std::string name) {
  for (size_t at = name.find(".layers."); at != std::string::npos;
       at = name.find(".layers.", at + 1)) {
    size_t digits = at + 8, end = digits;
    while (end < name.size() && name[end] >= '0' && name[end] <= '9')
      ++end;
    if (end > digits)
      name.replace(digits, end - digits, "*");
  }
  return name;
}

void KernelProfile::describe(const fb::Artifact &artifact,
                             const fb::EntryPoint &entry) {
  size_t steps = entry.dispatches()->size();
  kernelIndex.assign(steps, 0);
  weight.assign(steps, "");
  milliseconds.assign(steps, 0.0);
  launches.assign(steps, 0);
  for (size_t i = 0; i < steps; ++i) {
    const fb::Dispatch &dispatch = *entry.dispatches()->Get(i);
    kernelIndex[i] = dispatch.kernel();
    uint64_t largest = 0;
    for (const fb::Binding *binding : *dispatch.bindings()) {
      if (binding->kind() != fb::BindingKind::Weight)
        continue;
      const fb::Weight &w = *artifact.weights()->Get(binding->index());
      if (w.size() > largest && w.name()) {
        largest = w.size();
        weight[i] = anyLayer(w.name()->str());
      }
    }
  }
}

void KernelProfile::print(const char *name, const char *where) const {
  int64_t calls = 0;
  for (int64_t count : launches)
    calls = std::max(calls, count);
  if (calls == 0)
    return;
  // Totals per kernel and weight, largest first.
  std::map<std::pair<uint32_t, std::string>, std::pair<double, int64_t>>
      byKernel;
  double total = 0;
  for (size_t i = 0; i < milliseconds.size(); ++i) {
    auto &entry = byKernel[{kernelIndex[i], weight[i]}];
    entry.first += milliseconds[i];
    entry.second += launches[i];
    total += milliseconds[i];
  }
  std::vector<
      std::pair<std::pair<uint32_t, std::string>, std::pair<double, int64_t>>>
      sorted(byKernel.begin(), byKernel.end());
  std::stable_sort(sorted.begin(), sorted.end(),
                   [](const auto &a, const auto &b) {
                     return a.second.first > b.second.first;
                   });
  std::fprintf(stderr,
               "moec profile (%s): %.3f ms %s in %zu dispatches per call, "
               "%lld calls\n  kernel   launches   total ms   mean us   share  "
               "largest weight read\n",
               name, total, where, milliseconds.size(),
               static_cast<long long>(calls));
  for (const auto &[key, stats] : sorted)
    std::fprintf(stderr, "  k%-6u %9lld %10.3f %9.2f  %5.1f%%  %s\n", key.first,
                 static_cast<long long>(stats.second), stats.first,
                 stats.second ? 1000.0 * stats.first / stats.second : 0.0,
                 total > 0 ? 100.0 * stats.first / total : 0.0,
                 key.second.empty() ? "-" : key.second.c_str());
}
