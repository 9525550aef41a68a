"""Answer extraction and reference normalisation: pure string code, run in the caller's process.

Mirrors the paper's ``boxed_reward_fn`` / ``answer_tag_reward_fn`` extraction (understand-r1-zero
``understand_r1_zero/math_grader.py``; see ``r1zero.reward``), with r1zero's earlier, more lenient readings kept
as the ``*_lenient`` formats.
"""

from __future__ import annotations

import ast
import re
from decimal import Decimal, InvalidOperation

#: Where a response's final answer is, as a template's ``answer_format`` field names it.
#: ``boxed``: the paper's ``math_grader.boxed_reward_fn`` reading: the content of the last ``\\boxed{...}``, only
#: in that exact form (``extract_answer`` / ``last_boxed_only_string`` / ``remove_boxed``);
#: ``boxed_lenient``: r1zero's earlier reading, which also takes ``\\fbox{...}``, ``\\boxed {...}`` and
#: ``\\boxed 5`` (the paper scores those unformatted, 0); ``answer_tag``: the paper's strict R1 check
#: (``math_grader.answer_tag_reward_fn``: the literal ``"</think> <answer>"`` must appear, a box inside is read as
#: ``boxed``); ``answer_tag_lenient``: any whitespace between ``</think>`` and ``<answer>``, a box inside read as
#: ``boxed_lenient`` (r1zero's earlier behaviour).
ANSWER_FORMATS = ("boxed", "boxed_lenient", "answer_tag", "answer_tag_lenient")


def check_answer_format(answer_format: str) -> None:
    """Raises ValueError naming the valid formats when ``answer_format`` is not one of them."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer format {answer_format!r}; valid choices: {', '.join(ANSWER_FORMATS)} "
                         f"(the template's answer_format field)")


_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_R1_OPEN = re.compile(r"</think>\s*<answer>")


def paper_boxed(text: str) -> str | None:
    """The paper's ``math_grader.extract_answer``: None unless ``text`` contains ``\\boxed``; else from the last
    ``\\boxed`` on, braces are counted (escaped ones too, as there) up to the one that closes the first, and that
    span must read ``\\boxed{...}``, whose content (unstripped; ``""`` for ``\\boxed{}``) is returned. So
    ``\\fbox{5}``, ``\\boxed 5``, ``\\boxed {5}`` and an unclosed last box give None.

    understand-r1-zero ``math_grader.py``: ``extract_answer``, ``last_boxed_only_string``, ``remove_boxed``.
    """
    idx = text.rfind("\\boxed")
    if idx < 0:
        return None
    depth = 0
    for j in range(idx, len(text)):
        c = text[j]
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                box = text[idx : j + 1]
                return box[len("\\boxed{") : -1] if box.startswith("\\boxed{") else None
    return None


def _last_boxed(text: str) -> str | None:
    """r1zero's lenient reading (``boxed_lenient``): the last ``\\boxed`` / ``\\fbox``, stripped; None when empty."""
    starts = [m.end() for m in _BOX_RE.finditer(text)]
    if not starts:
        return None
    return _boxed_at(text, starts[-1])


def all_boxed(text: str) -> list[str]:
    """The distinct non-empty ``\\boxed{}`` / ``\\fbox{}`` contents of ``text``, in order of appearance."""
    found = (_boxed_at(text, m.end()) for m in _BOX_RE.finditer(text))
    return list(dict.fromkeys(b for b in found if b))


def _boxed_at(text: str, i: int) -> str | None:
    """The box whose command ends at ``i`` (braces matched), or None when unclosed or empty."""
    j = i
    while text[j : j + 1] == " ":  # no copy of the rest per box: all_boxed calls this for every box
        j += 1
    if text[j : j + 1] == "{":  # ``\boxed {17}``: a space before the brace
        i = j
    if text[i : i + 1] != "{":
        # ``\boxed 5``: the MATH convention is that the answer runs to the closing ``$``.
        if not text[i : i + 1].isspace():
            return None
        return text[i:].strip().split("$")[0].split("\n")[0].strip() or None
    j = closing_brace(text, i)
    if j is None:
        return None  # the last box is never closed (usually a truncated response)
    return text[i + 1 : j].strip() or None


def closing_brace(text: str, i: int) -> int | None:
    """Index of the ``}`` that closes the ``{`` at ``text[i]``, or None when it is never closed.

    Escaped braces (``\\{``, ``\\}``) neither open nor close a group. One pass, O(len(text)).
    """
    depth, j = 0, i
    while j < len(text):
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return None


def extract_answer(response: str, answer_format: str) -> str | None:
    """The final answer of ``response`` in ``answer_format`` (a template's ``answer_format`` field).

    Args:
        response: the generated text only (for the ``r1`` template it starts inside the ``<think>`` block).
        answer_format: one of :data:`ANSWER_FORMATS`.

    Returns:
        ``boxed`` (the paper's rule, ``math_grader.boxed_reward_fn``): :func:`paper_boxed`, stripped; a formatted
        but empty box is ``""`` (formatted, scores 0). ``boxed_lenient``: the content of the last
        ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched, escaped ones skipped, ``\\boxed {17}`` and
        ``\\boxed 5`` accepted), None when empty. ``answer_tag`` (the paper's rule,
        ``math_grader.answer_tag_reward_fn``): the response must contain the literal ``"</think> <answer>"`` and
        a ``"</answer>"``; the answer is the text after the LAST ``<answer>`` with every ``</answer>`` removed,
        read as ``boxed`` if it contains ``\\boxed``; a formatted but empty (or unreadable-box) answer is ``""``
        (formatted, scores 0). ``answer_tag_lenient``: the content of ``<answer>...</answer>`` following
        ``</think>`` with any whitespace between them, read as ``boxed_lenient`` if it contains a box. None when
        absent, unclosed or empty. Surrounding whitespace is stripped: the paper's checks strip it too
        (``mathd_normalize_answer``; ``_normalize`` drops every space).

    Raises:
        ValueError: unknown answer format.
    """
    check_answer_format(answer_format)
    if answer_format == "boxed":
        answer = paper_boxed(response)
        return None if answer is None else answer.strip()
    if answer_format == "boxed_lenient":
        return _last_boxed(response)
    if answer_format == "answer_tag":
        return _strict_answer_tag(response)
    answer = _last_r1_answer(response)
    if answer is None:
        return None
    if _BOX_RE.search(answer):
        return _last_boxed(answer)
    return answer.strip() or None


