"""Multirun through hydra-submitit-launcher on a real (loopback, one-node) SLURM cluster.

    python -m pytest tests/slurm -m slurm -q -s      # as root; first run installs the Debian packages

The cluster comes from scripts/slurm/up.sh (fixture ``slurm_cluster`` below, via slurm_testcluster.py); the
launcher preset is conf/hydra/launcher/slurm_local.yaml. Every wait is time-limited: a hang is a failure,
not a stuck CI job.
"""

from __future__ import annotations

import json
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


def _start_multirun(cmd: list[str], cluster) -> subprocess.Popen:
    """Launch a Hydra multirun against the test cluster in the background (output captured as text)."""
    return subprocess.Popen(cmd, cwd=REPO, env=_job_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, stdin=subprocess.DEVNULL)


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
    """Rows of the n_tasks jobs once all are in a state from `done` (accounting lags)."""
    deadline = time.monotonic() + timeout_s
    while True:
        # array tasks <id>_<i>; a one-job multirun is submitted as a plain job <id>
        rows = [r for r in _sacct(cluster, job_id) if "." not in r["JobID"] and ("_" in r["JobID"] or n_tasks == 1)]
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


def test_ddp_job_of_two_tasks_on_slurm(slurm_cluster, tmp_path):
    """hydra.launcher.tasks_per_node=2 strategy=ddp: one job, two srun tasks that join one gloo process group
    (ranks from SLURM_PROCID/SLURM_NTASKS), as slurm_a100 runs 8 ranks per node; rank 0 alone writes metrics."""
    sweep = tmp_path / "sweep"
    cmd = [*TRAIN_APP, "-m", "hydra/launcher=slurm_local", "hydra.launcher.tasks_per_node=2", "strategy=ddp",
           "device=cpu", *TRAIN_OVERRIDES, "seed=1", f"hydra.sweep.dir={sweep}"]
    t0 = time.monotonic()
    try:
        proc = subprocess.run(cmd, check=False, cwd=REPO, env=_job_env(slurm_cluster), capture_output=True,
                              text=True, timeout=MULTIRUN_TIMEOUT_S, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        slurm_cluster.run("scancel", "--user=root", check=False)
        pytest.fail(f"ddp multirun did not finish within {MULTIRUN_TIMEOUT_S}s\n{e.stderr}")
    took = time.monotonic() - t0
    assert proc.returncode == 0, f"ddp multirun failed:\n{_tail(proc.stdout)}\n{_tail(proc.stderr)}"
    job_id = _array_job_id(sweep)
    _wait_sacct_states(slurm_cluster, job_id, 1, {"COMPLETED"})
    _print_sacct(slurm_cluster, job_id, f"2-task ddp job ({took:.1f}s)")
    logs = "\n".join(p.read_text(errors="replace") for p in (sweep / ".submitit").rglob("*_log.*"))
    for rank in (0, 1):
        assert f"rank {rank}/2 (local {rank}) joined the gloo process group" in logs, _tail(logs)
    (run_dir,) = [p.parent for p in sweep.rglob(".hydra") if ".submitit" not in p.parts]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2], steps  # each step once: only rank 0 logs


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
    proc = _start_multirun(cmd, slurm_cluster)
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


PREEMPT_STEPS = 12
PREEMPT_TIMEOUT_S = 480


