//===- SafeTensorsTest.cpp - safetensors reader and fp8 dequantization ----===//
//
// Part of moec. Checkpoints are written byte by byte into a temporary
// directory: valid ones through a small writer, broken ones by hand.
//
//===----------------------------------------------------------------------===//

#include "moec/Frontend/SafeTensors.h"
#include "moec/Support/Float.h"

#include "llvm/Support/FileSystem.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include "gtest/gtest.h"

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

using namespace llvm;
using namespace moec;

namespace {

struct Entry {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

template <typename T> std::string bytesOf(const std::vector<T> &values) {
  std::string bytes(values.size() * sizeof(T), '\0');
  std::memcpy(bytes.data(), values.data(), bytes.size()); // little-endian host
  return bytes;
}

std::string u64le(uint64_t value) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<char>((value >> (8 * i)) & 0xff);
  return bytes;
}

// Header JSON padded with spaces to a multiple of 8 (as the Python writer
// does), followed by the entries' bytes back to back.
std::string makeSafetensors(const std::vector<Entry> &entries,
                            const json::Object &metadata = {}) {
  json::Object header;
  std::string data;
  for (const Entry &entry : entries) {
    json::Array shape;
    for (int64_t dim : entry.shape)
      shape.push_back(dim);
    header[entry.name] = json::Object{
        {"dtype", entry.dtype},
        {"shape", std::move(shape)},
        {"data_offsets",
         json::Array{static_cast<int64_t>(data.size()),
                     static_cast<int64_t>(data.size() + entry.bytes.size())}}};
    data += entry.bytes;
  }
  if (!metadata.empty())
    header["__metadata__"] = json::Object(metadata);
  std::string text = formatv("{0}", json::Value(std::move(header))).str();
  while (text.size() % 8)
    text += ' ';
  return u64le(text.size()) + text + data;
}

// A raw file from a header text and data bytes (for malformed cases).
std::string rawSafetensors(StringRef header, StringRef data) {
  return u64le(header.size()) + header.str() + data.str();
}

class TempDir {
public:
  TempDir() {
    std::error_code ec = sys::fs::createUniqueDirectory("moec-st", path);
    EXPECT_FALSE(ec);
  }
  ~TempDir() { sys::fs::remove_directories(path); }
  std::string file(StringRef name) const {
    SmallString<128> full(path);
    sys::path::append(full, name);
    return full.str().str();
  }
  void write(StringRef name, StringRef contents) const {
    std::error_code ec;
    raw_fd_ostream os(file(name), ec);
    ASSERT_FALSE(ec);
    os << contents;
  }
  StringRef dir() const { return path; }

private:
  SmallString<128> path;
};

std::string errorOf(Expected<SafeTensorsCheckpoint> result) {
  if (result)
    return "<no error>";
  return toString(result.takeError());
}

std::string errorOf(Error error) {
  if (!error)
    return "<no error>";
  return toString(std::move(error));
}

bool contains(StringRef text, StringRef part) { return text.contains(part); }

std::vector<uint16_t> toBf16(const std::vector<float> &values) {
  std::vector<uint16_t> out;
  for (float value : values)
    out.push_back(f32ToBf16(value));
  return out;
}

} // namespace

//===----------------------------------------------------------------------===//
// Opening and lookup
//===----------------------------------------------------------------------===//

