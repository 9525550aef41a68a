"""Evaluate the claims registry (:mod:`r1zero_analysis.claims`) on run directories: ``python -m r1zero_analysis claims``.

Per claim: the runs its selector picks, one statistic per run (:data:`STATISTICS`), the effect with a 95%
bootstrap interval over seeds (``scipy.stats.bootstrap``, percentile method, 9,999 resamples, fixed random state;
paired by seed when both arms ran the same seeds, else each arm resampled on its own), the seeds per arm and a
verdict. With 3 paired seeds the percentile interval's lower end is the smallest of the 3 differences, so a claim
passes only when every seed agrees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sstats

from .claims import CLAIMS, Claim
from .errors import AnalysisError
from .loading import METRICS_FILE, RunSet, _config_file, _lookup, _metrics_frame, read_config, read_jsonl

PASS, FAIL, INCONCLUSIVE, NOT_RUN = "PASS", "FAIL", "INCONCLUSIVE", "NOT RUN"
KINDS = ("difference", "duet", "expectation")
N_RESAMPLES = 9999
HEAD_STEPS = 3  # growth's start: the mean of the first 3 logged steps


class RegistryError(AnalysisError):
    """The claims registry itself is malformed (a duplicate id, an unknown statistic or kind)."""


# ------------------------------------------------------------------------------------- per-run statistics


def _series(df: pd.DataFrame, metric: str) -> pd.Series:
    """The metric over steps, steps that did not log it dropped."""
    if metric not in df.columns:
        return pd.Series(dtype=float)
    return df.set_index("step")[metric].dropna().sort_index()


def growth(s: pd.Series) -> float:
    """Mean over the last quarter of the logged steps minus the mean over the first :data:`HEAD_STEPS`."""
    if len(s) < 2 * HEAD_STEPS:
        return float("nan")
    return float(s.iloc[-max(1, len(s) // 4):].mean() - s.iloc[:HEAD_STEPS].mean())


def last_quarter(s: pd.Series) -> float:
    """Mean over the last quarter of the logged steps (at least one)."""
    return float(s.iloc[-max(1, len(s) // 4):].mean()) if len(s) else float("nan")


STATISTICS: dict[str, Callable[[pd.Series], float]] = {
    "growth": growth,
    "last_quarter": last_quarter,
    "final": lambda s: float(s.iloc[-1]) if len(s) else float("nan"),
    "initial": lambda s: float(s.iloc[0]) if len(s) else float("nan"),
}


# ------------------------------------------------------------------------------------------- runs


@dataclass
class RunRecord:
    """A run directory's config (with the Hydra choices under ``choices``) and metrics frame."""

    path: Path
    config: dict[str, Any]
    metrics: pd.DataFrame

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) else None

    def matches(self, selector: dict[str, object]) -> bool:
        for key, want in selector.items():
            value = _lookup(self.config, key)
            wanted = want if isinstance(want, (list, tuple, set)) else [want]
            if str(value) not in {str(w) for w in wanted}:
                return False
        return True


def _choices(run_dir: Path) -> dict[str, Any]:
    path = run_dir / ".hydra" / "hydra.yaml"
    try:
        hydra = yaml.safe_load(path.read_text()) if path.is_file() else {}
    except (OSError, yaml.YAMLError):
        return {}
    return dict(_lookup(hydra or {}, "hydra.runtime.choices") or {})


def load_records(runset: RunSet) -> list[RunRecord]:
    """Every run of ``runset`` that logged metrics, with its config and Hydra choices."""
    records = []
    for run in runset.runs:
        if not run.has_metrics:
            continue
        cfg_path = _config_file(run.path)
        config = read_config(cfg_path) if cfg_path else {}
        config["choices"] = _choices(run.path)
        # the same frame every figure reads: one row per step, the last value a resumed run logged for it
        df = _metrics_frame(read_jsonl(run.path / METRICS_FILE), str(run.path / METRICS_FILE))
        if df is not None:
            records.append(RunRecord(run.path, config, df))
    return records


# ------------------------------------------------------------------------------------------- verdicts


@dataclass
class Verdict:
    """One row of the claims table. ``effect``/``low``/``high`` are NaN when the claim did not run."""

    claim: Claim
    verdict: str
    effect: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    n_a: int = 0
    n_b: int = 0
    paired: bool = False
    note: str = ""


def _per_seed(records: Sequence[RunRecord], claim: Claim, selector: dict) -> dict[int, float]:
    fn = STATISTICS[claim.statistic]
    out = {}
    for r in records:
        if r.matches({**claim.select, **selector}) and r.seed is not None:
            value = fn(_series(r.metrics, claim.metric))
            if np.isfinite(value):
                out[r.seed] = value
    return out


