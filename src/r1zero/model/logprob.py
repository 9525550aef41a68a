"""Log-probabilities of chosen tokens from LM logits, with a backward that makes one (M, V) tensor.

``log_softmax(z / temperature)[target]`` through autograd costs several vocabulary-sized temporaries per row: the
log-sum-exp's shifted and exponentiated copies, then in the backward its softmax, the product with the incoming
gradient, the gather's zero-filled scatter and the sum of the two. At V = 49k (SmolLM2) to 152k (Qwen) those
temporaries are as large as the logits themselves (the peak memory, before and after: ``docs/performance.md``).
:func:`token_logprobs` computes the same
values chunk by chunk (each chunk's fp32 temporaries small enough to stay in cache) and its backward writes the
gradient ``(onehot(target) - softmax(z / temperature)) * grad / temperature`` straight into the one (M, V) tensor
autograd needs, a chunk at a time.
"""

from __future__ import annotations

import torch

_CPU_CHUNK = 1 << 19  # elements per chunk on a CPU (2 MiB of fp32): the chunk's passes run in cache
_DEVICE_CHUNK = 1 << 26  # elsewhere: few kernel launches, the fp32 temporary bounded (256 MiB)


def _rows_per_chunk(logits: torch.Tensor) -> int:
    budget = _CPU_CHUNK if logits.device.type == "cpu" else _DEVICE_CHUNK
    return max(1, budget // max(logits.shape[-1], 1))


def _math_dtype(logits: torch.Tensor) -> torch.dtype:
    return torch.promote_types(logits.dtype, torch.float32)  # fp32 for half-precision logits, fp64 kept


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, temperature: float):
        M, dtype = logits.shape[0], _math_dtype(logits)
        out = torch.empty(M, dtype=dtype, device=logits.device)
        lse = torch.empty(M, dtype=dtype, device=logits.device)
        rows = _rows_per_chunk(logits)
        for s in range(0, M, rows):
            z = logits[s : s + rows].to(dtype)
            if temperature != 1.0:
                z = z / temperature
            torch.logsumexp(z, dim=-1, out=lse[s : s + rows])
            out[s : s + rows] = z.gather(-1, targets[s : s + rows].unsqueeze(-1)).squeeze(-1)
        out -= lse
        ctx.save_for_backward(logits, targets, lse)
        ctx.temperature = temperature
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, targets, lse = ctx.saved_tensors
        temperature, (M, V), dtype = ctx.temperature, logits.shape, lse.dtype
        grad = grad.to(dtype) / temperature
        grad_logits = torch.empty((M, V), dtype=logits.dtype, device=logits.device)  # contiguous
        rows = _rows_per_chunk(logits)
        # logits in the math dtype: each chunk's math runs in the gradient's own memory; else in one chunk-sized
        # buffer, rounded to the logits' dtype once at the end as autograd's own cast would
        buf = None if logits.dtype == dtype else torch.empty((rows, V), dtype=dtype, device=logits.device)
        offsets = torch.arange(rows, device=logits.device) * V
        for s in range(0, M, rows):
            z, gl = logits[s : s + rows], grad_logits[s : s + rows]
            n, g = len(z), grad[s : s + rows]
            p = gl if buf is None else buf[:n]
            p.copy_(z)  # then divided in the math dtype (div with out= would round in the logits' dtype first)
            if temperature != 1.0:
                p.div_(temperature)
            p.sub_(lse[s : s + rows].unsqueeze(-1)).exp_().mul_(g.unsqueeze(-1).neg())  # -softmax * grad
            p.view(-1).index_add_(0, offsets[:n] + targets[s : s + rows], g)  # + onehot(target) * grad
            if p is not gl:
                gl.copy_(p)
        return grad_logits, None, None


def token_logprobs(logits: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(M,) ``log_softmax(logits / temperature)[target]`` per row, differentiable in ``logits``.

    The values and gradients of ``log_softmax(logits.float() / temperature).gather(-1, targets[:, None])``
    (up to float rounding; ``tests/test_logprob.py``), with the memory of one (M, V) gradient.

    Args:
        logits: (M, V), any float dtype. The math runs in fp32 (fp64 for fp64 logits), the result is in that
            dtype and the gradient comes back in ``logits.dtype``.
        targets: (M,) long token ids in ``[0, V)``.
        temperature: the sampling temperature the tokens were drawn at (> 0); 0 or 1 leave the logits as they are.

    Raises:
        ValueError: ``logits`` not 2-d, or ``targets`` not (M,).
    """
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"token_logprobs takes (M, V) logits and (M,) targets, got {tuple(logits.shape)} and "
                         f"{tuple(targets.shape)}")
    return _TokenLogprobs.apply(logits, targets, float(temperature) if temperature else 1.0)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """(M,) entropy ``-sum_v p_v log p_v`` of ``softmax(logits / temperature)`` per row, in nats, differentiable.

    Computed chunk by chunk in fp32 (fp64 kept) through autograd, which keeps each chunk's softmax for the backward:
    about twice the logits' memory, paid only when the entropy is asked for (``algo.entropy_coef > 0``).

    Raises:
        ValueError: ``logits`` not 2-d.
    """
    if logits.dim() != 2:
        raise ValueError(f"token_entropy takes (M, V) logits, got {tuple(logits.shape)}")
    dtype, rows, parts = _math_dtype(logits), _rows_per_chunk(logits), []
    for s in range(0, logits.shape[0], rows):
        z = logits[s : s + rows].to(dtype)
        if temperature and temperature != 1.0:
            z = z / temperature
        logp = torch.log_softmax(z, dim=-1)
        parts.append(-(logp.exp() * logp).sum(-1))
    return torch.cat(parts) if parts else logits.new_zeros(0, dtype=dtype)
