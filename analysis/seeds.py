"""Seed statistics for the table: per configuration, the mean over seeds and a 95% bootstrap interval.

A single run's AIME score swings 5-15 points between seeds (30 questions), so a configuration is reported as
the mean over its seeds with an interval from a two-level bootstrap: each replicate resamples the seeds with
replacement and, independently, each benchmark's questions with replacement (the same questions for every
seed), then takes the mean over seeds of the per-benchmark accuracy and the unweighted average over benchmarks
(the paper's "Avg."). The interval is the 2.5 and 97.5 percentiles of ``B`` replicates; with one seed only the
questions are resampled. Inputs are ``eval_samples.jsonl`` (one row per response; several samples of a question
are averaged first) at each run's last evaluated step, and each run's config for the eval protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import MissingMetricError
from .loading import EVAL_SAMPLES_FILE, GROUP_COLS, RunSet, _config_file, _lookup, iter_jsonl, read_config

AVG = "average"


def per_question(runset: RunSet, filters: Mapping[str, Iterable[str]] | None = None) -> pd.DataFrame:
    """One row per (run, benchmark, question) at the run's last evaluated step: ``accuracy`` over its samples."""
    rows = []
    for run in runset.runs:
        if any(str(run.labels.get(k)) not in set(map(str, v)) for k, v in (filters or {}).items()):
            continue
        path = run.path / EVAL_SAMPLES_FILE
        if not path.is_file():
            continue
        samples = [r for r in iter_jsonl(path) if "benchmark" in r and "question" in r]
        if not samples:
            continue
        steps = [r.get("step") for r in samples if isinstance(r.get("step"), (int, float))]
        last = max(steps) if steps else None
        for r in samples:
            if last is None or r.get("step") == last:
                rows.append({"run_dir": str(run.path), **run.labels, "step": last, "benchmark": r["benchmark"],
                             "question": r["question"], "correct": float(bool(r.get("correct")))})
    if not rows:
        raise MissingMetricError(f"seed table: no run under {runset.describe()} has {EVAL_SAMPLES_FILE}")
    df = pd.DataFrame(rows)
    keys = ["run_dir", *GROUP_COLS, "seed", "step", "benchmark", "question"]
    return df.groupby(keys, dropna=False, sort=True)["correct"].mean().rename("accuracy").reset_index()


