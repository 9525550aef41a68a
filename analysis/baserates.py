"""``python -m r1zero_analysis baserates --runs EVAL_DIR... --out DIR``: what a model does before any RL, per setting.

One row per evaluation directory (``python -m r1zero.evaluate`` at T > 0 with several samples per question): the
template, the question set's spec, accuracy and pass@k (from ``eval.json``), the share of answers with an
extractable answer (formatted) and cut by the budget (truncated), and the lengths in tokens (mean ± SD, count) of
right answers and of wrong answers that ended on their own, from ``eval_samples.jsonl``. This is how a testbed is
chosen: a length effect needs right answers to be neither rare nor certain, and wrong ones to vary in length.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import NoRunsError
from .loading import EVAL_SAMPLES_FILE, RunSet, _config_file, _lookup, iter_jsonl, read_config
from .style import Output


def _spread(xs: list[float]) -> str:
    if not xs:
        return "–"
    return f"{np.mean(xs):.0f} ± {np.std(xs):.0f} (n={len(xs)})"


def base_rates(runset: RunSet) -> pd.DataFrame:
    """One row per evaluation directory of ``runset``.

    Raises:
        NoRunsError: none holds ``eval_samples.jsonl`` and ``eval.json``.
    """
    rows = []
    for run in runset.runs:
        samples_path, summary_path = run.path / EVAL_SAMPLES_FILE, run.path / "eval.json"
        if not (samples_path.is_file() and summary_path.is_file()):
            continue
        cfg_path = _config_file(run.path)
        cfg = read_config(cfg_path) if cfg_path else {}
        summary = json.loads(summary_path.read_text())
        samples = list(iter_jsonl(samples_path))
        for bench, stats in summary.get("benchmarks", {}).items():
            if bench == "average":
                continue
            mine = [s for s in samples if s.get("benchmark") == bench]
            right = [s["response_length"] for s in mine if s.get("correct")]
            wrong = [s["response_length"] for s in mine if not s.get("correct") and not s.get("truncated")]
            src = _lookup(cfg, f"eval.sources.{bench}") or {}
            k = summary.get("samples_per_question", 1)
            rows.append({
                "setting": run.path.name, "template": str(_lookup(cfg, "template.name")), "benchmark": bench,
                "operations": src.get("num_operations", 1), "operands": f"{src.get('min_value', '?')}..{src.get('max_value', '?')}",
                "operators": "".join(src.get("operators") or []), "questions": int(stats.get("num_questions", 0)),
                "samples": k, "max_new_tokens": _lookup(cfg, "eval.max_new_tokens"),
                "temperature": _lookup(cfg, "eval.temperature"), "accuracy": stats["accuracy"],
                f"pass@{k}": stats.get(f"pass@{k}", float("nan")), "formatted": stats["formatted_frac"],
                "truncated": stats["truncated_frac"], "right_length": _spread(right), "wrong_finished_length": _spread(wrong),
            })
    if not rows:
        raise NoRunsError(f"baserates: no evaluation directory (eval.json + {EVAL_SAMPLES_FILE}) under "
                          f"{runset.describe()}")
    return pd.DataFrame(rows)


def to_markdown(df: pd.DataFrame) -> str:
    pass_col = next(c for c in df.columns if c.startswith("pass@"))
    header = ["setting", "template", "questions (ops, operands)", "accuracy", pass_col, "formatted", "truncated",
              "right answers (tokens)", "wrong finished answers (tokens)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * 4 + ["---"] * 2) + "|"]
    for _, r in df.iterrows():
        q = f"{r['questions']} x {r['samples']} ({r['operations']} op {r['operators']}, {r['operands']})"
        cells = [r["setting"], r["template"], q, f"{r['accuracy']:.3f}", f"{r[pass_col]:.3f}", f"{r['formatted']:.3f}",
                 f"{r['truncated']:.3f}", r["right_length"], r["wrong_finished_length"]]
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def baserates(runset: RunSet, out: Path) -> Output:
    """``baserates.md`` and ``baserates.csv`` in ``out``."""
    df = base_rates(runset)
    out.mkdir(parents=True, exist_ok=True)
    md, csv = out / "baserates.md", out / "baserates.csv"
    first = df.iloc[0]
    md.write_text(f"Base rates before RL: T={first['temperature']}, {first['samples']} samples per question, "
                  f"{first['max_new_tokens']} new tokens (analysis/baserates.py).\n\n{to_markdown(df)}")
    df.to_csv(csv, index=False)
    return Output("baserates", "base rates", {"md": md, "csv": csv})
