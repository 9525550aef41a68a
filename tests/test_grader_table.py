"""Verdicts of the paper's grader and of r1zero's on 123 (answer, reference) pairs (issue 11, item 4).

The paper's verdicts were measured by running ``understand_r1_zero/math_grader.py`` of sail-sg/understand-r1-zero
(HEAD of the public repository, dfca49d) on a local copy outside this repository, in a venv with the main
environment's sympy / math-verify / latex2sympy2_extended plus ``pylatexenc`` from PyPI: for every row,
``answer_tag_reward_fn("reasoning </think> <answer> {answer} </answer>", reference, fast=...)`` with
``fast=True`` (the 1.5B / 3B training scripts' ``--verifier_version fast``: Hendrycks MATH normalisation + the
PRM800K sympy equality) and ``fast=False`` (``math_verify``: fast, else math-verify; the 7B scripts and
``evaluate_model.py``). Their code is not part of this repository; only the measured verdicts are.

The same responses graded by r1zero (``answer_format: answer_tag``), measured by the tests below:

* ``reward.verifier=fast`` (``r1zero.reward.fast``, written from the paper's rules with an ``eval``-free sympy
  step): agrees with the paper's ``fast`` column on 123/123 rows.
* ``reward.verifier=math_verify``: agrees with the paper's ``math_verify`` column on 123/123 rows.
* ``reward.verifier=r1zero`` (r1zero's earlier checker, math-verify behind a string / number shortcut; the last
  column): agrees with the paper's ``fast`` column on 100/123 (81.3%) and its ``math_verify`` column on 119/123
  (96.7%). The rows where it differs include the disagreements the issue lists: ``\\frac{2}{4}`` vs
  ``\\frac12``, ``2, 1`` vs ``1, 2``, ``2.5\\times10^{3}`` vs ``2500`` (fast: wrong; math-verify and r1zero:
  right) and ``pi/2`` vs ``\\frac{\\pi}{2}``, ``\\boxed{\\text{5 apples}}`` vs ``5`` (paper: right in both modes;
  r1zero: wrong).

No row needs to differ from the paper for a principled reason (``KNOWN_DISAGREEMENTS`` is empty): where the
paper would ``eval`` model text (PRM800K's ``parse_expr``), ``fast`` refuses instead, which no row here reaches.
"""

from __future__ import annotations

import pytest

from r1zero.reward import VERIFIERS, MathGrader, check_verifier
from r1zero.reward.safe_sympy import UnsafeExpression, parse_untrusted

