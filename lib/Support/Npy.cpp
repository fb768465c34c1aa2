//===- Npy.cpp - NumPy .npy reader ----------------------------------------===//
//
// Part of moec. The format: magic "\x93NUMPY", major and minor version
// bytes, a little-endian header length (u16 for v1, u32 for v2/v3), a Python
// dict literal {'descr': ..., 'fortran_order': ..., 'shape': (...), } padded
// with spaces and ended by '\n', then the raw elements.
//
//===----------------------------------------------------------------------===//

#include "moec/Support/Npy.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Endian.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/MemoryBuffer.h"

#include <optional>

using namespace llvm;

namespace moec {

StringRef npyDTypeName(NpyDType dtype) {
  switch (dtype) {
  case NpyDType::F32:
    return "<f4";
  case NpyDType::I64:
    return "<i8";
  case NpyDType::I32:
    return "<i4";
  }
  llvm_unreachable("unknown NpyDType");
}

int64_t NpyArray::numElements() const {
  int64_t count = 1;
  for (int64_t dim : shape)
    count *= dim;
  return count;
}

namespace {

// Recursive-descent parser for the header dict. Only the literal forms that
// numpy.lib.format writes are accepted.
class HeaderParser {
public:
  HeaderParser(StringRef text, StringRef name) : text(text), name(name) {}

  Error parse(NpyArray &array);

private:
  Error fail(const Twine &what) {
    return createStringError(formatv("{0}: malformed .npy header at column "
                                     "{1}: {2}",
                                     name, pos + 1, what.str())
                                 .str());
  }
  void skipSpace() {
    while (pos < text.size() && isSpace(text[pos]))
      ++pos;
  }
  bool consume(char c) {
    skipSpace();
    if (pos < text.size() && text[pos] == c) {
      ++pos;
      return true;
    }
    return false;
  }
  Expected<std::string> parseString();
  Expected<bool> parseBool();
  Error parseShape(SmallVectorImpl<int64_t> &shape);

