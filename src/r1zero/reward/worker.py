"""Worker-process side of the grader: the equivalence check behind a SIGALRM timeout, over stdin/stdout.

Each request names its verifier (``r1zero.reward.verifiers``): ``r1zero`` (math_verify, ``_equivalent``
below), or the paper's ``fast`` / ``math_verify`` (``verifiers.paper_grade``). SIGALRM only works on a
process's main thread, hence a process per worker; ``python -c "from r1zero.reward.worker import main;
main()"`` is what ``MathGrader`` launches.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import time
from contextlib import contextmanager
from functools import lru_cache

from .verifiers import PAPER_MATH_VERIFY_CALL_S, guard_math_verify_expr, paper_grade


class _SoftTimeout(BaseException):
    """Raised by SIGALRM in a worker; BaseException so math_verify's ``except Exception`` cannot eat it."""


class _CallTimeout(BaseException):
    """Raised by SIGALRM when one math-verify call ran past the paper's per-call limit (:func:`_call_limit`)."""


_alarm_armed = False
_call_armed = False


def _on_alarm(signum, frame):
    global _alarm_armed, _call_armed
    if _call_armed:  # the timer runs a call's limit, the answer's own alarm waits (see _call_limit)
        _call_armed = False
        raise _CallTimeout
    if _alarm_armed:
        # One raise per arming: if library code swallows it, the parent's hard deadline takes over.
        _alarm_armed = False
        raise _SoftTimeout


def _worker_init(memory_limit_mb: int | None) -> None:
    logging.getLogger("math_verify").setLevel(logging.CRITICAL)
    logging.getLogger("latex2sympy2_extended").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGALRM, _on_alarm)
    if memory_limit_mb:
        try:
            import resource

            with open("/proc/self/status") as f:
                vm_kb = next(int(line.split()[1]) for line in f if line.startswith("VmSize:"))
            # On top of what the interpreter and sympy have already mapped, which varies by platform.
            limit = (vm_kb * 1024) + memory_limit_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
        except (ImportError, OSError, ValueError, StopIteration):
            pass
    # math_verify imports parts of sympy/ANTLR on first use, sympy's parser and simplify too; pay that before
    # the first answer is timed.
    guard_math_verify_expr()
    _verify_pair("\\frac{1}{2}", "0.5", 30.0)
    _verify_pair("x+1", "1+x", 30.0, "math_verify")  # fast's sympy simplify too (its first call imports modules)
    # math-verify's first parse imports and builds its parser: unlimited, or a 1 s call limit could cut an import
    _verify_pair("\\frac{2}{4}", "\\frac12", 30.0, "math_verify", call=_unlimited_call)
    # math-verify's ANTLR parser builds its prediction tables (shared by every parse) lazily, so a fresh worker
    # checks slower than a warm one (docs/performance.md, "Grader"); common answer shapes, as answer and as
    # reference, fill them first.
    for shape in _WARMUP_SHAPES:
        _verify_pair(shape, "2", 30.0)
        _verify_pair("2", shape, 30.0)
    _parse_gold.cache_clear()


_WARMUP_SHAPES = (
    "\\frac{\\sqrt{3}}{2}", "2\\sqrt{3}", "\\left( 3, \\frac{\\pi}{2} \\right)", "[0, 1)", "(-\\infty, 2] \\cup [3, \\infty)",
    "x^2 + 1", "2x - 3y", "\\{1, 2, 3\\}", "\\begin{pmatrix} 1 \\\\ -2 \\end{pmatrix}", "45^\\circ", "\\text{(A)}",
    "x = 3", "\\sin x", "\\log_2 8", "12_{5}", "4 + 3i", "\\dfrac{5\\pi}{4}", "10\\%", "\\sqrt[3]{2}", "|x|",
)


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_TRAILING_PERIOD = re.compile(r"(?<![.\\])\.\s*$")


@lru_cache(maxsize=4096)
def _parse_gold(gold: str):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    wrapped = gold if _UNESCAPED_DOLLAR.search(gold) or "\\boxed" in gold else f"${gold}$"
    return parse(
        wrapped,
        extraction_config=(LatexExtractionConfig(), ExprExtractionConfig()),
        parsing_timeout=None,
    )


