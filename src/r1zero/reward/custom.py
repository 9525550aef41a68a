"""Your own reward: ``reward=fn reward.fn=package.module:function``, run in the grader's worker pool.

The function's signature (``REWARD_FN_SIGNATURE``)::

    def my_reward(responses: list[str], references: list, rows: list[dict]) -> list[float]: ...

* ``responses[i]``: the i-th generated text, without the prompt (a stop string, e.g. ``</answer>``, stays in it).
* ``references[i]``: its question's reference answer as the data has it (``Question.answer``: str, int, a list...).
* ``rows[i]``: its question's raw data record (``Question.row``: every field of the JSONL/parquet row or of the
  generator's record, e.g. countdown's ``{"question", "answer", "nums", "target", "solution"}``), as JSON makes
  it (tuples become lists, numpy arrays lists).
* returns one finite float per response, in order (a list, tuple or 1-D array of numbers; bools count as 0/1).
  Metrics count a reward > 0.5 as correct (``rollout/solve_*_frac``, ``response_length_correct``, length-bucket
  accuracy); advantages use the values as they are. Truncated responses are set to 0 after the call, as with the
  math grader.

Where it runs: in each of the ``reward.num_workers`` grader subprocesses (:class:`~r1zero.reward.MathGrader`'s
pool; evaluation keeps grading its benchmarks with the math grader in the same processes). Every worker imports
``package.module`` once at start, with the trainer's ``sys.path`` appended to its own (the launch directory is on
both), so the module must be importable from where ``python -m r1zero.train`` runs: installed, on ``PYTHONPATH``,
or a package/module under the launch directory. The trainer also imports it once before the model loads, and a
bad path stops the run there with one line naming ``reward.fn`` and why (module not found, no such attribute, not
callable, the import raised).

Time and errors, per call: the function is called on ``reward.answers_per_call`` responses at a time (default 1,
so ``fn([response], [reference], [row])``) with a budget of ``answers_per_call x reward.timeout_s`` seconds: a
SIGALRM in the worker, then a kill by the trainer ``max(1, budget/2)`` s later for code stuck in C. Every response
of a call that runs past it scores 0 and counts in ``rollout/grader_timeouts``; a call that raises, returns the
wrong number of values or a non-finite one, or kills its worker, scores 0 for each of its responses, counts them
in ``rollout/reward_errors`` and logs one warning line with the error. Training never stops for it. Workers stay
alive between calls, so module-level caches persist (per worker).

The function sees model-written text: never ``eval``/``exec`` it (:mod:`r1zero.data.countdown` parses equations with
an ``ast`` whitelist). Worked example and docs: ``docs/rewards.md``.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..schema import RewardConfig, typed
from .pool import MathGrader

log = logging.getLogger("r1zero.reward")

REWARD_FN_SIGNATURE = "fn(responses: list[str], references: list, rows: list[dict]) -> list[float]"
MAX_ERROR_CHARS = 300  # of one warning's error text


class RewardFnError(ValueError):
    """``reward.fn`` names nothing callable; the message is one line naming ``reward.fn`` and why."""


def load_reward_fn(path: str) -> Callable:
    """Import ``package.module:function`` (the attribute may be dotted: ``module:Class.method``).

    Raises:
        RewardFnError: not of that form, module not found, the import raised, no such attribute, not callable.
    """
    where = f"reward.fn={path!r}"
    if not isinstance(path, str) or path.count(":") != 1 or not all(path.split(":")):
        raise RewardFnError(f"{where} must be 'package.module:function', a function taking {REWARD_FN_SIGNATURE}")
    module_name, attr = path.split(":")
    try:
        obj = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise RewardFnError(f"{where}: module {module_name!r} not found; it must be importable from the "
                                f"launch directory ({os.getcwd()}) or PYTHONPATH") from None
        raise RewardFnError(f"{where}: importing {module_name!r} failed: ModuleNotFoundError: {err}") from None
    except Exception as err:  # noqa: BLE001 - any error of the user's module is reported in one line
        raise RewardFnError(f"{where}: importing {module_name!r} failed: {_one_line(err)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise RewardFnError(f"{where}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise RewardFnError(f"{where}: {attr!r} is not callable (type {type(obj).__name__}); it must be a function "
                            f"taking {REWARD_FN_SIGNATURE}")
    return obj


def check_reward_config(reward_cfg) -> str | None:
    """The ``reward.fn`` path of a ``reward`` config (a :class:`~r1zero.schema.RewardConfig`, or a node / dict
    :func:`~r1zero.schema.typed` turns into one), imported and checked; None for ``reward=math``.

    Raises:
        ConfigError: a field of the wrong type or out of range (``reward.answers_per_call`` < 1, ...).
        RewardFnError: ``reward.name`` is neither ``math`` nor ``fn``, ``reward=fn`` without ``reward.fn``,
            ``reward.fn`` set under ``reward=math``, or see :func:`load_reward_fn`.
    """
    reward_cfg = typed(RewardConfig, reward_cfg)
    name, fn = reward_cfg.name, reward_cfg.fn
    if name == "math":
        if fn:
            raise RewardFnError(f"reward.fn={fn!r} is set but reward=math grades with the math grader; add reward=fn")
        return None
    if name != "fn":
        raise RewardFnError(f"reward={name!r} is not one of ['fn', 'math']")
    if not fn:
        raise RewardFnError(f"reward=fn needs reward.fn=package.module:function, a function taking "
                            f"{REWARD_FN_SIGNATURE}")
    load_reward_fn(str(fn))
    return str(fn)


def build_grader(reward_cfg, reward_fn: str | None) -> MathGrader:
    """The grader a ``reward`` config names, not started: a :class:`MathGrader` (``reward=math``), or a
    :class:`RewardFnGrader` calling ``reward_fn`` (the path :func:`check_reward_config` returned) on the same workers.
    """
    cfg = typed(RewardConfig, reward_cfg)
    if reward_fn is None:
        return MathGrader(num_workers=cfg.num_workers, timeout_s=cfg.timeout_s, verifier=cfg.verifier,
                          batch_timeout_s=cfg.batch_timeout_s, max_answer_chars=cfg.max_answer_chars)
    return RewardFnGrader(reward_fn, num_workers=cfg.num_workers, timeout_s=cfg.timeout_s,
                          answers_per_call=cfg.answers_per_call)


def worker_setup_arg(path: str) -> str:
    """The argument a worker gets to import ``path`` at start: JSON ``{"fn", "sys_path"}``, ``sys_path`` being the
    trainer's (``''``, the cwd, made absolute)."""
    return json.dumps({"fn": path, "sys_path": [os.path.abspath(p or os.curdir) for p in sys.path]})


