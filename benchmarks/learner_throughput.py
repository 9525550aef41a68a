"""Learner throughput: forward+backward tokens/s of :class:`r1zero.learner.learner.Learner` per micro-batch size.

For each model and ``train.micro_batch_size`` it times, on one synthetic rollout batch (``--responses``
responses, ``--group-size`` of them per prompt, prompts of ``--prompt-len`` tokens left-padded from 3/4 of that,
responses uniform in [``--response-min`` (default ``--response-len``/2), ``--response-len``] tokens, fixed seed):

* ``fwd+bwd``: ``Learner.accumulate_gradients`` over the whole batch (the update's forward + backward with the
  Dr. GRPO loss; no optimizer step), the learner's hot loop;
* ``fwd``: ``Learner.compute_logprobs`` (the no-grad log-prob pass for ``old_logprobs`` / the KL reference);
* ``step``: one ``clip_and_step`` (grad-norm clip + AdamW) for scale.

Tokens/s counts real (unpadded) prompt + response tokens of the batch per second of wall time (the same count
whatever the learner computes); ``resp tok/s`` counts only the trained response tokens. ``padding`` is the share
of the positions the fwd+bwd fed through the model that were padding (``perf/padding_frac``): 0 when the learner
runs packed (``train.group_by_length`` on for a Llama / Qwen / Mistral LM, :mod:`r1zero.model.packing`).
``GFLOP/s`` is the fwd+bwd's matmul and attention FLOPs (counted by ``torch.utils.flop_counter`` on one extra,
untimed call: what the hardware computed, including padded positions; attention on CPU through FLOP formulas for
its flash kernels, which the counter lacks) per second, and ``of GEMM peak`` that rate over the fastest of 10 plain
``torch.mm`` calls in the same dtype on this device (2048 x 2048 x 2048 and the model's MLP shapes at 2048 rows),
measured at start: the ceiling a learner built from these matmuls can approach. ``of GEMM beside`` is the
median over the timed runs of each run's FLOP/s over the median of 6 plain 2048-cube ``torch.mm`` calls timed
just before (3) and just after (3) it: the same ratio with the GEMM measured side by side, which holds on a
shared machine whose speed drifts between the start and a run minutes later.
``--group-by-length both`` times ``train.group_by_length`` off (padded) and on (packed), interleaved (off, on, off, on, ...), so their
ratio holds on a shared machine. Each cell is the median of ``--repeats`` timed runs after one untimed warm-up,
with the best run beside it (on a shared machine the best is the steadier number). Prints a Markdown table (and
writes it with ``--out``).

    python benchmarks/learner_throughput.py                                   # tiny + smollm2_135m on CPU
    python benchmarks/learner_throughput.py --models smollm2_135m --micro-batch-sizes 1,4,16 --response-len 512
    python benchmarks/learner_throughput.py --models qwen15 --device cuda --dtype bfloat16 --gradient-checkpointing
    python benchmarks/learner_throughput.py --models smollm2_135m --micro-batch-sizes 4,16 --responses 16 \
        --group-size 4 --response-min 8 --response-len 128 --group-by-length both     # grouped vs not, A/B
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from r1zero.learner.learner import Learner
from r1zero.model.load import load_model_and_tokenizer, resolve_device, resolve_dtype
from r1zero.rollout.base import RolloutBatch
from r1zero.run.hostmem import keep_freed_memory

CONF = Path(__file__).resolve().parents[1] / "conf"


def synthetic_batch(n: int, prompt_len: int, response_len: int, vocab: int, pad_id: int, seed: int = 0,
                    group_size: int = 1, response_min: int | None = None) -> RolloutBatch:
    """``n`` responses, ``group_size`` per left-padded prompt (shared tokens); lengths drawn once from a fixed seed."""
    g = torch.Generator().manual_seed(seed)
    P, T = prompt_len, response_len
    lo = max(1, T // 2 if response_min is None else response_min)
    p_lens = torch.randint(max(1, (3 * P) // 4), P + 1, (n,), generator=g)
    r_lens = torch.randint(lo, T + 1, (n,), generator=g)
    ids = torch.full((n, P + T), pad_id, dtype=torch.long)
    att = torch.zeros((n, P + T), dtype=torch.long)
    mask = torch.zeros((n, T))
    for i in range(n):
        first = i - i % group_size  # the group's first row: its prompt is every row's of the group
        pl, rl = int(p_lens[first]), int(r_lens[i])
        ids[i, P - pl : P] = ids[first, P - pl : P] if i != first else torch.randint(0, vocab, (pl,), generator=g)
        ids[i, P : P + rl] = torch.randint(0, vocab, (rl,), generator=g)
        att[i, P - pl : P + rl] = 1
        mask[i, :rl] = 1.0
    return RolloutBatch(input_ids=ids, attention_mask=att, response_mask=mask, prompt_len=P, responses=[""] * n,
                        truncated=torch.zeros(n, dtype=torch.bool), prompt_index=torch.arange(n) // group_size,
                        group_size=group_size)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats: int) -> tuple[float, float]:
    """(median, best) wall seconds of ``repeats`` calls after one warm-up call."""
    median, best, _ = timed_ab([fn], device, repeats)[0]
    return median, best


def timed_ab(fns: list, device, repeats: int, probe=None) -> list[tuple[float, float, list[tuple[float, float]]]]:
    """(median, best, runs) wall seconds of each of ``fns``, called in turn ``repeats`` times (A, B, A, B, ...) after
    one warm-up call each, so a change in the machine's load hits all of them alike.

    ``runs`` is ``[(seconds, gemm_flop_s), ...]``, one per timed call: with ``probe`` (:func:`gemm_probe`) the
    plain-GEMM FLOP/s measured just before and just after that call (the median of both probes' calls), else nan.
    """
    for fn in fns:
        fn()  # warm-up (allocator, kernels, lazy init)
    runs: list[list[tuple[float, float]]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, runs):
            rates = probe() if probe else []
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            dt = time.perf_counter() - t0
            rates += probe() if probe else []
            out.append((dt, statistics.median(rates) if rates else float("nan")))
    return [(statistics.median(t for t, _ in r), min(t for t, _ in r), r) for r in runs]


def gemm_probe(device, dtype, size: int = 2048, calls: int = 3):
    """A callable returning ``calls`` FLOP/s readings of a plain ``size``-cube ``torch.mm`` in ``dtype``: timed
    beside each learner call, it gives the GEMM speed of the same moment (a shared machine's speed drifts by tens
    of percent within minutes, so a peak measured once at start is not the same machine a minute later)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    torch.mm(a, b)

    def probe() -> list[float]:
        rates = []
        for _ in range(calls):
            _sync(device)
            t0 = time.perf_counter()
            torch.mm(a, b)
            _sync(device)
            rates.append(2 * size**3 / (time.perf_counter() - t0))
        return rates

    return probe


def gemm_peak(device, dtype, hidden: int, intermediate: int, repeats: int = 10) -> float:
    """FLOP/s of the fastest plain ``torch.mm`` call in ``dtype`` (the best of ``repeats`` calls of each shape: a
    shared machine only ever slows a call down): a 2048-cube and (2048, hidden) x (hidden, intermediate) both ways."""
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (2048, hidden, intermediate), (2048, intermediate, hidden)):
        a = torch.randn(m, k, device=device, dtype=dtype)
        b = torch.randn(k, n, device=device, dtype=dtype)
        _, fastest = timed(lambda a=a, b=b: torch.mm(a, b), device, repeats)
        best = max(best, 2 * m * k * n / fastest)
    return best


