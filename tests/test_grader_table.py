"""Verdicts of the paper's grader and of r1zero's on 123 (answer, reference) pairs (issue 11, item 4).

The paper's verdicts were measured by running ``understand_r1_zero/math_grader.py`` of sail-sg/understand-r1-zero
(HEAD of the public repository) on a local copy outside this repository, in a venv with the main environment's
sympy / math-verify / latex2sympy2_extended plus ``pylatexenc`` from PyPI: for every row,
``answer_tag_reward_fn("reasoning </think> <answer> {answer} </answer>", reference, fast=...)`` with
``fast=True`` (the 1.5B / 3B training scripts' ``--verifier_version fast``: Hendrycks MATH normalisation + the
PRM800K sympy equality) and ``fast=False`` (``math_verify``: fast, else math-verify; the 7B scripts and
``evaluate_model.py``). Their code is not part of this repository; only the measured verdicts are.

``r1zero`` is today's checker (math-verify behind a string / number shortcut) on the same response with
``answer_format: answer_tag``. Agreement with the paper on this table: ``fast`` 100/123 (81.3%),
``math_verify`` 119/123 (96.7%). The rows where they differ include the disagreements the issue
lists: ``\\frac{2}{4}`` vs ``\\frac12``, ``2, 1`` vs ``1, 2``, ``2.5\\times10^{3}`` vs ``2500`` (fast: wrong;
math-verify and r1zero: right) and ``pi/2`` vs ``\\frac{\\pi}{2}``, ``\\boxed{\\text{5 apples}}`` vs ``5`` (paper:
right in both modes; r1zero: wrong). ``reward.verifier: fast | math_verify`` is not implemented yet; when it is,
its verdicts should equal the paper's fast / math_verify columns.
"""

from __future__ import annotations

import pytest

from r1zero.reward import MathGrader

# (answer inside <answer>, reference, paper fast, paper math_verify, r1zero today)
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


@pytest.fixture(scope="module")
def verdicts():
    with MathGrader(num_workers=2, timeout_s=5.0) as g:
        res = g.grade([f"reasoning </think> <answer> {a} </answer>" for a, *_ in TABLE], [r for _, r, *_ in TABLE],
                      "answer_tag")
    return [x.reward > 0.5 for x in res]


def test_table_size_and_the_issues_disagreements():
    assert len(TABLE) >= 100
    rows = {(a, r): (f, m, z) for a, r, f, m, z in TABLE}
    for pair in [("\\frac{2}{4}", "\\frac12"), ("2, 1", "1, 2"), ("2.5\\times10^{3}", "2500")]:
        assert rows[pair] == (False, True, True), pair
    for pair in [("pi/2", "\\frac{\\pi}{2}"), ("\\boxed{\\text{5 apples}}", "5")]:
        assert rows[pair] == (True, True, False), pair


def test_r1zero_verdicts_are_the_tables(verdicts):
    got = {(a, r): v for (a, r, *_), v in zip(TABLE, verdicts)}
    want = {(a, r): z for a, r, _, _, z in TABLE}
    assert got == want


def test_agreement_rates_with_the_paper(verdicts):
    n = len(TABLE)
    fast = sum(v == f for v, (_, _, f, _, _) in zip(verdicts, TABLE))
    mv = sum(v == m for v, (_, _, _, m, _) in zip(verdicts, TABLE))
    assert (fast, mv) == (100, 119), (fast, mv, n)
