"""Logged responses (``samples.jsonl``, ``eval_samples.jsonl``) as a frame, for the reflection analysis."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd

from .errors import NoRunsError
from .loading import EVAL_SAMPLES_FILE, ID_COLS, SAMPLES_FILE, RunSet, apply_filters, iter_jsonl

#: A training sample counts as correct above this reward. Rewards are 1/0 in the paper; the
#: threshold also tolerates small format bonuses or -1/1 rewards without misclassifying.
CORRECT_REWARD_THRESHOLD = 0.5


def samples_frame(
    runset: RunSet,
    filters: Mapping[str, Iterable[str]] | None = None,
    detect: Callable[[str], bool] | None = None,
) -> pd.DataFrame:
    """One row per logged response: run labels, ``source`` (train/eval), step, benchmark, response, correct.

    Training samples are judged by ``reward > CORRECT_REWARD_THRESHOLD``, eval samples by ``correct``.
    Eval samples from a standalone evaluation have no training step (``<NA>``). With ``detect``, the
    text is not kept: a boolean ``reflect`` column (``detect(response)``) replaces ``response``, which
    keeps memory small on long-response eval logs.
    """
    records: list[dict[str, Any]] = []
    text_col = "response" if detect is None else "reflect"
    for run in runset.runs:
        base = {"run_dir": str(run.path), **run.labels}
        for source, name in (("train", SAMPLES_FILE), ("eval", EVAL_SAMPLES_FILE)):
            path = run.path / name
            if not path.is_file():
                continue
            for row in iter_jsonl(path):
                response = row.get("response")
                if not isinstance(response, str):
                    continue
                if source == "train":
                    reward = row.get("reward")
                    correct = isinstance(reward, (int, float)) and reward > CORRECT_REWARD_THRESHOLD
                    benchmark = None
                else:
                    correct = bool(row.get("correct"))
                    benchmark = row.get("benchmark")
                step = row.get("step")
                records.append(
                    {
                        **base,
                        "source": source,
                        "step": step if isinstance(step, (int, float)) else None,
                        "benchmark": benchmark,
                        text_col: response if detect is None else bool(detect(response)),
                        "correct": bool(correct),
                    }
                )
    cols = [*ID_COLS[:-1], "source", "step", "benchmark", text_col, "correct"]
    if not records:
        raise NoRunsError(
            f"no responses logged ({SAMPLES_FILE} or {EVAL_SAMPLES_FILE}) "
            f"in the runs under {runset.describe()}"
        )
    df = pd.DataFrame.from_records(records, columns=cols)
    df["seed"] = df["seed"].astype("Int64")
    df["step"] = pd.to_numeric(df["step"]).round().astype("Int64")
    df = apply_filters(df, filters)
    if df.empty:
        raise NoRunsError(
            f"no responses left under {runset.describe()} after the filters {dict(filters or {})}"
        )
    return df.reset_index(drop=True)
