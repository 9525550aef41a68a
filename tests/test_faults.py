"""Faults outside the config: bad input files, reused run directories, unwritable or full output directories, wandb
without a key or network, and a second signal each end in one clear line, losing nothing already written."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import compose, logged_steps, resume_from_checkpoint, run_and_signal

from r1zero.data.questions import read_rows
from r1zero.schema.errors import (
    USER_ERRORS,
    ConfigError,
    DataUnavailableError,
    OutputUnwritableError,
    TrackingUnavailableError,
)


@pytest.mark.parametrize("content,needle", [
    (b'{"problem": "1+1", "answer": "2"}\n{"problem": "2+2", "ans', "line 2: not valid JSON"),
    (b'{"problem": "1+1", "answer": "2"}\n[1, 2]\n', "line 2: a JSON list, not an object"),
    (b'{"problem": "1+1", "answer": "2"}\n\xff\xfe\x00binary\n', "line 2: not UTF-8 text"),
], ids=["truncated", "not-an-object", "binary"])
def test_malformed_jsonl_names_the_file_and_line(tmp_path, content, needle):
    path = tmp_path / "set.jsonl"
    path.write_bytes(content)
    with pytest.raises(DataUnavailableError, match=needle) as info:
        read_rows(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_json_without_the_split_and_corrupt_parquet_are_one_line(tmp_path):
    (tmp_path / "set.json").write_text('{"test": [{"problem": "1+1", "answer": "2"}]}')
    with pytest.raises(DataUnavailableError, match=r"split 'train' not found; available splits: \['test'\]"):
        read_rows(str(tmp_path / "set.json"), "train")
    (tmp_path / "set.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataUnavailableError, match="set.parquet: not a readable parquet file"):
        read_rows(str(tmp_path / "set.parquet"))


TOY = ["model=tiny", "data=arith", "data.max_questions=8", "train.total_steps=1", "train.prompts_per_rollout=2",
       "sampling.group_size=2", "sampling.max_new_tokens=4", "train.mini_batch_size=null", "train.save_every=0",
       "logger.progress_bar=false", "reward.num_workers=1"]


def test_a_run_directory_holds_one_run(tmp_path, capsys):
    import r1zero.train as train_mod

    train_mod.run(compose(TOY, run_dir=tmp_path))
    metrics = (tmp_path / "metrics.jsonl").read_text()
    # the same command again: the run is finished, nothing is retrained
    train_mod.run(compose(TOY, run_dir=tmp_path))
    assert "already holds a finished run of 1 steps" in capsys.readouterr().out
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    # another experiment in the same directory: refused, naming the changed keys, nothing lost
    with pytest.raises(ConfigError, match=r"^resume: .*algo.name: 'drgrpo' -> 'grpo'.*model.hidden_size: 64 -> 32"):
        train_mod.run(compose(TOY + ["algo=grpo", "model.hidden_size=32"], run_dir=tmp_path))
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    assert "hidden_size: 64" in (tmp_path / "config.yaml").read_text()


def test_runs_started_together_get_their_own_directories():
    from conftest import CONF

    text = (CONF / "train.yaml").read_text()  # hydra.run.dir: microseconds and the seed
    assert "${now:%H-%M-%S-%f}" in text and "_s${seed}" in text


def test_eval_samples_of_steps_made_again_are_dropped_on_resume(tmp_path):
    from r1zero.run.rundir import truncate_after

    path = tmp_path / "eval_samples.jsonl"
    path.write_text('{"step": 0}\n{"step": 2}\n{"step": 4}\n{"step": null}\n{"step": 6, "que')
    assert truncate_after(path, 2) == 2  # step 4 and the half-written 6; null (a standalone evaluation) stays
    assert path.read_text() == '{"step": 0}\n{"step": 2}\n{"step": null}\n'


def test_eval_inputs_are_checked_at_start_up(tmp_path):
    import r1zero.train as train_mod

    with pytest.raises(DataUnavailableError, match="/nonexistent/suite"):
        train_mod.run(compose(TOY + ["eval.every=1", "eval.path=/nonexistent/suite", "eval.benchmarks=[aime]"],
                              run_dir=tmp_path))
    assert not (tmp_path / "metrics.jsonl").exists()  # no training step ran


# ------------------------------------------------------------------------------------------------------------
# Faults of the machine: where the run writes, the disk, wandb, signals. Each ends in one line, losing nothing.
def _train_cli(*args, cwd, env=None, timeout=180):
    return subprocess.run([sys.executable, "-m", "r1zero.train", *args], check=False, capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout, stdin=subprocess.DEVNULL)


def _one_error_line(out, needle: str) -> str:
    assert out.returncode == 2, out.stderr[-2000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("r1zero: error:")]
    assert len(errors) == 1 and needle in errors[0], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    return errors[0]


@pytest.mark.parametrize("case", ["file-in-the-way", "read-only-cwd", "sweep-dir", "chmod-555"])
def test_an_output_directory_that_cannot_be_written_is_one_line(tmp_path, case):
    """Refused before Hydra creates it (its mkdir would end in a traceback) and before any model loads."""
    (tmp_path / "afile").write_text("not a directory")
    cwd, args = tmp_path, ["model=tiny", "logger.progress_bar=false"]
    if case == "file-in-the-way":
        args += [f"hydra.run.dir={tmp_path}/afile/run"]
        needle = f"hydra.run.dir={tmp_path}/afile/run: {tmp_path}/afile is a file, not a directory; valid:"
    elif case == "read-only-cwd":  # nothing can be created in /proc, not even by root: outputs/... is refused
        cwd, needle = "/proc", "hydra.run.dir=outputs/"
    elif case == "sweep-dir":
        args += ["-m", "seed=1,2", f"hydra.sweep.dir={tmp_path}/afile/sweep"]
        needle = f"hydra.sweep.dir={tmp_path}/afile/sweep: {tmp_path}/afile is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes in a mode-555 directory")
        (tmp_path / "ro").mkdir(mode=0o555)
        args += [f"hydra.run.dir={tmp_path}/ro/run"]
        needle = f"hydra.run.dir={tmp_path}/ro/run: cannot write in {tmp_path}/ro (Permission denied)"
    line = _one_error_line(_train_cli(*args, cwd=cwd), needle)
    if case == "read-only-cwd":
        assert "cannot write in /proc (the current directory)" in line and "set hydra.run.dir=<writable dir>" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "ro"][: 2 if case == "chmod-555" else 1]


def test_the_recipe_refuses_an_unwritable_run_dir_before_the_model_loads(tmp_path):
    import r1zero.train as train_mod

    (tmp_path / "afile").write_text("")
    recipe = train_mod.R1ZeroRecipe(compose(TOY, run_dir=tmp_path / "afile" / "run"))
    with pytest.raises(OutputUnwritableError, match=r"^paths.run_dir=.*/afile/run: .*/afile is a file"):
        recipe.setup()
    assert not hasattr(recipe, "model")


def test_a_full_disk_at_a_checkpoint_keeps_no_half_checkpoint_and_resume_continues(tmp_path, monkeypatch):
    """The step-2 save fails with ENOSPC: its temporary directory goes, step 1 stays the newest checkpoint, the
    metrics already written stay; leftovers of a killed save are removed when the run resumes."""
    import torch

    import r1zero.train as train_mod

    cfg = TOY + ["train.total_steps=3", "train.save_every=1", "train.keep_checkpoints=null"]
    real_save, calls = torch.save, []

    def full_disk_on_second(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            Path(path).write_bytes(b"half")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk_on_second)
    with pytest.raises(OutputUnwritableError) as info:
        train_mod.run(compose(cfg, run_dir=tmp_path))
    msg = str(info.value)
    assert isinstance(info.value, USER_ERRORS) and "\n" not in msg
    assert msg.startswith(f"{tmp_path}/checkpoints/step_000002: checkpoint not written (No space left on device)")
    assert "resume=auto continues from step_000001" in msg
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000001"]
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]

    monkeypatch.setattr(torch, "save", real_save)
    (tmp_path / "checkpoints" / ".tmp_step_000002").mkdir()  # a save killed by SIGKILL
    (tmp_path / "checkpoints" / ".tmp_step_000002" / "model.safetensors").write_bytes(b"half")
    (tmp_path / "checkpoints" / ".strategy_step_000002").mkdir()
    train_mod.run(compose(cfg + ["resume=auto"], run_dir=tmp_path))
    assert not list((tmp_path / "checkpoints").glob(".*"))
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]


class _Payload:
    """Unpickling this calls ``open(marker, "w")``: what a tampered trainer_state.pt could run instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_resume_refuses_a_trainer_state_that_would_run_code(tmp_path):
    """A checkpoint's trainer_state.pt is read with weights_only=True: a pickle that calls a function on load (a
    tampered file, or one someone else wrote) is refused in one line naming the file, and never runs."""
    import torch

    import r1zero.train as train_mod
    from r1zero.run.checkpoint import load_trainer_state

    first = train_mod.R1ZeroRecipe(compose(TOY + ["train.save_final=false"], run_dir=tmp_path / "run"))
    first.setup(); first.train(); ckpt = first.save_checkpoint(); first.cleanup()  # noqa: E702
    state = load_trainer_state(ckpt)  # what r1zero writes loads under weights_only=True
    marker = tmp_path / "pwned"
    torch.save({**state, "sampler": _Payload(marker)}, ckpt / "trainer_state.pt")

    with pytest.raises(ConfigError) as info:
        train_mod.run(compose(TOY + ["train.total_steps=2", f"resume={ckpt}"], run_dir=tmp_path / "other"))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{ckpt}/trainer_state.pt: refused, not a trainer state r1zero wrote")
    assert f"it pickles {open.__module__}.open; loading it could run code, so it was not loaded" in msg
    assert not marker.exists()
    (ckpt / "trainer_state.pt").write_bytes(b"not a torch file")  # foreign bytes: the same one line
    with pytest.raises(ConfigError, match=rf"^{ckpt}/trainer_state.pt: refused, not a trainer state r1zero wrote"):
        load_trainer_state(ckpt)

    torch.save(_Payload(marker), tmp_path / "live.pt")  # the payload is live: a full unpickle runs it
    torch.load(tmp_path / "live.pt", weights_only=False)
    assert marker.exists()


