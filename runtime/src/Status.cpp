//===- Status.cpp - runtime error helpers ---------------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "Status.h"

#include <cstdarg>
#include <cstdio>

namespace moec::runtime {

static std::string formatArgs(const char *format, va_list args) {
  va_list copy;
  va_copy(copy, args);
  int length = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string text(length > 0 ? static_cast<size_t>(length) : 0, '\0');
  if (length > 0)
    std::vsnprintf(text.data(), text.size() + 1, format, args);
  return text;
}

std::string formatString(const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::string text = formatArgs(format, args);
  va_end(args);
  return text;
}

Status makeStatus(moec_status code, const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::string text = formatArgs(format, args);
  va_end(args);
  return Status(code, std::move(text));
}

Status invalidArtifact(const char *format, ...) {
  va_list args;
  va_start(args, format);
  std::string text = formatArgs(format, args);
  va_end(args);
  return Status(MOEC_INVALID_ARTIFACT, std::move(text));
}

} // namespace moec::runtime