def _last_r1_answer(response: str) -> str | None:
    """The last match of ``</think>\\s*<answer>(.*?)</answer>`` (``re.findall(...)[-1]``, DOTALL), or None.

    The same matches as the regex, in O(len(response)): the regex retries its lazy ``(.*?)`` from every
    ``<answer>`` opener and rescans to the end for each unclosed one (quadratic in the length of repeated
    ``</think> <answer>``; docs/performance.md, "Grader"); here a missing ``</answer>`` after the first remaining
    opener ends the search, as no later opener can be closed either.
    """
    answer, pos = None, 0
    while (m := _R1_OPEN.search(response, pos)) is not None:
        close = response.find("</answer>", m.end())
        if close < 0:
            break
        answer, pos = response[m.end() : close], close + len("</answer>")
    return answer


def _strict_answer_tag(response: str) -> str | None:
    # The paper checks the literal string (one space), so ``</think>\n<answer>`` is unformatted there, and
    # ``split("<answer>")[-1].replace("</answer>", "")`` keeps any text after the closing tag (the r1
    # template stops generation at ``</answer>``, so there is none in practice).
    if "</think> <answer>" not in response or "</answer>" not in response:
        return None
    answer = response.rpartition("<answer>")[2].replace("</answer>", "")  # = split("<answer>")[-1]
    if "\\boxed" in answer:
        answer = paper_boxed(answer) or ""  # the paper: a box it cannot read is formatted and scores 0
    return answer.strip()


def _as_list(ref: object) -> list | None:
    if isinstance(ref, (list, tuple)):
        return list(ref)
    if isinstance(ref, str):
        s = ref.strip()
        if s.startswith("[") and s.endswith("]"):
            try:
                items = ast.literal_eval(s)
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                return None
            # Only a list of strings is a stringified answer list; "[0, 1]" is a LaTeX interval.
            if isinstance(items, list) and items and all(isinstance(x, str) for x in items):
                return items
    return None


def normalize_reference(ref: object) -> str:
    """Bring a dataset's reference answer to one LaTeX/plain string (for display and grading).

    Handles AMC's floats-as-strings (``'142.0'`` -> ``'142'``), Minerva/OlympiadBench lists, real or
    stringified (``"['9.6\\n']"`` -> ``'9.6'``, ``"['2', '3']"`` -> ``'2, 3'``), plain LaTeX, ints and
    floats. Only the reference is ever ``literal_eval``-ed: it is trusted data, model text never is.
    The grader itself treats a multi-element list as alternatives (see ``reference_alternatives``).

    Raises:
        TypeError: ``ref`` is not a str, int, float or list/tuple of those.
    """
    if isinstance(ref, bool) or not isinstance(ref, (str, int, float, list, tuple)):
        raise TypeError(f"reference must be str, int, float or a list of them, got {type(ref).__name__}")
    items = _as_list(ref)
    if items is not None:
        return ", ".join(normalize_reference(x) for x in items)
    if isinstance(ref, float):
        return str(int(ref)) if ref.is_integer() else repr(ref)
    if isinstance(ref, int):
        return str(ref)
    s = ref.strip()
    if re.fullmatch(r"-?\d+\.0+", s):
        return s.split(".")[0]
    return s


def reference_alternatives(ref: object) -> list[str]:
    """The accepted forms of a reference: several for a list, as oat's ``boxed_reward_fn`` reads it.

    Minerva's multi-element lists are alternative forms of one answer (``['6630.65', '6630']``,
    ``['41.8^\\circ', '41.8^{\\circ}']``), so an answer matching any of them is correct.

    Raises:
        TypeError: as ``normalize_reference``.
    """
    items = _as_list(ref)
    if items is None:
        return [normalize_reference(ref)]
    return list(dict.fromkeys(normalize_reference(x) for x in items)) or [""]


_FAST_DROP = re.compile(r"\\(?:left|right)(?![A-Za-z])|\\[!,;: ]|\$|\^\{?\\circ\}?|\\?%|\s+")
_INT_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)")
_DEC_RE = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?")


def _shortcut(pred: str, gold: str) -> bool | None:
    """Verdict without math_verify where it is certain, else None.

    True for answers equal after cosmetic normalisation or numerically equal plain numbers (``1,000`` ==
    ``1000.0``); False only for two plain integers that differ, the commonest wrong answer in RL batches.
    """
    p, g = pred.strip().strip("$").strip(), gold.strip().strip("$").strip()
    if p == g:
        return True
    if _DEC_RE.fullmatch(p) and _DEC_RE.fullmatch(g) and any(c.isdigit() for c in p + g):
        try:
            if Decimal(p.replace(",", "")) == Decimal(g.replace(",", "")):
                return True
        except InvalidOperation:
            return None
        if _INT_RE.fullmatch(p) and _INT_RE.fullmatch(g):
            return False

    def norm(s: str) -> str:
        s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
        return _FAST_DROP.sub("", s).rstrip(".")

    return True if norm(p) == norm(g) else None
