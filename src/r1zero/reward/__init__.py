"""Rule-based math grader: the 0/1 correctness reward of R1-Zero-like training.

Liu et al. 2025, "Understanding R1-Zero-Like Training: A Critical Perspective" (§2 and the reward
description of the Appendix / Table 1 templates) train with a binary reward: 1 if the final answer is
mathematically equivalent to the reference, 0 otherwise, with no format bonus (a formatted but wrong answer
still scores 0, which removes an easy reward hack). Their code (oat's ``math_grader``) has two extractors,
reproduced here by ``extract_answer``:

* ``boxed_reward_fn`` (``answer_format: boxed``; templates ``qwen_math``, ``no``): the content of the last
  ``\\boxed{...}``, in exactly that form; nothing boxed means unformatted and 0. ``answer_format: boxed_lenient``
  (template ``chatml_fewshot``) also reads ``\\fbox{...}``, ``\\boxed {...}`` and ``\\boxed 5``, which the paper
  scores unformatted.
* ``answer_tag_reward_fn`` (``answer_format: answer_tag``; template ``r1``): the prompt ends in
  ``Assistant: <think>``, so the response must close the thought with ``</think>`` and then give
  ``<answer> ... </answer>``; a ``\\boxed{}`` inside the tag is unwrapped. As in the paper's code, the literal
  ``"</think> <answer>"`` must appear; ``answer_format: answer_tag_lenient`` accepts any whitespace instead (and
  unwraps a box as ``boxed_lenient``).

Equivalence is decided by the verifier ``reward.verifier`` names (``VERIFIERS``, ``verifiers.py``):

* ``fast``: the paper's ``math_grader.grade(fast=True)``, Hendrycks MATH normalisation + the PRM800K sympy
  equality, re-implemented in ``fast.py`` (LaTeX rendering in ``latex_text.py``, an ``eval``-free sympy parser
  in ``safe_sympy.py``). The paper's 1.5B / 3B runs (``train_zero_math.py``'s default ``--verifier_version``).
* ``math_verify``: ``grade(fast=False)``, ``fast`` else the paper's math-verify call (``is_latex_equal``); the
  paper's 7B runs and ``evaluate_model.py``.
* ``r1zero``: r1zero's earlier checker, HF ``math_verify`` behind a shortcut that settles answers identical
  after cosmetic normalisation, numerically equal plain numbers, and two different plain integers.

Identical answers within a batch are verified once. ``math_verify``/sympy can run for minutes on adversarial
answers (``\\boxed{9^{9^{9}}}``) and times out via SIGALRM, which only works on a process's main thread, so
grading runs in worker subprocesses with two layers of per-answer timeout: a SIGALRM in the worker (cheap,
the worker survives) and a hard deadline after which the parent kills and replaces a worker stuck in C code.
A timeout scores 0 and is counted. Inside an answer's budget, ``fast`` / ``math_verify`` give each math-verify
call the paper's 1 s (``verifiers.PAPER_MATH_VERIFY_CALL_S``); a call past it means "not equal", as in the
paper's ``is_latex_equal``. A batch also has a wall-time budget (``reward.batch_timeout_s``): alarms are
cut to what is left of it, and once it is spent the answers not yet checked score 0 as timeouts, so many
pathological answers cost one to two timeouts, not one each per worker.

Layout: ``extract`` (string code run in the caller), ``pool`` (``MathGrader``), ``worker`` (the subprocess),
``verifiers`` / ``fast`` / ``latex_text`` / ``safe_sympy`` (the checkers, run in the subprocess).
"""

from __future__ import annotations

import atexit
import os
import threading

from .extract import (
    ANSWER_FORMATS,
    check_answer_format,
    extract_answer,
    normalize_reference,
    reference_alternatives,
)
from .pool import GradeResult, MathGrader
from .verifiers import DEFAULT_VERIFIER, VERIFIERS, check_verifier

__all__ = [
    "ANSWER_FORMATS",
    "DEFAULT_VERIFIER",
    "GradeResult",
    "VERIFIERS",
    "check_answer_format",
    "check_verifier",
    "MathGrader",
    "extract_answer",
    "grade_batch",
    "grade_batch_detailed",
    "normalize_reference",
    "reference_alternatives",
]

_default: MathGrader | None = None
_default_lock = threading.Lock()


def _default_grader() -> MathGrader:
    global _default
    with _default_lock:
        if _default is None:
            workers = int(os.environ.get("R1ZERO_GRADER_WORKERS", min(4, os.cpu_count() or 2)))
            _default = MathGrader(num_workers=workers)
            atexit.register(_default.close)
        return _default


def grade_batch_detailed(
    responses: list[str],
    references: list,
    answer_format: str,
    *,
    truncated: list[bool] | None = None,
    timeout_s: float = 5.0,
    verifier: str = DEFAULT_VERIFIER,
) -> list[GradeResult]:
    """``MathGrader.grade`` on the shared module-level grader (workers: ``$R1ZERO_GRADER_WORKERS`` or
    min(4, CPUs)) with ``verifier`` (one of ``VERIFIERS``). Raises ValueError for an unknown answer format or
    verifier, or mismatched lengths."""
    return _default_grader().grade(responses, references, answer_format, truncated, timeout_s=timeout_s,
                                   verifier=verifier)


def grade_batch(
    responses: list[str],
    references: list,
    answer_format: str,
    *,
    truncated: list[bool] | None = None,
    timeout_s: float = 5.0,
    verifier: str = DEFAULT_VERIFIER,
) -> list[float]:
    """Rewards in {0.0, 1.0}, one per response; see ``grade_batch_detailed``.

    Raises:
        ValueError: unknown answer format (valid: ``ANSWER_FORMATS``) or verifier (valid: ``VERIFIERS``), or
            mismatched lengths.
    """
    results = grade_batch_detailed(responses, references, answer_format, truncated=truncated, timeout_s=timeout_s,
                                   verifier=verifier)
    return [r.reward for r in results]
