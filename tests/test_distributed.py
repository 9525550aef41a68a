"""Data-parallel learner strategies (r1zero.learner.strategy) on CPU with gloo.

* The gradient left by ``Learner.accumulate_gradients`` on 2 ranks, each holding part of a fixed rollout batch
  with responses of different lengths, equals the 1-process gradient of the whole batch (1e-6) for every
  loss aggregation: the normalisation uses global totals and the loss is scaled to cancel DDP's averaging.
* ``torchrun --nproc_per_node 2 -m r1zero.train model=tiny strategy=ddp`` runs 2 steps and rank 0 alone writes
  metrics.jsonl.
* Launch-environment parsing (torchrun, srun, an sbatch script).

The ZeRO-2/3 variants of the gradient test need DeepSpeed (``pip install -e .[deepspeed]``); they are skipped
without it. On a CPU-only machine DeepSpeed builds a small shared-memory op the first time (minutes).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import CONF, REPO, learner_configs, make_batch, make_learner, run_ranks
from omegaconf import OmegaConf

from r1zero.algos import LOSS_AGGREGATIONS
from r1zero.learner.strategy import DistEnv, Strategy, build_strategy, detect_dist_env, first_slurm_host

AGGS = sorted(LOSS_AGGREGATIONS)  # every aggregation
MAX_NEW = 16


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_batch():
    """8 responses (4 prompts x 2) with left-padded prompts and response lengths from 2 to 16 tokens: rows 0-3 short,
    rows 4-7 long, so the ranks' token counts differ."""
    return make_batch([5, 3, 6, 4], [2, 5, 3, 4, 16, 11, 14, 9], 2, seed=123)


def _tiny_model():
    from r1zero.model.load import load_model_and_tokenizer

    torch.manual_seed(0)  # the same random weights in every process
    model, _ = load_model_and_tokenizer(OmegaConf.load(CONF / "model" / "tiny.yaml"), torch.device("cpu"),
                                        torch.float32)
    return model


def _reference_grad(agg: str, batch, adv) -> torch.Tensor:
    """The 1-process gradient of the whole batch in one micro-batch."""
    model = _tiny_model()
    learner = make_learner(model, len(batch), agg, max_new_tokens=MAX_NEW)
    old = learner.compute_logprobs(model, batch) - 0.05  # ratio != 1: clipping paths are exercised
    learner.strategy.zero_grad()
    learner.accumulate_gradients(batch, torch.arange(len(batch)), old, adv)
    return learner.strategy.gradient_vector(), old


def _rows(batch, rows: list):
    """The sub-batch of ``rows`` (what this rank would have rolled out)."""
    return batch.select(torch.tensor(rows))


def _params_after_update(learner, batch, adv) -> tuple[torch.Tensor, dict]:
    metrics = learner.update(batch, adv)
    with learner.strategy.gathered_parameters() as module:
        flat = torch.cat([p.detach().float().flatten().cpu().clone() for p in module.parameters()])
    return flat, metrics


