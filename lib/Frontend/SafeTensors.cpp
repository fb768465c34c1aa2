//===- SafeTensors.cpp - memory-mapped safetensors checkpoints ------------===//
//
// Part of moec. A safetensors file is an 8-byte little-endian header length
// N, N bytes of JSON mapping tensor names to {dtype, shape, data_offsets}
// (offsets relative to the data region that follows), then the data. Files
// are mapped, never read, so opening a sharded 100+ GB checkpoint touches
// only the headers.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Float.h"
#include "moec/Support/Format.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/ADT/ScopeExit.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstring>
#include <map>

using namespace llvm;

namespace moec {

//===----------------------------------------------------------------------===//
// Element types
//===----------------------------------------------------------------------===//

namespace {
struct DTypeEntry {
  DType dtype;
  StringLiteral name;
  uint64_t size;
};
constexpr DTypeEntry dtypeTable[] = {
    {DType::F64, "F64", 8},         {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},         {DType::I16, "I16", 2},
    {DType::I8, "I8", 1},           {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};
} // namespace

StringRef dtypeName(DType dtype) {
  return dtypeTable[static_cast<size_t>(dtype)].name;
}

std::optional<DType> parseDType(StringRef name) {
  for (const DTypeEntry &entry : dtypeTable)
    if (entry.name == name)
      return entry.dtype;
  return std::nullopt;
}

uint64_t dtypeSize(DType dtype) {
  return dtypeTable[static_cast<size_t>(dtype)].size;
}

int64_t TensorInfo::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

static Error fileError(StringRef file, const Twine &message) {
  return createStringError(file + ": " + message);
}

static Error tensorError(StringRef file, StringRef tensor,
                         const Twine &message) {
  return createStringError(file + ": tensor '" + tensor + "': " + message);
}

// Natural order: runs of digits compare by value, so "layers.2" sorts before
// "layers.10"; anything equal that way falls back to byte order.
static bool naturalLess(StringRef a, StringRef b) {
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (isDigit(a[i]) && isDigit(b[j])) {
      size_t endA = i, endB = j;
      while (endA < a.size() && isDigit(a[endA]))
        ++endA;
      while (endB < b.size() && isDigit(b[endB]))
        ++endB;
      StringRef numA = a.slice(i, endA).ltrim('0');
      StringRef numB = b.slice(j, endB).ltrim('0');
      if (numA.size() != numB.size())
        return numA.size() < numB.size();
      if (int cmp = numA.compare(numB))
        return cmp < 0;
      i = endA;
      j = endB;
      continue;
    }
    if (a[i] != b[j])
      return static_cast<unsigned char>(a[i]) <
             static_cast<unsigned char>(b[j]);
    ++i;
    ++j;
  }
  if ((i == a.size()) != (j == b.size()))
    return i == a.size();
  return a < b;
}

//===----------------------------------------------------------------------===//
// Header parsing
//===----------------------------------------------------------------------===//

// The safetensors reference implementation refuses headers above 100 MB;
// anything larger is a corrupt length field, not a real header.
static constexpr uint64_t kMaxHeaderBytes = 100 * 1000 * 1000;

namespace {
struct ParsedTensor {
  std::string name;
  DType dtype;
  SmallVector<int64_t, 4> shape;
  uint64_t begin, end;
};
} // namespace

static Expected<ParsedTensor> parseTensorEntry(StringRef file, StringRef name,
                                               const json::Value &value,
                                               uint64_t dataSize) {
  const json::Object *entry = value.getAsObject();
  if (!entry)
    return tensorError(file, name, "header entry is not a JSON object");
  for (const auto &member : *entry) {
    StringRef key = member.first;
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return tensorError(file, name, "unexpected header key '" + key + "'");
  }

  ParsedTensor tensor;
  tensor.name = name.str();
  std::optional<StringRef> dtypeText = entry->getString("dtype");
  if (!dtypeText)
    return tensorError(file, name, "missing or non-string 'dtype'");
  std::optional<DType> dtype = parseDType(*dtypeText);
  if (!dtype)
    return tensorError(file, name,
                       "unsupported dtype '" + *dtypeText +
                           "' (moec reads F64, F32, F16, BF16, F8_E4M3, I64, "
                           "I32, I16, I8, U8, BOOL)");
  tensor.dtype = *dtype;

  const json::Array *shape = entry->getArray("shape");
  if (!shape)
    return tensorError(file, name, "missing or non-array 'shape'");
  uint64_t expectedBytes = dtypeSize(tensor.dtype);
  bool overflow = false;
  for (const json::Value &dim : *shape) {
    std::optional<int64_t> size = dim.getAsInteger();
    if (!size || *size < 0)
      return tensorError(file, name, "'shape' must hold non-negative integers");
    tensor.shape.push_back(*size);
    overflow |= __builtin_mul_overflow(
        expectedBytes, static_cast<uint64_t>(*size), &expectedBytes);
  }
  if (overflow)
    return tensorError(file, name,
                       "shape " + formatShape(tensor.shape) + " is too large");

  const json::Array *offsets = entry->getArray("data_offsets");
  std::optional<uint64_t> begin, end;
  if (offsets && offsets->size() == 2) {
    begin = (*offsets)[0].getAsUINT64();
    end = (*offsets)[1].getAsUINT64();
  }
  if (!begin || !end)
    return tensorError(file, name,
                       "'data_offsets' must be two non-negative integers");
  tensor.begin = *begin;
  tensor.end = *end;
  std::string range = formatv("[{0}, {1}]", *begin, *end).str();
  if (*end < *begin)
    return tensorError(file, name, "data_offsets " + range + " are reversed");
  if (*end - *begin != expectedBytes)
    return tensorError(file, name,
                       formatv("data_offsets {0} do not match {1} shape {2} "
                               "({3} bytes)",
                               range, dtypeName(tensor.dtype),
                               formatShape(tensor.shape), expectedBytes));
  if (*end > dataSize)
    return tensorError(file, name,
                       formatv("data_offsets {0} run past the end of the data "
                               "region ({1} bytes)",
                               range, dataSize));
  return tensor;
}

Error SafeTensorsCheckpoint::addFile(StringRef path, StringRef displayName) {
  Expected<sys::fs::file_t> fd = sys::fs::openNativeFileForRead(path);
  if (!fd)
    return fileError(displayName, "cannot open: " + toString(fd.takeError()));
  scope_exit closeOnExit([&] { sys::fs::closeFile(*fd); });
  sys::fs::file_status status;
  if (std::error_code ec = sys::fs::status(*fd, status))
    return fileError(displayName, "cannot stat: " + ec.message());
  uint64_t fileSize = status.getSize();
  // Too small to map or parse: addBuffer reports it without reading.
  if (fileSize < 8)
    return addBuffer({static_cast<const uint8_t *>(nullptr), fileSize}, path,
                     displayName);

  std::error_code ec;
  auto mapping = std::make_unique<sys::fs::mapped_file_region>(
      *fd, sys::fs::mapped_file_region::readonly, fileSize, 0, ec);
  if (ec)
    return fileError(displayName, "cannot map: " + ec.message());
  const uint8_t *base =
      reinterpret_cast<const uint8_t *>(mapping->const_data());
  if (Error err = addBuffer({base, fileSize}, path, displayName))
    return err;
  mappings.push_back(std::move(mapping));
  return Error::success();
}

Error SafeTensorsCheckpoint::addBuffer(ArrayRef<uint8_t> file, StringRef path,
                                       StringRef displayName) {
  const uint8_t *base = file.data();
  uint64_t fileSize = file.size();
  if (fileSize < 8)
    return fileError(displayName,
                     formatv("file is {0} bytes, too small for a safetensors "
                             "header",
                             fileSize));
  uint64_t headerSize = support::endian::read64le(base);
  if (headerSize > kMaxHeaderBytes)
    return fileError(displayName,
                     formatv("header length {0} is absurd (more than 100 MB); "
                             "not a safetensors file?",
                             headerSize));
  if (headerSize > fileSize - 8)
    return fileError(displayName, formatv("header length {0} exceeds the file "
                                          "size ({1} bytes)",
                                          headerSize, fileSize));
  StringRef headerText(reinterpret_cast<const char *>(base + 8), headerSize);
  Expected<json::Value> header = json::parse(headerText);
  if (!header)
    return fileError(displayName,
                     "invalid JSON header: " + toString(header.takeError()));
  const json::Object *object = header->getAsObject();
  if (!object)
    return fileError(displayName, "the JSON header is not an object");

  uint64_t dataStart = 8 + headerSize;
  uint64_t dataSize = fileSize - dataStart;
  Shard shard;
  shard.path = path.str();
  std::vector<ParsedTensor> parsed;
  for (const auto &member : *object) {
    StringRef key = member.first;
    if (key == "__metadata__") {
      const json::Object *metadata = member.second.getAsObject();
      if (!metadata)
        return fileError(displayName, "'__metadata__' is not an object");
      for (const auto &item : *metadata) {
        std::optional<StringRef> text = item.second.getAsString();
        if (!text)
          return fileError(displayName, "'__metadata__' value for '" +
                                            StringRef(item.first) +
                                            "' is not a string");
        shard.metadata[item.first] = text->str();
      }
      continue;
    }
    Expected<ParsedTensor> tensor =
        parseTensorEntry(displayName, key, member.second, dataSize);
    if (!tensor)
      return tensor.takeError();
    parsed.push_back(std::move(*tensor));
  }

  // Tensors must not share bytes: sorted by start, each must end before the
  // next begins (empty tensors occupy no bytes and cannot overlap).
  std::vector<const ParsedTensor *> byOffset;
  for (const ParsedTensor &tensor : parsed)
    if (tensor.end > tensor.begin)
      byOffset.push_back(&tensor);
  llvm::sort(byOffset, [](const ParsedTensor *a, const ParsedTensor *b) {
    return std::tie(a->begin, a->end, a->name) <
           std::tie(b->begin, b->end, b->name);
  });
  for (size_t i = 1; i < byOffset.size(); ++i) {
    const ParsedTensor &prev = *byOffset[i - 1];
    const ParsedTensor &cur = *byOffset[i];
    if (prev.end > cur.begin)
      return fileError(displayName,
                       formatv("tensors '{0}' [{1}, {2}] and '{3}' [{4}, {5}] "
                               "overlap",
                               prev.name, prev.begin, prev.end, cur.name,
                               cur.begin, cur.end));
  }

  for (ParsedTensor &tensor : parsed) {
    TensorInfo info;
    info.name = std::move(tensor.name);
    info.dtype = tensor.dtype;
    info.shape = std::move(tensor.shape);
    info.shardPath = path.str();
    info.fileOffset = dataStart + tensor.begin;
    info.nbytes = tensor.end - tensor.begin;
    info.data = base + info.fileOffset;
    tensorList.push_back(std::move(info));
  }
  shardList.push_back(std::move(shard));
  return Error::success();
}

// Sorts the tensors, builds the name index and rejects duplicates (which can
// only come from different shards: JSON objects have unique keys).
void SafeTensorsCheckpoint::finalize() {
  llvm::sort(tensorList, [](const TensorInfo &a, const TensorInfo &b) {
    return naturalLess(a.name, b.name);
  });
  index.clear();
  for (auto [i, tensor] : enumerate(tensorList))
    index.try_emplace(tensor.name, i);
}

//===----------------------------------------------------------------------===//
// Opening
//===----------------------------------------------------------------------===//

SafeTensorsCheckpoint::SafeTensorsCheckpoint(SafeTensorsCheckpoint &&) =
    default;
SafeTensorsCheckpoint &
SafeTensorsCheckpoint::operator=(SafeTensorsCheckpoint &&) = default;
SafeTensorsCheckpoint::~SafeTensorsCheckpoint() = default;

Expected<SafeTensorsCheckpoint>
SafeTensorsCheckpoint::parseBuffer(ArrayRef<uint8_t> bytes, StringRef name) {
  SafeTensorsCheckpoint checkpoint;
  if (Error err = checkpoint.addBuffer(bytes, name, name))
    return err;
  checkpoint.finalize();
  return checkpoint;
}

Expected<SafeTensorsCheckpoint>
SafeTensorsCheckpoint::openFile(StringRef path) {
  SafeTensorsCheckpoint checkpoint;
  if (Error err = checkpoint.addFile(path, path))
    return err;
  checkpoint.finalize();
  return checkpoint;
}

Expected<SafeTensorsCheckpoint>
SafeTensorsCheckpoint::open(StringRef directory) {
  if (!sys::fs::is_directory(directory))
    return fileError(directory, "not a checkpoint directory");
  SmallString<256> single(directory);
  sys::path::append(single, "model.safetensors");
  if (sys::fs::exists(single))
    return openFile(single);

  SmallString<256> indexPath(directory);
  sys::path::append(indexPath, "model.safetensors.index.json");
  if (!sys::fs::exists(indexPath))
    return fileError(directory, "neither model.safetensors nor "
                                "model.safetensors.index.json exists");
  StringRef indexName = indexPath;
  ErrorOr<std::unique_ptr<MemoryBuffer>> indexBuffer =
      MemoryBuffer::getFile(indexPath, /*IsText=*/true);
  if (!indexBuffer)
    return fileError(indexName,
                     "cannot read: " + indexBuffer.getError().message());
  Expected<json::Value> indexJson = json::parse((*indexBuffer)->getBuffer());
  if (!indexJson)
    return fileError(indexName,
                     "invalid JSON: " + toString(indexJson.takeError()));
  const json::Object *indexObject = indexJson->getAsObject();
  const json::Object *weightMap =
      indexObject ? indexObject->getObject("weight_map") : nullptr;
  if (!weightMap)
    return fileError(indexName, "missing 'weight_map' object");

  // tensor name -> shard file name; shards in file-name order.
  std::map<std::string, std::string> expectedShard;
  std::map<std::string, std::string> shardFiles; // file -> first tensor
  for (const auto &member : *weightMap) {
    StringRef tensor = member.first;
    std::optional<StringRef> file = member.second.getAsString();
    if (!file)
      return fileError(indexName, "weight_map entry for tensor '" + tensor +
                                      "' is not a string");
    if (file->empty() || sys::path::is_absolute(*file) || *file == "." ||
        *file == ".." || sys::path::has_parent_path(*file))
      return fileError(indexName, "weight_map entry for tensor '" + tensor +
                                      "' names '" + *file +
                                      "', which is not a file name in the "
                                      "checkpoint directory");
    expectedShard[tensor.str()] = file->str();
    shardFiles.try_emplace(file->str(), tensor.str());
  }
  if (shardFiles.empty())
    return fileError(indexName, "'weight_map' is empty");

  SafeTensorsCheckpoint checkpoint;
  for (const auto &[file, firstTensor] : shardFiles) {
    SmallString<256> shardPath(directory);
    sys::path::append(shardPath, file);
    if (!sys::fs::exists(shardPath))
      return fileError(indexName, "shard '" + file + "' (holding tensor '" +
                                      firstTensor + "') does not exist");
    if (Error err = checkpoint.addFile(shardPath, shardPath))
      return err;
  }

  // Cross-check the index against the shard headers, both ways.
  StringMap<StringRef> foundIn;
  for (const TensorInfo &tensor : checkpoint.tensorList) {
    StringRef shardName = sys::path::filename(tensor.shardPath);
    auto [it, inserted] = foundIn.try_emplace(tensor.name, shardName);
    if (!inserted)
      return fileError(indexName, "tensor '" + tensor.name +
                                      "' appears in both '" + it->second +
                                      "' and '" + shardName + "'");
    auto expected = expectedShard.find(tensor.name);
    if (expected == expectedShard.end())
      return fileError(indexName, "tensor '" + tensor.name + "' is in '" +
                                      shardName +
                                      "' but not in the weight_map");
    if (expected->second != shardName)
      return fileError(indexName, "tensor '" + tensor.name +
                                      "' is mapped to '" + expected->second +
                                      "' but found in '" + shardName + "'");
  }
  for (const auto &[tensor, file] : expectedShard)
    if (!foundIn.count(tensor))
      return fileError(indexName, "tensor '" + tensor + "' is mapped to '" +
                                      file + "', which does not contain it");
  checkpoint.finalize();
  return checkpoint;
}

//===----------------------------------------------------------------------===//
// Queries
//===----------------------------------------------------------------------===//

const TensorInfo *SafeTensorsCheckpoint::find(StringRef name) const {
  auto it = index.find(name);
  return it == index.end() ? nullptr : &tensorList[it->second];
}

Expected<const TensorInfo &> SafeTensorsCheckpoint::get(StringRef name) const {
  if (const TensorInfo *tensor = find(name))
    return *tensor;
  return createStringError("checkpoint has no tensor '" + name + "'");
}

StringMap<std::string> SafeTensorsCheckpoint::metadata() const {
  StringMap<std::string> merged;
  for (const Shard &shard : shardList)
    for (const auto &item : shard.metadata)
      merged.try_emplace(item.first(), item.second);
  return merged;
}

Error SafeTensorsCheckpoint::readAsF32(StringRef name,
                                       MutableArrayRef<float> out,
                                       int64_t blockRows,
                                       int64_t blockCols) const {
  Expected<const TensorInfo &> tensor = get(name);
  if (!tensor)
    return tensor.takeError();
  if (static_cast<int64_t>(out.size()) != tensor->numElements())
    return tensorError(tensor->shardPath, name,
                       formatv("output holds {0} floats, the tensor has {1} "
                               "elements",
                               out.size(), tensor->numElements()));
  if (tensor->dtype != DType::F8_E4M3)
    return convertToF32(*tensor, 0, out);
  std::string scaleName = (name + "_scale_inv").str();
  const TensorInfo *scale = find(scaleName);
  if (!scale)
    return tensorError(tensor->shardPath, name,
                       "F8_E4M3 weight without its '" + scaleName +
                           "' block scales");
  int64_t rows = tensor->shape.empty() ? 0 : tensor->shape.front();
  return dequantizeFp8BlockRows(*tensor, *scale, 0, rows, out, blockRows,
                                blockCols);
}

//===----------------------------------------------------------------------===//
// Conversion and fp8 dequantization
//===----------------------------------------------------------------------===//

static float readF32(const uint8_t *bytes) {
  uint32_t bits = support::endian::read32le(bytes);
  return std::bit_cast<float>(bits);
}

// f8e4m3fn decodes through a table: one load per element in hot loops.
static const float *f8Table() {
  static const auto table = [] {
    std::array<float, 256> values;
    for (unsigned i = 0; i < 256; ++i)
      values[i] = f8e4m3fnToF32(static_cast<uint8_t>(i));
    return values;
  }();
  return table.data();
}

Error convertToF32(const TensorInfo &tensor, int64_t firstElement,
                   MutableArrayRef<float> out) {
  int64_t count = static_cast<int64_t>(out.size());
  if (firstElement < 0 || count > tensor.numElements() - firstElement)
    return tensorError(tensor.shardPath, tensor.name,
                       formatv("elements [{0}, {1}) are out of range ({2} "
                               "elements)",
                               firstElement, firstElement + count,
                               tensor.numElements()));
  uint64_t size = dtypeSize(tensor.dtype);
  const uint8_t *src = tensor.data + firstElement * size;
  switch (tensor.dtype) {
  case DType::F32:
    for (int64_t i = 0; i < count; ++i)
      out[i] = readF32(src + 4 * i);
    return Error::success();
  case DType::F16:
    for (int64_t i = 0; i < count; ++i)
      out[i] = f16ToF32(support::endian::read16le(src + 2 * i));
    return Error::success();
  case DType::BF16:
    for (int64_t i = 0; i < count; ++i)
      out[i] = bf16ToF32(support::endian::read16le(src + 2 * i));
    return Error::success();
  case DType::F8_E4M3: {
    const float *table = f8Table();
    for (int64_t i = 0; i < count; ++i)
      out[i] = table[src[i]];
    return Error::success();
  }
  default:
    return tensorError(tensor.shardPath, tensor.name,
                       "cannot convert " + dtypeName(tensor.dtype) +
                           " to f32 (only F32, F16, BF16, F8_E4M3)");
  }
}

void dequantizeFp8Blocks(const uint8_t *weight, const uint8_t *scaleInv,
                         int64_t rows, int64_t cols, int64_t rowBegin,
                         int64_t rowEnd, int64_t blockRows, int64_t blockCols,
                         float *out) {
  assert(rowBegin >= 0 && rowBegin <= rowEnd && rowEnd <= rows);
  (void)rows;
  const float *table = f8Table();
  int64_t colBlocks = (cols + blockCols - 1) / blockCols;
  for (int64_t i = rowBegin; i < rowEnd; ++i) {
    const uint8_t *src = weight + i * cols;
    const uint8_t *scaleRow = scaleInv + 4 * (i / blockRows) * colBlocks;
    float *dst = out + (i - rowBegin) * cols;
    for (int64_t block = 0; block < colBlocks; ++block) {
      float scale = readF32(scaleRow + 4 * block);
      int64_t end = std::min(cols, (block + 1) * blockCols);
      for (int64_t j = block * blockCols; j < end; ++j)
        dst[j] = table[src[j]] * scale;
    }
  }
}

Error dequantizeFp8BlockRows(const TensorInfo &weight,
                             const TensorInfo &scaleInv, int64_t rowBegin,
                             int64_t rowEnd, MutableArrayRef<float> out,
                             int64_t blockRows, int64_t blockCols) {
  if (weight.dtype != DType::F8_E4M3 || weight.shape.size() != 2)
    return tensorError(weight.shardPath, weight.name,
                       "block dequantization needs a 2-D F8_E4M3 weight, got " +
                           dtypeName(weight.dtype) + " " +
                           formatShape(weight.shape));
  if (blockRows <= 0 || blockCols <= 0)
    return createStringError(
        formatv("invalid fp8 block size [{0}, {1}]", blockRows, blockCols)
            .str());
  int64_t rows = weight.shape[0], cols = weight.shape[1];
  SmallVector<int64_t, 2> expectedScale{(rows + blockRows - 1) / blockRows,
                                        (cols + blockCols - 1) / blockCols};
  if (scaleInv.dtype != DType::F32 ||
      ArrayRef<int64_t>(scaleInv.shape) != ArrayRef<int64_t>(expectedScale))
    return tensorError(
        scaleInv.shardPath, scaleInv.name,
        formatv("block scales of '{0}' {1} must be F32 {2} for [{3}, {4}] "
                "blocks, got {5} {6}",
                weight.name, formatShape(weight.shape),
                formatShape(expectedScale), blockRows, blockCols,
                dtypeName(scaleInv.dtype), formatShape(scaleInv.shape)));
  if (rowBegin < 0 || rowBegin > rowEnd || rowEnd > rows)
    return tensorError(weight.shardPath, weight.name,
                       formatv("rows [{0}, {1}) are out of range ({2} rows)",
                               rowBegin, rowEnd, rows));
  if (static_cast<int64_t>(out.size()) != (rowEnd - rowBegin) * cols)
    return tensorError(weight.shardPath, weight.name,
                       formatv("output holds {0} floats, rows [{1}, {2}) need "
                               "{3}",
                               out.size(), rowBegin, rowEnd,
                               (rowEnd - rowBegin) * cols));
  dequantizeFp8Blocks(weight.data, scaleInv.data, rows, cols, rowBegin, rowEnd,
                      blockRows, blockCols, out.data());
  return Error::success();
}

} // namespace moec
