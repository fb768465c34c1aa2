#!/usr/bin/env python3
"""CUDA decode/prefill benchmark: moec next to transformers (eager PyTorch) on
the same GPU, in one run, with decode as a fraction of measured copy bandwidth
and prefill in achieved FLOP/s.

Runs on the GPU machine from a bundle made on a machine with the compiler
(bench/cuda_bench_pack.sh BUILD_DIR BUNDLE_DIR): the skeleton artifact
(--weights=deferred) of a random-weight DeepSeek-V2-Lite, its sidecar,
moec-run, libmoec_runtime.so, config.json, this script and pack_deferred.py.

Stages (each prints its elapsed time):
  1. device-to-device copy bandwidth (torch, 2 GiB buffers, CUDA events,
     median of 20 after 3 warm-ups; counts bytes read + written);
  2. the random model: torch.manual_seed(SEED), AutoModelForCausalLM.from_config
     (bf16, built on the GPU, transformers' init: normal(0, initializer_range),
     norms 1);
  3. transformers: prefill of a 128-token prompt, greedy decode of 64 tokens
     (manual loop over the KV cache, and generate()), prefill of 1024 tokens,
     the 128-token prompt's logits for the fidelity check;
  4. the weights: save_pretrained to /dev/shm (or, --source=memory / too
     little /dev/shm, straight from the model's state_dict), then
     pack_deferred fills the skeleton into /tmp/model.moec; the model is
     freed (the model and moec's copy never coexist on the GPU);
  5. moec-run --device=cuda: the same prompts and token counts, its
     prefill logits for the fidelity check;
  6. $OUT/cuda_bench.json and a table.

Usage (GPU machine, repository root):
  python3 bench/cuda_bench.py --bundle .benchrun --out $OUT
Local smoke test without a GPU (bundle made with --target cpu):
  python bench/cuda_bench.py --bundle /tmp/cpubundle --out /tmp/cpuout --cpu-dry-run
"""
import argparse
import gc
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f} s] {msg}", flush=True)


class BenchError(Exception):
    pass


# ---------------------------------------------------------------------------
# Arithmetic from the config (unit-checked by --self-test)
# ---------------------------------------------------------------------------

def model_counts(cfg):
    """Parameter counts of a deepseek_v2/v3 config.

    total: every parameter. active_matmul: the weights one token multiplies by
    (attention projections, the dense MLP or router + shared experts + top_k
    routed experts per layer), without lm_head and the embedding (a lookup).
    decode_params: the parameters one decode step reads: active_matmul + norms
    + one embedding row + lm_head."""
    h, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    heads = cfg["num_attention_heads"]
    nope, rope, vd = cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"], cfg["v_head_dim"]
    qlora, kvlora = cfg.get("q_lora_rank"), cfg["kv_lora_rank"]
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    moe_i, dense_i = cfg["moe_intermediate_size"], cfg["intermediate_size"]
    shared_n = cfg.get("n_shared_experts") or 0
    dense_layers = min(cfg.get("first_k_dense_replace", 0), L)
    moe_layers = L - dense_layers
    qk = nope + rope

    if qlora:
        attn_mm = h * qlora + qlora * heads * qk
        attn_norms = qlora + kvlora
    else:
        attn_mm = h * heads * qk
        attn_norms = kvlora
    attn_mm += h * (kvlora + rope) + kvlora * heads * (nope + vd) + heads * vd * h
    layer_norms = 2 * h + attn_norms
    dense_mlp = 3 * h * dense_i
    expert = 3 * h * moe_i
    shared = 3 * h * moe_i * shared_n
    router = E * h
    bias = E if cfg.get("topk_method") == "noaux_tc" else 0  # e_score_correction_bias
    lm_head = 0 if cfg.get("tie_word_embeddings") else V * h

    total = (V * h + lm_head + h + L * (attn_mm + layer_norms)
             + dense_layers * dense_mlp + moe_layers * (router + bias + shared + E * expert))
    active_matmul = (L * attn_mm + dense_layers * dense_mlp
                     + moe_layers * (router + shared + k * expert))
    decode_params = active_matmul + L * layer_norms + h + h + V * h
    return {"total": total, "active_matmul": active_matmul, "decode_params": decode_params,
            "attention_per_layer": attn_mm, "expert": expert, "lm_head": V * h,
            "dense_layers": dense_layers, "moe_layers": moe_layers}


def prefill_flops(cfg, tokens):
    """Useful FLOPs of a prefill of `tokens` tokens: 2 x active matmul params x
    tokens + lm_head for the last position + causal attention (QK^T and PV over
    the T(T+1)/2 attended pairs, every head and layer)."""
    c = model_counts(cfg)
    heads, L = cfg["num_attention_heads"], cfg["num_hidden_layers"]
    qk = cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]
    attn = L * heads * 2 * (qk + cfg["v_head_dim"]) * tokens * (tokens + 1) / 2
    return 2 * c["active_matmul"] * tokens + 2 * c["lm_head"] + attn


