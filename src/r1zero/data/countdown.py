"""Countdown, the worked example of ``reward=fn``: generated questions (``data=countdown``) and their reward.

The task (as in TinyZero and oat's Countdown runs): given numbers and a target, write an arithmetic expression
that uses every number exactly once, with ``+ - * /`` and parentheses, whose value is the target, e.g. numbers
``[4, 7, 9]``, target ``37``: ``<answer> 4 * 7 + 9 </answer>``.

Run it: ``python -m r1zero.train data=countdown template=countdown reward=fn reward.fn=r1zero.data.countdown:reward``
(``experiment=toy`` for a pipeline check on a CPU). Docs: ``docs/rewards.md``.

:func:`reward` scores a response

* 1.0: its equation uses exactly the question's numbers (as a multiset) and equals the target (exact rational
  arithmetic, so ``/`` is true division and ``7 / 2 * 2`` equals 7);
* ``format_score`` (0.1): it is a well-formed equation (integers, ``+ - * /``, parentheses) but uses other numbers,
  has another value, or divides by zero;
* 0.0: no equation (no ``<answer>...</answer>``, nor a ``\\boxed{}``), or the text is not such an equation
  (letters, calls, ``**``, unary minus, decimals...).

The scores follow TinyZero's ``compute_score`` (Jiayi-Pan/TinyZero, ``verl/utils/reward_score/countdown.py``:
1.0 correct, ``format_score=0.1`` otherwise once an ``<answer>`` is found), with two differences: text in the tag
that is not an arithmetic expression scores 0 (TinyZero gives it the format score), and the equation is parsed
with :mod:`ast` and evaluated by walking a whitelist of nodes, never with ``eval``, because it is model-written
text. :func:`reward_strict` gives 0 instead of 0.1, the binary reward Liu et al. 2025 argue for.

Questions are deterministic per spec, and a question's split is a hash of its text (as :mod:`r1zero.data.arith`), so
the train split of any spec shares no question with the test split of any other.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass
from fractions import Fraction

from ..reward.extract import extract_answer
from .arith import SPLITS, draw_new

#: Longest equation parsed (characters) and longest integer literal (digits): bounds the work on model text.
MAX_EQUATION_CHARS = 200
MAX_LITERAL_DIGITS = 6
FORMAT_SCORE = 0.1

_EQUATION_CHARS = re.compile(r"[0-9+\-*/()\s]+")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_INTEGER = re.compile(r"\s*\d+\s*")
_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


@dataclass(frozen=True)
class CountdownQuestion:
    """One question: ``nums`` (in the order shown), ``target``, and one ``solution`` the generator built."""

    question: str
    nums: tuple[int, ...]
    target: int
    solution: str

    def row(self) -> dict:
        """The data row :func:`reward` reads (``rows[i]``): ``nums``, ``target`` and the rest, JSON-able."""
        return {"question": self.question, "answer": self.target, "nums": list(self.nums), "target": self.target,
                "solution": self.solution}


def question_text(nums, target: int) -> str:
    return (f"Using the numbers {list(nums)}, create an equation that equals {target}. You can use +, -, *, / and "
            f"parentheses, and each number exactly once.")


def _draw(rng: random.Random, count: int, min_number: int, max_number: int) -> tuple[list[int], int | None, str]:
    """Random numbers combined pairwise in random order by random operators; intermediate values stay
    non-negative integers (``-`` only from the larger, ``/`` only when exact). Value None: not an integer >= 0."""
    nums = [rng.randint(min_number, max_number) for _ in range(count)]
    items: list[tuple[int, str]] = [(n, str(n)) for n in nums]
    while len(items) > 1:
        i, j = rng.sample(range(len(items)), 2)
        (a, ea), (b, eb) = items[i], items[j]
        ops = ["+", "*"] + (["-"] if a >= b else []) + (["/"] if b and a % b == 0 else [])
        op = rng.choice(ops)
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b else 0}[op]
        items = [x for k, x in enumerate(items) if k not in (i, j)] + [(value, f"({ea} {op} {eb})")]
    value, expr = items[0]
    return nums, value, expr[1:-1] if count > 1 else expr


def generate(*, split: str, size: int, seed: int, count: int, min_number: int, max_number: int, max_target: int,
             heldout_percent: int) -> list[CountdownQuestion]:
    """``size`` distinct Countdown questions of one split, each with a solution.

    Args:
        split: ``train`` or ``test`` (held out: disjoint from ``train`` for every spec).
        size: questions to return.
        seed: draws the numbers and the solution's shape (the same spec gives the same list).
        count: numbers per question (>= 2).
        min_number, max_number: the numbers are drawn from this range (inclusive, >= 1).
        max_target: targets lie in ``1..max_target``.
        heldout_percent: share (in 100) of the question space that is ``test``.

    Raises:
        ValueError: a bad field (names it), or ranges too narrow for ``size`` distinct questions of the split.
    """
    if split not in SPLITS:
        raise ValueError(f"data.split={split!r} is not one of {list(SPLITS)} for data=countdown")
    if size < 1 or count < 2 or not 1 <= min_number <= max_number or max_target < 1 or not 0 < heldout_percent < 100:
        raise ValueError(f"data=countdown needs size >= 1, count >= 2, 1 <= min_number <= max_number, max_target >= 1 "
                         f"and 0 < heldout_percent < 100; got size={size}, count={count}, min_number={min_number}, "
                         f"max_number={max_number}, max_target={max_target}, heldout_percent={heldout_percent}")
    rng = random.Random(f"countdown/{seed}")
    want_test = split == "test"
    seen: set[str] = set()
    out: list[CountdownQuestion] = []
    def draw():
        nums, target, solution = _draw(rng, count, min_number, max_number)
        q = question_text(nums, target) if target and 1 <= target <= max_target else None
        return q, nums, target, solution

    for _ in range(size):
        drawn = draw_new(draw, seen, heldout_percent, want_test)
        if drawn is None:
            raise ValueError(f"data=countdown: the ranges give fewer than {size} distinct {split} questions; lower "
                             f"data.size or widen min_number/max_number/max_target")
        q, nums, target, solution = drawn
        out.append(CountdownQuestion(q, tuple(nums), int(target), solution))
    return out


# ---------------------------------------------------------------------------------------------------------------
# The reward


class _NotArithmetic(Exception):
    pass


def _walk(node: ast.AST, used: list[int]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) is int:
        used.append(node.value)
        return Fraction(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _walk(node.left, used), _walk(node.right, used)
        return _OPS[type(node.op)](left, right)  # ZeroDivisionError for x / 0
    raise _NotArithmetic(type(node).__name__)


def evaluate_equation(text: str) -> tuple[Fraction | None, list[int]] | None:
    """``(value, numbers used)`` of an arithmetic expression over non-negative integers with ``+ - * /`` and
    parentheses; value None when it divides by zero. None when ``text`` is not such an expression (or is longer
    than ``MAX_EQUATION_CHARS`` / has a literal over ``MAX_LITERAL_DIGITS`` digits). Nothing in ``text`` is
    executed: it is parsed by :func:`ast.parse` and only ``BinOp``/``Constant`` nodes are evaluated."""
    if len(text) > MAX_EQUATION_CHARS or not _EQUATION_CHARS.fullmatch(text):
        return None
    if any(len(d) > MAX_LITERAL_DIGITS for d in re.findall(r"\d+", text)):
        return None
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    used: list[int] = []
    try:
        value = _walk(tree.body, used)
    except _NotArithmetic:
        return None
    except ZeroDivisionError:
        return None, used
    return value, used


def extract_equation(response: str) -> str | None:
    """The equation of a response: the last ``<answer>...</answer>``, else the last ``\\boxed{...}``, stripped;
    a side ``= <integer>`` is dropped (``3 * 4 = 12`` → ``3 * 4``). None when there is neither."""
    tags = _ANSWER_TAG.findall(response)
    if tags:
        eq = tags[-1]
    else:
        eq = extract_answer(response, "boxed_lenient")
        if eq is None:
            return None
    if eq.count("=") == 1:
        left, right = eq.split("=")
        if _INTEGER.fullmatch(right):
            eq = left
        elif _INTEGER.fullmatch(left):
            eq = right
    return eq.strip()


def score(response: str, nums, target: int, format_score: float = FORMAT_SCORE) -> float:
    """One response's Countdown reward (see the module docstring): 1.0, ``format_score`` or 0.0."""
    eq = extract_equation(response)
    parsed = evaluate_equation(eq) if eq else None
    if parsed is None:
        return 0.0
    value, used = parsed
    if value is None or sorted(used) != sorted(int(n) for n in nums) or value != int(target):
        return float(format_score)
    return 1.0


def reward(responses: list[str], references: list, rows: list[dict]) -> list[float]:
    """``reward.fn=r1zero.data.countdown:reward``: :func:`score` of each response against its row's ``nums`` and
    ``target`` (the reference when a row has no ``target``), with ``format_score`` 0.1.

    Raises:
        KeyError: a row without ``nums`` (the data is not Countdown's); the trainer scores it 0 and counts it.
    """
    return [score(r, row["nums"], row.get("target", ref)) for r, ref, row in zip(responses, references, rows,
                                                                                  strict=True)]


def reward_strict(responses: list[str], references: list, rows: list[dict]) -> list[float]:
    """``reward.fn=r1zero.data.countdown:reward_strict``: as :func:`reward` with ``format_score`` 0 (binary)."""
    return [score(r, row["nums"], row.get("target", ref), format_score=0.0)
            for r, ref, row in zip(responses, references, rows, strict=True)]
