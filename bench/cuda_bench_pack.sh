#!/usr/bin/env bash
# Makes the bundle bench/cuda_bench.py runs from on a GPU machine without the
# compiler (see bench/README.md, "CUDA decode/prefill"):
#
#   bench/cuda_bench_pack.sh BUILD_DIR OUT_DIR [--layers N] [--config CONFIG.json]
#                            [--target cuda:sm_90] [--max-seq-len 2048] [--prefill-chunk 256]
#
# 1. a sparse bf16 checkpoint of CONFIG (default: bench/configs/deepseek_v2_lite.json,
#    num_hidden_layers replaced by N with --layers) under /tmp: headers only;
# 2. moec compile --weights=deferred: OUT_DIR/model.skel.moec + .weights.json;
# 3. moec inspect of the skeleton (the KV-cache geometry, for bytes/token);
# 4. moec-run, libmoec_runtime.so, config.json, cuda_bench.py, pack_deferred.py.
# Everything is a few MB; the weights are made and packed on the GPU machine.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[[ $# -ge 2 ]] || { sed -n 2,13p "$0" >&2; exit 2; }
build=$(cd "$1" && pwd) out=$2
shift 2
layers="" config="$here/configs/deepseek_v2_lite.json" target="cuda:sm_90"
max_seq=2048 chunk=256
while [[ $# -gt 0 ]]; do
  case "$1" in
  --layers) layers=$2; shift 2 ;;
  --config) config=$2; shift 2 ;;
  --target) target=$2; shift 2 ;;
  --max-seq-len) max_seq=$2; shift 2 ;;
  --prefill-chunk) chunk=$2; shift 2 ;;
  *) echo "cuda_bench_pack.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
for f in bin/moec bin/moec-run lib/libmoec_runtime.so; do
  [[ -e "$build/$f" ]] || { echo "cuda_bench_pack.sh: $build/$f missing (build first)" >&2; exit 1; }
done

rm -rf "$out" && mkdir -p "$out"
ckpt=$(mktemp -d /tmp/moec-bench-sparse.XXXXXX)
trap 'rm -rf "$ckpt"' EXIT

# The config, with --layers applied.
python3 - "$config" "$out/config.json" "$layers" <<'EOF'
import json, sys
cfg = json.load(open(sys.argv[1]))
if sys.argv[3]:
    cfg["num_hidden_layers"] = int(sys.argv[3])
json.dump(cfg, open(sys.argv[2], "w"), indent=2)
EOF
python3 "$here/make_sparse_checkpoint_v2.py" "$out/config.json" "$ckpt"

compile=("$build/bin/moec" compile "$ckpt" "--target=$target" --dtype=bf16 --weights=deferred
         "--max-seq-len=$max_seq" "--prefill-chunk=$chunk" -o "$out/model.skel.moec")
echo "+ ${compile[*]}"
start=$(date +%s.%N)
"${compile[@]}"
seconds=$(python3 -c "import time; print(round(time.time() - $start, 2))")

# moec inspect needs the full layout: a sparse stand-in (weights = holes).
python3 - "$out/model.skel.moec" "$ckpt/full.moec" <<'EOF'
import json, shutil, sys
skel, full = sys.argv[1], sys.argv[2]
side = json.load(open(skel + ".weights.json"))
with open(skel, "rb") as src, open(full, "wb") as dst:
    dst.write(src.read(side["weights_offset"]))
    dst.truncate(side["blobs_offset"])
    dst.seek(side["blobs_offset"])
    shutil.copyfileobj(src, dst)
EOF
"$build/bin/moec" inspect "$ckpt/full.moec" > "$out/inspect.txt" 2>&1 ||
  echo "cuda_bench_pack.sh: moec inspect failed (bytes/token falls back to the config)" >&2

cp "$build/bin/moec-run" "$build/lib/libmoec_runtime.so" "$here/cuda_bench.py" \
  "$here/pack_deferred.py" "$out/"
commit=$(git -C "$here/.." rev-parse HEAD 2>/dev/null || echo unknown)
dirty=$(git -C "$here/.." status --porcelain --untracked-files=no 2>/dev/null | wc -l)
python3 - "$out/bundle.json" "$commit" "$dirty" "$target" "$layers" "$seconds" "$config" "${compile[*]}" <<'EOF'
import json, sys, time
path, commit, dirty, target, layers, seconds, config, cmd = sys.argv[1:]
json.dump({"created": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "git_commit": commit,
           "git_modified_files": int(dirty), "target": target,
           "layers": int(layers) if layers else None, "config": config,
           "compile_seconds": float(seconds), "compile_command": cmd}, open(path, "w"), indent=2)
EOF
size=$(du -sb "$out" | cut -f1)
echo "$out: $((size / 1024 / 1024)) MiB (compile ${seconds} s)"
ls -la "$out"
if (( size > 60 * 1024 * 1024 )); then
  echo "cuda_bench_pack.sh: $out is over 60 MiB; the device tool carries 64 MiB" >&2
  exit 1
fi
