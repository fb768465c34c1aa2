#!/usr/bin/env bash
# Runs every artifact of a bundle made by cuda_bundle.sh on the GPU.
# Usage: run.sh BUNDLE_DIR RESULTS_DIR
set -uo pipefail
dir=$(cd "$1" && pwd) out=$2
export LD_LIBRARY_PATH="$dir/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p "$out"
for a in "$dir"/artifacts/*.moec; do
  name=$(basename "$a" .moec) f=${name%-*}
  mkdir -p "$out/$name"
  "$dir/bin/moec-run" "$a" --device=cuda --prompt-tokens "$(cat "$dir/artifacts/$f.prompt")" \
    -n "$(cat "$dir/artifacts/$f.steps")" --greedy --ignore-eos \
    --dump-logits "$out/$name/generate.npy" --dump-prefill-logits "$out/$name/prefill.npy" \
    > "$out/$name/ids.txt" 2> "$out/$name/log"
  echo "$name: exit $? $(tr '\n' ' ' < "$out/$name/ids.txt") $(tail -1 "$out/$name/log")"
done
