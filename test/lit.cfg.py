# -*- Python -*-
# lit configuration for moec: .mlir tests of the dialect and passes, .test
# tests of the tools. Run with `ninja -C build check-moec`.

import os

import lit.formats
from lit.llvm import llvm_config

config.name = "MOEC"
config.test_format = lit.formats.ShTest(not llvm_config.use_lit_shell)
config.suffixes = [".mlir", ".test"]
config.excludes = ["CMakeLists.txt", "lit.cfg.py", "lit.site.cfg.py", "unit", "fixtures"]
config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.moec_obj_root, "test")

config.environment["FILECHECK_OPTS"] = "--enable-var-scope"
config.substitutions.append(("%moec_src_root", config.moec_src_root))
config.substitutions.append(
    ("%fixtures", os.path.join(config.moec_src_root, "test", "fixtures"))
)

llvm_config.use_default_substitutions()
llvm_config.with_environment("PATH", config.llvm_tools_dir, append_path=True)
llvm_config.add_tool_substitutions(
    ["moec-opt", "moec"], [config.moec_tools_dir]
)

# CUDA code generation needs the toolkit's libdevice (and ptxas/fatbinary for
# cubins); running CUDA artifacts needs a GPU and its driver.
cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
config.substitutions.append(("%cuda_home", cuda_home))
if os.path.exists(os.path.join(cuda_home, "nvvm", "libdevice", "libdevice.10.bc")):
    config.available_features.add("cuda-toolkit")
if os.access(os.path.join(cuda_home, "bin", "ptxas"), os.X_OK):
    config.available_features.add("ptxas")
if os.path.exists("/dev/nvidia0"):
    config.available_features.add("cuda-device")

# Artifacts that use AVX512-BF16 (bf16-pair dot products) run only where
# the host has it.
try:
    with open("/proc/cpuinfo") as cpuinfo:
        flags = next((l for l in cpuinfo if l.startswith("flags")), "").split()
    if "avx512_bf16" in flags:
        config.available_features.add("host-avx512bf16")
except OSError:
    pass
