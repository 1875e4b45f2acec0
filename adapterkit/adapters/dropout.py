"""The dropout of LoRA branches, fast on CPU.

LoRA dropout runs on the input of every adapted layer, so on CPU it is a large part of a
training step: torch draws one random number per element, serially (MKL's parallel
generator is used on Intel CPUs only), and its CPU dropout keeps a float mask for backward.
``LoRADropout`` draws the same distribution differently: the dropped elements of a
Bernoulli(p) process are exactly the partial sums of independent Geometric(p) gaps, so about
``p * numel`` draws place them all (20x fewer at p = 0.05), and backward keeps only their
flat positions. On CUDA torch's fused dropout is already fast and is used as it is.
"""
import math
from typing import Callable, Tuple

import torch
from torch import nn


def bernoulli_positions(count: int, p: float, device=None) -> torch.Tensor:
    """Sorted flat positions of the successes among ``count`` independent Bernoulli(p)
    trials, from torch's generator (so seeding reproduces them)."""
    expected = count * p
    # enough gaps to pass `count` but in about one case in 1e9; otherwise draw more
    draws = int(expected + 6 * math.sqrt(expected * (1 - p)) + 16)
    chunks, start = [], 0
    while start < count:
        positions = torch.empty(draws, dtype=torch.int64, device=device).geometric_(p)
        positions = positions.cumsum_(0).add_(start - 1)
        chunks.append(positions)
        start = int(positions[-1]) + 1
    positions = torch.cat(chunks) if len(chunks) > 1 else chunks[0]
    return positions[:int(torch.searchsorted(positions, count))]


class _DropAt(torch.autograd.Function):
    """``x * scale`` with zeros at flat ``positions``; backward keeps only the positions."""

    @staticmethod
    def forward(ctx, x, positions, scale):
        ctx.save_for_backward(positions)
        ctx.scale, ctx.shape = scale, x.shape
        return x.contiguous().mul(scale).view(-1).index_fill_(0, positions, 0).view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        positions, = ctx.saved_tensors
        grad = grad.contiguous().mul(ctx.scale).view(-1).index_fill_(0, positions, 0)
        return grad.view(ctx.shape), None, None


class LoRADropout(nn.Dropout):
    """``nn.Dropout`` for the input of a LoRA branch (same distribution and scaling)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.draw(x)[0]

    def draw(self, x: torch.Tensor) -> Tuple[torch.Tensor, Callable]:
        """``(dropout(x), redo)``: ``redo(y)`` drops the same elements of a tensor y shaped
        like x (to recompute the dropped input in backward instead of keeping it)."""
        if not self.training or self.p == 0:
            return x, _identity
        scale = 1 / (1 - self.p)
        if x.device.type != 'cpu':
            dropped, mask = torch.native_dropout(x, self.p, True)
            return dropped, lambda y: y * mask * scale
        positions = bernoulli_positions(x.numel(), self.p, x.device)
        return (_DropAt.apply(x, positions, scale),
                lambda y: _DropAt.apply(y, positions, scale))


def _identity(x):
    return x
