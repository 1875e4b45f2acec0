"""The strategies Polyhistor and Polyhistor-Lite (Liu et al., NeurIPS 2022, arXiv 2210.03265)
on Swin: adapters after the attention and the MLP of every block, their weights generated
per task by a shared hypernetwork once per forward, each task's adapters on its own stream
of one frozen backbone (the base ``HyperAdapters`` of ``adapters/hyperformer.py``).
"""
from typing import List

from torch import nn

from ...registry import ADAPTERS
from ..hyperformer import HyperAdapters, Site
from .hypernetworks import DecomposedNetwork, TemplateNetwork


class _Ranked(HyperAdapters):
    def __init__(self, rank: int = 8, **options):
        super().__init__(**options)
        if not isinstance(rank, int) or rank < 1:
            raise self.error(f'rank must be a positive integer, got {rank!r}', 'rank')
        self.rank = rank


@ADAPTERS.register_module()
class Polyhistor(_Ranked):
    """Polyhistor: Decomposed HyperNetworks (hypernetworks.py) generate every task's and
    block's adapter matrices as rank-``rank`` products L R^T from the task and layer
    embeddings.

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
    """Polyhistor-Lite: Decomposed Lite-HyperNetworks generate one template per task and
    position at the first stage's widths from the task alone; each block's Layer-wise
    Scaling Kernels (scaling.py) scale it to the block's width. ``reduction_factor`` must
    divide every width (d = c d_0 and k = c k_0 with one c).

    Args:
        rank: r of the generated templates (8).
        **options: those of ``HyperAdapters`` (as ``Polyhistor``).
    """

    child = 'polyhistor_lite'
    prefixes = ('polyhistor_lite.',)

    def hypernetwork(self, sites: List[Site], tasks: int) -> nn.Module:
        return TemplateNetwork(sites, tasks, self.task_dim, self.hidden_dim, self.rank)