TEST(SafeTensors, OpensSingleFileCheckpoint) {
  TempDir dir;
  std::vector<float> norm = {1.0f, 2.0f, 3.0f, 4.0f};
  std::vector<float> embed = {0.5f, -1.5f, 2.25f, 8.0f, -0.125f, 3.0f};
  std::vector<Entry> entries = {
      {"model.layers.10.input_layernorm.weight", "F32", {4}, bytesOf(norm)},
      {"model.embed_tokens.weight", "BF16", {3, 2}, bytesOf(toBf16(embed))},
      {"model.layers.2.input_layernorm.weight", "F32", {4}, bytesOf(norm)},
      {"model.layers.2.mlp.gate.e_score_correction_bias",
       "F16",
       {2},
       bytesOf(std::vector<uint16_t>{f32ToF16(0.75f), f32ToF16(-3.0f)})},
      {"empty", "I64", {0, 3}, ""},
  };
  dir.write("model.safetensors",
            makeSafetensors(entries, json::Object{{"format", "pt"}}));

  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(dir.dir());
  ASSERT_TRUE(bool(checkpoint)) << toString(checkpoint.takeError());

  // Natural order: layers.2 before layers.10.
  std::vector<std::string> names;
  for (const TensorInfo &tensor : checkpoint->tensors())
    names.push_back(tensor.name);
  EXPECT_EQ(names, (std::vector<std::string>{
                       "empty", "model.embed_tokens.weight",
                       "model.layers.2.input_layernorm.weight",
                       "model.layers.2.mlp.gate.e_score_correction_bias",
                       "model.layers.10.input_layernorm.weight"}));

  const TensorInfo *embedInfo = checkpoint->find("model.embed_tokens.weight");
  ASSERT_NE(embedInfo, nullptr);
  EXPECT_EQ(embedInfo->dtype, DType::BF16);
  EXPECT_EQ(embedInfo->shape, (SmallVector<int64_t, 4>{3, 2}));
  EXPECT_EQ(embedInfo->numElements(), 6);
  EXPECT_EQ(embedInfo->nbytes, 12u);
  EXPECT_EQ(embedInfo->shardPath, dir.file("model.safetensors"));
  // The offset is absolute: reading the file there gives the same bytes.
  std::string file = makeSafetensors(entries, json::Object{{"format", "pt"}});
  EXPECT_EQ(file.substr(embedInfo->fileOffset, embedInfo->nbytes),
            std::string(reinterpret_cast<const char *>(embedInfo->data),
                        embedInfo->nbytes));
  EXPECT_EQ(file.substr(embedInfo->fileOffset, embedInfo->nbytes),
            bytesOf(toBf16(embed)));

  EXPECT_EQ(checkpoint->find("model.layers.3.input_layernorm.weight"), nullptr);
  Expected<const TensorInfo &> missing = checkpoint->get("lm_head.weight");
  ASSERT_FALSE(bool(missing));
  EXPECT_EQ(toString(missing.takeError()),
            "checkpoint has no tensor 'lm_head.weight'");

  ASSERT_EQ(checkpoint->shards().size(), 1u);
  EXPECT_EQ(checkpoint->metadata().lookup("format"), "pt");

  // f32 conversion of every float source type.
  std::vector<float> out(6);
  ASSERT_FALSE(bool(checkpoint->readAsF32("model.embed_tokens.weight", out)));
  EXPECT_EQ(out, embed); // all exactly representable in bf16
  std::vector<float> layerNorm(4);
  ASSERT_FALSE(bool(checkpoint->readAsF32(
      "model.layers.10.input_layernorm.weight", layerNorm)));
  EXPECT_EQ(layerNorm, norm);
  std::vector<float> half(2);
  ASSERT_FALSE(bool(checkpoint->readAsF32(
      "model.layers.2.mlp.gate.e_score_correction_bias", half)));
  EXPECT_EQ(half, (std::vector<float>{0.75f, -3.0f}));

  // Chunked conversion from an element offset.
  std::vector<float> chunk(3);
  ASSERT_FALSE(bool(convertToF32(*embedInfo, 2, chunk)));
  EXPECT_EQ(chunk, (std::vector<float>{2.25f, 8.0f, -0.125f}));
  EXPECT_TRUE(contains(errorOf(convertToF32(*embedInfo, 4, chunk)),
                       "elements [4, 7) are out of range (6 elements)"));
  EXPECT_TRUE(contains(errorOf(checkpoint->readAsF32("empty", out)),
                       "output holds 6 floats, the tensor has 0 elements"));
  std::vector<float> none;
  EXPECT_TRUE(contains(errorOf(checkpoint->readAsF32("empty", none)),
                       "cannot convert I64 to f32"));

  // Moving the checkpoint keeps TensorInfo pointers and data valid.
  const uint8_t *before = embedInfo->data;
  SafeTensorsCheckpoint moved = std::move(*checkpoint);
  const TensorInfo *after = moved.find("model.embed_tokens.weight");
  ASSERT_NE(after, nullptr);
  EXPECT_EQ(after->data, before);
  EXPECT_EQ(bf16ToF32(after->data[0] | (after->data[1] << 8)), 0.5f);
}

