"""The math grader (r1zero.reward): extraction, reference shapes, equivalence, timeouts, worker loss."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from r1zero.reward import (
    DEFAULT_VERIFIER,
    GradeResult,
    MathGrader,
    extract_answer,
    grade_batch,
    grade_batch_detailed,
    normalize_reference,
    reference_alternatives,
)

# Takes math_verify past a 1 s timeout: sympy tries to evaluate 9^(9^9) (a 370-million-digit integer) to
# compare it with 1, and does not finish within minutes.
PATHOLOGICAL = "\\boxed{9^{9^{9}}}"


@pytest.fixture(scope="module")
def grader():
    with MathGrader(num_workers=2, timeout_s=5.0, verifier="r1zero") as g:  # r1zero's own checker
        g.start()
        yield g


# ------------------------------------------------------------------------------------------- extraction


@pytest.mark.parametrize(
    "response, answer_format, expected",
    [
        # boxed: the paper's reading (math_grader.extract_answer / last_boxed_only_string / remove_boxed).
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "boxed", "\\frac{1}{2}"),
        ("$\\boxed{\\{1,2\\}}$", "boxed", "\\{1,2\\}"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "boxed", "\\frac{\\sqrt{3}}{2}"),
        ("first \\boxed{1}, on reflection \\boxed{2}", "boxed", "2"),  # the last box wins
        ("\\boxed{ 7 }", "boxed", "7"),
        ("thus $\\boxed 5$.", "boxed", None),  # no brace after \boxed: remove_boxed fails
        ("thus $\\boxed 5$, i.e. $\\frac{5}{1}$", "boxed", None),  # the span \boxed 5$ ... \frac{5} is no box
        ("length $\\boxed {17}$", "boxed", None),  # a space before the brace: not "\boxed{"
        ("\\fbox{7}", "boxed", None),  # extract_answer needs "\boxed" in the text
        ("\\boxed{\\text{(B)}} and later \\fbox{C}", "boxed", "\\text{(B)}"),  # the last \boxed, \fbox ignored
        ("\\boxed{1} then \\boxed{2", "boxed", None),  # last box unclosed (truncated): no answer
        ("the answer is 5", "boxed", None),
        ("\\boxed{}", "boxed", ""),  # formatted, empty: scores 0 (the paper's boxed_reward_fn)
        ("\\boxed{ }", "boxed", ""),
        # boxed_lenient: r1zero's earlier reading (\fbox, "\boxed 5", "\boxed {17}", escaped braces skipped).
        ("so the answer is $\\boxed{\\frac{1}{2}}$.", "boxed_lenient", "\\frac{1}{2}"),
        ("$\\boxed{\\{1,2\\}}$", "boxed_lenient", "\\{1,2\\}"),
        ("first \\boxed{1}, on reflection \\boxed{2}", "boxed_lenient", "2"),
        ("thus $\\boxed 5$.", "boxed_lenient", "5"),
        ("length $\\boxed {17}$", "boxed_lenient", "17"),
        ("\\fbox{7}", "boxed_lenient", "7"),
        ("\\boxed{\\text{(B)}} and later \\fbox{C}", "boxed_lenient", "C"),
        ("\\boxed{1} then \\boxed{2", "boxed_lenient", None),
        ("the answer is 5", "boxed_lenient", None),
        ("\\boxed{}", "boxed_lenient", None),
        ("\\boxed{ }", "boxed_lenient", None),
        # answer_tag: the paper's strict check (math_grader.answer_tag_reward_fn).
        ("think </think> <answer> 5 </answer>", "answer_tag", "5"),
        ("think </think> <answer>$\\boxed{\\frac{1}{2}}$</answer>", "answer_tag", "\\frac{1}{2}"),
        ("think </think> <answer>x = 5</answer>", "answer_tag", "x = 5"),
        ("think </think>\n<answer>5</answer>", "answer_tag", None),  # the paper needs the literal "</think> <answer>"
        ("think </think><answer>5</answer>", "answer_tag", None),
        ("a </think> <answer> 4 </answer> <answer> 5 </answer>", "answer_tag", "5"),  # after the LAST <answer>
        ("<answer>5</answer> more </think> <answer> 6 </answer>", "answer_tag", "6"),
        ("think </think> <answer> </answer>", "answer_tag", ""),  # formatted, empty: scores 0
        ("think </think> <answer> \\boxed{5 </answer>", "answer_tag", ""),  # formatted, unclosed box
        ("think </think> <answer> \\boxed 5 </answer>", "answer_tag", ""),  # formatted, a box the paper cannot read
        ("think </think> <answer> \\fbox{5} </answer>", "answer_tag", "\\fbox{5}"),  # no "\boxed": graded as is
        ("think <answer>5</answer>", "answer_tag", None),  # thought never closed
        ("think </think> <answer>5", "answer_tag", None),  # answer tag never closed
        ("\\boxed{5}", "answer_tag", None),  # r1 reads only the answer tag
        # answer_tag_lenient: any whitespace between </think> and <answer> (r1zero's earlier default).
        ("think </think> <answer> 5 </answer>", "answer_tag_lenient", "5"),
        ("think </think>\n<answer>$\\boxed{\\frac{1}{2}}$</answer>", "answer_tag_lenient", "\\frac{1}{2}"),
        ("think </think> <answer> \\boxed 5 </answer>", "answer_tag_lenient", "5"),
        ("think <answer>5</answer>", "answer_tag_lenient", None),  # thought never closed
        ("think </think> the answer is 5", "answer_tag_lenient", None),  # no answer tag
        ("think </think> <answer>5", "answer_tag_lenient", None),  # answer tag never closed
        ("<answer>5</answer> more </think>", "answer_tag_lenient", None),  # answer before the thought ends
        ("think </think> <answer> </answer>", "answer_tag_lenient", None),
        ("\\boxed{5}", "answer_tag_lenient", None),
    ],
)
def test_extract_answer(response, answer_format, expected):
    assert extract_answer(response, answer_format) == expected


@pytest.mark.parametrize("answer_format", ["boxed", "boxed_lenient", "answer_tag", "answer_tag_lenient"])
def test_extraction_is_linear_on_repeated_unclosed_tags(answer_format):
    """Extraction runs in the trainer process: 20k unclosed ``</think> <answer>`` openers (~100k / 400k
    characters) took the lenient regex 4.4 s / ~70 s (it rescanned to the end from every opener); now one pass."""
    for n in (6_000, 24_000):
        opened = "</think> <answer>" * n + "x"  # 102k / 408k characters
        t0 = time.perf_counter()
        assert extract_answer(opened, answer_format) is None
        many = "</think> <answer>" * n + "\\boxed{" * n + "x</answer>"
        got = extract_answer(many, answer_format)
        elapsed = time.perf_counter() - t0
        assert got == (None if answer_format == "boxed" else "" if answer_format == "answer_tag" else None)
        assert elapsed < 1.0, (n, elapsed)
    text = "a </think> <answer> 4 </answer> " * 5000 + "</think>\n<answer> 5 </answer>" + " </think> <answer>" * 5000
    assert extract_answer(text, "answer_tag_lenient") == "5"  # the last closed one, as re.findall(...)[-1]


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("142.0", "142"),
        (142.0, "142"),
        ("['9.6\\n']", "9.6"),
        (["9.6\n"], "9.6"),
        ("['2', '3']", "2, 3"),
        ("\\left( 3, \\frac{\\pi}{2} \\right)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("[0, 1]", "[0, 1]"),  # an interval, not a stringified list
        ("[__import__('os')]", "[__import__('os')]"),  # literal_eval refuses it; nothing is executed
        (7, "7"),
        (2.5, "2.5"),
        ("  -3.000 ", "-3"),
    ],
)
def test_normalize_reference(ref, expected):
    assert normalize_reference(ref) == expected


def test_reference_alternatives():
    assert reference_alternatives("['6630.65\\n', '6630\\n']") == ["6630.65", "6630"]
    assert reference_alternatives(["7.5 \\times 10^7", "7.5 \\times 10^7\n"]) == ["7.5 \\times 10^7"]
    assert reference_alternatives("[0, 1)") == ["[0, 1)"]
    with pytest.raises(TypeError):
        normalize_reference(None)


def test_unknown_answer_format_raises(grader):
    # The grader reads a template's answer_format, never its name: a template name is not a format.
    for call in (
        lambda: extract_answer("\\boxed{1}", "chatml"),
        lambda: grade_batch(["\\boxed{1}"], ["1"], "R1"),
        lambda: grader.grade(["\\boxed{1}"], ["1"], "qwen_math"),
    ):
        with pytest.raises(ValueError, match="boxed, boxed_lenient, answer_tag"):
            call()


def test_bad_arguments(grader):
    with pytest.raises(ValueError, match="same length"):
        grader.grade(["\\boxed{1}"], ["1", "2"], "boxed")
    with pytest.raises(ValueError, match="same length"):
        grader.grade(["\\boxed{1}"], ["1"], "boxed", truncated=[False, True])
    with pytest.raises(ValueError):
        MathGrader(num_workers=0)
    with pytest.raises(ValueError):
        MathGrader(timeout_s=0)


# --------------------------------------------------------------------------------------------- grading


def test_grade_mixed_batch(grader):
    responses = [
        "... so $x = \\boxed{\\frac{1}{2}}$.",  # right, needs math_verify (0.5 vs \frac12)
        "the answer is \\boxed{3}",  # wrong
        "the answer is 4",  # no box
        "long reasoning \\boxed{4}",  # right but truncated
        "\\boxed{142}",  # AMC float reference
        "\\boxed{9.6}",  # Minerva stringified list
        "\\boxed{(3, \\pi/2)}",  # LaTeX reference
        "\\boxed{6630}",  # second alternative of a Minerva list
    ]
    refs = [
        "0.5",
        "4",
        "4",
        "4",
        "142.0",
        "['9.6\\n']",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        ["6630.65\n", "6630\n"],
    ]
    truncated = [False, False, False, True, False, False, False, False]
    res = grader.grade(responses, refs, "boxed", truncated=truncated)
    assert [r.reward for r in res] == [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert res[1] == GradeResult(0.0, "3", True)
    assert res[2] == GradeResult(0.0, None, False)
    assert res[3].truncated and res[3].reward == 0.0
    assert not any(r.timed_out for r in res)


def test_grade_r1_template(grader):
    responses = [
        " 2+2 is 4 </think> <answer> 4 </answer>",
        " 2+2 is 4 </think>\n<answer>\\boxed{4}</answer>",
        " 2+2 is 4 </think> <answer> 5 </answer>",  # formatted, wrong
        " 2+2 is 4 <answer> 4 </answer>",  # </think> missing
        " 2+2 is 4 </think> 4",  # answer tag missing
        " 2+2 is 4 </think> <answer> The final answer is $4$. </answer>",
    ]
    res = grader.grade(responses, ["4"] * len(responses), "answer_tag_lenient")
    assert [r.reward for r in res] == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    assert [r.formatted for r in res] == [True, True, True, False, False, True]
    # The paper's strict form: "</think>\n<answer>" is unformatted (0), as in math_grader.answer_tag_reward_fn.
    res = grader.grade(responses[:3] + [" 4 </think> <answer> </answer>"], ["4"] * 4, "answer_tag")
    assert [r.reward for r in res] == [1.0, 0.0, 0.0, 0.0]
    assert [r.formatted for r in res] == [True, False, True, True]


def test_empty_batch_and_overlong_answer(grader):
    """reward.max_answer_chars: null (the default) checks every answer, as the paper's grader does; N scores a
    longer extracted answer 0 without sending it to a worker (r1zero's earlier cut was 1000)."""
    from r1zero.schema import RewardConfig
    from r1zero.schema.errors import ConfigError

    assert grader.grade([], [], "answer_tag") == []
    long_one = "1." + "0" * 1200  # 1202 characters; fast: PRM800K normalises the integral float to "1"
    res = grader.grade(["\\boxed{" + long_one + "}"], ["1"], "boxed", timeout_s=5.0, verifier="fast")
    assert res[0] == GradeResult(1.0, long_one, True)
    capped = MathGrader(num_workers=1, timeout_s=5.0, verifier="fast", max_answer_chars=1000)
    t0 = time.monotonic()
    res = capped.grade(["\\boxed{" + long_one + "}"], ["1"], "boxed")
    assert res == [GradeResult(0.0, long_one, True)]
    assert time.monotonic() - t0 < 1.0 and capped._workers == []  # never sent to a worker (none was started)
    assert RewardConfig().max_answer_chars is None
    with pytest.raises(ConfigError, match="reward.max_answer_chars"):
        RewardConfig(max_answer_chars=0)


def test_identical_answers_share_a_verdict(grader):
    res = grader.grade(
        ["\\boxed{\\frac{2}{4}}"] * 4 + ["\\boxed{\\frac{1}{3}}"] * 4, ["0.5"] * 8, "boxed"
    )
    assert [r.reward for r in res] == [1.0] * 4 + [0.0] * 4


# The equivalence table: (reference, model answer, verdict as measured, note). "FN:" marks a known false
# negative (equivalent, scored 0); "not equivalent" rows are controls. "shortcut" marks verdicts that come
# from the grader's own normalisation where math_verify alone says 0. A changed verdict, better or worse,
# fails its row: update the table deliberately.
EQUIVALENCE = [
    ("\\frac{1}{2}", "0.5", 1.0, "fraction vs decimal"),
    ("0.5", "\\frac{1}{2}", 1.0, "decimal vs fraction"),
    ("\\dfrac{1}{2}", "\\frac12", 1.0, "\\dfrac, brace-less \\frac"),
    ("\\frac{1}{2}", "1/2", 1.0, "slash fraction"),
    ("\\frac{-1}{2}", "-0.5", 1.0, "negative fraction"),
    ("\\frac{3}{2}", "1\\frac{1}{2}", 1.0, "mixed number"),
    ("\\frac13", "0.3333333", 1.0, "decimal to 7 places"),
    ("\\frac{1}{3}", "0.333", 0.0, "not equivalent: 3-place decimal (math_verify rounds to 6)"),
    ("\\frac13", "0.\\overline{3}", 0.0, "FN: repeating-decimal notation is not parsed"),
    ("(1, 2)", "(1,2)", 1.0, "point, spacing"),
    ("(1,2)", "\\left( 1, 2 \\right)", 1.0, "point, \\left( \\right)"),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3, \\pi/2)", 1.0, "polar point"),
    ("(1, 2)", "(2, 1)", 0.0, "not equivalent: ordered pair"),
    ("[0, 1)", "[0,1)", 1.0, "interval"),
    ("x \\in [0, 1)", "[0, 1)", 1.0, "interval vs membership"),
    ("[0, 1)", "[0, 1]", 0.0, "not equivalent: closed vs half-open"),
    ("x > 2", "(2, \\infty)", 1.0, "inequality reference, interval answer"),
    ("(2, \\infty)", "x > 2", 0.0, "FN: interval reference, inequality answer (math_verify is asymmetric)"),
    ("\\{1,2\\}", "\\{2, 1\\}", 1.0, "set order"),
    ("\\{1,2\\}", "1, 2", 1.0, "set vs bare list"),
    ("\\{1,2\\}", "\\{1,2,3\\}", 0.0, "not equivalent: extra element"),
    ("1, 2", "x=1 \\text{ or } x=2", 1.0, "roots written as equations"),
    ("5", "5 \\text{ cm}", 1.0, "unit in the answer"),
    ("5 \\text{ cm}", "5", 1.0, "unit in the reference"),
    ("12", "12 \\text{ inches}", 1.0, "unit word"),
    ("5", "x = 5", 1.0, "assignment"),
    ("x = 5", "5", 1.0, "assignment in the reference"),
    ("2x+3", "y = 2x + 3", 1.0, "equation of a line"),
    ("50\\%", "50", 1.0, "percent sign in the reference"),
    ("50", "50\\%", 1.0, "percent sign in the answer (shortcut; math_verify alone: 0)"),
    ("0.5", "50\\%", 0.0, "FN: percentage vs fraction"),
    ("75\\%", "\\frac{3}{4}", 0.0, "FN: percentage vs fraction"),
    ("30", "30^\\circ", 1.0, "degree sign"),
    ("30^{\\circ}", "30", 1.0, "degree sign in the reference"),
    ("30", "30°", 1.0, "unicode degree sign"),
    ("30", "30 \\text{ degrees}", 1.0, "degrees as a word"),
    ("30^\\circ", "\\frac{\\pi}{6}", 0.0, "FN: degrees vs radians"),
    ("\\frac{\\sqrt2}{2}", "\\sqrt{2}/2", 1.0, "\\sqrt2 vs \\sqrt{2}/2"),
    ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", 1.0, "unrationalised denominator"),
    ("2\\sqrt{3}", "\\sqrt{12}", 1.0, "unsimplified radical"),
    ("1000", "1,000", 1.0, "thousands separator"),
    ("1000", "1{,}000", 1.0, "thousands separator {,}"),
    ("10000", "10,\\!000", 1.0, "thousands separator ,\\!"),
    ("1000", "1\\,000", 1.0, "thin-space separator (shortcut; math_verify alone: 0)"),
    ("1000", "10^3", 1.0, "power of ten"),
    ("1000", "1e3", 0.0, "FN: e-notation"),
    ("2\\pi", "2 \\pi", 1.0, "\\pi spacing"),
    ("\\pi r^2", "r^2\\pi", 1.0, "commuted product"),
    ("\\pi", "3.141593", 1.0, "\\pi to 6 places"),
    ("\\pi", "3.14159", 0.0, "not equivalent: \\pi to 5 places"),
    ("\\sqrt{2}", "1.414214", 1.0, "radical to 6 places"),
    ("36", "\\$36", 1.0, "dollar sign"),
    ("\\$12.50", "12.5", 1.0, "dollar amount"),
    ("\\text{(C)}", "C", 1.0, "multiple-choice letter"),
    ("\\text{Monday}", "Monday", 1.0, "text answer"),
    ("5", "\\text{five}", 0.0, "FN: number as a word"),
    ("x^2+7x+10", "(x+2)(x+5)", 1.0, "factored polynomial"),
    ("4210_{5}", "4210_5", 1.0, "base subscript"),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1\\\\2\\end{pmatrix}", 1.0, "vector"),
    ("2", "2.0", 1.0, "integer as decimal"),
    ("2", "3", 0.0, "not equivalent"),
    ("-1", "1", 0.0, "not equivalent: sign"),
    ("\\frac12", "\\frac13", 0.0, "not equivalent"),
]