# (answer inside <answer>, reference, paper fast, paper math_verify, r1zero's earlier checker)
TABLE = [
    ('\\frac{2}{4}', '\\frac12', False, True, True),
    ('2, 1', '1, 2', False, True, True),
    ('2.5\\times10^{3}', '2500', False, True, True),
    ('pi/2', '\\frac{\\pi}{2}', True, True, False),
    ('\\boxed{\\text{5 apples}}', '5', True, True, False),
    ('5', '5', True, True, True),
    ('5.0', '5', True, True, True),
    ('05', '5', True, True, True),
    ('-3', '-3', True, True, True),
    ('- 3', '-3', True, True, True),
    ('3', '-3', False, False, False),
    ('1,000', '1000', True, True, True),
    ('1000', '1,000', True, True, True),
    ('1{,}000', '1000', True, True, True),
    ('10^3', '1000', False, True, True),
    ('0.5', '\\frac{1}{2}', True, True, True),
    ('\\frac{1}{2}', '0.5', True, True, True),
    ('.5', '0.5', True, True, True),
    ('1/2', '\\frac{1}{2}', True, True, True),
    ('\\dfrac{1}{2}', '\\frac{1}{2}', True, True, True),
    ('\\tfrac12', '\\frac{1}{2}', True, True, True),
    ('\\frac{3}{6}', '\\frac{1}{2}', False, True, True),
    ('2/4', '\\frac{1}{2}', False, True, True),
    ('0.3333', '\\frac{1}{3}', False, False, False),
    ('0.33', '\\frac13', False, False, False),
    ('\\frac{4}{2}', '2', False, True, True),
    ('2', '\\frac{4}{2}', False, True, True),
    ('1.50', '1.5', True, True, True),
    ('3.14', '\\pi', False, False, False),
    ('12\\%', '12', True, True, True),
    ('12', '12\\%', True, True, True),
    ('0.12', '12\\%', False, False, False),
    ('\\$5', '5', True, True, True),
    ('5 dollars', '5', False, False, False),
    ('5\\text{ cm}', '5', True, True, True),
    ('5 cm', '5', True, True, True),
    ('90^\\circ', '90', True, True, True),
    ('90', '90^\\circ', True, True, True),
    ('90°', '90', False, True, True),
    ('x = 5', '5', True, True, True),
    ('5', 'x=5', True, True, True),
    ('k=5', '5', True, True, True),
    ('y = 2x+1', '2x+1', True, True, True),
    ('\\sqrt{2}', '\\sqrt2', True, True, True),
    ('\\sqrt2', '\\sqrt{2}', True, True, True),
    ('2\\sqrt{2}', '\\sqrt{8}', True, True, True),
    ('\\sqrt{8}', '2\\sqrt{2}', True, True, True),
    ('\\frac{\\sqrt{3}}{2}', '\\frac{\\sqrt3}{2}', True, True, True),
    ('\\frac{1}{\\sqrt{2}}', '\\frac{\\sqrt{2}}{2}', True, True, True),
    ('\\pi', '\\pi', True, True, True),
    ('2\\pi', '2 \\pi', True, True, True),
    ('\\frac{\\pi}{2}', '\\pi/2', True, True, True),
    ('pi', '\\pi', True, True, False),
    ('3\\pi/4', '\\frac{3\\pi}{4}', True, True, True),
    ('x^2+2x+1', '(x+1)^2', True, True, True),
    ('(x+1)^2', 'x^2+2x+1', True, True, True),
    ('2x', 'x*2', True, True, True),
    ('2 x', '2x', True, True, True),
    ('x+y', 'y+x', True, True, True),
    ('a+b', 'b+a', True, True, True),
    ('\\frac{x}{2}', 'x/2', True, True, True),
    ('x^2', 'x^{2}', True, True, True),
    ('e', 'e', True, True, True),
    ('2^{10}', '1024', False, True, True),
    ('1024', '2^{10}', False, True, True),
    ('3^2', '9', False, True, True),
    ('i', 'i', True, True, True),
    ('1+i', 'i+1', True, True, True),
    ('-2i', '-2 i', True, True, True),
    ('(1, 2)', '(1,2)', True, True, True),
    ('(2, 1)', '(1, 2)', False, False, False),
    ('(1,2)', '\\left( 1, 2 \\right)', True, True, True),
    ('[0, 1)', '[0,1)', True, True, True),
    ('(0, 1]', '[0, 1)', False, False, False),
    ('(-\\infty, 2]', '(-\\infty,2]', True, True, True),
    ('1, 2', '1,2', True, True, True),
    ('1,2,3', '3,2,1', False, True, True),
    ('\\{1,2\\}', '\\{2,1\\}', False, True, True),
    ('(3, \\frac{\\pi}{2})', '\\left( 3, \\frac{\\pi}{2} \\right)', True, True, True),
    ('1 and 2', '1, 2', True, True, True),
    ('1 or 2', '1,2', True, True, True),
    ('x \\in [1, 2]', '[1,2]', False, True, True),
    ('\\text{(B)}', 'B', True, True, True),
    ('B', '\\text{(B)}', True, True, True),
    ('(B)', 'B', True, True, True),
    ('\\text{B}', 'B', True, True, True),
    ('yes', 'Yes', True, True, True),
    ('\\text{Yes}', 'yes', True, True, True),
    ('east', '\\text{east}', True, True, True),
    ('\\text{even}', 'even', True, True, True),
    ('odd', '\\text{even}', False, False, False),
    ('Monday', '\\text{Monday}', True, True, True),
    ('\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}', '\\begin{pmatrix}1\\\\2\\end{pmatrix}', True, True, True),
    ('\\begin{bmatrix} 1 \\\\ 2 \\end{bmatrix}', '\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}', True, True, True),
    ('y=2x+3', 'y = 2x + 3', True, True, True),
    ('2x+3=y', 'y=2x+3', False, True, True),
    ('6', '5', False, False, False),
    ('\\frac{1}{3}', '\\frac{1}{2}', False, False, False),
    ('\\sqrt{3}', '\\sqrt{2}', False, False, False),
    ('2\\pi', '\\pi', False, False, False),
    ('(1, 3)', '(1, 2)', False, False, False),
    ('x^2', 'x^3', False, False, False),
    ('100', '1000', False, False, False),
    ('-5', '5', False, False, False),
    ('\\frac{2}{3}', '0.66', False, False, False),
    ('0.67', '\\frac{2}{3}', False, False, False),
    ('1.5', '\\frac{3}{2}', True, True, True),
    ('\\frac{3}{2}', '1.5', True, True, True),
    ('3/2', '1\\frac{1}{2}', True, True, True),
    ('1\\frac{1}{2}', '\\frac{3}{2}', True, True, True),
    ('7 3/4', '7\\frac{3}{4}', True, True, False),
    ('\\infty', '\\infty', True, True, True),
    ('-\\infty', '\\infty', False, False, False),
    ('The final answer is $4$.', '4', False, True, True),
    ('4.', '4', True, True, True),
    ('$4$', '4', True, True, True),
    ('\\boxed{4}', '4', True, True, True),
    ('4 apples', '4', True, True, True),
    ('1 million', '1000000', False, False, False),
    ('2\\cdot 3', '6', False, True, True),
    ('2 \\times 3', '6', False, True, True),
    ('10\\sqrt{2}', '10\\sqrt 2', True, True, True),
    ('16/5', '\\frac{16}{5}', True, True, True),
]


