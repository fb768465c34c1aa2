//===- tokenizer_throughput.cpp - Encode/decode speed of MoecTokenizer ----===//
//
//   moec-bench-tokenizer TOKENIZER.json|CKPT_DIR [TEXT_FILE]
//
// Encodes ~1 MB of mixed text (or TEXT_FILE) and prints MB/s: a cold pass
// (empty word cache) and a warm one, then decode. Not run by the tests.
//
//===----------------------------------------------------------------------===//

#include "moec/Tokenizer/Tokenizer.h"

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

using moec::tokenizer::Tokenizer;

namespace {

// A mixed sample: prose, code, numbers, CJK, Korean, RTL, Devanagari, emoji.
std::string mixedText(size_t targetBytes) {
  const char *samples[] = {
      "The quick brown fox jumps over the lazy dog. It's 2024, and we'll "
      "see whether they've shipped 1,234,567 units by Q3.\n\n",
      "def attention(q, k, v, mask=None):\n    scores = q @ k.transpose(-2, "
      "-1) / math.sqrt(q.size(-1))\n    return softmax(scores) @ v\n",
      "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}\n",
      "大型语言模型的混合专家架构在推理时只激活部分参数。",
      "日本語のテキストとカタカナ、ひらがなの混在。",
      "한국어 문장도 포함합니다. 토크나이저 속도를 측정합니다.\n",
      "مرحبا بالعالم، هذا نص عربي للاختبار. שלום עולם.\n",
      "नमस्ते दुनिया, यह हिंदी पाठ है।\n",
      // Emoji with a skin tone and a ZWJ family, escaped for clang-format.
      "Emoji \U0001F600 \U0001F44D\U0001F3FD "
      "\U0001F468\u200D\U0001F469\u200D\U0001F467 and caf\u00E9.   \n",
  };
  std::string text;
  size_t i = 0;
  while (text.size() < targetBytes) {
    text += samples[i % std::size(samples)];
    // Vary numbers so not every word is a cache hit.
    text += std::to_string(i * 7919 % 100000) + " ";
    ++i;
  }
  return text;
}

double seconds(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
      .count();
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: moec-bench-tokenizer TOKENIZER.json|CKPT_DIR "
                         "[TEXT_FILE]\n");
    return 2;
  }
  std::string error;
  auto start = std::chrono::steady_clock::now();
  auto tokenizer = Tokenizer::loadFile(argv[1], error);
  if (!tokenizer) {
    std::fprintf(stderr, "moec-bench-tokenizer: %s\n", error.c_str());
    return 1;
  }
  double loadSeconds = seconds(start);
  std::string text;
  if (argc == 3) {
    std::ifstream file(argv[2], std::ios::binary);
    std::stringstream buffer;
    buffer << file.rdbuf();
    text = buffer.str();
  } else {
    text = mixedText(1 << 20);
  }
  double megabytes = text.size() / 1e6;
  start = std::chrono::steady_clock::now();
  auto ids = tokenizer->encode(text);
  double cold = seconds(start);
  start = std::chrono::steady_clock::now();
  ids = tokenizer->encode(text);
  double warm = seconds(start);
  start = std::chrono::steady_clock::now();
  std::string decoded = tokenizer->decode(ids);
  double decode = seconds(start);
  std::printf("load %.2f s; %.2f MB -> %zu tokens; encode %.1f MB/s (cold), "
              "%.1f MB/s (warm); decode %.1f MB/s\n",
              loadSeconds, megabytes, ids.size(), megabytes / cold,
              megabytes / warm, decoded.size() / 1e6 / decode);
  return 0;
}