@pytest.fixture(scope="module")
def equivalence_results(grader):
    refs = [row[0] for row in EQUIVALENCE]
    responses = [f"Therefore the answer is $\\boxed{{{row[1]}}}$." for row in EQUIVALENCE]
    return grader.grade(responses, refs, "boxed")


@pytest.mark.parametrize("row", range(len(EQUIVALENCE)), ids=[f"{r[0]} vs {r[1]}" for r in EQUIVALENCE])
def test_equivalence_table(row, equivalence_results):
    ref, answer, expected, note = EQUIVALENCE[row]
    got = equivalence_results[row]
    assert not got.timed_out
    assert got.reward == expected, f"{note}: reference {ref!r}, answer {answer!r}"


def test_equivalence_table_false_negatives():
    fns = [r for r in EQUIVALENCE if r[3].startswith("FN:")]
    assert all(r[2] == 0.0 for r in fns)
    assert len(fns) == 7  # the known gaps, listed in the table


# -------------------------------------------------------------------------------------- timeouts, crashes


def test_pathological_answer_times_out_alone(grader):
    timeout = 1.0
    grader.grade(["\\boxed{1}"], ["\\frac{1}{1}"], "boxed")  # workers up before timing
    responses = [PATHOLOGICAL, "\\boxed{\\frac{2}{4}}", "\\boxed{3}", "\\boxed{\\sqrt{4}}", "\\boxed{x}"]
    refs = ["1", "0.5", "4", "2", "y"]
    before = grader.timeouts
    t0 = time.monotonic()
    res = grader.grade(responses, refs, "boxed", timeout_s=timeout)
    elapsed = time.monotonic() - t0
    assert res[0].reward == 0.0 and res[0].timed_out and res[0].formatted
    assert [r.reward for r in res[1:]] == [1.0, 0.0, 1.0, 0.0]
    assert not any(r.timed_out for r in res[1:])
    assert grader.timeouts == before + 1
    assert elapsed < timeout * 3 + 5, elapsed
    # The pool is intact: the same worker goes on grading.
    res = grader.grade(["\\boxed{\\frac{6}{8}}", PATHOLOGICAL], ["0.75", "2"], "boxed", timeout_s=timeout)
    assert [(r.reward, r.timed_out) for r in res] == [(1.0, False), (0.0, True)]
    assert grader.timeouts == before + 2


