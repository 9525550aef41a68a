"""One live run per run directory (r1zero.run.runlock): a second process into a directory another live run holds is
refused in one line naming the holder, before Hydra or the run writes anything there; the OS frees the lock when
the holder dies, even by SIGKILL, so a rerun takes the directory back at once. Also for a multirun launched twice
into one sweep dir, and for ``python -m r1zero.evaluate`` writing into a run directory."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, compose, logged_steps

from r1zero.run.runlock import LOCK_NAME, hold_run_dir
from r1zero.schema.errors import USER_ERRORS, RunDirInUseError

TOY = ["model=tiny", "data=arith", "data.max_questions=8", "train.total_steps=2", "train.prompts_per_rollout=2",
       "sampling.group_size=2", "sampling.max_new_tokens=4", "train.mini_batch_size=null", "train.save_every=0",
       "logger.progress_bar=false", "reward.num_workers=1"]
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def _start(code: str, ready: str, tmp_path: Path) -> subprocess.Popen:
    """A Python process running ``code`` (tests/ importable), once it has printed ``ready``."""
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(REPO / "tests"), *sys.path])}
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    # a child that neither prints nor exits fails the test instead of blocking it (a hang guard, not a timing check)
    if not select.select([proc.stdout], [], [], 120)[0]:
        proc.kill()
        pytest.fail(f"no {ready!r} within 120 s:\n{proc.communicate(timeout=30)[1][-3000:]}")
    line = proc.stdout.readline()
    assert line.strip() == ready, proc.communicate(timeout=60)[1][-3000:]
    return proc


def _kill9(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _try_flock(path: Path) -> bool:
    """Whether another open file description can lock ``path`` now (what a second process would get)."""
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_held_run_dir_is_refused_naming_the_holder_until_it_dies(tmp_path):
    run_dir = tmp_path / "run"
    holder = _start(f"from r1zero.run.runlock import hold_run_dir; hold_run_dir({str(run_dir)!r}); print('held', "
                    f"flush=True); import time; time.sleep(300)", "held", tmp_path)
    try:
        with pytest.raises(RunDirInUseError) as info:
            hold_run_dir(run_dir, "hydra.run.dir")
        msg = str(info.value)
        assert isinstance(info.value, USER_ERRORS) and "\n" not in msg
        assert msg.startswith(f"hydra.run.dir={run_dir}: in use by another run (pid {holder.pid} on host "
                              f"{socket.gethostname()}, started 20")
        assert "valid: wait for it to end (or stop it), then the same command continues the run" in msg
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == holder.pid  # the refusal kept the record
    finally:
        _kill9(holder)
    with hold_run_dir(run_dir) as lock:  # kill -9 freed it: no stale lock to clear
        assert lock.run_dir == run_dir.resolve()
        assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()


def test_the_lock_is_reentrant_in_one_process_and_freed_with_its_last_hold(tmp_path):
    outer = hold_run_dir(tmp_path)
    inner = hold_run_dir(tmp_path / "sub" / "..")  # the same directory, spelled differently: the same hold
    assert not _try_flock(tmp_path / LOCK_NAME)
    inner.release()
    inner.release()  # once per hold
    assert not _try_flock(tmp_path / LOCK_NAME)
    outer.release()
    assert _try_flock(tmp_path / LOCK_NAME)
    assert hold_run_dir(tmp_path, enabled=False).run_dir is None  # paths.lock_run_dir=false: no lock
    assert _try_flock(tmp_path / LOCK_NAME)


def test_a_filesystem_without_locks_is_one_line_saying_so(tmp_path, monkeypatch):
    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(RunDirInUseError, match=rf"^paths.run_dir={tmp_path}: its filesystem cannot lock .lock "
                                               r"\(No locks available\).*valid: a run directory on a filesystem with "
                                               r"file locks .*or paths.lock_run_dir=false"):
        hold_run_dir(tmp_path)


@pytest.mark.slow
def test_a_kill_9_between_the_lock_and_the_first_write_leaves_the_dir_to_its_rerun(tmp_path):
    """The recipe is killed right after it took the lock; while it lived a second recipe was refused before any
    model loaded, and afterwards the same run takes the directory at once and runs every step once."""
    import r1zero.train as train_mod

    run_dir = tmp_path / "run"
    child = _start(
        "import sys, time\n"
        "import r1zero.train as t\n"
        "from conftest import compose\n"
        "def first_write(run_dir):  # what setup does right after taking the lock\n"
        "    print('locked', flush=True); time.sleep(300)\n"
        "t.saved_config = first_write\n"
        f"t.run(compose({TOY!r}, run_dir={str(run_dir)!r}))\n", "locked", tmp_path)
    try:
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # locked, nothing written yet
        recipe = train_mod.R1ZeroRecipe(compose(TOY, run_dir=run_dir))
        with pytest.raises(RunDirInUseError, match=rf"^paths.run_dir={run_dir}: in use by another run \(pid "
                                                   rf"{child.pid} "):
            recipe.setup()
        assert not hasattr(recipe, "model") and not hasattr(recipe, "grader")
        recipe.cleanup()
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME]  # the refused run wrote nothing
    finally:
        _kill9(child)
    t0 = time.monotonic()
    train_mod.run(compose(TOY, run_dir=run_dir))
    assert logged_steps(run_dir) == [1, 2]
    assert json.loads((run_dir / LOCK_NAME).read_text())["pid"] == os.getpid()
    assert time.monotonic() - t0 < 120
    assert _try_flock(run_dir / LOCK_NAME)  # released when the run ended


def _train(*args: str, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "r1zero.train", *args], cwd=cwd, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)


def _wait_for_steps(proc: subprocess.Popen, run_dir: Path, n: int = 1, wait_s: float = 240) -> None:
    deadline = time.monotonic() + wait_s
    while len(logged_steps(run_dir)) < n:
        assert proc.poll() is None, f"the run ended first:\n{proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"no step logged within {wait_s} s"
        time.sleep(0.05)


def _refusal(returncode: int, stderr: str, needle: str) -> str:
    """The one ``r1zero: error:`` line of a run that exited with status 2, checked to contain ``needle``."""
    assert returncode == 2, stderr[-3000:]
    errors = [line for line in stderr.splitlines() if line.startswith("r1zero: error:")]
    assert len(errors) == 1 and needle in errors[0] and "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


@pytest.mark.slow
def test_a_second_run_into_a_live_run_dir_is_refused_at_once_and_the_first_finishes(tmp_path):
    """The issue's case: the same command twice into one hydra.run.dir, the second once the first logged a step."""
    run_dir = tmp_path / "run"
    cmd = ["experiment=toy", "train.total_steps=80", f"hydra.run.dir={run_dir}"]
    first = _train(*cmd, cwd=tmp_path)
    try:
        _wait_for_steps(first, run_dir)
        hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        t0 = time.monotonic()
        # one more override, so that anything the second run's Hydra wrote into .hydra/ would show
        second = subprocess.run([sys.executable, "-m", "r1zero.train", *cmd, "logger.samples_per_step=3"],
                                check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
                                stdin=subprocess.DEVNULL)
        refused_s = time.monotonic() - t0
        assert first.poll() is None, "the first run ended before the second one was refused"
        line = _refusal(second.returncode, second.stderr, f"hydra.run.dir={run_dir}: in use by another run (pid {first.pid} on host ")
        assert "r1zero: run directory" not in second.stdout  # it never started
        assert refused_s < 60, refused_s  # the refusal comes before the model loads (seconds; CI machines are slow)
        assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files  # Hydra wrote nothing
        out, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 0, err[-3000:]
    assert f"r1zero: done, 80 steps; metrics in {run_dir}/metrics.jsonl" in out
    assert logged_steps(run_dir) == list(range(1, 81))  # every step exactly once
    assert [json.loads(r)["step"] for r in (run_dir / "samples.jsonl").read_text().splitlines()].count(80) == 4
    print(f"second run refused in {refused_s:.1f} s: {line}")