def decode_bytes(cfg, weight_bytes_per_param, kv_bytes_per_position, positions):
    """Bytes one decode step reads: the decode_params weights + the KV cache of
    `positions` positions (all layers; kv_bytes_per_position covers all layers)."""
    c = model_counts(cfg)
    weights = c["decode_params"] * weight_bytes_per_param
    return weights, kv_bytes_per_position * positions


def mean_positions(prompt_len, generated):
    """Average attended positions over the decode steps of moec-run -n N:
    N - 1 steps, step s attends prompt_len + s positions (s = 1..N-1)."""
    steps = generated - 1
    return prompt_len + (steps + 1) / 2 if steps > 0 else prompt_len


def moec_kv_bytes_per_position(inspect_text, cfg):
    """Sum over layers of moec's KV bytes per position: parsed from `moec
    inspect` (the bundle's inspect.txt), else heads x (qk + v) x 4 (f32 K/V)."""
    rows = re.findall(r"^\s+\d+\s+\d+\s+\w+\s+\[[\d, ]+\]\s+\[[\d, ]+\]\s+(\d+)\s*$",
                      inspect_text or "", re.M)
    if rows:
        return sum(int(r) for r in rows), "moec inspect"
    heads = cfg["num_attention_heads"]
    per = heads * (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"] + cfg["v_head_dim"]) * 4
    return per * cfg["num_hidden_layers"], "config (f32 K and V per head)"


def sidecar_decode_weight_bytes(side, cfg):
    """Weight bytes of one decode step from moec's own weight table: every
    weight once, stacked routed experts x top_k / n_routed_experts, the
    embedding one row."""
    E, k = cfg["n_routed_experts"], cfg["num_experts_per_tok"]
    total = 0.0
    for w in side["weights"]:
        if "embed_tokens" in w["name"]:
            total += w["size"] / w["shape"][0]
        elif ".experts." in w["name"] and w["shape"] and w["shape"][0] == E:
            total += w["size"] * k / E
        else:
            total += w["size"]
    return int(total)


def prompt_ids(seed, length, vocab, special):
    rng = np.random.RandomState(seed)
    ids = rng.randint(3, vocab, size=length)
    ids[np.isin(ids, list(special))] = 3
    return [int(i) for i in ids]


def self_test():
    # Published DeepSeek-V2-Lite: 15.7B total, 2.4B active.
    cfg = json.load(open(os.path.join(HERE, "configs", "deepseek_v2_lite.json")))
    c = model_counts(cfg)
    assert abs(c["total"] - 15_706_484_224) < 1, c["total"]
    h = 2048
    attn = h * 16 * 192 + h * 576 + 512 * 16 * 256 + 16 * 128 * h
    assert c["attention_per_layer"] == attn
    active = 27 * attn + 3 * h * 10944 + 26 * (64 * h + 3 * h * 1408 * 2 + 6 * 3 * h * 1408)
    assert c["active_matmul"] == active, (c["active_matmul"], active)
    assert c["decode_params"] == active + 27 * (2 * h + 512) + 2 * h + 102400 * h
    f = prefill_flops(cfg, 4)
    assert f == 2 * active * 4 + 2 * 102400 * h + 27 * 16 * 2 * 320 * 10
    assert mean_positions(128, 64) == 160.0  # steps attend 129..191
    assert mean_positions(128, 64) == sum(128 + s for s in range(1, 64)) / 63
    text = ("KV caches: 2, 1 KiB per token\n  index  layer  dtype  key   value   bytes/token (K+V)\n"
            "      0      0  f32    [256, 4, 24]           [256, 4, 16]           640\n"
            "      1      1  f32    [256, 4, 24]           [256, 4, 16]           640\n")
    assert moec_kv_bytes_per_position(text, cfg) == (1280, "moec inspect")
    assert moec_kv_bytes_per_position("", cfg)[0] == 27 * 16 * 320 * 4
    side = {"weights": [{"name": "model.embed_tokens.weight", "shape": [10, 4], "size": 80},
                        {"name": "model.layers.1.mlp.experts.*.gate_proj.weight",
                         "shape": [64, 2, 4], "size": 64 * 16},
                        {"name": "model.norm.weight", "shape": [4], "size": 16}]}
    assert sidecar_decode_weight_bytes(side, cfg) == 8 + 6 * 16 + 16
    p = prompt_ids(1, 1000, 102400, {100000, 100001})
    assert len(p) == 1000 and min(p) >= 3 and max(p) < 102400 and 100000 not in p
    line = "prefill: 128 tokens in 12.34 ms (10372.8 tok/s)\ndecode: 63 tokens in 250.00 ms (252.0 tok/s)\n"
    r = parse_moec_stderr("device: NVIDIA H100\n" + line)
    assert r["prefill_tokens"] == 128 and abs(r["prefill_ms"] - 12.34) < 1e-9
    assert r["decode_tokens"] == 63 and abs(r["decode_tok_s"] - 252.0) < 1e-9
    assert r["device"] == "NVIDIA H100"
    print("cuda_bench self-test: ok")


# ---------------------------------------------------------------------------
# moec-run
# ---------------------------------------------------------------------------

SPEED_RE = r"^{}: (\d+) tokens in ([\d.]+) ms \(([\d.]+) tok/s\)\s*$"


def parse_moec_stderr(text):
    out = {}
    for phase in ("prefill", "decode"):
        m = re.search(SPEED_RE.format(phase), text, re.M)
        if not m:
            raise BenchError(f"moec-run printed no '{phase}: N tokens in X ms (Y tok/s)' line")
        tokens, ms = int(m.group(1)), float(m.group(2))
        out[f"{phase}_tokens"] = tokens
        out[f"{phase}_ms"] = ms
        # recomputed from tokens / ms (two decimals) rather than the rounded tok/s
        out[f"{phase}_tok_s"] = tokens / (ms / 1e3) if ms > 0 else float(m.group(3))
    m = re.search(r"^device: (.*)$", text, re.M)
    out["device"] = m.group(1).strip() if m else None
    return out


def run_moec(bundle, artifact, device, prompt, n, extra=(), log_path=None, timeout=300):
    exe = os.path.join(bundle, "moec-run")
    if not os.access(exe, os.X_OK):
        os.chmod(exe, 0o755)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = bundle + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
    # moec-run times its first prefill and decode calls: load every kernel at
    # module load (untimed) rather than lazily at its first launch.
    env.setdefault("CUDA_MODULE_LOADING", "EAGER")
    cmd = [exe, artifact, f"--device={device}", "--prompt-tokens", ",".join(map(str, prompt)),
           "-n", str(n), "--greedy", "--ignore-eos", *extra]
    start = time.time()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BenchError(f"moec-run timed out after {timeout} s") from None
    wall = time.time() - start
    if log_path:
        with open(log_path, "a") as f:
            f.write(" ".join(cmd[:4] + ["<prompt>"] + cmd[5:]) + "\n" + p.stderr + "\n")
    if p.returncode != 0:
        tail = "\n".join(p.stderr.strip().splitlines()[-5:])
        raise BenchError(f"moec-run exited with {p.returncode}:\n{tail}")
    r = parse_moec_stderr(p.stderr)
    r["tokens"] = [int(t) for t in p.stdout.split()]
    r["wall_s"] = wall
    r["load_and_overhead_s"] = wall - (r["prefill_ms"] + r["decode_ms"]) / 1e3
    return r


# ---------------------------------------------------------------------------
# torch helpers
# ---------------------------------------------------------------------------

class Timer:
    def __init__(self, torch, device):
        self.torch, self.cuda = torch, device.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def time(self, fn):
        self.sync()
        start = time.perf_counter()
        result = fn()
        self.sync()
        return time.perf_counter() - start, result


def copy_bandwidth(torch, device, nbytes, iters, warmup):
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    src.fill_(7)
    dst = torch.empty_like(src)
    for _ in range(warmup):
        dst.copy_(src)
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize()
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            dst.copy_(src)
            b.record()
            b.synchronize()
            times.append(a.elapsed_time(b) / 1e3)
    else:
        for _ in range(iters):
            start = time.perf_counter()
            dst.copy_(src)
            times.append(time.perf_counter() - start)
    assert bool((dst[:16] == 7).all())
    del src, dst
    t = statistics.median(times)
    return {"buffer_bytes": nbytes, "iterations": iters, "warmup": warmup,
            "median_s": t, "min_s": min(times), "max_s": max(times),
            "GBps": 2 * nbytes / t / 1e9, "best_GBps": 2 * nbytes / min(times) / 1e9,
            "method": "dst.copy_(src) of two uint8 buffers; bytes read + written "
                      "(2 x buffer) / median time (CUDA events)"}


def cache_bytes_per_position(cache, positions):
    """Bytes per position of a transformers cache (all layers), or None."""
    total = 0
    try:
        layers = getattr(cache, "layers", None)
        if layers is not None:
            for layer in layers:
                for name in ("keys", "values"):
                    t = getattr(layer, name, None)
                    if t is not None and hasattr(t, "numel"):
                        total += t.numel() * t.element_size()
        else:
            for kv in cache:
                for t in kv:
                    total += t.numel() * t.element_size()
    except Exception:
        return None
    return total / positions if total else None


def build_model(torch, transformers, cfg_dir, device, seed, attn, experts):
    from transformers import AutoConfig, AutoModelForCausalLM
    config = AutoConfig.from_pretrained(cfg_dir)
    kw = {"attn_implementation": attn}
    if experts:
        kw["experts_implementation"] = experts
    torch.manual_seed(seed)
    with torch.device(device):
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16, **kw)
        except TypeError as e:  # older spelling / no experts_implementation
            log(f"from_config({kw}, dtype=...) failed ({e}); retrying with torch_dtype")
            kw.pop("experts_implementation", None)
            model = AutoModelForCausalLM.from_config(config, torch_dtype=torch.bfloat16, **kw)
    model.eval()
    return model