def _worker(rank: int, world: int, port: int, strategy_name: str, rows_per_rank: list, micro: int, out_dir: str):
    os.environ.setdefault("DS_ACCELERATOR", "cpu" if not torch.cuda.is_available() else "cuda")
    torch.set_num_threads(1)

    env = DistEnv(rank=rank, world_size=world, local_rank=rank, local_world_size=world,
                  master_addr="127.0.0.1", master_port=port, source="test")
    strategy_cfg = OmegaConf.load(CONF / "strategy" / f"{strategy_name}.yaml")
    batch = fixed_batch()
    adv = torch.tensor([1.0, -0.5, 0.25, -0.75, 0.6, -1.2, 0.9, -0.3])
    rows = torch.tensor(rows_per_rank[rank])
    results = {}
    strategy = None
    for agg in AGGS:
        ref, old = _reference_grad(agg, batch, adv)
        strategy = build_strategy(strategy_cfg, env)
        strategy.setup("cpu")
        learner = make_learner(_tiny_model(), micro, agg, max_new_tokens=MAX_NEW, strategy=strategy)
        strategy.zero_grad()
        learner.accumulate_gradients(batch, rows, old, adv)
        got = strategy.gradient_vector()
        results[agg] = {"max_abs_diff": float((got - ref).abs().max()), "ref_abs_sum": float(ref.abs().sum()),
                        "numel": [got.numel(), ref.numel()],
                        "packed": learner._packs(strategy.train_model)}  # the wrapper's own forward, packed
        strategy.barrier()
    # A whole Learner.update (1 optimizer step, global grad-norm clipping, reduced metrics) on this rank's
    # share equals the 1-process update on the whole batch.
    single = make_learner(_tiny_model(), micro, "token_mean", max_new_tokens=MAX_NEW)
    want, want_metrics = _params_after_update(single, batch, adv)
    strategy = build_strategy(strategy_cfg, env)
    strategy.setup("cpu")
    learner = make_learner(_tiny_model(), micro, "token_mean", max_new_tokens=MAX_NEW, strategy=strategy)
    got, got_metrics = _params_after_update(learner, _rows(batch, rows_per_rank[rank]), adv[rows])
    results["update"] = {"max_abs_diff": float((got - want).abs().max()), "moved": float((want - _flat0()).abs().max()),
                         "metrics": {k: [got_metrics[k], want_metrics[k]] for k in
                                     ("train/loss", "train/grad_norm", "train/pg_clipfrac", "train/ratio_max",
                                      "train/advantage_mean")}}
    # The weight push into a rollout engine carries the updated weights, full tensors under every strategy
    # (ZeRO-3 gathers one module at a time: a shard would have the wrong size and fail the comparison).
    engine = _CopyingEngine()
    strategy.sync_weights(engine)
    names = [n for n, _ in _tiny_model().named_parameters()]
    pushed = torch.cat([engine.state[n] for n in names]) if set(engine.state) == set(names) else torch.zeros(0)
    results["sync"] = {"names_match": set(engine.state) == set(names),
                       "max_abs_diff": float((pushed - got).abs().max()) if pushed.numel() == got.numel() else 1e9}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    strategy.cleanup()


def _flat0() -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in _tiny_model().parameters()])


class _CopyingEngine:
    """Stands in for vLLM's engine: copies each pushed tensor as it arrives, as vLLM's weight loader does."""

    def __init__(self):
        self.state = {}

    def update_weights(self, named_tensors):
        for name, tensor in named_tensors:
            self.state[name] = tensor.detach().float().flatten().cpu().clone()


def _run_grad_check(tmp_path, strategy_name, rows_per_rank, micro):
    port = _free_port()
    run_ranks(_worker, (2, port, strategy_name, rows_per_rank, micro, str(tmp_path)))
    for rank in range(2):
        results = json.loads((tmp_path / f"rank{rank}.json").read_text())
        for agg in AGGS:
            r = results[agg]
            assert r["numel"][0] == r["numel"][1] and r["ref_abs_sum"] > 0, (rank, agg, r)
            assert r["max_abs_diff"] < 1e-6 and r["packed"], (rank, agg, r)
        upd = results["update"]
        # Adam's first step is ~lr * sign(g): float noise on near-zero gradient entries moves a parameter by up
        # to ~lr * 1e-3 here, so parameters get a looser bound; the (pre-clip) grad norm is compared tightly.
        assert upd["moved"] > 1e-5 and upd["max_abs_diff"] < 1e-5, (rank, upd)
        for key, (got, want) in upd["metrics"].items():
            assert abs(got - want) < 1e-6 * max(1.0, abs(want)), (rank, key, got, want)
        sync = results["sync"]
        assert sync["names_match"] and sync["max_abs_diff"] == 0.0, (rank, sync)


def test_ddp_gradient_equals_single_process_gradient(tmp_path):
    # Unequal shares (3 short responses vs 5 long ones) and micro-batches of 2: 2 vs 3 backward passes per rank.
    _run_grad_check(tmp_path, "ddp", [[0, 1, 2], [3, 4, 5, 6, 7]], micro=2)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_deepspeed_gradient_equals_single_process_gradient(tmp_path, name):
    pytest.importorskip("deepspeed")
    # DeepSpeed ZeRO reduces every micro-batch: both ranks need the same number (the trainer's equal shares).
    _run_grad_check(tmp_path, name, [[0, 1, 2, 3], [4, 5, 6, 7]], micro=2)


