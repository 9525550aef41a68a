"""End-to-end training on the tiny model: parameters move, metrics/samples/checkpoints land, errors are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import REPO, compose

import r1zero.train as train_mod
from r1zero.evaluate.rollout_metrics import rollout_metrics
from r1zero.reward import GradeResult

TINY = [
    "model=tiny", "data=arith", "data.max_questions=16", "train.total_steps=2", "train.prompts_per_rollout=2",
    "sampling.group_size=4", "sampling.max_new_tokens=8", "train.micro_batch_size=3", "train.lr=1e-3",
    "logger.progress_bar=false", "reward.num_workers=1",
]
REQUIRED = [
    "step", "rollout/reward_mean", "rollout/response_length_mean", "rollout/response_length_correct",
    "rollout/response_length_incorrect", "rollout/truncated_frac", "rollout/grader_timeouts", "train/loss",
    "train/pg_clipfrac", "train/grad_norm", "train/lr", "time/rollout_s", "time/reward_s", "time/update_s",
    "perf/tokens_per_s",
]


class AlternatingGrader:
    """A random tiny model never answers correctly, so every advantage would be 0 and nothing would train.

    This grader marks every other response correct, giving each group mixed rewards; the real grader is
    tested in test_reward.py.
    """

    def __init__(self, *args, **kwargs):
        self.timeouts = 0

    def start(self):
        pass

    def grade(self, responses, references, template, truncated=None, **kwargs):
        return [GradeResult(reward=float(i % 2 == 0), extracted=None, formatted=False, timed_out=False,
                            truncated=False) for i in range(len(responses))]

    def close(self):
        pass


class ScriptedEngine:
    """Answers each prompt with G responses taken in turn from ``responses`` (those in ``truncated`` flagged as cut
    by the budget); records its calls, their sampling settings and the syncs."""

    def __init__(self, responses, truncated=()):
        self.responses, self.calls, self.syncs = list(responses), [], 0
        self.truncated, self.samplings = set(truncated), []

    def generate(self, prompts, sampling):
        from r1zero.rollout import RolloutBatch

        self.calls.append(list(prompts))
        self.samplings.append(sampling)
        rows = [self.responses[j % len(self.responses)] for _ in prompts for j in range(sampling.n)]
        ids = [[3 + ord(c) % 100 for c in r] for r in rows]  # token ids inside the tiny model's vocabulary
        return RolloutBatch.from_token_lists([[1]] * len(prompts), ids, rows, [r in self.truncated for r in rows],
                                             group_size=sampling.n, pad_id=0)

    def update_weights(self, named_tensors):
        self.syncs += 1

    def sleep(self):
        pass

    def wake_up(self):
        pass


def test_the_recipe_samples_with_an_injected_engine(tmp_path):
    engine = ScriptedEngine(["ab", "abcdef"])
    recipe = train_mod.R1ZeroRecipe(compose(TINY, run_dir=tmp_path), grader=AlternatingGrader(), engine=engine)
    try:
        recipe.setup()
        assert recipe.engine is engine
        recipe.train()
    finally:
        recipe.cleanup()
    assert len(engine.calls) == 2 and engine.syncs == 2  # one rollout per step, the update pushed after each
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["rollout/response_length_mean"] for r in rows] == [4.0, 4.0]  # lengths 2 and 6, in turn
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and {s["response"] for s in samples} <= {"ab", "abcdef"}


@pytest.mark.parametrize("algo", ["grpo", "drgrpo", "grpo_no_len_norm", "grpo_no_std_norm", "token_mean"])
def test_two_steps_change_every_parameter(tmp_path, algo):
    cfg = compose(TINY + [f"algo={algo}"], run_dir=tmp_path)
    # Scripted, finished responses: the random tiny model rarely ends one inside 8 tokens, and a truncated response
    # scores 0, so with sampled ones whether any group has mixed rewards would be down to the seed.
    recipe = train_mod.R1ZeroRecipe(cfg, grader=AlternatingGrader(), engine=ScriptedEngine(["ab", "abcdef", "abc"]))
    try:
        recipe.setup()
        before = {n: p.detach().clone() for n, p in recipe.model.named_parameters() if p.requires_grad}
        recipe.train()
    finally:
        recipe.cleanup()
    after = dict(recipe.model.named_parameters())
    unchanged = [n for n, p in before.items() if torch.equal(p, after[n].detach())]
    assert not unchanged, f"parameters not updated: {unchanged}"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for key in REQUIRED:
        assert key in rows[0], key
    # The fake grader ignores truncation; the loop zeroes truncated responses itself and logs both means.
    assert rows[0]["rollout/reward_mean_pre_truncation"] == 0.5
    assert rows[0]["rollout/reward_mean"] <= 0.5
    assert rows[0]["train/lr"] == 1e-3
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    assert {"question", "response", "reward"} <= set(samples[0])
    assert (tmp_path / "final" / "config.json").exists() and (tmp_path / "config.yaml").exists()


def test_a_run_in_prompt_epochs_is_passes_of_whole_rollouts(tmp_path, capsys):
    """train.prompt_epochs=2 over 5 questions in rollouts of 2: floor(5 / 2) = 2 rollouts a pass, each pass a fresh
    shuffle whose fifth question is skipped (oat's drop_last prompt loader), so 2 x 2 = 4 steps, every pass 4
    distinct questions; the manifest records the 4, and the same command again finds the run finished."""
    from r1zero.run.manifest import read_manifest

    overrides = [o for o in TINY if not o.startswith(("data.max_questions=", "train.total_steps="))] + [
        "data.max_questions=5", "train.prompt_epochs=2", "train.total_steps=null"]
    engine = ScriptedEngine(["ab", "abcdef"])
    train_mod.run(compose(overrides, run_dir=tmp_path), grader=AlternatingGrader(), engine=engine)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [r["data/epoch"] for r in rows] == [0.0, 0.0, 1.0, 1.0]
    for first, second in ((0, 1), (2, 3)):  # one pass: two rollouts, no question twice
        assert len(set(engine.calls[first]) | set(engine.calls[second])) == 4
    assert read_manifest(tmp_path)["total_steps"] == 4 and read_manifest(tmp_path)["finished"] is True
    train_mod.run(compose(overrides, run_dir=tmp_path), grader=AlternatingGrader(), engine=ScriptedEngine(["ab"]))
    assert "already holds a finished run of 4 steps" in capsys.readouterr().out


def test_run_writes_its_manifest(tmp_path):
    from r1zero.run.manifest import read_manifest

    train_mod.run(compose(TINY + ["seed=5"], run_dir=tmp_path), grader=AlternatingGrader())
    m = read_manifest(tmp_path)
    assert m["finished"] is True and m["segments"] == 1 and m["seed"] == 5 and m["world_size"] == 1
    assert m["versions"]["torch"] == torch.__version__ and m["versions"]["python"] == sys.version.split()[0]
    assert {"transformers", "vllm", "deepspeed", "math-verify", "hydra-core", "r1zero", "cuda"} <= set(m["versions"])
    assert m["hardware"]["cpu_count"] >= 1 and m["hardware"]["gpu_count"] == 0 and m["gpu_hours"] == 0.0
    assert m["wall_s"] > 0 and m["started_at"] <= m["ended_at"] and m["slurm"] is None
    assert len(m["git"]["commit"]) == 40 and isinstance(m["git"]["dirty"], bool)  # the test runs in a checkout


def test_training_is_seeded(tmp_path):
    finals = []
    for run in ("a", "b"):
        cfg = compose(TINY + ["train.total_steps=1"], run_dir=tmp_path / run)
        train_mod.run(cfg, grader=AlternatingGrader())
        finals.append((tmp_path / run / "metrics.jsonl").read_text())
    strip = lambda text: [{k: v for k, v in json.loads(t).items() if not k.startswith(("time/", "perf/"))}  # noqa: E731
                          for t in text.splitlines()]
    assert strip(finals[0]) == strip(finals[1])


def test_resume_matches_uninterrupted_run(tmp_path):
    """A run stopped after its step-2 checkpoint and resumed with resume=auto ends with identical weights."""
    common = TINY + ["train.total_steps=4", "train.save_every=2", "train.keep_checkpoints=null"]
    full = train_mod.R1ZeroRecipe(compose(common, run_dir=tmp_path / "full"), grader=AlternatingGrader())
    full.setup(); full.train(); full.cleanup()  # noqa: E702

    first = train_mod.R1ZeroRecipe(compose(common[:-3] + ["train.total_steps=2", "train.save_every=2",
                                                         "train.save_final=false"], run_dir=tmp_path / "cut"),
                                   grader=AlternatingGrader())
    first.setup(); first.train(); first.save_checkpoint(); first.cleanup()  # noqa: E702
    resumed = train_mod.R1ZeroRecipe(compose(common + ["resume=auto"], run_dir=tmp_path / "cut"),
                                     grader=AlternatingGrader())
    resumed.setup()
    assert resumed.step == 2
    resumed.train(); resumed.cleanup()  # noqa: E702

    a, b = dict(full.model.named_parameters()), dict(resumed.model.named_parameters())
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=0, rtol=0, msg=name)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_resumed_kl_reference_is_the_initial_policy(tmp_path):
    """With algo.kl_coef > 0 the reference is the policy at step 0, also after a resume (not the checkpoint)."""
    common = TINY + ["algo.kl_coef=0.1", "train.save_final=false"]
    first = train_mod.R1ZeroRecipe(compose(common, run_dir=tmp_path), grader=AlternatingGrader(),
                                   engine=ScriptedEngine(["ab", "abcdef", "abc"]))  # finished: see above
    first.setup()
    initial = {n: p.detach().clone() for n, p in first.model.named_parameters()}
    first.train(); first.save_checkpoint(); first.cleanup()  # noqa: E702
    resumed = train_mod.R1ZeroRecipe(compose(common + ["train.total_steps=3", "resume=auto"], run_dir=tmp_path),
                                     grader=AlternatingGrader(), engine=ScriptedEngine(["ab", "abcdef", "abc"]))
    resumed.setup()
    try:
        assert resumed.step == 2
        ref, policy = dict(resumed.learner.ref_model.named_parameters()), dict(resumed.model.named_parameters())
        for name, value in initial.items():
            torch.testing.assert_close(ref[name], value, atol=0, rtol=0, msg=name)
        assert any(not torch.equal(policy[n], initial[n]) for n in initial)  # the policy itself did move
        resumed.train()
    finally:
        resumed.cleanup()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3] and rows[-1]["train/kl"] > 0


def test_eval_during_training_logs_benchmarks(tmp_path, data_root):
    cfg = compose(TINY + ["train.total_steps=2", "eval.every=1", "eval.max_samples=2", "eval.max_new_tokens=8",
                          "eval.benchmarks=[aime,math]"], run_dir=tmp_path)
    train_mod.run(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        for key in ("eval/aime/accuracy", "eval/math/response_length", "eval/average/accuracy"):
            assert key in row
    lines = (tmp_path / "eval_samples.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 2  # steps x benchmarks x questions


def _cli(*args, timeout=180):
    return subprocess.run([sys.executable, "-m", "r1zero.train", *args], capture_output=True, text=True, cwd=REPO,
                          timeout=timeout)


@pytest.mark.parametrize(
    "overrides,needle",
    [
        (["model=qwen15", "model.path=Qwen/not-a-real-model-r1zero"], "model 'Qwen/not-a-real-model-r1zero' is not a local directory"),
        (["model=tiny", "data=orz57k"], "orz_57k' not found"),
        (["model=tiny", "data=asdiv", "paths.data_root=/nonexistent/r1zero"],
         "part of the paper's released data (the datasets/ folder of sail-sg/understand-r1-zero), expected under "
         "paths.data_root=/nonexistent/r1zero"),
        (["model=tiny", "data=math12k", "data.answer_key=final"], "row 0: missing field 'final'"),
        (["model=tiny", "data=arith", "data.operators=[/]"], "data.operators=['/'] must be a non-empty list of"),
        (["model=tiny", "data=arith", "data.size=5000"], "fewer than 5000 distinct train questions"),
        (["model=tiny", "algo.loss_agg=seq_sum"], "algo.loss_agg='seq_sum' is not one of"),
        (["model=tiny", "reward.verifier=sympy"], "reward.verifier='sympy' is not one of the registered verifiers; valid: fast, math_verify, r1zero"),
    ],
    ids=["model-offline", "data-missing", "paper-data-missing", "field-missing", "bad-operator", "arith-too-small",
         "bad-agg", "bad-verifier"],
)
def test_bad_input_fails_with_one_line(tmp_path, overrides, needle):
    _assert_one_line_error(_cli(*overrides, f"hydra.run.dir={tmp_path}", "logger.progress_bar=false"), needle)


def _assert_one_line_error(out, needle):
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("r1zero: error:")]
    assert len(errors) == 1 and needle in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr


def test_bad_split_of_the_papers_data_fails_with_one_line(tmp_path, data_root):
    out = _cli("model=tiny", "data=math_lvl3to5", f"hydra.run.dir={tmp_path}", "logger.progress_bar=false")
    _assert_one_line_error(out, "split 'train' not found; available splits: ['eval']")


def test_fresh_run_refuses_to_mix_with_existing_metrics(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(FileExistsError, match="resume=auto"):
        train_mod.run(compose(TINY + ["resume=null"], run_dir=tmp_path), grader=AlternatingGrader())
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n'  # nothing already written is lost


class CorrectGrader(AlternatingGrader):
    """Marks every response correct and records what it was asked to grade (MathGrader's signature)."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def grade(self, responses, references, template, truncated=None, **kwargs):
        self.calls.append({"responses": list(responses), "truncated": truncated})
        return [GradeResult(1.0, "x", True) for _ in responses]


def test_training_grades_truncated_responses_then_zeroes_them(tmp_path):
    """The paper's training zeroes the reward of a response cut by the budget (train_zero_math.py ZeroMathActor.step:
    `if no_eos[i][j]: reward = 0`) after grading it (its actor logs the reward mean before that). Half of these
    responses ("abcdef") are truncated, all are right: graded 1 each (the grader is not told about truncation),
    trained on as 1, 0, 1, 0: rollout/reward_mean 0.5 beside reward_mean_pre_truncation 1.0, and the
    samples carry reward 0 exactly where truncated."""
    grader, engine = CorrectGrader(), ScriptedEngine(["ab", "abcdef"], truncated={"abcdef"})
    one_step = [o for o in TINY if not o.startswith("train.total_steps=")] + ["train.total_steps=1",
                                                                          "logger.samples_per_step=8"]
    train_mod.run(compose(one_step, run_dir=tmp_path), grader=grader, engine=engine)
    assert grader.calls[0]["truncated"] is None and "abcdef" in grader.calls[0]["responses"]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert (row["rollout/reward_mean_pre_truncation"], row["rollout/reward_mean"], row["rollout/truncated_frac"]) == (
        1.0, 0.5, 0.5)
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["reward"] == (0.0 if s["truncated"] else 1.0) for s in samples)
    assert {s["truncated"] for s in samples} == {True, False}


def test_rollouts_sample_with_the_papers_settings(tmp_path):
    """The paper's scripts sample --num_samples 8 --temperature 1 --top_p 1 --generate_max_length 3000 (top_k: oat's
    -1, off); the R1 template also stops at "</answer>" (ZeroMathActor.init). What the engine is asked for, with
    the training config left at its defaults but for the tiny model's size."""
    from r1zero.rollout import SamplingConfig

    small = [o for o in TINY if not o.startswith(("sampling.", "train.total_steps="))] + [
        "train.total_steps=1", "train.mini_batch_size=null", "template=r1"]
    engine = ScriptedEngine(["ab </think> <answer> 1 </answer>"])
    train_mod.run(compose(small, run_dir=tmp_path), grader=AlternatingGrader(), engine=engine)
    assert engine.samplings == [SamplingConfig(n=8, max_new_tokens=3000, temperature=1.0, top_p=1.0, top_k=0,
                                               stop=("</answer>",))]
    assert len(engine.calls[0]) == 2  # prompts_per_rollout=2 here (the paper: 128)


def test_rollout_metrics_log_the_reward_before_truncation():
    # 4 responses, group size 2: graded rewards [1, 1, 0, 1]; response 1 is truncated, so training sees
    # [1, 0, 0, 1]: reward_mean 2/4, reward_mean_pre_truncation 3/4 (the one the paper's curves show).
    results = [GradeResult(r, "x", True) for r in (1.0, 1.0, 0.0, 1.0)]
    lengths, truncated = torch.tensor([2, 8, 4, 6]), torch.tensor([False, True, False, False])
    adv = torch.tensor([0.5, -0.5, -0.5, 0.5])  # r - group mean
    m = rollout_metrics(lengths, truncated, torch.tensor([1.0, 0.0, 0.0, 1.0]), results, adv,
                        group_size=2, max_new_tokens=8)
    assert m["rollout/reward_mean"] == 0.5 and m["rollout/reward_mean_pre_truncation"] == 0.75
    assert m["rollout/response_length_correct"] == 4.0 and m["rollout/truncated_frac"] == 0.25
    # Both groups ([1, 0] and [0, 1]) are mixed: none without signal. Budget 8: lengths 2 (0.25), 8 (truncated),
    # 4 and 6 (0.5 and 0.75) land in 0.25-0.5, truncated, 0.5-1, 0.5-1.
    assert m["rollout/zero_signal_group_frac"] == 0.0
    assert [m[f"rollout/length_bucket/{b}/frac"] for b in ("0-0.125", "0.125-0.25", "0.25-0.5", "0.5-1", "truncated")] \
        == [0.0, 0.0, 0.25, 0.5, 0.25]
    assert (m["rollout/length_bucket/0.5-1/accuracy"], m["rollout/length_bucket/0.5-1/advantage_mean"]) == (0.5, 0.0)
    assert m["rollout/length_bucket/truncated/advantage_mean"] == -0.5
    assert "rollout/length_bucket/0-0.125/accuracy" not in m  # empty bucket: no NaN


def test_long_prompts_are_dropped_and_counted():
    # The byte tokenizer has one token per byte (plus none special): template "Q: {question}" adds 3 bytes.
    from r1zero.data.questions import Question
    from r1zero.data.templates import PromptTemplate, drop_long_prompts
    from r1zero.model.load import build_byte_tokenizer

    tok = build_byte_tokenizer()
    tpl = PromptTemplate("t", "Q: {question}")
    qs = [Question("x" * n, "1") for n in (5, 7, 8, 20)]
    extra = len(tok("Q: ")["input_ids"]) - 3  # special tokens the tokenizer adds, counted as oat counts them
    kept, dropped = drop_long_prompts(qs, tpl, tok, 10 + extra)  # 3 + n <= 10: n <= 7
    assert [len(q.question) for q in kept] == [5, 7] and dropped == 2
    assert drop_long_prompts(qs, tpl, tok, None) == (qs, 0)
