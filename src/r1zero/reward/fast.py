"""The paper's ``fast`` verifier, re-implemented: Hendrycks MATH normalisation + the PRM800K sympy equality.

Source of the rules: understand-r1-zero ``understand_r1_zero/math_grader.py`` (the same code as oat's
``oat/utils/math_grader.py``), ``grade(model_answer, gt_answer, fast=True)`` = ``grade_answer_mathd or
grade_answer_sympy``; the 1.5B / 3B scripts train with it (``train_zero_math.py --verifier_version fast``, the
default). Written from those rules, not copied:

* ``hendrycks_normalize`` (``mathd_normalize_answer`` / ``_strip_string``, Hendrycks et al.'s MATH code): drop
  an enclosing ``\\text{}``, line breaks, ``\\!``, ``\\left``/``\\right``, a trailing ``\\text{...}`` unit, a
  list of unit words (MathQA's), ``^\\circ``, ``\\$``, ``\\%``, spaces; ``tfrac``/``dfrac`` -> ``frac``,
  ``\\frac12`` -> ``\\frac{1}{2}``, ``\\sqrt3`` -> ``\\sqrt{3}``, ``.5`` -> ``0.5``, ``0.5`` ->
  ``\\frac{1}{2}``, ``a/b`` (integers) -> ``\\frac{a}{b}``, ``k = 5`` (a left side of <= 2 characters) -> ``5``.
  The two answers are correct if the normalised strings are equal.
* ``prm800k_normalize`` (``_normalize``, OpenAI's PRM800K grader): drop ``\\text{}``, ``$``, ``%``, unit
  words, ``^\\circ``; ``or``/``and`` -> ``,``; ``million`` -> ``*10^6``; integral floats -> integers; LaTeX ->
  text (``r1zero.reward.latex_text``: ``\\frac{a}{b}`` -> ``a/b``, ``\\sqrt{x}`` -> ``sqrt(x)``, ``\\pi`` ->
  ``pi``); ``7 3/4`` -> ``7+3/4``; no spaces or braces; lower case.
* ``prm800k_equal`` (``grade_answer_sympy``): equal normalised strings; else both split into the same number
  of tuple/interval elements with the same brackets, and element-wise: two fractions ``a/b`` must be
  identical (an unreduced fraction is wrong), an integer never equals a non-integer, otherwise
  ``simplify(gt - given) == 0`` when the expression has at most two distinct letters and no ``^{`` / ``^(`` /
  two-digit exponent.

The one deliberate difference: the sympy step uses ``r1zero.reward.safe_sympy.parse_untrusted`` instead of
``parse_expr`` (an ``eval`` of model text), so an expression outside its whitelist is "not equal" where the
paper would have evaluated it. Pure Python + sympy; run it in the grader's worker processes, which enforce
the timeout (``simplify`` can run for minutes).
"""

from __future__ import annotations

import re
from functools import lru_cache

from .extract import paper_boxed
from .latex_text import latex_to_text
from .safe_sympy import parse_untrusted

# Unit words stripped by the Hendrycks normaliser (the MathQA list of the paper's grader), each also with an
# "s"; used as regular expressions between non-word characters, in this order, twice.
_UNIT_WORDS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey", "prime",
    "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain", "ab", "way", "west",
    "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h", "no change", "men", "soldier", "pie", "bc",
    "excess", "st", "inches", "noon", "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2",
    "sq", "mark", "l", "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm",
    "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph",
    "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³",
    "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m", "cm", "mm",
    "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less", "Surface", "litre",
    "pi sq m", "s .", "metre", "meter", "inch",
]
_UNIT_RES = [re.compile(r"(^|\W)" + u + r"($|\W)") for u in _UNIT_WORDS + [u + "s" for u in _UNIT_WORDS]]
# Matches where any of _UNIT_RES does (one alternation, searched exhaustively): an answer without a unit word --
# most of them -- skips the ~600 substitutions, most of a normalisation's time (docs/performance.md, "Grader").
_ANY_UNIT = re.compile(r"(?:^|\W)(?:" + "|".join(_UNIT_WORDS + [u + "s" for u in _UNIT_WORDS]) + r")(?:$|\W)")
# Unit words the PRM800K normaliser removes wherever they occur (with an optional plural and power).
_PRM_UNIT_RES = [(u, re.compile(u + r"(es)?(s)? *(\^[0-9]+)?")) for u in (
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week", "month", "year",
    "foot", "feet", "inch", "yard")]
