"""The packed (padding-free) forward, :mod:`r1zero.model.packing`: its layout by hand, and the padded forward's values
and gradients for every architecture it runs (sliding windows included)."""

from __future__ import annotations

import pytest
import torch
from conftest import make_batch
from transformers import AutoModelForCausalLM, LlamaConfig, MistralConfig, Qwen2Config, Qwen3Config

from r1zero.learner.forward import HIDDEN_HEAD_TYPES, PACKED_TYPES, sequence_logprobs
from r1zero.model import packing

SMALL = {"vocab_size": 200, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
         "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": False}


def _model(config):
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)


MODELS = {
    "llama": lambda: _model(LlamaConfig(**SMALL)),
    "qwen3": lambda: _model(Qwen3Config(head_dim=8, **SMALL)),
    # a 3-token window: shorter than every prompt here, so it cuts into prompts and responses alike
    "mistral_window_3": lambda: _model(MistralConfig(sliding_window=3, **SMALL)),
    # the window on layer 1 only (layer 0 full attention), with biased q/k/v projections
    "qwen2_window_on_layer_1": lambda: _model(Qwen2Config(use_sliding_window=True, sliding_window=4,
                                                          max_window_layers=1, **SMALL)),
}


def test_the_speed_paths_read_one_table():
    """The learner's lists (LM head on real positions, packed micro-batches) and the static-cache decoder's are rows
    of r1zero.model.speed_paths.SPEED_PATHS; the packed test above covers every type its row lists."""
    from r1zero.model.speed_paths import SPEED_PATHS
    from r1zero.rollout import static_cache

    assert HIDDEN_HEAD_TYPES is SPEED_PATHS["hidden_head"] and PACKED_TYPES is SPEED_PATHS["packed"]
    assert static_cache.SUPPORTED_MODEL_TYPES is SPEED_PATHS["static_cache"]
    assert {name.split("_")[0] for name in MODELS} == set(PACKED_TYPES)


def test_the_layout_by_hand():
    """Rows 0 and 1 answer prompt 0 (2 real tokens in columns 1-2 of P=3), row 2 prompt 1 (3 tokens); responses of
    3, 1 and 2 tokens (T=3, L=6). Packed: prompt 0 [1, 2], row 0's inputs [3, 4] (all but its last token), row 1
    nothing (its one token is predicted by the prompt), prompt 1 [12, 13, 14], row 2's input [15]."""
    ids = torch.arange(18).view(3, 6)
    att = torch.tensor([[0, 1, 1, 1, 1, 1], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 0]])
    ids[1, :3] = ids[0, :3]
    layout = packing.pack(ids, att, 3, torch.tensor([3, 1, 2]), torch.tensor([0, 0, 1]))
    assert layout.tokens.tolist() == [1, 2, 3, 4, 12, 13, 14, 15]
    assert layout.position_ids.tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert layout.pieces == ((2, (2,)), (3, (1,)))
    # row 0: prompt's last (packed 1) predicts its token 0, packed 2-3 its tokens 1-2; row 1: packed 1 again;
    # row 2: prompt 1's last (packed 6) and its input (packed 7)
    assert layout.predict.tolist() == [1, 2, 3, 1, 6, 7]
    assert layout.targets.tolist() == [0, 1, 2, 3, 6, 7]  # flat into (3, T=3)
    assert layout.num_tokens == 8
    # one index but different prompt tokens: not shared; an empty response adds nothing
    ids[1, 2] = 99
    other = packing.pack(ids, att, 3, torch.tensor([3, 0, 2]), torch.tensor([0, 0, 1]))
    assert other.pieces == ((2, (2,)), (2, ()), (3, (1,)))
    assert other.targets.tolist() == [0, 1, 2, 6, 7]
    att[1, :3] = 0
    with pytest.raises(ValueError, match="row 1 of the micro-batch has an empty prompt"):
        packing.pack(ids, att, 3, torch.tensor([3, 1, 2]), torch.tensor([0, 1, 2]))


