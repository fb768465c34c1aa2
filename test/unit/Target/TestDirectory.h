//===- TestDirectory.h - a scratch directory per test -----------*- C++ -*-===//
//
// Part of moec (test).
//
//===----------------------------------------------------------------------===//

#ifndef MOEC_TEST_TESTDIRECTORY_H
#define MOEC_TEST_TESTDIRECTORY_H

#include "llvm/ADT/SmallString.h"
#include "llvm/Support/Error.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Path.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace moec::test {

/// A fresh directory, removed with everything in it at the end of the test.
class TestDirectory {
public:
  TestDirectory() {
    EXPECT_FALSE(llvm::sys::fs::createUniqueDirectory("moec-test", root));
  }
  ~TestDirectory() { llvm::sys::fs::remove_directories(root); }

  std::string path(llvm::StringRef name) const {
    llvm::SmallString<256> result(root);
    llvm::sys::path::append(result, name);
    return std::string(result);
  }

  /// Names of the files in the directory, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> names;
    std::error_code error;
    for (llvm::sys::fs::directory_iterator it(root, error), end;
         !error && it != end; it.increment(error))
      names.push_back(llvm::sys::path::filename(it->path()).str());
    std::sort(names.begin(), names.end());
    return names;
  }

private:
  llvm::SmallString<256> root;
};

/// The message of `error` ("" for success), consuming it.
inline std::string messageOf(llvm::Error error) {
  return error ? llvm::toString(std::move(error)) : std::string();
}
/// The message of a failed `value` ("" when it holds a value, which stays).
template <typename T> std::string messageOf(llvm::Expected<T> &value) {
  return value ? std::string() : llvm::toString(value.takeError());
}

/// The whole file at `path` (empty when it cannot be read).
std::vector<char> readBytes(const std::string &path);
/// Replaces the file at `path` with `bytes`.
void writeBytes(const std::string &path, const std::vector<char> &bytes);

} // namespace moec::test

#endif // MOEC_TEST_TESTDIRECTORY_H
