#!/usr/bin/env bash
# Installs what is missing, builds moec, and runs it on the tiny DeepSeek-V3
# checkpoint shipped in test/fixtures: imports it into the `moe` dialect and
# prints the IR, then shows the IR after --moe-fuse-norms.
# Usage: ./scripts/demo.sh [CHECKPOINT_DIR]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ckpt="${1:-$MOEC_ROOT/test/fixtures/deepseek_v3}"
ensure_deps
build_moec

log "moec import $ckpt"
"$MOEC_BUILD/bin/moec" import "$ckpt" -o "$MOEC_BUILD/demo.mlir"
cat "$MOEC_BUILD/demo.mlir"

log "moec-opt --moe-fuse-norms (residual add + RMSNorm -> moe.add_rms_norm)"
"$MOEC_BUILD/bin/moec-opt" --moe-fuse-norms "$MOEC_BUILD/demo.mlir" |
  grep -m 3 -E 'moe.add_rms_norm' || true
log "done: the IR above is what later passes fuse and lower"
