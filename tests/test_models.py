"""Model loading (:mod:`r1zero.model.load`)."""

from __future__ import annotations

import pytest
import torch
import transformers
from transformers import Qwen2Config, Qwen2ForCausalLM

from r1zero.model.load import build_byte_tokenizer, gguf_to_hf_cache


def test_the_one_time_gguf_conversion_leaves_the_seeded_rng_alone(tmp_path, monkeypatch):
    """A run seeds, then loads its model: the first run on a machine converts the GGUF, and that conversion builds
    a model (random init, discarded). It must not move the global RNG, or the same seed would sample differently
    on the first run than on every later one (the quickstart did: held-out accuracy 0.475 vs 0.511 at step 0)."""
    torch.manual_seed(0)
    gguf = Qwen2ForCausalLM(Qwen2Config(vocab_size=300, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: gguf)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", lambda *a, **k: build_byte_tokenizer())
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "model.gguf").write_bytes(b"GGUF")
    torch.manual_seed(1)
    state = torch.get_rng_state()
    out = gguf_to_hf_cache(tmp_path / "src", "model.gguf", tmp_path / "cache" / "m")
    assert torch.equal(torch.get_rng_state(), state)
    monkeypatch.undo()
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), gguf.state_dict().values()))


def test_auto_bf16_picks_bf16_only_where_it_is_fast(monkeypatch):
    from r1zero.model import load as models

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert models.resolve_dtype("auto", cpu) == torch.float32 and models.resolve_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(models, "cpu_bf16_matmuls", lambda: True)  # AVX512 / AMX: bf16 autocast is the faster
    assert models.resolve_dtype("auto_bf16", cpu) == torch.bfloat16
    monkeypatch.setattr(models, "cpu_bf16_matmuls", lambda: False)  # AVX2: bf16 matmuls ~8x slower than fp32
    assert models.resolve_dtype("auto_bf16", cpu) == torch.float32
    assert models.resolve_dtype("auto_bf16", cuda) == torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype 'fp8'; valid choices: auto, auto_bf16, float32"):
        models.resolve_dtype("fp8", cpu)