@dataclass(frozen=True)
class FnResult:
    """Outcome of one response under ``reward.fn``; read like :class:`~r1zero.reward.GradeResult`.

    Attributes:
        reward: the function's value for it, or 0.0 after a timeout or an error.
        timed_out: its call ran past its budget.
        error: one line saying why its call failed (the exception, a bad return value, a dead worker), else None.
        extracted, formatted: None (a reward function returns only numbers); ``rollout/formatted_frac`` is not
            logged under ``reward=fn``.
        truncated: always False here (the trainer zeroes truncated responses itself).
    """

    reward: float
    timed_out: bool = False
    error: str | None = None
    extracted: None = None
    formatted: None = None
    truncated: bool = False


def _one_line(err: BaseException | str) -> str:
    text = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


def _json_default(x: Any):
    if hasattr(x, "tolist"):  # numpy arrays and scalars (parquet rows)
        return x.tolist()
    if isinstance(x, (set, frozenset)):
        return sorted(x, key=repr)
    return str(x)


def _jsonable(x: Any) -> Any:
    return json.loads(json.dumps(x, default=_json_default))


class RewardFnGrader(MathGrader):
    """A :class:`MathGrader` whose workers also run a user reward function (:meth:`grade_fn`).

    ``grade`` (the math grader, used by evaluation) works as before on the same workers.

    Args:
        fn: ``package.module:function`` (see the module docstring for the signature and the rules).
        num_workers, timeout_s: as for :class:`MathGrader`; ``timeout_s`` is per response.
        answers_per_call: responses per call of the function (>= 1); a call's budget is that times the timeout,
            and one failure zeroes all of its responses.
        **kwargs: passed on to :class:`MathGrader`.

    Attributes:
        timeouts: running count of responses scored 0 for time (math grading included).
        errors: running count of responses scored 0 because the function's call failed.

    Raises:
        RewardFnError: ``fn`` cannot be imported here (see :func:`load_reward_fn`).
        ValueError: ``answers_per_call`` < 1, or see :class:`MathGrader`.
    """

    def __init__(self, fn: str, num_workers: int = 2, timeout_s: float = 5.0, *, answers_per_call: int = 1,
                 **kwargs):
        load_reward_fn(fn)
        if int(answers_per_call) < 1:
            raise ValueError(f"answers_per_call must be >= 1, got {answers_per_call}")
        super().__init__(num_workers, timeout_s, worker_setup=worker_setup_arg(fn), **kwargs)
        self.fn = fn
        self.answers_per_call = int(answers_per_call)
        self.errors = 0

    def grade_fn(self, responses: list[str], references: list, rows: list[dict], *,
                 timeout_s: float | None = None) -> list[FnResult]:
        """The function's reward for each response, with timeouts and errors scored 0 and counted.

        Args:
            responses, references, rows: one entry per response (N each); references and rows must be JSON-able
                (other values are sent as ``str``; numpy values as lists/numbers).
            timeout_s: per-response budget for this call (default: the grader's).

        Returns:
            N :class:`FnResult`, in order.

        Raises:
            ValueError: the three lists differ in length.
            RuntimeError: the worker processes cannot start.
        """
        n = len(responses)
        if len(references) != n or len(rows) != n:
            raise ValueError(f"responses ({n}), references ({len(references)}) and rows ({len(rows)}) must have the "
                             f"same length")
        per = self.timeout_s if timeout_s is None else float(timeout_s)
        c = self.answers_per_call
        chunks = [range(i, min(i + c, n)) for i in range(0, n, c)]
        payloads = [{"responses": [str(responses[i]) for i in ch],
                     "references": _jsonable([references[i] for i in ch]),
                     "rows": _jsonable([rows[i] for i in ch])} for ch in chunks]
        replies = []
        if payloads:
            with self._lock:
                replies = self._run(payloads, per * c)
        results: list[FnResult | None] = [None] * n
        for ch, m in zip(chunks, replies, strict=True):
            rewards = m.get("rewards")
            if rewards is not None:
                for i, r in zip(ch, rewards, strict=True):
                    results[i] = FnResult(float(r))
                continue
            timed_out = bool(m.get("to"))
            error = None if timed_out else m.get("err") or (
                "its worker process died (killed by the OS, e.g. out of memory, or it exited the process)")
            for i in ch:
                results[i] = FnResult(0.0, timed_out=timed_out, error=error)
        self._account(results, per)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    def _account(self, results: list[FnResult], per: float) -> None:
        n = len(results)
        n_timeouts = sum(r.timed_out for r in results)
        errors = Counter(r.error for r in results if r.error)
        with self._lock:
            self.timeouts += n_timeouts
            self.errors += sum(errors.values())
        if n_timeouts:
            log.warning("reward.fn=%s ran past its budget (%g s per response, reward.timeout_s) on %d of %d "
                        "responses; they score 0", self.fn, per, n_timeouts, n)
        for error, count in errors.most_common(3):
            log.warning("reward.fn=%s failed on %d of %d responses, which score 0: %s", self.fn, count, n, error)
        if len(errors) > 3:
            log.warning("reward.fn=%s: %d more distinct errors in this batch", self.fn, len(errors) - 3)