TEST(SafeTensors, DTypeTable) {
  struct {
    const char *name;
    DType dtype;
    uint64_t size;
  } expected[] = {{"F64", DType::F64, 8},         {"F32", DType::F32, 4},
                  {"F16", DType::F16, 2},         {"BF16", DType::BF16, 2},
                  {"F8_E4M3", DType::F8_E4M3, 1}, {"I64", DType::I64, 8},
                  {"I32", DType::I32, 4},         {"I16", DType::I16, 2},
                  {"I8", DType::I8, 1},           {"U8", DType::U8, 1},
                  {"BOOL", DType::BOOL, 1}};
  for (const auto &entry : expected) {
    EXPECT_EQ(parseDType(entry.name), entry.dtype) << entry.name;
    EXPECT_EQ(dtypeName(entry.dtype), entry.name);
    EXPECT_EQ(dtypeSize(entry.dtype), entry.size) << entry.name;
  }
  EXPECT_EQ(parseDType("F8_E5M2"), std::nullopt);
  EXPECT_EQ(parseDType("bf16"), std::nullopt);
}

TEST(SafeTensors, OpensShardedCheckpoint) {
  TempDir dir;
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6};
  dir.write("model-00001-of-00002.safetensors",
            makeSafetensors(
                {{"model.embed_tokens.weight", "F32", {2, 2}, bytesOf(a)}},
                json::Object{{"format", "pt"}}));
  dir.write("model-00002-of-00002.safetensors",
            makeSafetensors({{"model.norm.weight", "F32", {2}, bytesOf(b)},
                             {"lm_head.weight", "F32", {1, 2}, bytesOf(b)}},
                            json::Object{{"format", "pt"}, {"shard", "2"}}));
  dir.write("model.safetensors.index.json", R"({
    "metadata": {"total_size": 32},
    "weight_map": {
      "lm_head.weight": "model-00002-of-00002.safetensors",
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.norm.weight": "model-00002-of-00002.safetensors"
    }
  })");
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(dir.dir());
  ASSERT_TRUE(bool(checkpoint)) << toString(checkpoint.takeError());
  EXPECT_EQ(checkpoint->tensors().size(), 3u);
  ASSERT_EQ(checkpoint->shards().size(), 2u);
  EXPECT_EQ(checkpoint->shards()[0].path,
            dir.file("model-00001-of-00002.safetensors"));
  EXPECT_EQ(checkpoint->shards()[1].metadata.lookup("shard"), "2");
  EXPECT_EQ(checkpoint->metadata().lookup("shard"), "2");

  const TensorInfo *head = checkpoint->find("lm_head.weight");
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->shardPath, dir.file("model-00002-of-00002.safetensors"));
  std::vector<float> out(2);
  ASSERT_FALSE(bool(checkpoint->readAsF32("lm_head.weight", out)));
  EXPECT_EQ(out, b);
  std::vector<float> embed(4);
  ASSERT_FALSE(bool(checkpoint->readAsF32("model.embed_tokens.weight", embed)));
  EXPECT_EQ(embed, a);
}

TEST(SafeTensors, PrefersSingleFileOverIndex) {
  TempDir dir;
  dir.write("model.safetensors",
            makeSafetensors({{"x", "F32", {1}, bytesOf<float>({1})}}));
  // A broken index next to it must not matter: transformers also picks
  // model.safetensors first.
  dir.write("model.safetensors.index.json", "{ not json");
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(dir.dir());
  ASSERT_TRUE(bool(checkpoint)) << toString(checkpoint.takeError());
  EXPECT_NE(checkpoint->find("x"), nullptr);
}

//===----------------------------------------------------------------------===//
// Validation of one file
//===----------------------------------------------------------------------===//