def _equivalent(pred: str, gold: str) -> bool:
    from math_verify import LatexExtractionConfig, parse, verify

    gold_parsed = _parse_gold(gold)
    # A sentence-final period and a unicode degree sign are common in <answer> tags and defeat the parser.
    pred = _TRAILING_PERIOD.sub("", pred).replace("°", "^{\\circ}")
    # LaTeX extraction only: the Expr extractor runs sympy's parse_expr (an eval) on untrusted text.
    wrapped = pred if _UNESCAPED_DOLLAR.search(pred) else f"\\boxed{{{pred}}}"
    pred_parsed = parse(wrapped, extraction_config=(LatexExtractionConfig(),), parsing_timeout=None)
    return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))


@contextmanager
def _call_limit(seconds: float):
    """Limit the block to ``seconds`` (``_CallTimeout``) inside an answer's own alarm, which is paused and then
    resumed with what is left of it. Nothing is armed outside a worker (no handler of ours: a SIGALRM would kill
    the process) or when the answer's own alarm comes first (it then times the answer out, as before)."""
    global _call_armed
    outer = signal.getitimer(signal.ITIMER_REAL)[0]
    if signal.getsignal(signal.SIGALRM) is not _on_alarm or (outer and outer <= seconds):
        yield
        return
    t0 = time.monotonic()
    _call_armed = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        _call_armed = False
        left = outer - (time.monotonic() - t0)
        signal.setitimer(signal.ITIMER_REAL, max(left, 1e-3) if outer else 0.0)


def _paper_call(fn):
    """``fn()`` (one math-verify call of the paper's ``is_latex_equal``) under the paper's 1 s per call; None past it."""
    try:
        with _call_limit(PAPER_MATH_VERIFY_CALL_S):
            return fn()
    except _CallTimeout:
        return None


def _unlimited_call(fn):
    return fn()


def _check(pred: str, gold: str, verifier: str, call=_paper_call) -> bool:
    if verifier == "r1zero":
        return _equivalent(pred, gold)
    return paper_grade(pred, gold, verifier, call=call)


def _verify_pair(pred: str, gold: str, timeout_s: float, verifier: str = "r1zero", call=_paper_call) -> tuple[bool, bool]:
    """(equivalent, timed_out) for one answer under ``verifier`` (``r1zero.reward.VERIFIERS``) within ``timeout_s``
    seconds, the paper's verifiers' math-verify calls each limited by ``call`` (:func:`_paper_call`: 1 s, a call
    past it meaning "not equal", not a timeout); runs on a worker's main thread (SIGALRM). An error inside the
    check (incl. an unknown verifier) scores False.

    Raises:
        _SoftTimeout: only if the alarm lands after the computation, in the cleanup below.
    """
    global _alarm_armed
    ok = timed_out = False
    if signal.getsignal(signal.SIGALRM) is not _on_alarm:
        signal.signal(signal.SIGALRM, _on_alarm)
    _alarm_armed = True
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        ok = _check(pred, gold, verifier, call)
    except _SoftTimeout:
        timed_out = True
    except Exception:  # noqa: BLE001, S110 - any grader error (incl. MemoryError) scores 0; the worker lives on
        pass
    finally:
        _alarm_armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
    return ok, timed_out


def main() -> None:
    """Entry point of a worker process: JSON lines in on stdin, JSON lines out on the original stdout."""
    # SLURM's warning signal reaches every process of the job step (sbatch --signal=USR2@N, scancel --signal),
    # Ctrl-C every process of the terminal's foreground group; both are the trainer's to act on
    # (r1zero.run.preemption: finish the step, checkpoint). Their default action would kill the worker mid-answer.
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # a stray print() in a library must not corrupt the protocol
    limit = sys.argv[1] if len(sys.argv) > 1 else ""
    _worker_init(int(limit) if limit.isdigit() else None)
    if len(sys.argv) > 2 and sys.argv[2]:  # reward=fn: import the user's function before the first answer
        # only reward=fn workers: custom imports the schema (omegaconf; its start cost: docs/performance.md, "Grader")
        from .custom import worker_call, worker_setup

        worker_setup(sys.argv[2])
    proto.write('{"ready": true}\n')
    for line in sys.stdin:
        msg = json.loads(line)
        if "responses" in msg:  # a reward.fn call (r1zero.reward.custom)
            proto.write(json.dumps(worker_call(msg, sys.modules[__name__])) + "\n")
            continue
        try:
            ok, timed_out = _verify_pair(msg["pred"], msg["gold"], msg["timeout"], msg.get("verifier", "r1zero"))
        except _SoftTimeout:
            ok, timed_out = False, True
        proto.write(json.dumps({"id": msg["id"], "ok": ok, "to": timed_out}) + "\n")
