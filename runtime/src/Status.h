//===- Status.h - runtime errors: a status code and one line ----*- C++ -*-===//
//
// Part of moec. Every fallible runtime function returns a Status: the
// moec_status code the C API hands out plus a one-line message naming the
// file and field at fault. The C API stores the message for
// moec_last_error(); nothing in the runtime aborts on bad input.
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_RUNTIME_STATUS_H
#define MOEC_RUNTIME_STATUS_H

#include "moec/runtime.h"

#include <string>
#include <utility>

namespace moec::runtime {

class [[nodiscard]] Status {
public:
  /// Success.
  Status() = default;
  Status(moec_status code, std::string message)
      : statusCode(code), text(std::move(message)) {}

  bool ok() const { return statusCode == MOEC_OK; }
  moec_status code() const { return statusCode; }
  const std::string &message() const { return text; }

  /// Prefixes the message with `context + ": "` (e.g. the artifact path).
  Status &prefix(const std::string &context) {
    if (!ok())
      text = context + ": " + text;
    return *this;
  }

private:
  moec_status statusCode = MOEC_OK;
  std::string text;
};

/// printf-style formatting into a std::string (the runtime has no LLVM
/// formatv and no <format> in g++ 12).
std::string formatString(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

/// A failure with a printf-formatted message.
Status makeStatus(moec_status code, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/// Shorthand for makeStatus(MOEC_INVALID_ARTIFACT, ...).
Status invalidArtifact(const char *format, ...)
    __attribute__((format(printf, 1, 2)));

} // namespace moec::runtime

#define MOEC_RETURN_IF_ERROR(expr)                                             \
  do {                                                                         \
    ::moec::runtime::Status moecStatus_ = (expr);                              \
    if (!moecStatus_.ok())                                                     \
      return moecStatus_;                                                      \
  } while (false)

#endif // MOEC_RUNTIME_STATUS_H
