"""Every option of every config group composes, and the defaults are the paper's (Table 6)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF, REPO, compose
from omegaconf import OmegaConf

GROUPS = ["model", "template", "algo", "data", "rollout", "eval", "logger", "strategy", "experiment", "paths"]


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


ALL_OPTIONS = [(g, o) for g in GROUPS for o in options(g)]


def test_every_group_has_options():
    assert {"qwen15", "qwen_math15", "qwen_math7", "llama32_3b", "smollm2_135m", "tiny"} <= set(options("model"))
    assert {"r1", "qwen_math", "no", "chatml_fewshot"} <= set(options("template"))
    assert {"grpo", "drgrpo", "grpo_no_len_norm", "grpo_no_std_norm", "token_mean"} <= set(options("algo"))
    assert {"math12k", "gsm8k", "asdiv", "math_lvl3to5", "orz57k", "arith"} <= set(options("data"))
    assert {"default", "embedded", "arith"} <= set(options("eval"))
    assert {"quickstart", "toy", "laptop"} <= set(options("experiment"))


@pytest.mark.parametrize("group,option", ALL_OPTIONS, ids=[f"{g}={o}" for g, o in ALL_OPTIONS])
def test_option_composes_and_resolves(group, option):
    cfg = compose([f"{group}={option}"])
    # Resolving catches broken interpolations (paths, template references) that composing alone does not.
    container = OmegaConf.to_container(cfg, resolve=True)
    if group not in ("experiment", "eval", "logger", "paths"):
        assert container[group]["name"] == option


def test_every_field_of_every_group_file_is_commented():
    missing = []
    for group in ("model", "template", "algo", "data", "reward", "rollout", "logger", "eval", "strategy", "paths",
                  "experiment"):
        for path in (CONF / group).glob("*.yaml"):
            for line in path.read_text().splitlines():
                stripped = line.strip()
                if ":" in stripped and not stripped.startswith(("#", "-")) and not stripped.endswith(":"):
                    if "#" not in line and not stripped.startswith(("name:", "prompt:")):
                        missing.append(f"{path.relative_to(REPO)}: {stripped}")
    assert not missing, "fields without a comment:\n" + "\n".join(missing)


def test_paper_defaults_table6():
    cfg = compose(["model=qwen15", "template=r1", "algo=drgrpo"])
    assert cfg.model.path == "Qwen/Qwen2.5-1.5B"
    assert cfg.sampling.group_size == 8
    assert cfg.sampling.temperature == 1.0
    assert cfg.sampling.top_p == 1.0
    assert cfg.sampling.max_new_tokens == 3000
    assert cfg.train.prompts_per_rollout == 128
    # --train_batch_size 128 of 128 x 8 = 1024 responses: 8 optimizer steps per rollout (rows shuffled).
    assert cfg.train.mini_batch_size == 128
    assert cfg.train.prompt_max_length == 1024  # --prompt_max_length 1024
    assert cfg.template.answer_format == "answer_tag"  # the paper's strict "</think> <answer>"
    assert cfg.eval.zero_truncated is False  # evaluate_model.py grades truncated answers
    assert cfg.reward.timeout_s == 1.0  # train_zero_math.py MATHOracle: res.get(timeout=1)
    # evaluate_model.py sets no limit on an answer's whole check (only 1 s per math-verify call, as the worker
    # does); r1zero bounds it at 30 s so an answer sympy never finishes cannot hang an evaluation
    assert compose(config_name="evaluate").reward.timeout_s == 30.0
    assert cfg.reward.max_answer_chars is None  # the paper checks answers of any length
    assert cfg.reward.verifier == "fast"  # train_zero_math.py: verifier_version defaults to "fast"
    assert compose(config_name="evaluate").reward.verifier == "math_verify"  # evaluate_model.py: fast=False
    assert cfg.train.ppo_epochs == 1
    assert cfg.train.lr == 1e-6
    assert list(cfg.train.betas) == [0.9, 0.95]
    assert cfg.train.weight_decay == 0.0
    assert cfg.train.max_grad_norm == 1.0
    assert cfg.algo.clip_eps == 0.2
    assert cfg.algo.kl_coef == 0.0
    assert (cfg.algo.adv_baseline, cfg.algo.adv_scale) == ("group_mean", "none")
    assert cfg.algo.loss_agg == "seq_mean_token_sum_norm"
    assert list(cfg.template.stop) == ["</answer>"]


def test_run_length_in_prompt_epochs_counts_as_oat():
    """oat runs --num_prompt_epoch passes of floor(questions / rollout_batch_size) rollouts (drop_last loaders), one
    update each; train.total_steps, when set, caps them; a pass smaller than one rollout is one line."""
    from r1zero.run.config import run_config
    from r1zero.schema import TrainConfig
    from r1zero.schema.errors import ConfigError

    assert TrainConfig().prompt_epochs is None and TrainConfig().run_steps(12_000) == 200  # the default: steps
    assert TrainConfig(prompt_epochs=20, total_steps=None).run_steps(12_000) == 20 * 93  # 12000 // 128 = 93
    assert TrainConfig(prompt_epochs=20, total_steps=None).run_steps(12_095) == 20 * 94
    assert TrainConfig(prompt_epochs=20, total_steps=500).run_steps(12_000) == 500  # capped
    assert TrainConfig(prompt_epochs=2, total_steps=None, prompts_per_rollout=2).run_steps(5) == 4
    with pytest.raises(ConfigError, match=r"^train.prompt_epochs: a pass over the 100 questions holds no rollout"):
        TrainConfig(prompt_epochs=1, total_steps=None).run_steps(100)
    with pytest.raises(ConfigError, match=r"^train.total_steps: is null and so is train.prompt_epochs"):
        run_config(compose(["train.total_steps=null"]))
    with pytest.raises(ConfigError, match=r"^train.prompt_epochs: 0 is below 1"):
        TrainConfig(prompt_epochs=0)


# The axes each preset sets (conf/algo/*.yaml); every other axis keeps the schema's default (Dr. GRPO's).
PRESET_AXES = {
    "grpo": {"adv_scale": "group_std", "loss_agg": "seq_mean_token_mean"},
    "drgrpo": {},
    "grpo_no_len_norm": {"adv_scale": "group_std"},
    "grpo_no_std_norm": {"loss_agg": "seq_mean_token_mean"},
    "token_mean": {"loss_agg": "token_mean"},
    "rloo": {"adv_baseline": "leave_one_out"},
    "dapo": {"adv_scale": "group_std", "loss_agg": "token_mean", "clip_eps_high": 0.28, "dynamic_sampling": True,
             "overlong": "soft_penalty"},
    "gspo": {"ratio": "sequence", "adv_scale": "group_std", "loss_agg": "seq_mean_token_mean", "clip_eps": 3e-4,
             "clip_eps_high": 4e-4},
    "cispo": {"clip": "cispo", "adv_scale": "group_std", "loss_agg": "token_mean", "clip_eps": 1.0,
              "clip_eps_high": 4.0},
    "reinforce_pp": {"adv_baseline": "batch_mean", "adv_scale": "batch_std", "loss_agg": "token_mean",
                     "kl_coef": 0.01, "kl_estimator": "k1", "kl_in": "reward"},
    "lite_ppo": {"adv_scale": "batch_std", "loss_agg": "token_mean"},
}


def test_every_preset_is_in_the_axes_table():
    assert set(PRESET_AXES) == set(options("algo"))


@pytest.mark.parametrize("algo", sorted(PRESET_AXES))
def test_algo_presets_only_choose_axes(algo):
    import dataclasses

    from r1zero.schema import AlgoConfig

    cfg = compose([f"algo={algo}"])
    defaults = {f.name: f.default for f in dataclasses.fields(AlgoConfig)}
    for key, default in defaults.items():
        if key != "name":
            assert cfg.algo[key] == PRESET_AXES[algo].get(key, default), (algo, key)


def test_experiment_overrides_the_defaults():
    cfg = compose(["experiment=quickstart"])
    assert (cfg.model.name, cfg.data.name, cfg.template.name, cfg.algo.name) == (
        "smollm2_135m", "arith", "chatml_fewshot", "drgrpo")
    assert cfg.eval.benchmarks == ["arith"] and cfg.eval.sources.arith.split == "test" and cfg.data.split == "train"
    assert cfg.train.total_steps == 16 and cfg.sampling.max_new_tokens == 64 and cfg.sampling.group_size == 6
    # command-line overrides still win over the experiment
    assert compose(["experiment=quickstart", "train.total_steps=3"]).train.total_steps == 3


def test_templates_are_the_papers_strings():
    r1 = compose(["template=r1"]).template.prompt
    assert r1.startswith("A conversation between User and Assistant. The User asks a question, and the Assistant "
                         "solves it. The Assistant first thinks about the reasoning process in the mind and then "
                         "provides the User with the answer. The reasoning process is enclosed within <think> "
                         "</think> and answer is enclosed within <answer> </answer> tags, respectively, i.e., "
                         "<think> reasoning process here </think> <answer> answer here </answer>.\nUser: ")
    assert r1.endswith("{question}\nAssistant: <think>")
    qm = compose(["template=qwen_math"]).template
    assert qm.prompt == ("<|im_start|>system\nPlease reason step by step, and put your final answer within "
                         "\\boxed{}.<|im_end|>\n<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n")
    assert list(qm.stop) == []
    no = compose(["template=no"]).template
    assert no.name == "no" and no.prompt == "{question}" and list(no.stop) == []


def test_cli_prints_paper_recipe():
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.train", "model=qwen15", "template=r1", "algo=drgrpo", "--cfg", "job"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    cfg = OmegaConf.create(out.stdout)
    assert cfg.model.path == "Qwen/Qwen2.5-1.5B" and cfg.algo.name == "drgrpo" and cfg.template.name == "r1"
    assert cfg.sampling.max_new_tokens == 3000 and cfg.train.prompts_per_rollout == 128


def test_unknown_option_lists_choices():
    out = subprocess.run([sys.executable, "-m", "r1zero.train", "algo=ppo_typo", "--cfg", "job"],
                         capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode != 0
    assert "Could not find 'algo/ppo_typo'" in out.stderr
    for choice in ("drgrpo", "grpo", "grpo_no_len_norm", "grpo_no_std_norm"):
        assert choice in out.stderr