def interval(a: dict[int, float], b: dict[int, float] | None) -> tuple[float, float, float, bool]:
    """``(effect, low, high, paired)``: mean(a) - mean(b) (or mean(a) without ``b``) with its 95% bootstrap
    interval over seeds. Paired by seed when both have the same seeds; one seed per arm gives a zero-width
    interval at the point."""
    kw = {"confidence_level": 0.95, "n_resamples": N_RESAMPLES, "method": "percentile", "random_state": 0}
    if b is None or set(a) == set(b):
        keys = sorted(a)
        d = np.array([a[k] - (b[k] if b is not None else 0.0) for k in keys])
        effect = float(d.mean())
        if len(d) < 2 or np.ptp(d) == 0:
            return effect, effect, effect, b is not None
        ci = sstats.bootstrap((d,), np.mean, **kw).confidence_interval
        return effect, float(ci.low), float(ci.high), b is not None
    xa, xb = np.array(list(a.values())), np.array(list(b.values()))
    effect = float(xa.mean() - xb.mean())
    if len(xa) < 2 or len(xb) < 2:
        return effect, effect, effect, False
    ci = sstats.bootstrap((xa, xb), lambda x, y, axis: x.mean(axis) - y.mean(axis), vectorized=True, paired=False,
                          **kw).confidence_interval
    return effect, float(ci.low), float(ci.high), False


def _decide(low: float, high: float, threshold: float, enough: bool) -> str:
    if not enough:
        return INCONCLUSIVE
    if low > threshold:
        return PASS
    if high <= threshold:
        return FAIL
    return INCONCLUSIVE


def _difference(records: Sequence[RunRecord], claim: Claim) -> Verdict:
    a, b = _per_seed(records, claim, claim.arm_a), _per_seed(records, claim, claim.arm_b)
    if not a or not b:
        missing = " and ".join(n for n, x in (("A", a), ("B", b)) if not x)
        return Verdict(claim, NOT_RUN, n_a=len(a), n_b=len(b), note=f"no run of arm {missing}")
    effect, low, high, paired = interval(a, b)
    enough = min(len(a), len(b)) >= claim.min_seeds
    note = "" if enough else f"fewer than {claim.min_seeds} seeds per arm"
    return Verdict(claim, _decide(low, high, claim.threshold, enough), effect, low, high, len(a), len(b), paired, note)


def _expectation(records: Sequence[RunRecord], claim: Claim) -> Verdict:
    a = _per_seed(records, claim, {})
    if not a:
        return Verdict(claim, NOT_RUN, note=f"reference {_value(claim.expected, claim.unit)}; no such run here")
    mean, low, high, _ = interval(a, None)
    enough = len(a) >= claim.min_seeds
    return Verdict(claim, _decide(low - claim.expected, high - claim.expected, claim.threshold, enough),
                   mean - claim.expected, low - claim.expected, high - claim.expected, len(a), 0, False,
                   f"measured {_value(mean, claim.unit)}, reference {_value(claim.expected, claim.unit)}")


def _duet(records: Sequence[RunRecord], claim: Claim) -> Verdict:
    initial, final = {}, {}
    for r in records:
        if r.matches(claim.select) and r.seed is not None:
            key = (str(_lookup(r.config, "data.name")), str(_lookup(r.config, "template.name")))
            s = _series(r.metrics, claim.metric)
            if len(s) >= 2:
                initial.setdefault(key, {})[r.seed] = STATISTICS["initial"](s)
                final.setdefault(key, {})[r.seed] = STATISTICS[claim.statistic](s)
    if not initial:
        return Verdict(claim, NOT_RUN, note="no duet run with an initial and a final evaluation")
    best, tried = None, []
    for (data, far), far_init in initial.items():
        for (data2, near), near_init in initial.items():
            if data2 != data or near == far:
                continue
            _, gap_low, _, _ = interval(near_init, far_init)
            if not gap_low > 0:  # the far template must start lower, with its interval
                continue
            effect, low, high, paired = interval(final[(data, far)], near_init)
            n = min(len(far_init), len(near_init))
            tried.append(f"{far} vs {near} on {data}")
            if best is None or low > best.low:
                best = Verdict(claim, _decide(low, high, claim.threshold, n >= claim.min_seeds), effect, low, high,
                               len(far_init), len(near_init), paired,
                               f"{far} (far) vs {near} (near) on {data}; of {len(tried)} pair(s) that start apart")
    if best is None:
        return Verdict(claim, INCONCLUSIVE, note="no template pair whose initial accuracies differ (95% interval)")
    best.note = best.note.replace(f"of {len(tried)} pair", f"best of {len(tried)} pair")
    return best