def _causal_share(s_q: int, s_k: int, is_causal: bool) -> float:
    """The share of the (query, key) pairs a causal SDPA call computes: PyTorch's ``is_causal`` mask is aligned to
    the top left (query i sees keys 0..i, whatever ``s_k``)."""
    if not is_causal or s_q == 0 or s_k == 0:
        return 1.0
    return sum(min(s_k, i + 1) for i in range(s_q)) / (s_q * s_k)


def _cpu_sdpa_flops():
    """FLOP formulas for the CPU flash-attention kernels, which ``torch.utils.flop_counter`` does not register
    (without them a CPU learner's attention counts 0 FLOPs): the same counts as its CUDA SDPA formulas, scaled to
    the pairs a causal call computes (the CPU kernel skips the blocks above the diagonal; with an explicit
    ``attn_mask`` it computes every pair)."""
    from torch.utils import flop_counter as fc

    aten = torch.ops.aten

    def forward(query, key, value, dropout_p=0.0, is_causal=False, *args, out_shape=None, **kwargs):
        return round(fc.sdpa_flop_count(query, key, value) * _causal_share(query[2], key[2], is_causal))

    def backward(grad_out, query, key, value, out, logsumexp, dropout_p=0.0, is_causal=False, *args,
                 out_shape=None, **kwargs):
        return round(fc.sdpa_backward_flop_count(grad_out, query, key, value)
                     * _causal_share(query[2], key[2], is_causal))

    ops = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        ops[aten._scaled_dot_product_flash_attention_for_cpu] = forward
        ops[aten._scaled_dot_product_flash_attention_for_cpu_backward] = backward
    return ops


