"""A decode step on a static KV cache for Llama-family models (``rollout.decoder=loop``).

On a decode step's shape (a few dozen rows, one new token each) transformers' forward spends much of its time
outside its matmuls, and its matmuls reorder each bf16 weight before using it (docs/performance.md, "Rollout").
This step runs the same layers' arithmetic on the model's own parameters:

* the KV cache is one preallocated buffer per layer, written in place (no ``DynamicCache`` ``cat`` per layer and
  step), and the attention mask one boolean tensor;
* under bf16 on a CPU, the linears' weights are packed once into oneDNN's blocked layout, q/k/v and gate/up each
  one matrix (:class:`_PackedLinears`), and repacked only after the optimizer changed them;
* RMSNorm is ``F.rms_norm``, q and k rotate in one op.

Each op and its dtype is that of ``LlamaDecoderLayer`` / ``Qwen2DecoderLayer`` with ``sdpa`` attention for one
query token (``pack_gqa``), so under the same autocast the logits are bitwise those of the model's forward: greedy
and seeded sampled tokens are the same (tests/test_decode.py). Models it does not cover
(:func:`unsupported_reason`) decode through their own forward.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from ..model.load import cpu_bf16_matmuls
from ..model.speed_paths import SPEED_PATHS

SUPPORTED_MODEL_TYPES = SPEED_PATHS["static_cache"]  # r1zero.model.speed_paths.SPEED_PATHS says which types, and why


def unsupported_reason(model) -> str | None:
    """Why ``model`` cannot use :class:`StaticKVDecoder` (None when it can): the architecture, or a feature of it
    (sliding windows, an attention implementation other than sdpa, a non-SiLU MLP, ZeRO-3) this step does not
    reproduce."""
    model = getattr(model, "module", model)
    cfg = getattr(model, "config", None)
    kind = getattr(cfg, "model_type", None)
    if kind not in SUPPORTED_MODEL_TYPES:
        return f"model_type {kind!r} (the static-cache step covers {', '.join(SUPPORTED_MODEL_TYPES)})"
    if getattr(cfg, "sliding_window", None) and getattr(cfg, "use_sliding_window", kind == "mistral"):
        return "sliding-window attention"
    if getattr(cfg, "hidden_act", "silu") != "silu":
        return f"hidden_act {cfg.hidden_act!r}"
    if getattr(cfg, "_attn_implementation", "sdpa") != "sdpa":
        return f"attention implementation {cfg._attn_implementation!r}"
    if getattr(getattr(model, "model", None), "layers", None) is None or not hasattr(model, "lm_head"):
        return "no model.layers / lm_head"
    if hasattr(next(model.parameters()), "ds_id"):
        return "parameters partitioned by DeepSpeed ZeRO-3 (its forward hooks gather them)"
    return None


class _ModuleLinears:
    """The model's own ``nn.Linear`` modules, under whatever autocast the caller runs (any device, any dtype)."""

    def __init__(self, model):
        self.layers, self.lm_head = model.model.layers, model.lm_head

    def qkv(self, i, x):
        a = self.layers[i].self_attn
        return a.q_proj(x), a.k_proj(x), a.v_proj(x)

    def o(self, i, x):
        return self.layers[i].self_attn.o_proj(x)

    def gate_up(self, i, x):
        m = self.layers[i].mlp
        return m.gate_proj(x), m.up_proj(x)

    def down(self, i, x):
        return self.layers[i].mlp.down_proj(x)

    def head(self, x):
        return self.lm_head(x)


class _PackedLinears:
    """bf16 copies of the linears' weights in oneDNN's blocked layout (CPU), q/k/v and gate/up each one matrix.

    ``F.linear`` on a plain bf16 weight reorders it into that layout on every call, which on a small decoding
    batch costs about as much as the product: prepacked, the step's matmuls read each weight once (the speed-up:
    docs/performance.md, "Rollout"). The products are bitwise those of ``F.linear`` under bf16 autocast, fused or
    not (tests/test_decode.py).
    """

    def __init__(self, model, dtype):
        pack = torch.ops.mkldnn._reorder_linear_weight

        def packed(*linears):
            sizes = [lin.out_features for lin in linears]
            # cast each weight straight into its rows of one bf16 matrix (no fp32 concatenation first)
            w = linears[0].weight.new_empty((sum(sizes), linears[0].in_features), dtype=dtype)
            b = None if linears[0].bias is None else w.new_empty(sum(sizes))
            start = 0
            for lin, n in zip(linears, sizes):
                w[start : start + n].copy_(lin.weight.detach())
                if b is not None:
                    b[start : start + n].copy_(lin.bias.detach())
                start += n
            return pack(w, 64), b, sizes

        self.dtype, self.layers = dtype, []
        for layer in model.model.layers:
            a, m = layer.self_attn, layer.mlp
            self.layers.append((packed(a.q_proj, a.k_proj, a.v_proj), packed(a.o_proj),
                                packed(m.gate_proj, m.up_proj), packed(m.down_proj)))
        self.lm_head = packed(model.lm_head)

    def _run(self, packed, x):
        w, b, sizes = packed
        y = torch.ops.mkldnn._linear_pointwise(x.to(self.dtype), w, b, "none", [], "")
        return y.split(sizes, dim=-1) if len(sizes) > 1 else y

    def qkv(self, i, x):
        return self._run(self.layers[i][0], x)

    def o(self, i, x):
        return self._run(self.layers[i][1], x)

    def gate_up(self, i, x):
        return self._run(self.layers[i][2], x)

    def down(self, i, x):
        return self._run(self.layers[i][3], x)

    def head(self, x):
        return self._run(self.lm_head, x)


