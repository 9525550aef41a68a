"""Multirun through hydra-submitit-launcher on a real (loopback, one-node) SLURM cluster.

    python -m pytest tests/slurm -m slurm -q -s      # as root; first run installs the Debian packages

The cluster comes from scripts/slurm/up.sh (fixture ``slurm_cluster`` below, via slurm_testcluster.py); the
launcher preset is conf/hydra/launcher/slurm_local.yaml. Every wait is time-limited: a hang is a failure,
not a stuck CI job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import slurm_testcluster  # tests/slurm/slurm_testcluster.py (pytest puts tests/slurm on sys.path)

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="session")
def slurm_cluster():
    """The one-node loopback cluster (scripts/slurm/up.sh), torn down after the session (down.sh)."""
    yield from slurm_testcluster.cluster_session()


HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

# The trainer with the random tiny model and the smallest sizes (a run is seconds of training; most of a
# job's time is importing torch/transformers and loading the question set).
TRAIN_APP = [sys.executable, "-m", "r1zero.train"]
TRAIN_OVERRIDES = [
    "model=tiny",
    "train.total_steps=2",
    "train.prompts_per_rollout=2",
    "sampling.group_size=2",
    "sampling.max_new_tokens=16",
    "train.micro_batch_size=4",
    "train.save_final=false",
    "data.max_questions=8",
    "logger.progress_bar=false",
    "logger.wandb.mode=disabled",
]
# The app the cancellation test launches: tests/slurm/_dummy_app.py, which sleeps `sleep_s` before writing
# anything; the launcher presets come from the repo's conf/ through hydra.searchpath.
SLEEP_APP = [sys.executable, "-m", "_dummy_app"]
SLEEP_OVERRIDES = [f"hydra.searchpath=[file://{REPO}/conf]", "sleep_s=600"]

MULTIRUN_TIMEOUT_S = 240
SACCT_FIELDS = "JobID,JobName,Partition,State,ExitCode,Start,End,Elapsed,AllocCPUS,ReqMem,MaxRSS,NodeList"


def _job_env(cluster) -> dict[str, str]:
    """Environment of the submitting process; sbatch exports it to the job (same machine, same Python)."""
    paths = [str(HERE), str(REPO / "src")]
    if os.environ.get("PYTHONPATH"):
        paths.append(os.environ["PYTHONPATH"])
    return {
        **os.environ,
        **cluster.env,
        "PYTHONPATH": os.pathsep.join(paths),
        "WANDB_MODE": "disabled",
        "HYDRA_FULL_ERROR": "1",
    }


def _array_job_id(sweep: Path) -> str:
    """SLURM array job id from submitit's folders <sweep>/.submitit/<arrayid>_<task>/."""
    ids = {p.name.split("_")[0] for p in (sweep / ".submitit").iterdir() if p.is_dir()}
    assert len(ids) == 1, f"expected one job array under {sweep / '.submitit'}, found {sorted(ids)}"
    return ids.pop()


def _sacct(cluster, job_id: str) -> list[dict[str, str]]:
    out = cluster.run("sacct", "-j", job_id, "-P", "-o", SACCT_FIELDS).stdout
    lines = [line for line in out.splitlines() if line]
    header = lines[0].split("|")
    return [dict(zip(header, line.split("|"))) for line in lines[1:]]


def _print_sacct(cluster, job_id: str, title: str) -> None:
    out = cluster.run("sacct", "-j", job_id, "-o", SACCT_FIELDS.replace("NodeList", "NodeList%12")).stdout
    print(f"\n----- {title}: sacct -j {job_id} -----\n{out}", flush=True)


def _wait_sacct_states(cluster, job_id: str, n_tasks: int, done: set[str], timeout_s: float = 30):
    """Rows of the array tasks <id>_<i> once all n_tasks are in a state from `done` (accounting lags)."""
    deadline = time.monotonic() + timeout_s
    while True:
        rows = [r for r in _sacct(cluster, job_id) if "_" in r["JobID"] and "." not in r["JobID"]]
        if len(rows) == n_tasks and all(r["State"].split()[0] in done for r in rows):
            return rows
        if time.monotonic() > deadline:
            pytest.fail(f"sacct did not report {n_tasks} tasks in {done} within {timeout_s}s: {rows}")
        time.sleep(0.5)


def _tail(text: str, n: int = 60) -> str:
    return "\n".join(text.splitlines()[-n:])