# (answer, reference, verifier) -> why r1zero's verdict cannot be the paper's; a new disagreement fails the test.
KNOWN_DISAGREEMENTS: dict[tuple[str, str, str], str] = {}

PAPER_COLUMN = {"fast": 2, "math_verify": 3, "r1zero": 4}  # the r1zero column is its own measured verdict


@pytest.fixture(scope="module")
def verdicts():
    """verifier -> per-row verdict of MathGrader on the table's responses."""
    responses = [f"reasoning </think> <answer> {a} </answer>" for a, *_ in TABLE]
    out = {}
    # A generous budget (each row takes < 0.2 s of CPU): a verdict must not depend on how busy the CPU is.
    with MathGrader(num_workers=2, timeout_s=60.0) as g:
        for verifier in VERIFIERS:
            res = g.grade(responses, [r for _, r, *_ in TABLE], "answer_tag", verifier=verifier)
            assert not any(x.timed_out for x in res), verifier
            out[verifier] = [x.reward > 0.5 for x in res]
    return out


def test_table_size_and_the_issues_disagreements():
    assert len(TABLE) >= 100
    assert len({(a, r) for a, r, *_ in TABLE}) == len(TABLE)
    rows = {(a, r): (f, m, z) for a, r, f, m, z in TABLE}
    for pair in [("\\frac{2}{4}", "\\frac12"), ("2, 1", "1, 2"), ("2.5\\times10^{3}", "2500")]:
        assert rows[pair] == (False, True, True), pair
    for pair in [("pi/2", "\\frac{\\pi}{2}"), ("\\boxed{\\text{5 apples}}", "5")]:
        assert rows[pair] == (True, True, False), pair


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_verdicts_are_the_papers(verdicts, verifier):
    """fast and math_verify give the paper's verdict on every row; r1zero its own recorded one."""
    col = PAPER_COLUMN[verifier]
    wrong = {(row[0], row[1]): (row[col], got) for row, got in zip(TABLE, verdicts[verifier])
             if got != row[col] and (row[0], row[1], verifier) not in KNOWN_DISAGREEMENTS}
    assert wrong == {}, f"(answer, reference): (expected, got) under {verifier}"


def test_agreement_rates_with_the_paper(verdicts):
    """The counts the module docstring and docs/fidelity.md (row 4) quote."""
    def agree(verifier: str, col: int) -> int:
        return sum(v == row[col] for v, row in zip(verdicts[verifier], TABLE))

    assert (agree("fast", 2), agree("math_verify", 3)) == (123, 123)
    assert (agree("r1zero", 2), agree("r1zero", 3)) == (100, 119)


# Model text that would run code if it reached a Python eval (sympy's parse_expr / sympify evaluate their input
# in a namespace with every builtin function, __import__ included). ``{flag}`` is a file the payload creates.
PAYLOADS = [
    "__import__('os').system('touch {flag}')",
    "__import__(\"os\").system(\"touch {flag}\")",
    "().__class__.__bases__[0].__subclasses__()",
    "exec(\"open('{flag}', 'w')\")",
    "eval(\"open('{flag}','w')\")",
    "open('{flag}', 'w')",
    "\\text{__import__('os').system('touch {flag}')}",
    "x = __import__('os').system('touch {flag}')",
    "(__import__('os').system('touch {flag}'), 1)",
    "id(1)",  # two letters: passes PRM800K's should_allow_eval, so the paper's parse_expr evaluates it
    "lambda: __import__('os').system('touch {flag}')",
]


