# Shared by scripts/demo.sh and scripts/test.sh: install what is missing,
# configure once, build incrementally. Source it; do not run it.

MOEC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MOEC_BUILD="${MOEC_BUILD:-$MOEC_ROOT/build}"
LLVM_PREFIX=/usr/lib/llvm-22

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Debian packages moec builds and tests with (Debian 12 + bookworm-security
# carry LLVM/MLIR 22).
MOEC_PACKAGES=(
  cmake ninja-build g++ ccache python3 pkg-config
  llvm-22-dev llvm-22-tools libmlir-22-dev mlir-22-tools
  libgtest-dev flatbuffers-compiler libflatbuffers-dev
  clang-22 libclang-rt-22-dev lld-22
)

# Installs the missing packages (needs root, or sudo). Fast when nothing is
# missing: one dpkg query, no apt-get update.
ensure_deps() {
  local missing=()
  local pkg
  for pkg in "${MOEC_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" ||
      missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    return 0
  fi
  log "installing: ${missing[*]}"
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root or sudo to install: ${missing[*]}"
    sudo=sudo
  fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q || die "apt-get update failed"
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"
  [ -f "$LLVM_PREFIX/lib/cmake/mlir/MLIRConfig.cmake" ] ||
    die "MLIR 22 is not at $LLVM_PREFIX after installing libmlir-22-dev"
}

# Configures build/ once (Ninja, Release, pinned LLVM/MLIR 22) and builds.
build_moec() {
  if [ ! -f "$MOEC_BUILD/build.ninja" ]; then
    log "configuring $MOEC_BUILD"
    cmake -S "$MOEC_ROOT" -B "$MOEC_BUILD" -G Ninja \
      -DCMAKE_BUILD_TYPE=Release \
      -DMLIR_DIR="$LLVM_PREFIX/lib/cmake/mlir" \
      -DLLVM_DIR="$LLVM_PREFIX/lib/cmake/llvm" \
      -DLLVM_EXTERNAL_LIT="$LLVM_PREFIX/bin/lit" >/dev/null ||
      die "cmake configure failed"
  fi
  log "building"
  ninja -C "$MOEC_BUILD" ${MOEC_JOBS:+-j "$MOEC_JOBS"} ||
    die "build failed"
}