def _gloo_threads() -> int:
    """How many of gloo's worker threads this process runs (0 once its process group is destroyed); Linux."""
    names = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                names.append(f.read().strip())
        except OSError:  # the thread ended meanwhile
            pass
    return names.count("pt_gloo_runloop")


def _teardown_worker(rank: int, port: int, registered, out_dir: str) -> None:
    import gc
    import time

    # torch._dynamo imported before the group, as in training (transformers imports it): imported after, it holds
    # references to the group that hide the bug below
    import torch._dynamo
    import torch.distributed as dist

    env = DistEnv(rank=rank, world_size=2, local_rank=rank, local_world_size=2, master_addr="127.0.0.1",
                  master_port=port, source="test")
    strategy = build_strategy(OmegaConf.create({"name": "ddp"}), env)
    strategy.setup("cpu")
    strategy.prepare(torch.nn.Linear(4, 4), {"lr": 0.1})
    strategy.train_model(torch.ones(2, 4)).sum().backward()
    # Rank 0's last collective is still on one of gloo's worker threads when the rank tears down: its completion
    # callback keeps that thread busy, then needs the GIL back, as the thread does to free the collective's
    # tensor (the hang's window, here held open for 2 s instead of microseconds).
    if rank == 0:
        work = dist.all_reduce(torch.ones(3), async_op=True)
        work.get_future().then(lambda _: time.sleep(2))
        registered.set()  # before rank 1 joins, so the callback runs on gloo's thread, not inline here
        work.wait()
        del work
    else:
        registered.wait()
        dist.all_reduce(torch.ones(3))
    before = _gloo_threads()
    strategy.cleanup()
    after = _gloo_threads()  # 0: the group went in cleanup (destroy_process_group, the GIL released)
    del strategy
    gc.collect()  # the DDP wrapper goes: had its reducer kept the group, gloo's destructor would run here
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump({"gloo_threads": [before, after]}, f)


def test_ddp_teardown_destroys_the_group_and_does_not_hang(tmp_path):
    """A rank leaving right after a collective hung in its teardown (issue 25: the DDP non-finite stop, in the full
    suite): DDP's C++ reducer held the last reference to the gloo group, so the group outlived
    ``destroy_process_group`` and its destructor ran later from the reducer's, with the GIL held, joining a gloo
    worker thread that waited for the GIL. ``DDPStrategy.cleanup`` takes the reducer down while the group is still
    registered: the group is gone when cleanup returns (its worker threads joined, the GIL released)."""
    import multiprocessing

    if not os.path.isdir("/proc/self/task"):
        pytest.skip("counts gloo's threads in /proc (Linux)")
    registered = multiprocessing.get_context("spawn").Event()
    run_ranks(_teardown_worker, (_free_port(), registered, str(tmp_path)), timeout_s=120)
    for rank in (0, 1):
        threads = json.loads((tmp_path / f"rank{rank}.json").read_text())["gloo_threads"]
        assert threads[0] > 0 and threads[1] == 0, (rank, threads)  # [before cleanup, after]


# DAPO's dynamic sampling (the ranks roll out in lockstep: the tiny model's answers are all wrong, so every rank takes
# the 3 rounds and fills its share), a batch-level std (every rank's rewards) and TIS (the engine's log-probabilities)
DAPO = ["algo=dapo", "algo.dynamic_sampling_max_rounds=3", "algo.adv_scale=batch_std", "algo.tis_cap=2"]