TEST(SafeTensors, RejectsBrokenFiles) {
  TempDir dir;
  auto errorFor = [&](StringRef contents) {
    dir.write("t.safetensors", contents);
    return errorOf(SafeTensorsCheckpoint::openFile(dir.file("t.safetensors")));
  };
  std::string path = dir.file("t.safetensors");
  std::string eight(8, 'x');

  EXPECT_EQ(errorFor("abc"),
            path + ": file is 3 bytes, too small for a safetensors header");
  EXPECT_EQ(errorFor(u64le(200'000'000) + "{}"),
            path + ": header length 200000000 is absurd (more than 100 MB); "
                   "not a safetensors file?");
  EXPECT_EQ(errorFor(u64le(64) + "{}"),
            path + ": header length 64 exceeds the file size (10 bytes)");
  EXPECT_TRUE(contains(errorFor(rawSafetensors("{\"a\": ", "")),
                       path + ": invalid JSON header: "));
  EXPECT_EQ(errorFor(rawSafetensors("[1, 2]", "")),
            path + ": the JSON header is not an object");

  EXPECT_EQ(
      errorFor(rawSafetensors(R"({"w": {"dtype": "F8_E5M2", "shape": [8],)"
                              R"( "data_offsets": [0, 8]}})",
                              eight)),
      path + ": tensor 'w': unsupported dtype 'F8_E5M2' (moec reads F64, F32, "
             "F16, BF16, F8_E4M3, I64, I32, I16, I8, U8, BOOL)");
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}})",
          eight)),
      path + ": tensor 'w': data_offsets [0, 8] do not match F32 shape [4] "
             "(16 bytes)");
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"w": {"dtype": "U8", "shape": [16], "data_offsets": [0, 16]}})",
          eight)),
      path + ": tensor 'w': data_offsets [0, 16] run past the end of the data "
             "region (8 bytes)");
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [8, 4]}})",
          eight)),
      path + ": tensor 'w': data_offsets [8, 4] are reversed");
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"a": {"dtype": "U8", "shape": [6], "data_offsets": [0, 6]},)"
          R"( "b": {"dtype": "I16", "shape": [2], "data_offsets": [4, 8]}})",
          eight)),
      path + ": tensors 'a' [0, 6] and 'b' [4, 8] overlap");
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"w": {"dtype": "U8", "shape": [-1], "data_offsets": [0, 8]}})",
          eight)),
      path + ": tensor 'w': 'shape' must hold non-negative integers");
  EXPECT_EQ(errorFor(rawSafetensors(
                R"({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0]}})",
                eight)),
            path + ": tensor 'w': 'data_offsets' must be two non-negative "
                   "integers");
  EXPECT_EQ(errorFor(rawSafetensors(
                R"({"w": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8],)"
                R"( "extra": 1}})",
                eight)),
            path + ": tensor 'w': unexpected header key 'extra'");
  EXPECT_EQ(errorFor(rawSafetensors(R"({"w": [1]})", eight)),
            path + ": tensor 'w': header entry is not a JSON object");
  EXPECT_EQ(errorFor(rawSafetensors(R"({"__metadata__": {"format": 1}})", "")),
            path + ": '__metadata__' value for 'format' is not a string");
  EXPECT_EQ(errorFor(rawSafetensors(
                R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296],)"
                R"( "data_offsets": [0, 8]}})",
                eight)),
            path + ": tensor 'w': shape [4294967296, 4294967296] is too large");

  // Adjacent tensors and zero-sized tensors anywhere are fine.
  EXPECT_EQ(
      errorFor(rawSafetensors(
          R"({"a": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]},)"
          R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [2, 2]},)"
          R"( "b": {"dtype": "I16", "shape": [2], "data_offsets": [4, 8]}})",
          eight)),
      "<no error>");
}

//===----------------------------------------------------------------------===//
// Validation across shards
//===----------------------------------------------------------------------===//

