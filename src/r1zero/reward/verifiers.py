"""The equivalence checkers ``reward.verifier`` chooses between, and the paper's ``math_verify`` mode.

* ``fast``: the paper's ``math_grader.grade(fast=True)`` -- Hendrycks MATH normalisation + the PRM800K sympy
  equality, no math-verify (``r1zero.reward.fast``). understand-r1-zero ``train_zero_math.py`` defaults to it
  (``ZeroMathArgs.verifier_version = "fast"``) and its 1.5B / 3B example scripts do not override it.
* ``math_verify``: ``grade(fast=False)`` -- ``fast``, else the paper's ``is_latex_equal`` (PRM800K-normalised
  strings equal, else HF math-verify on ``$...$``-wrapped answers); ``examples/qwen2.5-math-7b.sh`` passes
  ``--verifier_version math_verify`` and ``evaluate_model.py`` grades with ``fast=False``.
* ``r1zero``: r1zero's own checker from before this switch existed -- math-verify (LaTeX extraction only)
  behind a string / number shortcut (``r1zero.reward.worker._equivalent``, ``extract._shortcut``). It accepts
  some answers the paper rejects (``\\frac{2}{4}`` for ``\\frac12`` in ``fast``) and rejects some it accepts
  (``pi/2`` for ``\\frac{\\pi}{2}``, ``\\text{5 apples}`` for ``5``).

Model text never reaches a Python ``eval``: the PRM800K step parses it with ``safe_sympy`` (no ``parse_expr``),
and in ``math_verify`` mode math-verify's ``ExprExtractionConfig`` -- which does call ``parse_expr`` -- only
ever sees strings its regular expression matched (digits, ``.``, blanks, ``+-*/^()×÷``), a guarantee
``guard_math_verify_expr`` re-checks before each call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from .fast import grade_fast, prm800k_normalize, unbox_reference

T = TypeVar("T")

#: Valid values of ``reward.verifier`` / ``MathGrader(verifier=...)``.
VERIFIERS = ("fast", "math_verify", "r1zero")
#: The verifier when none is named: the config's default (``reward.verifier``, ``r1zero.schema.RewardConfig``; a test
#: keeps the two equal), the paper's default ``--verifier_version fast``.
DEFAULT_VERIFIER = "fast"
#: Seconds each math-verify call of the paper's ``is_latex_equal`` may run (understand-r1-zero ``math_grader.py``:
#: ``parse(..., parsing_timeout=1)`` for the reference and the answer, ``verify(..., timeout_seconds=1)``); a call
#: past it finds nothing (parse) or says "not equal" (verify). math-verify's own alarm cancels the 1 s
#: ``timeout(1)`` around the whole function when its first parse ends, so these per-call limits are what bind.
PAPER_MATH_VERIFY_CALL_S = 1.0


def check_verifier(verifier: str) -> None:
    """Raises ValueError naming the valid choices when ``verifier`` is not one of ``VERIFIERS``."""
    if verifier not in VERIFIERS:
        raise ValueError(f"unknown verifier {verifier!r}; valid choices: {', '.join(VERIFIERS)} (reward.verifier)")


def _distinct_substrings(s: str) -> int:
    """Number of distinct non-empty substrings of ``s`` (suffix automaton, O(len(s)))."""
    length, link, edges = [0], [-1], [{}]
    last = 0
    for ch in s:
        cur = len(length)
        length.append(length[last] + 1), link.append(-1), edges.append({})
        p = last
        while p != -1 and ch not in edges[p]:
            edges[p][ch] = cur
            p = link[p]
        if p == -1:
            link[cur] = 0
        else:
            q = edges[p][ch]
            if length[p] + 1 == length[q]:
                link[cur] = q
            else:
                clone = len(length)
                length.append(length[p] + 1), link.append(link[q]), edges.append(dict(edges[q]))
                while p != -1 and edges[p].get(ch) == q:
                    edges[p][ch] = clone
                    p = link[p]
                link[q] = link[cur] = clone
        last = cur
    return sum(length[v] - length[link[v]] for v in range(1, len(length)))


def is_repetitive(s: str) -> bool:
    """The paper's ``math_grader.repeatness``: more than 20% of the substrings of ``s`` are repeats (the sum of
    the LCP array over the n(n+1)/2 substrings), the signature of a degenerate looping answer."""
    n = len(s)
    if n <= 1:
        return False
    total = n * (n + 1) // 2
    return (total - _distinct_substrings(s)) * 2 / (n * (n + 1)) > 0.2


_SAFE_EXPR = re.compile(r"[\d.\s+\-*/()×÷]*")  # what math-verify's expression regex can match, after ^ -> **


def guard_math_verify_expr() -> None:
    """Wrap ``math_verify.parser.parse_expr_cached`` (the ``parse_expr`` behind ``ExprExtractionConfig``) so
    that it refuses any string outside digits, ``.``, blanks and ``+-*/()×÷``. math-verify 0.9's regex already
    guarantees this; the wrapper keeps that true if a later version widens the regex. Idempotent."""
    from math_verify import parser

    inner = getattr(parser, "parse_expr_cached", None)
    if inner is None or getattr(inner, "_r1zero_guarded", False):
        return

    def guarded(expr: str):
        if not _SAFE_EXPR.fullmatch(expr):
            raise ValueError("refusing to parse_expr a non-arithmetic string")
        return inner(expr)

    guarded._r1zero_guarded = True
    parser.parse_expr_cached = guarded


def _unlimited(fn: Callable[[], T]) -> T | None:
    return fn()


def latex_equal(given: str, gt: str, call: Callable[[Callable[[], T]], T | None] = _unlimited) -> bool:
    """The paper's ``math_grader.is_latex_equal``: False for a repetitive answer or reference over 128
    characters; True when the PRM800K-normalised strings are equal; else HF math-verify's ``verify`` of both,
    each wrapped in ``$...$`` unless it has a ``$``, parsed with LaTeX (``\\boxed`` at priority 0) and
    expression extraction and no fallback. The paper passes ``extraction_mode=["first_match"]``, which
    math-verify compares to the string ``"first_match"``, i.e. it runs as ``"any_match"``, so this does too.

    ``call(fn)`` runs each of the three math-verify calls (the two parses, the verify) and returns ``fn()``, or
    None when the call ran past its limit, which then means "not equal": the grader's worker passes one that
    gives every call the paper's :data:`PAPER_MATH_VERIFY_CALL_S` (math-verify's own alarms would cancel the
    worker's). The default runs them unlimited. May raise whatever math-verify raises."""
    from math_verify import verify

    if (len(given) > 128 and is_repetitive(given)) or (len(gt) > 128 and is_repetitive(gt)):
        return False
    gt_n = prm800k_normalize(gt)
    if gt_n is None:
        return False
    if gt_n == prm800k_normalize(given):
        return True
    guard_math_verify_expr()
    gt_parsed = call(lambda: _paper_parse(gt))
    given_parsed = call(lambda: _paper_parse(given)) if gt_parsed is not None else None
    if given_parsed is None:
        return False  # a parse past its limit: math-verify returns no match, and verify([], ...) is False
    return bool(call(lambda: verify(gt_parsed, given_parsed, timeout_seconds=None)))


