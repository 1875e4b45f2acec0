"""TADFormer's layers: the shared low-rank layer with its task branch, and the task filters.

- ``TADLinear``: a frozen linear layer ``W x + b`` with the shared low-rank delta of every
  block (the paper's task-shared "TS" module) ``y = W x + b + s B A dropout(x)``; in the last
  block of a stage it also answers one output per task (the task-adaptive "TA" module)
  ``y_t = W x + b + s B F_t(A u_t)``: the layer's own A and B (there are no task-specific
  projections), a task filter F_t in the rank-r space between them, ``W x + b`` from the
  shared input and ``u_t`` the task's input.
- ``StaticFilters``: F_t a learned depthwise 3x3 convolution per task (the authors' released
  code, ``filter='static'``).
- ``DynamicFilter``: F_t a depthwise 3x3 kernel generated from the task's own features, per
  map (the paper's Dynamic Task Filter, ``filter='dynamic'``): one module for all tasks.

Filters act on rank-r features arranged as images, (T, M, r, h, w): T tasks, M maps.
"""
import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from adapterkit.layers import LoRADropout


class StaticFilters(nn.ModuleDict):
    """One depthwise 3x3 convolution (with bias, zero padding 1) per task, in task order;
    torch's default init."""

    def __init__(self, tasks: Sequence[str], rank: int, like: torch.Tensor):
        super().__init__((task, nn.Conv2d(rank, rank, 3, padding=1, groups=rank,
                                          device=like.device, dtype=like.dtype))
                         for task in tasks)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        tasks, maps, rank = z.shape[:3]
        # all tasks as one grouped convolution over T * r channels
        weight = torch.cat([conv.weight for conv in self.values()])
        bias = torch.cat([conv.bias for conv in self.values()])
        x = z.transpose(0, 1).reshape(maps, tasks * rank, *z.shape[3:])
        out = F.conv2d(x, weight, bias, padding=1, groups=tasks * rank)
        return out.view(maps, tasks, *z.shape[2:]).transpose(0, 1)


class DynamicFilter(nn.Module):
    """A depthwise 3x3 kernel per map, generated from the map itself:

        p = mean over (h, w) of z;  k = kernel(p) viewed (r, 9)
        k = (k - mean_9 k) / (std_9 k + 1e-10) * gamma + beta   (std unbiased, over the taps)
        F(z) = depthwise conv3x3(z; k), zero padding 1, no bias

    ``kernel`` is a Linear r -> 9r (channel c's taps are outputs 9c..9c+8, row-major 3x3);
    gamma ~ N(0, 1) sqrt(2) / 3 and beta ~ N(0, 1) at init, as the authors' filter norm.
    """

    def __init__(self, rank: int, like: torch.Tensor):
        super().__init__()
        self.kernel = nn.Linear(rank, 9 * rank, device=like.device, dtype=like.dtype)
        gamma = torch.randn(9 * rank, device=like.device, dtype=like.dtype) * math.sqrt(2) / 3
        self.gamma = nn.Parameter(gamma)
        self.beta = nn.Parameter(torch.randn(9 * rank, device=like.device, dtype=like.dtype))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        flat = z.flatten(0, 1)  # every task's map alike: the kernel comes from the map
        count, rank = flat.shape[:2]
        k = self.kernel(flat.mean((2, 3))).view(count, rank, 9)
        k = (k - k.mean(-1, keepdim=True)) / (k.std(-1, keepdim=True) + 1e-10)
        k = k.flatten(1) * self.gamma + self.beta
        out = F.conv2d(flat.reshape(1, count * rank, *flat.shape[2:]),
                       k.reshape(count * rank, 1, 3, 3), padding=1, groups=count * rank)
        return out.view(z.shape)


class TADLinear(nn.Linear):
    """An ``nn.Linear`` (the adapted layer's own frozen weight and bias) with TADFormer's
    shared low-rank delta and, given ``task_filter``, its task branch (module docstring).

    Args:
        linear: the layer to adapt; its weight and bias are adopted as they are.
        rank: r.
        scale: s (it multiplies B A directly, as the reference's shared scale).
        dropout: dropout on the input of the shared low-rank branch.
        task_filter: ``StaticFilters`` or ``DynamicFilter`` for a layer with a task branch.
    """

    def __init__(self, linear: nn.Linear, rank: int, scale: float, dropout: float,
                 task_filter: nn.Module = None):
        # built on 'meta' (nothing allocated), then given the adapted layer's tensors
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None,
                         device='meta')
        self.weight, self.bias = linear.weight, linear.bias
        like = self.weight
        down = torch.empty(rank, self.in_features, device=like.device, dtype=like.dtype)
        nn.init.kaiming_uniform_(down, a=math.sqrt(5))  # B = 0: step 0 is the pretrained net
        self.tad_lora_A = nn.Parameter(down)
        self.tad_lora_B = nn.Parameter(torch.zeros(self.out_features, rank, device=like.device,
                                                   dtype=like.dtype))
        self.scale = float(scale)
        self.lora_dropout = LoRADropout(dropout)
        if task_filter is not None:
            self.tad_filter = task_filter
        self.merged = False
        self.train(linear.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.streams(x)[0]

    def streams(self, x: torch.Tensor):
        """``(shared output, W x + b, dropout(x))``: the task branch reads the last two."""
        base = F.linear(x, self.weight, self.bias)
        dropped = self.lora_dropout.draw(x)[0]
        if self.merged:
            return base, base, dropped
        low = F.linear(dropped, self.tad_lora_A)
        return base + self.scale * F.linear(low, self.tad_lora_B), base, dropped

    def task_outputs(self, base: torch.Tensor, inputs: torch.Tensor, height: int,
                     width: int) -> torch.Tensor:
        """``base + s B F_t(A u_t)`` of every task, (T, M, h * w, out).

        Args:
            base: ``W x + b`` of the shared input, (M, h * w, out).
            inputs: the tasks' inputs u_t, (T, M, h * w, in), tokens in row-major order of
                the (h, w) maps the filter runs on.
        """
        low = F.linear(inputs, self.tad_lora_A)  # (T, M, h*w, r)
        maps = low.unflatten(2, (height, width)).permute(0, 1, 4, 2, 3)
        low = self.tad_filter(maps).permute(0, 1, 3, 4, 2).flatten(2, 3)
        return base + self.scale * F.linear(low, self.tad_lora_B)

    # ------------------------------------------------------------------ merging
    @property
    def foldable(self) -> bool:
        """Whether ``merge`` folds the shared delta: not in a layer with a task branch, whose
        task outputs need ``W x + b`` and the very A and B of the delta."""
        return not hasattr(self, 'tad_filter')

    def delta_weight(self) -> torch.Tensor:
        return self.scale * self.tad_lora_B @ self.tad_lora_A

    @torch.no_grad()
    def merge(self) -> None:
        if self.foldable and not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, rank={self.tad_lora_A.shape[0]}, scale={self.scale}'