def _busy_worker(g: MathGrader, deadline_s: float = 30.0):
    t_end = time.monotonic() + deadline_s
    while time.monotonic() < t_end:
        for w in list(g._workers):
            if w.task is not None:
                return w
        time.sleep(0.005)
    raise AssertionError("no worker picked up the task")


def test_pathological_batch_costs_about_one_timeout(grader):
    """20 distinct answers that each run into a 1 s timeout would queue up for 10 s on 2 workers; the batch's
    default budget (hard deadline 2 s + 0.02 s per answer) stops them: all score 0 and count as timeouts."""
    timeout, n = 1.0, 20
    grader.grade(["\\boxed{1}"], ["\\frac{1}{1}"], "boxed")  # workers up before timing
    before = grader.timeouts
    t0 = time.monotonic()
    res = grader.grade(["\\boxed{\\frac{2}{4}}"] + [PATHOLOGICAL] * n, ["0.5"] + [str(k) for k in range(n)], "boxed",
                       timeout_s=timeout)
    elapsed = time.monotonic() - t0
    assert (res[0].reward, res[0].timed_out) == (1.0, False)  # checked before the budget ran out
    assert all(r.reward == 0.0 and r.timed_out and r.formatted for r in res[1:])
    assert grader.timeouts == before + n
    assert elapsed < 3 * timeout + 1.5, elapsed  # budget 2.4 s; without it n / 2 = 10 timeouts