def counted_flops(fn) -> int:
    """FLOPs of the matmuls and attention one call of ``fn`` runs (forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False, custom_mapping=_cpu_sdpa_flops()) as counter:
        fn()
    return int(counter.get_total_flops())


def bench_model(name: str, args, device, dtype) -> list[dict]:
    model_cfg = OmegaConf.load(CONF / "model" / f"{name}.yaml")
    torch.manual_seed(0)
    t0 = time.perf_counter()
    model, tok = load_model_and_tokenizer(model_cfg, device, dtype)
    load_s = time.perf_counter() - t0
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    n_params = sum(p.numel() for p in model.parameters())
    compute_dtype = torch.bfloat16 if args.autocast else dtype
    peak_flops = gemm_peak(device, compute_dtype, model.config.hidden_size, model.config.intermediate_size)
    print(f"  plain GEMM peak ({compute_dtype}): {peak_flops / 1e9:,.0f} GFLOP/s", flush=True)
    batch = synthetic_batch(args.responses, args.prompt_len, args.response_len, len(tok),
                            tok.pad_token_id if tok.pad_token_id is not None else 0,
                            group_size=args.group_size, response_min=args.response_min)
    real_tokens = int(batch.attention_mask.sum())
    resp_tokens = int(batch.response_mask.sum())
    adv = torch.linspace(-1.0, 1.0, args.responses)
    modes = {"both": [False, True], "on": [True], "off": [False]}[args.group_by_length]
    rows = []
    for micro in args.micro_batch_sizes:
        learners, fwds, fwd_bwds = [], [], []
        for grouped in modes:
            train = OmegaConf.create({"lr": 1e-6, "betas": [0.9, 0.95], "weight_decay": 0.0, "max_grad_norm": 1.0,
                                      "warmup_steps": 0, "mini_batch_size": None, "micro_batch_size": micro,
                                      "ppo_epochs": 1, "group_by_length": grouped})
            algo = OmegaConf.create({"loss_agg": args.loss_agg, "clip_eps": 0.2, "kl_coef": 0.0})
            strategy = None
            if args.autocast:
                from r1zero.learner.strategy import DistEnv, build_strategy

                strategy = build_strategy(OmegaConf.create({"name": "single"}), env=DistEnv())
                strategy.param_dtype(torch.bfloat16)  # fp32 parameters, bf16 autocast forwards
            learner = Learner(model, train, algo, max_new_tokens=args.response_len, temperature=1.0,
                              strategy=strategy)
            old = learner.compute_logprobs(model, batch)

            def fwd_bwd(lr=learner, old=old):
                lr.strategy.zero_grad()
                lr.model.train()
                lr.fed_tokens = [0, 0]
                lr.accumulate_gradients(batch, torch.arange(len(batch)), old, adv)

            learners.append(learner)
            fwds.append(lambda lr=learner: lr.compute_logprobs(lr.model, batch))
            fwd_bwds.append(fwd_bwd)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        fwd_times = timed_ab(fwds, device, args.repeats)
        fb_times = timed_ab(fwd_bwds, device, args.repeats, probe=gemm_probe(device, compute_dtype))
        peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
        for grouped, learner, fwd_bwd, (fwd_s, fwd_best, _), (fb_s, fb_best, fb_runs) in zip(
                modes, learners, fwd_bwds, fwd_times, fb_times):
            padding = learner.fed_tokens[1] / max(learner.fed_tokens[0], 1)  # of the last fwd+bwd call
            # the gradient left by the last fwd+bwd (the same model): every mode's AdamW step has one to apply
            step_s, _ = timed(lambda lr=learner: lr.strategy.clip_and_step(1.0), device, args.repeats)
            flops = counted_flops(fwd_bwd)
            beside = statistics.median(flops / t / rate for t, rate in fb_runs)  # nan without probes
            rows.append({
                "model": name, "params_M": n_params / 1e6, "micro": micro, "grouped": grouped,
                "responses": len(batch), "tokens": real_tokens, "resp_tokens": resp_tokens, "padding": padding,
                "fwd_bwd_s": fb_s, "fwd_bwd_vs_first": fb_s / fb_times[0][0],
                "fwd_bwd_tok_s": real_tokens / fb_s, "fwd_bwd_resp_tok_s": resp_tokens / fb_s,
                "fwd_bwd_best_tok_s": real_tokens / fb_best, "fwd_best_tok_s": real_tokens / fwd_best,
                "fwd_s": fwd_s, "fwd_tok_s": real_tokens / fwd_s, "step_s": step_s, "peak_gib": peak,
                "load_s": load_s, "gflop_s": flops / fb_s / 1e9, "of_peak": flops / fb_s / peak_flops,
                "peak_gflop_s": peak_flops / 1e9, "of_gemm_beside": beside,
                "gemm_beside_gflop_s": statistics.median(rate for _, rate in fb_runs) / 1e9,
            })
            print(f"  {name} micro={micro} grouped={grouped}: padding {padding:.1%}, fwd+bwd "
                  f"{real_tokens / fb_s:,.0f} tok/s (best {real_tokens / fb_best:,.0f}), fwd {real_tokens / fwd_s:,.0f} "
                  f"tok/s, {flops / fb_s / 1e9:,.0f} GFLOP/s = {flops / fb_s / peak_flops:.0%} of the GEMM peak, "
                  f"{beside:.0%} of the GEMM beside each run", flush=True)
        model.zero_grad(set_to_none=True)
    return rows


def markdown(rows: list[dict], args, device, dtype) -> str:
    head = (f"Learner throughput on {device} ({dtype}{' + bf16 autocast' if args.autocast else ''}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"{platform.processor() or platform.machine()}); {args.responses} responses ({args.group_size} per prompt), "
            f"prompt <= {args.prompt_len}, response {args.response_min or args.response_len // 2}-{args.response_len} "
            f"tokens, loss_agg={args.loss_agg}, "
            f"gradient_checkpointing={args.gradient_checkpointing}, "
            f"{'host malloc ' + args.host_malloc + ', ' if device.type == 'cpu' else ''}median of {args.repeats}.\n\n")
    cols = ["model", "params (M)", "micro-batch", "grouped", "padding", "tokens", "fwd+bwd s", "vs first",
            "fwd+bwd tok/s (best)", "fwd+bwd resp tok/s", "fwd+bwd GFLOP/s", "of GEMM peak", "of GEMM beside",
            "fwd (no-grad) tok/s (best)", "AdamW step s", "peak GPU GiB"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        peak = "-" if r["peak_gib"] != r["peak_gib"] else f"{r['peak_gib']:.2f}"
        lines.append(f"| {r['model']} | {r['params_M']:.1f} | {r['micro']} | {'on' if r['grouped'] else 'off'} | "
                     f"{r['padding']:.1%} | {r['tokens']} | {r['fwd_bwd_s']:.3f} | {r['fwd_bwd_vs_first']:.2f}x | "
                     f"{r['fwd_bwd_tok_s']:,.0f} ({r['fwd_bwd_best_tok_s']:,.0f}) | {r['fwd_bwd_resp_tok_s']:,.0f} | "
                     f"{r['gflop_s']:,.0f} | {r['of_peak']:.0%} of {r['peak_gflop_s']:,.0f} | "
                     f"{r['of_gemm_beside']:.0%} of {r['gemm_beside_gflop_s']:,.0f} | "
                     f"{r['fwd_tok_s']:,.0f} ({r['fwd_best_tok_s']:,.0f}) | {r['step_s']:.3f} | {peak} |")
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="tiny,smollm2_135m", help="comma list of conf/model names")
    ap.add_argument("--micro-batch-sizes", default="1,2,4,8", help="comma list of train.micro_batch_size values")
    ap.add_argument("--responses", type=int, default=8, help="responses in the (optimizer) batch")
    ap.add_argument("--prompt-len", type=int, default=96, help="padded prompt width in tokens")
    ap.add_argument("--response-len", type=int, default=192, help="longest response (= max_new_tokens)")
    ap.add_argument("--response-min", type=int, default=None, help="shortest response (default: response-len / 2)")
    ap.add_argument("--group-size", type=int, default=1, help="responses per prompt (they share its forward)")
    ap.add_argument("--group-by-length", default="on", choices=["on", "off", "both"],
                    help="train.group_by_length (on: packed); both: off and on, timed interleaved")
    ap.add_argument("--loss-agg", default="seq_mean_token_sum_norm", help="algo.loss_agg")
    ap.add_argument("--gradient-checkpointing", action="store_true", help="model.gradient_checkpointing=true")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per cell (median)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto", help="auto (bf16 on GPU, fp32 on CPU) | float32 | bfloat16")
    ap.add_argument("--autocast", action="store_true",
                    help="fp32 master weights, forwards under bf16 autocast (dtype=bfloat16 training on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--host-malloc", default="keep", choices=["keep", "system"],
                    help="on a CPU, keep: freed memory reused, as training runs (r1zero.run.hostmem); system: glibc's "
                         "defaults (before/after: run once with each)")
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args()
    args.micro_batch_sizes = [int(m) for m in args.micro_batch_sizes.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    if device.type == "cpu" and args.host_malloc == "keep":
        keep_freed_memory()
    dtype = torch.float32 if args.autocast else resolve_dtype(args.dtype, device)
    rows = []
    for name in args.models.split(","):
        rows += bench_model(name.strip(), args, device, dtype)
    table = markdown(rows, args, device, dtype)
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)
        print(f"wrote {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
