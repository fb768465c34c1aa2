#!/usr/bin/env python3
"""CPU comparison (issue 9): moec vs llama.cpp vs PyTorch eager (transformers),
in one run on this machine, on the same random weights and the same prompts.

1. Random-weight checkpoints (bench/make_random_checkpoint.py, cached in
   bench/.cache/cpu_compare/): DeepSeek-V2-Lite's config with fewer layers
   (--v2-layers, default 6) and the ~1B DeepSeek-V3 architecture of
   cpu_decode.py (MLA with q_lora, noaux_tc sigmoid group routing with
   e_score_correction_bias). Both carry the real DeepSeek-V3 tokenizer
   (/work/shared/tokenizers/deepseek_v3 or --tokenizer) and its vocab_size
   (128815 ids incl. added tokens) so llama.cpp's converter accepts them.
2. Machine copy/read bandwidth with build/bin/moec-bench-stream.
3. Per checkpoint and precision (bf16, f32, q8_0), each measurement its own
   subprocess (peak RSS from os.wait4):
   moec     compile --dtype=D --max-seq-len=P2+N; moec-run --json on the
            P1-token prompt (prefill P1 + N decode steps) and on the P2 one.
   llama.cpp  convert_hf_to_gguf.py --outtype bf16|f32|q8_0; llama-bench
            -p P1,P2 -n 0 and -p 0 -n N -d P1 (mean of -r reps); the same
            prompt ids through bench/llama_driver.cpp (peak RSS, a
            cross-check of llama-bench, and the generated ids).
   torch    from_pretrained(dtype=bf16|f32), set_num_threads (not for q8_0,
            which eager transformers has no kernels for); one forward of
            P1 and P2 tokens (logits_to_keep=1) in one subprocess, generate()
            of N+1 greedy tokens (min_new_tokens = max_new_tokens, so EOS is
            ignored) after the P1 prompt in another.
   Decode is N single-token steps after the P1-token prompt for every tool.
4. bench/results/cpu_compare.json (+ .png, grouped bars) with the machine,
   versions, every number, moec/llama.cpp and moec/torch ratios and the
   issue's targets as booleans; a markdown table last.

llama.cpp is never committed: the pinned llama-cpp-python sdist from PyPI
holds its full source (vendor/llama.cpp); the harness downloads it with pip,
builds llama-bench (CMake + Ninja, Release, GGML_NATIVE) and the driver under
--llama-dir (default bench/.cache/llama.cpp) when they are missing. The venv
bench/.venv (bench/requirements-cpu-compare.txt) is created when missing and
the harness re-runs itself in it.

Usage (needs build/bin/moec, moec-run, moec-bench-stream):
  python3 bench/cpu_compare.py                 # the full comparison
  python3 bench/cpu_compare.py --quick         # tiny models and lengths: a smoke run,
                                               # writes cpu_compare.smoke.json/png
"""
import argparse
import datetime
import hashlib
import json
import os
import platform
import random
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
BIN = os.path.join(ROOT, "build", "bin")
CACHE = os.path.join(BENCH, ".cache")
VENV = os.path.join(BENCH, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
REQUIREMENTS = os.path.join(BENCH, "requirements-cpu-compare.txt")
TOKENIZER = "/work/shared/tokenizers/deepseek_v3"
LLAMA_CPP_PYTHON = "0.3.36"  # its sdist vendors llama.cpp 0c1e57098
DTYPES = ("bf16", "f32", "q8_0")
# Bytes per matrix element (1-D weights stay f32 in every precision); Q8_0
# is 34 bytes per block of 32.
MATRIX_BYTES = {"bf16": 2, "f32": 4, "q8_0": 34 / 32}
TOOLS = ("moec", "llama.cpp", "torch")

# Checkpoints: (base config or None for make_random_checkpoint's built-in
# ~1B DeepSeek-V3, overrides). --quick shrinks every dimension.
QUICK_DIMS = {"num_hidden_layers": 2, "first_k_dense_replace": 1, "hidden_size": 256,
              "intermediate_size": 512, "moe_intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 4, "kv_lora_rank": 64,
              "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
              "n_routed_experts": 8, "num_experts_per_tok": 2, "n_shared_experts": 1}


def models(args):
    v2 = {"name": "v2lite", "base": os.path.join(BENCH, "configs", "deepseek_v2_lite.json"),
          "title": f"DeepSeek-V2-Lite config, {args.v2_layers} layers",
          "set": {"num_hidden_layers": args.v2_layers}}
    v3 = {"name": "v3", "base": None,
          "title": "DeepSeek-V3 architecture, ~1B (cpu_decode.py's)", "set": {}}
    if args.quick:
        v2["set"] = dict(QUICK_DIMS, qk_head_dim=48, head_dim=16)
        v2["title"] = "DeepSeek-V2-Lite architecture, tiny (--quick)"
        v3["set"] = dict(QUICK_DIMS, q_lora_rank=96, n_group=4, topk_group=2)
        v3["title"] = "DeepSeek-V3 architecture, tiny (--quick)"
    chosen = [m for m in (v2, v3) if m["name"] in args.models]
    if not chosen:
        raise SystemExit(f"--models {args.models}: expected v2lite and/or v3")
    return chosen


def log(msg):
    print(f"[{datetime.datetime.now().strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Proc:
    """One finished subprocess: rc, stdout, stderr, wall seconds, peak RSS."""

    def __init__(self, cmd, rc, out, err, wall, rss):
        self.cmd, self.rc, self.out, self.err, self.wall, self.rss = cmd, rc, out, err, wall, rss

    def tail(self, n=2000):
        return (self.err + self.out)[-n:]


LOGS = []


def run(cmd, check=True, env=None, cwd=None, quiet=False):
    """Runs cmd as its own subprocess; peak RSS (bytes) of exactly that
    process tree's largest member comes from os.wait4's rusage."""
    cmd = [str(c) for c in cmd]
    if not quiet:
        shown = [c if len(c) < 120 else c[:60] + f"...({len(c)} chars)" for c in cmd]
        log("+ " + " ".join(shown))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.time()
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.time() - start
        out.seek(0)
        err.seek(0)
        result = Proc(cmd, p.returncode, out.read().decode(errors="replace"),
                      err.read().decode(errors="replace"), wall, usage.ru_maxrss * 1024)
    LOGS.append({"cmd": cmd, "rc": result.rc, "wall_s": round(wall, 2),
                 "peak_rss_bytes": result.rss, "stderr_tail": result.err[-3000:],
                 "stdout_tail": result.out[-3000:]})
    if check and result.rc != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {result.rc}:\n{result.tail()}")
    return result


def last_json(text):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") or line.startswith("["):
            return json.loads(line)
    raise ValueError("no JSON line in output:\n" + text[-2000:])


# ---------------------------------------------------------------- environment

def ensure_venv(args):
    """bench/.venv with the pinned requirements; re-executes the harness in it."""
    need = "import torch, transformers, safetensors, numpy, matplotlib, yaml, tqdm, sentencepiece"
    if not os.path.exists(VENV_PY):
        log(f"creating {VENV}")
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if subprocess.run([VENV_PY, "-c", need], capture_output=True).returncode != 0:
        log(f"installing {REQUIREMENTS} into {VENV} (torch is large)")
        subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "-r", REQUIREMENTS], check=True)
    if os.path.realpath(sys.prefix) != os.path.realpath(VENV):
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])


