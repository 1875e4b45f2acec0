"""The strategies Polyhistor and Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv 2210.03265)
on Swin: adapters after the attention and the MLP of every block, their weights generated
per task, once per forward, by hypernetworks the tasks share; each task's adapters on its
own stream of one frozen backbone (the base ``HyperAdapters`` of ``adapters/hyperformer.py``).
"""
from typing import List

from torch import nn

from ...registry import ADAPTERS
from ..hyperformer import HyperAdapters, Site
from .hypernetworks import DecomposedNetwork, KroneckerNetwork


class _Ranked(HyperAdapters):
    def __init__(self, rank: int = 8, **options):
        super().__init__(**options)
        if not isinstance(rank, int) or rank < 1:
            raise self.error(f'rank must be a positive integer, got {rank!r}', 'rank')
        self.rank = rank


@ADAPTERS.register_module()
class Polyhistor(_Ranked):
    """Polyhistor: Decomposed HyperNetworks (hypernetworks.py), one per stage, generate every
    task's and block's adapter matrices as rank-``rank`` products A B from the task, layer
    and position embeddings.

    Args:
        rank: r of the generated matrices (8).
        **options: those of ``HyperAdapters`` (``placement``, ``reduction_factor`` (4),
            ``task_dim`` (64), ``hidden_dim`` (128), ``activation``, ``trainable``).
    """

    child = 'polyhistor'
    prefixes = ('polyhistor.',)

    def hypernetwork(self, sites: List[Site], tasks: int) -> nn.Module:
        return DecomposedNetwork(sites, tasks, self.task_dim, self.hidden_dim, self.rank)


@ADAPTERS.register_module()
class PolyhistorLite(_Ranked):
    """Polyhistor-Lite: Decomposed Lite-HyperNetworks generate, per task, c rank-``rank``
    weight sets at the first stage's widths for a block c times as wide, which the block's
    Layer-wise Scaling Kernels (scaling.py) combine into its adapter. ``reduction_factor``
    must divide every width (d = c d_0 and k = c k_0 with one c).

    Args:
        rank: r of the generated weight sets (8).
        kernel_front: W = sum_i K_i (x) W_i (True) or sum_i W_i (x) K_i (False).
        **options: those of ``HyperAdapters`` (as ``Polyhistor``).
    """

    child = 'polyhistor_lite'
    prefixes = ('polyhistor_lite.',)

    def __init__(self, kernel_front: bool = True, **options):
        super().__init__(**options)
        self.kernel_front = bool(kernel_front)

    def hypernetwork(self, sites: List[Site], tasks: int) -> nn.Module:
        return KroneckerNetwork(sites, tasks, self.task_dim, self.hidden_dim, self.rank,
                                self.kernel_front)
