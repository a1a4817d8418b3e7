"""The fused output-layer cross-entropy equals torch's, value and gradients."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from foundrec.models.losses import fused_cross_entropy


def test_fused_cross_entropy_matches_torch() -> None:
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(300, 16, generator=generator, requires_grad=True)
    table = torch.randn(1000, 16, generator=generator, requires_grad=True)
    targets = torch.randint(0, 1000, (300,), generator=generator)
    expected = F.cross_entropy(hidden @ table.T, targets, reduction="sum")
    grads = torch.autograd.grad(expected * 0.5, (hidden, table))
    got = fused_cross_entropy(hidden, table, targets, chunk=64)  # several chunks and a ragged last one
    assert torch.allclose(got, expected, rtol=1e-5)
    for mine, theirs in zip(torch.autograd.grad(got * 0.5, (hidden, table)), grads, strict=True):
        assert torch.allclose(mine, theirs, atol=1e-5)