# ---------------------------------------------------------------------------------------------------------------
# Worker side (r1zero.reward.worker.main calls these when it was started with a setup argument)

_fn: Callable | None = None
_fn_error: str | None = None


def worker_setup(arg: str) -> None:
    """Import the function named in ``arg`` (:func:`worker_setup_arg`); a failure is kept and reported by every
    :func:`worker_call`, so the worker still starts and the trainer sees one warning per batch."""
    global _fn, _fn_error
    spec = json.loads(arg)
    for p in spec.get("sys_path", []):
        if p not in sys.path:
            sys.path.append(p)
    try:
        _fn = load_reward_fn(spec["fn"])
    except Exception as err:  # noqa: BLE001 - reported per call
        _fn_error = _one_line(str(err) if isinstance(err, RewardFnError) else err)


def check_rewards(out: Any, n: int) -> list[float]:
    """``out`` as ``n`` finite floats.

    Raises:
        TypeError: not a sequence of numbers.
        ValueError: not ``n`` values, or a NaN/inf.
    """
    if isinstance(out, (str, bytes, dict)) or not hasattr(out, "__len__"):
        raise TypeError(f"reward.fn returned {type(out).__name__}, not a list of {n} floats")
    if len(out) != n:
        raise ValueError(f"reward.fn returned {len(out)} values for {n} responses")
    values = []
    for x in out:
        if isinstance(x, (str, bytes)):
            raise TypeError(f"reward.fn returned a {type(x).__name__} among its values, not a float")
        values.append(float(x))
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"reward.fn returned a non-finite value: {values}")
    return values


def worker_call(msg: dict, w) -> dict:
    """One call of the function on a message ``{"id", "timeout", "responses", "references", "rows"}``, under a
    SIGALRM of ``timeout`` seconds; the reply ``{"id", "ok", "to", "rewards" (None on failure), "err"}``.

    ``w`` is the calling worker module (:mod:`r1zero.reward.worker`, its alarm handler and ``_SoftTimeout``),
    passed in rather than imported so the two modules do not import each other."""

    reply = {"id": msg["id"], "ok": True, "to": False, "rewards": None, "err": None}
    if _fn is None:
        reply["err"] = _fn_error or "reward.fn was not loaded in the worker"
        return reply
    n = len(msg["responses"])
    try:
        if signal.getsignal(signal.SIGALRM) is not w._on_alarm:
            signal.signal(signal.SIGALRM, w._on_alarm)
        w._alarm_armed = True
        signal.setitimer(signal.ITIMER_REAL, float(msg["timeout"]))
        try:
            reply["rewards"] = check_rewards(_fn(msg["responses"], msg["references"], msg["rows"]), n)
        except w._SoftTimeout:
            reply["to"] = True
        except (Exception, SystemExit) as err:  # noqa: BLE001 - a failing reward scores 0; the worker lives on
            reply["err"] = _one_line(err)
        finally:
            w._alarm_armed = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except w._SoftTimeout:  # the alarm landed in the cleanup, after the call
        if reply["rewards"] is None and reply["err"] is None:
            reply["to"] = True
    return reply