_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _linears(model, device: torch.device):
    """Prepacked linears when the step multiplies in bf16 on a CPU with oneDNN's bf16 kernels, else the modules
    themselves.

    The packed copy is kept per model and rebuilt only when a parameter changed (its ``_version``, which every
    in-place optimizer update bumps), so an evaluation and the rollout after it share one packing."""
    autocast = torch.is_autocast_enabled(device.type)
    dtype = torch.get_autocast_dtype(device.type) if autocast else next(model.parameters()).dtype
    if device.type != "cpu" or dtype != torch.bfloat16 or not hasattr(torch.ops.mkldnn, "_linear_pointwise") \
            or not cpu_bf16_matmuls():  # no oneDNN bf16 kernels (an AVX2 CPU): nothing to prepack for
        return _ModuleLinears(model)
    key = tuple((p.data_ptr(), p._version) for p in model.parameters())
    hit = _PACKED.get(model)
    if hit is None or hit[0] != key:
        hit = (key, _PackedLinears(model, dtype))
        _PACKED[model] = hit
    return hit[1]


class StaticKVDecoder:
    """Forward passes of a few new tokens per row over a KV cache preallocated for ``max_len`` positions.

    Args:
        model: a supported transformers causal LM (see :func:`unsupported_reason`), in eval mode.
        rows: batch rows of the cache.
        max_len: columns of the buffers (the prompt width + the decoding steps to come).
        device, dtype: of the buffers; ``dtype`` is the one attention reads keys and values in (the autocast dtype
            under autocast, else the parameters').

    ``extend`` writes its tokens' keys and values into the next columns of every layer's buffer and attends over
    the first ``width`` columns. Call it inside the autocast the model's own forward would run under.
    """

    def __init__(self, model, rows: int, max_len: int, device: torch.device, dtype: torch.dtype):
        model = getattr(model, "module", model)
        self.model, self.inner = model, model.model
        attn0 = self.inner.layers[0].self_attn
        self.head_dim, self.groups, self.scaling = attn0.head_dim, attn0.num_key_value_groups, attn0.scaling
        self.q_heads = model.config.num_attention_heads
        self.linears = _linears(model, device)
        shape = (rows, model.config.num_key_value_heads, max_len, self.head_dim)
        self.keys = [torch.empty(shape, device=device, dtype=dtype) for _ in self.inner.layers]
        self.values = [torch.empty(shape, device=device, dtype=dtype) for _ in self.inner.layers]
        self.width = 0

    @staticmethod
    def kv_dtype(model, device: torch.device) -> torch.dtype:
        """The dtype attention reads keys and values in here: the autocast dtype under autocast, else the model's."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return next(model.parameters()).dtype

    @classmethod
    def from_cache(cls, model, cache, max_len: int) -> StaticKVDecoder:
        """A decoder holding what a prefill left in a ``DynamicCache``, (B, kv_heads, L, head_dim) per layer."""
        k0 = cache.layers[0].keys
        self = cls(model, k0.shape[0], max_len, k0.device, cls.kv_dtype(model, k0.device))
        L = k0.shape[2]
        for layer, k, v in zip(cache.layers, self.keys, self.values):
            k[:, :, :L].copy_(layer.keys)
            v[:, :, :L].copy_(layer.values)
        self.width = L
        return self

    def _rebuild(self, rows: int, take) -> None:
        w = self.width

        def rebuilt(buf):
            out = buf.new_empty((rows, *buf.shape[1:]))
            out[:, :, :w] = take(buf[:, :, :w])
            return out

        self.keys = [rebuilt(k) for k in self.keys]
        self.values = [rebuilt(v) for v in self.values]

    def select(self, idx: torch.Tensor) -> None:
        """Keep only batch rows ``idx`` (B',) long: finished rows leave the cache (only the filled columns move)."""
        self._rebuild(idx.shape[0], lambda x: x.index_select(0, idx))

    def repeat_rows(self, n: int) -> None:
        """Each row ``n`` times in a row (``repeat_interleave``): a prompt's cache for its ``n`` responses."""
        self._rebuild(self.keys[0].shape[0] * n, lambda x: x.repeat_interleave(n, dim=0))

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """:meth:`extend` by one token per row: ``tokens``, ``positions`` (B,) long; ``mask`` (B, width + 1)."""
        return self.extend(tokens[:, None], positions[:, None], mask)

    def extend(self, tokens: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Run T new tokens per row; logits of the next token after the last one.

        Args:
            tokens: (B, T) long.
            positions: (B, T) long, their position ids.
            mask: (B, width + T) long or bool, nonzero where a row attends (zero on its padding). With T > 1 a
                query also sees only the columns up to its own (causal); each query must see at least one column.

        Returns:
            (B, V) logits for the last of the T positions, as the model's forward returns them.
        """
        inner, lin, col = self.inner, self.linears, self.width
        B, T = tokens.shape
        D, G, nq = self.head_dim, self.groups, self.q_heads
        end = col + T
        h = inner.embed_tokens(tokens)  # (B, T, hidden)
        cos, sin = inner.rotary_emb(h, positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        mask = mask.bool()
        if T == 1:
            # transformers drops an all-True mask and lets sdpa broadcast the KV heads (enable_gqa); with padding it
            # passes the (B, 1, 1, S) mask and packs each KV head's G query heads as G queries (pack_gqa).
            attn_mask = None if bool(mask.all()) else mask[:, None, None, :]
        else:
            causal = torch.arange(end, device=mask.device)[None, :] <= torch.arange(col, end, device=mask.device)[:, None]
            attn_mask = mask[:, None, None, :] & causal  # (B, 1, T, S)
        for i, layer in enumerate(inner.layers):
            x = _rms_norm(layer.input_layernorm, h)
            q, k, v = lin.qkv(i, x)
            # q and k rotate by the same angles: one rotation of both, elementwise the same arithmetic as
            # apply_rotary_pos_emb's two (bf16 projections times fp32 cos/sin promote to fp32 there too)
            qk = torch.cat([q.view(B, T, -1, D), k.view(B, T, -1, D)], dim=2).transpose(1, 2)
            qk = qk * cos + _rotate_half(qk) * sin
            q, k = qk[:, :nq], qk[:, nq:]
            v = v.view(B, T, -1, D).transpose(1, 2)
            kb, vb = self.keys[i], self.values[i]
            kb[:, :, col:end].copy_(k)
            vb[:, :, col:end].copy_(v)
            keys, values = kb[:, :, :end], vb[:, :, :end]
            if T > 1:  # repeat_kv, as transformers does with a mask and several queries
                o = F.scaled_dot_product_attention(q, keys.repeat_interleave(G, dim=1),
                                                   values.repeat_interleave(G, dim=1), attn_mask=attn_mask,
                                                   scale=self.scaling)
            elif attn_mask is None:
                o = F.scaled_dot_product_attention(q, keys, values, scale=self.scaling, enable_gqa=G > 1)
            else:
                o = F.scaled_dot_product_attention(q.reshape(B, -1, G, D), keys, values, attn_mask=attn_mask,
                                                   scale=self.scaling)
            o = o.reshape(B, -1, T, D).transpose(1, 2).reshape(B, T, -1)
            h = h + lin.o(i, o)
            x = _rms_norm(layer.post_attention_layernorm, h)
            gate, up = lin.gate_up(i, x)
            h = h + lin.down(i, F.silu(gate) * up)
        h = _rms_norm(inner.norm, h[:, -1:])
        self.width = end
        return lin.head(h[:, -1])


def _rms_norm(norm, h: torch.Tensor) -> torch.Tensor:
    """``norm(h)`` (a Llama/Qwen2 RMSNorm module); one fused op when ``h`` and the weight are fp32, where
    ``F.rms_norm`` is bitwise the module's pow/mean/rsqrt/mul sequence (tests/test_decode.py)."""
    w = norm.weight
    if h.dtype == w.dtype == torch.float32:
        return F.rms_norm(h, (h.shape[-1],), w, norm.variance_epsilon)
    return norm(h)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