def bootstrap(acc: dict[str, np.ndarray], n_boot: int = 2000, rng_seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """Mean and 95% interval per benchmark and of their average.

    Args:
        acc: benchmark -> (S, Q) per-question accuracy of S seeds on the same Q questions.
        n_boot: bootstrap replicates.

    Returns:
        benchmark (and ``"average"``) -> ``(mean, low, high)``, as fractions.
    """
    rng = np.random.default_rng(rng_seed)
    names = list(acc)
    n_seeds = next(iter(acc.values())).shape[0]
    reps = np.empty((n_boot, len(names)))
    for b in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else np.zeros(1, dtype=int)
        for j, name in enumerate(names):
            q = acc[name].shape[1]
            reps[b, j] = acc[name][np.ix_(seeds, rng.integers(0, q, q))].mean()
    out = {}
    for j, name in enumerate(names):
        lo, hi = np.percentile(reps[:, j], [2.5, 97.5])
        out[name] = (float(acc[name].mean()), float(lo), float(hi))
    avg = reps.mean(axis=1)
    lo, hi = np.percentile(avg, [2.5, 97.5])
    out[AVG] = (float(np.mean([acc[n].mean() for n in names])), float(lo), float(hi))
    return out


def protocol(run_dir: str) -> dict[str, str]:
    """The eval protocol of a run, from its config: decoding, token budget, verifier, truncation rule."""
    cfg_path = _config_file(Path(run_dir))
    cfg = read_config(cfg_path) if cfg_path else {}
    temp = _lookup(cfg, "eval.temperature") or 0
    k = _lookup(cfg, "eval.samples_per_question") or 1
    decoding = "greedy" if not temp else f"T={temp}, {k} samples"
    zero = _lookup(cfg, "eval.zero_truncated")
    return {"decoding": decoding, "max_new_tokens": str(_lookup(cfg, "eval.max_new_tokens") or "?"),
            "verifier": str(_lookup(cfg, "reward.verifier") or "r1zero"),
            "truncated": "scored 0" if zero in (None, True) else "graded"}


def seed_table(runset: RunSet, filters: Mapping[str, Iterable[str]] | None = None, *, n_boot: int = 2000
               ) -> pd.DataFrame:
    """One row per configuration (algo, template, data, model) with ``n_seeds``, the eval protocol and, per
    benchmark and ``average``, ``<bench>`` (mean, %), ``<bench>_lo`` / ``<bench>_hi`` (95% interval, %).

    Seeds are matched on the questions every one of them answered; a configuration whose seeds evaluated
    different steps still uses each seed's last step (``steps`` lists them).
    """
    pq = per_question(runset, filters)
    records = []
    for keys, g in pq.groupby(GROUP_COLS, dropna=False, sort=True):
        runs = sorted(g["run_dir"].unique())
        acc = {}
        for bench, gb in g.groupby("benchmark", sort=True):
            wide = gb.pivot_table(index="run_dir", columns="question", values="accuracy").reindex(runs)
            wide = wide.dropna(axis=1)  # questions every seed answered
            if wide.shape[1]:
                acc[bench] = wide.to_numpy()
        if not acc:
            continue
        stats = bootstrap(acc, n_boot=n_boot)
        seeds = sorted(int(s) for s in g["seed"].dropna().unique())
        rec = {**dict(zip(GROUP_COLS, keys)), "n_seeds": len(runs), "seeds": ",".join(map(str, seeds)),
               "steps": ",".join(sorted({str(int(s)) for s in g["step"].dropna()})), **protocol(runs[0])}
        for name, (mean, lo, hi) in stats.items():
            rec.update({name: 100 * mean, f"{name}_lo": 100 * lo, f"{name}_hi": 100 * hi})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def _benches(tab: pd.DataFrame) -> list[str]:
    return [c[:-3] for c in tab.columns if c.endswith("_lo")]


def to_markdown(tab: pd.DataFrame) -> str:
    benches = _benches(tab)
    header = [*GROUP_COLS, "seeds", "protocol", *benches]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * (len(GROUP_COLS) + 2) + ["---:"] * len(benches)) + "|"]
    for _, r in tab.iterrows():
        proto = f"{r['decoding']}, {r['max_new_tokens']} tokens, {r['verifier']}, truncated {r['truncated']}"
        cells = [str(r[c]) for c in GROUP_COLS] + [f"{r['n_seeds']} ({r['seeds']})", proto]
        cells += [f"{r[b]:.1f} [{r[b + '_lo']:.1f}, {r[b + '_hi']:.1f}]" if pd.notna(r.get(b)) else "–" for b in benches]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("_", "\\_") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def to_latex(tab: pd.DataFrame) -> str:
    benches = _benches(tab)
    cols = "l" * (len(GROUP_COLS) + 1) + "r" * len(benches)
    esc = lambda s: str(s).replace("_", r"\_")
    lines = [rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join([*map(esc, GROUP_COLS), "seeds", *map(esc, benches)]) + r" \\", r"\midrule"]
    for _, r in tab.iterrows():
        cells = [esc(r[c]) for c in GROUP_COLS] + [str(r["n_seeds"])]
        cells += [f"{r[b]:.1f} {{\\scriptsize [{r[b + '_lo']:.1f}, {r[b + '_hi']:.1f}]}}" if pd.notna(r.get(b)) else "--"
                  for b in benches]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


CAPTION = ("Accuracy (%) per configuration: mean over seeds at each run's last evaluation, with a 95% bootstrap "
           "interval over seeds and questions (analysis/seeds.py); protocol from the runs' configs.")


def write(tab: pd.DataFrame, out: Path) -> dict[str, Path]:
    """``table_seeds.md`` / ``.csv`` / ``.tex`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"seeds_md": out / "table_seeds.md", "seeds_csv": out / "table_seeds.csv", "seeds_tex": out / "table_seeds.tex"}
    paths["seeds_md"].write_text(f"{CAPTION}\n\n{to_markdown(tab)}")
    tab.to_csv(paths["seeds_csv"], index=False)
    paths["seeds_tex"].write_text(f"% {CAPTION}\n{to_latex(tab)}")
    return paths
