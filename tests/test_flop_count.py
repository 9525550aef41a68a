"""The learner benchmark's FLOP count covers attention on CPU (torch's counter registers no CPU flash kernel)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import learner_throughput


def _sdpa_fwd_bwd(is_causal: bool, mask: torch.Tensor | None):
    torch.manual_seed(0)
    q = torch.randn(2, 9, 30, 64, requires_grad=True)  # (b, heads, queries, head dim)
    k = torch.randn(2, 3, 50, 64, requires_grad=True)  # 3 key/value heads (GQA), 50 keys
    v = torch.randn(2, 3, 50, 64, requires_grad=True)

    def run():
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal, enable_gqa=True).sum().backward()

    return run


@pytest.mark.parametrize("is_causal, mask, share", [
    (False, None, 1.0),
    (False, torch.zeros(30, 50), 1.0),  # an explicit mask: the kernel computes every pair
    (True, None, 465 / 1500),  # top-left causal: query i sees keys 0..i, 1 + 2 + ... + 30 = 465 of 30 * 50 pairs
])
def test_cpu_attention_flops_are_counted(is_causal, mask, share):
    if is_causal:  # the share assumes PyTorch's top-left causal mask: the same output as tril(0)
        q, k, v = torch.randn(1, 2, 30, 8), torch.randn(1, 2, 50, 8), torch.randn(1, 2, 50, 8)
        tril = torch.ones(30, 50, dtype=torch.bool).tril()
        torch.testing.assert_close(F.scaled_dot_product_attention(q, k, v, is_causal=True),
                                   F.scaled_dot_product_attention(q, k, v, attn_mask=tril))
    # one (query, key) pair costs 2 * 64 FLOPs in each of the forward's 2 products (q k^T, p v) and the backward's
    # 5 (recomputed q k^T, dv, dp, dq, dk): 7 * 2 * 64 per pair and head, 2 x 9 = 18 (batch, head) pairs
    pairs = round(30 * 50 * share)
    expected = 7 * 2 * 64 * pairs * 18
    assert learner_throughput.counted_flops(_sdpa_fwd_bwd(is_causal, mask)) == expected
    assert learner_throughput._causal_share(30, 50, is_causal) == pytest.approx(share)