def machine_info(threads):
    info = {"cpu_model": platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(), "threads": threads,
            "kernel": platform.release(), "python": platform.python_version()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        fields = dict(l.split(":", 1) for l in lscpu.splitlines() if ":" in l)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        info["cpu_model"] = fields.get("Model name", info["cpu_model"])
        cores = int(fields.get("Core(s) per socket", 0)) * int(fields.get("Socket(s)", 1))
        info["physical_cores"] = cores or os.cpu_count()
        flags = fields.get("Flags", "").split()
        info["isa"] = [f for f in ("avx2", "fma", "avx512f", "avx512bw", "avx512_bf16",
                                   "avx512_vnni", "amx_bf16") if f in flags]
        for key in ("L2 cache", "L3 cache"):
            if key in fields:
                info[key.lower().replace(" ", "_")] = fields[key]
    except (OSError, ValueError):
        pass
    with open("/proc/meminfo") as f:
        mem = {l.split(":")[0]: int(l.split()[1]) for l in f if l.split()[1].isdigit()}
    info["ram_GiB"] = round(mem["MemTotal"] / 2**20, 2)
    return info


def git_info():
    def git(*a):
        return subprocess.run(["git", "-C", ROOT] + list(a), capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# ---------------------------------------------------------------- checkpoints

def ensure_checkpoint(model, args):
    """The random checkpoint, cached by a hash of everything that defines it."""
    cmd = ["--seed", "0", "--tokenizer", args.tokenizer]
    if model["base"]:
        cmd += ["--config", model["base"]]
    for k, v in model["set"].items():
        cmd += ["--set", f"{k}={json.dumps(v)}"]
    key = json.dumps(cmd, sort_keys=True)
    if model["base"]:
        key += open(model["base"]).read()
    key += open(os.path.join(BENCH, "make_random_checkpoint.py")).read()
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    path = os.path.join(CACHE, "cpu_compare", f"ckpt-{model['name']}-{digest}")
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        log(f"generating {model['title']} -> {path}")
        r = run([args.python, os.path.join(BENCH, "make_random_checkpoint.py"), tmp] + cmd)
        log(r.out.strip())
        os.replace(tmp, path)
    return path


def safetensors_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        return json.loads(f.read(n))


def weight_accounting(ckpt):
    """Parameter counts and the bytes one decode token reads, per precision
    (2-D weights at the precision, vectors in f32; the routed experts at
    top_k / n_routed; one embedding row), plus the latent KV cache (MLA:
    kv_lora_rank + qk_rope_head_dim floats per layer and position)."""
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    tensors = safetensors_header(os.path.join(ckpt, "model.safetensors"))
    share = cfg["num_experts_per_tok"] / cfg["n_routed_experts"]
    params = active = matrix = active_matrix = 0
    for name, info in tensors.items():
        if name == "__metadata__":
            continue
        count = 1
        for d in info["shape"]:
            count *= d
        params += count
        if name == "model.embed_tokens.weight":
            a = cfg["hidden_size"]
        elif ".mlp.experts." in name:
            a = count * share
        else:
            a = count
        active += a
        if len(info["shape"]) >= 2:
            matrix += count
            active_matrix += a
    vectors, active_vectors = params - matrix, active - active_matrix
    kv_floats = (cfg["kv_lora_rank"] + cfg["qk_rope_head_dim"]) * cfg["num_hidden_layers"]
    return {"config": cfg, "parameters": params, "active_parameters_per_token": int(active),
            "weights_bytes": {d: int(matrix * MATRIX_BYTES[d]) + vectors * 4 for d in DTYPES},
            "decode_weight_bytes_per_token": {d: int(active_matrix * MATRIX_BYTES[d]
                                                     + active_vectors * 4) for d in DTYPES},
            "kv_bytes_per_position_latent_f32": kv_floats * 4}


def decode_bytes(acct, dtype, prompt, decode):
    positions = prompt + decode / 2  # attended on average over the decode steps
    return acct["decode_weight_bytes_per_token"][dtype] + acct["kv_bytes_per_position_latent_f32"] * positions


# ---------------------------------------------------------------- moec

def parse_size(number, unit):
    return float(number) * {"B": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30}[unit]


def run_moec(ckpt, dtype, prompts, args, work):
    artifact = os.path.join(work, f"moec-{dtype}.moec")
    p1, p2 = args.prompt_lengths
    # moec's default prefill chunk is 512 tokens and must fit the KV cache
    max_seq = max(p2 + args.decode_tokens, 512)
    res = {"max_seq_len": max_seq}
    c = run([os.path.join(BIN, "moec"), "compile", ckpt, "--target=cpu", f"--dtype={dtype}",
             f"--max-seq-len={max_seq}", "--stats", "-o", artifact])
    res["compile_seconds"] = round(c.wall, 2)
    res["compile_peak_rss_bytes"] = c.rss
    res["artifact_bytes"] = os.path.getsize(artifact)
    m = re.search(r"weights read per token ([\d.]+) (B|KiB|MiB|GiB), KV cache ([\d.]+) (B|KiB|MiB|GiB) per position",
                  c.err)
    if m:
        res["moec_stats_weight_bytes_per_decode_token"] = int(parse_size(m.group(1), m.group(2)))
        res["kv_bytes_per_position"] = int(parse_size(m.group(3), m.group(4)))
    m = re.search(r"weights \(([\d.]+[KMGB]?) parameters, ([\d.]+) (B|KiB|MiB|GiB)\)", c.err)
    if m:
        res["weights_bytes"] = int(parse_size(m.group(2), m.group(3)))
    base = [os.path.join(BIN, "moec-run"), artifact, "--ignore-eos", "--greedy", "--json",
            "--threads", str(args.threads)]
    # Warm-up: pages the artifact in (it may have left the page cache).
    run(base + ["--prompt-tokens", ",".join(map(str, prompts[p1][:8])), "-n", "2"])
    runs = []
    for rep in range(args.reps):
        for length, n in ((p1, args.decode_tokens + 1), (p2, 1)):
            r = run(base + ["--prompt-tokens", ",".join(map(str, prompts[length])), "-n", str(n)])
            j = last_json(r.out)
            runs.append({"prompt": length, "generate": n, "rep": rep, "wall_s": round(r.wall, 2),
                         "peak_rss_bytes": r.rss,
                         "prefill_tok_s": j["prefill_tokens"] / j["prefill_seconds"],
                         "decode_tok_s": (j["decode_tokens"] / j["decode_seconds"]
                                          if j["decode_tokens"] else None),
                         "generated_ids": j["generated_ids"][:16]})
    res["runs"] = runs
    short = [r for r in runs if r["prompt"] == p1]
    long_ = [r for r in runs if r["prompt"] == p2]
    res["prefill128_tok_s"] = median(r["prefill_tok_s"] for r in short)
    res["prefill512_tok_s"] = median(r["prefill_tok_s"] for r in long_)
    res["decode_tok_s"] = median(r["decode_tok_s"] for r in short)
    res["decode_tok_s_stddev"] = stddev([r["decode_tok_s"] for r in short])
    res["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in runs)
    res["generated_ids"] = short[0]["generated_ids"]
    res["artifact"] = artifact  # removed after the alternated runs
    return res


def mean(values):
    values = list(values)
    return sum(values) / len(values) if values else None


def median(values):
    values = sorted(values)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def stddev(values):
    if len(values) < 2:
        return 0.0
    m = mean(values)
    return (sum((v - m) ** 2 for v in values) / (len(values) - 1)) ** 0.5


# ---------------------------------------------------------------- llama.cpp

def llama_paths(args):
    d = os.path.abspath(args.llama_dir)
    return {"dir": d, "src": os.path.join(d, "src"), "build": os.path.join(d, "build"),
            "bench": os.path.join(d, "build", "bin", "llama-bench"),
            "driver": os.path.join(d, "build", "bin", "moec-llama-driver"),
            "version": os.path.join(d, "version.json")}


def ensure_llama(args):
    """Downloads (pip, PyPI sdist), builds and caches llama.cpp; returns paths + version."""
    p = llama_paths(args)
    os.makedirs(p["dir"], exist_ok=True)
    if not os.path.exists(os.path.join(p["src"], "convert_hf_to_gguf.py")):
        dl = os.path.join(p["dir"], "download")
        os.makedirs(dl, exist_ok=True)
        sdist = os.path.join(dl, f"llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz")
        if not os.path.exists(sdist):
            run([args.python, "-m", "pip", "download", f"llama-cpp-python=={LLAMA_CPP_PYTHON}",
                 "--no-binary", ":all:", "--no-deps", "-d", dl])
        log(f"extracting vendor/llama.cpp from {sdist}")
        tmp = p["src"] + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        prefix = f"llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/"
        changelog = ""
        with tarfile.open(sdist) as tar:
            members = []
            for m in tar.getmembers():
                if m.name.startswith(prefix) and len(m.name) > len(prefix):
                    m.name = m.name[len(prefix):]
                    members.append(m)
                elif m.name == f"llama_cpp_python-{LLAMA_CPP_PYTHON}/CHANGELOG.md":
                    changelog = tar.extractfile(m).read().decode()
            tar.extractall(tmp, members=members, filter="data")
        section = changelog.split(f"## [{LLAMA_CPP_PYTHON}]", 1)[-1].split("\n## [", 1)[0]
        commit = re.search(r"llama\.cpp@([0-9a-f]{7,40})", section)
        with open(p["version"], "w") as f:
            json.dump({"source": f"PyPI sdist llama-cpp-python=={LLAMA_CPP_PYTHON} (vendor/llama.cpp)",
                       "llama_cpp_commit": commit.group(1) if commit else None}, f, indent=2)
        shutil.rmtree(p["src"], ignore_errors=True)
        os.replace(tmp, p["src"])
    jobs = str(args.jobs or os.cpu_count() or 2)
    if not os.path.exists(p["bench"]):
        log("building llama.cpp (llama-bench); a few minutes on 2 cores")
        run(["cmake", "-S", p["src"], "-B", p["build"], "-G", "Ninja",
             "-DCMAKE_BUILD_TYPE=Release", "-DGGML_NATIVE=ON", "-DBUILD_SHARED_LIBS=ON",
             "-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=OFF",
             "-DLLAMA_BUILD_APP=OFF", "-DLLAMA_BUILD_TOOLS=ON", "-DLLAMA_OPENSSL=OFF"])
        run(["ninja", "-C", p["build"], "-j", jobs, "llama-bench"])
    driver_src = os.path.join(BENCH, "llama_driver.cpp")
    if (not os.path.exists(p["driver"])
            or os.path.getmtime(p["driver"]) < os.path.getmtime(driver_src)):
        libdir = os.path.dirname(p["bench"])
        run(["c++", "-O2", "-std=c++17", driver_src, "-I", os.path.join(p["src"], "include"),
             "-I", os.path.join(p["src"], "ggml", "include"), "-L", libdir,
             "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{libdir}", "-o", p["driver"]])
    version = json.load(open(p["version"])) if os.path.exists(p["version"]) else {}
    return p, version


def converter_input(ckpt, work):
    """The directory convert_hf_to_gguf.py reads, and what was changed for it.

    llama.cpp recognizes a DeepSeek-V2 without q_lora (DeepSeek-V2-Lite) only
    by its layer count (26 or 27, src/models/deepseek2.cpp); any other count
    makes the loader require deepseek2.attention.q_lora_rank. The converter
    writes that key only when config.json's q_lora_rank is not null, so it gets
    a copy of the config with q_lora_rank 0 (same weights, symlinked): the
    loader then takes q_proj (attn_q), as for the real V2-Lite. transformers
    and moec read the original (null)."""
    cfg = json.load(open(os.path.join(ckpt, "config.json")))
    if cfg.get("q_lora_rank") is not None or cfg["num_hidden_layers"] in (26, 27):
        return ckpt, []
    view = os.path.join(work, "llama-input-" + os.path.basename(ckpt))
    shutil.rmtree(view, ignore_errors=True)
    os.makedirs(view)
    for f in os.listdir(ckpt):
        if f != "config.json":
            os.symlink(os.path.join(ckpt, f), os.path.join(view, f))
    cfg["q_lora_rank"] = 0
    with open(os.path.join(view, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return view, ["q_lora_rank: null -> 0 in the config.json convert_hf_to_gguf.py reads, so the GGUF has "
                  "deepseek2.attention.q_lora_rank = 0; llama.cpp only treats 26/27-layer DeepSeek-V2 as "
                  "'lite' (no q_lora) and otherwise fails: 'key not found in model: "
                  "deepseek2.attention.q_lora_rank'"]


def convert_gguf(ckpt, dtype, args, paths, work):
    out = os.path.join(work, f"llama-{os.path.basename(ckpt)}-{dtype}.gguf")
    source, changes = converter_input(ckpt, work)
    if os.path.exists(out):
        return out, None, changes
    tmp = out + ".tmp"
    r = run([args.python, os.path.join(paths["src"], "convert_hf_to_gguf.py"), source,
             "--outtype", dtype, "--outfile", tmp], cwd=paths["src"])
    os.replace(tmp, out)
    return out, r, changes


def run_llama(ckpt, dtype, prompts, args, paths, work):
    p1, p2 = args.prompt_lengths
    n = args.decode_tokens
    res = {}
    gguf, conv, changes = convert_gguf(ckpt, dtype, args, paths, work)
    res["config_changes"] = changes
    if conv is not None:
        res["convert_seconds"] = round(conv.wall, 2)
        res["convert_peak_rss_bytes"] = conv.rss
    res["gguf_bytes"] = os.path.getsize(gguf)
    t = str(args.threads)
    # -lm none: weights read into memory at load, as moec prefaults its
    # mapping; with mmap the first timed repetitions fault the experts in.
    common = [paths["bench"], "-m", gguf, "-t", t, "-r", str(args.reps), "-lm", "none", "-o", "json"]
    pp = run(common + ["-p", f"{p1},{p2}", "-n", "0"])
    tg = run(common + ["-p", "0", "-n", str(n), "-d", str(p1)])
    tests = last_json_array(pp.out) + last_json_array(tg.out)
    res["llama_bench"] = [{k: x.get(k) for k in ("n_prompt", "n_gen", "n_depth", "avg_ts", "stddev_ts",
                                                  "samples_ts", "n_threads", "n_batch", "n_ubatch", "flash_attn",
                                                  "type_k", "type_v", "load_mode", "model_type",
                                                  "model_size", "model_n_params")} for x in tests]
    res["llama_bench_peak_rss_bytes"] = {"pp": pp.rss, "tg": tg.rss}
    res["llama_bench_build"] = {k: tests[0].get(k) for k in ("build_commit", "build_number",
                                                            "cpu_info", "backends")} if tests else {}
    by = {(x["n_prompt"], x["n_gen"]): x for x in tests}
    res["prefill128_tok_s"] = median(by[(p1, 0)]["samples_ts"])
    res["prefill512_tok_s"] = median(by[(p2, 0)]["samples_ts"])
    res["decode_tok_s"] = median(by[(0, n)]["samples_ts"])
    res["decode_tok_s_stddev"] = by[(0, n)]["stddev_ts"]
    res["weights_bytes"] = by[(p1, 0)].get("model_size")
    # The same prompt ids as moec and torch, through bench/llama_driver.cpp.
    same = []
    for length, gen in ((p1, n + 1), (p2, 1)):
        tok = os.path.join(work, f"prompt{length}.txt")
        with open(tok, "w") as f:
            f.write(",".join(map(str, prompts[length])))
        r = run([paths["driver"], "-m", gguf, "--tokens", tok, "-n", str(gen), "-t", t])
        j = last_json(r.out)
        same.append({"prompt": length, "generate": gen, "wall_s": round(r.wall, 2), "peak_rss_bytes": r.rss,
                     "prefill_tok_s": j["prompt_tokens"] / j["prefill_seconds"],
                     "decode_tok_s": (j["decode_tokens"] / j["decode_seconds"] if j["decode_tokens"] else None),
                     "n_ctx": j["n_ctx"], "generated_ids": j["generated_ids"][:16]})
        res["system_info"] = j.get("system_info")
    res["same_prompt_runs"] = same
    res["same_prompt"] = {"prefill128_tok_s": same[0]["prefill_tok_s"],
                          "prefill512_tok_s": same[1]["prefill_tok_s"],
                          "decode_tok_s": same[0]["decode_tok_s"]}
    res["peak_rss_bytes"] = max(r["peak_rss_bytes"] for r in same)
    res["generated_ids"] = same[0]["generated_ids"]
    res["gguf"] = gguf  # removed after the alternated runs
    return res


def run_alternated(moec, llama, prompts, args, paths, work):
    """moec-run and the llama.cpp driver on the same prompt ids, one after the
    other, --reps rounds (who goes first alternates): this VM's speed drifts
    over minutes, so ratios of neighbouring runs are the robust ones."""
    p1, p2 = args.prompt_lengths
    n = args.decode_tokens
    t = str(args.threads)
    moec_base = [os.path.join(BIN, "moec-run"), moec["artifact"], "--ignore-eos", "--greedy", "--json",
                 "--threads", t]

    def moec_run(length, gen):
        # The llama.cpp driver reads its GGUF into memory, which can evict
        # the artifact from the page cache (V2-Lite f32: 13 GB each): read
        # it back first, untimed, so that moec-run does not time disk reads.
        with open(moec["artifact"], "rb") as f:
            while f.read(1 << 24):
                pass
        j = last_json(run(moec_base + ["--prompt-tokens", ",".join(map(str, prompts[length])),
                                       "-n", str(gen)]).out)
        return j["prefill_tokens"] / j["prefill_seconds"], (
            j["decode_tokens"] / j["decode_seconds"] if j["decode_tokens"] else None)

    def llama_run(length, gen):
        tok = os.path.join(work, f"prompt{length}.txt")
        j = last_json(run([paths["driver"], "-m", llama["gguf"], "--tokens", tok, "-n", str(gen),
                           "-t", t]).out)
        return j["prompt_tokens"] / j["prefill_seconds"], (
            j["decode_tokens"] / j["decode_seconds"] if j["decode_tokens"] else None)

    rounds = []
    for rnd in range(args.reps):
        row = {"round": rnd}
        for length, gen in ((p1, n + 1), (p2, 1)):
            order = (("moec", moec_run), ("llama.cpp", llama_run))
            for tool, fn in (order if rnd % 2 == 0 else order[::-1]):
                row[f"{tool} p{length}"] = fn(length, gen)
        rounds.append(row)
    ratios = {"prefill128_tok_s": median(r[f"moec p{p1}"][0] / r[f"llama.cpp p{p1}"][0] for r in rounds),
              "prefill512_tok_s": median(r[f"moec p{p2}"][0] / r[f"llama.cpp p{p2}"][0] for r in rounds),
              "decode_tok_s": median(r[f"moec p{p1}"][1] / r[f"llama.cpp p{p1}"][1] for r in rounds)}
    return {"rounds": rounds, "ratios": {k: round(v, 3) for k, v in ratios.items()}}


def last_json_array(text):
    start = text.find("[")
    return json.loads(text[start:]) if start >= 0 else []


# ---------------------------------------------------------------- torch

def run_torch(ckpt, dtype, prompts, args, work):
    p1, p2 = args.prompt_lengths
    tok = os.path.join(work, "prompts.json")
    with open(tok, "w") as f:
        json.dump({str(k): v for k, v in prompts.items()}, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    base = [args.python, os.path.abspath(__file__), "--torch-worker", "--ckpt", ckpt, "--dtype", dtype,
            "--threads", str(args.threads), "--prompt-file", tok,
            "--prompt-lengths", f"{p1},{p2}", "--decode-tokens", str(args.decode_tokens)]
    res = {}
    pre = run(base + ["--measure", "prefill"], env=env)
    jp = last_json(pre.out)
    dec = run(base + ["--measure", "decode"], env=env)
    jd = last_json(dec.out)
    res.update({"prefill_run": dict(jp, wall_s=round(pre.wall, 2), peak_rss_bytes=pre.rss),
                "decode_run": dict(jd, wall_s=round(dec.wall, 2), peak_rss_bytes=dec.rss)})
    res["prefill128_tok_s"] = p1 / jp[f"prefill{p1}_seconds"]
    res["prefill512_tok_s"] = p2 / jp[f"prefill{p2}_seconds"]
    res["decode_tok_s"] = jd["decode_tokens"] / jd["decode_seconds"]
    res["peak_rss_bytes"] = max(pre.rss, dec.rss)
    res["load_seconds"] = jp["load_seconds"]
    res["weights_bytes"] = jp["weights_bytes"]
    res["attn_implementation"] = jp.get("attn_implementation")
    res["generated_ids"] = jd["generated_ids"][:16]
    res["versions"] = {"torch": jp["torch"], "transformers": jp["transformers"]}
    return res


class _Stamps:
    """A generate() streamer that only takes the time of every put()."""

    def __init__(self):
        self.times = []

    def put(self, value):
        self.times.append(time.perf_counter())

    def end(self):
        pass


def torch_worker(a):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    torch.set_num_threads(a.threads)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(a.ckpt, dtype=dtype)
    model.eval()
    out = {"load_seconds": round(time.perf_counter() - start, 2), "torch": torch.__version__,
           "transformers": transformers.__version__, "threads": torch.get_num_threads(),
           "attn_implementation": getattr(model.config, "_attn_implementation", None),
           "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters())}
    prompts = json.load(open(a.prompt_file))
    p1, p2 = [int(x) for x in a.prompt_lengths.split(",")]
    with torch.inference_mode():
        model(torch.tensor([prompts[str(p1)][:8]]), use_cache=False, logits_to_keep=1)  # warm-up
        if a.measure == "prefill":
            for length in (p1, p2):
                ids = torch.tensor([prompts[str(length)]])
                t = time.perf_counter()
                model(ids, use_cache=True, logits_to_keep=1)
                out[f"prefill{length}_seconds"] = time.perf_counter() - t
        else:
            ids = torch.tensor([prompts[str(p1)]])
            stamps = _Stamps()
            n = a.decode_tokens + 1
            t = time.perf_counter()
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                 min_new_tokens=n, do_sample=False, streamer=stamps,
                                 pad_token_id=model.config.eos_token_id)
            new = stamps.times[1:]  # the first put() is the prompt
            out.update({"generate_seconds": time.perf_counter() - t,
                        "prefill_seconds": new[0] - t, "decode_tokens": len(new) - 1,
                        "decode_seconds": new[-1] - new[0],
                        "generated_ids": gen[0, ids.shape[1]:].tolist()[:16]})
    print(json.dumps(out))


# ---------------------------------------------------------------- report

def ratio(a, b):
    return round(a / b, 3) if a and b else None


def evaluate(entry, acct, dtype, stream, args):
    moec, llama, torch_ = (entry.get(t) for t in TOOLS)
    ok = lambda r: r and "error" not in r
    p1, p2 = args.prompt_lengths
    per_token = decode_bytes(acct, dtype, p1, args.decode_tokens)
    for r in (moec, llama, torch_):
        if ok(r) and r.get("decode_tok_s"):
            r["decode_bytes_per_token"] = int(per_token)
            r["achieved_GBps"] = round(per_token * r["decode_tok_s"] / 1e9, 2)
            r["fraction_of_copy_bw"] = round(per_token * r["decode_tok_s"] / 1e9 / stream["copy_GBps"], 3)
            r["fraction_of_read_bw"] = round(per_token * r["decode_tok_s"] / 1e9 / stream["read_GBps"], 3)
    ratios, targets = {}, {}
    metrics = ("prefill128_tok_s", "prefill512_tok_s", "decode_tok_s")
    for name, other in (("llama.cpp", llama), ("torch", torch_)):
        if ok(moec) and ok(other):
            ratios[f"moec/{name}"] = {m: ratio(moec[m], other[m]) for m in metrics}
            ratios[f"moec/{name}"]["peak_rss"] = ratio(moec["peak_rss_bytes"], other["peak_rss_bytes"])
    if ok(moec) and ok(llama) and llama.get("same_prompt"):
        ratios["moec/llama.cpp same prompt ids"] = {m: ratio(moec[m], llama["same_prompt"][m]) for m in metrics}
    if entry.get("alternated"):
        ratios["moec/llama.cpp alternated"] = dict(entry["alternated"]["ratios"])
    if ok(moec):
        if ok(llama):
            # The alternated runs, where present: neighbours in time.
            r = ratios.get("moec/llama.cpp alternated", ratios["moec/llama.cpp"])
            targets["decode >= 1.2x llama.cpp"] = {"value": r["decode_tok_s"], "target": 1.2,
                                                   "met": bool(r["decode_tok_s"] and r["decode_tok_s"] >= 1.2)}
            targets["prefill512 >= llama.cpp"] = {"value": r["prefill512_tok_s"], "target": 1.0,
                                                  "met": bool(r["prefill512_tok_s"] and r["prefill512_tok_s"] >= 1.0)}
        f = moec.get("fraction_of_copy_bw")
        targets["decode >= 0.70 of copy bandwidth"] = {"value": f, "target": 0.70, "met": bool(f and f >= 0.70),
                                                        "achieved_GBps": moec.get("achieved_GBps"),
                                                        "copy_GBps": stream["copy_GBps"]}
        weights = moec.get("weights_bytes") or acct["weights_bytes"][dtype]
        kv = moec.get("kv_bytes_per_position", acct["kv_bytes_per_position_latent_f32"]) * moec["max_seq_len"]
        limit = (weights + kv) * 1.10
        targets["peak RSS <= weights + KV + 10%"] = {
            "value": moec["peak_rss_bytes"], "target": int(limit), "weights_bytes": weights,
            "kv_bytes": kv, "met": moec["peak_rss_bytes"] <= limit}
    entry["ratios"], entry["targets"] = ratios, targets
    # A sanity check, not a target: greedy ids after the same prompt (random
    # weights give flat logits, so precision differences flip them sooner or later).
    agree = {}
    for name, other in (("llama.cpp", llama), ("torch", torch_)):
        if ok(moec) and ok(other) and other.get("generated_ids"):
            a, b = moec["generated_ids"], other["generated_ids"]
            same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
            agree[f"moec vs {name}"] = f"first {same} of {min(len(a), len(b))} greedy ids equal"
    entry["generated_ids_agreement"] = agree


def gib(b):
    return f"{b / 2**30:.2f}" if b else "-"


def fmt(v, digits=1):
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(result):
    p1, p2 = result["settings"]["prompt_lengths"]
    n = result["settings"]["decode_tokens"]
    lines = [f"CPU: {result['machine']['cpu_model']}, {result['machine']['threads']} threads; copy "
             f"{result['machine']['stream']['copy_GBps']} GB/s, read {result['machine']['stream']['read_GBps']} GB/s",
             "", f"| checkpoint | dtype | tool | prefill{p1} tok/s | prefill{p2} tok/s | decode tok/s (N={n}) "
             "| peak RSS GiB | weights GiB | decode BW / copy | decode BW / read |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for ck in result["checkpoints"]:
        for dtype, entry in ck["results"].items():
            for tool in TOOLS:
                r = entry.get(tool)
                if not r:
                    continue
                if "error" in r:
                    lines.append(f"| {ck['name']} | {dtype} | {tool} | error: {r['error'][:60]!r} |||||||")
                    continue
                lines.append(f"| {ck['name']} | {dtype} | {tool} | {fmt(r['prefill128_tok_s'])} | "
                             f"{fmt(r['prefill512_tok_s'])} | {fmt(r['decode_tok_s'], 2)} | "
                             f"{gib(r['peak_rss_bytes'])} | {gib(r.get('weights_bytes'))} | "
                             f"{fmt(r.get('fraction_of_copy_bw'), 3)} | {fmt(r.get('fraction_of_read_bw'), 3)} |")
    lines += ["", f"| checkpoint | dtype | ratio | prefill{p1} | prefill{p2} | decode | peak RSS |",
              "|---|---|---|---:|---:|---:|---:|"]
    for ck in result["checkpoints"]:
        for dtype, entry in ck["results"].items():
            for name, r in entry.get("ratios", {}).items():
                lines.append(f"| {ck['name']} | {dtype} | {name} | {fmt(r['prefill128_tok_s'], 2)} | "
                             f"{fmt(r['prefill512_tok_s'], 2)} | {fmt(r['decode_tok_s'], 2)} | "
                             f"{fmt(r.get('peak_rss'), 2)} |")
    lines += ["", "| checkpoint | dtype | target | value | met |", "|---|---|---|---:|---|"]
    for ck in result["checkpoints"]:
        for dtype, entry in ck["results"].items():
            for name, t in entry.get("targets", {}).items():
                v = t["value"]
                shown = (f"{gib(v)} GiB <= {gib(t['target'])} GiB" if "RSS" in name
                         else f"{fmt(v, 3)} (>= {t['target']})")
                lines.append(f"| {ck['name']} | {dtype} | {name} | {shown} | {'yes' if t['met'] else 'NO'} |")
    return "\n".join(lines)


def chart(result, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib missing: no chart")
        return
    p1, p2 = result["settings"]["prompt_lengths"]
    metrics = [("prefill128_tok_s", f"prefill {p1} tok/s"), ("prefill512_tok_s", f"prefill {p2} tok/s"),
               ("decode_tok_s", "decode tok/s"), ("peak_rss_bytes", "peak RSS GiB")]
    rows = [(ck, dtype, entry) for ck in result["checkpoints"] for dtype, entry in ck["results"].items()]
    if not rows:
        return
    colors = {"moec": "#1f77b4", "llama.cpp": "#ff7f0e", "torch": "#2ca02c"}
    fig, axes = plt.subplots(len(rows), len(metrics), figsize=(3.6 * len(metrics), 2.8 * len(rows)),
                             squeeze=False)
    for i, (ck, dtype, entry) in enumerate(rows):
        for j, (key, label) in enumerate(metrics):
            ax = axes[i][j]
            names, values = [], []
            for tool in TOOLS:
                r = entry.get(tool)
                if r and "error" not in r and r.get(key):
                    names.append(tool)
                    values.append(r[key] / 2**30 if key == "peak_rss_bytes" else r[key])
            bars = ax.bar(names, values, color=[colors[t] for t in names])
            for b, v in zip(bars, values):
                ax.annotate(f"{v:,.0f}" if v >= 100 else f"{v:.3g}", (b.get_x() + b.get_width() / 2, b.get_height()),
                            ha="center", va="bottom", fontsize=8)
            if key == "decode_tok_s" and "moec" in entry and entry["moec"].get("decode_bytes_per_token"):
                # the decode speed the copy bandwidth allows
                roof = result["machine"]["stream"]["copy_GBps"] * 1e9 / entry["moec"]["decode_bytes_per_token"]
                ax.axhline(roof, color="gray", ls="--", lw=1)
                ax.annotate("copy-bandwidth roof", (1, roof), xycoords=("axes fraction", "data"),
                            fontsize=7, color="gray", va="bottom", ha="right")
            ax.set_title(f"{ck['name']} {dtype}: {label}", fontsize=9)
            ax.tick_params(labelsize=8)
            ax.margins(y=0.15)
    fig.suptitle(f"moec vs llama.cpp vs PyTorch eager, {result['machine']['cpu_model']}, "
                 f"{result['machine']['threads']} threads" + (" (--quick smoke run)" if result["quick"] else ""),
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {path}")


# ---------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for every tool (default: nproc)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny models, prompts 32/64, 16 decode tokens, 1 repetition; "
                             "writes cpu_compare.smoke.json/png")
    parser.add_argument("--skip-moec", action="store_true")
    parser.add_argument("--skip-llama", action="store_true")
    parser.add_argument("--skip-torch", action="store_true")
    parser.add_argument("--out-dir", default=os.path.join(BENCH, "results"))
    parser.add_argument("--name", help="output basename (default cpu_compare, cpu_compare.smoke with --quick)")
    parser.add_argument("--llama-dir", default=os.path.join(CACHE, "llama.cpp"),
                        help="where llama.cpp's source and build are cached")
    parser.add_argument("--models", default="v2lite,v3", help="comma-separated: v2lite, v3")
    parser.add_argument("--dtypes", default="bf16,f32,q8_0")
    parser.add_argument("--v2-layers", type=int, default=6, help="layers of the DeepSeek-V2-Lite checkpoint")
    parser.add_argument("--prompt-lengths", help="two prompt lengths (default 128,512; --quick 32,64)")
    parser.add_argument("--decode-tokens", type=int, help="decode steps (default 128; --quick 16)")
    parser.add_argument("--reps", type=int, help="repetitions of moec-run and llama-bench, median reported "
                                                  "(default 3; --quick 1)")
    parser.add_argument("--tokenizer", default=TOKENIZER)
    parser.add_argument("--keep-artifacts", action="store_true",
                        help="keep the .moec artifacts and GGUF files (GGUFs are then reused)")
    parser.add_argument("--jobs", type=int, help="parallel jobs for the llama.cpp build (default nproc)")
    parser.add_argument("--no-venv", action="store_true", help="use this interpreter as it is")
    # the torch subprocess
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--prompt-file", help=argparse.SUPPRESS)
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.torch_worker:
        args.prompt_lengths = args.prompt_lengths or "128,512"
        args.decode_tokens = args.decode_tokens or 128
        return torch_worker(args)
    if not args.no_venv:
        ensure_venv(args)
    args.python = sys.executable
    args.prompt_lengths = [int(x) for x in (args.prompt_lengths or ("32,64" if args.quick else "128,512")).split(",")]
    assert len(args.prompt_lengths) == 2, "--prompt-lengths takes two lengths"
    args.decode_tokens = args.decode_tokens or (16 if args.quick else 128)
    args.reps = args.reps or (1 if args.quick else 3)
    args.models = args.models.split(",")
    dtypes = args.dtypes.split(",")
    name = args.name or ("cpu_compare.smoke" if args.quick else "cpu_compare")
    started = time.time()
    stages = {}

    for tool in ("moec", "moec-run", "moec-bench-stream"):
        if not os.path.exists(os.path.join(BIN, tool)):
            raise SystemExit(f"{BIN}/{tool} is missing: build moec first (./scripts/test.sh or ninja -C build)")

    p1, p2 = args.prompt_lengths
    rng = random.Random(1234)
    long_prompt = [rng.randrange(100, 128000) for _ in range(p2)]  # ordinary tokens, no specials
    prompts = {p2: long_prompt, p1: long_prompt[:p1]}

    result = {"harness": "bench/cpu_compare.py", "command": " ".join(["python3", "bench/cpu_compare.py"] + sys.argv[1:]),
              "date": datetime.datetime.now().isoformat(timespec="seconds"), "quick": args.quick,
              "machine": machine_info(args.threads), "versions": {"moec": git_info(), "python": platform.python_version()},
              "settings": {"threads": args.threads, "prompt_lengths": args.prompt_lengths,
                           "decode_tokens": args.decode_tokens, "reps": args.reps,
                           "prompt": f"{p2} ids from random.Random(1234).randrange(100, 128000); "
                                     f"the {p1}-token prompt is its prefix; no BOS (llama-bench adds BOS to its own random prompt)",
                           "decode": f"{args.decode_tokens} single-token greedy steps after the {p1}-token prompt, EOS ignored",
                           "precisions": dtypes},
              "notes": {
                  "q8_0": "moec --dtype=q8_0 (GGUF Q8_0 weight blocks, f32 activations) against llama.cpp's "
                          "--outtype q8_0 GGUF (the same weight bytes; llama.cpp also quantizes the activations "
                          "to Q8_0 for integer dot products); torch is not run at q8_0",
                  "llama.cpp numbers": "prefill from llama-bench -p P1,P2 -n 0 (its own random prompt), "
                                       "decode from llama-bench -p 0 -n N -d P1 (N steps at depth P1); median of "
                                       "the -r samples after llama-bench's warm-up; -lm none (weights read into "
                                       "memory: with mmap the first timed repetitions page-fault the experts in). "
                                       "same_prompt: bench/llama_driver.cpp on moec's prompt ids (one run, no mmap; "
                                       "peak RSS from it).",
                  "alternated": "moec-run and bench/llama_driver.cpp on the same prompt ids, one after the other, "
                                "--reps rounds (the first tool alternates); the median of the per-round ratios "
                                "is the 'alternated' ratio, which the decode and prefill targets use (this VM's "
                                "speed drifts by up to 1.5x over minutes, so only neighbouring runs compare)",
                  "moec numbers": "moec-run --json, median over --reps runs after one warm-up run; every run is "
                                  "a new process that maps the artifact lazily (moec-run has no prefault option), so "
                                  "its first touches of each expert are page faults (from the page cache)",
                  "torch numbers": "one forward per prompt (logits_to_keep=1, after a short warm-up forward); "
                                   "decode from generate() timestamps (streamer), excluding the prefill",
                  "decode bytes per token": "weights at the precision (vectors f32), routed experts at top_k/n_routed, "
                                            "one embedding row, + the latent MLA KV cache (f32) at the mean position",
                  "peak RSS": "ru_maxrss of the measuring process (os.wait4), max over that tool's runs; "
                              "file-backed pages count (moec's mapped artifact: only the experts it touched; "
                              "torch: also the safetensors pages from_pretrained mapped)",
                  "keys": "prefill128_tok_s / prefill512_tok_s hold the two settings.prompt_lengths "
                          "(32 and 64 with --quick)"},
              "checkpoints": []}
    if args.quick:
        result["notes"]["quick"] = "smoke run: tiny models and lengths, not a measurement"
    errors = []

    t = time.time()
    stream = json.loads(run([os.path.join(BIN, "moec-bench-stream"), args.threads,
                             "256" if args.quick else "1024"]).out)
    result["machine"]["stream"] = stream
    stages["stream"] = time.time() - t

    paths = None
    if not args.skip_llama:
        t = time.time()
        try:
            paths, version = ensure_llama(args)
            result["versions"]["llama.cpp"] = version
        except Exception as e:  # keep going with the other tools
            errors.append(f"llama.cpp build: {e}")
            log(f"llama.cpp unavailable: {e}")
        stages["llama.cpp setup"] = time.time() - t
    if not args.skip_torch:
        r = run([args.python, "-c", "import torch, transformers; print(torch.__version__, transformers.__version__)"],
                quiet=True)
        tv, trv = r.out.split()
        result["versions"]["torch"], result["versions"]["transformers"] = tv, trv

    work = os.path.join(CACHE, "cpu_compare", "work")
    os.makedirs(work, exist_ok=True)
    for model in models(args):
        t = time.time()
        ckpt = ensure_checkpoint(model, args)
        stages[f"{model['name']} checkpoint"] = time.time() - t
        acct = weight_accounting(ckpt)
        cfg = acct.pop("config")
        changes = [f"vocab_size {cfg['vocab_size']}, bos_token_id {cfg.get('bos_token_id')}, eos_token_id "
                   f"{cfg.get('eos_token_id')}: the DeepSeek-V3 tokenizer's (copied into the checkpoint)"]
        changes += [f"{k} = {json.dumps(v)}" for k, v in model["set"].items()]
        ck = {"name": model["name"], "title": model["title"], "dir": os.path.relpath(ckpt, ROOT),
              "base_config": os.path.relpath(model["base"], ROOT) if model["base"]
              else "bench/make_random_checkpoint.py built-in",
              "config_changes": changes, **acct,
              "architecture": {k: cfg.get(k) for k in (
                  "architectures", "model_type", "num_hidden_layers", "hidden_size", "num_attention_heads",
                  "q_lora_rank", "kv_lora_rank", "n_routed_experts", "num_experts_per_tok",
                  "n_shared_experts", "first_k_dense_replace", "topk_method", "scoring_func", "n_group",
                  "topk_group", "vocab_size")},
              "results": {}}
        result["checkpoints"].append(ck)
        for dtype in dtypes:
            entry = ck["results"].setdefault(dtype, {})
            for tool, skip, fn in (("moec", args.skip_moec, lambda: run_moec(ckpt, dtype, prompts, args, work)),
                                   ("llama.cpp", args.skip_llama or paths is None,
                                    lambda: run_llama(ckpt, dtype, prompts, args, paths, work)),
                                   ("torch", args.skip_torch or dtype == "q8_0",
                                    lambda: run_torch(ckpt, dtype, prompts, args, work))):
                if skip:
                    continue
                log(f"== {model['name']} {dtype} {tool}")
                t = time.time()
                try:
                    entry[tool] = fn()
                except Exception as e:
                    log(f"{tool} failed: {e}")
                    errors.append(f"{model['name']} {dtype} {tool}: {e}")
                    entry[tool] = {"error": str(e)[-2000:]}
                entry[tool]["seconds"] = round(time.time() - t, 1)
                stages[f"{model['name']} {dtype} {tool}"] = time.time() - t
            moec_r, llama_r = entry.get("moec", {}), entry.get("llama.cpp", {})
            if moec_r.get("artifact") and llama_r.get("gguf") and args.reps > 0:
                log(f"== {model['name']} {dtype} moec and llama.cpp alternated")
                t = time.time()
                try:
                    entry["alternated"] = run_alternated(moec_r, llama_r, prompts, args, paths, work)
                except Exception as e:
                    log(f"alternated runs failed: {e}")
                    errors.append(f"{model['name']} {dtype} alternated: {e}")
                stages[f"{model['name']} {dtype} alternated"] = time.time() - t
            if not args.keep_artifacts:
                for r, key in ((moec_r, "artifact"), (llama_r, "gguf")):
                    if r.get(key) and os.path.exists(r[key]):
                        os.remove(r[key])
            evaluate(entry, acct, dtype, stream, args)
        if not args.keep_artifacts:
            for f in os.listdir(work):
                if f.endswith((".gguf", ".moec")):
                    os.remove(os.path.join(work, f))

    result["stage_seconds"] = {k: round(v, 1) for k, v in stages.items()}
    result["elapsed_seconds"] = round(time.time() - started, 1)
    result["errors"] = errors
    os.makedirs(args.out_dir, exist_ok=True)
    path = os.path.join(args.out_dir, name + ".json")
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    log_path = os.path.join(CACHE, "cpu_compare", name + ".commands.json")
    with open(log_path, "w") as f:
        json.dump(LOGS, f, indent=1)
    log(f"wrote {path} (every command with its stderr: {os.path.relpath(log_path, ROOT)})")
    chart(result, os.path.join(args.out_dir, name + ".png"))
    print(markdown(result))
    if errors:
        print("\nerrors:\n" + "\n".join(e.splitlines()[0] for e in errors))
        sys.exit(1)


if __name__ == "__main__":
    main()
