"""The rollout interface: prompts in, sampled token ids + masks out.

Every engine (transformers ``generate``, vLLM) returns the same :class:`RolloutBatch`, so the learner,
the reward and the logger never know which engine produced the samples. Graded, it is a :class:`ScoredRollout`;
:func:`keep_groups` joins the groups dynamic sampling keeps from several.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, Sequence

import torch

from ..schema.registry import Registry

#: ``rollout.name`` -> the engine class and its config schema; an engine module registers its class with
#: :func:`register_engine` (``r1zero.rollout`` imports every engine module, so the registry is full once it is).
ENGINES = Registry("rollout engine", key="rollout.name")
register_engine = ENGINES.register

@dataclass(frozen=True)
class SamplingConfig:
    """How to sample responses (paper Table 6 defaults live in ``conf/train.yaml``).

    Attributes:
        n: responses per prompt (the GRPO ``group_size`` G).
        max_new_tokens: generation budget per response, in tokens; a response that reaches it without a
            stop is *truncated* (reward 0).
        temperature: softmax temperature; 0 means greedy.
        top_p: nucleus mass in (0, 1]; 1 disables it.
        top_k: keep the k most likely tokens; 0 or -1 disables it.
        stop: strings that end a response; the stop string is kept in the text and its tokens in the mask.
    """

    n: int = 1
    max_new_tokens: int = 3000
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


@dataclass
class RolloutBatch:
    """The trajectory of one rollout: N = len(prompts) * group_size sampled responses, the group_size responses of a
    prompt contiguous (rows ``u*G .. u*G+G-1`` are group ``u``). Engines build it with :meth:`from_token_lists`.

    Attributes:
        input_ids: (N, P + T) long. Prompt left-padded to P, response right-padded to T.
        attention_mask: (N, P + T) long, 1 on real prompt and response tokens.
        response_mask: (N, T) float, 1 on response tokens that count in the loss: up to and including
            the EOS token or the token that completes a stop string.
        prompt_len: P, the padded prompt width; the response of row i is ``input_ids[i, P:]``.
        responses: N decoded response strings (special tokens skipped; text after a stop string cut).
        truncated: (N,) bool, True where the response hit ``max_new_tokens`` without EOS or stop.
        prompt_index: (N,) long, the group index: each row's prompt in the ``prompts`` argument.
        group_size: G, the responses per prompt (``sampling.n``).
        behaviour_logprobs: (N, T) float32 or None: each response token's log-probability under the distribution the
            engine sampled it from, ``log_softmax(logits / temperature)`` as the learner scores it, 0 past the response
            (HF ``rollout.decoder=loop``: before top-k / top-p; vLLM: after them, its ``processed_logprobs``, the same
            when top-k / top-p are off: ``r1zero.rollout.vllm``); None where the engine does not report it
            (``rollout.decoder=generate``, greedy decoding, a vLLM without ``logprobs_mode``).
        finish_reasons: N engine finish reasons (vLLM: ``stop`` / ``length``), or None where the engine has none.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    prompt_len: int
    responses: list[str]
    truncated: torch.Tensor
    prompt_index: torch.Tensor
    group_size: int
    behaviour_logprobs: torch.Tensor | None = None
    finish_reasons: list[str | None] | None = None

    @classmethod
    def from_token_lists(cls, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]],
                         responses: list[str], truncated: Sequence[bool], *, group_size: int, pad_id: int,
                         behaviour_logprobs: Sequence[Sequence[float]] | None = None,
                         finish_reasons: list[str | None] | None = None) -> RolloutBatch:
        """The batch of ``len(prompt_ids) * group_size`` responses, row i the response to prompt ``i // group_size``.

        Args:
            prompt_ids: each prompt's token ids (left-padded with ``pad_id`` to the longest, P).
            response_ids: each row's response ids, exactly the tokens in the loss (right-padded with ``pad_id`` to
                the longest, T >= 1).
            responses, truncated, finish_reasons: per row, as the attributes.
            behaviour_logprobs: per row, one log-probability per response token, or None.

        Raises:
            ValueError: ``len(response_ids) != len(prompt_ids) * group_size``.
        """
        N = len(response_ids)
        if N != len(prompt_ids) * group_size:
            raise ValueError(f"{N} responses for {len(prompt_ids)} prompts x group_size {group_size}")
        P = max((len(p) for p in prompt_ids), default=0)
        T = max(max((len(r) for r in response_ids), default=0), 1)  # one column even when every response is empty
        input_ids = torch.full((N, P + T), pad_id, dtype=torch.long)
        attention_mask = torch.zeros((N, P + T), dtype=torch.long)
        response_mask = torch.zeros((N, T), dtype=torch.float32)
        lp = None if behaviour_logprobs is None else torch.zeros((N, T), dtype=torch.float32)
        for row, resp in enumerate(response_ids):
            prompt = prompt_ids[row // group_size]
            if prompt:
                input_ids[row, P - len(prompt) : P] = torch.tensor(prompt, dtype=torch.long)
                attention_mask[row, P - len(prompt) : P] = 1
            if resp:
                input_ids[row, P : P + len(resp)] = torch.tensor(resp, dtype=torch.long)
                attention_mask[row, P : P + len(resp)] = 1
                response_mask[row, : len(resp)] = 1.0
                if lp is not None:
                    lp[row, : len(resp)] = torch.tensor(behaviour_logprobs[row][: len(resp)], dtype=torch.float32)
        return cls(input_ids=input_ids, attention_mask=attention_mask, response_mask=response_mask, prompt_len=P,
                   responses=list(responses), truncated=torch.tensor(list(truncated), dtype=torch.bool).reshape(N),
                   prompt_index=torch.arange(len(prompt_ids), dtype=torch.long).repeat_interleave(group_size),
                   group_size=group_size, behaviour_logprobs=lp, finish_reasons=finish_reasons)

    @property
    def response_ids(self) -> torch.Tensor:
        """(N, T) the response part of ``input_ids``."""
        return self.input_ids[:, self.prompt_len :]

    @property
    def response_lengths(self) -> torch.Tensor:
        """(N,) number of response tokens in the mask."""
        return self.response_mask.sum(-1).long()

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def select(self, rows: torch.Tensor) -> RolloutBatch:
        """Rows ``rows`` ((K,) long) as a batch of their own, every per-row field taken along; P, T and G kept."""
        idx = rows.tolist()
        return RolloutBatch(
            input_ids=self.input_ids[rows], attention_mask=self.attention_mask[rows],
            response_mask=self.response_mask[rows], prompt_len=self.prompt_len,
            responses=[self.responses[i] for i in idx], truncated=self.truncated[rows],
            prompt_index=self.prompt_index[rows], group_size=self.group_size,
            behaviour_logprobs=None if self.behaviour_logprobs is None else self.behaviour_logprobs[rows],
            finish_reasons=None if self.finish_reasons is None else [self.finish_reasons[i] for i in idx],
        )


def concat_rollouts(batches: Sequence[RolloutBatch], num_prompts: Sequence[int]) -> RolloutBatch:
    """One batch of the rows of ``batches`` in order, prompts re-padded on the left to the widest P and responses on
    the right to the widest T (padding: token id 0, attention 0).

    Args:
        batches: rollouts of successive ``generate`` calls, of one group size.
        num_prompts: how many prompts each call had; batch k's ``prompt_index`` is shifted by the prompts before it.

    Returns:
        The batch; ``behaviour_logprobs`` and ``finish_reasons`` joined when every batch has them, else None.

    Raises:
        ValueError: the batches' group sizes differ.
    """
    if len(batches) == 1:
        return batches[0]
    if len({b.group_size for b in batches}) != 1:
        raise ValueError(f"cannot join rollouts of group sizes {sorted({b.group_size for b in batches})}")
    P = max(b.prompt_len for b in batches)
    T = max(b.response_mask.shape[1] for b in batches)
    ids, att, resp, index, offset = [], [], [], [], 0
    behaviour = [] if all(b.behaviour_logprobs is not None for b in batches) else None
    for b, n in zip(batches, num_prompts, strict=True):
        left, right = P - b.prompt_len, T - b.response_mask.shape[1]
        ids.append(torch.nn.functional.pad(b.input_ids, (left, right), value=0))
        att.append(torch.nn.functional.pad(b.attention_mask, (left, right), value=0))
        resp.append(torch.nn.functional.pad(b.response_mask, (0, right), value=0.0))
        if behaviour is not None:
            behaviour.append(torch.nn.functional.pad(b.behaviour_logprobs, (0, right), value=0.0))
        index.append(b.prompt_index + offset)
        offset += int(n)
    finish = None if any(b.finish_reasons is None for b in batches) else [f for b in batches for f in b.finish_reasons]
    return RolloutBatch(
        input_ids=torch.cat(ids), attention_mask=torch.cat(att), response_mask=torch.cat(resp), prompt_len=P,
        responses=[r for b in batches for r in b.responses], truncated=torch.cat([b.truncated for b in batches]),
        prompt_index=torch.cat(index), group_size=batches[0].group_size,
        behaviour_logprobs=None if behaviour is None else torch.cat(behaviour), finish_reasons=finish,
    )


@dataclass
class ScoredRollout:
    """A rollout graded: this rank's questions, their G responses each, and per response the grader's verdict, the
    training reward and whether it enters the loss. Row i of ``batch`` answers ``questions[batch.prompt_index[i]]``.
    The questions and verdicts are the caller's objects (``Question``, ``GradeResult``), kept row-aligned here.

    Attributes:
        questions: the questions asked, one per prompt.
        prompts: their templated prompts.
        batch: the N responses.
        results: N grader verdicts (graded without regard to truncation).
        references: N reference answers, each row's question's.
        rewards: (N,) training rewards (``algo.overlong`` applied).
        in_loss: (N,) bool, the responses in the loss (``algo.overlong=mask`` leaves truncated ones out).
        scores: (N,) what decides whether a group has signal under dynamic sampling.
    """

    questions: list
    prompts: list[str]
    batch: RolloutBatch
    results: list
    references: list
    rewards: torch.Tensor
    in_loss: torch.Tensor
    scores: torch.Tensor


def keep_groups(rollouts: Sequence[ScoredRollout], picked: torch.Tensor, group_size: int) -> ScoredRollout:
    """The groups ``picked`` of several rollouts as one: ``picked`` (K,) long indexes the groups of the rollouts joined
    in order (group u is rows ``u*G .. u*G+G-1``, G = ``group_size``); the result's prompts are those K groups'
    questions, in ``picked`` order (``prompt_index`` renumbered 0..K-1)."""
    G = group_size
    questions = [q for x in rollouts for q in x.questions]
    prompts = [p for x in rollouts for p in x.prompts]
    batch = concat_rollouts([x.batch for x in rollouts], [len(x.questions) for x in rollouts])
    results = [g for x in rollouts for g in x.results]
    references = [a for x in rollouts for a in x.references]
    rows = (picked.unsqueeze(1) * G + torch.arange(G)).flatten()
    asked = batch.prompt_index[picked * G].tolist()
    batch = batch.select(rows)
    batch.prompt_index = torch.arange(len(picked)).repeat_interleave(G)
    per_row = [torch.cat([getattr(x, k) for x in rollouts])[rows] for k in ("rewards", "in_loss", "scores")]
    return ScoredRollout([questions[i] for i in asked], [prompts[i] for i in asked], batch,
                         [results[i] for i in rows.tolist()], [references[i] for i in rows.tolist()], *per_row)


def encode_prompts(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt, with the tokenizer's own special tokens: a BOS for tokenizers that add one.

    This is how vLLM tokenizes a text prompt and how oat's ``PromptDataset`` measures it (``tokenizer(prompt)``,
    ``add_special_tokens=True``): Llama-3's tokenizer prepends ``<|begin_of_text|>``; Qwen2.5's and SmolLM2's add
    nothing. Both rollout engines (and so evaluation) tokenize through here.
    """
    if not prompts:
        return []
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


class RolloutEngine(Protocol):
    """What the training loop needs from a generator.

    ``generate`` must not change the policy's parameters. ``update_weights`` is called after every optimizer
    update, before the next rollout, with the policy's ``(hf_name, tensor)`` pairs
    (:meth:`Strategy.named_parameters_for_sync <r1zero.learner.strategy.Strategy.named_parameters_for_sync>`), so an engine
    holding its own copy of the weights (vLLM) samples from the current policy. A tensor is valid only until the
    next pair is asked for (ZeRO-3 gathers one module at a time): copy it first. An engine reads either none of
    the pairs (it generates with the policy module itself, as ``hf`` does) or all of them, on every rank.
    ``sleep``/``wake_up`` free and restore engine memory around the learner's update; engines that share the
    policy module make them no-ops.
    """

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig) -> RolloutBatch: ...

    def update_weights(self, named_tensors: Iterator[tuple[str, torch.Tensor]]) -> None: ...

    def sleep(self) -> None: ...

    def wake_up(self) -> None: ...