@lru_cache(maxsize=4096)
def _paper_parse(s: str):
    """math-verify's parse of ``s`` as the paper's ``is_latex_equal`` calls it; cached because a reference is
    graded against every answer of its group (the result is a list of sympy values, which ``verify`` does not
    modify; a parse interrupted by the worker's timeout raises and is not cached)."""
    from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse

    config = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
    return parse(s if "$" in s else f"${s}$", extraction_config=config, fallback_mode="no_fallback",
                 extraction_mode="any_match", parsing_timeout=None)


def paper_grade(given: str, gt: str, verifier: str, call: Callable[[Callable[[], T]], T | None] = _unlimited) -> bool:
    """The paper's ``math_grader.grade(given, gt, fast=verifier == "fast")``: a reference containing
    ``\\boxed`` is unboxed, then ``fast``'s verdict, then (``math_verify`` only) ``latex_equal`` (its
    math-verify calls run through ``call``) if that said no. ``verifier`` must be ``fast`` or ``math_verify``.

    Raises:
        ValueError: another verifier name. math-verify's own errors propagate (the worker scores them 0).
    """
    if verifier not in ("fast", "math_verify"):
        raise ValueError(f"paper_grade covers the paper's verifiers fast and math_verify, not {verifier!r}")
    ref = unbox_reference(gt) if "\\boxed" in gt else gt
    if ref is None:
        return False
    if grade_fast(given, ref):
        return True
    return verifier == "math_verify" and latex_equal(given, ref, call)
