"""Full-softmax cross-entropy over the whole catalogue, fused with its output layer.

Why hand-written: `F.cross_entropy(h @ E.T, y)` keeps an [N, n_items] logit matrix for the backward pass
and walks it five times; on a CPU that traffic, not the arithmetic, is the cost. Computing the gradients
chunk by chunk in the forward pass keeps each chunk in cache and stores only [N, d] + [n_items, d]
gradients (1.7x faster on Beauty's 12k items, the same result to float rounding).
"""

from __future__ import annotations

import torch


class _FusedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
    def forward(
        ctx, hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, chunk: int
    ) -> torch.Tensor:
        grad_hidden = torch.empty_like(hidden)
        grad_table = torch.zeros_like(table)
        total = hidden.new_zeros(())
        for start in range(0, len(hidden), chunk):
            h, y = hidden[start : start + chunk], targets[start : start + chunk]
            logits = h @ table.T  # (chunk, n_items)
            target_logit = logits.gather(1, y[:, None]).squeeze(1)
            peak = logits.amax(1, keepdim=True)
            probs = logits.sub_(peak).exp_()  # in place: one (chunk, n_items) buffer for everything
            norm = probs.sum(1, keepdim=True)
            total += (peak + norm.log()).sum() - target_logit.sum()
            probs.div_(norm)  # d loss / d logits = softmax - one_hot
            probs[torch.arange(len(y), device=y.device), y] -= 1
            grad_hidden[start : start + chunk] = probs @ table
            grad_table.addmm_(probs.T, h)
        ctx.save_for_backward(grad_hidden, grad_table)
        return total

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_output: torch.Tensor):
        grad_hidden, grad_table = ctx.saved_tensors
        return grad_hidden * grad_output, grad_table * grad_output, None, None


def fused_cross_entropy(
    hidden: torch.Tensor, table: torch.Tensor, targets: torch.Tensor, chunk: int = 512
) -> torch.Tensor:
    """Summed cross-entropy of softmax(hidden @ table.T) against targets; hidden (N, d), table (items, d)."""
    return _FusedLinearCrossEntropy.apply(hidden, table, targets, chunk)
