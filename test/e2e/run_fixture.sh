#!/usr/bin/env bash
# End-to-end check of one fixture on the CPU or a CUDA GPU: compile the
# checkpoint, run the fixture's prompt with greedy decoding, compare prefill
# and generation logits with transformers' (moec-check-fixture prints max
# |dlogit|).
# Usage: run_fixture.sh BIN_DIR FIXTURE_DIR DTYPE WORK_DIR [cpu|cuda [FLAGS]]
# FLAGS: extra `moec compile` flags, e.g. --disable-pass=moe-fuse-attention.
# Exits 77 (skipped) for cuda on a machine without an NVIDIA GPU.
set -euo pipefail
bin=$1 fixture=$2 dtype=$3 work=$4 device=${5:-cpu} flags=${6:-}
if [[ $device == cuda ]] && ! [[ -e /dev/nvidia0 ]]; then
  echo "no NVIDIA GPU (/dev/nvidia0): skipped"
  exit 77
fi
target=$device
[[ $device == cuda ]] && target=cuda:${MOEC_CUDA_CHIP:-sm_90}
rm -rf "$work" && mkdir -p "$work"
# Every prompt position's logits are compared unless FLAGS ask for the
# last position's only (then it is checked as generation step 0).
prefill_dump=(--dump-prefill-logits "$work/prefill.npy")
prefill_check=(--prefill "$work/prefill.npy")
case " $flags " in
  *" --prefill-logits=last "*) prefill_dump=(); prefill_check=() ;;
  *) flags="$flags --prefill-logits=all" ;;
esac
if [[ " $flags " == *" --cpu=x86-64-v3 "* ]] && ! grep -qw avx2 /proc/cpuinfo; then
  echo "this CPU has no AVX2: skipped"
  exit 77
fi
if [[ " $flags " == *" --dot-activations=bf16 "* ]] &&
  ! grep -qw avx512_bf16 /proc/cpuinfo; then
  echo "this CPU has no AVX512-BF16: skipped"
  exit 77
fi
"$bin/moec" compile "$fixture" --target="$target" --dtype="$dtype" \
  --prefill-chunk=32 --quiet --stats $flags -o "$work/model.moec" \
  2> "$work/stats.txt" || { cat "$work/stats.txt" >&2; exit 1; }
# bf16-pair dot products (the default where the CPU has AVX512-BF16) round
# the activations too: moec-check-fixture's tolerance follows.
activations=f32
grep -q "dot products: bf16 activations" "$work/stats.txt" && activations=bf16
prompt=$("$bin/moec-check-fixture" "$fixture" --print prompt)
steps=$("$bin/moec-check-fixture" "$fixture" --print steps)
"$bin/moec-run" "$work/model.moec" --prompt-tokens "$prompt" -n "$steps" \
  --greedy --ignore-eos --threads 2 --device="$device" --dump-logits "$work/generate.npy" \
  "${prefill_dump[@]}" > "$work/ids.txt"
"$bin/moec-check-fixture" "$fixture" --dtype "$dtype" --activations "$activations" \
  "${prefill_check[@]}" --generate "$work/generate.npy"
