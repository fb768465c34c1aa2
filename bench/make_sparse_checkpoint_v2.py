#!/usr/bin/env python3
"""Writes a sparse bf16 HuggingFace checkpoint for a `deepseek_v2` config.

Every tensor that transformers 5's save_pretrained writes for
DeepseekV2ForCausalLM gets a correct safetensors header (per-expert names
`model.layers.L.mlp.experts.E.{gate,up,down}_proj.weight`, the reverse of the
in-memory fused `experts.gate_up_proj` / `experts.down_proj`), but every data
region is a hole (os.truncate): the 15.7B-parameter DeepSeek-V2-Lite costs a
few MB of disk. moec compiles such a checkpoint with --weights=deferred (it
reads only the headers); bench/pack_deferred.py later fills the weights in
from a real checkpoint of the same config.

Shards like HF: one model.safetensors up to --max-shard-size, otherwise
model-0000K-of-0000N.safetensors + model.safetensors.index.json.

Standard library only.
Usage: make_sparse_checkpoint_v2.py CONFIG.json OUT_DIR [--max-shard-size BYTES]
       make_sparse_checkpoint_v2.py CONFIG.json --list   (names/shapes, no files)
"""
import argparse
import json
import math
import os
import shutil
import struct

SIZES = {"BF16": 2, "F16": 2, "F32": 4}


def tensors(cfg):
    """(name, shape) of every tensor of DeepseekV2ForCausalLM, save order."""
    if cfg.get("model_type") not in ("deepseek_v2", None):
        raise SystemExit(f"model_type is {cfg.get('model_type')!r}, expected 'deepseek_v2'")
    h = cfg["hidden_size"]
    heads = cfg["num_attention_heads"]
    nope, rope, vdim = (cfg["qk_nope_head_dim"], cfg["qk_rope_head_dim"],
                        cfg["v_head_dim"])
    qlora, kvlora = cfg.get("q_lora_rank"), cfg["kv_lora_rank"]
    experts, inter = cfg["n_routed_experts"], cfg["moe_intermediate_size"]
    shared = (cfg.get("n_shared_experts") or 0) * inter
    dense_layers = cfg.get("first_k_dense_replace", 0)
    if cfg.get("moe_layer_freq", 1) != 1:
        raise SystemExit("moe_layer_freq != 1 is not supported")

    def mlp(prefix, i):
        yield prefix + "gate_proj.weight", [i, h]
        yield prefix + "up_proj.weight", [i, h]
        yield prefix + "down_proj.weight", [h, i]

    yield "model.embed_tokens.weight", [cfg["vocab_size"], h]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        a = p + "self_attn."
        if qlora:
            yield a + "q_a_proj.weight", [qlora, h]
            yield a + "q_a_layernorm.weight", [qlora]
            yield a + "q_b_proj.weight", [heads * (nope + rope), qlora]
        else:
            yield a + "q_proj.weight", [heads * (nope + rope), h]
        yield a + "kv_a_proj_with_mqa.weight", [kvlora + rope, h]
        yield a + "kv_a_layernorm.weight", [kvlora]
        yield a + "kv_b_proj.weight", [heads * (nope + vdim), kvlora]
        yield a + "o_proj.weight", [h, heads * vdim]
        if l < dense_layers:
            yield from mlp(p + "mlp.", cfg["intermediate_size"])
        else:
            for e in range(experts):
                yield from mlp(p + f"mlp.experts.{e}.", inter)
            yield p + "mlp.gate.weight", [experts, h]
            if shared:
                yield from mlp(p + "mlp.shared_experts.", shared)
        yield p + "input_layernorm.weight", [h]
        yield p + "post_attention_layernorm.weight", [h]
    yield "model.norm.weight", [h]
    if not cfg.get("tie_word_embeddings", False):
        yield "lm_head.weight", [cfg["vocab_size"], h]


def write(cfg, config_path, out, max_shard_size, dtype="BF16"):
    os.makedirs(out, exist_ok=True)
    shutil.copy(config_path, os.path.join(out, "config.json"))
    entries = list(tensors(cfg))
    size = SIZES[dtype]
    total = sum(math.prod(s) * size for _, s in entries)
    # Greedy sharding in save order, as transformers' split_torch_state_dict_into_shards.
    shards, current, current_size = [], [], 0
    for name, shape in entries:
        nbytes = math.prod(shape) * size
        if current and current_size + nbytes > max_shard_size:
            shards.append(current)
            current, current_size = [], 0
        current.append((name, shape))
        current_size += nbytes
    shards.append(current)
    for stale in os.listdir(out):
        if stale.endswith(".safetensors") or stale == "model.safetensors.index.json":
            os.remove(os.path.join(out, stale))
    weight_map = {}
    for k, shard in enumerate(shards):
        fname = ("model.safetensors" if len(shards) == 1
                 else f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors")
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape in shard:
            nbytes = math.prod(shape) * size
            header[name] = {"dtype": dtype, "shape": shape,
                            "data_offsets": [offset, offset + nbytes]}
            weight_map[name] = fname
            offset += nbytes
        blob = json.dumps(header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        path = os.path.join(out, fname)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(blob)) + blob)
        os.truncate(path, 8 + len(blob) + offset)  # the data is a hole
    if len(shards) > 1:
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total,
                                    "total_parameters": total // size},
                       "weight_map": weight_map}, f, indent=2)
    return entries, total, len(shards)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("out", nargs="?")
    parser.add_argument("--max-shard-size", type=int, default=4 << 30,
                        help="bytes per shard (default 4 GiB)")
    parser.add_argument("--list", action="store_true",
                        help="print name dtype shape of every tensor, write nothing")
    args = parser.parse_args()
    cfg = json.load(open(args.config))
    if args.list:
        for name, shape in tensors(cfg):
            print(name, "BF16", shape)
        return
    if not args.out:
        parser.error("OUT_DIR is required (or --list)")
    entries, total, shards = write(cfg, args.config, args.out, args.max_shard_size)
    params = total // 2
    print(f"{args.out}: {len(entries)} tensors, {params / 1e9:.3f}B parameters, "
          f"{total / 2**30:.2f} GiB bf16 (sparse), {shards} shard(s)")


if __name__ == "__main__":
    main()
