"""R1-Zero-like RL training: ``python -m r1zero.train [group=option ...] [key=value ...]``.

One loop, read top to bottom (Liu et al. 2025 §2-3): sample questions → G responses each → rule-based math
reward → group-relative advantages → clipped policy-gradient update → log. The same code runs the embedded
SmolLM2 quickstart on a laptop CPU and Qwen2.5-Math on a GPU node; only the config differs.

The recipe has torchtune's shape: :meth:`R1ZeroRecipe.setup`, :meth:`R1ZeroRecipe.train`,
:meth:`R1ZeroRecipe.cleanup`.
"""

from __future__ import annotations

import copy
import logging
import sys
import time
from pathlib import Path
from typing import NamedTuple, NoReturn

import torch
from omegaconf import DictConfig, OmegaConf

from .algos import OVERLONG, compute_advantages, pick_groups, signal_groups, zero_std_rows
from .data.questions import PromptSampler, load_questions
from .data.templates import PromptTemplate, drop_long_prompts
from .evaluate.rollout_metrics import gather_rollout, rollout_metrics
from .evaluate.suite import accuracy_line, evaluate_suite, load_benchmarks
from .learner.learner import Learner
from .learner.strategy import build_strategy
from .model.load import load_model_and_tokenizer, resolve_dtype, resolve_model_dir
from .reward.custom import RewardFnError, build_grader, check_reward_config
from .rollout import SamplingConfig, build_engine, engine_class
from .rollout.base import RolloutBatch, ScoredRollout, keep_groups
from .run.checkpoint import (
    checkpoint_to_resume,
    latest_checkpoint,
    load_trainer_state,
    remove_partial,
    rng_state,
    set_rng_state,
    write_checkpoint,
)
from .run.cli import hydra_entry, hydra_job_info
from .run.config import run_config
from .run.hostmem import keep_freed_memory
from .run.manifest import Manifest
from .run.preemption import Interrupted, PreemptionHandler, launcher_grace_s
from .run.rundir import (
    check_same_config,
    check_writable,
    finished_run,
    saved_config,
    truncate_after,
    unwritable_as_one_line,
)
from .run.runlock import RunDirLock, hold_run_dir
from .run.seeding import set_seed
from .run.tracking import (
    MetricsLogger,
    NullLogger,
    ProgressBar,
    check_wandb_login,
    sample_rows,
    wandb_settings,
)
from .schema import RunConfig
from .schema.errors import ConfigError, NonFiniteTrainingError, RunDirInUseError

log = logging.getLogger("r1zero.train")


__all__ = ["R1ZeroRecipe", "RunComplete", "main", "run"]


class _RolloutStats(NamedTuple):
    """What generating and grading a step's rollout took (:meth:`R1ZeroRecipe._rollout`), every round together."""

    t_rollout: float  # seconds generating
    t_reward: float  # seconds grading
    generated_tokens: float  # response tokens this rank generated
    metrics: dict  # rollout/... of dynamic sampling


class RunComplete(Exception):
    """The run directory already holds this run, finished: nothing to train (not an error)."""


