//===- CpuExecutable.cpp - kernels of a CPU shared object -----------------===//
//
// Part of moec.
//
//===----------------------------------------------------------------------===//

#include "CpuExecutable.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <unistd.h>

namespace moec::runtime {

namespace {

bool writeAll(int fd, const uint8_t *data, uint64_t size) {
  while (size > 0) {
    ssize_t written = ::write(fd, data, size);
    if (written < 0 && errno == EINTR)
      continue;
    if (written <= 0)
      return false;
    data += written;
    size -= static_cast<uint64_t>(written);
  }
  return true;
}

/// Whether this machine has the x86 feature `name` (LLVM spelling, without
/// the '+'). Features the runtime does not know are assumed present: the
/// check exists to turn the common mismatch (an AVX-512 artifact on an AVX2
/// machine) into an error instead of SIGILL.
bool hostHasFeature(std::string_view name) {
#if defined(__x86_64__)
  __builtin_cpu_init();
  struct Known {
    std::string_view name;
    bool present;
  };
  const Known known[] = {
      {"sse4.1", bool(__builtin_cpu_supports("sse4.1"))},
      {"sse4.2", bool(__builtin_cpu_supports("sse4.2"))},
      {"avx", bool(__builtin_cpu_supports("avx"))},
      {"avx2", bool(__builtin_cpu_supports("avx2"))},
      {"fma", bool(__builtin_cpu_supports("fma"))},
      {"bmi2", bool(__builtin_cpu_supports("bmi2"))},
      {"avx512f", bool(__builtin_cpu_supports("avx512f"))},
      {"avx512bw", bool(__builtin_cpu_supports("avx512bw"))},
      {"avx512dq", bool(__builtin_cpu_supports("avx512dq"))},
      {"avx512vl", bool(__builtin_cpu_supports("avx512vl"))},
      {"avx512vnni", bool(__builtin_cpu_supports("avx512vnni"))},
      {"avx512bf16", bool(__builtin_cpu_supports("avx512bf16"))},
  };
  for (const Known &feature : known)
    if (feature.name == name)
      return feature.present;
#endif
  return true;
}

/// The first '+feature' of the comma-separated `features` this machine
/// lacks, or "".
std::string missingFeature(std::string_view features) {
  while (!features.empty()) {
    size_t comma = features.find(',');
    std::string_view feature = features.substr(0, comma);
    if (feature.size() > 1 && feature[0] == '+' &&
        !hostHasFeature(feature.substr(1)))
      return std::string(feature.substr(1));
    if (comma == std::string_view::npos)
      break;
    features.remove_prefix(comma + 1);
  }
  return "";
}

} // namespace

Status CpuExecutable::load(const ArtifactFile &file, uint32_t index,
                           std::unique_ptr<CpuExecutable> &out) {
  out.reset();
  const fb::Executable &executable = *file.artifact().executables()->Get(index);
  std::string_view target = executable.target()->string_view();
  std::string_view format = executable.format()->string_view();
  if (target != "cpu")
    return makeStatus(MOEC_UNSUPPORTED,
                      "executables[%u]: target '%s' is not supported by this "
                      "runtime (it runs 'cpu')",
                      index, executable.target()->c_str());
  if (format != "elf-shared-object")
    return makeStatus(MOEC_UNSUPPORTED,
                      "executables[%u]: format '%s' is not supported (the cpu "
                      "target loads 'elf-shared-object')",
                      index, executable.format()->c_str());
  if (executable.cpu_features()) {
    std::string missing =
        missingFeature(executable.cpu_features()->string_view());
    if (!missing.empty())
      return makeStatus(MOEC_UNSUPPORTED,
                        "executables[%u]: needs CPU feature '%s', which this "
                        "machine lacks (recompile with --cpu=)",
                        index, missing.c_str());
  }

  std::unique_ptr<CpuExecutable> result(new CpuExecutable());
  const uint8_t *blob = file.blobData(executable);
  uint64_t blobSize = executable.blob_size();

  // Preferred: an anonymous in-memory file, never visible on disk.
  int fd = ::memfd_create("moec-kernels", MFD_CLOEXEC);
  if (fd >= 0) {
    std::string path = "/proc/self/fd/" + std::to_string(fd);
    // dlopen matches already-loaded objects by name: a library loaded under
    // this name that never unloaded would be returned instead of ours.
    void *stale = ::dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
    if (stale) {
      ::dlclose(stale);
    } else if (writeAll(fd, blob, blobSize) &&
               ::access(path.c_str(), R_OK) == 0) {
      result->handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (!result->handle) {
        const char *why = ::dlerror();
        ::close(fd);
        return invalidArtifact("executables[%u]: the shared object does not "
                               "load: %s",
                               index, why ? why : "unknown dlopen error");
      }
      result->memfd = fd;
    }
    if (!result->handle)
      ::close(fd);
  }

  // Fallback: a temporary file, unlinked as soon as it is loaded.
  if (!result->handle) {
    const char *tmpdir = std::getenv("TMPDIR");
    std::string path = std::string(tmpdir && *tmpdir ? tmpdir : "/tmp") +
                       "/moec-kernels-XXXXXX";
    int tmp = ::mkostemp(path.data(), O_CLOEXEC);
    if (tmp < 0)
      return makeStatus(MOEC_IO_ERROR,
                        "executables[%u]: cannot create a temporary file for "
                        "the kernels: %s",
                        index, std::strerror(errno));
    bool written = writeAll(tmp, blob, blobSize);
    ::close(tmp);
    if (written)
      result->handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    const char *why = written ? ::dlerror() : "write failed";
    ::unlink(path.c_str());
    if (!result->handle)
      return invalidArtifact("executables[%u]: the shared object does not "
                             "load: %s",
                             index, why ? why : "unknown dlopen error");
  }

  const auto &names = *executable.kernel_names();
  result->kernels.reserve(names.size());
  for (uint32_t k = 0; k < names.size(); ++k) {
    ::dlerror();
    void *symbol = ::dlsym(result->handle, names.Get(k)->c_str());
    if (!symbol)
      return invalidArtifact("executables[%u]: kernel '%s' (kernel_names[%u]) "
                             "is not defined by the shared object",
                             index, names.Get(k)->c_str(), k);
    result->kernels.push_back(reinterpret_cast<CpuKernel>(symbol));
  }
  out = std::move(result);
  return Status();
}

CpuExecutable::~CpuExecutable() {
  if (handle)
    ::dlclose(handle);
  if (memfd >= 0)
    ::close(memfd);
}

} // namespace moec::runtime
