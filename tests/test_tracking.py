"""wandb done properly (r1zero.run.tracking): one group per multirun, config tags, the manifest as config, the same
run after a requeue, and offline runs that `wandb sync` picks up. Offline mode only: nothing leaves the machine."""

from __future__ import annotations

import glob
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from r1zero.run.tracking import RUN_ID_FILE, MetricsLogger, check_wandb_mode, wandb_settings
from r1zero.schema.errors import ConfigError

CONFIG = {"algo": {"name": "grpo"}, "template": {"name": "r1"}, "data": {"name": "math12k"},
          "model": {"name": "qwen_math15"}, "seed": 2,
          "logger": {"wandb": {"mode": "offline", "project": "r1zero", "entity": None, "group": None, "name": None,
                               "tags": ["mine", "algo:grpo"]}}}


@pytest.fixture
def quiet_wandb(monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # the config's mode, not the environment's


def test_settings_group_tags_name_and_manifest(tmp_path):
    sweep_dir = "multirun/ablation/2026-01-01_12-00-00"
    a = wandb_settings(CONFIG, tmp_path / "0", sweep="ablation", sweep_dir=sweep_dir, experiment="laptop",
                       manifest={"seed": 2, "wandb_run_id": None})
    b = wandb_settings({**CONFIG, "seed": 3}, tmp_path / "1", sweep="ablation", sweep_dir=sweep_dir)
    assert a["group"] == b["group"] == "ablation:multirun/ablation/2026-01-01_12-00-00"  # one group per sweep
    assert a["tags"] == ["algo:grpo", "template:r1", "data:math12k", "model:qwen_math15", "seed:2", "sweep:ablation",
                         "experiment:laptop", "mine"]  # the duplicate algo:grpo is dropped
    assert a["name"] == "qwen_math15-r1-grpo-math12k-s2" and b["name"].endswith("-s3")
    assert (a["mode"], a["resume"], a["dir"]) == ("offline", "allow", str(tmp_path / "0"))
    # the id is drawn once, stored in the run dir, and is what every later segment (a requeue) uses
    assert a["id"] == (tmp_path / "0" / RUN_ID_FILE).read_text().strip() != b["id"]
    assert wandb_settings(CONFIG, tmp_path / "0", manifest={"wandb_run_id": "other"})["id"] == a["id"]
    # a run dir from before the id file keeps the id its manifest recorded
    assert wandb_settings(CONFIG, tmp_path / "old", manifest={"wandb_run_id": "0ld1d"})["id"] == "0ld1d"
    assert (tmp_path / "old" / RUN_ID_FILE).read_text() == "0ld1d\n"
    assert a["config"]["manifest"] == {"seed": 2, "wandb_run_id": a["id"]} and a["config"]["algo"] == {"name": "grpo"}
    # a single run has no default group; a multirun without sweep= is "multirun:<dir>"; an explicit group wins
    assert wandb_settings(CONFIG, tmp_path / "2")["group"] is None
    assert wandb_settings(CONFIG, tmp_path / "2", sweep_dir="multirun/x")["group"] == "multirun:multirun/x"
    own = {**CONFIG, "logger": {"wandb": {**CONFIG["logger"]["wandb"], "group": "mine"}}}
    assert wandb_settings(own, tmp_path / "2", sweep="ablation", sweep_dir="d")["group"] == "mine"


def test_bad_mode_lists_the_valid_ones(tmp_path):
    assert check_wandb_mode(None) == "disabled" and check_wandb_mode("online") == "online"
    with pytest.raises(ConfigError, match=r"^logger.wandb.mode='bogus' is not one of disabled, offline, online$"):
        wandb_settings({**CONFIG, "logger": {"wandb": {"mode": "bogus"}}}, tmp_path)
    assert not (tmp_path / RUN_ID_FILE).exists()  # nothing written for a rejected config
    out = subprocess.run([sys.executable, "-m", "r1zero.train", "model=tiny", "logger.wandb.mode=bogus",
                          f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("r1zero: error:")]
    # the preflight (r1zero.run.preflight) rejects it before the run starts, in the schema's words
    assert errors == ["r1zero: error: logger.wandb.mode: 'bogus' is not a valid choice; valid: disabled, offline, online"]


def _segment(run_dir: Path, steps, resume_step=None) -> str:
    logger = MetricsLogger(run_dir, resume_step=resume_step)
    settings = wandb_settings(CONFIG, run_dir, sweep="ablation", sweep_dir="multirun/ablation/t",
                              manifest={"wall_s": 0.0})
    run_id = logger.start_wandb(settings)
    assert (logger.wandb.group, list(logger.wandb.tags)[:2]) == ("ablation:multirun/ablation/t", ["algo:grpo", "template:r1"])
    assert logger.wandb.config["manifest"]["wandb_run_id"] == run_id
    for step in steps:
        logger.log(step, {"rollout/reward_mean": 0.5})
    logger.update_config({"manifest": {"wall_s": 12.5, "wandb_run_id": run_id}})
    logger.close()
    return run_id


def test_offline_run_resumes_the_same_wandb_run_and_syncs_later(tmp_path, quiet_wandb):
    first = _segment(tmp_path, [1, 2])
    second = _segment(tmp_path, [3], resume_step=2)  # the requeued job, same run dir
    assert first == second
    logs = sorted(glob.glob(str(tmp_path / "wandb" / "offline-run-*" / f"run-{first}.wandb")))
    assert len(logs) == 2  # one per segment, both of the one run
    data = Path(logs[0]).read_bytes()
    assert b"ablation:multirun/ablation/t" in data and b"seed:2" in data and b"wall_s" in data
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    # The README's sync command, as a dry run (no network): it finds both segments.
    sync = subprocess.run(f"wandb sync --dry-run {tmp_path}/wandb/offline-run-*", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert sync.returncode == 0, sync.stderr[-2000:]
    assert "Would sync 2 run(s)" in sync.stdout + sync.stderr
    assert (sync.stdout + sync.stderr).count(f"run-{first}.wandb") == 2


@pytest.mark.slow  # two toy training jobs in a subprocess multirun (~16 s on 2 idle cores)
def test_multirun_jobs_share_a_group_and_the_manifest_records_the_id(tmp_path, quiet_wandb):
    sweep_dir = tmp_path / "sweep"
    out = subprocess.run(
        [sys.executable, "-m", "r1zero.train", "-m", "experiment=toy", "seed=1,2", "logger.wandb.mode=offline",
         "train.total_steps=1", "eval.every=0", "eval.at_end=false", "train.save_final=false",
         f"hydra.sweep.dir={sweep_dir}"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for job, seed in (("0", 1), ("1", 2)):
        run_id = (sweep_dir / job / RUN_ID_FILE).read_text().strip()
        assert json.loads((sweep_dir / job / "manifest.json").read_text())["wandb_run_id"] == run_id
        (log,) = glob.glob(str(sweep_dir / job / "wandb" / "offline-run-*" / f"run-{run_id}.wandb"))
        data = Path(log).read_bytes()
        assert f"multirun:{sweep_dir}".encode() in data and f"seed:{seed}".encode() in data
        assert b"experiment:toy" in data and b"gpu_hours" in data  # tags and the manifest as config
