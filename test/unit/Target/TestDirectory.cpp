//===- TestDirectory.cpp - a scratch directory per test -------------------===//
//
// Part of moec (test).
//
//===----------------------------------------------------------------------===//

#include "TestDirectory.h"

#include <fstream>
#include <iterator>

namespace moec::test {

std::vector<char> readBytes(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<char>(std::istreambuf_iterator<char>(in),
                           std::istreambuf_iterator<char>());
}

void writeBytes(const std::string &path, const std::vector<char> &bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

} // namespace moec::test
