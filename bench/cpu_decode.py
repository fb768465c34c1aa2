#!/usr/bin/env python3
"""CPU decode benchmark: moec's decode tokens/s next to the machine's measured
memory bandwidth, in one run.

1. generates (once, cached in bench/.cache/) a random-weight ~1B-parameter
   checkpoint of the DeepSeek-V3 architecture (bench/make_random_checkpoint.py);
2. measures memory bandwidth with moec-bench-stream (copy and read);
3. compiles the checkpoint with moec for this CPU (--dtype bf16 and f32);
4. runs moec-run: prefill a 64-token prompt, decode N tokens, and reports
   decode tok/s and the achieved bandwidth = bytes of weights (+ KV cache)
   touched per decode token x tokens/s.

Writes bench/results/cpu_decode.json. Usage (after ./scripts/test.sh or a
build): bench/.venv/bin/python bench/cpu_decode.py [--threads 2] [-n 64]
"""
import argparse
import json
import os
import platform
import re
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "bin")


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


def header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def bytes_per_decode_token(ckpt, dtype, positions):
    """Weight bytes one decode step reads (+ the KV cache it attends over)."""
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    tensors = header(os.path.join(ckpt, "model.safetensors"))
    experts, top_k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    total = 0.0
    for name, info in tensors.items():
        if name == "__metadata__" or name == "model.embed_tokens.weight":
            continue  # decode reads one embedding row
        count = 1
        for d in info["shape"]:
            count *= d
        size = 2 if (dtype == "bf16" and len(info["shape"]) >= 2) else 4
        share = top_k / experts if ".mlp.experts." in name else 1.0
        total += count * size * share
    total += cfg["hidden_size"] * (2 if dtype == "bf16" else 4)  # one row
    heads = cfg["num_attention_heads"]
    per_position = heads * (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
                            + cfg["v_head_dim"]) * 4
    total += per_position * positions * cfg["num_hidden_layers"]
    return total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("-n", type=int, default=64, help="decode tokens")
    parser.add_argument("--prompt", type=int, default=64, help="prompt tokens")
    args = parser.parse_args()

    cache = os.path.join(ROOT, "bench", ".cache")
    ckpt = os.path.join(cache, "deepseek_v3_1b")
    if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
        run([sys.executable, os.path.join(ROOT, "bench", "make_random_checkpoint.py"), ckpt])

    stream = json.loads(run([os.path.join(BIN, "moec-bench-stream"), str(args.threads), "1024"]).stdout)
    prompt = ",".join(str(2 + i % 1000) for i in range(args.prompt))
    results = {"machine": platform.processor() or platform.machine(),
               "threads": args.threads, "stream": stream, "runs": []}
    for dtype in ("bf16", "f32"):
        artifact = os.path.join(cache, f"model-{dtype}.moec")
        start = time.time()
        run([os.path.join(BIN, "moec"), "compile", ckpt, "--target=cpu", f"--dtype={dtype}", "-o", artifact])
        compile_s = time.time() - start
        out = run([os.path.join(BIN, "moec-run"), artifact, "--prompt-tokens", prompt,
                   "-n", str(args.n + 1), "--ignore-eos", "--threads", str(args.threads)])
        prefill = float(re.search(r"prefill: .*\(([\d.]+) tok/s\)", out.stderr).group(1))
        decode = float(re.search(r"decode: .*\(([\d.]+) tok/s\)", out.stderr).group(1))
        positions = args.prompt + args.n / 2  # average attended positions
        per_token = bytes_per_decode_token(ckpt, dtype, positions)
        achieved = per_token * decode / 1e9
        results["runs"].append({
            "dtype": dtype, "compile_seconds": round(compile_s, 2),
            "artifact_bytes": os.path.getsize(artifact),
            "prefill_tok_s": prefill, "decode_tok_s": decode,
            "bytes_per_decode_token": int(per_token),
            "achieved_GBps": round(achieved, 2),
            "fraction_of_read_bw": round(achieved / stream["read_GBps"], 3),
            "fraction_of_copy_bw": round(achieved / stream["copy_GBps"], 3)})
        os.remove(artifact)
    os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
    path = os.path.join(ROOT, "bench", "results", "cpu_decode.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
