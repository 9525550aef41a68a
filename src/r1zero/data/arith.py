"""A generated arithmetic question set (``data=arith``) that a 135M model can learn from on a CPU.

The paper's sets (MATH, GSM8K, ASDiv) are out of reach of the embedded SmolLM2-135M: it answers almost none, so
every reward is 0 and RL has no signal. One-operation questions (``What is 14 + 27?``) sit where it is right
some of the time, which is where group-relative advantages move a policy. Questions of several operations
(``num_operations=2``: ``What is 14 + 27 - 9?``) take several steps to answer, so right answers are longer and
wrong ones can ramble: the laptop testbed's length has somewhere to go.

Determinism and the held-out split: question ``i`` of a set depends only on the spec's fields, and whether a
question belongs to ``train`` or ``test`` depends only on its text (a hash), never on the seed or the size. So
the train split of any spec never contains a question of the test split of any other spec.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

SPLITS = ("train", "test")
OPERATORS = ("+", "-", "*")


@dataclass(frozen=True)
class ArithQuestion:
    question: str
    answer: str
    operator: str


def heldout(question: str, percent: int) -> bool:
    """Whether ``question`` belongs to the test split: a stable hash of its text, ``percent`` in 100."""
    digest = hashlib.sha256(question.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def _draw(rng: random.Random, op: str, min_value: int, max_value: int, max_factor: int) -> tuple[str, int]:
    if op == "*":
        a, b = rng.randint(2, max_factor), rng.randint(2, max_factor)
        return f"What is {a} * {b}?", a * b
    a, b = rng.randint(min_value, max_value), rng.randint(min_value, max_value)
    if op == "-":
        a, b = max(a, b), min(a, b)  # no negative answers
        return f"What is {a} - {b}?", a - b
    return f"What is {a} + {b}?", a + b


def _draw_chain(rng: random.Random, ops: list[str], min_value: int, max_value: int,
                max_factor: int) -> tuple[str | None, int]:
    """``len(ops)`` operations, read with the usual precedence (``*`` first). A draw whose answer, or the value of
    any leading part (``2 - 3`` of ``2 - 3 + 6``), is negative is rejected (None): working left to right never
    passes below 0. A ``*`` multiplies a factor in ``2..max_factor``; other operands are in
    ``min_value..max_value``."""
    terms = [rng.randint(2, max_factor) if ops[0] == "*" else rng.randint(min_value, max_value)]
    for op in ops:
        terms.append(rng.randint(2, max_factor) if op == "*" else rng.randint(min_value, max_value))
    parts = [str(terms[0]), *(f"{op} {t}" for op, t in zip(ops, terms[1:], strict=True))]
    # The texts hold only the integers and operators written just above: evaluating them is safe and exact.
    values = [eval(" ".join(parts[: n + 1]), {"__builtins__": {}}) for n in range(1, len(parts))]
    return (f"What is {' '.join(parts)}?" if min(values) >= 0 else None), values[-1]


def draw_new(draw, seen: set[str], heldout_percent: int, want_test: bool, attempts: int = 20_000):
    """Call ``draw()`` until it returns a tuple whose first item is a question text not in ``seen`` and in the wanted
    split (:func:`heldout`); add that text to ``seen`` and return the tuple. A first item of None is a rejected draw.
    None after ``attempts`` draws: near exhaustion a new question is rare, past this the space is used up.
    Shared by the generated sets (``arith``, ``countdown``)."""
    for _ in range(attempts):
        item = draw()
        q = item[0]
        if q is not None and q not in seen and heldout(q, heldout_percent) == want_test:
            seen.add(q)
            return item
    return None


def generate(*, split: str, size: int, seed: int, operators, min_value: int, max_value: int, max_factor: int,
             heldout_percent: int, num_operations: int = 1) -> list[ArithQuestion]:
    """``size`` distinct questions of one split, the operators taking turns (question ``i`` uses
    ``operators[i % len(operators)]``), so any run of ``len(operators)`` consecutive questions has one of each.
    With ``num_operations`` k > 1, question ``i``'s j-th operation is ``operators[(i + j) % len(operators)]`` and
    its answer follows the usual precedence; its ``operator`` field names them all (``+-``).

    Args:
        split: ``train`` or ``test`` (the held-out questions; disjoint from ``train`` for every spec).
        size: questions to return.
        seed: draws the operands (the same spec gives the same list).
        operators: a non-empty sequence of ``+``, ``-``, ``*``.
        min_value, max_value: operand range of ``+`` and ``-`` (inclusive).
        max_factor: ``*`` multiplies two numbers in ``2..max_factor``.
        heldout_percent: share (in 100) of the question space that is ``test``.
        num_operations: operations per question (>= 1).

    Raises:
        ValueError: a bad field (names it and what is valid), or ranges too narrow for ``size`` distinct
            questions of the split.
    """
    ops = [str(o) for o in operators]
    bad = [o for o in ops if o not in OPERATORS]
    if split not in SPLITS:
        raise ValueError(f"data.split={split!r} is not one of {list(SPLITS)} for data=arith")
    if not ops or bad:
        raise ValueError(f"data.operators={ops} must be a non-empty list of {list(OPERATORS)}")
    if (size < 1 or not 1 <= min_value <= max_value or max_factor < 2 or not 0 < heldout_percent < 100
            or num_operations < 1):
        raise ValueError(f"data=arith needs size >= 1, 1 <= min_value <= max_value, max_factor >= 2, "
                         f"0 < heldout_percent < 100 and num_operations >= 1; got size={size}, min_value={min_value}, "
                         f"max_value={max_value}, max_factor={max_factor}, heldout_percent={heldout_percent}, "
                         f"num_operations={num_operations}")
    rng = random.Random(f"arith/{seed}")
    want_test = split == "test"
    seen: set[str] = set()
    out: list[ArithQuestion] = []
    for i in range(size):
        chain = [ops[(i + j) % len(ops)] for j in range(num_operations)]
        if num_operations == 1:  # the one-operation draw of every earlier spec, unchanged
            draw = lambda op=chain[0]: _draw(rng, op, min_value, max_value, max_factor)
        else:
            draw = lambda chain=chain: _draw_chain(rng, chain, min_value, max_value, max_factor)
        drawn = draw_new(draw, seen, heldout_percent, want_test)
        if drawn is None:
            raise ValueError(f"data=arith: the ranges give fewer than {size} distinct {split} questions for "
                             f"operators {''.join(chain)!r}; lower data.size or widen min_value/max_value/max_factor")
        q, a = drawn
        out.append(ArithQuestion(q, str(a), "".join(chain)))
    return out