@pytest.mark.slow
def test_a_multirun_launched_twice_into_one_sweep_dir_refuses_per_run_dir(tmp_path):
    """Hydra's basic launcher runs the jobs one after the other: the second sweep's first job whose directory the
    first sweep holds refuses in one line, which stops that sweep (a job the first already finished is nothing to
    do); the first sweep finishes both jobs with every step once."""
    sweep = tmp_path / "sweep"
    cmd = ["-m", "experiment=toy", "seed=1,2", "train.total_steps=40", f"hydra.sweep.dir={sweep}"]
    first = _train(*cmd, cwd=tmp_path)
    try:
        _wait_for_steps(first, sweep / "0")
        second = subprocess.run([sys.executable, "-m", "r1zero.train", *cmd], check=False, cwd=tmp_path, env=ENV,
                                capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
        assert first.poll() is None, "the first sweep ended before the second one was refused"
        line = _refusal(second.returncode, second.stderr, f"paths.run_dir={sweep}/")
        assert f": in use by another run (pid {first.pid} on host " in line
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait(timeout=30)
    assert first.returncode == 0, err[-3000:]
    for job in ("0", "1"):
        assert logged_steps(sweep / job) == list(range(1, 41)), job


@pytest.mark.slow
def test_evaluate_into_a_run_dir_respects_its_lock_and_keeps_its_config(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("train:\n  total_steps: 3\n")  # a training run's directory
    holder = _start(f"from r1zero.run.runlock import hold_run_dir; hold_run_dir({str(run_dir)!r}); print('held', "
                    f"flush=True); import time; time.sleep(300)", "held", tmp_path)
    args = [sys.executable, "-m", "r1zero.evaluate", "model=tiny", "eval=arith", "eval.max_samples=2",
            "eval.max_new_tokens=4", "reward.num_workers=1", f"hydra.run.dir={run_dir}"]
    try:
        out = subprocess.run(args, check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120,
                             stdin=subprocess.DEVNULL)
        _refusal(out.returncode, out.stderr, f"hydra.run.dir={run_dir}: in use by another run (pid {holder.pid} ")
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_NAME, "config.yaml"]
    finally:
        _kill9(holder)
    out = subprocess.run(args, check=False, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=180,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run_dir / "eval.json").is_file() and (run_dir / "eval_config.yaml").is_file()
    assert (run_dir / "config.yaml").read_text() == "train:\n  total_steps: 3\n"  # resume=auto still compares to it
