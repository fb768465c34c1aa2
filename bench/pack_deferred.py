#!/usr/bin/env python3
"""Builds a .moec artifact from a `moec compile --weights=deferred` skeleton
and a real checkpoint.

`moec compile CKPT ... --weights=deferred -o SKEL.moec` (CKPT may be a sparse
checkpoint: headers only) writes SKEL.moec (the artifact without its weight
segment) and SKEL.moec.weights.json (format moec-deferred-weights-1): where
every weight goes and how it is computed from checkpoint tensors. This script
writes

    OUT = SKEL[0:W] + WEIGHTS + SKEL[W:]

W = weights_offset, WEIGHTS = weights_size bytes (zero outside the weights),
computing each weight's `source` expression from CKPT_DIR (a single
model.safetensors, or shards with model.safetensors.index.json), converting to
its dtype (bf16 with round-to-nearest-even, or f32). Streaming, one weight at
a time per job (memory: about the largest weight per job); the output is
written to OUT.tmp-PID and renamed at the end.

Source expressions:
  {"param": NAME}                          a checkpoint tensor
  {"stack": [E, ...]}                      new leading dimension
  {"concat": [E, ...]}                     along dimension 0
  {"concat": [E, ...], "dim": D}           along dimension D (gate/up stacks)
  {"slice": E, "dim": d, "offset": o, "size": s}
  {"dequantize_fp8": {"weight": E, "scale_inv": E, "block": [r, c]}}
Checkpoints saved with fused experts (transformers 5 without the per-expert
reverse mapping: `mlp.experts.gate_up_proj` [E, 2I, H], `mlp.experts.down_proj`
[E, H, I]) are read through a fallback for the per-expert names.

Needs numpy only (torch only for in-memory torch tensors, see TorchSource).
Usage: pack_deferred.py SKEL.moec CKPT_DIR OUT.moec [--jobs N] [--check]
Importable: pack(skel, source_or_dir, out, jobs=4, log=print).
"""
import argparse
import concurrent.futures
import json
import math
import os
import re
import struct
import sys
import threading
import time

import numpy as np

FORMAT = "moec-deferred-weights-1"
ELEMENT = {"bf16": 2, "f32": 4}


class PackError(Exception):
    pass


# ---------------------------------------------------------------------------
# Values: (kind, ndarray) with kind one of bf16 (uint16 bits), f16, f32, f8e4m3
# (uint8 bits), f64. Structural ops keep the raw kind; conversion happens once.
# ---------------------------------------------------------------------------

def _fp8_e4m3fn_table():
    table = np.zeros(256, np.float32)
    for b in range(256):
        sign = -1.0 if b & 0x80 else 1.0
        exp, man = (b >> 3) & 0xF, b & 0x7
        if exp == 0xF and man == 0x7:
            table[b] = np.nan
        elif exp == 0:
            table[b] = sign * man / 8.0 * 2.0 ** -6
        else:
            table[b] = sign * (1.0 + man / 8.0) * 2.0 ** (exp - 7)
    return table


FP8_E4M3FN = _fp8_e4m3fn_table()


def to_f32(kind, a):
    if kind == "f32":
        return a
    if kind == "bf16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if kind == "f16":
        return a.astype(np.float32)
    if kind == "f8e4m3":
        return FP8_E4M3FN[a]
    if kind == "f64":
        return a.astype(np.float32)
    raise PackError(f"cannot convert {kind} to float32")


