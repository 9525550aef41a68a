"""Every bad value on the command line fails before anything loads, as one line naming the key and what is valid."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO

from r1zero.run.preflight import preflight
from r1zero.schema.errors import ConfigError

# (override, the key the message starts with, a piece of what it says is valid)
BAD = [
    ("train.lr=abc", "train.lr", "a number"),
    ("train.total_steps=abc", "train.total_steps", "an integer"),
    ("train.total_steps=0", "train.total_steps", ">= 1"),
    ("train.total_steps=-3", "train.total_steps", ">= 1"),
    ("sampling.group_size=four", "sampling.group_size", "an integer"),
    ("sampling.group_size=1", "sampling.group_size", ">= 2"),
    ("train.lr=-1", "train.lr", "> 0"),
    ("dtype=fp8", "dtype", "bfloat16"),
    ("device=tpu", "device", "cuda:N"),
    ("reward.num_workers=0", "reward.num_workers", ">= 1"),
    ("reward.timeout_s=0", "reward.timeout_s", "> 0"),
    ("logger.wandb.mode=bogus", "logger.wandb.mode", "disabled, offline, online"),
    ("sampling.temperature=-1", "sampling.temperature", "> 0"),
    ("sampling.top_p=0", "sampling.top_p", "(0.0, 1.0]"),
    ("sampling.top_p=1.5", "sampling.top_p", "(0.0, 1.0]"),
    ("train.save_every=-1", "train.save_every", ">= 0"),
    ("train.lrr=1", "train.lrr", "total_steps"),
    ("+train.lrr=1", "train.lrr", "total_steps"),
    ("model.hidden_size=32", "model.hidden_size", "gguf_file"),  # experiment=toy is tiny; see below for qwen15
    ("train.mini_batch_size=7", "train.mini_batch_size", "divisor"),
    ("train.betas=[0.9]", "train.betas", "[0.9, 0.95]"),
    ("algo.loss_agg=seq_sum", "algo.loss_agg", "seq_mean_token_sum_norm"),
    ("algo.adv_baseline=mean", "algo.adv_baseline", "leave_one_out"),
    ("algo.adv_scale=std", "algo.adv_scale", "batch_std"),
    ("algo.ratio=seq", "algo.ratio", "sequence"),
    ("algo.clip=ppo2", "algo.clip", "cispo"),
    ("algo.kl_estimator=k4", "algo.kl_estimator", "k3"),
    ("algo.kl_in=both", "algo.kl_in", "loss, reward"),
    ("algo.overlong=cut", "algo.overlong", "soft_penalty"),
    ("algo.zero_std=keep", "algo.zero_std", "zero, drop"),
    ("algo.dual_clip_c=1", "algo.dual_clip_c", "> 1.0"),
    ("algo.dynamic_sampling_max_rounds=0", "algo.dynamic_sampling_max_rounds", ">= 1"),
    ("algo.overlong_buffer_frac=0", "algo.overlong_buffer_frac", "(0.0, 1.0]"),
    ("algo.tis_cap=0", "algo.tis_cap", "> 0.0"),
    ("algo.tis_cap=2", "algo.tis_cap", "rollout.behaviour_logprobs=true"),  # with rollout.behaviour_logprobs=false
    # keys of earlier versions point at the key that replaced them
    ("algo.scale_by_std=true", "algo.scale_by_std", "algo.adv_scale (true: group_std, false: none)"),
    ("algo.adv_estimator=rloo", "algo.adv_estimator", "algo.adv_baseline (grpo: group_mean, rloo: leave_one_out)"),
    ("algo=ppo", "algo", "drgrpo"),
    ("rollout.sleep_level=3", "rollout.sleep_level", "1, 2"),
    ("eval.samples_per_question=4", "eval.samples_per_question", "temperature > 0"),
    ("eval.top_p=0", "eval.top_p", "(0.0, 1.0]"),
    ("experiment=toyy", "experiment", "laptop, laptop_duet, length_bias, quickstart, toy"),
    ("sweep=toyy", "sweep", "ablation, drgrpo_vs_grpo"),
    ("strategy.stage=4", "strategy.stage", "unknown key"),
    # the data room's names (r1zero.data.questions.check_names), the training set's and every benchmark's
    ("data.generator=arithh", "data.generator", "arith, countdown"),
    ("data.generator=arith", "data.generator", "data=arith (an option typed ArithDataConfig)"),
    ("data.answer_from=last", "data.answer_from", "last_boxed, all_boxed, after_hash, strip_unit, null"),
    ("eval.sources.gsm8k.answer_from=hash", "eval.sources.gsm8k.answer_from", "after_hash"),
    ("eval.sources.gsm8k.generator=arithh", "eval.sources.gsm8k.generator", "arith, countdown"),
    ("train.lr=[", "train.lr=[", "key=value"),
]
BAD_IDS = [b[0] for b in BAD]


def _extra(override):
    # the tiny model has size fields, a real one has not; rollout.sleep_level is a vLLM field
    return {"model.hidden_size=32": ["model=qwen15"], "rollout.sleep_level=3": ["rollout=vllm"],
            "algo.tis_cap=2": ["rollout=vllm", "rollout.behaviour_logprobs=false"], "strategy.stage=4": []}.get(override, [])


@pytest.mark.parametrize("override,key,valid", BAD, ids=BAD_IDS)
def test_bad_value_is_one_line_naming_the_key(override, key, valid):
    with pytest.raises(ConfigError) as info:
        preflight("train", ["experiment=toy", *_extra(override), override])
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{key}: ") and "; valid: " in message, message
    assert valid in message.split("; valid: ", 1)[1] or valid in message, message


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused():
    with pytest.raises(ConfigError, match=r"^device: 'cuda' but this machine has 0 visible CUDA GPU\(s\); valid: auto, cpu"):
        preflight("train", ["experiment=toy", "device=cuda"])


def test_good_command_lines_pass():
    preflight("train", ["experiment=toy"])
    preflight("train", ["experiment=quickstart", "rollout=vllm", "strategy=zero3"])
    preflight("train", ["-m", "sweep=ablation", "experiment=toy", "seed=1"])
    preflight("evaluate", ["model=tiny", "eval=embedded"])


def test_multirun_checks_every_job():
    with pytest.raises(ConfigError, match="^train.lr: "):
        preflight("train", ["-m", "experiment=toy", "train.lr=1e-6,-1"])


def test_evaluate_checks_too():
    with pytest.raises(ConfigError, match="^eval.samples_per_question: "):
        preflight("evaluate", ["model=tiny", "eval.samples_per_question=4"])


@pytest.mark.parametrize("args", [["train.lr=abc"], ["experiment=toyy"], ["train.lrr=1"]], ids=str)
def test_cli_prints_one_line_and_exits_2_before_loading(tmp_path, args):
    out = subprocess.run([sys.executable, "-m", "r1zero.train", "experiment=toy", *args,
                          f"hydra.run.dir={tmp_path}/run"], check=False, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("r1zero: error: "), out.stderr[-2000:]
    assert not (tmp_path / "run").exists()  # no run directory, nothing loaded


def _schema_defaults(schema) -> dict:
    import dataclasses

    out = {}
    for f in dataclasses.fields(schema):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def test_every_default_lives_once_in_its_schema():
    """A group option that names only its schema sets no field to the schema's own default (``name`` aside)."""
    from conftest import CONF
    from omegaconf import OmegaConf

    from r1zero.schema import SCHEMAS

    by_name = {name: schema for (_, name), schema in SCHEMAS.items()}
    repeated = []
    for path in sorted(CONF.glob("*/*.yaml")):
        node = OmegaConf.load(path)
        entries = [e for e in (node.get("defaults") or []) if isinstance(e, str) and e != "_self_"]
        if len(entries) != 1 or entries[0] not in by_name:
            continue  # no schema, or it also inherits another option (whose values it overrides)
        defaults = _schema_defaults(by_name[entries[0]])
        for key in node:
            if key not in ("defaults", "name") and key in defaults:
                value = OmegaConf.to_container(node, resolve=False)[key]
                if value == defaults[key]:
                    repeated.append(f"{path.relative_to(CONF)}: {key}")
    assert not repeated, "defaults repeated in YAML: " + ", ".join(repeated)