def _count_calls(model):
    """Hooks counting embedding and decoder calls and the rows each LM-head call gets."""
    calls = {"embed": 0, "decoder": 0, "head_rows": []}

    def count(name):
        return lambda *args: calls.__setitem__(name, calls[name] + 1)

    hooks = [model.model.embed_tokens.register_forward_hook(count("embed")),
             model.model.register_forward_hook(count("decoder")),
             model.lm_head.register_forward_hook(lambda m, a, o: calls["head_rows"].append(a[0].shape[:-1]))]
    return calls, hooks


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_packed_forward_gives_the_padded_values_and_gradients(name):
    """Every response token's log-probability and the gradient of a weighted sum of them equal the padded plain
    forward's, for whole prompt groups and for a micro-batch that splits one (rows 1-6: a prompt's rows share it
    wherever they are consecutive); one embedding call, one decoder forward, one LM-head call over exactly the
    real response positions; the model's own attention is back afterwards."""
    model = MODELS[name]()
    assert model.config.model_type in PACKED_TYPES
    batch = make_batch([5, 9], [1, 14, 2, 13, 12, 1, 3, 14], 4)
    weight = torch.linspace(-1, 1, len(batch)).unsqueeze(1)
    for rows in (torch.arange(8), torch.arange(1, 7)):
        ids, att, mask = batch.input_ids[rows], batch.attention_mask[rows], batch.response_mask[rows]
        lengths = batch.response_lengths[rows]
        model.zero_grad(set_to_none=True)
        plain = sequence_logprobs(model, ids, att, batch.prompt_len, 0.7) * mask
        (plain * weight[rows]).sum().backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        model.zero_grad(set_to_none=True)
        layout = packing.pack(ids, att, batch.prompt_len, lengths, batch.prompt_index[rows])
        calls, hooks = _count_calls(model)
        try:
            packed = sequence_logprobs(model, ids, None, batch.prompt_len, 0.7, layout=layout)
        finally:
            for h in hooks:
                h.remove()
        assert model.config._attn_implementation == "sdpa"
        assert calls == {"embed": 1, "decoder": 1, "head_rows": [torch.Size([1, int(lengths.sum())])]}
        assert torch.equal(packed != 0, mask.bool())  # zero exactly past each row's length
        torch.testing.assert_close(packed, plain, atol=1e-5, rtol=0)
        (packed * weight[rows]).sum().backward()
        torch.testing.assert_close(torch.cat([p.grad.flatten() for p in model.parameters()]), grad,
                                   atol=1e-5, rtol=1e-4)
    assert layout.pieces[0][0] == 5 and len(layout.pieces) == 2  # rows 1-3 share prompt 0, rows 4-6 prompt 1


def test_the_model_gets_its_own_attention_back_and_refuses_what_cannot_pack():
    model = MODELS["llama"]()
    batch = make_batch([5, 9], [1, 14, 2, 13], 2)
    layout = packing.pack(batch.input_ids, batch.attention_mask, 9, batch.response_lengths, batch.prompt_index)

    def boom(*args):
        raise KeyboardInterrupt

    hook = model.model.layers[1].register_forward_hook(boom)
    try:
        with pytest.raises(KeyboardInterrupt):
            sequence_logprobs(model, batch.input_ids, None, 9, layout=layout)
    finally:
        hook.remove()
    assert model.config._attn_implementation == "sdpa"
    model.config._attn_implementation = packing.ATTENTION  # e.g. a forward outside packed_logits
    try:
        with pytest.raises(RuntimeError, match="runs only inside r1zero.model.packing.packed_logits"):
            model(input_ids=batch.input_ids)
    finally:
        model.config._attn_implementation = "sdpa"
    model.config.model_type = "unlisted"
    with pytest.raises(ValueError, match="a packed layout needs a causal LM of one of"):
        sequence_logprobs(model, batch.input_ids, None, 9, layout=layout)