def test_math_verify_calls_get_the_papers_one_second(monkeypatch):
    """The paper's is_latex_equal gives each math-verify call 1 s (parse(parsing_timeout=1) of the reference and
    of the answer, verify(timeout_seconds=1)), a call past it meaning "not equal". Under an answer budget of 30 s
    (r1zero.evaluate's) a parse that would run 10 s ends after ~1 s as a plain "not equal", not a timeout; under
    0.5 s the answer's own alarm comes first and it times out, as before. Run in this process as a worker runs it."""
    from r1zero.reward import verifiers, worker
    from r1zero.reward.fast import grade_fast

    def ten_second_parse(s):  # stands in for a math-verify parse that runs long
        t = time.monotonic()
        while time.monotonic() - t < 10.0:
            pass
        return []

    assert grade_fast("x", "y") is False  # fast says no (and its sympy import is paid before the clock starts)
    monkeypatch.setattr(verifiers, "_paper_parse", ten_second_parse)
    old = signal.getsignal(signal.SIGALRM)
    try:
        t0 = time.monotonic()
        assert worker._verify_pair("x", "y", 30.0, "math_verify") == (False, False)
        assert 0.9 < time.monotonic() - t0 < 5.0
        assert signal.getitimer(signal.ITIMER_REAL)[0] == 0.0  # nothing left armed
        assert worker._verify_pair("x", "y", 0.5, "math_verify") == (False, True)
        # unlimited calls (the worker's warm-up): the whole 10 s parse runs, here cut by a 2 s answer budget
        t0 = time.monotonic()
        assert worker._verify_pair("x", "y", 2.0, "math_verify", call=worker._unlimited_call) == (False, True)
        assert time.monotonic() - t0 > 1.9
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_batch_timeout_caps_the_alarm_and_skips_the_rest():
    with MathGrader(num_workers=1, timeout_s=30.0, batch_timeout_s=1.0, verifier="r1zero") as g:
        g.grade(["\\boxed{1}"], ["\\frac{1}{1}"], "boxed")
        t0 = time.monotonic()
        res = g.grade([PATHOLOGICAL, "\\boxed{\\frac{2}{4}}"], ["1", "0.5"], "boxed")
        elapsed = time.monotonic() - t0
        # The first answer's alarm is the batch's 1 s, not the answer's 30 s; the second is never checked.
        assert [(r.reward, r.timed_out) for r in res] == [(0.0, True), (0.0, True)]
        assert g.timeouts == 2 and elapsed < 2.5 + 1.0, elapsed
        assert g.grade(["\\boxed{\\frac{2}{4}}"], ["0.5"], "boxed")[0].reward == 1.0  # a new batch, a new budget
    with pytest.raises(ValueError, match="batch_timeout_s"):
        MathGrader(batch_timeout_s=0)


