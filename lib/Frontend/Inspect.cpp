//===- Inspect.cpp - human-readable description of inputs -----------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/Inspect.h"
#include "moec/Frontend/ModelConfig.h"
#include "moec/Frontend/SafeTensors.h"

#include "llvm/ADT/StringMap.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/Path.h"

#include <map>

using namespace llvm;

namespace moec {

static std::string humanBytes(uint64_t bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  unsigned unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(units)) {
    value /= 1024.0;
    ++unit;
  }
  return unit == 0 ? formatv("{0} B", bytes).str()
                   : formatv("{0:f2} {1}", value, units[unit]).str();
}

static std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "[";
  for (auto [i, dim] : llvm::enumerate(shape))
    text += (i ? ", " : "") + std::to_string(dim);
  return text + "]";
}

Error inspectPath(StringRef path, raw_ostream &os) {
  if (!sys::fs::exists(path))
    return createStringError(path + ": no such file or directory");
  if (!sys::fs::is_directory(path))
    return createStringError(
        path + ": not a checkpoint directory (inspecting .moec artifacts "
               "arrives with the artifact writer)");
  Expected<ModelConfig> config = ModelConfig::fromDirectory(path);
  if (!config)
    return config.takeError();
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(path);
  if (!checkpoint)
    return checkpoint.takeError();

  os << "checkpoint: " << path << "\n\n";
  os << config->summary() << "\n";

  os << "weights:\n";
  std::map<std::string, std::pair<uint64_t, uint64_t>> byDtype;
  uint64_t totalBytes = 0;
  for (const TensorInfo &tensor : checkpoint->tensors()) {
    os << formatv("  {0,-64} {1,-8} {2,-20} {3,12}  {4}\n", tensor.name,
                  dtypeName(tensor.dtype), shapeString(tensor.shape),
                  humanBytes(tensor.nbytes),
                  sys::path::filename(tensor.shardPath));
    auto &[count, bytes] = byDtype[dtypeName(tensor.dtype).str()];
    ++count;
    bytes += tensor.nbytes;
    totalBytes += tensor.nbytes;
  }
  os << "\ntotals:\n";
  for (const auto &[dtype, entry] : byDtype)
    os << formatv("  {0,-8} {1,6} tensors  {2}\n", dtype, entry.first,
                  humanBytes(entry.second));
  os << formatv("  {0,-8} {1,6} tensors  {2}\n", "all",
                checkpoint->tensors().size(), humanBytes(totalBytes));
  return Error::success();
}

} // namespace moec