def test_multirun_two_jobs_on_slurm(slurm_cluster, tmp_path):
    """2-job multirun via hydra/launcher=slurm_local: both jobs run, each writes a non-empty metrics.jsonl."""
    sweep = tmp_path / "sweep"
    cmd = [
        *TRAIN_APP,
        "-m",
        "hydra/launcher=slurm_local",
        *TRAIN_OVERRIDES,
        "seed=1,2",
        f"hydra.sweep.dir={sweep}",
    ]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            cwd=REPO,
            env=_job_env(slurm_cluster),
            capture_output=True,
            text=True,
            timeout=MULTIRUN_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as e:
        slurm_cluster.run("scancel", "--user=root", check=False)
        pytest.fail(f"multirun did not finish within {MULTIRUN_TIMEOUT_S}s\n{e.stderr}")
    took = time.monotonic() - t0
    assert proc.returncode == 0, (
        f"multirun failed ({' '.join(cmd)}):\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
    )

    job_id = _array_job_id(sweep)
    rows = _wait_sacct_states(slurm_cluster, job_id, 2, {"COMPLETED"})
    _print_sacct(slurm_cluster, job_id, f"2-job multirun ({took:.1f}s)")

    run_dirs = sorted(p.parent for p in sweep.rglob(".hydra") if ".submitit" not in p.parts)
    assert len(run_dirs) == 2, f"expected 2 job run dirs under {sweep}, found {run_dirs}"
    for run_dir in run_dirs:
        metrics = run_dir / "metrics.jsonl"
        assert metrics.is_file() and metrics.stat().st_size > 0, f"no/empty {metrics}"
    if slurm_cluster.cpus >= 2:  # 1 CPU per job: both must have run at the same time
        starts, ends = [r["Start"] for r in rows], [r["End"] for r in rows]
        assert max(starts) <= min(ends), f"jobs ran one after the other on {slurm_cluster.cpus} CPUs: {rows}"


def test_cancelled_submitit_job_fails_fast(slurm_cluster, tmp_path):
    """scancel on a running submitit job: state CANCELLED and result() raises, within a time limit."""
    import submitit
    from submitit.core.utils import UncompletedJobError

    ex = submitit.AutoExecutor(folder=tmp_path / "%j", cluster="slurm")
    ex.update_parameters(
        timeout_min=5,
        slurm_partition=slurm_cluster.partition,
        cpus_per_task=1,
        mem_gb=1,
        name=f"r1zero-cancel-{uuid.uuid4().hex[:8]}",
    )
    job = ex.submit(time.sleep, 600)
    try:
        deadline = time.monotonic() + 30
        while job.watcher.get_state(job.job_id, mode="force") != "RUNNING":
            assert time.monotonic() < deadline, f"job {job.job_id} not RUNNING after 30s: {job.state}"
            time.sleep(0.5)
        slurm_cluster.run("scancel", job.job_id)
        t0 = time.monotonic()
        while not job.done(force_check=True):
            assert time.monotonic() - t0 < 30, (
                f"cancelled job {job.job_id} still not done after 30s: {job.state}"
            )
            time.sleep(0.5)
        t_done = time.monotonic() - t0
        assert job.state.startswith("CANCELLED"), job.state
        # result() first waits up to submitit's _results_timeout_s (15 s, for slow shared filesystems) for a
        # result file that never comes; local disk here (submitit's own tests do the same). The multirun test
        # below keeps the default.
        job._results_timeout_s = 0
        with pytest.raises(UncompletedJobError):
            job.result()
        print(
            f"\ncancelled job {job.job_id}: state {job.state!r} {t_done:.1f}s after scancel, "
            f"result() raised {time.monotonic() - t0:.1f}s after scancel"
        )
        _print_sacct(slurm_cluster, job.job_id, "cancelled submitit job")
    finally:
        slurm_cluster.run("scancel", job.job_id, check=False)


def test_cancelled_multirun_job_fails_the_sweep(slurm_cluster, tmp_path):
    """scancel on a running multirun job: the `-m` process exits non-zero within a time limit (no hang)."""
    sweep = tmp_path / "sweep"
    name = f"r1zero-cancel-{uuid.uuid4().hex[:8]}"
    cmd = [
        *SLEEP_APP,
        "-m",
        "hydra/launcher=slurm_local",
        *SLEEP_OVERRIDES,
        f"hydra.launcher.name={name}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=_job_env(slurm_cluster),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            out = slurm_cluster.run("squeue", "-h", "-n", name, "-t", "RUNNING", "-o", "%i").stdout.split()
            if out:
                break
            assert proc.poll() is None, f"multirun exited early:\n{proc.communicate()}"
            assert time.monotonic() < deadline, "multirun job not RUNNING after 60s"
            time.sleep(0.5)
        job_id = out[0]
        slurm_cluster.run("scancel", "-n", name)
        t0 = time.monotonic()
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail("the multirun was still waiting 60s after its job was cancelled")
        print(f"\nmultirun exited with {proc.returncode} {time.monotonic() - t0:.1f}s after scancel")
        assert proc.returncode != 0
        assert "CANCELLED" in stderr or "CANCELLED" in stdout, _tail(stderr)
        _print_sacct(slurm_cluster, job_id.split("_")[0], "cancelled multirun job")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        slurm_cluster.run("scancel", "-n", name, check=False)
