#!/usr/bin/env bash
# Regenerates docs/reference/ from the ODS definitions (dialect ops, passes).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
build_moec
mkdir -p "$MOEC_ROOT/docs/reference"
cp "$MOEC_BUILD/docs/moe/MoeDialect.md" "$MOEC_BUILD/docs/moe/MoePasses.md" \
  "$MOEC_ROOT/docs/reference/"
log "updated docs/reference/"
