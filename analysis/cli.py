"""``python -m r1zero_analysis <dynamics|ablation|duet|table|reflection|lengths|cost|objectives|all> --runs DIR... --out DIR``;
``python -m r1zero_analysis claims --runs DIR... [--out DIR]`` (the claims registry, :mod:`r1zero_analysis.claims`);
``python -m r1zero_analysis collect --runs SWEEP_DIR --out results/<experiment>/<sweep>`` (:mod:`r1zero_analysis.collect`);
``python -m r1zero_analysis baserates --runs EVAL_DIR... --out DIR`` (:mod:`r1zero_analysis.baserates`).

Problems with the runs given end the command with one ``error: ...`` line on stderr and exit
status 2; skipped lines and runs are reported as ``warning: ...`` lines.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from . import (
    baserates,
    collect,
    cost,
    lengths,
    objectives,
    plots,
    reflection,
    report,
    seeds,
    tables,
    verdicts,
)
from .errors import AnalysisError, AnalysisWarning, MissingMetricError, NoRunsError
from .loading import CONFIG_KEYS, RunSet, discover, metrics_frame
from .samples import samples_frame
from .style import Output

COMMANDS = ["dynamics", "ablation", "duet", "table", "reflection", "lengths", "cost", "objectives", "all"]
#: Not part of ``all``: the claims registry writes ``claims.md`` (by default into ``docs/``), not a figure.
CLAIMS_COMMAND = "claims"
#: Not part of ``all``: copies finished runs' evidence (no weights) into --out, e.g. results/<experiment>/<sweep>.
COLLECT_COMMAND = "collect"
#: Not part of ``all``: reads evaluation directories (python -m r1zero.evaluate), not training runs.
BASERATES_COMMAND = "baserates"


def _filter(text: str) -> tuple[str, list[str]]:
    key, sep, values = text.partition("=")
    if not sep or key not in CONFIG_KEYS or not values:
        raise argparse.ArgumentTypeError(
            f"expected KEY=V1[,V2...] with KEY in {', '.join(CONFIG_KEYS)}: {text!r}"
        )
    return key, values.split(",")


def _keywords(text: str) -> list[str]:
    words = [k.strip() for k in text.split(",") if k.strip()]
    if not words:
        raise argparse.ArgumentTypeError("expected at least one keyword, e.g. 'wait,recheck'")
    return words


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m r1zero_analysis``."""
    p = argparse.ArgumentParser(
        prog="python -m r1zero_analysis",
        description="Rebuild the paper's figures and tables from logged r1zero runs.",
    )
    p.add_argument(
        "command", choices=[*COMMANDS, CLAIMS_COMMAND, COLLECT_COMMAND, BASERATES_COMMAND],
        help="what to make; 'all' makes everything possible + index.md; 'objectives' the seed table per algo "
             "(reward, accuracy, lengths, generated tokens; in 'all' once a preset beyond the paper ran); "
             "'claims' checks analysis/claims.py; "
             "'collect' copies finished runs (metrics, configs, manifests, eval rows; no weights) into --out; "
             "'baserates' tabulates evaluation directories (accuracy, lengths of right and wrong answers)",
    )
    p.add_argument(
        "--runs",
        nargs="+",
        action="extend",
        required=True,
        metavar="PATH",
        help="run dirs, multirun dirs or wandb_export.{csv,json,jsonl} (searched recursively)",
    )
    p.add_argument("--out", type=Path, metavar="DIR",
                   help="output directory (required; for 'claims' it defaults to docs/, writing docs/claims.md)")
    p.add_argument(
        "--pick",
        choices=["final", "best"],
        default="final",
        help="table: each run's last eval step, or its step with the best eval average",
    )
    p.add_argument(
        "--paper-rows",
        choices=["all", "oat", "none"],
        default="all",
        help="table: which rows of the paper's Table 4 to add for reference",
    )
    p.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="dynamics/ablation/lengths: trailing mean over N steps of the training metrics",
    )
    p.add_argument(
        "--filter",
        type=_filter,
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help=f"keep runs whose KEY ({', '.join(CONFIG_KEYS)}) is one of the values; repeatable",
    )
    p.add_argument(
        "--keywords",
        type=_keywords,
        default=list(reflection.DEFAULT_KEYWORDS),
        metavar="K1,K2",
        help="reflection: comma-separated self-reflection keywords (default: the paper's 15)",
    )
    p.add_argument(
        "--extra-keywords",
        action="store_true",
        help=f"reflection: add {', '.join(reflection.EXTRA_KEYWORDS)} to the keywords",
    )
    return p


