//===- RuntimeTest.cpp - runtime C API basics -----------------------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "moec/runtime.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

TEST(Runtime, VersionIsSemver) {
  std::string version = moec_runtime_version();
  EXPECT_TRUE(std::regex_match(version, std::regex(R"(\d+\.\d+\.\d+)")))
      << version;
}

TEST(Runtime, EveryStatusHasADistinctName) {
  std::set<std::string> names;
  for (int status = MOEC_OK; status <= MOEC_DEVICE_ERROR; ++status)
    names.insert(moec_status_string(static_cast<moec_status>(status)));
  EXPECT_EQ(names.size(), static_cast<size_t>(MOEC_DEVICE_ERROR + 1));
  EXPECT_STREQ(moec_status_string(MOEC_OK), "ok");
  EXPECT_STREQ(moec_status_string(static_cast<moec_status>(1234)),
               "unknown status");
}
