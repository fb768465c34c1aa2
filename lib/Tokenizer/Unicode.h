//===- Unicode.h - Unicode data and UTF-8 for the tokenizer -----*- C++ -*-===//
//
// General categories, White_Space, NFC and UTF-8 coding, standard library
// only. Tables come from UnicodeTables.inc (generated, see its header).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TOKENIZER_UNICODE_H
#define MOEC_LIB_TOKENIZER_UNICODE_H

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moec::tokenizer::unicode {

/// Major general categories as bits, so a class like [\p{L}\p{N}] is a mask.
enum CategoryBit : uint8_t {
  Letter = 1,      // \p{L}
  Mark = 2,        // \p{M}
  Number = 4,      // \p{N}
  Punctuation = 8, // \p{P}
  Symbol = 16,     // \p{S}
};

/// The major category of `cp` as one CategoryBit, 0 for the others (Z, C).
uint8_t category(char32_t cp);

/// The Unicode White_Space property, which is what \s matches in Oniguruma
/// (the regex engine HuggingFace tokenizers use).
bool isWhiteSpace(char32_t cp);

/// Decodes UTF-8 into code points and the byte offset where each starts
/// (plus one final offset = text.size()). Ill-formed bytes become U+FFFD,
/// one per maximal ill-formed subpart, keeping their original bytes.
void decodeUtf8(std::string_view text, std::vector<char32_t> &codePoints,
                std::vector<uint32_t> &byteOffsets);

void appendUtf8(std::string &out, char32_t cp);

/// Replaces ill-formed UTF-8 by U+FFFD (like Rust's from_utf8_lossy).
std::string toValidUtf8(std::string_view bytes);

/// Length of the longest suffix of `bytes` that is an incomplete but so far
/// well-formed UTF-8 sequence (0..3): what a streaming decoder holds back.
size_t incompleteUtf8Suffix(std::string_view bytes);

/// Unicode Normalization Form C.
std::string toNfc(std::string_view text);

} // namespace moec::tokenizer::unicode

#endif // MOEC_LIB_TOKENIZER_UNICODE_H
