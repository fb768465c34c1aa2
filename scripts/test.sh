#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the lit suite
# (dialect, passes, tools, import) and the GoogleTest unit tests via ctest.
# Exit status is non-zero when anything fails.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

ensure_deps
build_moec

log "lit tests"
"$LLVM_PREFIX/bin/lit" -s "$MOEC_BUILD/test" 2>&1 | tee "$MOEC_BUILD/lit.log"
lit_status=${PIPESTATUS[0]}

log "unit tests (ctest)"
(cd "$MOEC_BUILD" && ctest --output-on-failure -LE lit 2>&1) |
  tee "$MOEC_BUILD/ctest.log" | grep -vE '^ +Start|^ *[0-9]+/[0-9]+ Test +#[0-9]+: .* Passed'
ctest_status=${PIPESTATUS[0]}

lit_line=$(grep -E '^ *(Passed|Failed|Unsupported|Expectedly Failed|Unresolved)' \
  "$MOEC_BUILD/lit.log" | tr -s ' ' | paste -sd, -)
ctest_line=$(grep -E 'tests passed' "$MOEC_BUILD/ctest.log" | tail -1)

echo
echo "================ moec test summary ================"
printf 'lit:   %s  [%s]\n' "${lit_line:-no result}" \
  "$([ "$lit_status" -eq 0 ] && echo PASS || echo FAIL)"
printf 'ctest: %s  [%s]\n' "${ctest_line:-no result}" \
  "$([ "$ctest_status" -eq 0 ] && echo PASS || echo FAIL)"
if [ "$lit_status" -ne 0 ] || [ "$ctest_status" -ne 0 ]; then
  echo "RESULT: FAIL"
  exit 1
fi
echo "RESULT: PASS"
