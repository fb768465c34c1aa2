//===- Tokenizer.h - HuggingFace byte-level BPE tokenizer -------*- C++ -*-===//
//
// Reads a HuggingFace tokenizer.json (byte-level BPE: DeepSeek-V3/R1,
// Qwen2/Qwen3, Llama 3, GPT-2 style) and encodes/decodes exactly like the
// `tokenizers` library. Standard library only, so the compiler and the
// runtime can both link it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TOKENIZER_TOKENIZER_H
#define MOEC_TOKENIZER_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace moec::tokenizer {

using TokenId = int32_t;

class Tokenizer {
public:
  /// Loads `path`: a tokenizer.json, or a checkpoint directory holding one.
  /// A tokenizer_config.json beside it supplies add_bos_token/add_eos_token.
  /// On failure returns null and sets `error` to one line naming the file
  /// and the field.
  static std::unique_ptr<Tokenizer> loadFile(const std::string &path,
                                             std::string &error);

  /// Loads from the text of tokenizer.json (and, optionally, of
  /// tokenizer_config.json); `sourceName` prefixes error messages.
  static std::unique_ptr<Tokenizer>
  loadFromJson(std::string_view tokenizerJson, std::string_view sourceName,
               std::string &error, std::string_view configJson = {});

  ~Tokenizer();

  /// Token ids of `text` (UTF-8; ill-formed bytes still encode, byte-level).
  /// Added tokens are matched before pre-tokenization. `addSpecialTokens`
  /// applies the post-processor's template (TemplateProcessing) or, when
  /// tokenizer_config.json asks for it, the bos/eos tokens.
  std::vector<TokenId> encode(std::string_view text,
                              bool addSpecialTokens = false) const;

  /// The text of `ids`; ill-formed UTF-8 becomes U+FFFD like `tokenizers`.
  /// Unknown ids are skipped.
  std::string decode(const std::vector<TokenId> &ids,
                     bool skipSpecialTokens = false) const;

  /// The raw bytes a token stands for (may be part of a UTF-8 sequence).
  std::string_view tokenBytes(TokenId id) const;

  /// The token's string as written in tokenizer.json, "" if unknown.
  std::string_view tokenString(TokenId id) const;
  std::optional<TokenId> tokenToId(std::string_view token) const;

  bool isSpecial(TokenId id) const;
  /// One past the largest id (vocabulary plus added tokens).
  size_t vocabSize() const;
  std::optional<TokenId> bosId() const;
  std::optional<TokenId> eosId() const;

  struct Impl;

private:
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl;
};

/// Turns generated ids into text as they come, holding back the bytes of a
/// UTF-8 sequence split across tokens until it completes.
class StreamingDecoder {
public:
  explicit StreamingDecoder(const Tokenizer &tokenizer,
                            bool skipSpecialTokens = false)
      : tokenizer(tokenizer), skipSpecialTokens(skipSpecialTokens) {}

  /// The text that `id` completes (possibly empty).
  std::string push(TokenId id);
  /// Whatever is held back, with U+FFFD for an unfinished sequence.
  std::string flush();

private:
  const Tokenizer &tokenizer;
  bool skipSpecialTokens;
  std::string pending;
};

} // namespace moec::tokenizer

#endif // MOEC_TOKENIZER_TOKENIZER_H
