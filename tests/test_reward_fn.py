"""reward=fn: a user reward function by import path, in the grader's workers (r1zero.reward.custom), and the
worked Countdown example (r1zero.data.countdown)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest
from conftest import REPO, compose

import r1zero.train as train_mod
from r1zero.data.countdown import evaluate_equation, extract_equation, generate, reward, reward_strict, score
from r1zero.reward.custom import RewardFnError, RewardFnGrader, check_reward_config, load_reward_fn

# --- the Countdown reward, worked by hand ------------------------------------------------------------------

@pytest.mark.parametrize("response,nums,target,expected", [
    ("<think>4*7=28, 28+9=37</think> <answer> 4 * 7 + 9 </answer>", [4, 7, 9], 37, 1.0),  # correct
    ("<answer>(9 - 7) * 4</answer>", [4, 7, 9], 8, 1.0),                  # any order of the numbers
    ("<answer>7 / 2 * 2 + 9</answer>", [2, 2, 7, 9], 16, 1.0),            # exact rationals: 7/2*2 is 7
    ("<answer>4 * 7 + 9 = 37</answer>", [4, 7, 9], 37, 1.0),              # "= target" side dropped
    ("\\boxed{4 * 7 + 9}", [4, 7, 9], 37, 1.0),                            # no tag: the last \boxed{}
    ("<answer>1</answer> then <answer>4*7+9</answer>", [4, 7, 9], 37, 1.0),  # the last tag counts
    ("<answer>4 * 7 - 9</answer>", [4, 7, 9], 37, 0.1),                   # wrong value: 19
    ("<answer>4 * 9 + 1</answer>", [4, 7, 9], 37, 0.1),                   # a number not given (and 7 unused)
    ("<answer>7 * 7 - 9 - 4 + 1</answer>", [4, 7, 9], 37, 0.1),           # 7 reused
    ("<answer>4 * 7</answer>", [4, 7, 9], 28, 0.1),                       # 9 unused
    ("<answer>9 / (7 - 7) + 4</answer>", [4, 7, 7, 9], 37, 0.1),          # division by zero: an equation, no value
    ("<answer>2 ** 5 + 5</answer>", [2, 5, 5], 37, 0.0),                  # ** is not allowed
    ("<answer>-4 + 41</answer>", [4, 41], 37, 0.0),                       # unary minus is not allowed
    ("<answer>37.0</answer>", [37], 37, 0.0),                              # decimals are not allowed
    ("<answer>forty</answer>", [4, 7, 9], 37, 0.0),                       # not an equation
    ("4 * 7 + 9", [4, 7, 9], 37, 0.0),                                    # no answer tag nor box
    ("<answer></answer>", [4, 7, 9], 37, 0.0),
])
def test_countdown_score_by_hand(response, nums, target, expected):
    assert score(response, nums, target) == pytest.approx(expected)
    assert score(response, nums, target, format_score=0.0) == (1.0 if expected == 1.0 else 0.0)


def test_countdown_never_executes_model_text(tmp_path):
    marker = tmp_path / "pwned"
    evil = [f"<answer>__import__('os').system('touch {marker}')</answer>",
            f"<answer>(lambda: open('{marker}', 'w'))()</answer>", "<answer>[].__class__</answer>",
            "<answer>" + "(" * 500 + "1" + ")" * 500 + "</answer>", "<answer>9999999 * 9999999</answer>"]
    rows = [{"nums": [1], "target": 1}] * len(evil)
    assert reward(evil, [1] * len(evil), rows) == [0.0] * len(evil)
    assert not marker.exists()
    assert evaluate_equation("__import__('os')") is None
    assert extract_equation("<answer> 3 * 4 = 12 </answer>") == "3 * 4"


def test_countdown_reward_reads_rows_and_strict_is_binary():
    rows = [{"nums": [4, 7, 9], "target": 37}, {"nums": [4, 7, 9]}]  # the second falls back to the reference
    responses = ["<answer>4*7+9</answer>", "<answer>4*7-9</answer>"]
    assert reward(responses, [0, 19], rows) == [1.0, 1.0]
    assert reward_strict(responses, [0, 20], rows) == [1.0, 0.0]
    assert reward(responses, [0, 20], rows) == [1.0, 0.1]


def test_countdown_questions_are_deterministic_solvable_and_split():
    spec = {"size": 50, "seed": 3, "count": 3, "min_number": 1, "max_number": 20, "max_target": 60,
            "heldout_percent": 20}
    train = generate(split="train", **spec)
    assert train == generate(split="train", **spec)
    test = generate(split="test", **{**spec, "seed": 4})
    assert not {q.question for q in train} & {q.question for q in test}
    assert len({q.question for q in train}) == 50
    for q in train + test:
        assert 1 <= q.target <= 60 and len(q.nums) == 3
        assert score(f"<answer>{q.solution}</answer>", q.nums, q.target) == 1.0
        assert q.row()["nums"] == list(q.nums)


def test_countdown_data_node_carries_rows():
    from r1zero.data.questions import load_questions

    cfg = compose(["data=countdown", "data.size=10"]).data
    qs = load_questions(cfg)
    assert len(qs) == 10 and qs[0].row["target"] == qs[0].answer and len(qs[0].row["nums"]) == 3


# --- reward.fn: loading, the workers, timeouts and errors --------------------------------------------------

@pytest.mark.parametrize("path,needle", [
    ("no_such_module_r1zero:f", "module 'no_such_module_r1zero' not found"),
    ("reward_fns:missing", "module 'reward_fns' has no attribute 'missing'"),
    ("reward_fns:NOT_CALLABLE", "'NOT_CALLABLE' is not callable (type int)"),
    ("reward_fns.short", "must be 'package.module:function'"),
])
def test_bad_reward_fn_path_says_why(path, needle):
    with pytest.raises(RewardFnError, match="reward.fn=") as err:
        load_reward_fn(path)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_reward_config_checks():
    assert check_reward_config(compose([]).reward) is None  # reward=math, the default
    assert check_reward_config(compose(["reward=fn", "reward.fn=reward_fns:short"]).reward) == "reward_fns:short"
    with pytest.raises(RewardFnError, match="reward=fn needs reward.fn="):
        check_reward_config(compose(["reward=fn"]).reward)
    with pytest.raises(RewardFnError, match="add reward=fn"):
        check_reward_config(compose(["reward.fn=reward_fns:short"]).reward)


@pytest.fixture(scope="module")
def behave_grader():
    with RewardFnGrader("reward_fns:behave", num_workers=1, timeout_s=0.5) as g:
        yield g


def test_reward_fn_values_in_the_workers(behave_grader):
    res = behave_grader.grade_fn(["ab", "abcd", "row"], [None, "r", 2], [{}, {}, {"x": 7}])
    assert [r.reward for r in res] == [2.0, 4.0, 7.0]
    assert not any(r.timed_out or r.error for r in res)


def test_reward_fn_errors_score_zero_counted_and_warned(behave_grader, caplog):
    errors0 = behave_grader.errors
    with caplog.at_level(logging.WARNING, logger="r1zero.reward"):
        res = behave_grader.grade_fn(["raise", "ok", "wrong-count", "nan", "exit", "abc"], [0] * 6, [{}] * 6)
    assert [r.reward for r in res] == [0.0, 2.0, 0.0, 0.0, 0.0, 3.0]
    assert [bool(r.error) for r in res] == [True, False, True, True, True, False]
    assert "ValueError: bad answer second line" in res[0].error  # one line
    assert "returned 2 values for 1 responses" in res[2].error and "non-finite" in res[3].error
    assert "worker process died" in res[4].error and not res[4].timed_out
    assert behave_grader.errors - errors0 == 4
    lines = [r.getMessage() for r in caplog.records]
    assert any("ValueError: bad answer second line" in m and "1 of 6" in m for m in lines)
    assert all("\n" not in m for m in lines)


def test_reward_fn_timeout_scores_zero_and_counts(behave_grader):
    t0 = behave_grader.timeouts
    res = behave_grader.grade_fn(["sleep", "xy"], [0, 0], [{}, {}])
    assert (res[0].reward, res[0].timed_out, res[0].error) == (0.0, True, None)
    assert res[1].reward == 2.0 and behave_grader.timeouts - t0 == 1


def test_answers_per_call_batches_and_fails_together():
    with RewardFnGrader("reward_fns:behave", num_workers=1, timeout_s=0.5, answers_per_call=2) as g:
        res = g.grade_fn(["a", "raise", "abc", "ab", "abcde"], [0] * 5, [{}] * 5)
    assert [r.reward for r in res] == [0.0, 0.0, 3.0, 2.0, 5.0]  # "a" shares the call that raised
    assert g.errors == 2


def test_the_math_grader_still_runs_in_a_reward_fn_pool(behave_grader):
    res = behave_grader.grade(["\\boxed{4}", "\\boxed{5}"], ["4", "4"], "boxed")
    assert [r.reward for r in res] == [1.0, 0.0]


def test_bad_reward_fn_fails_before_the_model_loads(tmp_path):
    out = subprocess.run([sys.executable, "-m", "r1zero.train", "model=tiny", "data=arith", "reward=fn",
                          "reward.fn=no_such_module_r1zero:countdown", f"hydra.run.dir={tmp_path}",
                          "logger.progress_bar=false"], capture_output=True, text=True, cwd=REPO, timeout=300,
                         check=False)
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("r1zero: error:")]
    assert len(errors) == 1 and "reward.fn='no_such_module_r1zero:countdown': module" in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr and "run directory" not in out.stdout


# --- a user reward function trains -------------------------------------------------------------------------

def test_a_user_reward_function_trains(tmp_path):
    """The tiny model's responses end early on any letter (stop strings), so lengths, and with them the
    ``short`` reward, vary within groups: advantages are non-zero and the policy gets gradients."""
    letters = ",".join("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    cfg = compose(["model=tiny", "data=arith", "data.max_questions=16", "template=no", f"template.stop=[{letters}]",
                   "reward=fn", "reward.fn=reward_fns:short", "train.total_steps=3", "train.prompts_per_rollout=2",
                   "sampling.group_size=4", "sampling.max_new_tokens=8", "train.micro_batch_size=8",
                   "train.mini_batch_size=null", "train.lr=1e-3", "eval.every=0", "logger.progress_bar=false",
                   "reward.num_workers=1", "train.save_final=false"], run_dir=tmp_path)
    train_mod.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3
    assert all(r["rollout/reward_errors"] == 0 and r["rollout/grader_timeouts"] == 0 for r in rows)
    assert "rollout/formatted_frac" not in rows[0]  # a reward function reports no answer format
    assert any(0 < r["rollout/reward_mean"] < 1 for r in rows)
    assert any(r["rollout/zero_signal_group_frac"] < 1 and r["train/grad_norm"] > 0 for r in rows)