TEST(SafeTensors, RejectsInconsistentShards) {
  std::string shard1 = makeSafetensors(
      {{"model.embed_tokens.weight", "F32", {2}, bytesOf<float>({1, 2})}});
  std::string shard2 = makeSafetensors(
      {{"model.norm.weight", "F32", {2}, bytesOf<float>({3, 4})}});
  auto setUp = [&](const TempDir &dir, StringRef weightMap) {
    dir.write("model-00001-of-00002.safetensors", shard1);
    dir.write("model-00002-of-00002.safetensors", shard2);
    dir.write("model.safetensors.index.json",
              ("{\"weight_map\": " + weightMap + "}").str());
  };

  {
    TempDir dir;
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.dir().str() + ": neither model.safetensors nor "
                                "model.safetensors.index.json exists");
  }
  {
    TempDir dir;
    setUp(dir, R"({"model.embed_tokens.weight":
                     "model-00001-of-00002.safetensors",
                   "model.norm.weight": "model-00002-of-00002.safetensors",
                   "lm_head.weight": "model-00002-of-00002.safetensors"})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": tensor 'lm_head.weight' is mapped to "
                  "'model-00002-of-00002.safetensors', which does not "
                  "contain it");
  }
  {
    TempDir dir;
    setUp(dir, R"({"model.embed_tokens.weight":
                     "model-00001-of-00002.safetensors",
                   "model.norm.weight": "model-00003-of-00003.safetensors"})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": shard 'model-00003-of-00003.safetensors' (holding tensor "
                  "'model.norm.weight') does not exist");
  }
  {
    TempDir dir;
    setUp(dir, R"({"model.embed_tokens.weight":
                     "model-00001-of-00002.safetensors"})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              "<no error>"); // shard 2 is not referenced, so not opened
    setUp(dir, R"({"model.embed_tokens.weight":
                     "model-00002-of-00002.safetensors",
                   "model.norm.weight": "model-00002-of-00002.safetensors"})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": tensor 'model.embed_tokens.weight' is mapped to "
                  "'model-00002-of-00002.safetensors', which does not contain "
                  "it");
  }
  {
    TempDir dir;
    // The same tensor in both shards.
    dir.write("model-00001-of-00002.safetensors", shard1);
    dir.write(
        "model-00002-of-00002.safetensors",
        makeSafetensors(
            {{"model.embed_tokens.weight", "F32", {1}, bytesOf<float>({9})},
             {"model.norm.weight", "F32", {2}, bytesOf<float>({3, 4})}}));
    dir.write("model.safetensors.index.json",
              R"({"weight_map": {
                  "model.embed_tokens.weight":
                    "model-00001-of-00002.safetensors",
                  "model.norm.weight": "model-00002-of-00002.safetensors"}})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": tensor 'model.embed_tokens.weight' appears in both "
                  "'model-00001-of-00002.safetensors' and "
                  "'model-00002-of-00002.safetensors'");
  }
  {
    TempDir dir;
    // A shard tensor the index does not list.
    dir.write("model-00001-of-00001.safetensors",
              makeSafetensors({{"a", "U8", {1}, "x"}, {"b", "U8", {1}, "y"}}));
    dir.write("model.safetensors.index.json",
              R"({"weight_map": {"a": "model-00001-of-00001.safetensors"}})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": tensor 'b' is in 'model-00001-of-00001.safetensors' but "
                  "not in the weight_map");
  }
  {
    TempDir dir;
    dir.write("model.safetensors.index.json", R"({"metadata": {}})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model.safetensors.index.json") +
                  ": missing 'weight_map' object");
    dir.write("model.safetensors.index.json",
              R"({"weight_map": {"a": "../outside.safetensors"}})");
    EXPECT_TRUE(contains(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
                         "names '../outside.safetensors', which is not a "
                         "file name in the checkpoint directory"));
    dir.write("model.safetensors.index.json", R"({"weight_map": {"a": 3}})");
    EXPECT_TRUE(contains(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
                         "weight_map entry for tensor 'a' is not a string"));
  }
  {
    // The error names the shard file and the tensor.
    TempDir dir;
    dir.write("model-00001-of-00002.safetensors", shard1);
    dir.write(
        "model-00002-of-00002.safetensors",
        rawSafetensors(R"({"model.layers.0.mlp.gate.weight": {"dtype": "BF16",)"
                       R"( "shape": [4, 16], "data_offsets": [0, 100]}})",
                       std::string(128, '\0')));
    dir.write("model.safetensors.index.json",
              R"({"weight_map": {
                  "model.embed_tokens.weight":
                    "model-00001-of-00002.safetensors",
                  "model.layers.0.mlp.gate.weight":
                    "model-00002-of-00002.safetensors"}})");
    EXPECT_EQ(errorOf(SafeTensorsCheckpoint::open(dir.dir())),
              dir.file("model-00002-of-00002.safetensors") +
                  ": tensor 'model.layers.0.mlp.gate.weight': data_offsets "
                  "[0, 100] do not match BF16 shape [4, 16] (128 bytes)");
  }
}

