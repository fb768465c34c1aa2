//===- Json.h - Minimal JSON reader for tokenizer.json ----------*- C++ -*-===//
//
// A small DOM JSON reader (standard library only) so the tokenizer needs no
// LLVM or third-party library and the runtime can link it.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_LIB_TOKENIZER_JSON_H
#define MOEC_LIB_TOKENIZER_JSON_H

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moec::tokenizer::json {

struct Value {
  enum class Kind { Null, Bool, Number, String, Array, Object };
  Kind kind = Kind::Null;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Value> array;
  // Objects keep file order; lookups are linear, objects here are small
  // except the vocabulary, which callers iterate.
  std::vector<std::pair<std::string, Value>> object;

  bool isNull() const { return kind == Kind::Null; }
  bool isString() const { return kind == Kind::String; }
  bool isObject() const { return kind == Kind::Object; }
  bool isArray() const { return kind == Kind::Array; }
  bool isNumber() const { return kind == Kind::Number; }
  bool isBool() const { return kind == Kind::Bool; }
  /// The member named `key`, or nullptr (also when this is no object).
  const Value *get(std::string_view key) const;
};

/// Parses `text`; on failure returns false and sets `error` to a one-line
/// message with the byte offset.
bool parse(std::string_view text, Value &result, std::string &error);

} // namespace moec::tokenizer::json

#endif // MOEC_LIB_TOKENIZER_JSON_H