def test_composed_defaults_are_the_schemas():
    from conftest import compose

    cfg = compose([])
    assert cfg.rollout.name == "hf" and compose(["rollout=vllm"]).rollout.enable_sleep_mode is True
    assert compose(["strategy=zero3"]).strategy.stage == 3 and compose(["strategy=zero2"]).strategy.stage == 2
    assert cfg.train.total_steps == 200 and cfg.reward.num_workers == 2 and cfg.seed == 42


def test_an_engine_schema_takes_a_plain_dict_without_its_name():
    """The vLLM engine builds its config with ``typed(VLLMRolloutConfig, {...})`` and no ``name``: the result is
    that schema (its fields accepted); a plain dict with a ``name`` gets the schema that engine registered."""
    from r1zero.rollout import engine_config
    from r1zero.schema import typed
    from r1zero.schema.rollout import HFRolloutConfig, VLLMRolloutConfig

    cfg = typed(VLLMRolloutConfig, {"dtype": "float32", "kv_cache_memory_gb": 1, "seed": 0})
    assert type(cfg) is VLLMRolloutConfig and cfg.dtype == "float32" and cfg.kv_cache_memory_gb == 1.0
    assert type(engine_config({"name": "vllm", "dtype": "float32"})) is VLLMRolloutConfig
    assert type(engine_config({"name": "hf"})) is HFRolloutConfig
    with pytest.raises(ConfigError, match="rollout.name: 'beam' is not a registered rollout engine; valid: hf, vllm"):
        engine_config({"name": "beam"})
    with pytest.raises(ConfigError, match="dtype: unknown key .*HFRolloutConfig"):
        typed(HFRolloutConfig, {"dtype": "float32"})