def test_a_full_disk_while_writing_metrics_is_one_line(tmp_path, monkeypatch):
    import r1zero.train as train_mod
    from r1zero.run.tracking import MetricsLogger

    real_log = MetricsLogger.log

    def full_at_step_2(self, step, metrics):
        if step == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.metrics_path))
        return real_log(self, step, metrics)

    monkeypatch.setattr(MetricsLogger, "log", full_at_step_2)
    with pytest.raises(OutputUnwritableError,
                       match=rf"^{tmp_path}/metrics.jsonl: cannot be written \(No space left on device\); what the run "
                             r"wrote before stays; valid: free space"):
        train_mod.run(compose(TOY + ["train.total_steps=2"], run_dir=tmp_path))
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1]


@pytest.fixture
def no_wandb_login(tmp_path, monkeypatch):
    """A HOME without ~/.netrc or wandb settings and no key in the environment."""
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "NETRC", "WANDB_BASE_URL", "WANDB_MODE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "home").mkdir()
    return tmp_path / "home"


def test_wandb_online_without_a_key_is_one_line_before_anything_loads(tmp_path, no_wandb_login):
    from r1zero.run.tracking import wandb_credentials

    assert wandb_credentials() is None
    out = _train_cli("model=tiny", "logger.wandb.mode=online", f"hydra.run.dir={tmp_path}/run",
                     "logger.progress_bar=false", cwd=tmp_path)
    line = _one_error_line(out, "logger.wandb.mode: online needs a wandb API key and none is set")
    assert "logger.wandb.mode=offline" in line and "wandb login" in line
    assert not (tmp_path / "run" / "metrics.jsonl").exists() and not (tmp_path / "run" / "config.yaml").exists()
    # where `wandb login` puts the key, or the environment: found, without going online
    (no_wandb_login / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wandb_credentials() == str(no_wandb_login / ".netrc")
    assert wandb_credentials({"WANDB_API_KEY": "k" * 40}) == "WANDB_API_KEY"


def test_wandb_online_without_network_is_one_line(tmp_path, no_wandb_login, monkeypatch):
    pytest.importorskip("wandb")
    from r1zero.run.tracking import MetricsLogger

    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: refused at once, no network
    monkeypatch.setenv("WANDB_INIT_TIMEOUT", "5")
    logger = MetricsLogger(tmp_path)
    try:
        with pytest.raises(TrackingUnavailableError,
                           match=r"^logger.wandb.mode: online: wandb.init failed \(.+\); valid: .*"
                                 r"logger.wandb.mode=offline") as info:
            logger.start_wandb({"mode": "online", "project": "r1zero", "dir": str(tmp_path), "id": "r1zerotest",
                                "resume": "allow"})
        assert "\n" not in str(info.value)
    finally:
        logger.close()


@pytest.mark.slow
def test_a_second_sigterm_stops_mid_step_saving_the_last_completed_step(tmp_path):
    """The first SIGTERM asks for a checkpoint at the step's end; a second one during that step stops at once,
    checkpointing the last completed step, and exits 143 in one line; resume=auto then finishes the run."""
    run_dir = tmp_path / "run"
    # Long steps (32 responses of up to 256 tokens) and signals 50 ms apart: both land in the step after the first
    # logged one on any machine (with 8 responses and 0.2 s apart, an AVX2 machine finished the step in between).
    cmd = [sys.executable, "-m", "r1zero.train", "experiment=toy", "train.total_steps=6", "eval.every=0",
           "sampling.max_new_tokens=256", "train.prompts_per_rollout=4", "sampling.group_size=8",
           "train.micro_batch_size=32", f"hydra.run.dir={run_dir}"]
    returncode, err = run_and_signal(cmd, tmp_path, run_dir, [signal.SIGTERM, signal.SIGTERM], after_steps=1,
                                     wait_s=300, poll_s=0.02, gap_s=0.05, timeout_s=120)
    assert returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    k = logged_steps(run_dir)[-1]
    assert logged_steps(run_dir) == list(range(1, k + 1)) and k < 6
    stops = [line for line in err.splitlines() if line.startswith("r1zero: stopped")]
    assert len(stops) == 1 and stops[0].startswith(f"r1zero: stopped by a second SIGTERM during step {k + 1}; "
                                                   f"saved checkpoint {run_dir}/checkpoints/step_{k:06d};"), err[-3000:]
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == [f"step_{k:06d}"]

    resume_from_checkpoint(cmd, tmp_path, run_dir, k, timeout_s=600)
    assert logged_steps(run_dir) == list(range(1, 7))
