"""The paper's experiments as Hydra sweeps (sweeps/sweep/*.yaml): they compose from any cwd, expand to the
paper's grids, turn on evaluation, go to SLURM with the A100 preset, and scale down with experiment=toy."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, compose
from omegaconf import OmegaConf

from r1zero.run.dryrun import plan, sbatch_header

SWEEPS = REPO / "sweeps" / "sweep"

# Every sweep runs as long as the paper's scripts do: --num_prompt_epoch 20 (understand-r1-zero examples/*.sh), no
# other cap; eval from step 0 (oat's learner evaluates before its first step).
PAPER_LENGTH = {"train.prompt_epochs": 20, "train.total_steps": None, "eval.at_start": True}
# name -> (jobs, fixed settings, swept keys -> values); reward.verifier: the paper's --verifier_version for that run
# (train_zero_math.py's default fast for the 1.5B models, math_verify in examples/qwen2.5-math-7b.sh)
EXPECTED = {
    "drgrpo_vs_grpo": (2, {"model.name": "qwen15", "template.name": "r1", "data.name": "math12k",
                           "reward.verifier": "fast", **PAPER_LENGTH},
                       {"algo": ["grpo", "drgrpo"]}),
    "ablation": (12, {"model.name": "qwen_math15", "template.name": "r1", "data.name": "math12k",
                      "reward.verifier": "fast", **PAPER_LENGTH},
                 {"algo": ["grpo", "drgrpo", "grpo_no_len_norm", "grpo_no_std_norm"], "seed": ["1", "2", "3"]}),
    "duet": (12, {"model.name": "qwen_math15", "algo.name": "drgrpo", "reward.verifier": "fast", **PAPER_LENGTH},
             {"template": ["r1", "qwen_math", "no"], "data": ["orz57k", "math12k", "gsm8k", "asdiv"]}),
    # beyond the paper: the objective presets on the ablation's setting (its GRPO / Dr. GRPO runs are the reference)
    "objectives": (18, {"model.name": "qwen_math15", "template.name": "r1", "data.name": "math12k",
                        "reward.verifier": "fast", **PAPER_LENGTH},
                   {"algo": ["rloo", "dapo", "gspo", "cispo", "reinforce_pp", "lite_ppo"], "seed": ["1", "2", "3"]}),
    # examples/qwen2.5-math-1.5b.sh trains on --prompt_data ./datasets/train/math_12k (not level 3-5)
    "oat_zero_1.5b": (1, {"model.name": "qwen_math15", "template.name": "qwen_math", "algo.name": "drgrpo",
                          "data.name": "math12k", "reward.verifier": "fast", **PAPER_LENGTH}, {}),
    "oat_zero_7b": (1, {"model.name": "qwen_math7", "template.name": "qwen_math", "algo.name": "drgrpo",
                        "data.name": "math_lvl3to5", "reward.verifier": "math_verify", **PAPER_LENGTH},
                    {}),  # examples/qwen2.5-math-7b.sh
}


def test_every_sweep_file_is_tested():
    assert sorted(p.stem for p in SWEEPS.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_composes_with_the_papers_settings(name):
    n_jobs, fixed, grid = EXPECTED[name]
    cfg = compose([f"sweep={name}"])
    OmegaConf.to_container(cfg, resolve=True)
    for key, value in fixed.items():
        assert OmegaConf.select(cfg, key) == value, key
    assert cfg.eval.every > 0  # eval curves / Table 4 need evaluation during training
    assert cfg.resume == "auto"  # a requeued job continues from its checkpoint

    _, jobs = plan([f"sweep={name}"])
    assert len(jobs) == n_jobs
    for key, values in grid.items():
        assert sorted({o.split("=", 1)[1] for job in jobs for o in job if o.startswith(f"{key}=")}) == sorted(values)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sweep_header_gives_the_commands(name):
    text = (SWEEPS / f"{name}.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    assert f"python -m r1zero.train -m sweep={name} hydra/launcher=slurm_a100" in text
    assert f"python -m r1zero.train -m sweep={name} experiment=toy" in text


def test_ablation_on_slurm_a100_is_12_array_jobs_of_one_8xa100_node():
    """What `python -m r1zero.train -m sweep=ablation hydra/launcher=slurm_a100` submits (python -m r1zero.run.dryrun)."""
    cfg, jobs = plan(["sweep=ablation", "hydra/launcher=slurm_a100"])
    assert OmegaConf.to_container(cfg.hydra.sweeper.params) == {
        "algo": "grpo,drgrpo,grpo_no_len_norm,grpo_no_std_norm", "seed": "1,2,3"}
    assert len(jobs) == 12 and len({tuple(j) for j in jobs}) == 12
    assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    lines = sbatch_header(cfg, len(jobs))
    assert cfg.strategy.name == "zero2"  # the 8 tasks are 8 ranks of one ZeRO-2 run
    for expected in ["--array=0-11%12", "--gpus-per-node=8", "--nodes=1", "--ntasks-per-node=8", "--time=1440",
                     "--signal=USR2@900", "--job-name=train"]:
        assert f"#SBATCH {expected}" in lines, (expected, lines)
    # the command line narrows the grid
    assert len(plan(["sweep=ablation", "seed=1"])[1]) == 4


def test_sweeps_run_the_papers_passes_counted_as_oat_counts():
    """20 passes of floor(questions / 128) rollouts: MATH-12k's 12,000 questions (7,500 + 5,000 - MATH500; here
    11,998: two solutions box nothing, "$\\boxed{}$ primes") give 93 rollouts a pass (the rest of each shuffled
    pass skipped, as oat's drop_last loader) and 1,860 steps; the Oat-Zero-7B set, 8,523 questions, 66 a pass and
    1,320 steps. A toy or laptop run keeps its few steps: its train.total_steps caps the passes."""
    from r1zero.data.questions import load_questions
    from r1zero.schema import TrainConfig, typed

    cfg = compose(["sweep=ablation"])
    n = len(load_questions(cfg.data))
    assert n == 11_998
    assert typed(TrainConfig, cfg.train).run_steps(n) == 1_860
    assert typed(TrainConfig, compose(["sweep=oat_zero_7b"]).train).run_steps(8_523) == 1_320
    for experiment, steps in (("toy", 3), ("laptop", 30)):
        small = typed(TrainConfig, compose(["sweep=ablation", f"experiment={experiment}"]).train)
        assert small.prompt_epochs == 20 and small.run_steps(64) == steps


def test_toy_overrides_the_sweep_and_the_command_line_overrides_toy():
    cfg = compose(["sweep=ablation", "experiment=toy"])
    assert cfg.model.name == "tiny" and cfg.template.name == "r1" and cfg.data.name == "math12k"
    assert cfg.train.total_steps == 3 and cfg.sampling.max_new_tokens == 16 and cfg.eval.every == 2
    assert cfg.eval.max_samples == 1
    assert compose(["sweep=ablation"]).strategy.name == "zero2" and cfg.strategy.name == "single"
    assert compose(["sweep=ablation", "experiment=toy", "model=smollm2_135m"]).model.name == "smollm2_135m"


def test_sweeps_are_found_from_any_cwd(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.run.dryrun", "sweep=ablation", "hydra/launcher=slurm_a100"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("12 jobs") and "#SBATCH --gpus-per-node=8" in out.stdout
    cfg = subprocess.run(
        [sys.executable, "-m", "r1zero.train", "sweep=duet", "--cfg", "hydra", "-p", "hydra.sweeper.params"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert cfg.returncode == 0, cfg.stderr
    assert "template: r1,qwen_math,no" in cfg.stdout and "data: orz57k,math12k,gsm8k,asdiv" in cfg.stdout


@pytest.mark.slow
def test_toy_sweep_runs_locally(tmp_path):
    """A 2-job toy multirun through the basic launcher: each job logs its steps and an eval curve point."""
    sweep = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.train", "-m", "sweep=drgrpo_vs_grpo", "experiment=toy", "train.total_steps=2",
         f"hydra.sweep.dir={sweep}"],
        check=False, cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in runs] == ["0_grpo_s42", "1_drgrpo_s42"]
    for run in runs:
        rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2]
        assert "eval/average/accuracy" in rows[-1]
        assert Path(run / "config.yaml").is_file()
    # The analysis reads what training wrote: metric and config names are checked end to end.
    figures = tmp_path / "figures"
    out = subprocess.run([sys.executable, "-m", "r1zero_analysis", "all", "--runs", str(sweep), "--out", str(figures)],
                         check=False, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "error:" not in out.stderr
    for name in ("dynamics", "ablation"):
        assert (figures / f"{name}.png").stat().st_size > 0 and (figures / f"{name}.csv").is_file(), name
    assert (figures / "table.md").is_file() and (figures / "index.md").is_file()
    dynamics = pd.read_csv(figures / "dynamics.csv")
    assert set(dynamics["algo"]) == {"grpo", "drgrpo"} and dynamics["step"].max() == 2


def test_oat_zero_question_set_is_unwrapped_from_the_papers_prompts(data_root):
    """math_lvl3to5_8k stores qwen_math prompts ending in '<|im_start|>assistant' (no final newline)."""
    from r1zero.data.questions import load_questions

    cfg = compose(["sweep=oat_zero_7b", "data.split=eval", "data.max_questions=5"])
    questions = load_questions(cfg.data)
    assert len(questions) == 5
    for q in questions:
        assert "<|im_start|>" not in q.question and "<|im_end|>" not in q.question and q.answer


def test_multi_process_launcher_with_single_strategy_is_refused_before_submitting(tmp_path):
    """slurm_a100 starts 8 ranks per job; with strategy=single every job would fail after queueing."""
    args = ["hydra/launcher=slurm_a100", "experiment=toy", "seed=1,2"]  # toy switches the strategy to single
    out = subprocess.run([sys.executable, "-m", "r1zero.run.dryrun", *args], check=False, capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "2 jobs" in out.stdout
    assert out.stderr.strip().splitlines() == [
        "r1zero: error: hydra.launcher starts 8 processes per job (tasks_per_node x nodes) but strategy=single "
        "uses one; add strategy=ddp, zero2 or zero3, or set hydra.launcher.tasks_per_node=1"]
    out = subprocess.run([sys.executable, "-m", "r1zero.train", "-m", *args, f"hydra.sweep.dir={tmp_path}/sweep"],
                         check=False, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "strategy=single uses one" in out.stderr
    assert not (tmp_path / "sweep").exists()  # nothing was submitted
    for ok in (["strategy=ddp"], ["hydra.launcher.tasks_per_node=1"], ["strategy=single,ddp"]):
        out = subprocess.run([sys.executable, "-m", "r1zero.run.dryrun", *args, *ok], check=False, capture_output=True,
                             text=True, timeout=120, cwd=tmp_path)
        assert out.returncode == 0, (ok, out.stderr)


def test_cost_estimate_of_the_7b_recipe():
    """Worked by hand (r1zero/run/cost.py's model), Oat-Zero-7B on one 8xA100 node, 128 x 8 responses a step:
    generation 1024 x 750 tokens / (255 tok/s x 8 GPUs) = 376.5 s a step; learner 1024 x (150 + 750) tokens x
    8 FLOPs/param x 7.62e9 params / (0.30 x 312e12 x 8) = 75.0 s. The calibration: 200 steps, 90 300 s, and
    13 evaluations (every 16 steps + the last) x 1560 questions x 750 tokens / 2040 tok/s = 7456 s: 97 756 s =
    27.2 h, the paper's 27 h (217 GPU-hours; with the 24 h limit less the 900 s warning, 2 segments). The sweep's
    own length, 20 passes over 8,523 questions = 1,320 steps, with 84 evaluations (step 0, every 16, the last):
    1320 x 451.5 + 84 x 573.5 = 644 154 s = 178.9 h."""
    from r1zero.run.cost import estimate

    calibration = compose(["sweep=oat_zero_7b", "train.prompt_epochs=null", "train.total_steps=200",
                           "eval.at_start=false"])
    est = estimate(calibration, gpus=8, gpu="A100-SXM4-80GB", limit_s=24 * 3600 - 900)
    assert est.gen_s == pytest.approx(376.5, abs=0.1) and est.learner_s == pytest.approx(75.0, abs=0.1)
    assert est.eval_s == pytest.approx(7456, abs=1)
    assert est.wall_s / 3600 == pytest.approx(27.2, abs=0.05) and est.gpu_hours == pytest.approx(217, abs=0.5)
    assert est.segments == 2
    cfg = compose(["sweep=oat_zero_7b"])
    est = estimate(cfg, gpus=8, gpu="a100", questions=8_523)
    assert est.wall_s == pytest.approx(1320 * 451.5 + 84 * 573.5, rel=1e-3)
    with pytest.raises(ValueError, match="train.prompt_epochs: the run's steps need the size of its question set"):
        estimate(cfg, gpus=8, gpu="a100")  # a run in passes, no cap, no question count
    # every paper sweep gets an estimate, and an H100 is faster than an A100
    for name in SWEEPS.glob("*.yaml"):
        cfg = compose([f"sweep={name.stem}"])
        assert 0 < estimate(cfg, gpus=8, gpu="h100", questions=12_000) \
            .wall_s < estimate(cfg, gpus=8, gpu="a100", questions=12_000).wall_s
    with pytest.raises(ValueError, match="unknown GPU type 'v100'"):
        estimate(cfg, gpus=8, gpu="v100", questions=12_000)


def test_dryrun_private_submitit_use_is_pinned_and_fails_in_one_line():
    """r1zero.run.dryrun renders the sbatch script through private submitit members: the installed submitit is in the
    range pyproject.toml pins, and one without them gives a one-line ConfigError instead of an AttributeError."""
    import re
    import types
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet

    from r1zero.run.dryrun import _submission_text
    from r1zero.schema.errors import ConfigError

    pins = dict(re.findall(r'"(submitit|hydra-submitit-launcher)([^"]+)"', (REPO / "pyproject.toml").read_text()))
    assert set(pins) == {"submitit", "hydra-submitit-launcher"} and all("<" in p for p in pins.values()), pins
    for dist, spec in pins.items():
        assert version(dist) in SpecifierSet(spec), (dist, version(dist), spec)
    moved = types.SimpleNamespace(_executor=types.SimpleNamespace(parameters={}))
    with pytest.raises(ConfigError, match=r"^r1zero.run.dryrun: submitit .* valid: submitit>=1.5,<1.6"):
        _submission_text(moved, 3)


def test_a_task_run_as_main_reaches_a_slurm_job_as_a_reference(tmp_path):
    """`python -m r1zero.train` defines ``run`` in ``__main__``; submitit's cloudpickle would send it, and the recipe's
    NamedTuple classes, by value, which cloudpickle 2.1 could not rebuild on the node (CI, exit 2). hydra_entry sends the
    same function imported from its module instead: unpickled, it is that module's function."""
    (tmp_path / "job_mod.py").write_text(
        "import sys\nfrom typing import NamedTuple\nimport cloudpickle\nfrom r1zero.run.cli import _importable\n\n"
        "class Round(NamedTuple):\n    a: int\n\ndef run(cfg):\n    return Round(cfg)\n\n"
        "if __name__ == '__main__':\n    sys.stdout.buffer.write(cloudpickle.dumps(_importable(run)))\n")
    proc = subprocess.run([sys.executable, "-m", "job_mod"], cwd=tmp_path, capture_output=True, check=True)
    sys.path.insert(0, str(tmp_path))
    try:
        task = pickle.loads(proc.stdout)
        assert task.__module__ == "job_mod"
        assert task is sys.modules["job_mod"].run
        assert task(3) == (3,)
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("job_mod", None)