def check_registry(claims: Sequence[Claim]) -> None:
    """Raises :class:`RegistryError` on a duplicate id, an unknown kind or statistic, or a claim missing what its
    kind needs."""
    seen = set()
    for c in claims:
        if c.id in seen:
            raise RegistryError(f"claims registry: duplicate id {c.id!r}")
        seen.add(c.id)
        if c.kind not in KINDS:
            raise RegistryError(f"claims registry: {c.id}: kind {c.kind!r} is not one of {', '.join(KINDS)}")
        if c.statistic not in STATISTICS:
            raise RegistryError(f"claims registry: {c.id}: statistic {c.statistic!r} is not one of "
                                f"{', '.join(STATISTICS)}")
        if c.kind == "difference" and not (c.arm_a and c.arm_b):
            raise RegistryError(f"claims registry: {c.id}: a difference needs arm_a and arm_b")
        if c.kind == "expectation" and c.expected is None:
            raise RegistryError(f"claims registry: {c.id}: an expectation needs expected")


def evaluate(runset: RunSet, claims: Sequence[Claim] = CLAIMS) -> list[Verdict]:
    """One :class:`Verdict` per claim, in registry order.

    Raises:
        RegistryError: the registry is malformed.
    """
    check_registry(claims)
    records = load_records(runset)
    judge = {"difference": _difference, "expectation": _expectation, "duet": _duet}
    return [judge[c.kind](records, c) for c in claims]


# ------------------------------------------------------------------------------------------- output


def _value(x: float, unit: str = "") -> str:
    return f"{x:.1f} {unit}" if unit else f"{x:.3f}"


def _num(x: float, unit: str = "") -> str:
    if not np.isfinite(x):
        return "–"
    return f"{x:+.1f}" if unit == "tokens" else f"{x:+.3f}"


def row(v: Verdict) -> str:
    """One line for the terminal, beginning with the claim's id."""
    ci = f"[{_num(v.low, v.claim.unit)}, {_num(v.high, v.claim.unit)}]"
    seeds = f"{v.n_a}/{v.n_b}" if v.claim.kind != "expectation" else f"{v.n_a}"
    return (f"{v.claim.id:<42} effect {_num(v.effect, v.claim.unit):>7} {v.claim.unit or '':<6} 95% {ci:<17} "
            f"seeds {seeds:<5} {v.verdict}" + (f"  ({v.note})" if v.note else ""))


HEADER = """# Claims

Each finding of Liu et al. (2025) that r1zero checks against its own committed runs, rebuilt by
`python -m r1zero_analysis claims --runs results/ --out docs` from the registry in `analysis/claims.py`. Effect: arm A
minus arm B (or, for a paper number, measured minus expected); 95% interval: bootstrap over seeds (paired by seed
when both arms ran the same seeds); PASS when the whole interval is past the threshold, FAIL when the whole
interval is on the other side, INCONCLUSIVE when it straddles it or an arm has too few seeds, NOT RUN when no
committed run is selected. `growth` = mean over the last quarter of the steps minus the mean over the first 3.
"""


def to_markdown(verdicts: Sequence[Verdict]) -> str:
    columns = ("| id | source | claim | runs | metric (statistic) | holds when | effect | 95% interval | seeds (A/B) "
               "| verdict |")
    lines = [HEADER, columns, "|---|---|---|---|---|---|---:|---|---|---|"]
    for v in verdicts:
        c = v.claim
        runs = ", ".join(f"{k}={val}" for k, val in {**c.select}.items())
        if c.kind == "difference":
            runs += f"; A: {', '.join(f'{k}={x}' for k, x in c.arm_a.items())}; B: " \
                    f"{', '.join(f'{k}={x}' for k, x in c.arm_b.items())}"
        holds = f"effect > {c.threshold:g}" + (f" (reference {c.expected:.3f})" if c.expected is not None else "")
        seeds = f"{v.n_a}/{v.n_b}" if c.kind != "expectation" else str(v.n_a)
        cells = [c.id, c.source, c.statement, runs, f"`{c.metric}` ({c.statistic})", holds,
                 f"{_num(v.effect, c.unit)} {c.unit}".strip(), f"[{_num(v.low, c.unit)}, {_num(v.high, c.unit)}]",
                 seeds, f"**{v.verdict}**" + (f" ({v.note})" if v.note else "")]
        lines.append("| " + " | ".join(x.replace("|", "\\|") for x in cells) + " |")
    return "\n".join(lines) + "\n"


def write(verdicts: Sequence[Verdict], out: Path) -> Path:
    """``claims.md`` in ``out``; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "claims.md"
    path.write_text(to_markdown(verdicts))
    return path