def check_parameters(torch, model):
    """All parameters finite and initialized (transformers' init, not empty memory)."""
    worst, count, stats = 0.0, 0, {}
    with torch.no_grad():
        for name, p in model.named_parameters():
            count += p.numel()
            m = float(p.detach().abs().max().float())
            if not math.isfinite(m):
                raise BenchError(f"parameter {name} is not finite after init")
            worst = max(worst, m)
    params = dict(model.named_parameters())
    keys = ["model.embed_tokens.weight", "lm_head.weight"]
    keys += [k for k in params if ".experts." in k][:2]
    keys += [k for k in params if "kv_b_proj" in k][:1]
    for key in keys:
        if key in params:
            stats[key + ".std"] = float(params[key].detach().float().std())
    zero = [k for k, p in params.items() if not bool(p.detach().any())]
    if zero:
        log(f"warning: {len(zero)} parameter tensors are all zeros, e.g. {zero[:3]}")
    stats["all_zero_tensors"] = len(zero)
    if worst > 1e3:
        raise BenchError(f"a parameter has |value| {worst}: uninitialized memory?")
    stats.update(parameters=count, max_abs=worst)
    return stats


def hf_benchmark(torch, model, device, args, ids128, ids1024, n):
    """transformers timings + the 128-token prompt's logits (CPU)."""
    timer = Timer(torch, device)
    res = {}
    import inspect as pyinspect
    keep = {"logits_to_keep": 1} if "logits_to_keep" in pyinspect.signature(model.forward).parameters else {}
    res["prefill_logits_to_keep"] = bool(keep)
    x128 = torch.tensor([ids128], device=device)
    x1024 = torch.tensor([ids1024], device=device)
    with torch.inference_mode():
        # Warm-up: cuBLAS handles, kernels, the allocator.
        out = model(x128, use_cache=True, **keep)
        pkv = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        for _ in range(3):
            out = model(input_ids=tok, past_key_values=pkv, use_cache=True)
            tok = out.logits[:, -1:].argmax(-1)
        del out, pkv, tok
        timer.sync()
        log("  transformers warm-up done")

        times = [timer.time(lambda: model(x128, use_cache=True, **keep))[0] for _ in range(args.repeats)]
        res["prefill_128"] = {"tokens": len(ids128), "median_s": statistics.median(times),
                              "times_s": times,
                              "tok_s": len(ids128) / statistics.median(times)}

        # Reference logits of every prompt position (bf16 model, returned as float32 on CPU).
        out = model(x128, use_cache=False)
        ref_logits = out.logits[0].float().cpu().numpy()
        del out

        # Decode: manual greedy loop over the DynamicCache. Prefill and decode
        # timed separately; the decode time covers N - 1 forwards of one token
        # (+ argmax), synchronized once at the end, as moec-run's decode time.
        runs = []
        for _ in range(args.repeats):
            timer.sync()
            t0 = time.perf_counter()
            out = model(x128, use_cache=True, **keep)
            pkv = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
            timer.sync()
            t1 = time.perf_counter()
            toks = [tok]
            for _ in range(n - 1):
                out = model(input_ids=tok, past_key_values=pkv, use_cache=True)
                tok = out.logits[:, -1:].argmax(-1)
                toks.append(tok)
            timer.sync()
            t2 = time.perf_counter()
            kv_per_pos = cache_bytes_per_position(pkv, len(ids128) + n - 1)
            runs.append((t1 - t0, t2 - t1, [int(t) for t in torch.cat(toks, 1)[0].tolist()]))
            del out, pkv, tok, toks
        decode_s = statistics.median(r[1] for r in runs)
        res["decode"] = {"generated": n, "decode_steps": n - 1, "median_s": decode_s,
                         "times_s": [r[1] for r in runs], "tok_s": (n - 1) / decode_s,
                         "ms_per_token": decode_s / (n - 1) * 1e3,
                         "prefill_s_in_loop": [r[0] for r in runs],
                         "method": "manual loop: model(prompt) then N-1 x model(token, "
                                   "past_key_values), greedy argmax; decode tok/s = (N-1) / "
                                   "time of the N-1 one-token forwards"}
        res["tokens"] = runs[-1][2]
        res["kv_cache_bytes_per_position"] = kv_per_pos

        # generate(): total time; decode = (N - 1) / (total - prefill median).
        mask = torch.ones_like(x128)
        gen_kw = dict(attention_mask=mask, do_sample=False, max_new_tokens=n, min_new_tokens=n,
                      num_beams=1, pad_token_id=model.config.eos_token_id
                      if isinstance(model.config.eos_token_id, int) else 0)
        gen_s, seq = timer.time(lambda: model.generate(x128, **gen_kw))
        gen_tokens = [int(t) for t in seq[0, len(ids128):].tolist()]
        del seq
        res["generate"] = {"total_s": gen_s, "generated": len(gen_tokens),
                           "tok_s_total": len(gen_tokens) / gen_s,
                           "decode_tok_s": (n - 1) / max(gen_s - res["prefill_128"]["median_s"], 1e-9),
                           "same_tokens_as_loop": gen_tokens == res["tokens"],
                           "method": "generate(max_new_tokens=N, min_new_tokens=N, greedy); "
                                     "decode tok/s = (N-1) / (generate time - prefill median)"}
        log(f"  transformers decode {res['decode']['tok_s']:.1f} tok/s "
            f"(generate: {res['generate']['decode_tok_s']:.1f})")

        model(x1024, use_cache=True, **keep)  # warm-up at this length
        times = [timer.time(lambda: model(x1024, use_cache=True, **keep))[0] for _ in range(args.repeats)]
        res["prefill_1024"] = {"tokens": len(ids1024), "median_s": statistics.median(times),
                               "times_s": times,
                               "tok_s": len(ids1024) / statistics.median(times)}
    return res, ref_logits


