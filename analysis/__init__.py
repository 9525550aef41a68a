"""Rebuild the figures and tables of "Understanding R1-Zero-Like Training" from logged r1zero runs.

Reads run directories only (``metrics.jsonl``, ``samples.jsonl``, ``eval_samples.jsonl`` and the
Hydra config, see ``docs/design.md``) or long-format wandb exports, never training internals.

Command line: ``python -m r1zero_analysis <dynamics|ablation|duet|table|reflection|lengths|cost|objectives|all> --runs DIR... --out DIR``.
From Python::

    from r1zero_analysis import load_runs, plots
    df = load_runs(["multirun/2026-01-01/12-00-00"])   # one row per run x step
    plots.dynamics(df, Path("figures"))
"""

from .errors import AnalysisError, AnalysisWarning, MissingMetricError, NoRunsError, NotApplicableError
from .loading import discover, load_runs, metrics_frame
from .samples import samples_frame

__all__ = [
    "AnalysisError",
    "AnalysisWarning",
    "MissingMetricError",
    "NoRunsError",
    "NotApplicableError",
    "discover",
    "load_runs",
    "metrics_frame",
    "samples_frame",
]
