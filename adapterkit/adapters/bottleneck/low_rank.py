"""Low-rank adapters (Mahabadi et al., NeurIPS 2021, arXiv 2106.04647, the Compacter paper's
baseline): bottleneck adapters whose down and up projections are each a product of two
rank-r factors.

``LowRankLinear`` maps ``in -> out`` as ``y = x W_L W_R + b`` with ``W_L`` (in x r) and
``W_R`` (r x out), the papers' layout. The authors' layer (``low_rank_layer.py`` of
rabeehk/compacter) forms its weight as the broadcast ``W_L * W_R``, which is the matrix
product only at their r = 1; here it is the product at every r. Initialisation as theirs:
both factors Xavier-uniform with gain sqrt(2), the bias zero, so the adapter does not start
at the identity.

The strategy ``LowRankAdapter`` is a preset of ``Adapter`` (child and prefix
``low_rank_adapter``), r = 1 and reduction factor 4 by default. Not mergeable (nonlinear).
"""
import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import ADAPTERS
from .adapter import Adapter, BottleneckAdapter


class LowRankLinear(nn.Module):
    """``y = x W_L W_R + b``, ``W_L`` (in, rank), ``W_R`` (rank, out)."""

    def __init__(self, in_features: int, out_features: int, rank: int):
        super().__init__()
        self.in_features, self.out_features, self.rank = in_features, out_features, rank
        self.weight_left = nn.Parameter(torch.empty(in_features, rank))
        self.weight_right = nn.Parameter(torch.empty(rank, out_features))
        self.bias = nn.Parameter(torch.zeros(out_features))
        for factor in (self.weight_left, self.weight_right):
            nn.init.xavier_uniform_(factor, gain=math.sqrt(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # through the rank-r bottleneck: never forms the (in, out) matrix
        return F.linear(F.linear(x, self.weight_left.t()), self.weight_right.t(), self.bias)

    def extra_repr(self) -> str:
        return (f'in_features={self.in_features}, out_features={self.out_features}, '
                f'rank={self.rank}')


@ADAPTERS.register_module()
class LowRankAdapter(Adapter):
    """Bottleneck adapters whose projections are rank-``rank`` products.

    Args:
        rank: r of both projections.
        reduction_factor: as ``Adapter``'s, default 4 (bottlenecks 24 ... 192 on Swin-T).
        **options: the other options of ``Adapter`` (``placement``, ``targets``,
            ``bottleneck``, ``activation``, ``trainable``).
    """

    child = 'low_rank_adapter'
    prefixes = ('low_rank_adapter.',)

    def __init__(self, rank: int = 1, reduction_factor=4, **options):
        super().__init__(reduction_factor=reduction_factor, **options)
        if not isinstance(rank, int) or rank < 1:
            raise self.error(f'rank must be a positive integer, got {rank!r}', 'rank')
        self.rank = rank

    def adapter_module(self, name: str, dim: int, width: int) -> nn.Module:
        return BottleneckAdapter(dim, width, self.activation,
                                 down=LowRankLinear(dim, width, self.rank),
                                 up=LowRankLinear(width, dim, self.rank))
