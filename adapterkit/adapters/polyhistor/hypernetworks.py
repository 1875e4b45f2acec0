"""The hypernetworks of Polyhistor (Liu et al., NeurIPS 2022, arXiv 2210.03265): Decomposed
HyperNetworks and Decomposed Lite-HyperNetworks.

Decomposed: HyperFormer's heads would generate every d x k matrix whole (a head of e x d k
parameters each); here each matrix M is generated as two factors, a left L (out x r) and a
right R (in x r), and M = L R^T (rank at most r), so a head has e (d + k) r parameters.
``DecomposedNetwork`` is HyperFormer's network (projector on [z_t; l_j], generator heads per
stage) with such heads and no generated LayerNorm.

Lite (``TemplateNetwork``): the projector sees the task alone (J_t = LN(MLP(z_t))) and
generates one template kernel per task and adapter position at the first stage's widths
(d_0, k_0), decomposed as above, with a bias template; each block's Layer-wise Scaling
Kernels (``scaling.py``) scale the template up to the block's width.
"""
from typing import Dict, Sequence

import torch
from torch import nn

from ...errors import StrategyError
from ..hyperformer import (AdapterWeights, GeneratorHeads, HyperFormerNetwork, Site,
                           TaskProjector)
from .scaling import ScalingKernels


def low_rank_shapes(d: int, k: int, rank: int) -> Dict[str, tuple]:
    """The factors and biases of an adapter of width d and bottleneck k, rank ``rank``."""
    return dict(down_left=(k, rank), down_right=(d, rank), down_bias=(k,),
                up_left=(d, rank), up_right=(k, rank), up_bias=(d,))


def low_rank_weights(generated: Dict[str, torch.Tensor]) -> AdapterWeights:
    """D = L_D R_D^T and U = L_U R_U^T, batched over the leading dimensions."""
    return AdapterWeights(generated['down_left'] @ generated['down_right'].transpose(-1, -2),
                          generated['down_bias'],
                          generated['up_left'] @ generated['up_right'].transpose(-1, -2),
                          generated['up_bias'])


class DecomposedNetwork(HyperFormerNetwork):
    """Polyhistor's Decomposed HyperNetwork: per-stage heads generate the rank-``rank``
    factors of every adapter matrix (see the module docstring)."""

    def __init__(self, sites: Sequence[Site], tasks: int, dim: int, hidden: int, rank: int):
        self.rank = rank  # read by ``shapes``, which the parent's constructor calls
        super().__init__(sites, tasks, dim, hidden, conditional_norm=False)

    def shapes(self, d: int, k: int) -> Dict[str, tuple]:
        return low_rank_shapes(d, k, self.rank)

    def weights(self, generated: Dict[str, torch.Tensor]) -> AdapterWeights:
        return low_rank_weights(generated)


class TemplateNetwork(nn.Module):
    """Polyhistor-Lite: template kernels per task from the Decomposed Lite-HyperNetwork,
    scaled to every block by its Layer-wise Scaling Kernels (see the module docstring)."""

    def __init__(self, sites: Sequence[Site], tasks: int, dim: int, hidden: int, rank: int):
        super().__init__()
        self.sites = tuple(sites)
        base = min(sites, key=lambda site: site.dim)
        scales = [self.scale(site, base) for site in self.sites]
        self.projector = TaskProjector(tasks, 0, dim, hidden)
        self.templates = nn.ModuleDict({
            position: GeneratorHeads(dim, low_rank_shapes(base.dim, base.width, rank))
            for position in dict.fromkeys(site.position for site in self.sites)})
        kernels: Dict[str, nn.ModuleDict] = {}
        for site, scale in zip(self.sites, scales):
            kernels.setdefault(str(site.block), nn.ModuleDict())[site.position] = \
                ScalingKernels(scale)
        self.kernels = nn.ModuleDict(kernels)

    @staticmethod
    def scale(site: Site, base: Site) -> int:
        """c with d = c d_0 and k = c k_0: the Kronecker factor from the template up."""
        scale = site.dim // base.dim
        if site.dim != scale * base.dim or site.width != scale * base.width:
            raise StrategyError(
                f'PolyhistorLite: {site.name} has width {site.dim} and bottleneck '
                f'{site.width}, not a multiple c of the template\'s {base.dim} and '
                f'{base.width} (same c): choose a reduction_factor that divides every width',
                strategy='PolyhistorLite', option='reduction_factor')
        return scale

    def forward(self) -> Dict[str, AdapterWeights]:
        task = self.projector()  # (T, e): the templates see the task alone
        templates = {position: low_rank_weights(heads(task))
                     for position, heads in self.templates.items()}
        return {site.name: self.kernels[str(site.block)][site.position](
            templates[site.position]) for site in self.sites}