  StringRef text;
  StringRef name;
  size_t pos = 0;
};

Expected<std::string> HeaderParser::parseString() {
  skipSpace();
  if (pos >= text.size() || (text[pos] != '\'' && text[pos] != '"'))
    return fail("expected a quoted string");
  char quote = text[pos++];
  size_t end = text.find(quote, pos);
  if (end == StringRef::npos)
    return fail("unterminated string");
  std::string value = text.slice(pos, end).str();
  pos = end + 1;
  return value;
}

Expected<bool> HeaderParser::parseBool() {
  skipSpace();
  StringRef rest = text.drop_front(pos);
  if (rest.starts_with("True")) {
    pos += 4;
    return true;
  }
  if (rest.starts_with("False")) {
    pos += 5;
    return false;
  }
  return fail("expected True or False");
}

Error HeaderParser::parseShape(SmallVectorImpl<int64_t> &shape) {
  if (!consume('('))
    return fail("expected '(' to start the shape tuple");
  if (consume(')'))
    return Error::success();
  while (true) {
    skipSpace();
    size_t start = pos;
    while (pos < text.size() && isDigit(text[pos]))
      ++pos;
    int64_t dim;
    if (start == pos || text.slice(start, pos).getAsInteger(10, dim))
      return fail("expected a non-negative integer dimension");
    shape.push_back(dim);
    bool comma = consume(',');
    if (consume(')'))
      break;
    if (!comma)
      return fail("expected ',' or ')' in the shape tuple");
  }
  return Error::success();
}

Error HeaderParser::parse(NpyArray &array) {
  if (!consume('{'))
    return fail("expected '{'");
  std::optional<std::string> descr;
  std::optional<bool> fortranOrder;
  bool haveShape = false;
  while (!consume('}')) {
    Expected<std::string> key = parseString();
    if (!key)
      return key.takeError();
    if (!consume(':'))
      return fail("expected ':' after key '" + *key + "'");
    if (*key == "descr") {
      Expected<std::string> value = parseString();
      if (!value)
        return value.takeError();
      descr = *value;
    } else if (*key == "fortran_order") {
      Expected<bool> value = parseBool();
      if (!value)
        return value.takeError();
      fortranOrder = *value;
    } else if (*key == "shape") {
      if (Error err = parseShape(array.shape))
        return err;
      haveShape = true;
    } else {
      return fail("unexpected key '" + *key + "'");
    }
    if (!consume(',')) {
      if (!consume('}'))
        return fail("expected ',' or '}'");
      break;
    }
  }
  skipSpace();
  if (pos != text.size())
    return fail("unexpected text after the header dict");
  if (!descr || !fortranOrder || !haveShape)
    return createStringError(
        name + ": .npy header lacks one of 'descr', 'fortran_order', 'shape'");
  if (*fortranOrder)
    return createStringError(
        name + ": Fortran-order arrays are not supported (write the array "
               "with numpy.ascontiguousarray first)");
  if (*descr == "<f4")
    array.dtype = NpyDType::F32;
  else if (*descr == "<i8")
    array.dtype = NpyDType::I64;
  else if (*descr == "<i4")
    array.dtype = NpyDType::I32;
  else
    return createStringError(name + ": dtype '" + *descr +
                             "' is not supported (expected '<f4', '<i8' or "
                             "'<i4')");
  return Error::success();
}

std::string shapeString(ArrayRef<int64_t> shape) {
  std::string text = "(";
  for (auto [i, dim] : enumerate(shape))
    text += (i ? ", " : "") + std::to_string(dim);
  return text + (shape.size() == 1 ? ",)" : ")");
}

template <typename T> void decodeElements(StringRef data, std::vector<T> &out) {
  out.resize(data.size() / sizeof(T));
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = support::endian::read<T, llvm::endianness::little>(data.data() +
                                                                i * sizeof(T));
}

} // namespace

Expected<NpyArray> parseNpy(StringRef contents, StringRef name) {
  static constexpr StringLiteral magic("\x93NUMPY");
  if (!contents.starts_with(magic))
    return createStringError(name + ": not a .npy file (bad magic)");
  if (contents.size() < magic.size() + 4)
    return createStringError(name + ": truncated .npy preamble");
  uint8_t major = contents[6];
  uint8_t minor = contents[7];
  size_t headerStart;
  uint64_t headerLength;
  if (major == 1) {
    headerLength = support::endian::read16le(contents.data() + 8);
    headerStart = 10;
  } else if (major == 2 || major == 3) {
    if (contents.size() < 12)
      return createStringError(name + ": truncated .npy preamble");
    headerLength = support::endian::read32le(contents.data() + 8);
    headerStart = 12;
  } else {
    return createStringError(
        formatv("{0}: unsupported .npy format version {1}.{2}", name, major,
                minor)
            .str());
  }
  if (headerStart + headerLength > contents.size())
    return createStringError(
        formatv("{0}: truncated .npy header ({1} bytes announced, {2} "
                "present)",
                name, headerLength, contents.size() - headerStart)
            .str());
  StringRef header = contents.substr(headerStart, headerLength);
  if (!header.ends_with("\n"))
    return createStringError(name + ": malformed .npy header (no terminating "
                                    "newline)");

  NpyArray array;
  HeaderParser parser(header, name);
  if (Error err = parser.parse(array))
    return err;

  // Checked multiplication: a hostile shape must not wrap around.
  uint64_t elementSize = array.dtype == NpyDType::I64 ? 8 : 4;
  uint64_t expected = elementSize;
  for (int64_t dim : array.shape)
    if (__builtin_mul_overflow(expected, static_cast<uint64_t>(dim), &expected))
      return createStringError(name + ": shape " + shapeString(array.shape) +
                               " is too large");
  StringRef data = contents.drop_front(headerStart + headerLength);
  if (data.size() != expected)
    return createStringError(
        formatv("{0}: data is {1} bytes, expected {2} for shape {3} of {4}",
                name, data.size(), expected, shapeString(array.shape),
                npyDTypeName(array.dtype))
            .str());
  switch (array.dtype) {
  case NpyDType::F32:
    decodeElements(data, array.f32);
    break;
  case NpyDType::I64:
    decodeElements(data, array.i64);
    break;
  case NpyDType::I32:
    decodeElements(data, array.i32);
    break;
  }
  return array;
}

Expected<NpyArray> readNpy(StringRef path) {
  ErrorOr<std::unique_ptr<MemoryBuffer>> buffer =
      MemoryBuffer::getFile(path, /*IsText=*/false,
                            /*RequiresNullTerminator=*/false);
  if (!buffer)
    return createStringError(buffer.getError(),
                             path + ": " + buffer.getError().message());
  return parseNpy((*buffer)->getBuffer(), path);
}

} // namespace moec