_ENCLOSING_TEXT = re.compile(r"^\\text\{(?P<text>.+?)\}$")


def _unbrace_frac_args(s: str) -> str:
    """``\\frac12`` -> ``\\frac{1}{2}``, ``\\frac1{2}`` -> ``\\frac{1}{2}`` (Hendrycks ``_fix_fracs``)."""
    head, *rest = s.split("\\frac")
    out = [head]
    for part in rest:
        out.append("\\frac")
        if part[0] == "{":  # IndexError on a trailing \frac, as in the original (the caller falls back)
            out.append(part)
        elif len(part) < 2:
            return s
        elif part[1] != "{":
            out.append("{" + part[0] + "}{" + part[1] + "}" + part[2:])
        else:
            out.append("{" + part[0] + "}" + part[1:])
    return "".join(out)


def _brace_sqrt_arg(s: str) -> str:
    """``\\sqrt3`` -> ``\\sqrt{3}`` (Hendrycks ``_fix_sqrt``; IndexError on a trailing ``\\sqrt``)."""
    head, *rest = s.split("\\sqrt")
    return head + "".join("\\sqrt" + (p if p[0] == "{" else "{" + p[0] + "}" + p[1:]) for p in rest)


def _int_slash_int_to_frac(s: str) -> str:
    parts = s.split("/")
    if len(parts) != 2:
        return s
    try:
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        return s
    return f"\\frac{{{a}}}{{{b}}}" if s == f"{a}/{b}" else s


