"""Chosen-token log-probabilities, :func:`r1zero.model.logprob.token_logprobs`: hand-worked values and gradients, then
autograd's ``log_softmax`` + ``gather`` (values and gradients) across chunks, dtypes, strides and temperatures."""

from __future__ import annotations

import math

import pytest
import torch

from r1zero.model import logprob
from r1zero.model.logprob import token_logprobs


def _reference(logits, targets, temperature=1.0):
    return torch.log_softmax(logits.float() / temperature, -1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def _grads(fn, logits, targets, weights, temperature):
    x = logits.detach().clone().requires_grad_()
    out = fn(x, targets, temperature)
    (out * weights).sum().backward()
    return out.detach(), x.grad


def test_hand_worked_value_and_gradient():
    # softmax([0, ln 3]) = [1/4, 3/4]: log p(token 1) = ln(3/4); d/dz = onehot - softmax = [-1/4, 1/4]
    z = torch.tensor([[0.0, math.log(3.0)]], requires_grad=True)
    out = token_logprobs(z, torch.tensor([1]))
    out.sum().backward()
    assert out.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert z.grad[0].tolist() == pytest.approx([-0.25, 0.25], abs=1e-6)
    # temperature 2 on [0, 2 ln 3] is the same distribution; the gradient picks up the 1/2 of z / 2
    z2 = torch.tensor([[0.0, 2 * math.log(3.0)]], requires_grad=True)
    out2 = token_logprobs(z2, torch.tensor([1]), temperature=2.0)
    (3 * out2).sum().backward()  # an upstream gradient of 3
    assert out2.item() == pytest.approx(math.log(0.75), abs=1e-6)
    assert z2.grad[0].tolist() == pytest.approx([-3 / 8, 3 / 8], abs=1e-6)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk", [None, 5 * 301])  # the default (one chunk here), and 5 rows per chunk
def test_matches_log_softmax_gather(monkeypatch, temperature, chunk):
    if chunk is not None:
        monkeypatch.setattr(logprob, "_CPU_CHUNK", chunk)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(23, 301, generator=g) * 4
    targets = torch.randint(0, 301, (23,), generator=g)
    targets[7] = targets[8] = 300  # repeated ids; the last column
    weights = torch.randn(23, generator=g)
    out, grad = _grads(token_logprobs, logits, targets, weights, temperature)
    ref, ref_grad = _grads(_reference, logits, targets, weights, temperature)
    assert out.dtype == torch.float32 and grad.dtype == torch.float32
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_strided_logits_and_bf16():
    g = torch.Generator().manual_seed(1)
    base = torch.randn(301, 23, generator=g)  # .t() is a (23, 301) view with column-major strides
    targets = torch.randint(0, 301, (23,), generator=g)
    weights = torch.randn(23, generator=g)
    x = base.clone().requires_grad_()
    (token_logprobs(x.t(), targets) * weights).sum().backward()
    _, ref_grad = _grads(_reference, base.t(), targets, weights, 1.0)
    torch.testing.assert_close(x.grad.t(), ref_grad, rtol=1e-5, atol=1e-6)
    # bf16 logits: fp32 math, the gradient in bf16 (rounded once, as autograd's .float() backward rounds)
    half = (base.t() * 4).bfloat16()
    out, grad = _grads(token_logprobs, half, targets, weights, 0.7)
    ref, ref_grad = _grads(_reference, half, targets, weights, 0.7)
    assert out.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(grad.float(), ref_grad.float(), rtol=2 ** -7, atol=1e-6)  # one bf16 rounding step


def test_gradcheck_fp64(monkeypatch):
    monkeypatch.setattr(logprob, "_CPU_CHUNK", 2 * 7)  # two rows per chunk: the chunk edges are checked too
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda z: token_logprobs(z, torch.tensor([0, 6, 3, 3, 1]), 0.5), (x,))


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\(M, V\) logits and \(M,\) targets, got \(2, 3, 4\)"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"got \(2, 4\) and \(3,\)"):
        token_logprobs(torch.zeros(2, 4), torch.zeros(3, dtype=torch.long))

