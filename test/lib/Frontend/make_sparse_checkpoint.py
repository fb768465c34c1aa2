#!/usr/bin/env python3
"""Writes a sparse HuggingFace checkpoint for a DeepSeek-V3-style config.

Every tensor the published DeepSeek-V3/R1 weights have (FP8 e4m3 linear
weights with 128x128 `weight_scale_inv` blocks, BF16 norms/embeddings/router,
F32 score-correction bias, the MTP layer) gets a correct safetensors header,
but the data region is a hole (os.truncate), so a 671B-parameter checkpoint
costs a few MB of disk. Used to test that importing it costs only the headers.

Options corrupt the checkpoint on purpose, for the importer's error tests:
  --drop NAME            leave tensor NAME out
  --add NAME:DTYPE:DIMS  add an unknown tensor (DIMS like 4x8)
  --shape NAME:DIMS      give NAME a wrong shape
  --dtype NAME:DTYPE     give NAME a wrong dtype
  --fused-experts        store routed experts as transformers 5 does
                         without save_original_format (experts.gate_up_proj)

Standard library only.
Usage: make_sparse_checkpoint.py CONFIG.json OUT_DIR [options]
"""
import argparse
import json
import math
import os
import shutil
import struct

SIZES = {"F8_E4M3": 1, "BF16": 2, "F16": 2, "F32": 4, "I64": 8}


def tensors(cfg, fused=False):
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    nope, rope, vdim = (cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                        cfg["v_head_dim"])
    qlora, kvlora = cfg["q_lora_rank"], cfg["kv_lora_rank"]
    experts, inter = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
    shared = cfg["n_shared_experts"] * inter

    def fp8(name, rows, cols):
        yield name, "F8_E4M3", [rows, cols]
        yield (name + "_scale_inv", "F32",
               [math.ceil(rows / 128), math.ceil(cols / 128)])

    def mlp(prefix, i):
        yield from fp8(prefix + "gate_proj.weight", i, h)
        yield from fp8(prefix + "up_proj.weight", i, h)
        yield from fp8(prefix + "down_proj.weight", h, i)

    def layer(l):
        p = f"model.layers.{l}."
        yield p + "input_layernorm.weight", "BF16", [h]
        yield p + "post_attention_layernorm.weight", "BF16", [h]
        a = p + "self_attn."
        yield from fp8(a + "q_a_proj.weight", qlora, h)
        yield a + "q_a_layernorm.weight", "BF16", [qlora]
        yield from fp8(a + "q_b_proj.weight", heads * (nope + rope), qlora)
        yield from fp8(a + "kv_a_proj_with_mqa.weight", kvlora + rope, h)
        yield a + "kv_a_layernorm.weight", "BF16", [kvlora]
        yield from fp8(a + "kv_b_proj.weight", heads * (nope + vdim), kvlora)
        yield from fp8(a + "o_proj.weight", h, heads * vdim)
        if l < cfg["first_k_dense_replace"]:
            yield from mlp(p + "mlp.", cfg["intermediate_size"])
            return
        yield p + "mlp.gate.weight", "BF16", [experts, h]
        yield p + "mlp.gate.e_score_correction_bias", "F32", [experts]
        if fused:
            # transformers 5 layout when saved without save_original_format.
            yield p + "mlp.experts.gate_up_proj", "BF16", [experts, 2 * inter, h]
            yield p + "mlp.experts.down_proj", "BF16", [experts, h, inter]
        else:
            for e in range(experts):
                yield from mlp(p + f"mlp.experts.{e}.", inter)
        yield from mlp(p + "mlp.shared_experts.", shared)

    yield "model.embed_tokens.weight", "BF16", [cfg["vocab_size"], h]
    for l in range(cfg["num_hidden_layers"]):
        yield from layer(l)
    yield "model.norm.weight", "BF16", [h]
    yield "lm_head.weight", "BF16", [cfg["vocab_size"], h]
    # Multi-token-prediction layers follow the regular ones.
    for l in range(cfg["num_hidden_layers"],
                   cfg["num_hidden_layers"] + cfg["num_nextn_predict_layers"]):
        p = f"model.layers.{l}."
        yield p + "enorm.weight", "BF16", [h]
        yield p + "hnorm.weight", "BF16", [h]
        yield from fp8(p + "eh_proj.weight", h, 2 * h)
        yield from layer(l)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("out")
    parser.add_argument("--drop", action="append", default=[])
    parser.add_argument("--add", action="append", default=[])
    parser.add_argument("--shape", action="append", default=[])
    parser.add_argument("--dtype", action="append", default=[])
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--fused-experts", action="store_true")
    args = parser.parse_args()
    cfg = json.load(open(args.config))
    out = args.out
    os.makedirs(out, exist_ok=True)
    shutil.copy(args.config, os.path.join(out, "config.json"))

    def dims(text):
        return [int(d) for d in text.split("x")]

    shapes = dict(item.split(":") for item in args.shape)
    dtypes = dict(item.split(":") for item in args.dtype)
    all_tensors = [(n, dtypes.get(n, d), dims(shapes[n]) if n in shapes else s)
                   for n, d, s in tensors(cfg, args.fused_experts) if n not in args.drop]
    for item in args.add:
        name, dtype, shape = item.split(":")
        all_tensors.append((name, dtype, dims(shape)))
    shards = min(args.shards, len(all_tensors))
    per_shard = math.ceil(len(all_tensors) / shards)
    weight_map = {}
    for s in range(shards):
        name = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for tname, dtype, shape in all_tensors[s * per_shard:(s + 1) * per_shard]:
            nbytes = SIZES[dtype] * math.prod(shape)
            header[tname] = {"dtype": dtype, "shape": shape,
                             "data_offsets": [offset, offset + nbytes]}
            weight_map[tname] = name
            offset += nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
        os.truncate(path, 8 + len(blob) + offset)  # the data is a hole
    with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


if __name__ == "__main__":
    main()