@pytest.mark.parametrize("verifier", VERIFIERS)
def test_model_text_never_executes(tmp_path, verifier):
    flag = tmp_path / "pwned"
    answers = [p.replace("{flag}", str(flag)) for p in PAYLOADS]
    responses = [f"reasoning </think> <answer> {a} </answer>" for a in answers]
    boxed = [f"so \\boxed{{{a}}}" for a in answers]
    with MathGrader(num_workers=1, timeout_s=60.0, verifier=verifier) as g:
        res = g.grade(responses, ["1"] * len(answers), "answer_tag")
        res += g.grade(boxed, ["1"] * len(answers), "boxed")
        res += g.grade(responses, answers, "answer_tag")  # a payload as its own reference: identical, no eval
    assert not flag.exists()
    # Nothing in a payload equals 1 (math_verify may still find the number in "(..., 1)", as the paper's does).
    digitless = [r.reward for p, r in zip(PAYLOADS * 2, res) if not any(c.isdigit() for c in p)]
    assert digitless == [0.0] * len(digitless)


def test_safe_sympy_refuses_what_parse_expr_would_run(tmp_path):
    flag = tmp_path / "pwned"
    extra = ["x.__class__", "[1][0]", "Symbol('x').subs(1, 2)"]
    for payload in [p.replace("{flag}", str(flag)) for p in PAYLOADS] + extra:
        with pytest.raises((UnsafeExpression, SyntaxError)):  # refused, or not Python after the token rewriting
            parse_untrusted(payload)
    assert not flag.exists()
    with pytest.raises(UnsafeExpression):
        parse_untrusted("id(1)")
    with pytest.raises(UnsafeExpression):
        parse_untrusted("2**100000")  # too large to compute within the timeout
    import sympy

    assert sympy.simplify(parse_untrusted("(x+1)**2-(x**2+2x+1)")) == 0
    assert parse_untrusted("3pi/4") == 3 * sympy.pi / 4
    assert parse_untrusted("2sqrt(2)") == 2 * sympy.sqrt(2)


def test_unknown_verifier_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="valid choices: fast, math_verify, r1zero") as err:
        MathGrader(verifier="sympy")
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="valid choices"):
        check_verifier("Fast")
    with MathGrader(num_workers=1) as g, pytest.raises(ValueError, match="valid choices"):
        g.grade(["\\boxed{1}"], ["1"], "boxed", verifier="nope")


def test_paper_verifier_runs_under_the_pool_timeout():
    """math_verify mode sends math-verify a 370-million-digit power. Under training's 1 s per answer (the paper's
    get_reward: res.get(timeout=1)) the answer's timeout stops it (scored 0 and counted), the rest of the batch is
    graded, and the grader keeps working. Under a longer budget (r1zero.evaluate's 30 s) the paper's 1 s per
    math-verify call (is_latex_equal) stops it first: "not equal", not a timeout, as in evaluate_model.py."""
    import time

    with MathGrader(num_workers=1, timeout_s=1.0, verifier="math_verify") as g:
        res = g.grade(["\\boxed{9^{9^{9}}}", "\\boxed{3}"], ["1", "3"], "boxed")
        assert (res[0].reward, res[0].timed_out) == (0.0, True)
        assert (res[1].reward, res[1].timed_out) == (1.0, False)
        assert g.timeouts == 1
        t0 = time.monotonic()
        res = g.grade(["\\boxed{9^{9^{9}}}"], ["1"], "boxed", timeout_s=30.0)
        assert (res[0].reward, res[0].timed_out) == (0.0, False) and time.monotonic() - t0 < 10.0
        assert g.timeouts == 1
        # fast says no (an integer reference needs an integer answer), math-verify says yes: a worker answers.
        assert g.grade(["\\boxed{\\frac{4}{2}}"], ["2"], "boxed", timeout_s=60.0)[0].reward == 1.0
        assert g.grade(["\\boxed{\\frac{4}{2}}"], ["2"], "boxed", timeout_s=60.0, verifier="fast")[0].reward == 0.0