def _strip_string(s: str) -> str:
    s = s.replace("\n", "").replace("\\!", "").replace("\\\\", "\\")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "")
    unitless = re.sub(r"\\text{.*?}$", "", s).strip()
    if unitless and unitless != s:
        s = unitless
    for _ in range(2 if _ANY_UNIT.search(s) else 0):  # no unit word: every substitution is a no-op
        for unit in _UNIT_RES:
            stripped = unit.sub(r"\1\2", s)
            if stripped:
                s = stripped
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "")
    if "\\text{ " in s:
        pieces = s.split("\\text{ ")
        if len(pieces) != 2:
            raise ValueError("more than one '\\text{ ' unit")
        s = pieces[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    sides = s.split("=")
    if len(sides) == 2 and len(sides[0]) <= 2:
        s = sides[1]
    s = _brace_sqrt_arg(s).replace(" ", "")
    s = _unbrace_frac_args(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _int_slash_int_to_frac(s)


@lru_cache(maxsize=8192)  # pure; a reference is normalised once per answer of its group
def hendrycks_normalize(answer: str | None) -> str | None:
    """Hendrycks MATH normalisation (``math_grader.mathd_normalize_answer`` / ``_strip_string``; rules in the
    module docstring). On a malformed string (a trailing ``\\frac``/``\\sqrt``, two ``\\text{ `` units) it
    returns the answer stripped and unwrapped, as the original's ``except`` does. None stays None."""
    if answer is None:
        return None
    answer = answer.strip()
    try:
        m = _ENCLOSING_TEXT.search(answer)
        if m is not None:
            answer = m.group("text").strip()
        return _strip_string(answer)
    except (IndexError, ValueError):
        return answer


def _latex_to_plain(expr: str) -> str:
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac").replace("\\frac", " \\frac")
    expr = latex_to_text(expr)
    for a, b in (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*")):
        expr = expr.replace(a, b)
    return expr.strip()


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_int(x: float) -> bool:
    try:
        return abs(x - round(x)) <= 1e-7
    except (OverflowError, ValueError):
        return False


_PROPER_COMMA = re.compile(r"(\d)(,)(\d\d\d)($|\D)")


def _strip_thousands_commas(expr: str) -> str:
    while True:
        nxt = _PROPER_COMMA.sub(r"\1\3\4", expr)
        if nxt == expr:
            return nxt
        expr = nxt


def _str_is_int(s: str) -> bool:
    try:
        return _is_int(float(_strip_thousands_commas(s)))
    except ValueError:
        return False


@lru_cache(maxsize=8192)  # pure; a reference is normalised once per answer of its group
def prm800k_normalize(expr: str | None) -> str | None:
    """PRM800K answer normalisation (``math_grader._normalize``; rules in the module docstring). None stays
    None; a LaTeX string the renderer cannot handle keeps its LaTeX, as the original's ``except`` does."""
    if expr is None:
        return None
    m = _ENCLOSING_TEXT.search(expr)
    if m is not None:
        expr = m.group("text")
    expr = expr.replace("\\%", "%").replace("\\$", "$").replace("$", "").replace("%", "")
    expr = expr.replace(" or ", " , ").replace(" and ", " , ")
    expr = expr.replace("million", "*10^6").replace("billion", "*10^9").replace("trillion", "*10^12")
    for word, unit in _PRM_UNIT_RES:
        if word in expr:  # the pattern starts with the literal word
            expr = unit.sub("", expr)
    expr = re.sub(r"\^ *\\circ", "", expr)
    if expr and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = re.sub(r",\\! *", "", expr)
    if _is_float(expr) and _is_int(float(expr)):
        expr = str(round(float(expr)))
    if "\\" in expr:
        try:
            expr = _latex_to_plain(expr)
        except Exception:  # noqa: BLE001, S110 - as the original: an unrenderable string keeps its LaTeX
            pass
    expr = re.sub("- *", "-", expr)
    expr = re.sub("([0-9]) +([0-9])", r"\1+\2", expr)  # a mixed number 7 3/4 -> 7+3/4
    expr = expr.replace(" ", "").replace("{", "").replace("}", "").lower()
    if _str_is_int(expr):
        expr = str(int(float(expr.replace(",", ""))))
    return expr


_FRAC = re.compile(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$")
_BAD_EXPONENTS = (re.compile(r"\^[0-9]+\^"), re.compile(r"\^[0-9][0-9]+"))


def _may_simplify(expr: str) -> bool:
    """PRM800K ``should_allow_eval``: at most two distinct letters (``sqrt``/``frac`` not counted), no
    ``^{`` / ``^(`` and no exponent of two or more digits (sympy could hang)."""
    letters = {c for c in expr.replace("sqrt", "").replace("frac", "") if c.isalpha()}
    if len(letters) > 2 or "^{" in expr or "^(" in expr:
        return False
    return not any(r.search(expr) for r in _BAD_EXPONENTS)


def _sympy_equal(gt: str, given: str) -> bool:
    import sympy

    expr = f"({gt})-({given})"
    if not _may_simplify(expr):
        return False
    try:
        return sympy.simplify(parse_untrusted(expr)) == 0
    except Exception:  # noqa: BLE001 - any parse/simplify failure (incl. UnsafeExpression) is "not equal"
        return False


def _split_tuple(expr: str) -> list[str]:
    expr = _strip_thousands_commas(expr)
    if not expr:
        return []
    brackets = "()[]"
    if len(expr) > 2 and expr[0] in brackets and expr[-1] in brackets and not any(c in expr[1:-1] for c in brackets):
        return [e.strip() for e in expr[1:-1].split(",")]
    return [expr]


def prm800k_equal(given: str, gt: str | None) -> bool:
    """PRM800K equality (``math_grader.grade_answer_sympy``; rules in the module docstring), with the sympy
    step made safe (``safe_sympy``)."""
    gt_n, given_n = prm800k_normalize(gt), prm800k_normalize(given)
    if gt_n is None:
        return False
    if gt_n == given_n:
        return True
    if not given_n:
        return False
    gt_elems, given_elems = _split_tuple(gt_n), _split_tuple(given_n)
    if len(gt_elems) > 1 and (gt_n[0] != given_n[0] or gt_n[-1] != given_n[-1]):
        return False
    if len(gt_elems) != len(given_elems):
        return False
    for g, p in zip(gt_elems, given_elems):
        if _FRAC.search(g) and _FRAC.search(p):
            ok = g == p  # an unreduced fraction is not accepted: no simplify
        elif _str_is_int(g) != _str_is_int(p):
            ok = False  # an integer reference needs an integer answer
        else:
            ok = _sympy_equal(g, p)
        if not ok:
            return False
    return True


def unbox_reference(gt: str) -> str | None:
    """The paper's ``extract_answer`` on a reference containing ``\\boxed`` (:func:`r1zero.reward.extract.paper_boxed`):
    the content of the last ``\\boxed{...}`` (braces counted naively), None when that box is not of that form."""
    return paper_boxed(gt)


def grade_fast(given: str, gt: str) -> bool:
    """``math_grader.grade_answer_mathd(given, gt) or grade_answer_sympy(given, gt)``: Hendrycks-normalised
    strings equal, or ``prm800k_equal``. Never raises on bad input; may be slow (sympy simplify), so run it
    under a timeout (the grader's workers do)."""
    return hendrycks_normalize(given) == hendrycks_normalize(gt) or prm800k_equal(given, gt)
