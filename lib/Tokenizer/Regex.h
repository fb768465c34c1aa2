//===- Regex.h - The regex subset of tokenizer.json pre-tokenizers -*- C++ -*-//
//
// A backtracking matcher with Oniguruma's leftmost-first semantics for the
// subset the byte-level BPE pre-tokenizers use: literals, classes with
// ranges, \p{L} \p{M} \p{N} \p{P} \p{S} (and long names), \s \S \d \w,
// alternation, (?:...), (?i:...), (?!...), (?=...), and the greedy
// quantifiers ? * + {m} {m,} {m,n}. Works on code points.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TOKENIZER_REGEX_H
#define MOEC_LIB_TOKENIZER_REGEX_H

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moec::tokenizer {

class Regex {
public:
  /// Compiles `pattern` (UTF-8); on failure returns null and sets `error`.
  static std::unique_ptr<Regex> compile(std::string_view pattern,
                                        std::string &error);
  ~Regex();

  /// All non-overlapping leftmost-first matches in `text`, as [begin, end)
  /// code point indices, scanning left to right (like find_iter).
  std::vector<std::pair<size_t, size_t>>
  findAll(const std::vector<char32_t> &text) const;

  struct Program;

private:
  explicit Regex(std::unique_ptr<Program> program);
  std::unique_ptr<Program> program;
};

} // namespace moec::tokenizer

#endif // MOEC_LIB_TOKENIZER_REGEX_H