def f32_to_bf16_bits(a):
    """float32 -> bfloat16 bits, round to nearest even (torch's .to(bfloat16))."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> 16) & np.uint32(1))) >> 16).astype(np.uint16)
    nan = (bits & np.uint32(0x7FFFFFFF)) > np.uint32(0x7F800000)
    if nan.any():
        rounded[nan] = ((bits[nan] >> 16) | np.uint32(0x40)).astype(np.uint16)
    return rounded


def convert(kind, a, dtype):
    """Value -> contiguous ndarray holding the bytes of `dtype`."""
    if dtype == "bf16":
        if kind == "bf16":
            return np.ascontiguousarray(a)
        return f32_to_bf16_bits(to_f32(kind, a))
    if dtype == "f32":
        return np.ascontiguousarray(to_f32(kind, a), dtype=np.float32)
    raise PackError(f"unknown weight dtype {dtype!r}")


# ---------------------------------------------------------------------------
# Tensor sources
# ---------------------------------------------------------------------------

ST_KIND = {"BF16": ("bf16", np.uint16), "F16": ("f16", np.float16),
           "F32": ("f32", np.float32), "F64": ("f64", np.float64),
           "F8_E4M3": ("f8e4m3", np.uint8)}


def read_safetensors_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise PackError(f"{path}: not a safetensors file")
        n = struct.unpack("<Q", raw)[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


class CheckpointSource:
    """A HuggingFace checkpoint directory (single file or index.json shards);
    tensors are numpy memmaps of the files (nothing is read until used)."""

    def __init__(self, path):
        self.path = path
        if os.path.isfile(path):
            files = [path]
        else:
            index = os.path.join(path, "model.safetensors.index.json")
            if os.path.exists(index):
                weight_map = json.load(open(index))["weight_map"]
                files = sorted({os.path.join(path, f) for f in weight_map.values()})
            else:
                files = sorted(os.path.join(path, f) for f in os.listdir(path)
                               if f.endswith(".safetensors"))
        if not files:
            raise PackError(f"{path}: no .safetensors files")
        self.entries = {}
        for fpath in files:
            start, header = read_safetensors_header(fpath)
            size = os.path.getsize(fpath)
            for name, info in header.items():
                if info["dtype"] not in ST_KIND:
                    raise PackError(f"{fpath}: {name}: unsupported dtype {info['dtype']}")
                begin, end = info["data_offsets"]
                if start + end > size:
                    raise PackError(f"{fpath}: {name}: data past the end of the file")
                self.entries[name] = (fpath, info["dtype"], list(info["shape"]),
                                      start + begin, end - begin)
        self._maps = {}
        self._lock = threading.Lock()

    def names(self):
        return self.entries.keys()

    def shape(self, name):
        return self.entries[name][2]

    def get(self, name):
        fpath, st, shape, offset, nbytes = self.entries[name]
        kind, npdtype = ST_KIND[st]
        with self._lock:
            mm = self._maps.get(fpath)
            if mm is None:
                mm = self._maps[fpath] = np.memmap(fpath, np.uint8, "r")
        count = math.prod(shape)
        if nbytes != count * np.dtype(npdtype).itemsize:
            raise PackError(f"{fpath}: {name}: {nbytes} bytes for shape {shape} {st}")
        return kind, mm[offset:offset + nbytes].view(npdtype).reshape(shape)


class TorchSource:
    """In-memory torch tensors (a state_dict, possibly on the GPU)."""

    KINDS = {"torch.bfloat16": "bf16", "torch.float16": "f16", "torch.float32": "f32",
             "torch.float64": "f64", "torch.float8_e4m3fn": "f8e4m3"}

    def __init__(self, tensors):
        self.tensors = dict(tensors)

    def names(self):
        return self.tensors.keys()

    def shape(self, name):
        return list(self.tensors[name].shape)

    def get(self, name):
        import torch
        t = self.tensors[name].detach()
        kind = self.KINDS.get(str(t.dtype))
        if kind is None:
            raise PackError(f"{name}: unsupported dtype {t.dtype}")
        t = t.contiguous().to("cpu")
        if kind == "bf16":
            return kind, t.view(torch.int16).numpy().view(np.uint16)
        if kind == "f8e4m3":
            return kind, t.view(torch.uint8).numpy()
        return kind, t.numpy()


class DictSource(TorchSource):
    """(kind, ndarray) pairs, for tests."""

    def shape(self, name):
        return list(self.tensors[name][1].shape)

    def get(self, name):
        return self.tensors[name]


# ---------------------------------------------------------------------------
# Expressions
# ---------------------------------------------------------------------------

EXPERT_RE = re.compile(r"^(.*\.mlp\.experts)\.(\d+)\.(gate_proj|up_proj|down_proj)\.weight$")


class Resolver:
    """Maps {"param": NAME} to an expression over the source's tensors,
    falling back to fused expert tensors when per-expert names are absent."""

    def __init__(self, source):
        self.source = source
        self.names = set(source.names())
        self.fallbacks = 0

    def missing(self, name):
        def common(n):
            return len(os.path.commonprefix([n, name]))
        sample = sorted(self.names, key=lambda n: (-common(n), n))[:5]
        return PackError(f"checkpoint has no tensor {name!r} ({len(self.names)} tensors; "
                         f"e.g. {', '.join(sample)})")

    def param(self, name):
        if name in self.names:
            return {"param": name}
        m = EXPERT_RE.match(name)
        if m:
            prefix, e, proj = m.group(1), int(m.group(2)), m.group(3)
            fused = prefix + (".down_proj" if proj == "down_proj" else ".gate_up_proj")
            if fused in self.names:
                shape = self.source.shape(fused)
                if len(shape) != 3 or e >= shape[0]:
                    raise PackError(f"{fused}: shape {shape} has no expert {e} (for {name})")
                self.fallbacks += 1
                one = {"index": {"param": fused}, "i": e}
                if proj == "down_proj":
                    return one  # [H, I]
                rows = shape[1] // 2  # [2I, H]: gate rows first, then up
                return {"slice": one, "dim": 0, "offset": 0 if proj == "gate_proj" else rows,
                        "size": rows}
        raise self.missing(name)

    def rewrite(self, expr):
        """The expression with every param resolved (fallbacks expanded)."""
        if not isinstance(expr, dict) or len(expr) == 0:
            raise PackError(f"bad source expression {expr!r}")
        if "param" in expr:
            return self.param(expr["param"])
        if "stack" in expr or "concat" in expr:
            key = "stack" if "stack" in expr else "concat"
            if not expr[key]:
                raise PackError(f"empty {key}")
            return dict(expr, **{key: [self.rewrite(e) for e in expr[key]]})
        if "slice" in expr:
            return dict(expr, slice=self.rewrite(expr["slice"]))
        if "dequantize_fp8" in expr:
            d = expr["dequantize_fp8"]
            return {"dequantize_fp8": dict(d, weight=self.rewrite(d["weight"]),
                                           scale_inv=self.rewrite(d["scale_inv"]))}
        if "index" in expr:
            return dict(expr, index=self.rewrite(expr["index"]))
        raise PackError(f"unknown source expression {sorted(expr)}")

    def shape(self, expr):
        """Shape of a resolved expression, from headers only."""
        if "param" in expr:
            return list(self.source.shape(expr["param"]))
        if "stack" in expr:
            shapes = [self.shape(e) for e in expr["stack"]]
            if any(s != shapes[0] for s in shapes):
                raise PackError(f"stack of different shapes {shapes[:3]}...")
            return [len(shapes)] + shapes[0]
        if "concat" in expr:
            shapes = [self.shape(e) for e in expr["concat"]]
            d = expr.get("dim", 0)
            if any(len(s) <= d or s[:d] + s[d + 1:] != shapes[0][:d] + shapes[0][d + 1:]
                   for s in shapes):
                raise PackError(f"concat of incompatible shapes {shapes} along dim {d}")
            return shapes[0][:d] + [sum(s[d] for s in shapes)] + shapes[0][d + 1:]
        if "slice" in expr:
            s = self.shape(expr["slice"])
            d, o, n = expr["dim"], expr["offset"], expr["size"]
            if not (0 <= d < len(s)) or o < 0 or n < 0 or o + n > s[d]:
                raise PackError(f"slice [{o}, {o + n}) of dim {d} out of shape {s}")
            return s[:d] + [n] + s[d + 1:]
        if "dequantize_fp8" in expr:
            d = expr["dequantize_fp8"]
            w, s = self.shape(d["weight"]), self.shape(d["scale_inv"])
            br, bc = d["block"]
            if len(w) != 2 or s != [math.ceil(w[0] / br), math.ceil(w[1] / bc)]:
                raise PackError(f"dequantize_fp8: scale_inv {s} does not match weight {w} "
                                f"in blocks {br}x{bc}")
            return w
        if "index" in expr:
            s = self.shape(expr["index"])
            return s[1:]
        raise PackError(f"unknown source expression {sorted(expr)}")


def evaluate(source, expr, memo):
    """(kind, ndarray) of a resolved expression; memo caches params per weight."""
    if "param" in expr:
        name = expr["param"]
        if name not in memo:
            memo[name] = source.get(name)
        return memo[name]
    if "index" in expr:
        kind, a = evaluate(source, expr["index"], memo)
        return kind, a[expr["i"]]
    if "slice" in expr:
        kind, a = evaluate(source, expr["slice"], memo)
        index = [slice(None)] * a.ndim
        index[expr["dim"]] = slice(expr["offset"], expr["offset"] + expr["size"])
        return kind, a[tuple(index)]
    if "stack" in expr or "concat" in expr:
        key = "stack" if "stack" in expr else "concat"
        parts = [evaluate(source, e, memo) for e in expr[key]]
        kinds = {k for k, _ in parts}
        if len(kinds) == 1:
            kind, arrays = kinds.pop(), [a for _, a in parts]
        else:
            kind, arrays = "f32", [to_f32(k, a) for k, a in parts]
        return kind, (np.stack(arrays) if key == "stack"
                      else np.concatenate(arrays, axis=expr.get("dim", 0)))
    if "dequantize_fp8" in expr:
        d = expr["dequantize_fp8"]
        wk, w = evaluate(source, d["weight"], memo)
        sk, s = evaluate(source, d["scale_inv"], memo)
        br, bc = d["block"]
        scale = np.repeat(np.repeat(to_f32(sk, s), br, axis=0), bc, axis=1)
        scale = scale[:w.shape[0], :w.shape[1]]
        return "f32", to_f32(wk, w) * scale
    raise PackError(f"unknown source expression {sorted(expr)}")


def pieces(source, expr, dtype, memo):
    """Yields the converted bytes of an expression in row-major order; stacks
    and concats along dim 0 stream part by part (no copy of the whole)."""
    if "stack" in expr or ("concat" in expr and expr.get("dim", 0) == 0):
        for e in expr["stack" if "stack" in expr else "concat"]:
            yield from pieces(source, e, dtype, memo)
        return
    kind, a = evaluate(source, expr, memo)
    yield convert(kind, a, dtype)


def pwrite_all(fd, array, offset):
    view = memoryview(np.ascontiguousarray(array)).cast("B")
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:done + (1 << 30)], offset + done)
    return done


# ---------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------

def load_sidecar(skel):
    path = skel + ".weights.json"
    if not os.path.exists(path):
        raise PackError(f"{path}: missing (compile with --weights=deferred)")
    side = json.load(open(path))
    if side.get("format") != FORMAT:
        raise PackError(f"{path}: format {side.get('format')!r}, expected {FORMAT!r}")
    return side


def check_layout(skel, side):
    """Every byte range of the sidecar is consistent; returns the weights sorted."""
    w, s = side["weights_offset"], side["weights_size"]
    b, bs = side["blobs_offset"], side["blobs_size"]
    if b != w + s or side["file_size"] != b + bs:
        raise PackError(f"sidecar: inconsistent sections (weights {w}+{s}, blobs {b}+{bs}, "
                        f"file {side['file_size']})")
    skel_size = os.path.getsize(skel)
    if skel_size != w + bs:
        raise PackError(f"{skel}: {skel_size} bytes, the sidecar expects "
                        f"weights_offset + blobs_size = {w + bs}")
    weights = sorted(side["weights"], key=lambda x: x["offset"])
    end = 0
    for x in weights:
        if x["dtype"] not in ELEMENT:
            raise PackError(f"{x['name']}: unknown dtype {x['dtype']!r}")
        expected = math.prod(x["shape"]) * ELEMENT[x["dtype"]]
        if x["size"] != expected:
            raise PackError(f"{x['name']}: size {x['size']} != {expected} "
                            f"(shape {x['shape']} {x['dtype']})")
        if x["offset"] < end:
            raise PackError(f"{x['name']}: offset {x['offset']} overlaps the previous weight "
                            f"(ends at {end})")
        end = x["offset"] + x["size"]
        if end > s:
            raise PackError(f"{x['name']}: [{x['offset']}, {end}) past weights_size {s}")
    return weights


def copy_range(src_fd, dst_fd, src_off, dst_off, n, chunk=64 << 20):
    while n > 0:
        data = os.pread(src_fd, min(chunk, n), src_off)
        if not data:
            raise PackError("short read of the skeleton")
        pwrite_all(dst_fd, np.frombuffer(data, np.uint8), dst_off)
        src_off += len(data)
        dst_off += len(data)
        n -= len(data)


def pack(skel, source, out, jobs=4, log=print, check_only=False):
    """Writes OUT from SKEL + its sidecar + source (a checkpoint directory or a
    *Source object). Returns a summary dict. check_only: validate the layout
    and every source expression against the tensors' headers, write nothing."""
    t0 = time.time()
    side = load_sidecar(skel)
    weights = check_layout(skel, side)
    if isinstance(source, str):
        source = CheckpointSource(source)
    resolver = Resolver(source)
    plan = []
    for x in weights:
        try:
            expr = resolver.rewrite(x["source"])
            shape = resolver.shape(expr)
        except PackError as e:
            raise PackError(f"{x['name']}: {e}") from None
        except KeyError as e:
            raise PackError(f"{x['name']}: bad source expression (no {e})") from None
        if shape != list(x["shape"]):
            raise PackError(f"{x['name']}: source has shape {shape}, the artifact expects "
                            f"{list(x['shape'])}")
        plan.append((x, expr))
    if resolver.fallbacks:
        log(f"pack: {resolver.fallbacks} per-expert tensors read from fused experts tensors")
    if check_only:
        log(f"pack: {len(plan)} weights check out against the source")
        return {"weights": len(plan), "fused_fallbacks": resolver.fallbacks}

    W, S, B = side["weights_offset"], side["weights_size"], side["blobs_offset"]
    tmp = f"{out}.tmp-{os.getpid()}"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    sfd = os.open(skel, os.O_RDONLY)
    done_bytes = [0]
    lock = threading.Lock()
    last = [time.time()]

    def one(item):
        x, expr = item
        memo, written = {}, 0
        for part in pieces(source, expr, x["dtype"], memo):
            if written + part.nbytes > x["size"]:
                raise PackError(f"{x['name']}: source yields more than {x['size']} bytes")
            pwrite_all(fd, part, W + x["offset"] + written)
            written += part.nbytes
        if written != x["size"]:
            raise PackError(f"{x['name']}: wrote {written} bytes, expected {x['size']}")
        with lock:
            done_bytes[0] += written
            if time.time() - last[0] > 10:
                last[0] = time.time()
                log(f"pack: {done_bytes[0] / 2**30:.1f} / {S / 2**30:.1f} GiB, "
                    f"{time.time() - t0:.0f} s", flush=True)
        return written

    try:
        copy_range(sfd, fd, 0, 0, W)
        copy_range(sfd, fd, W, B, side["blobs_size"])
        os.ftruncate(fd, side["file_size"])  # the gaps between weights are zeros
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            total = sum(pool.map(one, plan))
        if os.fstat(fd).st_size != side["file_size"]:
            raise PackError(f"{tmp}: size {os.fstat(fd).st_size} != {side['file_size']}")
        os.close(fd)
        fd = -1
        os.replace(tmp, out)
    finally:
        os.close(sfd)
        if fd >= 0:
            os.close(fd)
        if os.path.exists(tmp):
            os.remove(tmp)
    seconds = time.time() - t0
    log(f"pack: wrote {out} ({side['file_size'] / 2**30:.2f} GiB, {len(plan)} weights, "
        f"{total / 2**30:.2f} GiB of weight data) in {seconds:.1f} s", flush=True)
    return {"weights": len(plan), "weight_bytes": total, "file_size": side["file_size"],
            "seconds": seconds, "fused_fallbacks": resolver.fallbacks}


