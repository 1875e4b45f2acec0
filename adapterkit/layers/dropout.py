"""The dropout of LoRA branches, fast on CPU.

LoRA dropout runs on the input of every adapted layer, so on CPU it is a large part of a
training step: torch draws one random number per element, serially (MKL's parallel
generator is used on Intel CPUs only), and its CPU dropout keeps a float mask for backward.
``LoRADropout`` drops every element independently with probability p, as ``nn.Dropout``,
but draws differently:

- float32 on CPU, by the C kernel ``lora_dropout.c``: element i is dropped when a hash of
  (key, i) falls below p; one key from torch's generator per call (so seeding reproduces
  it), one pass over the tensor on all threads (14x faster than the geometric draws
  below at 38 MB), and backward redraws the same elements from the key, keeping nothing.
- otherwise on CPU: the dropped elements of a Bernoulli(p) process are exactly the partial
  sums of independent Geometric(p) gaps, so about ``p * numel`` draws place them all (20x
  fewer than torch's at p = 0.05), and backward keeps only their flat positions.
- on CUDA torch's fused dropout, already fast.
"""
import ctypes
import math
from pathlib import Path
from typing import Callable, Optional, Tuple

import torch
from torch import nn

from . import native


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
    """``x * scale`` with zeros at flat ``positions``; backward keeps only the positions.
    Under ``torch.func.vmap`` every stream of the batch gets the same positions."""

    @staticmethod
    def forward(x, positions, scale):
        return x.contiguous().mul(scale).view(-1).index_fill_(0, positions, 0).view(x.shape)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, positions, scale = inputs
        ctx.save_for_backward(positions)
        ctx.scale, ctx.shape = scale, x.shape

    @staticmethod
    def backward(ctx, grad):
        positions, = ctx.saved_tensors
        grad = grad.contiguous().mul(ctx.scale).view(-1).index_fill_(0, positions, 0)
        return grad.view(ctx.shape), None, None

    @staticmethod
    def vmap(info, in_dims, x, positions, scale):
        x = x.movedim(in_dims[0], 0)
        numel = x[0].numel()
        every = (torch.arange(len(x), device=positions.device)[:, None] * numel
                 + positions).flatten()
        return _DropAt.apply(x, every, scale), 0


class _DropoutKernel:
    """The C kernel ``lora_dropout.c`` (float32 on CPU)."""

    SOURCE = Path(__file__).with_name('lora_dropout.c')

    def __init__(self, library: ctypes.CDLL):
        self.function = library.lora_dropout
        self.function.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                  ctypes.c_uint64, ctypes.c_uint32, ctypes.c_float, ctypes.c_int]

    @classmethod
    def get(cls, x: torch.Tensor) -> Optional['_DropoutKernel']:
        if x.device.type != 'cpu' or x.dtype != torch.float32:
            return None
        return native.load(cls.SOURCE, cls)

    def __call__(self, x: torch.Tensor, key: int, p: float) -> torch.Tensor:
        """``x / (1 - p)`` with the elements that ``key`` drops at p set to zero."""
        x = x.contiguous()
        out = torch.empty_like(x)
        self.function(x.data_ptr(), out.data_ptr(), x.numel(), key, int(p * 2 ** 32),
                      1 / (1 - p), torch.get_num_threads())
        return out


class _DropByKey(torch.autograd.Function):
    """The kernel's dropout; backward drops the same elements of the gradient (the
    derivative is the kept mask times the scale), from the key alone. Under
    ``torch.func.vmap`` it runs once on the whole batch of streams: each stream's elements
    are drawn on their own."""

    @staticmethod
    def forward(x, kernel, key, p):
        return kernel(x, key, p)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, ctx.kernel, ctx.key, ctx.p = inputs

    @staticmethod
    def backward(ctx, grad):
        return ctx.kernel(grad, ctx.key, ctx.p), None, None, None

    @staticmethod
    def vmap(info, in_dims, x, kernel, key, p):
        return _DropByKey.apply(x, kernel, key, p), in_dims[0]


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
        kernel = _DropoutKernel.get(x)
        if kernel is not None:
            key, p = int(torch.randint(1 << 62, ())), self.p
            return _DropByKey.apply(x, kernel, key, p), \
                lambda y: _DropByKey.apply(y, kernel, key, p)
        positions = bernoulli_positions(x.numel(), self.p, x.device)
        return (_DropAt.apply(x, positions, scale),
                lambda y: _DropAt.apply(y, positions, scale))


def _identity(x):
    return x