def _logged_steps(metrics: Path) -> list[int]:
    import json

    if not metrics.exists():
        return []
    return [json.loads(line)["step"] for line in metrics.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("tasks", [1, 2])
def test_preempted_job_checkpoints_requeues_and_resumes(slurm_cluster, tmp_path, tasks):
    """Preemption as submitit simulates it (SlurmJob._interrupt: SIGTERM, then USR2, to the job's steps):
    the trainer finishes its step, saves a checkpoint and hands USR2 to submitit, which requeues the job; the
    requeued job resumes from that checkpoint (resume=auto) and completes. metrics.jsonl then holds steps
    1..N exactly once, and sacct shows the REQUEUED attempt and the COMPLETED one.

    With 2 tasks (strategy=ddp, as slurm_a100's 8 ranks) every rank gets the signal; the ranks agree to
    checkpoint at the same step boundary, rank 0 writes it and submitit's rank-0 handler requeues the job.

    `scancel --signal=X <job>` signals the job steps (the srun'd Python process, where submitit's handler is),
    like `sbatch --signal=USR2@N` does before the time limit. `--batch` would signal only the batch shell, and
    `--full` the shell too, whose default action on USR2 is to terminate.
    """
    sweep = tmp_path / "sweep"
    name = f"r1zero-preempt-{uuid.uuid4().hex[:8]}"
    overrides = [o for o in TRAIN_OVERRIDES if not o.startswith("train.total_steps=")]
    cmd = [
        *TRAIN_APP,
        "-m",
        "hydra/launcher=slurm_local",
        *overrides,
        f"train.total_steps={PREEMPT_STEPS}",
        *([f"hydra.launcher.tasks_per_node={tasks}", "strategy=ddp", "device=cpu"] if tasks > 1 else []),
        "train.save_every=0",  # the only checkpoint is the one the signal triggers
        # submitit counts a USR2 in the first min(0.8 x limit, limit - 10 min) as a preemption (requeued, not
        # counted against max_num_timeout=0); with the preset's 10 min every USR2 would count as a time-out.
        "hydra.launcher.timeout_min=20",
        f"hydra.launcher.name={name}",
        f"hydra.sweep.dir={sweep}",
    ]
    run_dir = sweep / "0"
    proc = _start_multirun(cmd, slurm_cluster)
    t0 = time.monotonic()
    finished = False
    try:
        while len(_logged_steps(run_dir / "metrics.jsonl")) < 3:
            assert proc.poll() is None, f"multirun exited early:\n{_tail(proc.communicate()[1])}"
            assert time.monotonic() - t0 < 240, "the job did not log 3 steps within 240s"
            time.sleep(0.2)
        job_id = slurm_cluster.run("squeue", "-h", "-n", name, "-o", "%i").stdout.split()[0]
        before = _logged_steps(run_dir / "metrics.jsonl")[-1]
        slurm_cluster.run("scancel", "--signal=TERM", job_id)
        slurm_cluster.run("scancel", "--signal=USR2", job_id)
        t_signal = time.monotonic()
        try:
            stdout, stderr = proc.communicate(timeout=PREEMPT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the preempted multirun did not finish within {PREEMPT_TIMEOUT_S}s")
        took = time.monotonic() - t_signal
        finished = True
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if not finished:  # after success the job may still be exiting (COMPLETING): leave it alone
            slurm_cluster.run("scancel", "-n", name, check=False)
    assert proc.returncode == 0, f"multirun failed:\n{_tail(stdout)}\n{_tail(stderr)}"

    # The run finished, every step logged once, and the second attempt started from the signal's checkpoint.
    assert _logged_steps(run_dir / "metrics.jsonl") == list(range(1, PREEMPT_STEPS + 1))
    log = (run_dir / "train.log").read_text()  # Hydra's job log (hydra.job.name: train)
    # SIGTERM and USR2 usually land in the same step (one checkpoint); if a step boundary falls between them,
    # SIGTERM gets a checkpoint of its own and training goes on until USR2's.
    ckpt = max((run_dir / "checkpoints").glob("step_*"))
    k = int(ckpt.name.split("_")[1])
    assert before <= k < PREEMPT_STEPS, (before, k)
    assert f"checkpoint of step {k} saved to {ckpt}" in log
    assert "handing SIGUSR2 over to SignalHandler.checkpoint_and_try_requeue" in log
    assert "this job is preempted" in log and f"Requeued job {job_id}" in log
    assert f"resumed from {ckpt} at step {k}" in log

    # Accounting: the first attempt REQUEUED, the second COMPLETED (sacct -D lists every attempt).
    deadline = time.monotonic() + 60
    while True:
        out = slurm_cluster.run("sacct", "-D", "-X", "-j", job_id, "-n", "-P", "-o", "JobID,State").stdout
        states = [line.split("|")[1] for line in out.splitlines() if line]
        if states[-1:] == ["COMPLETED"] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert states == ["REQUEUED", "COMPLETED"], out
    sacct = slurm_cluster.run("sacct", "-D", "-j", job_id, "-o", SACCT_FIELDS.replace("NodeList", "NodeList%12"))
    print(
        f"\npreempted after step {before} (checkpoint step {k}), requeued and finished {took:.1f}s after the "
        f"signal\n----- sacct -D -j {job_id} -----\n{sacct.stdout}",
        flush=True,
    )