@pytest.mark.parametrize("algo", [[], DAPO], ids=["drgrpo", "dapo"])
def test_torchrun_ddp_training_smoke(tmp_path, algo):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port()),
           "-m", "r1zero.train", "model=tiny", "strategy=ddp", "device=cpu", "data=arith", "data.max_questions=16",
           "train.total_steps=2", "train.prompts_per_rollout=2", "sampling.group_size=2",
           "sampling.max_new_tokens=8", "train.micro_batch_size=2", "train.lr=1e-3", "logger.progress_bar=false",
           "reward.num_workers=1", "train.save_final=false", f"hydra.run.dir={run_dir}", *algo]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=240, env=env, check=False)
    assert out.returncode == 0, out.stderr[-4000:]
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]  # one writer: no duplicated rows
    for key in ("train/loss", "train/grad_norm", "rollout/reward_mean", "rollout/response_length_mean"):
        assert key in rows[0], key
    # Metrics cover both ranks' responses: 2 questions x 2 samples, split 1 question per rank.
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {1, 2}
    assert out.stdout.count("r1zero: done") == 2  # both ranks finished
    if algo:
        assert all(r["rollout/sampling_rounds"] == 3.0 and r["rollout/filled_groups"] == 2.0 for r in rows)
        assert all(r["rollout/mismatch_ratio_out_frac"] == 0.0 and "train/tis_weight_mean" in r for r in rows)


def test_an_engine_that_shares_the_policy_reads_no_weights_and_one_that_copies_reads_them_all():
    """The weight-sync seam: the strategy offers (name, tensor) pairs, the engine reads what it needs. ``hf``
    generates with the policy module itself and must not start the iterator (under ZeRO-3 that would start a
    collective gather); a copying engine gets every parameter under its HF name."""
    from r1zero.rollout.hf import HFRolloutEngine

    class Watched(Strategy):
        started = False

        def named_parameters_for_sync(self):
            Watched.started = True
            yield from super().named_parameters_for_sync()

    model = _tiny_model()
    strategy = Watched(None, DistEnv())
    strategy.setup("cpu")
    strategy.prepare(model, learner_configs(2, "token_mean")[0])
    strategy.sync_weights(HFRolloutEngine(model, _Tok()))
    assert not Watched.started
    engine = _CopyingEngine()
    strategy.sync_weights(engine)
    assert Watched.started and list(engine.state) == [n for n, _ in model.named_parameters()]
    assert all(torch.equal(engine.state[n], p.detach().flatten()) for n, p in model.named_parameters())


class _Tok:
    """The two token ids ``HFRolloutEngine`` reads at construction."""

    eos_token_id, pad_token_id = 0, 0


def test_single_strategy_refuses_a_multi_process_launch():
    s = build_strategy(None, DistEnv(rank=0, world_size=2))
    with pytest.raises(ValueError, match="strategy=ddp"):
        s.setup("cpu")


def test_detect_dist_env():
    assert detect_dist_env({}) == DistEnv()
    e = detect_dist_env({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "MASTER_ADDR": "h", "MASTER_PORT": "29500"})
    assert (e.rank, e.world_size, e.local_rank, e.master_addr, e.master_port, e.source) == (3, 8, 3, "h", 29500, "torchrun")
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": "9", "SLURM_NTASKS": "16",
             "SLURM_STEP_NUM_TASKS": "16", "SLURM_LOCALID": "1", "SLURM_STEP_NODELIST": "gpu[07-08]",
             "SLURM_TASKS_PER_NODE": "8(x2)"}
    e = detect_dist_env(slurm)
    assert (e.rank, e.world_size, e.local_rank, e.local_world_size, e.master_addr, e.source) == (9, 16, 1, 8, "gpu07", "slurm")
    assert e.master_port == 15000 + 4242
    assert detect_dist_env({**slurm, "MASTER_ADDR": "x", "MASTER_PORT": "1234"}).master_addr == "x"
    assert detect_dist_env({**slurm, "SLURM_STEP_NUM_NODES": "2"}).master_addr == "gpu07"
    # One node (slurm_a100's 8 ranks): loopback, whatever the node is called in slurm.conf.
    one_node = {**slurm, "SLURM_STEP_NODELIST": "gpu07", "SLURM_STEP_NUM_NODES": "1", "SLURM_TASKS_PER_NODE": "16"}
    assert detect_dist_env(one_node).master_addr == "127.0.0.1"
    # The batch script of an --ntasks=16 job is one process (no step variables).
    batch_script = {k: v for k, v in slurm.items() if not k.startswith("SLURM_STEP")}
    assert detect_dist_env(batch_script) == DistEnv()
    assert first_slurm_host("node1,node2") == "node1"
    assert first_slurm_host("a100-[3,5-9],b1") == "a100-3"
