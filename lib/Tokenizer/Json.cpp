//===- Json.cpp - Minimal JSON reader -------------------------------------===//

#include "Json.h"
#include "Unicode.h"

#include <cstdlib>

namespace moec::tokenizer::json {

const Value *Value::get(std::string_view key) const {
  if (kind != Kind::Object)
    return nullptr;
  for (const auto &[name, value] : object)
    if (name == key)
      return &value;
  return nullptr;
}

namespace {

class Parser {
public:
  explicit Parser(std::string_view text) : text(text) {}

  bool parseDocument(Value &result, std::string &error) {
    skipSpace();
    if (!parseValue(result, 0)) {
      error = message + " at byte " + std::to_string(pos);
      return false;
    }
    skipSpace();
    if (pos != text.size()) {
      error = "trailing characters after the JSON value at byte " +
              std::to_string(pos);
      return false;
    }
    return true;
  }

private:
  std::string_view text;
  size_t pos = 0;
  std::string message;

  bool fail(const char *why) {
    message = why;
    return false;
  }
  void skipSpace() {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n' ||
                                 text[pos] == '\r' || text[pos] == '\t'))
      ++pos;
  }
  bool consume(std::string_view word) {
    if (text.substr(pos, word.size()) != word)
      return false;
    pos += word.size();
    return true;
  }

  bool parseValue(Value &out, int depth) {
    // Bounded nesting so a hostile file cannot exhaust the stack.
    if (depth > 256)
      return fail("JSON nested too deeply");
    if (pos >= text.size())
      return fail("unexpected end of JSON");
    char c = text[pos];
    if (c == '{')
      return parseObject(out, depth);
    if (c == '[')
      return parseArray(out, depth);
    if (c == '"') {
      out.kind = Value::Kind::String;
      return parseString(out.string);
    }
    if (consume("null")) {
      out.kind = Value::Kind::Null;
      return true;
    }
    if (consume("true")) {
      out.kind = Value::Kind::Bool;
      out.boolean = true;
      return true;
    }
    if (consume("false")) {
      out.kind = Value::Kind::Bool;
      out.boolean = false;
      return true;
    }
    if (c == '-' || (c >= '0' && c <= '9'))
      return parseNumber(out);
    return fail("unexpected character in JSON");
  }

  bool parseNumber(Value &out) {
    size_t start = pos;
    while (pos < text.size() &&
           std::string_view("+-0123456789.eE").find(text[pos]) !=
               std::string_view::npos)
      ++pos;
    std::string digits(text.substr(start, pos - start));
    char *end = nullptr;
    out.kind = Value::Kind::Number;
    out.number = std::strtod(digits.c_str(), &end);
    if (end != digits.c_str() + digits.size())
      return fail("malformed JSON number");
    return true;
  }

  bool parseHex4(char32_t &cp) {
    if (pos + 4 > text.size())
      return fail("truncated \\u escape");
    cp = 0;
    for (int i = 0; i < 4; ++i) {
      char h = text[pos++];
      cp <<= 4;
      if (h >= '0' && h <= '9')
        cp |= h - '0';
      else if (h >= 'a' && h <= 'f')
        cp |= h - 'a' + 10;
      else if (h >= 'A' && h <= 'F')
        cp |= h - 'A' + 10;
      else
        return fail("bad hex digit in \\u escape");
    }
    return true;
  }

  bool parseString(std::string &out) {
    ++pos; // opening quote
    while (true) {
      size_t run = pos;
      while (pos < text.size() && text[pos] != '"' && text[pos] != '\\')
        ++pos;
      out.append(text.substr(run, pos - run));
      if (pos >= text.size())
        return fail("unterminated JSON string");
      if (text[pos] == '"') {
        ++pos;
        return true;
      }
      ++pos; // backslash
      if (pos >= text.size())
        return fail("unterminated escape");
      char e = text[pos++];
      switch (e) {
      case '"':
      case '\\':
      case '/':
        out += e;
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'u': {
        char32_t cp;
        if (!parseHex4(cp))
          return false;
        // A surrogate pair encodes one code point above the BMP.
        if (cp >= 0xD800 && cp <= 0xDBFF && consume("\\u")) {
          char32_t low;
          if (!parseHex4(low))
            return false;
          if (low >= 0xDC00 && low <= 0xDFFF)
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          else
            return fail("unpaired surrogate in \\u escape");
        }
        unicode::appendUtf8(out, cp);
        break;
      }
      default:
        return fail("unknown escape in JSON string");
      }
    }
  }

  bool parseArray(Value &out, int depth) {
    ++pos;
    out.kind = Value::Kind::Array;
    skipSpace();
    if (consume("]"))
      return true;
    while (true) {
      skipSpace();
      out.array.emplace_back();
      if (!parseValue(out.array.back(), depth + 1))
        return false;
      skipSpace();
      if (consume("]"))
        return true;
      if (!consume(","))
        return fail("expected ',' or ']' in JSON array");
    }
  }

  bool parseObject(Value &out, int depth) {
    ++pos;
    out.kind = Value::Kind::Object;
    skipSpace();
    if (consume("}"))
      return true;
    while (true) {
      skipSpace();
      if (pos >= text.size() || text[pos] != '"')
        return fail("expected a string key in JSON object");
      out.object.emplace_back();
      if (!parseString(out.object.back().first))
        return false;
      skipSpace();
      if (!consume(":"))
        return fail("expected ':' in JSON object");
      skipSpace();
      if (!parseValue(out.object.back().second, depth + 1))
        return false;
      skipSpace();
      if (consume("}"))
        return true;
      if (!consume(","))
        return fail("expected ',' or '}' in JSON object");
    }
  }
};

} // namespace

bool parse(std::string_view text, Value &result, std::string &error) {
  result = Value();
  return Parser(text).parseDocument(result, error);
}

} // namespace moec::tokenizer::json
