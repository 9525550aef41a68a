"""The benchmark suite: pass@k arithmetic, the standalone CLI, and its outputs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO, compose, make_batch

from r1zero.evaluate.suite import format_table, load_benchmarks, pass_at_k, pass_k_values
from r1zero.schema.errors import ConfigError


def test_pass_at_k_unbiased_estimator():
    # n = 4 samples, c = 1 correct: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5; pass@4 = 1
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    assert pass_at_k(4, 1, 4) == 1.0
    # none correct -> 0; all correct -> 1
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    # n = 5, c = 2, k = 3: 1 - C(3,3)/C(5,3) = 1 - 1/10
    assert pass_at_k(5, 2, 3) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        pass_at_k(4, 1, 5)
    assert pass_k_values(8) == [1, 2, 4, 8] and pass_k_values(6) == [1, 2, 4, 6] and pass_k_values(1) == [1]


def test_suite_sizes_and_reference_shapes(data_root):
    cfg = compose(config_name="evaluate")
    suite = load_benchmarks(cfg.eval)
    assert {k: len(v) for k, v in suite.items()} == {"aime": 30, "amc": 83, "math": 500, "minerva": 272,
                                                    "olympiad_bench": 675}
    # References arrive as floats (AMC 142.0) and lists (Minerva ['9.6\n']); the grader normalises both.
    assert suite["amc"][0].answer == 142.0 and suite["minerva"][0].answer == ["9.6\n"]
    capped = load_benchmarks(compose(["eval.benchmarks=[aime,math]", "eval.max_samples=3"], config_name="evaluate").eval)
    assert list(capped) == ["aime", "math"] and all(len(v) == 3 for v in capped.values())


def test_unknown_benchmark_names_the_choices(data_root):
    with pytest.raises(ConfigError, match="split 'gsm' not found; available splits: .*olympiad_bench"):
        load_benchmarks(compose(["eval.benchmarks=[gsm]"], config_name="evaluate").eval)


def test_format_table_average_row():
    m = {"eval/aime/accuracy": 0.2, "eval/aime/response_length": 100.0, "eval/aime/formatted_frac": 1.0,
         "eval/aime/truncated_frac": 0.0, "eval/average/accuracy": 0.2, "eval/average/response_length": 100.0,
         "eval/average/formatted_frac": 1.0, "eval/average/truncated_frac": 0.0}
    table = format_table(m)
    assert "| aime | 20.0 | 100.0 | 0.0 | 100 |" in table and "| average | 20.0 |" in table


def test_accuracy_line_reads_the_benchmark_accuracy_not_a_length_bucket():
    from r1zero.evaluate.suite import accuracy_line

    # the quickstart's step-0 row: the last "/accuracy" key is a length bucket's (it printed 0.056 for 0.492)
    one = {"eval/arith/accuracy": 0.4917, "eval/arith/length_bucket/0.25-0.5/accuracy": 0.595,
           "eval/arith/length_bucket/truncated/accuracy": 0.0556, "eval/average/accuracy": 0.4917,
           "eval/average/length_bucket/truncated/accuracy": 0.0556}
    assert accuracy_line(0, one) == "r1zero: step 0 eval accuracy arith=0.492"
    two = {"eval/gsm8k/accuracy": 0.25, "eval/math500/accuracy": 0.125, "eval/average/accuracy": 0.1875,
           "eval/gsm8k/length_bucket/0-0.125/accuracy": 1.0}
    assert accuracy_line(7, two) == "r1zero: step 7 eval accuracy gsm8k=0.250 math500=0.125 average=0.188"


def test_evaluate_cli_on_tiny_checkpoint_with_pass_at_k(tmp_path, data_root):
    # A run directory's final/ works as the model; k samples with a temperature give pass@k.
    import torch
    from omegaconf import OmegaConf

    from r1zero.model.load import build_byte_tokenizer, build_tiny_model

    torch.manual_seed(0)
    tok = build_byte_tokenizer()
    model = build_tiny_model(OmegaConf.load(REPO / "conf/model/tiny.yaml"), tok, torch.float32)
    model.save_pretrained(tmp_path / "run" / "final")
    tok.save_pretrained(tmp_path / "run" / "final")
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.evaluate", "model=tiny", f"model.path={tmp_path / 'run'}", "template=r1",
         "eval.benchmarks=[aime,amc]", "eval.max_samples=2", "eval.max_new_tokens=6", "eval.samples_per_question=4",
         "eval.temperature=1.0", f"hydra.run.dir={tmp_path / 'eval'}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "| aime |" in out.stdout and "| average |" in out.stdout and "pass@4 %" in out.stdout
    result = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert set(result["benchmarks"]) == {"aime", "amc", "average"}
    assert result["benchmarks"]["aime"]["num_questions"] == 2 and "pass@4" in result["benchmarks"]["amc"]
    rows = [json.loads(line) for line in (tmp_path / "eval" / "eval_samples.jsonl").read_text().splitlines()]
    assert len(rows) == 2 * 2 * 4
    assert {"benchmark", "question", "response", "extracted", "reference", "correct"} <= set(rows[0])


def test_greedy_with_several_samples_is_rejected(tmp_path):
    out = subprocess.run([sys.executable, "-m", "r1zero.evaluate", "model=tiny", "eval.samples_per_question=4",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    assert "eval.samples_per_question=4 needs eval.temperature > 0" in out.stderr


class _ScriptedEngine:
    """Returns fixed responses (one per prompt, in order) with given lengths and truncation flags."""

    def __init__(self, rows):
        self.rows = list(rows)  # (response, length, truncated)
        self.samplings = []  # the SamplingConfig of every call

    def generate(self, prompts, sampling):
        self.samplings.append(sampling)
        rows, self.rows = self.rows[: len(prompts)], self.rows[len(prompts):]
        return make_batch([1] * len(rows), [n for _, n, _ in rows], 1, texts=[r for r, _, _ in rows],
                          truncated=[t for _, _, t in rows])


SUITE_ROWS = [("\\boxed{4}", 10, False), ("\\boxed{5}", 30, True), ("\\boxed{1}", 50, False),
              ("\\boxed{0}", 20, False), ("\\boxed{0}", 40, True)]


def _suite_metrics(zero_truncated: bool, ev=None, engine=None):
    from omegaconf import OmegaConf

    from r1zero.data.questions import Question
    from r1zero.data.templates import PromptTemplate
    from r1zero.evaluate.suite import evaluate_suite
    from r1zero.reward import MathGrader

    suite = {"a": [Question("q1", "4"), Question("q2", "5"), Question("q3", "6")],
             "b": [Question("q4", "7"), Question("q5", "8")]}
    engine = engine or _ScriptedEngine(SUITE_ROWS)
    if ev is None:
        ev = OmegaConf.create({"max_new_tokens": 30, "temperature": 0.0, "batch_size": 8,
                               "zero_truncated": zero_truncated})
    with MathGrader(num_workers=1, verifier="r1zero") as grader:
        return evaluate_suite(None, None, PromptTemplate("plain", "{question}"), ev, engine=engine, grader=grader,
                              suite=suite, progress=False)


def test_eval_average_is_the_unweighted_mean_over_benchmarks():
    """evaluate_model.py prints np.mean(list(results.values())), the mean of the per-benchmark accuracies, as
    train_zero_math.py's evaluate logs eval/average/accuracy: benchmark a (3 questions) scores 2/3, b (2) scores
    0, so the average is (2/3 + 0) / 2 = 1/3, not the 2 of 5 questions (0.4) a pooled mean would give. It is the
    suite run with the paper's eval settings (conf/eval/default.yaml): one greedy answer of up to 3000 tokens per
    question, graded when truncated."""
    from omegaconf import OmegaConf

    from r1zero.rollout import SamplingConfig

    ev = OmegaConf.merge(compose([]).eval, {"path": None})  # the suite is given; its data_root is not needed
    engine = _ScriptedEngine(SUITE_ROWS)
    m = _suite_metrics(False, ev=ev, engine=engine)
    assert m["eval/a/accuracy"] == pytest.approx(2 / 3) and m["eval/b/accuracy"] == 0.0
    assert m["eval/average/accuracy"] == pytest.approx(1 / 3)
    assert engine.samplings[0] == SamplingConfig(n=1, max_new_tokens=3000, temperature=0.0, top_p=1.0, stop=())


def test_eval_grades_truncated_answers_unless_asked():
    # The paper's evaluate_model.py grades a truncated answer like any other; only training zeroes them.
    m = _suite_metrics(zero_truncated=False)
    assert m["eval/a/accuracy"] == pytest.approx(2 / 3) and m["eval/a/truncated_frac"] == pytest.approx(1 / 3)
    # Fig. 5 lengths: a's correct answers have 10 and 30 tokens, its wrong one 50; b has no correct answer.
    assert m["eval/a/response_length_correct"] == 20.0 and m["eval/a/response_length_incorrect"] == 50.0
    assert m["eval/b/response_length_incorrect"] == 30.0 and m["eval/b/response_length_correct"] != \
        m["eval/b/response_length_correct"]  # NaN
    # The average skips a benchmark without correct answers: (20) / 1; incorrect: (50 + 30) / 2.
    assert m["eval/average/response_length_correct"] == 20.0
    assert m["eval/average/response_length_incorrect"] == 40.0
    # Length buckets of eval.max_new_tokens=30: a's 10 (0.33), 30 (truncated), 50 (over the budget: 0.5-1);
    # b's 20 (0.67), 40 (truncated). The average of an accuracy skips benchmarks with nothing in that bucket.
    assert (m["eval/a/length_bucket/0.25-0.5/frac"], m["eval/a/length_bucket/0.25-0.5/accuracy"]) == (1 / 3, 1.0)
    assert (m["eval/b/length_bucket/0.5-1/frac"], m["eval/b/length_bucket/0.5-1/accuracy"]) == (0.5, 0.0)
    assert "eval/b/length_bucket/0.25-0.5/accuracy" not in m and m["eval/b/length_bucket/0.25-0.5/frac"] == 0.0
    assert m["eval/average/length_bucket/0.25-0.5/accuracy"] == 1.0  # a only
    assert m["eval/average/length_bucket/0.25-0.5/frac"] == pytest.approx(1 / 6)  # (1/3 + 0) / 2
    assert m["eval/average/length_bucket/truncated/accuracy"] == 0.5  # (1 + 0) / 2: graded like any other
    assert "eval/average/length_bucket/0-0.125/accuracy" not in m
    z = _suite_metrics(zero_truncated=True)
    assert z["eval/a/accuracy"] == pytest.approx(1 / 3) and z["eval/a/truncated_frac"] == pytest.approx(1 / 3)
    assert z["eval/a/response_length_correct"] == 10.0 and z["eval/a/response_length_incorrect"] == 40.0


def test_evaluate_cli_runs_offline_on_the_embedded_suite(tmp_path):
    # The README's first evaluation command, in a clone without the paper's release.
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.evaluate", "model=tiny", "template=chatml_fewshot", "eval=embedded",
         "eval.max_samples=2", "eval.max_new_tokens=4", "paths.data_root=/nonexistent", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert set(result["benchmarks"]) == {"math500", "minerva", "gsm8k", "asdiv", "mawps", "svamp", "average"}
    assert all(b["num_questions"] == 2 for name, b in result["benchmarks"].items() if name != "average")


def test_missing_paper_suite_is_one_line_naming_where_it_comes_from(tmp_path):
    out = subprocess.run([sys.executable, "-m", "r1zero.evaluate", "model=tiny", "paths.data_root=/nonexistent/r1",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("r1zero: error:")]
    assert len(errors) == 1 and "/nonexistent/r1/evaluation_suite" in errors[0]
    assert "sail-sg/understand-r1-zero" in errors[0] and "R1ZERO_DATA_ROOT" in errors[0]