class _Job:
    """Lazily loaded inputs shared by the commands of one invocation."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.filters: dict[str, list[str]] = {}
        for key, values in args.filter:  # repeating a key widens the selection
            self.filters.setdefault(key, []).extend(values)
        self.runset: RunSet = discover(args.runs)
        self._metrics: pd.DataFrame | AnalysisError | None = None

    @property
    def metrics(self) -> pd.DataFrame:
        # Loading (and its warnings) happens once, even when it fails and 'all' asks again.
        if self._metrics is None:
            try:
                self._metrics = metrics_frame(self.runset, self.filters)
            except AnalysisError as e:
                self._metrics = e
        if isinstance(self._metrics, AnalysisError):
            raise self._metrics
        return self._metrics

    def make(self, command: str, in_all: bool = False) -> Output:
        a, out = self.args, self.args.out
        if command == "dynamics":
            return plots.dynamics(self.metrics, out, a.smooth)
        if command == "ablation":
            return plots.ablation(self.metrics, out, a.smooth)
        if command == "duet":
            return plots.duet(self.metrics, out)
        if command == "table":
            result = tables.table(self.metrics, out, a.pick, a.paper_rows)
            try:  # per configuration: mean over seeds with a 95% interval (needs eval_samples.jsonl)
                result.paths.update(seeds.write(seeds.seed_table(self.runset, self.filters), out))
            except MissingMetricError as e:
                result.notes.append(f"no seed table: {e}")
            return result
        if command == "lengths":
            return lengths.lengths(self.metrics, out, a.smooth)
        if command == "cost":
            return cost.cost(self.metrics, self.runset, out)
        if command == "objectives":  # in 'all' only when a preset beyond the paper ran (sweep=objectives)
            return objectives.objectives(self.metrics, out, need_preset=in_all)
        if command == "reflection":
            keywords = [*a.keywords, *(k for k in reflection.EXTRA_KEYWORDS if a.extra_keywords and k not in a.keywords)]
            samples = samples_frame(self.runset, self.filters, detect=reflection.detector(keywords))
            return reflection.reflection(samples, out, keywords)
        raise ValueError(command)


def _make_all(job: _Job) -> list[Output]:
    outputs, skipped = [], []
    for command in COMMANDS[:-1]:
        try:
            outputs.append(job.make(command, in_all=True))
        except AnalysisError as e:
            skipped.append((command, str(e)))
            print(f"note: skipped {command}: {e}", file=sys.stderr)
    try:
        df = job.metrics
    except NoRunsError:
        df = None
    index = report.write_index(job.args.out, job.runset, df, outputs, skipped)
    if not outputs:
        raise AnalysisError(f"all: nothing could be made from the runs (see {index})")
    outputs.append(Output("index", "index", {"md": index}))
    return outputs


def _one_line_warnings(default: Callable) -> Callable:
    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, AnalysisWarning):
            print(f"warning: {message}", file=sys.stderr)
        else:
            default(message, category, filename, lineno, file, line)

    return show


def _claims(args: argparse.Namespace) -> int:
    """Print one row per claim and write ``claims.md``; 0 whatever the verdicts (2 via AnalysisError)."""
    results = verdicts.evaluate(discover(args.runs))
    for v in results:
        print(verdicts.row(v))
    print(verdicts.write(results, args.out))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 2 for bad input, as argparse does)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None:
        if args.command != CLAIMS_COMMAND:
            parser.error("the following arguments are required: --out")
        args.out = Path("docs")
    if args.smooth < 1:
        print("error: --smooth must be >= 1", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("always", AnalysisWarning)
        warnings.showwarning = _one_line_warnings(warnings.showwarning)
        try:
            if args.command == CLAIMS_COMMAND:
                return _claims(args)
            if args.command == BASERATES_COMMAND:
                for path in baserates.baserates(discover(args.runs), args.out).paths.values():
                    print(path)
                return 0
            if args.command == COLLECT_COMMAND:
                for path in collect.collect(discover(args.runs), args.out):
                    print(path)
                return 0
            job = _Job(args)
            outputs = _make_all(job) if args.command == "all" else [job.make(args.command)]
        except AnalysisError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except OSError as e:  # e.g. --out is a file or not writable
            print(f"error: {e}", file=sys.stderr)
            return 2
    if args.command == "cost":  # the comparison itself, then where it was written
        print(outputs[0].paths["md"].read_text().split("\n\n", 1)[-1], end="")
    for o in outputs:
        for path in o.paths.values():
            print(path)
    return 0