class R1ZeroRecipe:
    """setup → train → cleanup for one run; everything it writes goes to ``cfg.paths.run_dir``.

    Args:
        cfg: the composed run config.
        grader: grades the rollouts instead of the grader ``cfg.reward`` builds (``MathGrader``, or
            ``RewardFnGrader`` under ``reward=fn``): ``start()``, ``grade(responses, references, answer_format)``
            (``grade_fn(responses, references, rows)`` under ``reward=fn``), ``close()``, each returning one
            ``GradeResult`` per response. Started in :meth:`setup`, closed in :meth:`cleanup`.
        engine: samples the rollouts instead of the engine ``cfg.rollout`` builds (the
            :class:`~r1zero.rollout.base.RolloutEngine` protocol); weights are synced to it after every update.
    """

    def __init__(self, cfg: DictConfig | RunConfig, grader=None, engine=None):
        self.cfg = cfg = run_config(cfg)  # typed and checked (r1zero.schema) before anything loads
        self.run_dir = Path(cfg.paths.run_dir)
        self._grader, self._engine = grader, engine  # collaborators given instead of built (tests' fakes)
        self.step = 0
        self.total_steps: int | None = None  # the run's length, known once the question set is loaded (setup)
        self._eval_suite = None  # benchmark questions, read at the first evaluation
        self._saving = False
        self._consistent = None
        self._lock: RunDirLock | None = None  # this run's hold on the run directory (rank 0)
        self._diverged = False  # stopped by train.max_nonfinite_steps: not finished, no final/
        # every rank stops at the same point for the same, agreed reason (finished, diverged, the run directory
        # refused): cleanup then waits for all of them before the process group goes, so none exits (and has its
        # launcher stop the job) while rank 0 still writes. Not on an error one rank alone raised: its peers may be
        # waiting in another collective.
        self._stopping_together = False

    # ----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """The run's stages in order, each failing before the next loads anything: the process (strategy, device,
        the run directory's lock), the run directory (resume or refuse), the grader, the data, the model, the
        question sampler, the learner, the rollout engine, a checkpoint's state, the logger."""
        t_setup = time.perf_counter()  # the manifest's wall time counts model loading too
        self._setup_process()
        ckpt, config = self._setup_run_dir()
        self._setup_grader()  # its workers start in the background while the model loads
        self._setup_data()
        self._setup_model(ckpt)
        self._setup_sampler()
        self._setup_learner(ckpt)
        self._setup_engine(ckpt)
        if ckpt is not None:
            self._resume(ckpt)
        self._setup_logging(ckpt, config, t_setup)

    def _setup_process(self) -> None:
        cfg = self.cfg
        check_writable(self.run_dir, "paths.run_dir")  # read-only or a file in the way: one line, nothing loaded
        check_wandb_login(cfg.logger.wandb.mode)  # online without a key: one line now, not a prompt after loading
        # strategy=ddp|zero2|zero3 under torchrun/deepspeed/srun: join the process group, one device per rank.
        self.strategy = build_strategy(cfg.strategy)
        engine_class(cfg.rollout.name)  # an unregistered engine is refused before anything loads
        self.device = self.strategy.setup(cfg.device)
        self._lock_run_dir()  # a run directory another live run writes: refused before anything is written or loaded
        if self.device.type == "cpu":
            keep_freed_memory()  # the learner's large temporaries reuse pages instead of faulting new ones
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.manifest = None
        set_seed(int(cfg.seed))
        self.dtype = resolve_dtype(str(cfg.dtype), self.device)  # compute dtype
        self.param_dtype = self.strategy.param_dtype(self.dtype)  # single/ddp + bf16: fp32 master weights
        cfg.check_batches(self.strategy.world_size)  # the schema's checks ran in run_config

    def _lock_run_dir(self) -> None:
        """Lock the run directory for this job (:mod:`r1zero.run.runlock`): rank 0 holds it, every rank stops together
        when it is refused (rank 0 raises the one-line error, the others exit with status 2 without repeating it).

        Raises:
            RunDirInUseError: another live run holds the directory, or its filesystem cannot lock.
        """
        refused = None
        if self.strategy.is_main:
            try:
                self._lock = hold_run_dir(self.run_dir, "paths.run_dir", enabled=self.cfg.paths.lock_run_dir)
            except (RunDirInUseError, OSError) as err:  # OSError: cannot create it (raised on rank 0 below)
                refused = err
        if self.strategy.any(refused is not None):
            self._stopping_together = True
            if not self.strategy.is_main:
                raise SystemExit(2)
            raise refused

    def _setup_run_dir(self) -> tuple[Path | None, dict]:
        """``(checkpoint to resume or None, the run's config as a dict)``; writes ``config.yaml`` (rank 0).

        Raises:
            RunComplete: the directory holds this run, finished.
            ConfigError: it holds another experiment (``allow_config_change=false``) or a bad ``resume``.
        """
        cfg = self.cfg
        previous = saved_config(self.run_dir)  # what an earlier run in this directory was made with
        if self.strategy.is_main and (partial := remove_partial(self.run_dir)):  # a run killed mid-save
            log.info("removed %d unfinished checkpoint saves: %s", len(partial), ", ".join(p.name for p in partial))
        ckpt = checkpoint_to_resume(cfg.resume, self.run_dir)
        continuing = ckpt is not None or (cfg.resume == "auto" and (self.run_dir / "metrics.jsonl").exists())
        config = OmegaConf.to_container(OmegaConf.structured(cfg))
        if continuing:  # one experiment per run directory
            check_same_config(self.run_dir, previous, config, cfg.allow_config_change)
        if cfg.resume == "auto" and (done := finished_run(self.run_dir, previous, cfg.train.total_steps,
                                                          cfg.train.prompt_epochs)):
            raise RunComplete(f"r1zero: {self.run_dir.resolve()} already holds a finished run of {done} steps; "
                              f"nothing to do (more steps: train.total_steps=N; a new run: another hydra.run.dir)")
        if self.strategy.is_main:
            OmegaConf.save(OmegaConf.create(config), self.run_dir / "config.yaml")
        return ckpt, config

    def _setup_grader(self) -> None:
        """The grader given, or the one ``cfg.reward`` names, started. reward=fn: the same pool, whose workers also
        import the user's reward function (r1zero.reward.custom)."""
        cfg = self.cfg
        try:
            self.reward_fn = check_reward_config(OmegaConf.structured(cfg.reward))
        except RewardFnError as err:
            raise ConfigError(str(err)) from None
        self.grader = self._grader if self._grader is not None else build_grader(cfg.reward, self.reward_fn)
        self.grader.start()

    def _setup_data(self) -> None:
        cfg = self.cfg
        self.template = PromptTemplate.from_config(cfg.template)
        self.questions = load_questions(cfg.data, cfg.paths.data_root)
        if cfg.eval.every or cfg.eval.at_start or cfg.eval.at_end:  # a bad eval.path fails now, not after steps
            self._eval_suite = load_benchmarks(cfg.eval, cfg.paths.data_root)

    def _setup_model(self, ckpt: Path | None) -> None:
        with self.strategy.model_init_context(self.dtype, self.cfg.train):  # ZeRO-3: loaded partitioned
            self.model, self.tokenizer = load_model_and_tokenizer(
                self.cfg.model, self.device, self.param_dtype, weights_from=str(ckpt) if ckpt else None
            )

    def _setup_sampler(self) -> None:
        """The questions whose prompt fits, the run's length and the sampler that draws each step's questions."""
        cfg = self.cfg
        self.questions, self.dropped_long = drop_long_prompts(self.questions, self.template, self.tokenizer,
                                                              cfg.train.prompt_max_length)
        if self.dropped_long:
            log.info("dropped %d questions whose prompt exceeds train.prompt_max_length=%s tokens",
                     self.dropped_long, cfg.train.prompt_max_length)
        # the run's length: train.total_steps, or train.prompt_epochs passes over the kept questions (as oat counts)
        self.total_steps = cfg.train.run_steps(len(self.questions))
        if cfg.train.prompt_epochs is not None:
            log.info("train.prompt_epochs=%d over %d questions in rollouts of %d: %d steps%s", cfg.train.prompt_epochs,
                     len(self.questions), cfg.train.prompts_per_rollout, self.total_steps,
                     f" (capped by train.total_steps={cfg.train.total_steps})"
                     if self.total_steps == cfg.train.total_steps else "")
        self.sampler = PromptSampler(self.questions, int(cfg.train.prompts_per_rollout), int(cfg.seed),
                                     shuffle=cfg.data.shuffle, drop_last=cfg.train.prompt_epochs is not None)

    def _setup_learner(self, ckpt: Path | None) -> None:
        cfg = self.cfg
        if cfg.model.gradient_checkpointing:
            self.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        ref_model = None
        if float(cfg.algo.kl_coef) > 0:
            ref_model = self._reference_model(ckpt).eval().requires_grad_(False)
        self.learner = Learner(
            self.model, cfg.train, cfg.algo, ref_model=ref_model, strategy=self.strategy,
            max_new_tokens=int(cfg.sampling.max_new_tokens), temperature=float(cfg.sampling.temperature),
            seed=int(cfg.seed),
        )
        if self.strategy.distributed:  # same initial weights everywhere, different samples on every rank
            set_seed(int(cfg.seed) + 100_003 * self.strategy.rank)

    def _reference_model(self, ckpt: Path | None):
        """The frozen initial policy for the KL term.

        A fresh run deep-copies the policy as loaded. A resumed run's policy holds the checkpoint's weights,
        and ZeRO-3 partitions cannot be deep-copied, so both reload the initial model from ``cfg.model``.
        """
        if ckpt is None and not self.strategy.shards_parameters:
            return copy.deepcopy(self.model)
        set_seed(int(self.cfg.seed))  # model=tiny: the same random weights as the initial policy
        with self.strategy.model_init_context(self.dtype, self.cfg.train):
            return load_model_and_tokenizer(self.cfg.model, self.device, self.param_dtype)[0]

    def _setup_engine(self, ckpt: Path | None) -> None:
        """The engine given, or the one ``cfg.rollout`` names, and the sampling settings it is called with."""
        cfg = self.cfg
        self.sampling = SamplingConfig(
            n=int(cfg.sampling.group_size), max_new_tokens=int(cfg.sampling.max_new_tokens),
            temperature=float(cfg.sampling.temperature), top_p=float(cfg.sampling.top_p),
            top_k=cfg.sampling.top_k, stop=self.template.stop,
        )
        model_dir = str(ckpt) if ckpt else (None if cfg.model.path == "tiny" else resolve_model_dir(cfg.model))
        self.engine = self._engine or build_engine(cfg.rollout, self.model, self.tokenizer, model_dir=model_dir,
                                                   seed=int(cfg.seed), scratch_dir=str(self.run_dir / "rollout_init"),
                                                   autocast=self.strategy.autocast)

    def _resume(self, ckpt: Path) -> None:
        """The checkpoint's learner, strategy, sampler and RNG state; the engine gets its weights."""
        state = load_trainer_state(ckpt)
        self.learner.load_state_dict(state["learner"])
        self.strategy.load_sharded_state(Path(ckpt) / "strategy")
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        per_rank = state.get("rng_per_rank") or []
        set_rng_state(per_rank[self.strategy.rank] if len(per_rank) == self.strategy.world_size else state["rng"])
        self.strategy.sync_weights(self.engine)
        log.info("resumed from %s at step %d", ckpt, self.step)

    def _setup_logging(self, ckpt: Path | None, config: dict, t_setup: float) -> None:
        """Rank 0's metrics logger, manifest and wandb run; a dummy logger on the other ranks."""
        cfg = self.cfg
        # resume=auto with no checkpoint yet (a job requeued before its first save) starts over at step 0
        # and drops whatever rows that attempt logged, so no step appears twice.
        resuming = ckpt is not None or cfg.resume == "auto"
        self.logger = MetricsLogger(self.run_dir, resume_step=self.step if resuming else None) \
            if self.strategy.is_main else NullLogger()  # only rank 0 writes metrics and samples
        if self.strategy.is_main and resuming:  # the evaluations after the resume step are made again
            truncate_after(self.run_dir / "eval_samples.jsonl", self.step)
        if self.strategy.is_main:  # after the logger accepted the run dir: never overwrites another run's
            # what produced this run: command, commit, versions, hardware, seeds, ids, time used
            self.manifest = Manifest(self.run_dir, seed=int(cfg.seed), world_size=self.strategy.world_size,
                                     t0=t_setup, total_steps=self.total_steps)
            if cfg.logger.wandb.mode != "disabled":  # the schema checked the mode
                # one group per multirun, tags per config, the manifest as config, the same run after a requeue
                settings = wandb_settings(config, self.run_dir,
                                          manifest=self.manifest.data, **hydra_job_info())
                self.manifest.update(wandb_run_id=settings["id"])
                self.logger.start_wandb(settings)

    # ----------------------------------------------------------------------------------------------
    def train(self) -> None:
        """The steps up to ``total_steps``, stopping between two (preemption) or, on a second signal, mid-step."""
        total = self.total_steps
        bar = ProgressBar(total, self.step, enabled=bool(self.cfg.logger.progress_bar) and self.strategy.is_main)
        # SIGUSR2/SIGTERM/SIGINT (SLURM preemption, time limit, Ctrl-C) only set a flag, acted on at the end of a
        # step; a second one in a plain run raises Interrupted mid-step (_stop_mid_step).
        self.preemption = PreemptionHandler(grace_s=launcher_grace_s()).install()
        try:
            self._train_steps(total, bar)
            self._stopping_together = True  # every rank ran the same steps to the end
        except Interrupted as stop:
            self._stop_mid_step(stop)
        finally:
            bar.close()

    def _train_steps(self, total: int, bar: ProgressBar) -> None:
        """The loop, one step per pass: generate and score, advantages, update (and the weight push), log,
        evaluate, checkpoint."""
        G = int(self.cfg.sampling.group_size)
        self._consistent = None  # (step, sampler state, RNG state) a mid-step stop can checkpoint, or None
        if self.step == 0 and self.cfg.eval.at_start:
            self.logger.log(0, self._evaluate())
        while self.step < total:
            # until the update starts, the weights and optimizer are still the previous step's
            self._consistent = (self.step, self.sampler.state_dict(), rng_state())
            self.step += 1
            t_step = time.perf_counter()
            r, stats = self._rollout(G)  # G responses per question, graded, truncated ones per algo.overlong
            t0 = time.perf_counter()
            self._consistent = None  # the weights change from here until the step is logged
            advantages, in_loss, kl_metrics = self._advantages(r, G)
            metrics = self._update_and_sync(r.batch, advantages, in_loss)
            t_update = time.perf_counter() - t0
            metrics.update(self._step_metrics(r, stats, advantages, in_loss, kl_metrics, G, t_step, t_update))
            metrics.update(self._evaluate_if_due(final=self.step == total))
            metrics["time/step_s"] = time.perf_counter() - t_step
            self.logger.log(self.step, metrics)
            self._consistent = (self.step, self.sampler.state_dict(), rng_state())
            self.logger.log_samples(self.step, sample_rows(r, self.cfg.logger.samples_per_step))
            self._stop_if_diverged()  # before this step's checkpoint: the directory keeps the checkpoints it has
            self._checkpoint_if_due()
            bar.step(metrics)
            if self.strategy.any(self.preemption.requested) and self.step < total:  # checkpoint, then requeue (SLURM) or exit
                self.preemption.hand_over(self.save_checkpoint(), self.step)

    def _rollout(self, G: int) -> tuple[ScoredRollout, _RolloutStats]:
        """Questions of the next batch, G responses each, graded, truncated ones handled per ``algo.overlong``.

        With ``algo.dynamic_sampling`` (DAPO §3.2) groups whose rewards are all equal (before ``algo.overlong=
        soft_penalty`` adds its length term) leave the batch, and further
        batches of questions are rolled out until every rank holds ``prompts_per_rollout`` groups with signal, or
        ``algo.dynamic_sampling_max_rounds`` rollouts were made (then zero-signal groups fill it:
        :func:`r1zero.algos.pick_groups`). The ranks roll out in lockstep (a collective decides each round). A step
        whose first rollout is full costs nothing more; the engine then sleeps before grading, as without.
        """
        algo = self.cfg.algo
        dynamic = bool(algo.dynamic_sampling)
        rounds, t_rollout, t_reward = [], 0.0, 0.0
        while True:
            questions = self.strategy.shard(self.sampler.next_batch())  # this rank's whole questions
            prompts = [self.template.apply(q.question) for q in questions]
            t0 = time.perf_counter()
            batch = self.engine.generate(prompts, self.sampling)
            if not dynamic:
                self.engine.sleep()  # free the engine's memory (vLLM on GPU) for the learner
            t_rollout += time.perf_counter() - t0
            t0 = time.perf_counter()
            rounds.append(self._score(questions, prompts, batch))
            t_reward += time.perf_counter() - t0
            if not dynamic:
                break
            kept = sum(int(signal_groups(x.scores, G).sum()) for x in rounds)
            if not self.strategy.any(kept < len(questions)) or len(rounds) >= int(algo.dynamic_sampling_max_rounds):
                self.engine.sleep()
                break
        generated = float(sum(x.batch.response_mask.sum() for x in rounds))
        if not dynamic:
            return rounds[0], _RolloutStats(t_rollout, t_reward, generated, {})
        r, metrics = self._keep_groups_with_signal(rounds, G)
        return r, _RolloutStats(t_rollout, t_reward, generated, metrics)

    def _score(self, questions: list, prompts: list[str], batch: RolloutBatch) -> ScoredRollout:
        """``batch`` graded without regard to truncation, then its training rewards and loss mask per
        ``algo.overlong``."""
        algo = self.cfg.algo
        references = [questions[i].answer for i in batch.prompt_index.tolist()]
        if self.reward_fn is None:
            results = self.grader.grade(batch.responses, references, self.template.answer_format)
        else:  # the question's raw record, or its two fields for a hand-built Question
            rows = [questions[i].row if questions[i].row is not None else
                    {"question": questions[i].question, "answer": questions[i].answer}
                    for i in batch.prompt_index.tolist()]
            results = self.grader.grade_fn(batch.responses, references, rows)
        graded = torch.tensor([r.reward for r in results], dtype=torch.float32)
        rewards, in_loss = OVERLONG[algo.overlong](
            graded, batch.response_lengths, batch.truncated, max_new_tokens=self.sampling.max_new_tokens,
            buffer_frac=float(algo.overlong_buffer_frac), penalty=float(algo.overlong_penalty))
        # dynamic sampling keeps a group by its answers (DAPO §3.2: accuracy), not by a length penalty on them
        scores = graded if algo.overlong == "soft_penalty" else rewards
        return ScoredRollout(questions, prompts, batch, results, references, rewards, in_loss, scores)

    def _keep_groups_with_signal(self, rounds: list[ScoredRollout], G: int) -> tuple[ScoredRollout, dict]:
        """Dynamic sampling's batch: the first ``prompts_per_rollout`` groups with signal of every round, in
        generation order (:func:`r1zero.algos.pick_groups`), and its ``rollout/...`` metrics (over every rank)."""
        # the groups of every round, in generation order: group u is rows u*G .. u*G+G-1, question prompt_index[u*G]
        rewards = torch.cat([x.rewards for x in rounds])
        has_signal = signal_groups(torch.cat([x.scores for x in rounds]), G)
        picked, filled = pick_groups(has_signal, len(rounds[0].questions))
        generated_groups, batch_groups, filled_all, reward_sum = self.strategy.all_reduce(
            [float(has_signal.numel()), float(len(picked)), float(filled), float(rewards.sum())])
        metrics = {
            "rollout/sampling_rounds": float(len(rounds)),
            # generated groups for each group with signal the batch kept (1: no group was dropped)
            "rollout/generated_groups_per_kept": generated_groups / max(batch_groups - filled_all, 1.0),
            "rollout/filled_groups": filled_all,  # zero-signal groups in the batch: the round cap was reached
            # every generated response, dropped groups included: the policy's reward, unfiltered
            "rollout/generated_reward_mean": reward_sum / max(generated_groups * G, 1.0),
        }
        if len(rounds) == 1:  # one rollout: its groups are the batch, as they are (picked is every group)
            return rounds[0], metrics
        return keep_groups(rounds, picked, G), metrics

    def _advantages(self, r: ScoredRollout, G: int) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """``(advantages (N,), in_loss (N,) bool, kl metrics)`` of a graded rollout.

        The advantages per ``algo.adv_baseline`` / ``adv_scale`` of the rewards, shaped by the KL penalty under
        ``algo.kl_in=reward``; under data parallelism computed over every rank's rewards (the batch-level axes need
        all of them), each rank keeping its own share. ``algo.zero_std=drop`` takes zero-std groups out of the loss.
        """
        algo, shaped, kl_metrics = self.cfg.algo, r.rewards, {}
        if algo.kl_in == "reward" and algo.kl_coef > 0:  # r - kl_coef * the response's summed KL, before A
            kl = self.learner.response_kl(r.batch)
            shaped = r.rewards - float(algo.kl_coef) * kl
            kl_metrics["rollout/kl_in_reward_mean"] = self._mean_over_ranks(kl)
        axes = {"baseline": str(algo.adv_baseline), "scale": str(algo.adv_scale), "eps": float(algo.adv_eps)}
        if self.strategy.distributed:
            shares = self.strategy.all_gather_object(shaped.tolist())
            start = sum(len(x) for x in shares[: self.strategy.rank])
            every = torch.tensor([x for share in shares for x in share], dtype=torch.float32)
            advantages = compute_advantages(every, G, **axes)[start : start + len(shaped)]
        else:
            advantages = compute_advantages(shaped, G, **axes)
        in_loss = r.in_loss & ~zero_std_rows(shaped, G) if algo.zero_std == "drop" else r.in_loss
        return advantages, in_loss, kl_metrics

    def _update_and_sync(self, batch: RolloutBatch, advantages: torch.Tensor, in_loss: torch.Tensor
                         ) -> dict[str, float]:
        """The learner's update (``train/...`` metrics), then the weight push: the next rollout samples from the
        updated policy."""
        metrics = self.learner.update(batch, advantages, step=self.step, in_loss=None if bool(in_loss.all()) else in_loss)
        self.engine.wake_up()
        self.strategy.sync_weights(self.engine)
        return metrics

    def _step_metrics(self, r: ScoredRollout, stats: _RolloutStats, advantages: torch.Tensor, in_loss: torch.Tensor,
                      kl_metrics: dict, G: int, t_step: float, t_update: float) -> dict[str, float]:
        """The step's ``rollout/``, ``time/``, ``perf/`` and ``data/`` metrics, over every rank."""
        batch, algo = r.batch, self.cfg.algo
        gather = self.strategy.all_gather_object if self.strategy.distributed else None  # every rank's rows
        metrics = rollout_metrics(*gather_rollout(batch, r.rewards, r.results, advantages, gather),
                                  group_size=G, max_new_tokens=self.sampling.max_new_tokens)
        metrics.update(stats.metrics | kl_metrics)
        if algo.overlong == "mask" or algo.zero_std == "drop":  # responses the loss left out
            metrics["rollout/out_of_loss_frac"] = self._mean_over_ranks((~in_loss).float())
        n_tokens, n_response_tokens = self.strategy.all_reduce([  # all ranks' tokens
            float(batch.response_mask.sum() + batch.attention_mask[:, : batch.prompt_len].sum()),
            stats.generated_tokens])
        step_s = time.perf_counter() - t_step
        metrics.update({
            "time/rollout_s": stats.t_rollout, "time/reward_s": stats.t_reward, "time/update_s": t_update,
            "perf/tokens_per_s": n_tokens / max(step_s, 1e-9),
            "perf/rollout_tokens_per_s": n_response_tokens / max(stats.t_rollout, 1e-9),
            # prompt + response tokens through the update's forward and backward, per second of update
            "perf/learner_tokens_per_s": n_tokens / max(t_update, 1e-9),
            "data/epoch": float(self.sampler.epoch),
            "data/dropped_long_prompts": float(self.dropped_long),  # questions over train.prompt_max_length
        })
        return metrics

    def _mean_over_ranks(self, values: torch.Tensor) -> float:
        """Mean of every rank's (n,) ``values`` (0 without any), in one collective."""
        total, count = self.strategy.all_reduce([float(values.sum()), float(len(values))])
        return total / max(count, 1.0)

    def _evaluate_if_due(self, final: bool) -> dict[str, float]:
        """:meth:`_evaluate` every ``eval.every`` steps, and after the last one (``eval.at_end``); else ``{}``."""
        ev = self.cfg.eval
        every = ev.every
        due = (every > 0 and self.step % every == 0) or (final and (every > 0 or ev.at_end))
        return self._evaluate() if due else {}

    def _evaluate(self) -> dict[str, float]:
        """The benchmark suite's ``eval/...`` metrics of the current policy, and one accuracy line (rank 0)."""
        if self._eval_suite is None:
            # read once, reused at every evaluation
            self._eval_suite = load_benchmarks(self.cfg.eval, self.cfg.paths.data_root)
        # The engine is awake and in sync here (evaluation runs between steps). Every rank evaluates
        # (ZeRO-3 forwards are collective); rank 0 writes the eval files.
        metrics = evaluate_suite(self.model, self.tokenizer, self.template, self.cfg.eval, engine=self.engine,
                                 grader=self.grader, step=self.step, suite=self._eval_suite,
                                 run_dir=self.run_dir if self.strategy.is_main else None)
        if self.strategy.is_main:  # one line per evaluation, between the progress bar's updates
            print(accuracy_line(self.step, metrics), flush=True)
        return metrics

    def _stop_if_diverged(self) -> None:
        """Stop once ``train.max_nonfinite_steps`` optimizer steps in a row were skipped. The weights are still
        those of the last finite step, but the run is going nowhere.

        One verdict for all ranks (collective, every step): the learner's streak is the same on every rank (the
        skip itself is agreed in ``clip_and_step``), and reducing the decision keeps it so whatever a strategy
        reports, so no rank stops while another starts the next step's collectives.

        Raises:
            NonFiniteTrainingError: on rank 0, one line naming the steps and the newest checkpoint (other ranks exit
                with status 2 without repeating it).
        """
        limit, streak = self.cfg.train.max_nonfinite_steps, self.learner.nonfinite_streak
        if not self.strategy.any(streak >= limit):
            return
        self._diverged = self._stopping_together = True
        if not self.strategy.is_main:
            raise SystemExit(2)
        latest = latest_checkpoint(self.run_dir)
        kept = f"the newest checkpoint is {latest}" if latest else "no checkpoint was written"
        raise NonFiniteTrainingError(
            f"train.max_nonfinite_steps={limit}: {streak} optimizer steps in a row up to step {self.step} had a "
            f"non-finite loss or gradient norm and were skipped (train/nonfinite_skipped in metrics.jsonl); stopped, "
            f"{kept} (none is written from non-finite weights); valid: a lower train.lr or dtype=float32 (the same "
            f"command with allow_config_change=true continues from there), or a higher train.max_nonfinite_steps")

    def _checkpoint_if_due(self) -> None:
        """:meth:`save_checkpoint` every ``train.save_every`` steps, the last step excepted (``final/`` holds it)."""
        every = self.cfg.train.save_every
        if every > 0 and self.step % every == 0 and self.step < self.total_steps:
            self.save_checkpoint()

    def save_checkpoint(self) -> Path:
        """Checkpoint the current step; returns its directory. Called on every rank (DeepSpeed shards and ZeRO-3
        gathers are collective); rank 0 writes the files.

        Raises:
            NonFiniteTrainingError: the weights are not finite (nothing is written).
        """
        self._saving = True  # a second signal mid-save does not save again (_stop_mid_step)
        try:
            s = self.strategy
            if not s.weights_finite():  # the optimizer skips non-finite steps; this makes the guarantee unconditional
                where = self.run_dir / "checkpoints" / f"step_{self.step:06d}"
                raise NonFiniteTrainingError(
                    f"{where}: not written, the weights are not finite; the newest checkpoint stays "
                    f"{latest_checkpoint(self.run_dir) or 'none'}; valid: resume=auto from it")
            if self.manifest is not None:
                self.manifest.update()  # the time used so far survives a kill after this checkpoint
            shards = s.save_sharded_state(self.run_dir / "checkpoints" / f".strategy_step_{self.step:06d}")
            full_state = s.full_state_dict()
            state = {"learner": self.learner.state_dict(), "sampler": self.sampler.state_dict(),
                     "rng_per_rank": s.all_gather_object(rng_state())}
            path = None
            if s.is_main:
                path = write_checkpoint(self.run_dir, self.step, self.model, self.tokenizer, state,
                                        keep=self.cfg.train.keep_checkpoints, state_dict=full_state,
                                        move_in={"strategy": shards} if shards else None)
            s.barrier()
            return s.broadcast_object(path)
        finally:
            self._saving = False

    def _stop_mid_step(self, stop: Interrupted) -> NoReturn:
        """A second signal mid-step: checkpoint the last completed step unless it is saved already (one process
        only: a collective save cannot start mid-step), print one line, exit with status 128 + signal."""
        in_flight, saved = self.step, None
        if self._consistent is not None and not self._saving and not self.strategy.distributed:
            step, sampler_state, rng = self._consistent
            path = self.run_dir / "checkpoints" / f"step_{step:06d}"
            if step > 0 and not (path / "trainer_state.pt").exists():
                self.step = step
                self.sampler.load_state_dict(sampler_state)
                set_rng_state(rng)  # resuming repeats the interrupted step as it would have run
                saved = self.save_checkpoint()
        latest = latest_checkpoint(self.run_dir)
        self.step = max(0, self._consistent[0] if self._consistent is not None else in_flight - 1)  # completed
        what = f"saved checkpoint {saved}" if saved else (
            f"newest checkpoint {latest}" if latest else "no checkpoint (a new run starts over)")
        print(f"r1zero: stopped by a second {stop} during step {in_flight}; {what}; metrics.jsonl keeps the steps "
              f"logged before. The same command with hydra.run.dir={self.run_dir} (resume=auto) continues the run.",
              file=sys.stderr, flush=True)
        raise SystemExit(128 + stop.signum)

    # ----------------------------------------------------------------------------------------------
    def cleanup(self) -> None:
        finished = self.total_steps is not None and self.step >= self.total_steps and not self._diverged
        unsaved = None
        if self.cfg.train.save_final and finished:
            if self.strategy.weights_finite():
                self.strategy.save_pretrained(self.model, self.tokenizer, self.run_dir / "final")
            else:
                finished = False
                unsaved = NonFiniteTrainingError(
                    f"{self.run_dir / 'final'}: not written, the weights are not finite; the newest checkpoint is "
                    f"{latest_checkpoint(self.run_dir) or 'none'}; valid: resume=auto from it")
        try:
            if getattr(self, "manifest", None) is not None:
                self.manifest.update(finished=finished)
                self.logger.update_config({"manifest": self.manifest.data})  # wandb: the final time used
        except OSError as err:  # a full disk: the error that stopped the run is the one to report
            log.warning("manifest not updated: %s", err)
        for closer in ("logger", "grader", "preemption"):
            obj = getattr(self, closer, None)
            if obj is not None:
                try:
                    obj.close()
                except OSError as err:  # the last flush on a full disk; the other closers still run
                    log.warning("closing the %s: %s", closer, err)
        if getattr(self, "strategy", None) is not None:
            if self._stopping_together:  # rank 0 has written everything: now every rank may leave
                self.strategy.barrier()
            self.strategy.cleanup()
        if self._lock is not None:  # after the last write (the OS would drop it at exit anyway)
            self._lock.release()
            self._lock = None
        if unsaved is not None:
            raise unsaved


def run(cfg: DictConfig | RunConfig, grader=None, engine=None) -> Path:
    """Run one training job from a composed config; returns the run directory. ``grader``, ``engine``: as
    :class:`R1ZeroRecipe` takes them (None: built from the config)."""
    recipe = R1ZeroRecipe(cfg, grader=grader, engine=engine)
    with unwritable_as_one_line(recipe.run_dir):
        try:
            try:
                recipe.setup()
            except RunComplete as done:
                print(done, flush=True)
                return recipe.run_dir
            print(f"r1zero: run directory {recipe.run_dir.resolve()}", flush=True)
            recipe.train()
        finally:
            recipe.cleanup()
    print(f"r1zero: done, {recipe.step} steps; metrics in {recipe.run_dir.resolve() / 'metrics.jsonl'}", flush=True)
    return recipe.run_dir


main = hydra_entry("train", run)


if __name__ == "__main__":
    main()
