"""Per-GPU memory estimate of colocated R1-Zero training (learner + vLLM) for Qwen2.5 1.5B / 3B / 7B.

Prints the tables of ``docs/memory.md`` (which explains every formula)::

    python scripts/memory_table.py                       # the doc's tables
    python scripts/memory_table.py --prompt-len 512 --rollout 1024 --gpu-gib 80 --reserve-gib 4

Everything is arithmetic on the Hugging Face config values below; no model is loaded.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GIB = 2**30


@dataclass(frozen=True)
class Arch:
    """The config.json fields that set memory (Qwen2.5 base configs on the Hugging Face hub)."""

    name: str
    hidden: int          # hidden_size
    inter: int           # intermediate_size
    layers: int          # num_hidden_layers
    heads: int           # num_attention_heads
    kv_heads: int        # num_key_value_heads
    vocab: int           # vocab_size
    tied: bool           # tie_word_embeddings

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def params(self) -> int:
        h, kv, i = self.hidden, self.kv_dim, self.inter
        attn = h * h + h + 2 * (h * kv + kv) + h * h  # q (with bias), k, v (with bias), o (no bias)
        mlp = 3 * h * i                               # gate, up, down
        layer = attn + mlp + 2 * h                    # + two RMSNorm weights
        emb = self.vocab * h
        return emb * (1 if self.tied else 2) + self.layers * layer + h

    def kv_bytes_per_token(self, bytes_per=2) -> int:
        return 2 * self.layers * self.kv_dim * bytes_per                 # K and V, every layer

    def act_bytes_per_token_layer(self, bytes_per=2) -> int:
        """Tensors autograd keeps per token and layer (flash/SDPA attention: no s x s matrix)."""
        h, kv, i = self.hidden, self.kv_dim, self.inter
        # ln1 in + out, q + k + v (after RoPE), attention out, ln2 in + out, gate, up, silu(gate), gate*up
        return bytes_per * (h + h + (h + 2 * kv) + h + h + h + 4 * i)


ARCHS = [
    # Qwen/Qwen2.5-1.5B and Qwen/Qwen2.5-Math-1.5B share these (the Math config has max_position_embeddings 4096).
    Arch("1.5B (Qwen2.5[-Math]-1.5B)", hidden=1536, inter=8960, layers=28, heads=12, kv_heads=2, vocab=151936, tied=True),
    Arch("3B (Qwen2.5-3B)", hidden=2048, inter=11008, layers=36, heads=16, kv_heads=2, vocab=151936, tied=True),
    # Qwen/Qwen2.5-7B and Qwen/Qwen2.5-Math-7B (max_position_embeddings 4096 for Math).
    Arch("7B (Qwen2.5[-Math]-7B)", hidden=3584, inter=18944, layers=28, heads=28, kv_heads=4, vocab=152064, tied=False),
]


def learner_states(P: int, gpus: int, strategy: str) -> dict[str, float]:
    """Bytes per GPU of bf16 params, bf16 grads and fp32 (master + Adam m + v) states; CPU bytes when offloaded."""
    params, grads, opt = 2 * P, 2 * P, 12 * P
    if strategy == "zero2":
        return {"params": params, "grads": grads / gpus, "optim": opt / gpus, "cpu": 0}
    if strategy == "zero2+offload":
        # fp32 master + m + v and an fp32 gradient copy live in host RAM; the GPU keeps bf16 params + its grad partition.
        return {"params": params, "grads": grads / gpus, "optim": 0, "cpu": (opt + 4 * P) / gpus}
    if strategy == "zero3":
        return {"params": params / gpus, "grads": grads / gpus, "optim": opt / gpus, "cpu": 0}
    raise ValueError(strategy)


def table(args) -> str:
    budget = (args.gpu_gib - args.reserve_gib) * GIB
    out = []
    out.append("### Per-item sizes\n")
    out.append("| model | params P | P x 2 B (bf16 weights) | P x 16 B (mixed-precision AdamW) | KV cache / token | "
               "activations / token (no ckpt) | activations / token (ckpt) | logits / response token |")
    out.append("|---|---|---|---|---|---|---|---|")
    for a in ARCHS:
        P = a.params()
        act = a.act_bytes_per_token_layer() * a.layers
        ckpt = 2 * a.hidden * a.layers + a.act_bytes_per_token_layer()
        out.append(f"| {a.name} | {P / 1e9:.2f} B | {2 * P / GIB:.1f} GiB | {16 * P / GIB:.1f} GiB | "
                   f"{a.kv_bytes_per_token() / 1024:.0f} KiB | {act / 2**20:.2f} MiB | {ckpt / 2**20:.2f} MiB | "
                   f"{6 * a.vocab / 2**20:.2f} MiB |")
    out.append("")
    out.append(f"### What fits on one {args.gpu_gib} GiB GPU ({args.reserve_gib} GiB reserved), prompt {args.prompt_len} "
               f"tokens, rollout {args.rollout} responses per step split over the GPUs\n")
    cols = ["model", "GPUs", "max_new_tokens", "strategy", "learner states GiB (params + grads + optim)",
            "train: act. per seq GiB (no ckpt / ckpt)", "train: max micro-batch (no ckpt / ckpt)",
            "rollout: vLLM weights + KV free GiB", "rollout: seqs in flight (of per GPU)", "verdict"]
    out.append("| " + " | ".join(cols) + " |")
    out.append("|" + "---|" * len(cols))
    for a in ARCHS:
        P = a.params()
        for gpus in (1, 8):
            for T in (1000, 3000, 8000):
                s = args.prompt_len + T
                act_seq = a.act_bytes_per_token_layer() * a.layers * s + 6 * a.vocab * T
                ckpt_seq = (2 * a.hidden * a.layers + a.act_bytes_per_token_layer()) * s + 6 * a.vocab * T
                per_gpu_seqs = args.rollout // gpus
                strategies = ["zero2", "zero2+offload"] if gpus == 1 else ["zero2", "zero3"]
                for strat in strategies:
                    st = learner_states(P, gpus, strat)
                    static = st["params"] + st["grads"] + st["optim"]
                    free_train = budget - static
                    mb_no = int(max(free_train, 0) // act_seq)
                    mb_ck = int(max(free_train, 0) // ckpt_seq)
                    # Rollout: learner states stay resident (vLLM sleeps during the update, the learner does not
                    # sleep during the rollout); vLLM holds full bf16 weights + ~1 GiB workspace + the KV cache.
                    vllm_w = 2 * P + GIB
                    kv_free = budget - static - vllm_w
                    in_flight = int(max(kv_free, 0) // (a.kv_bytes_per_token() * s))
                    ok_train = mb_ck >= 1
                    ok_roll = in_flight >= 1
                    if ok_train and ok_roll:
                        verdict = "fits" + ("" if mb_no >= 1 else " (needs ckpt)")
                        if in_flight < min(32, per_gpu_seqs):
                            verdict += "; KV-starved rollout"
                    else:
                        verdict = "does not fit" + (" (train)" if not ok_train else "") + (" (rollout)" if not ok_roll else "")
                    cpu = f" (+{st['cpu'] / GIB:.0f} GiB CPU)" if st["cpu"] else ""
                    out.append(
                        f"| {a.name.split(' ')[0]} | {gpus} | {T} | {strat} | "
                        f"{st['params'] / GIB:.1f} + {st['grads'] / GIB:.1f} + {st['optim'] / GIB:.1f} = {static / GIB:.1f}{cpu} | "
                        f"{act_seq / GIB:.1f} / {ckpt_seq / GIB:.2f} | {mb_no} / {mb_ck} | "
                        f"{vllm_w / GIB:.1f} + {max(kv_free, 0) / GIB:.1f} | {min(in_flight, 9999)} ({per_gpu_seqs}) | {verdict} |")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu-gib", type=float, default=80.0, help="GPU memory (A100 80GB: 80 GiB)")
    ap.add_argument("--reserve-gib", type=float, default=4.0,
                    help="CUDA context, NCCL buffers, allocator fragmentation, vLLM CUDA graphs")
    ap.add_argument("--prompt-len", type=int, default=256, help="padded prompt tokens per sequence")
    ap.add_argument("--rollout", type=int, default=1024, help="responses per step (paper: 128 questions x 8)")
    print(table(ap.parse_args()))


if __name__ == "__main__":
    main()