//===----------------------------------------------------------------------===//
// DeepSeek block-fp8 dequantization
//===----------------------------------------------------------------------===//

namespace {

// An f8e4m3fn value from its definition, independent of Float.h.
float f8Value(uint8_t bits) {
  int sign = bits >> 7, exponent = (bits >> 3) & 0xf, mantissa = bits & 7;
  double magnitude = exponent == 0 ? std::ldexp(mantissa, -9)
                                   : std::ldexp(8 + mantissa, exponent - 10);
  return static_cast<float>(sign ? -magnitude : magnitude);
}

struct Fp8Fixture {
  int64_t rows, cols, blockRows, blockCols;
  std::vector<uint8_t> weight;
  std::vector<float> scales;
};

// A [130, 260] weight: 2 x 3 blocks of 128, the last row and column blocks
// partial (2 rows, 4 columns).
Fp8Fixture makeFp8Fixture() {
  Fp8Fixture f{130, 260, 128, 128, {}, {}};
  f.weight.resize(f.rows * f.cols);
  for (int64_t i = 0; i < f.rows; ++i)
    for (int64_t j = 0; j < f.cols; ++j) {
      uint8_t bits = static_cast<uint8_t>((i * 7 + j * 3) % 251);
      if ((bits & 0x7f) == 0x7f) // keep NaN out of the pattern
        bits ^= 1;
      f.weight[i * f.cols + j] = bits;
    }
  // Landmarks computed by hand below.
  f.weight[0 * f.cols + 0] = 0x38;                   // 1.0
  f.weight[127 * f.cols + 128] = 0x40;               // 2.0
  f.weight[128 * f.cols + 127] = 0x30;               // 0.5
  f.weight[128 * f.cols + 256] = 0x01;               // 2^-9 (subnormal)
  f.weight[129 * f.cols + 259] = 0xc0;               // -2.0
  f.weight[129 * f.cols + 3] = 0x7e;                 // 448
  f.scales = {0.5f, 2.0f, 3.0f, 0.25f, 10.0f, 1.5f}; // [2, 3]
  return f;
}

} // namespace