def fidelity(ref, got):
    if ref.shape != got.shape:
        return {"error": f"shapes differ: transformers {list(ref.shape)}, moec {list(got.shape)}"}
    d = np.abs(ref.astype(np.float64) - got.astype(np.float64))
    ra, ga = ref.argmax(-1), got.argmax(-1)
    return {"positions": int(ref.shape[0]), "max_abs_diff": float(d.max()),
            "mean_abs_diff": float(d.mean()), "max_abs_logit": float(np.abs(ref).max()),
            "rel_max_diff": float(d.max() / max(np.abs(ref).max(), 1e-30)),
            "argmax_agreement": float((ra == ga).mean()),
            "last_position_argmax_equal": bool(ra[-1] == ga[-1])}


def first_divergence(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------

def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bundle", required=True, help="directory made by bench/cuda_bench_pack.sh")
    ap.add_argument("--out", required=True, help="results directory (cuda_bench.json)")
    ap.add_argument("--artifact", default="/tmp/model.moec", help="where the packed artifact goes")
    ap.add_argument("--source", choices=["auto", "checkpoint", "memory"], default="auto",
                    help="checkpoint: save_pretrained to --shm then pack from it; memory: "
                         "pack from the model's state_dict; auto: checkpoint when --shm has room")
    ap.add_argument("--shm", default="/dev/shm", help="where the checkpoint is saved")
    ap.add_argument("--reuse-artifact", action="store_true",
                    help="keep an --artifact packed by an earlier run of the same bundle and seed")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--long-prompt-len", type=int, default=1024)
    ap.add_argument("-n", type=int, default=64, help="generated tokens")
    ap.add_argument("--repeats", type=int, default=3, help="transformers timing repeats (median)")
    ap.add_argument("--moec-repeats", type=int, default=2,
                    help="moec-run runs per measurement (median; each run loads the model)")
    ap.add_argument("--hf-attn", default="eager", help="transformers attn_implementation")
    ap.add_argument("--hf-experts", default=None,
                    help="transformers experts_implementation (default: the library's)")
    ap.add_argument("--skip-hf", action="store_true", help="no transformers timings")
    ap.add_argument("--copy-gib", type=float, default=2.0, help="copy-bandwidth buffer size")
    ap.add_argument("--jobs", type=int, default=8, help="pack_deferred threads")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="smoke test without a GPU: torch and moec-run on the CPU")
    args = ap.parse_args()
    if args.cpu_dry_run:
        args.copy_gib = min(args.copy_gib, 0.25)

    bundle = os.path.abspath(args.bundle)
    os.makedirs(args.out, exist_ok=True)
    sys.path[:0] = [HERE, bundle]
    import pack_deferred

    results = {"benchmark": "cuda_bench", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "command": " ".join(sys.argv), "stages_s": {}, "method": {}}
    out_json = os.path.join(args.out, "cuda_bench.json")
    moec_log = os.path.join(args.out, "moec-run.log")

    def save():
        with open(out_json + ".tmp", "w") as f:
            json.dump(results, f, indent=2)
        os.replace(out_json + ".tmp", out_json)

    def stage(name):
        class S:
            def __enter__(self):
                self.t = time.time()
                log(f"== {name}")

            def __exit__(self, *exc):
                dt = time.time() - self.t
                results["stages_s"][name] = round(dt, 2)
                log(f"== {name}: {dt:.1f} s" + (" (failed)" if exc[0] else ""))
                save()
        return S()

    # ---- bundle -----------------------------------------------------------
    skel = os.path.join(bundle, "model.skel.moec")
    for f in ("moec-run", "libmoec_runtime.so", "config.json", "model.skel.moec",
              "model.skel.moec.weights.json"):
        if not os.path.exists(os.path.join(bundle, f)):
            raise BenchError(f"{bundle}/{f}: missing (make the bundle with bench/cuda_bench_pack.sh)")
    cfg = json.load(open(os.path.join(bundle, "config.json")))
    side = json.load(open(skel + ".weights.json"))
    bundle_meta = {}
    if os.path.exists(os.path.join(bundle, "bundle.json")):
        bundle_meta = json.load(open(os.path.join(bundle, "bundle.json")))
    inspect_text = ""
    if os.path.exists(os.path.join(bundle, "inspect.txt")):
        inspect_text = open(os.path.join(bundle, "inspect.txt")).read()
    counts = model_counts(cfg)
    results["bundle"] = bundle_meta
    results["config"] = {k: cfg.get(k) for k in (
        "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
        "intermediate_size", "moe_intermediate_size", "n_routed_experts", "n_shared_experts",
        "num_experts_per_tok", "first_k_dense_replace", "q_lora_rank", "kv_lora_rank",
        "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim")}
    results["params"] = counts
    log(f"model: {cfg['model_type']}, {cfg['num_hidden_layers']} layers, "
        f"{counts['total'] / 1e9:.4g}B parameters ({counts['active_matmul'] / 1e9:.4g}B active "
        f"matmul per token); artifact {side['file_size'] / 2**30:.3g} GiB")

    import torch
    import transformers
    device = torch.device("cpu" if args.cpu_dry_run else "cuda")
    moec_device = "cpu" if args.cpu_dry_run else "cuda"
    if device.type == "cuda" and not torch.cuda.is_available():
        raise BenchError("torch sees no CUDA device (use --cpu-dry-run for a smoke test)")
    versions = {"python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__, "numpy": np.__version__,
                "cuda": torch.version.cuda}
    dev = {"type": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(0)
        dev.update(name=props.name, capability=f"sm_{props.major}{props.minor}",
                   total_memory_bytes=props.total_memory, multiprocessors=props.multi_processor_count)
        try:
            dev["driver"] = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            pass
    else:
        dev.update(name=platform.processor() or platform.machine(), threads=torch.get_num_threads())
    results["device"], results["versions"] = dev, versions
    log(f"device: {dev.get('name')}; torch {torch.__version__}, transformers "
        f"{transformers.__version__}")
    save()

    vocab = cfg["vocab_size"]
    special = {cfg.get("bos_token_id"), cfg.get("eos_token_id"), cfg.get("pad_token_id")} - {None}
    ids128 = prompt_ids(1000 + args.seed, args.prompt_len, vocab, special)
    ids1024 = prompt_ids(2000 + args.seed, args.long_prompt_len, vocab, special)
    n = args.n

    # ---- 1. copy bandwidth --------------------------------------------------
    with stage("copy bandwidth"):
        bw = copy_bandwidth(torch, device, int(args.copy_gib * 2**30), 20 if not args.cpu_dry_run else 5, 3)
        results["copy_bandwidth"] = bw
        log(f"  copy: {bw['GBps']:.0f} GB/s (read + write)")
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # ---- 2-4. transformers, then the artifact --------------------------------
    stamp_path = args.artifact + ".stamp.json"
    stamp = {"sidecar_size": os.path.getsize(skel + ".weights.json"), "file_size": side["file_size"],
             "seed": args.seed, "torch": torch.__version__, "transformers": transformers.__version__,
             "bundle": bundle_meta.get("created")}
    reuse = (args.reuse_artifact and os.path.exists(args.artifact) and os.path.exists(stamp_path)
             and json.load(open(stamp_path)) == stamp)
    source = args.source
    param_bytes = counts["total"] * 2
    if source in ("auto", "checkpoint") and not reuse:
        free_shm = shutil.disk_usage(args.shm).free if os.path.isdir(args.shm) else 0
        if free_shm < param_bytes * 1.05 + (1 << 30):
            msg = (f"{args.shm} has {free_shm / 2**30:.1f} GiB free, the checkpoint needs "
                   f"{param_bytes / 2**30:.1f} GiB")
            if source == "checkpoint":
                raise BenchError(msg)
            log(f"{msg}: packing from the model's state_dict instead")
            source = "memory"
        else:
            source = "checkpoint"
    art_dir = os.path.dirname(os.path.abspath(args.artifact))
    if not reuse:
        free_disk = shutil.disk_usage(art_dir).free + (os.path.getsize(args.artifact)
                                                      if os.path.exists(args.artifact) else 0)
        if free_disk < side["file_size"] + (1 << 30):
            raise BenchError(f"{art_dir}: {free_disk / 2**30:.1f} GiB free, the artifact needs "
                             f"{side['file_size'] / 2**30:.1f} GiB (try --layers N in the bundle)")
    results["weights_source"] = "reused artifact" if reuse else source

    def transformers_and_pack():
        """Everything that holds the model, so that returning frees it."""
        with stage("build model"):
            if device.type == "cuda":
                free, total = torch.cuda.mem_get_info()
                if free < param_bytes * 1.1:
                    raise BenchError(f"GPU has {free / 2**30:.1f} GiB free, the bf16 model needs "
                                     f"{param_bytes / 2**30:.1f} GiB")
            model = build_model(torch, transformers, bundle, device, args.seed, args.hf_attn,
                                args.hf_experts)
            results["transformers_model"] = {
                "attn_implementation": getattr(model.config, "_attn_implementation", None),
                "experts_implementation": getattr(model.config, "_experts_implementation", None),
                "init": check_parameters(torch, model)}
            log(f"  {results['transformers_model']}")
        hf, ref = None, None
        with stage("transformers"):
            if args.skip_hf:
                with torch.inference_mode():
                    out = model(torch.tensor([ids128], device=device), use_cache=False)
                    ref = out.logits[0].float().cpu().numpy()
                    del out
            else:
                hf, ref = hf_benchmark(torch, model, device, args, ids128, ids1024, n)
                results["transformers"] = hf
        if reuse:
            log(f"reusing {args.artifact}")
            return hf, ref
        if source == "checkpoint":
            ckpt = os.path.join(args.shm, f"moec-bench-ckpt-{os.getpid()}")
            try:
                with stage("save_pretrained"):
                    model.save_pretrained(ckpt)
                    files = sorted(os.listdir(ckpt))
                    size = sum(os.path.getsize(os.path.join(ckpt, f)) for f in files)
                    results["checkpoint"] = {"files": len(files), "bytes": size}
                    log(f"  {ckpt}: {len(files)} files, {size / 2**30:.2f} GiB")
                del model
                gc.collect()
                with stage("pack"):
                    results["pack"] = pack_deferred.pack(skel, ckpt, args.artifact, jobs=args.jobs, log=log_kw)
            finally:
                shutil.rmtree(ckpt, ignore_errors=True)
        else:
            with stage("pack"):
                sd = model.state_dict()
                results["pack"] = pack_deferred.pack(skel, pack_deferred.TorchSource(sd), args.artifact,
                                                     jobs=args.jobs, log=log_kw)
                del sd
        with open(stamp_path, "w") as f:
            json.dump(stamp, f)
        return hf, ref

    def log_kw(*a, **k):
        log(" ".join(str(x) for x in a))

    if os.path.exists(stamp_path) and not reuse:
        os.remove(stamp_path)
    hf, ref_logits = transformers_and_pack()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info()
        results["gpu_free_before_moec_bytes"] = free
        log(f"GPU: {free / 2**30:.1f} GiB free of {total / 2**30:.1f} after freeing the model "
            f"(torch still holds {torch.cuda.memory_allocated() / 2**30:.2f} GiB)")
        if free < side["weights_size"] * 1.02:
            raise BenchError(f"GPU has {free / 2**30:.1f} GiB free, moec's weights need "
                             f"{side['weights_size'] / 2**30:.1f} GiB")

    # ---- 5. moec --------------------------------------------------------------
    moec = {}
    with stage("moec"):
        runs = [run_moec(bundle, args.artifact, moec_device, ids128, n, log_path=moec_log)
                for _ in range(args.moec_repeats)]
        log(f"  moec {len(ids128)}: prefill {[round(r['prefill_tok_s'], 1) for r in runs]} tok/s, decode "
            f"{[round(r['decode_tok_s'], 1) for r in runs]} tok/s")
        moec["device"] = runs[0]["device"]
        moec["runs_128"] = [{k: v for k, v in r.items() if k != "tokens"} for r in runs]
        moec["prefill_128"] = {"tokens": len(ids128),
                               "tok_s": statistics.median(r["prefill_tok_s"] for r in runs)}
        moec["decode"] = {"generated": n, "decode_steps": runs[0]["decode_tokens"],
                          "tok_s": statistics.median(r["decode_tok_s"] for r in runs),
                          "ms_per_token": statistics.median(r["decode_ms"] / max(r["decode_tokens"], 1)
                                                            for r in runs)}
        moec["tokens"] = runs[0]["tokens"]
        moec["deterministic_tokens"] = all(r["tokens"] == runs[0]["tokens"] for r in runs)
        long_runs = [run_moec(bundle, args.artifact, moec_device, ids1024, 1, log_path=moec_log)
                     for _ in range(args.moec_repeats)]
        moec["runs_1024"] = [{k: v for k, v in r.items() if k != "tokens"} for r in long_runs]
        moec["prefill_1024"] = {"tokens": len(ids1024),
                                "tok_s": statistics.median(r["prefill_tok_s"] for r in long_runs)}
        log(f"  moec {len(ids1024)}: prefill {[round(r['prefill_tok_s'], 1) for r in long_runs]} tok/s")
        npy = os.path.join(args.out, "moec_prefill_logits.npy")
        run_moec(bundle, args.artifact, moec_device, ids128, 1,
                 extra=["--dump-prefill-logits", npy], log_path=moec_log)
        got = np.load(npy)
        os.remove(npy)  # 128 x vocab floats: not worth bringing back
        results["moec"] = moec
        results["fidelity"] = fidelity(ref_logits, got)
        results["fidelity"]["generated_tokens_first_divergence"] = (
            first_divergence(hf["tokens"], moec["tokens"]) if hf else None)
        log(f"  fidelity: {results['fidelity']}")

    # ---- 6. derived numbers ------------------------------------------------------
    positions = mean_positions(len(ids128), n)
    kv_moec, kv_moec_from = moec_kv_bytes_per_position(inspect_text, cfg)
    w_cfg, kv_bytes = decode_bytes(cfg, 2, kv_moec, positions)
    w_art = sidecar_decode_weight_bytes(side, cfg)
    copy = results["copy_bandwidth"]["GBps"]
    d = {"mean_attended_positions": positions,
         "weight_bytes_per_token_config_bf16": w_cfg,
         "weight_bytes_per_token_moec_artifact": w_art,
         "moec_kv_bytes_per_position": kv_moec, "moec_kv_bytes_per_position_from": kv_moec_from,
         "moec_kv_bytes_per_token": kv_bytes,
         "moec_bytes_per_token": w_cfg + kv_bytes}
    d["moec_achieved_GBps"] = d["moec_bytes_per_token"] * moec["decode"]["tok_s"] / 1e9
    d["moec_fraction_of_copy_bw"] = d["moec_achieved_GBps"] / copy
    if hf:
        kv_hf = hf.get("kv_cache_bytes_per_position")
        hf_bytes = w_cfg + (kv_hf or 0) * positions
        d.update(hf_kv_bytes_per_position=kv_hf, hf_bytes_per_token=hf_bytes,
                 hf_achieved_GBps=hf_bytes * hf["decode"]["tok_s"] / 1e9)
        d["hf_fraction_of_copy_bw"] = d["hf_achieved_GBps"] / copy
    results["decode_bandwidth"] = d
    pf = {}
    for key, T in (("prefill_128", len(ids128)), ("prefill_1024", len(ids1024))):
        flops = prefill_flops(cfg, T)
        pf[key] = {"tokens": T, "flops": flops,
                   "moec_TFLOPs": flops * moec[key]["tok_s"] / T / 1e12}
        if hf:
            pf[key]["hf_TFLOPs"] = flops * hf[key]["tok_s"] / T / 1e12
    results["prefill_flops"] = pf
    results["method"] = {
        "prompts": f"seeded random ids in [3, vocab) without bos/eos/pad: {len(ids128)} tokens "
                   f"(decode, fidelity) and {len(ids1024)} tokens (prefill); greedy, eos ignored, "
                   f"{n} generated tokens = 1 from the prefill + {n - 1} decode steps",
        "moec": "moec-run --device=cuda --greedy --ignore-eos; tok/s = tokens / ms from its "
                "'prefill: N tokens in X ms' and 'decode: N tokens in X ms' stderr lines (one "
                "prefill call, N-1 decode calls, no warm-up inside a run; "
                "CUDA_MODULE_LOADING=EAGER so kernels load with the model); median over "
                f"{args.moec_repeats} runs, each loads the model",
        "transformers": f"eager PyTorch, attn_implementation={args.hf_attn}; prefill = "
                        f"model(prompt, use_cache=True{', logits_to_keep=1' if hf and hf['prefill_logits_to_keep'] else ''}) "
                        f"median of {args.repeats} after a warm-up; decode: see transformers.decode.method",
        "decode_bytes": "weights: 2 bytes x (attention projections + norms of every layer, the "
                        "dense MLP, router + shared experts + num_experts_per_tok routed experts "
                        "of every MoE layer, final norm, one embedding row, lm_head) = "
                        "2 x params.decode_params; + KV cache: bytes per position (all layers) x "
                        "mean attended positions (prompt + N/2); achieved GB/s = bytes/token x "
                        "decode tok/s; fraction = achieved / copy bandwidth",
        "prefill_flops": "2 x active_matmul params x T + 2 x vocab x hidden (lm_head, last "
                         "position) + layers x heads x 2 x (qk_head_dim + v_head_dim) x T(T+1)/2 "
                         "(causal QK^T and PV)",
        "fidelity": f"moec's --dump-prefill-logits of the {len(ids128)}-token prompt vs transformers' "
                    "logits (same bf16 weights); argmax agreement over positions"}
    save()

    # ---- table -----------------------------------------------------------------
    rows = [(f"prefill {len(ids128)} tok/s", "prefill_128", "tok_s"),
            (f"prefill {len(ids1024)} tok/s", "prefill_1024", "tok_s"),
            (f"decode tok/s ({len(ids128)}+{n})", "decode", "tok_s")]
    print()
    print(f"{'':28s}{'moec':>12s}{'transformers':>14s}{'ratio':>8s}")
    for label, key, field in rows:
        m = moec[key][field]
        h = hf[key][field] if hf else float("nan")
        print(f"{label:28s}{m:12.1f}{h:14.1f}{m / h if hf else float('nan'):8.2f}")
    for key in ("prefill_128", "prefill_1024"):
        m, h = pf[key]["moec_TFLOPs"], pf[key].get("hf_TFLOPs", float("nan"))
        print(f"{'prefill %d TFLOP/s' % pf[key]['tokens']:28s}{m:12.2f}{h:14.2f}")
    print(f"{'decode GB/s (bytes/token)':28s}{d['moec_achieved_GBps']:12.0f}"
          f"{d.get('hf_achieved_GBps', float('nan')):14.0f}   "
          f"({d['moec_bytes_per_token'] / 1e9:.2f} GB/token moec)")
    print(f"{'fraction of copy BW':28s}{d['moec_fraction_of_copy_bw']:12.2f}"
          f"{d.get('hf_fraction_of_copy_bw', float('nan')):14.2f}   "
          f"(copy {copy:.0f} GB/s)")
    fd = results["fidelity"]
    print(f"fidelity: max |dlogit| {fd.get('max_abs_diff', float('nan')):.4g} "
          f"(max |logit| {fd.get('max_abs_logit', float('nan')):.4g}), argmax agreement "
          f"{fd.get('argmax_agreement', float('nan')):.3f}, generated tokens diverge at "
          f"{fd.get('generated_tokens_first_divergence')}")
    print(f"results: {out_json}; total {time.time() - T0:.0f} s", flush=True)


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        print(f"cuda_bench: error: {e}", file=sys.stderr, flush=True)
        sys.exit(1)
