"""The learner: recompute ``old_logprobs``, then clipped policy-gradient updates with exact normalisation.

A rollout batch of N responses is split into optimizer steps of ``mini_batch_size`` responses and each of
those into micro-batches of ``micro_batch_size``. Every micro-batch loss is normalised by the totals of its
optimizer step (``num_responses``, ``num_tokens``), so the accumulated gradient is the same for any
micro-batch size (Dr. GRPO §3.2: "every micro-batch / gradient-accumulation split gives the same gradient").

Under a data-parallel strategy (``strategy=ddp|zero2|zero3``, :mod:`r1zero.learner.strategy`) each rank holds its own
share of the rollout; the totals are summed over ranks and each rank's loss is multiplied by the world size
(DDP/DeepSpeed average gradients), so the reduced gradient is the single-process gradient of the whole batch.

The forwards themselves (a micro-batch's response log-probabilities, padded, shared-prompt or packed) are
:mod:`r1zero.learner.forward`; here they are fed micro-batches (:meth:`Learner._micro_inputs`) and their loss
backpropagated.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..algos import policy_loss, response_kl
from ..model.load import unwrap
from ..model.packing import PackedLayout
from ..model.packing import pack as pack_rows
from ..model.packing import supported as packing_supported
from ..rollout.base import RolloutBatch
from ..schema import AlgoConfig, TrainConfig, typed
from .forward import PACKED_TYPES, model_type, prompt_groups, recomputes_activations, sequence_logprobs
from .strategy import DistEnv, Strategy

log = logging.getLogger("r1zero.learner")


def length_order(prompt_index: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """A permutation of B rows that puts responses of similar length next to each other, prompts kept whole.

    Micro-batches are consecutive slices of the rows, each trimmed to its longest response, so sorting by length
    leaves less padding to compute. A prompt's rows stay contiguous (a micro-batch of whole groups still runs
    each prompt once, :func:`prompt_groups`): prompts are ordered by their longest response, longest first
    (ties: first appearance), and the rows inside a prompt longest first (ties: row order).

    Args:
        prompt_index: (B,) long, the prompt each row answers.
        lengths: (B,) response lengths in tokens.

    Returns:
        (B,) long, positions into the rows: ``rows[length_order(...)]`` is the grouped order.
    """
    B = len(prompt_index)
    if B == 0:
        return torch.arange(0)
    lengths = lengths.long()
    _, inv = torch.unique(prompt_index, return_inverse=True)
    U = int(inv.max()) + 1
    longest = torch.zeros(U, dtype=torch.long).scatter_reduce(0, inv, lengths, "amax", include_self=False)
    first = torch.full((U,), B, dtype=torch.long).scatter_reduce(0, inv, torch.arange(B), "amin")
    # a lexicographic sort by (-longest of its prompt, first row of its prompt, -length): stable sorts, last key first
    order = torch.argsort(-lengths, stable=True)
    order = order[torch.argsort(first[inv[order]], stable=True)]
    return order[torch.argsort(-longest[inv[order]], stable=True)]


def _to_host(values: list) -> list[float]:
    """Floats of a list of 0-d tensors (on one device) and floats, read back with one device sync."""
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    flat = iter(torch.stack([t.double() for t in tensors]).cpu().tolist()) if tensors else iter(())
    return [next(flat) if isinstance(v, torch.Tensor) else float(v) for v in values]


class _Micro(NamedTuple):
    """One micro-batch as the forward takes it (:meth:`Learner._micro_inputs`)."""

    ids: torch.Tensor  # (B, L) on the device
    att: torch.Tensor | None  # (B, L) on the device; None when packed
    p: int  # prompt columns of ids
    mask: torch.Tensor  # (B, t_len) response mask on the device
    t_len: int  # the rows' longest response
    groups: tuple[torch.Tensor, int] | None  # prompt_groups of the rows (padded forward only)
    layout: PackedLayout | None  # the packed layout (packed forward only)


def _chunks(idx: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for s in range(0, idx.numel(), size):
        yield idx[s : s + size]


@dataclass
class _Tally:
    """What an update gathers over its optimizer steps (:meth:`Learner.update`), read back once at the end."""

    sums: dict[str, torch.Tensor] = field(default_factory=dict)  # token-weighted metric sums, 0-d on the device
    weights: dict[str, torch.Tensor] = field(default_factory=dict)  # their weights (response tokens), 0-d
    losses: list[torch.Tensor] = field(default_factory=list)  # each step taken: its 0-d loss
    grad_norms: list[float] = field(default_factory=list)  # each step taken: its gradient norm
    skipped: int = 0  # optimizer steps skipped for a non-finite loss or gradient norm
    micro_done: int = 0  # micro-batches run so far in the update
    first_bad: float = float("inf")  # the first micro-batch (0-based over the update) with a non-finite loss


def _accumulate_metrics(sums: dict, weights: dict, metrics: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
    """Add a micro-batch's policy_loss ``metrics`` (0-d tensors) into ``sums``/``weights`` (0-d float64 on the device),
    weighted by its response tokens in the loss (``mask``: (B, T)); ``ratio_max`` is a running max (weight 1) and
    ``pg_loss`` is left out."""
    w = mask.sum(dtype=torch.float64)
    for k, v in metrics.items():
        v = v.double()
        if k == "ratio_max":
            sums[k] = torch.maximum(sums[k], v) if k in sums else v
            weights[k] = torch.ones((), dtype=torch.float64, device=mask.device)
        elif k != "pg_loss":
            sums[k] = sums[k] + v * w if k in sums else v * w
            weights[k] = weights[k] + w if k in weights else w


class Learner:
    """AdamW + micro-batched PPO-clip updates of a causal LM.

    Args:
        model: the policy (trained in place).
        train_cfg: the ``train`` config (:class:`~r1zero.schema.TrainConfig` or a node it types: lr, betas, weight_decay, max_grad_norm, warmup_steps,
            mini_batch_size, micro_batch_size, ppo_epochs).
        algo_cfg: the ``algo`` config (:class:`~r1zero.schema.AlgoConfig` or a node it types): the objective's axes
            (:func:`r1zero.algos.policy_loss`).
        max_new_tokens: the generation budget (Dr. GRPO's constant normaliser unless ``algo.loss_agg_constant``).
        temperature: the rollout sampling temperature (logits are scaled by it).
        ref_model: frozen initial policy, used only when ``algo.kl_coef > 0``.
        strategy: a :class:`~r1zero.learner.strategy.Strategy` (set up, process group joined); it builds and owns the
            optimizer and wraps the model. None: one device, plain AdamW.
        seed: seeds the per-epoch shuffle of rows into optimizer batches (with the update's ``step``).
    """

    def __init__(self, model, train_cfg, algo_cfg, *, max_new_tokens: int, temperature: float, ref_model=None,
                 strategy: Strategy | None = None, seed: int = 0):
        self.seed = int(seed)
        self.strategy = strategy if strategy is not None else Strategy(env=DistEnv())  # one process, whatever the env
        # typed once here: every default comes from r1zero.schema (a node or a partial dict works too)
        self.cfg, self.algo = typed(TrainConfig, train_cfg), typed(AlgoConfig, algo_cfg)
        self.max_new_tokens, self.temperature = int(max_new_tokens), float(temperature)
        a = self.algo
        # the KL term of the loss: algo.kl_in=reward puts it in the reward instead (response_kl, before the advantage)
        self.loss_kl_coef = float(a.kl_coef) if a.kl_in == "loss" else 0.0
        # the objective's axes, as policy_loss takes them (the same for every micro-batch)
        self.objective = {
            "clip_eps": float(a.clip_eps), "aggregation": str(a.loss_agg), "ratio": str(a.ratio), "clip": str(a.clip),
            "clip_eps_high": None if a.clip_eps_high is None else float(a.clip_eps_high),
            "dual_clip_c": float(a.dual_clip_c), "kl_estimator": str(a.kl_estimator),
            "agg_constant": None if a.loss_agg_constant is None else int(a.loss_agg_constant),
            "kl_coef": self.loss_kl_coef, "max_new_tokens": self.max_new_tokens,
            "entropy_coef": float(a.entropy_coef), "tis_cap": None if a.tis_cap is None else float(a.tis_cap),
        }
        self.entropy = float(a.entropy_coef) > 0  # the forwards also compute the policy's entropy (its bonus)
        self.strategy.prepare(model, self.cfg)
        # self.model: the plain HF module (rollouts, no-grad log-probs, saving); training forwards go through
        # strategy.train_model (the DDP / DeepSpeed wrapper, or this same module).
        self.model = self.strategy.module
        self.ref_model = self.strategy.prepare_reference(ref_model)

        # token positions fed through the model by the update's forwards, and how many of them were padding
        # (attention mask 0): perf/padding_frac. Counted from the CPU masks, so no device sync.
        self.fed_tokens = [0, 0]
        # optimizer steps skipped in a row for a non-finite loss or gradient norm, across updates (the trainer
        # stops at train.max_nonfinite_steps); the same on every rank
        self.nonfinite_streak = 0

    @property
    def optimizer(self):
        return self.strategy.optimizer

    @property
    def scheduler(self):
        return self.strategy.scheduler

    # ----------------------------------------------------------------------------------------------
    def _order(self, batch: RolloutBatch, rows: torch.Tensor) -> torch.Tensor:
        """``rows`` in micro-batch order: grouped by length (:func:`length_order`) unless ``train.group_by_length`` is off."""
        if not self.cfg.group_by_length or len(rows) < 2:
            return rows
        return rows[length_order(batch.prompt_index[rows], batch.response_lengths[rows])]

    def _micro_inputs(self, model, batch: RolloutBatch, idx: torch.Tensor) -> _Micro:
        """Rows ``idx`` as ``model``'s forward takes them, and the positions it will compute counted.

        Packed (:meth:`_packs`): the rows' :func:`r1zero.model.packing.pack` layout, every position real. Otherwise the
        rows sliced and trimmed of the columns that are padding in all of them, with their :func:`prompt_groups`
        when ``model`` can share a prompt's cache (the prompt columns are then fed once per prompt). Adds
        ``(positions, padding positions)`` to :attr:`fed_tokens` (from the host masks: no device sync).
        """
        device = self.strategy.device or next(self.model.parameters()).device
        ids, att = batch.input_ids[idx], batch.attention_mask[idx]
        resp_mask = batch.response_mask[idx]
        P = batch.prompt_len
        t_len = int(resp_mask.sum(-1).max().item()) if resp_mask.numel() else 0
        t_len = max(t_len, 1)
        first = int((att[:, :P].cumsum(-1) == 0).sum(-1).min().item())  # shortest left pad
        ids, att, p = ids[:, first : P + t_len], att[:, first : P + t_len], P - first
        mask = resp_mask[:, :t_len].to(device)
        if self._packs(model):
            layout = pack_rows(ids, att, p, batch.response_lengths[idx], batch.prompt_index[idx])
            self.fed_tokens[0] += layout.num_tokens
            return _Micro(ids.to(device), None, p, mask, t_len, None, layout)
        groups = self._groups(model, batch, idx)
        fed = [att] if groups is None else [att[groups[0], :p], att[:, p : p + t_len - 1]]
        self.fed_tokens[0] += sum(a.numel() for a in fed)
        self.fed_tokens[1] += sum(int((a == 0).sum()) for a in fed)
        return _Micro(ids.to(device), att.to(device), p, mask, t_len, groups, None)

    def _packs(self, model) -> bool:
        """Whether ``model``'s forwards run packed (:mod:`r1zero.model.packing`): ``train.group_by_length`` on, a
        :data:`PACKED_TYPES` LM (or a DDP / DeepSpeed wrapper of one), no activation checkpointing."""
        return bool(self.cfg.group_by_length) and packing_supported() and not recomputes_activations(unwrap(model)) \
            and model_type(model) in PACKED_TYPES

    def _groups(self, model, batch: RolloutBatch, idx: torch.Tensor):
        """:func:`prompt_groups` of rows ``idx`` where ``model`` can share a prompt's cache, else None."""
        if model is not self.model:
            return None  # a DDP / DeepSpeed wrapper expects one forward per backward
        if recomputes_activations(model):
            return None  # recomputed activations would run the shared prompt once per response again
        P = batch.prompt_len
        return prompt_groups(batch.prompt_index[idx], (batch.input_ids[idx, :P], batch.attention_mask[idx, :P]))

    @torch.no_grad()
    def compute_logprobs(self, model, batch: RolloutBatch, rows: torch.Tensor | None = None) -> torch.Tensor:
        """(N, T) response log-probabilities under ``model`` (zero on padding and on rows not in ``rows``)."""
        was_training = model.training
        model.eval()
        out = torch.zeros_like(batch.response_mask)
        try:
            rows = torch.arange(len(batch)) if rows is None else rows
            done = []
            for idx in _chunks(self._order(batch, rows), int(self.cfg.micro_batch_size)):
                m = self._micro_inputs(model, batch, idx)
                with self.strategy.autocast():  # bf16 compute over fp32 master weights (strategy.param_dtype)
                    lp = sequence_logprobs(model, m.ids, m.att, m.p, self.temperature, groups=m.groups,
                                           lengths=batch.response_lengths[idx], layout=m.layout)
                done.append((idx, m.t_len, (lp * m.mask).float()))
            for idx, t_len, lp in done:  # copied back after the loop: the first copy waits, the rest do not
                out[idx, :t_len] = lp.cpu()
        finally:
            model.train(was_training)
        return out

    # ----------------------------------------------------------------------------------------------
    def mini_batches(self, batch: RolloutBatch, step: int, epoch: int) -> list[torch.Tensor]:
        """This rank's optimizer batches of one epoch: lists of row indices into ``batch``.

        With several optimizer steps per rollout the rows are shuffled (a permutation seeded by
        ``(seed, step, epoch)``), as oat's learner draws its ``train_batch_size`` batches from a shuffled
        ``DataLoader``; the paper's runs take 8 steps of 128 out of 1024 responses. Each optimizer batch is then
        ordered by ``prompt_index`` (the gradient does not depend on the order inside it), so the responses to
        one prompt share its forward in a micro-batch. One optimizer batch (``mini_batch_size`` null or at least
        the rollout) keeps the rollout's order.
        """
        N = len(batch)
        # mini_batch_size counts responses of the whole (all-rank) optimizer batch; this rank holds 1/world of it.
        mini = int(self.cfg.mini_batch_size) // self.strategy.world_size if self.cfg.mini_batch_size else N
        if mini >= N:
            return [torch.arange(N)]
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + int(step)) * 101 + int(epoch))
        perm = torch.randperm(N, generator=g)
        out = []
        for chunk in _chunks(perm, mini):
            out.append(chunk[torch.argsort(batch.prompt_index[chunk], stable=True)])
        return out

    @torch.no_grad()
    def response_kl(self, batch: RolloutBatch) -> torch.Tensor:
        """(N,) each response's summed ``algo.kl_estimator`` between the sampling policy (the current weights, before
        the update) and the reference, for ``algo.kl_in=reward``.

        Raises:
            ValueError: no reference model.
        """
        logprobs = self.compute_logprobs(self.model, batch)
        return response_kl(logprobs, self._reference_logprobs(batch), batch.response_mask, str(self.algo.kl_estimator))

    def _reference_logprobs(self, batch: RolloutBatch) -> torch.Tensor:
        """(N, T) the reference policy's log-probabilities of ``batch``'s response tokens (no grad).

        Raises:
            ValueError: no reference model.
        """
        if self.ref_model is None:
            raise ValueError("algo.kl_coef > 0 needs a reference model")
        with self.strategy.reference_on_device(self.ref_model) as ref:
            return self.compute_logprobs(ref, batch)

    def update(self, batch: RolloutBatch, advantages: torch.Tensor, step: int = 0,
               in_loss: torch.Tensor | None = None) -> dict[str, float]:
        """One PPO phase on a rollout batch; returns ``train/...`` metrics.

        An optimizer step whose loss (any micro-batch, any rank) or gradient norm is not finite is skipped
        (:meth:`~r1zero.learner.strategy.Strategy.clip_and_step`): ``train/nonfinite_skipped`` counts them,
        ``train/nonfinite_micro_batch`` names the first micro-batch (0-based over the update, smallest over ranks)
        whose loss was not finite, and :attr:`nonfinite_streak` the skips in a row; ``train/loss`` and
        ``train/grad_norm`` average the steps taken.

        Args:
            batch: the rollout (N responses).
            advantages: (N,) per-response advantages.
            step: the training step, which (with ``seed``) draws the shuffle of :meth:`mini_batches`.
            in_loss: (N,) bool, the responses in the loss (``algo.overlong=mask``, ``algo.zero_std=drop``); the others
                count in no normaliser (:meth:`accumulate_gradients`). None: all.
        """
        self.fed_tokens = [0, 0]
        epochs = [self.mini_batches(batch, step, e) for e in range(int(self.cfg.ppo_epochs))]
        old_logprobs = self._old_logprobs(batch, epochs[0][0])
        ref_logprobs = self._reference_logprobs(batch) if self.loss_kl_coef > 0 else None
        tally = _Tally()
        n_steps = sum(len(mbs) for mbs in epochs)
        self.model.train()
        for epoch, mini_batches in enumerate(epochs):
            for k, mb in enumerate(mini_batches):
                self.strategy.zero_grad()
                micro_losses: list[torch.Tensor] = []
                step_loss = self.accumulate_gradients(batch, mb, old_logprobs, advantages, ref_logprobs,
                                                      sums=tally.sums, weights=tally.weights,
                                                      fill_old=epoch == 0 and k == 0,
                                                      micro_losses=micro_losses, in_loss=in_loss)
                self._optimizer_step(step_loss, micro_losses, tally, step, epoch * len(mini_batches) + k + 1, n_steps)
        return self._update_metrics(batch, advantages, old_logprobs, tally)

    def _old_logprobs(self, batch: RolloutBatch, first: torch.Tensor) -> torch.Tensor:
        """(N, T) ``old_logprobs`` of the rows outside the first optimizer batch ``first``; 0 on the rows of ``first``.

        Those of ``first`` come from its own forward pass (:meth:`accumulate_gradients` with ``fill_old``: the
        parameters have not moved yet, so they are the sampling policy's, and the ratio is exactly 1); only rows
        trained after an optimizer step need a separate no-grad pass, taken now, before any step.
        """
        old_logprobs = torch.zeros_like(batch.response_mask)
        is_later = torch.ones(len(batch), dtype=torch.bool)
        is_later[first] = False
        later = torch.nonzero(is_later).flatten()  # in row order, i.e. grouped by prompt
        if later.numel():
            old_logprobs[later] = self.compute_logprobs(self.model, batch, rows=later)[later]
        return old_logprobs

    def _optimizer_step(self, step_loss: torch.Tensor, micro_losses: list[torch.Tensor], tally: _Tally, step: int,
                        opt_step: int, n_steps: int) -> None:
        """Clip and step on the accumulated gradient unless a loss or the gradient norm is not finite; ``tally`` it.

        Args:
            step_loss: 0-d, the optimizer batch's loss (this rank's part, detached, on the device).
            micro_losses: each micro-batch's 0-d loss, in the order they ran.
            opt_step: 1-based number of this optimizer step in the update, of ``n_steps`` (for the warning).
        """
        finite = torch.isfinite(torch.stack(micro_losses))  # (micro-batches,) on the device, not read yet
        grad_norm, stepped = self.strategy.clip_and_step(float(self.cfg.max_grad_norm), finite.all())
        if stepped:
            tally.losses.append(step_loss)
            tally.grad_norms.append(float(grad_norm))
            self.nonfinite_streak = 0
        else:
            tally.skipped += 1
            self.nonfinite_streak += 1
            bad = (~finite).nonzero().flatten().tolist()
            if bad:
                tally.first_bad = min(tally.first_bad, tally.micro_done + bad[0])
            where = (f"the loss of micro-batch {', '.join(str(tally.micro_done + b) for b in bad)} is not finite"
                     if bad else "every loss is finite")
            log.warning("step %d: optimizer step %d/%d skipped (rank %d: %s; gradient norm %s); weights, "
                        "optimizer and lr schedule unchanged (%d in a row)", step, opt_step, n_steps,
                        self.strategy.rank, where, grad_norm, self.nonfinite_streak)
        tally.micro_done += len(micro_losses)

    def _reduce_tally(self, tally: _Tally, advantages: torch.Tensor):
        """The update's device-side metrics read back once, and summed over ranks when distributed.

        Returns:
            ``(sums, weights, losses, adv_stats)``: token-weighted metric sums and their weights (dicts of floats),
            the steps' losses, and ``[sum, sum of |.|, count]`` of the (N,) ``advantages``; of the global batch when
            distributed (also :attr:`fed_tokens`).
        """
        keys = sorted(tally.sums)
        host = _to_host([tally.sums[k] for k in keys] + [tally.weights[k] for k in keys] + tally.losses)
        sums, weights = dict(zip(keys, host[: len(keys)])), dict(zip(keys, host[len(keys) : 2 * len(keys)]))
        losses = host[2 * len(keys) :]
        adv_stats = [float(advantages.sum()), float(advantages.abs().sum()), float(advantages.numel())]
        if self.strategy.distributed:
            # Every rank ran the same optimizer steps on its share: report metrics of the global batch
            # (token-weighted sums, per-step losses summed over ranks, grad norms already global).
            keys = sorted(k for k in sums if k != "ratio_max")
            flat = self.strategy.all_reduce([sums[k] for k in keys] + [weights[k] for k in keys] + losses + adv_stats
                                            + [float(x) for x in self.fed_tokens])
            n, L = len(keys), len(losses)
            sums.update(zip(keys, flat[:n]))
            weights.update(zip(keys, flat[n : 2 * n]))
            losses, adv_stats = flat[2 * n : 2 * n + L], flat[2 * n + L : 2 * n + L + 3]
            self.fed_tokens = [int(x) for x in flat[2 * n + L + 3 :]]
            if "ratio_max" in sums:
                sums["ratio_max"] = self.strategy.all_reduce(sums["ratio_max"], op="max")
        return sums, weights, losses, adv_stats

    def _update_metrics(self, batch: RolloutBatch, advantages: torch.Tensor, old_logprobs: torch.Tensor,
                        tally: _Tally) -> dict[str, float]:
        """The update's ``train/...`` (and ``rollout/mismatch_*``, ``perf/padding_frac``) metrics from its ``tally``."""
        sums, weights, losses, adv_stats = self._reduce_tally(tally, advantages)
        grad_norms = tally.grad_norms
        metrics = {f"train/{k}": sums[k] / max(weights[k], 1e-12) for k in sums}
        if tally.skipped:  # the same count on every rank; the micro-batch where some rank first saw a non-finite loss
            first_bad = self.strategy.all_reduce(tally.first_bad, op="min")
            if first_bad != float("inf"):
                metrics["train/nonfinite_micro_batch"] = float(first_bad)
        if batch.behaviour_logprobs is not None:
            metrics.update(self._mismatch(batch, old_logprobs))
        metrics.update({
            "train/loss": sum(losses) / len(losses) if losses else float("nan"),  # NaN: left out of the row
            "train/grad_norm": sum(grad_norms) / len(grad_norms) if grad_norms else float("nan"),
            "train/nonfinite_skipped": float(tally.skipped),
            "train/lr": self.strategy.last_lr(),
            "train/optimizer_steps": float(len(losses)),
            "train/advantage_mean": adv_stats[0] / max(adv_stats[2], 1.0),
            "train/advantage_abs_mean": adv_stats[1] / max(adv_stats[2], 1.0),
            # share of the token positions the update's forwards computed that were padding
            "perf/padding_frac": self.fed_tokens[1] / max(self.fed_tokens[0], 1),
        })
        return metrics

    def _mismatch(self, batch: RolloutBatch, old_logprobs: torch.Tensor) -> dict[str, float]:
        """``rollout/mismatch_*``: how far the engine's log-probabilities of its samples (``behaviour_logprobs``) are
        from the learner's of the same tokens before the update (``old_logprobs``), over every response token of every
        rank: the mean and max of ``|delta|``, the k3 estimate of KL(engine || learner) (``exp(delta) - 1 - delta``,
        ``delta = learner - engine``) and the share of tokens whose ratio leaves [0.5, 2]."""
        mask = batch.response_mask
        delta = (old_logprobs - batch.behaviour_logprobs) * mask
        sums = [float(delta.abs().sum()), float(((delta.exp() - 1 - delta) * mask).sum()),
                float(((delta.abs() > math.log(2)) & (mask > 0)).sum()), float(mask.sum())]
        worst = float(delta.abs().max()) if delta.numel() else 0.0
        if self.strategy.distributed:
            sums, worst = self.strategy.all_reduce(sums), self.strategy.all_reduce(worst, op="max")
        n = max(sums[3], 1.0)
        return {"rollout/mismatch_abs_mean": sums[0] / n, "rollout/mismatch_abs_max": worst,
                "rollout/mismatch_k3": sums[1] / n, "rollout/mismatch_ratio_out_frac": sums[2] / n}

    def accumulate_gradients(
        self,
        batch: RolloutBatch,
        rows: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        ref_logprobs: torch.Tensor | None = None,
        *,
        micro_batch_size: int | None = None,
        sums: dict | None = None,
        weights: dict | None = None,
        fill_old: bool = False,
        micro_losses: list | None = None,
        in_loss: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Backpropagate the loss of one optimizer batch ``rows`` in micro-batches; returns its loss (0-d, detached).

        Every micro-batch is normalised by the totals of ``rows`` (responses and tokens), so the gradient
        left in ``.grad`` is the same whatever ``micro_batch_size`` is, and whatever order the rows come in:
        they are grouped by length first (:meth:`_order`). Metrics are accumulated token-weighted into
        ``sums``/``weights`` when given, as 0-d float64 tensors on the device (nothing here waits for the
        device; :meth:`update` reads everything back once). With ``fill_old`` the parameters are still the
        sampling policy's: each micro-batch's detached log-probabilities are used as, and written into,
        ``old_logprobs`` (N, T). ``micro_losses``, when given, gets each micro-batch's loss (0-d, detached, on the
        device), in the order they ran. ``in_loss`` (N,) bool: only these responses enter the loss and its totals
        (a response out of it is still forwarded, so ``old_logprobs`` is filled for every row).

        Distributed (``strategy.distributed``): ``rows`` are this rank's share of the optimizer batch. The
        totals are summed over ranks and the loss is multiplied by ``strategy.loss_multiplier`` (the world
        size, cancelling DDP/DeepSpeed gradient averaging), so the reduced gradient is that of the union of
        all ranks' rows. The returned loss is this rank's part (the parts sum to the global loss).
        """
        micro = int(micro_batch_size or self.cfg.micro_batch_size)
        strategy = self.strategy
        loss_rows = None if in_loss is None else in_loss.to(batch.response_mask.dtype)  # (N,) 1 / 0
        totals = self._loss_totals(batch, rows, loss_rows)
        scale = strategy.loss_multiplier
        behaviour = self._behaviour_logprobs(batch)
        total, filled = None, []
        chunks = list(_chunks(self._order(batch, rows), micro))
        for i, idx in enumerate(chunks):
            # DDP: no gradient all-reduce until the last micro-batch; DeepSpeed: the accumulation boundary.
            with strategy.accumulate(is_last=i == len(chunks) - 1):
                loss, m, mask = self._micro_batch_loss(batch, idx, old_logprobs, advantages, ref_logprobs, behaviour,
                                                       loss_rows, totals, filled if fill_old else None)
                strategy.backward(loss * scale if scale != 1.0 else loss)
            total = loss.detach() if total is None else total + loss.detach()
            if micro_losses is not None:
                micro_losses.append(loss.detach())
            if sums is not None and weights is not None:
                _accumulate_metrics(sums, weights, m, mask)
        for idx, t_len, old in filled:  # copied back after the loop: the first copy waits, the rest do not
            old_logprobs[idx, :t_len] = old.cpu()
        return total if total is not None else torch.zeros(())

    def _loss_totals(self, batch: RolloutBatch, rows: torch.Tensor, loss_rows: torch.Tensor | None
                     ) -> tuple[int, float]:
        """``(num_responses, num_tokens)`` of the optimizer batch ``rows`` in the loss (``loss_rows``: (N,) 1 / 0, None:
        all), summed over ranks when distributed; each at least 1 (every response out of the loss: a zero loss, not
        0 / 0).

        Raises:
            ValueError: distributed, and this rank holds no rows.
        """
        strategy = self.strategy
        if loss_rows is None:
            num_responses, num_tokens = len(rows), float(batch.response_mask[rows].sum().item())
        else:
            num_responses = int(loss_rows[rows].sum().item())
            num_tokens = float((batch.response_mask[rows] * loss_rows[rows, None]).sum().item())
        if strategy.distributed:
            if len(rows) == 0:
                raise ValueError(f"rank {strategy.rank} has no responses in an optimizer batch; every rank needs "
                                 f"some (prompts_per_rollout and mini_batch_size divisible by the world size)")
            num_responses, num_tokens = strategy.all_reduce([float(num_responses), num_tokens])
            num_responses = round(num_responses)
        return max(num_responses, 1), max(num_tokens, 1.0)

    def _behaviour_logprobs(self, batch: RolloutBatch) -> torch.Tensor | None:
        """(N, T) the engine's log-probabilities of its samples when ``algo.tis_cap`` weighs by them, else None.

        Raises:
            ValueError: ``algo.tis_cap`` set and the rollout carries no ``behaviour_logprobs``.
        """
        if self.objective["tis_cap"] is None:
            return None
        if batch.behaviour_logprobs is None:
            raise ValueError("algo.tis_cap needs the rollout engine's log-probabilities of its samples "
                             "(rollout=hf with rollout.decoder=loop, or rollout=vllm, and a temperature > 0)")
        return batch.behaviour_logprobs

    def _micro_batch_loss(self, batch: RolloutBatch, idx: torch.Tensor, old_logprobs: torch.Tensor,
                          advantages: torch.Tensor, ref_logprobs: torch.Tensor | None,
                          behaviour: torch.Tensor | None, loss_rows: torch.Tensor | None, totals: tuple[int, float],
                          filled: list | None):
        """The forward and :func:`r1zero.algos.policy_loss` of the micro-batch of rows ``idx`` (B of them).

        Args:
            old_logprobs, ref_logprobs, behaviour: (N, T) on the host; sliced to (B, t_len) for the rows.
            advantages: (N,) per-response advantages.
            loss_rows: (N,) 1 / 0, the responses in the loss; None: all.
            totals: ``(num_responses, num_tokens)`` of the optimizer batch (:meth:`_loss_totals`).
            filled: given (``fill_old``), the forward's own detached log-probabilities are the ``old_logprobs``
                (ratio exactly 1) and ``(idx, t_len, (B, t_len) old)`` is appended for the caller to write back.

        Returns:
            ``(loss, metrics, mask)``: the 0-d loss (with its graph), policy_loss's 0-d metric tensors, and the
            (B, t_len) response_mask of the rows in the loss (on the device).
        """
        model = self.strategy.train_model
        plain = model is self.model  # a wrapper's own forward must run (its hooks): no lengths
        m = self._micro_inputs(model, batch, idx)
        mask, t_len = m.mask, m.t_len
        with self.strategy.autocast():
            logprobs = sequence_logprobs(model, m.ids, m.att, m.p, self.temperature,
                                         groups=m.groups, lengths=batch.response_lengths[idx] if plain else None,
                                         layout=m.layout, entropy=self.entropy)
        logprobs, entropy = logprobs if self.entropy else (logprobs, None)
        dev = logprobs.device
        if filled is not None:  # on-policy: this forward's own values are the old ones (ratio exactly 1)
            old = (logprobs.detach() * mask).float()
            filled.append((idx, t_len, old))
        else:
            old = old_logprobs[idx, :t_len].to(dev)
        if loss_rows is not None:
            mask = mask * loss_rows[idx].to(dev).unsqueeze(1)
        num_responses, num_tokens = totals
        loss, metrics = policy_loss(
            logprobs,
            old,
            advantages[idx].to(dev),
            mask,
            num_responses=num_responses,
            num_tokens=num_tokens,
            ref_logprobs=None if ref_logprobs is None else ref_logprobs[idx, :t_len].to(dev),
            entropy=entropy,
            behaviour_logprobs=behaviour[idx, :t_len].to(dev) if behaviour is not None else None,
            tensor_metrics=True,
            **self.objective,
        )
        return loss, metrics, mask

    def state_dict(self) -> dict:
        return self.strategy.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.strategy.load_state_dict(state)