def test_reward_config_checks_batch_timeout():
    from r1zero.schema import RewardConfig
    from r1zero.schema.errors import ConfigError

    assert RewardConfig().batch_timeout_s is None
    with pytest.raises(ConfigError, match="reward.batch_timeout_s"):
        RewardConfig(batch_timeout_s=-1.0)


@pytest.mark.parametrize(
    "sig, timed_out", [(signal.SIGSTOP, True), (signal.SIGKILL, False)], ids=["SIGSTOP", "SIGKILL"]
)
def test_stuck_or_killed_worker_is_replaced(grader, sig, timed_out):
    """SIGSTOP: a worker the in-process alarm cannot reach (as if stuck in C code) is killed at the hard
    deadline (timeout + 1 s) and counted as a timeout. SIGKILL: a worker lost mid-answer (OOM killer) scores
    that answer 0 without hanging the batch."""
    grader.grade(["\\boxed{1}"], ["\\frac{1}{1}"], "boxed")
    out: list = []
    t0 = time.monotonic()
    th = threading.Thread(
        target=lambda: out.extend(grader.grade([PATHOLOGICAL], ["1"], "boxed", timeout_s=1.0))
    )
    th.start()
    victim = _busy_worker(grader)
    os.kill(victim.proc.pid, sig)
    try:
        th.join(30)
        assert not th.is_alive()
    finally:
        if victim.proc.poll() is None:
            os.kill(victim.proc.pid, signal.SIGKILL)
    assert out[0].reward == 0.0 and out[0].timed_out is timed_out
    assert time.monotonic() - t0 < 1.0 * 3 + 5
    assert victim.proc.poll() is not None  # reaped, not left stopped
    res = grader.grade(["\\boxed{0.5}", "\\boxed{1/3}"], ["\\frac12", "0.5"], "boxed")
    assert [r.reward for r in res] == [1.0, 0.0]


def test_module_level_api():
    rewards = grade_batch(
        ["\\boxed{\\frac{1}{2}}", "\\boxed{2}", "no answer", PATHOLOGICAL],
        ["0.5", "3", "1", "1"],
        "boxed",
        timeout_s=1.0,
    )
    assert rewards == [1.0, 0.0, 0.0, 0.0]
    detailed = grade_batch_detailed(["\\boxed{4}"], ["4"], "boxed", truncated=[True], timeout_s=1.0)
    assert detailed == [GradeResult(0.0, "4", True, truncated=True)]


def test_the_graders_default_verifier_is_the_configs():
    """``grade_batch``, ``grade_batch_detailed`` and ``MathGrader`` grade with the verifier a run gets when its
    config names none (``reward.verifier``: the paper's ``fast``)."""
    import inspect

    from conftest import compose

    from r1zero.run.config import run_config
    from r1zero.schema import RewardConfig

    assert RewardConfig().verifier == run_config(compose([])).reward.verifier == DEFAULT_VERIFIER == "fast"
    for api in (grade_batch, grade_batch_detailed, MathGrader):
        assert inspect.signature(api).parameters["verifier"].default == DEFAULT_VERIFIER, api