TEST(SafeTensors, DequantizesDeepSeekFp8Blocks) {
  Fp8Fixture f = makeFp8Fixture();
  TempDir dir;
  dir.write("model.safetensors",
            makeSafetensors(
                {{"w.weight", "F8_E4M3", {f.rows, f.cols}, bytesOf(f.weight)},
                 {"w.weight_scale_inv", "F32", {2, 3}, bytesOf(f.scales)},
                 {"bad.weight", "F8_E4M3", {2, 2}, std::string(4, '\x38')}}));
  Expected<SafeTensorsCheckpoint> checkpoint =
      SafeTensorsCheckpoint::open(dir.dir());
  ASSERT_TRUE(bool(checkpoint)) << toString(checkpoint.takeError());

  std::vector<float> out(f.rows * f.cols);
  ASSERT_FALSE(bool(checkpoint->readAsF32("w.weight", out)));
  auto at = [&](int64_t i, int64_t j) { return out[i * f.cols + j]; };
  EXPECT_EQ(at(0, 0), 1.0f * 0.5f);        // block [0][0]
  EXPECT_EQ(at(127, 128), 2.0f * 2.0f);    // block [0][1], last row
  EXPECT_EQ(at(128, 127), 0.5f * 0.25f);   // block [1][0], first row
  EXPECT_EQ(at(128, 256), 0x1p-9f * 1.5f); // partial corner block [1][2]
  EXPECT_EQ(at(129, 259), -2.0f * 1.5f);   // very last element
  EXPECT_EQ(at(129, 3), 448.0f * 0.25f);   // partial row block [1][0]

  // Every element against the definition.
  for (int64_t i = 0; i < f.rows; ++i)
    for (int64_t j = 0; j < f.cols; ++j) {
      float expected =
          f8Value(f.weight[i * f.cols + j]) * f.scales[(i / 128) * 3 + j / 128];
      ASSERT_EQ(at(i, j), expected) << "element [" << i << ", " << j << "]";
    }

  // Streaming: row ranges reproduce the matching slice of the full result.
  const TensorInfo &weight = *checkpoint->find("w.weight");
  const TensorInfo &scale = *checkpoint->find("w.weight_scale_inv");
  for (auto [begin, end] :
       {std::pair<int64_t, int64_t>{0, 1}, {100, 130}, {127, 129}, {5, 5}}) {
    std::vector<float> part((end - begin) * f.cols);
    ASSERT_FALSE(bool(dequantizeFp8BlockRows(weight, scale, begin, end, part)));
    EXPECT_TRUE(
        std::equal(part.begin(), part.end(), out.begin() + begin * f.cols))
        << "rows [" << begin << ", " << end << ")";
  }

  // Misuse is reported, naming the tensors.
  std::vector<float> small(10);
  EXPECT_TRUE(
      contains(errorOf(dequantizeFp8BlockRows(weight, scale, 0, 1, small)),
               "output holds 10 floats, rows [0, 1) need 260"));
  EXPECT_TRUE(
      contains(errorOf(dequantizeFp8BlockRows(weight, scale, 120, 131, small)),
               "rows [120, 131) are out of range (130 rows)"));
  EXPECT_TRUE(contains(
      errorOf(dequantizeFp8BlockRows(weight, scale, 0, 1, small, 64, 128)),
      "block scales of 'w.weight' [130, 260] must be F32 [3, 3] for [64, "
      "128] blocks, got F32 [2, 3]"));
  EXPECT_TRUE(contains(
      errorOf(dequantizeFp8BlockRows(scale, scale, 0, 1, small)),
      "block dequantization needs a 2-D F8_E4M3 weight, got F32 [2, 3]"));
  std::vector<float> four(4);
  EXPECT_TRUE(contains(errorOf(checkpoint->readAsF32("bad.weight", four)),
                       "tensor 'bad.weight': F8_E4M3 weight without its "
                       "'bad.weight_scale_inv' block scales"));
}

TEST(SafeTensors, DequantizesSmallBlocksByHand) {
  // [3, 4] weight, [2, 3] blocks -> scales [2, 2]; the last block row has
  // one row and the last block column one column.
  std::vector<uint8_t> weight = {
      0x38, 0x40, 0x30, 0x48, // 1, 2, 0.5, 4
      0xb8, 0x00, 0x3c, 0x44, // -1, 0, 1.5, 3
      0x28, 0x34, 0xc8, 0x01, // 0.25, 0.75, -4, 2^-9
  };
  std::vector<float> scales = {2.0f, 10.0f, // block row 0
                               0.5f, 3.0f}; // block row 1
  std::vector<float> out(12);
  dequantizeFp8Blocks(weight.data(),
                      reinterpret_cast<const uint8_t *>(scales.data()), 3, 4, 0,
                      3, 2, 3, out.data());
  EXPECT_EQ(out, (std::vector<float>{2, 4, 1, 40,        // x2 x2 x2 | x10
                                     -2, 0, 3, 30,       // x2 x2 x2 | x10
                                     0.125f, 0.375f, -2, // x0.5 ...
                                     3 * 0x1p-9f}));     // | x3
}
