"""The paper's benchmark suite, for ``python -m r1zero.evaluate`` and for evaluations during training.

AIME 2024, AMC, MATH500, Minerva Math and OlympiadBench (Liu et al. 2025 Table 4): greedy decoding by
default, per-benchmark accuracy and the unweighted average over benchmarks, graded by the same
:class:`~r1zero.reward.MathGrader` training uses. With ``eval.samples_per_question=k`` and a temperature the
unbiased pass@k estimator (Chen et al. 2021) is reported next to mean accuracy (paper Fig. 3).
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import torch

from ..data.questions import DataUnavailableError, Question, load_questions
from ..data.templates import PromptTemplate
from ..reward import normalize_reference
from ..rollout import SamplingConfig
from ..schema import DataConfig, EvalConfig, SourceConfig, typed
from ..schema.errors import ConfigError
from .lengths import length_bucket_metrics

log = logging.getLogger("r1zero.evaluate.suite")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct: ``1 - C(n-c, k) / C(n, k)``.

    Raises:
        ValueError: ``k`` is not in ``1..n``.
    """
    if not 1 <= k <= n:
        raise ValueError(f"pass@k needs 1 <= k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_k_values(n: int) -> list[int]:
    """k = 1, 2, 4, ... up to n, and n itself."""
    ks, k = [], 1
    while k < n:
        ks.append(k)
        k *= 2
    return ks + [n]


def load_benchmarks(ev, data_root: str | None = None) -> dict[str, list[Question]]:
    """The selected benchmarks of an ``eval`` config node.

    A benchmark named in ``ev.sources`` is a data node of its own (any file or generator ``data=`` reads,
    see :func:`r1zero.data.questions.load_questions`); any other is the split of that name in ``ev.path`` (the paper's
    ``save_to_disk`` suite, a hub id, or a local dir of the same shape). ``eval.max_samples`` keeps the first N.

    Args:
        data_root: ``paths.data_root``, for the one-line hint when the paper's release is missing.

    Raises:
        ConfigError: no benchmark selected, or one that is neither in ``ev.sources`` nor a split of
            ``ev.path`` (names the available ones).
        DataUnavailableError: a benchmark cannot be read; a row lacks the question/answer field.
    """
    ev = typed(EvalConfig, ev)
    ev.check_benchmarks()
    sources = ev.sources
    out: dict[str, list[Question]] = {}
    for name in ev.benchmarks:
        if name in sources:
            node = sources[name]
        else:  # a split of eval.path (check_benchmarks: path is set)
            node = DataConfig(name=name, sources=[SourceConfig(path=ev.path, split=name)],
                              question_key=ev.question_key, answer_key=ev.answer_key)
        try:
            qs = load_questions(node, data_root)
        except DataUnavailableError as err:
            if "split" in str(err) and name not in sources:
                raise ConfigError(f"eval.benchmarks: {err}") from None
            raise
        out[name] = qs[: ev.max_samples] if ev.max_samples else qs
    return out


def _sampling(ev: EvalConfig, template: PromptTemplate) -> SamplingConfig:
    # EvalConfig checked k > 1 needs a temperature
    return SamplingConfig(n=ev.samples_per_question, max_new_tokens=ev.max_new_tokens, temperature=ev.temperature,
                          top_p=ev.top_p, stop=template.stop)


def evaluate_suite(model, tokenizer, template: PromptTemplate, ev, *, engine, grader, step: int | None = None,
                   run_dir: Path | None = None, progress: bool = True,
                   suite: dict[str, list[Question]] | None = None) -> dict[str, float]:
    """Run every selected benchmark; return ``eval/<bench>/...`` and ``eval/average/...`` metrics.

    Writes ``eval_samples.jsonl`` (appended, one row per response) and ``eval.json`` (these numbers) into
    ``run_dir`` when given. Per benchmark: ``accuracy``, ``response_length`` (mean tokens) and its
    ``response_length_correct`` / ``_incorrect`` split (Fig. 5), ``formatted_frac``, ``truncated_frac`` (answers
    cut by ``eval.max_new_tokens``; graded like any other unless ``eval.zero_truncated``, as in the paper's
    ``evaluate_model.py``), ``num_questions``, ``pass@k`` for k > 1, and per response-length bucket
    (:mod:`r1zero.evaluate.lengths`, length / ``eval.max_new_tokens``) ``length_bucket/<bucket>/frac`` and, for buckets
    with responses, ``length_bucket/<bucket>/accuracy``. ``engine`` is a :class:`~r1zero.rollout.RolloutEngine`; ``grader`` a
    :class:`~r1zero.reward.MathGrader`. ``suite`` is the output of :func:`load_benchmarks` when the caller
    already has it (training evaluates many times; the questions are read once).
    """
    ev = typed(EvalConfig, ev)
    suite = load_benchmarks(ev) if suite is None else suite
    sampling = _sampling(ev, template)
    metrics: dict[str, float] = {}
    table: dict[str, dict[str, float]] = {}
    t_start = time.perf_counter()
    samples = open(Path(run_dir) / "eval_samples.jsonl", "a", encoding="utf-8") if run_dir else nullcontext()
    with samples as samples_f:
        for name, questions in suite.items():
            graded = _generate_and_grade(name, questions, template, sampling, ev, engine=engine, grader=grader,
                                         step=step, samples_f=samples_f, progress=progress)
            table[name] = _benchmark_row(graded, len(questions), sampling)
            metrics.update({f"eval/{name}/{key}": v for key, v in table[name].items()})
    table["average"] = _average(table)
    metrics.update({f"eval/average/{key}": v for key, v in table["average"].items()})
    metrics["time/eval_s"] = time.perf_counter() - t_start
    if run_dir is not None:
        with open(Path(run_dir) / "eval.json", "w", encoding="utf-8") as f:
            json.dump({"step": step, "samples_per_question": sampling.n, "benchmarks": table}, f, indent=2)
    return metrics


class _Graded(NamedTuple):
    """One benchmark's responses, graded: one entry per response (``correct_per_q`` one per question)."""

    lengths: list[int]
    formatted: list[bool]
    truncated: list[bool]
    rewards: list[float]
    correct_per_q: list[int]  # how many of a question's k samples are right (pass@k)


def _generate_and_grade(name: str, questions: list[Question], template: PromptTemplate, sampling: SamplingConfig,
                        ev: EvalConfig, *, engine, grader, step: int | None, samples_f, progress: bool) -> _Graded:
    """Generate ``sampling.n`` responses per question in batches of ``ev.batch_size`` responses and grade them,
    writing one ``eval_samples.jsonl`` row per response to ``samples_f`` (when given)."""
    from tqdm.auto import tqdm  # the progress bar's import is deferred to the first evaluation

    k = sampling.n
    batch_size = max(1, ev.batch_size // k)
    out = _Graded([], [], [], [], [])
    bar = tqdm(total=len(questions), desc=f"eval {name}", unit="q", disable=not progress, leave=False)
    for s in range(0, len(questions), batch_size):
        chunk = questions[s : s + batch_size]
        batch = engine.generate([template.apply(q.question) for q in chunk], sampling)
        refs = [chunk[i].answer for i in batch.prompt_index.tolist()]
        cut = batch.truncated.tolist()
        # The paper grades a truncated answer like any other at evaluation (evaluate_model.py, oat's
        # in-training eval); only training rewards are zeroed. eval.zero_truncated zeroes them here too.
        results = grader.grade(batch.responses, refs, template.answer_format,
                               truncated=cut if ev.zero_truncated else None)
        lens = batch.response_lengths.tolist()
        for j, r in enumerate(results):
            out.lengths.append(lens[j])
            out.formatted.append(r.formatted)
            out.truncated.append(bool(cut[j]))
            out.rewards.append(r.reward)
            if samples_f is not None:
                q = chunk[int(batch.prompt_index[j])]
                samples_f.write(json.dumps({
                    "step": step, "benchmark": name, "question": q.question, "response": batch.responses[j],
                    "extracted": r.extracted, "reference": normalize_reference(q.answer), "correct": bool(r.reward > 0.5),
                    "response_length": lens[j], "truncated": bool(cut[j]),
                }) + "\n")
        per_q = torch.tensor([r.reward for r in results]).view(-1, k)
        out.correct_per_q.extend(int(c) for c in (per_q > 0.5).sum(1).tolist())
        bar.update(len(chunk))
    bar.close()
    return out


def _benchmark_row(g: _Graded, num_questions: int, sampling: SamplingConfig) -> dict[str, float]:
    """One benchmark's ``eval/<bench>/...`` values (without the prefix) from its graded responses."""
    right = [n for n, r in zip(g.lengths, g.rewards, strict=True) if r > 0.5]
    wrong = [n for n, r in zip(g.lengths, g.rewards, strict=True) if r <= 0.5]
    row = {
        "accuracy": sum(g.rewards) / len(g.rewards),
        "response_length": sum(g.lengths) / len(g.lengths),
        # Fig. 5's length panels: mean tokens of correct / incorrect answers (NaN when there are none).
        "response_length_correct": sum(right) / len(right) if right else float("nan"),
        "response_length_incorrect": sum(wrong) / len(wrong) if wrong else float("nan"),
        "formatted_frac": sum(g.formatted) / len(g.formatted),
        "truncated_frac": sum(g.truncated) / len(g.truncated),
        "num_questions": float(num_questions),
        # share and accuracy per response-length bucket (length / eval.max_new_tokens; r1zero.evaluate.lengths)
        **length_bucket_metrics(torch.tensor(g.lengths), torch.tensor(g.truncated), torch.tensor(g.rewards),
                                sampling.max_new_tokens),
    }
    k = sampling.n
    if k > 1:
        for kk in pass_k_values(k):
            row[f"pass@{kk}"] = sum(pass_at_k(k, c, kk) for c in g.correct_per_q) / len(g.correct_per_q)
    return row


def _average(table: dict[str, dict[str, float]]) -> dict[str, float]:
    """The paper's "Avg.": the unweighted mean over benchmarks, not over questions. A benchmark without a value (no
    correct answer has no correct length; an empty length bucket no accuracy) is left out of it."""
    keys = list(dict.fromkeys(key for r in table.values() for key in r if key != "num_questions"))
    average = {}
    for key in keys:
        vals = [r[key] for r in table.values() if key in r and not math.isnan(r[key])]
        average[key] = sum(vals) / len(vals) if vals else float("nan")
    return average


def format_table(metrics: dict[str, float]) -> str:
    """A Markdown table (percentages) of ``eval/<bench>/...`` metrics: one row per benchmark + average."""
    benches = []
    for key in metrics:
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval" and parts[1] not in benches:
            benches.append(parts[1])
    cols = ["accuracy"] + sorted({k.split("/")[2] for k in metrics if "/pass@" in k},
                                 key=lambda c: int(c.split("@")[1]))
    head = ["benchmark", *(f"{c} %" for c in cols), "formatted %", "truncated %", "length (tokens)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for b in benches:
        row = {k.split("/")[2]: v for k, v in metrics.items() if k.startswith(f"eval/{b}/")}
        cells = [b, *(f"{100 * row.get(c, float('nan')):.1f}" for c in cols),
                 f"{100 * row.get('formatted_frac', float('nan')):.1f}",
                 f"{100 * row.get('truncated_frac', float('nan')):.1f}",
                 f"{row.get('response_length', float('nan')):.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def accuracy_line(step: int, metrics: dict[str, float]) -> str:
    """``r1zero: step <step> eval accuracy <bench>=<acc> ...``: one line per evaluation, from ``eval/<bench>/accuracy``
    only (not ``eval/<bench>/length_bucket/<bucket>/accuracy``); with one benchmark its ``average`` is left out."""
    accs = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "eval" and parts[2] == "accuracy":
            accs[parts[1]] = value
    if len(accs) == 2:
        accs.pop("average", None)  # one benchmark: its average is itself
    return f"r1zero: step {step} eval accuracy " + " ".join(f"{b}={v:.3f}" for b, v in accs.items())