# ---------------------------------------------------------------------------
# Self-test: pack_deferred.py --self-test (numpy; torch checks when available)
# ---------------------------------------------------------------------------

def self_test():
    import tempfile
    rng = np.random.default_rng(0)
    # bf16 rounding: ties to even, carries, NaN, against torch when present.
    values = np.concatenate([rng.standard_normal(10000).astype(np.float32) * 3,
                             np.array([1.00390625, 1.01171875, 65504.0, -0.0, np.inf,
                                       -np.inf, 3.3895314e38, 1e-40], np.float32),
                             np.array([0x3F808000, 0x3F818000, 0x7F7FFFFF],
                                      np.uint32).view(np.float32)])
    bits = f32_to_bf16_bits(values)
    assert bits[values.size - 3] == 0x3F80 and bits[values.size - 2] == 0x3F82  # ties to even
    assert f32_to_bf16_bits(np.array([np.nan], np.float32))[0] & 0x7FC0 == 0x7FC0
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        ref = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
        assert np.array_equal(bits, ref), "bf16 rounding differs from torch"
        f8 = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(torch.float8_e4m3fn).float().numpy()
        assert np.array_equal(np.isnan(f8), np.isnan(FP8_E4M3FN))
        ok = ~np.isnan(f8)
        assert np.array_equal(f8[ok], FP8_E4M3FN[ok]), "fp8 e4m3fn table differs from torch"

    def bf(a):
        return "bf16", f32_to_bf16_bits(a.astype(np.float32))

    def back(b):
        return to_f32("bf16", b)

    A = rng.standard_normal((6, 4)).astype(np.float32)
    Bm = rng.standard_normal((3, 4)).astype(np.float32)
    C = rng.standard_normal((6, 4)).astype(np.float32)
    fused = rng.standard_normal((3, 10, 4)).astype(np.float32)   # [E, 2I, H], I = 5
    down = rng.standard_normal((3, 4, 5)).astype(np.float32)     # [E, H, I]
    Wf8 = rng.integers(0, 256, (5, 7)).astype(np.uint8)
    Wf8[Wf8 & 0x7F == 0x7F] = 0x10                                # no NaN
    Sinv = rng.random((3, 4)).astype(np.float32)                 # blocks 2x2
    src = DictSource({"a": bf(A), "b": bf(Bm), "c": ("f32", C), "L.mlp.experts.gate_up_proj": bf(fused),
                      "L.mlp.experts.down_proj": bf(down), "w": ("f8e4m3", Wf8), "w_s": ("f32", Sinv)})
    r = Resolver(src)

    def run(expr, dtype):
        e = r.rewrite(expr)
        shape = r.shape(e)
        data = b"".join(p.tobytes() for p in pieces(src, e, dtype, {}))
        arr = np.frombuffer(data, np.uint16 if dtype == "bf16" else np.float32)
        assert arr.size == math.prod(shape), (expr, shape, arr.size)
        return (back(arr) if dtype == "bf16" else arr).reshape(shape)

    rA, rB = back(bf(A)[1]), back(bf(Bm)[1])
    assert np.array_equal(run({"param": "a"}, "bf16"), rA)
    assert np.array_equal(run({"param": "a"}, "f32"), rA)
    assert np.array_equal(run({"param": "c"}, "bf16"), back(f32_to_bf16_bits(C)))
    assert np.array_equal(run({"param": "c"}, "f32"), C)
    assert np.array_equal(run({"concat": [{"param": "a"}, {"param": "b"}]}, "bf16"),
                          np.concatenate([rA, rB]))
    assert np.array_equal(run({"stack": [{"param": "a"}, {"param": "a"}]}, "f32"), np.stack([rA, rA]))
    # gate/up packing: [E, I, H] stacks side by side along dim 1
    sA = {"stack": [{"param": "a"}, {"param": "a"}]}
    sB = {"stack": [{"param": "b"}, {"param": "b"}]}
    assert np.array_equal(run({"concat": [sA, sB], "dim": 1}, "bf16"),
                          np.concatenate([np.stack([rA, rA]), np.stack([rB, rB])], axis=1))
    # mixed kinds: bf16 + f32 promote to f32, then round once
    assert np.array_equal(run({"concat": [{"param": "a"}, {"param": "c"}]}, "f32"),
                          np.concatenate([rA, C]))
    assert np.array_equal(run({"slice": {"param": "a"}, "dim": 1, "offset": 1, "size": 2}, "bf16"),
                          rA[:, 1:3])
    assert np.array_equal(run({"slice": {"concat": [{"param": "a"}, {"param": "b"}]}, "dim": 0,
                               "offset": 4, "size": 4}, "bf16"), np.concatenate([rA, rB])[4:8])
    assert np.array_equal(run({"stack": [{"slice": {"param": "a"}, "dim": 0, "offset": 2 * i, "size": 2}
                                         for i in range(3)]}, "bf16"), rA.reshape(3, 2, 4))
    # fused experts fallback
    rF, rD = back(bf(fused)[1]), back(bf(down)[1])
    for e in range(3):
        assert np.array_equal(run({"param": f"L.mlp.experts.{e}.gate_proj.weight"}, "bf16"), rF[e, :5])
        assert np.array_equal(run({"param": f"L.mlp.experts.{e}.up_proj.weight"}, "bf16"), rF[e, 5:])
        assert np.array_equal(run({"param": f"L.mlp.experts.{e}.down_proj.weight"}, "bf16"), rD[e])
    st = run({"stack": [{"param": f"L.mlp.experts.{e}.up_proj.weight"} for e in range(3)]}, "bf16")
    assert np.array_equal(st, rF[:, 5:])
    assert r.fallbacks > 0
    # fp8 block dequantization
    deq = run({"dequantize_fp8": {"weight": {"param": "w"}, "scale_inv": {"param": "w_s"},
                                  "block": [2, 2]}}, "bf16")
    full = FP8_E4M3FN[Wf8] * np.repeat(np.repeat(Sinv, 2, 0), 2, 1)[:5, :7]
    assert np.array_equal(deq, back(f32_to_bf16_bits(full)))
    if torch is not None:
        tw = torch.from_numpy(Wf8).view(torch.float8_e4m3fn)
        ts = torch.from_numpy(Sinv).repeat_interleave(2, 0).repeat_interleave(2, 1)[:5, :7]
        tref = (tw.float() * ts).to(torch.bfloat16).float().numpy()
        assert np.array_equal(deq, tref)
    # errors
    for bad, words in [({"param": "nope"}, "no tensor 'nope'"),
                       ({"slice": {"param": "a"}, "dim": 0, "offset": 5, "size": 2}, "out of shape"),
                       ({"concat": [{"param": "a"}, {"param": "L.mlp.experts.down_proj"}]}, "incompatible"),
                       ({"frobnicate": 1}, "unknown source expression")]:
        try:
            r.shape(r.rewrite(bad))
        except PackError as e:
            assert words in str(e), (words, str(e))
        else:
            raise AssertionError(f"no error for {bad}")

    # End to end through files: a checkpoint with two shards, a fake skeleton.
    with tempfile.TemporaryDirectory() as d:
        ck = os.path.join(d, "ckpt")
        os.makedirs(ck)
        tensors = {"x.weight": ("BF16", bf(A)[1]), "y.weight": ("F32", C),
                   "L.mlp.experts.0.gate_proj.weight": ("BF16", bf(Bm)[1]),
                   "L.mlp.experts.1.gate_proj.weight": ("BF16", bf(Bm * 2)[1])}
        weight_map = {}
        for k, names in enumerate([["x.weight", "y.weight"],
                                   ["L.mlp.experts.0.gate_proj.weight",
                                    "L.mlp.experts.1.gate_proj.weight"]]):
            fname = f"model-{k + 1:05d}-of-00002.safetensors"
            header, off, blobs = {"__metadata__": {"format": "pt"}}, 0, []
            for n in names:
                dt, arr = tensors[n]
                header[n] = {"dtype": dt, "shape": list(arr.shape),
                             "data_offsets": [off, off + arr.nbytes]}
                off += arr.nbytes
                blobs.append(arr.tobytes())
                weight_map[n] = fname
            h = json.dumps(header).encode()
            h += b" " * (-len(h) % 8)
            with open(os.path.join(ck, fname), "wb") as f:
                f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
        json.dump({"metadata": {}, "weight_map": weight_map},
                  open(os.path.join(ck, "model.safetensors.index.json"), "w"))
        W, S = 64, 256
        head, blob = bytes(range(64)), b"BLOB" * 5
        skel = os.path.join(d, "skel.moec")
        open(skel, "wb").write(head + blob)
        weights = [
            {"name": "x", "dtype": "bf16", "shape": [6, 4], "offset": 0, "size": 48,
             "source": {"param": "x.weight"}},
            {"name": "y", "dtype": "f32", "shape": [6, 4], "offset": 64, "size": 96,
             "source": {"param": "y.weight"}},
            {"name": "e", "dtype": "bf16", "shape": [2, 3, 4], "offset": 192, "size": 48,
             "source": {"stack": [{"param": f"L.mlp.experts.{i}.gate_proj.weight"}
                                  for i in range(2)]}}]
        side = {"format": FORMAT, "weights_offset": W, "weights_size": S,
                "blobs_offset": W + S, "blobs_size": len(blob), "file_size": W + S + len(blob),
                "weights": weights}
        json.dump(side, open(skel + ".weights.json", "w"))
        out = os.path.join(d, "out.moec")
        pack(skel, ck, out, jobs=2, log=lambda *a, **k: None)
        data = open(out, "rb").read()
        expect = bytearray(head + bytes(S) + blob)
        expect[W:W + 48] = bf(A)[1].tobytes()
        expect[W + 64:W + 160] = C.tobytes()
        expect[W + 192:W + 240] = np.stack([bf(Bm)[1], bf(Bm * 2)[1]]).tobytes()
        assert data == bytes(expect), "packed file differs"
        assert not [f for f in os.listdir(d) if ".tmp-" in f]
        # errors: shape mismatch, missing tensor, overlap, wrong skeleton size
        def expect_error(mutate, words):
            s2 = json.loads(json.dumps(side))
            mutate(s2)
            json.dump(s2, open(skel + ".weights.json", "w"))
            try:
                pack(skel, ck, out + "2", log=lambda *a, **k: None)
            except PackError as e:
                assert words in str(e), (words, str(e))
            else:
                raise AssertionError(words)
            assert not os.path.exists(out + "2")
        expect_error(lambda s2: s2["weights"][0].update(shape=[4, 6]), "source has shape [6, 4]")
        expect_error(lambda s2: s2["weights"][0].update(source={"param": "x.bias"}),
                     "x: checkpoint has no tensor 'x.bias'")
        expect_error(lambda s2: s2["weights"][1].update(offset=40), "overlaps")
        expect_error(lambda s2: s2["weights"][2].update(size=50), "size 50")
        expect_error(lambda s2: s2.update(blobs_size=3, file_size=W + S + 3), "bytes, the sidecar")
    print("pack_deferred self-test: ok" + ("" if torch is not None else " (without torch checks)"))


def main():
    if sys.argv[1:] == ["--self-test"]:
        self_test()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("skeleton", help="SKEL.moec (next to SKEL.moec.weights.json)")
    parser.add_argument("checkpoint", help="checkpoint directory or .safetensors file")
    parser.add_argument("out", help="the artifact to write")
    parser.add_argument("--jobs", type=int, default=4, help="weights packed in parallel")
    parser.add_argument("--check", action="store_true",
                        help="only check the sidecar against the checkpoint's headers")
    args = parser.parse_args()
    try:
        pack(args.skeleton, args.checkpoint, args.out, args.jobs,
             log=lambda *a, **k: print(*a, file=sys.stderr, **k), check_only=args.check)
    except PackError as e:
        sys.exit(f"pack_deferred: error: {e}")


if __name__ == "__main__":
    main()
