"""The hypernetworks of Polyhistor (Liu et al., NeurIPS 2022, arXiv 2210.03265): Decomposed
HyperNetworks and Decomposed Lite-HyperNetworks, as the authors' Swin code builds them (its
``hyperlowrank++`` and ``hyperlowrank_kron`` variants; docs/strategies.md).

Decomposed: every adapter matrix (out x in) is generated as the product A B of two factors,
A (out x r) and B (r x in), so a head has e (out + in) r parameters instead of e out in.

- ``DecomposedNetwork`` (Polyhistor): one hypernetwork per stage. Its projector reads
  [z_t; l_j; p] (task, the stage's block j, adapter position p: 0 the MLP's, 1 the
  attention's; no p with MLP adapters only), and one set of heads generates the adapters of
  both positions of every block of the stage.
- ``KroneckerNetwork`` (Polyhistor-Lite): one hypernetwork for the whole backbone, its heads at
  the first stage's widths (d_0, k_0). A block whose width is c d_0 has c layer embeddings,
  hence c generated weight sets per task and position, which its Layer-wise Scaling Kernels
  (``scaling.py``) combine into the block's adapter; a block of the first stage (c = 1) uses
  its one set directly.
"""
from typing import Dict, Sequence

import torch
from torch import nn

from ...errors import StrategyError
from ..hyperformer import AdapterWeights, GeneratorHeads, Projector, Site
from .scaling import ScalingKernels

POSITIONS = ('mlp', 'attn')  # the authors' position ids: 0 the MLP adapter, 1 the attention's


def low_rank_shapes(d: int, k: int, rank: int) -> Dict[str, tuple]:
    """The factors and biases of an adapter of width d and bottleneck k, rank ``rank``."""
    return dict(down_left=(k, rank), down_right=(rank, d), down_bias=(k,),
                up_left=(d, rank), up_right=(rank, k), up_bias=(d,))


def low_rank_weights(generated: Dict[str, torch.Tensor]) -> AdapterWeights:
    """D = A_D B_D and U = A_U B_U, batched over the leading dimensions."""
    return AdapterWeights(generated['down_left'] @ generated['down_right'],
                          generated['down_bias'],
                          generated['up_left'] @ generated['up_right'], generated['up_bias'])


def joined(parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """[a; b; ...] for every combination of the rows of ``parts`` (each (n_i, e)):
    (n_0, n_1, ..., sum of e)."""
    shape = [len(part) for part in parts]
    out = []
    for axis, part in enumerate(parts):
        view = [1] * len(parts)
        view[axis] = len(part)
        out.append(part.reshape(*view, -1).expand(*shape, -1))
    return torch.cat(out, dim=-1)


class DecomposedNetwork(nn.Module):
    """Polyhistor's Decomposed HyperNetworks: the task embeddings and, per stage, layer and
    position embeddings, a projector and rank-``rank`` heads (see the module docstring)."""

    def __init__(self, sites: Sequence[Site], tasks: int, dim: int, hidden: int, rank: int):
        super().__init__()
        self.sites = tuple(sites)
        self.positions = [p for p in POSITIONS if any(s.position == p for s in sites)]
        self.task_embedding = nn.Parameter(torch.randn(tasks, dim))
        self.blocks = {}  # stage -> its adapted blocks, in order
        stages = {}
        for site in self.sites:
            blocks = self.blocks.setdefault(site.stage, [])
            if site.block not in blocks:
                blocks.append(site.block)
            stages[str(site.stage)] = (site.dim, site.width)
        joins = 3 if len(self.positions) > 1 else 2
        self.stages = nn.ModuleDict({stage: nn.ModuleDict(dict(
            projector=Projector(joins * dim, hidden, dim),
            heads=GeneratorHeads(dim, low_rank_shapes(d, k, rank))))
            for stage, (d, k) in stages.items()})
        for stage, network in self.stages.items():
            network.register_parameter('layer_embedding', nn.Parameter(
                torch.randn(len(self.blocks[int(stage)]), dim)))
            if len(self.positions) > 1:
                network.register_parameter('position_embedding',
                                           nn.Parameter(torch.randn(2, dim)))

    def forward(self) -> Dict[str, AdapterWeights]:
        weights = {}
        for stage, network in self.stages.items():
            parts = [self.task_embedding, network.layer_embedding]
            if len(self.positions) > 1:
                parts.append(network.position_embedding)
            rows = network.projector(joined(parts))  # (T, n_s[, 2], e)
            if len(self.positions) == 1:
                rows = rows[:, :, None]
            weights[int(stage)] = low_rank_weights(network.heads(rows))  # (T, n_s, P, ...)
        return {site.name: AdapterWeights(*(
            w[:, self.blocks[site.stage].index(site.block), self.positions.index(site.position)]
            for w in weights[site.stage][:4])) for site in self.sites}


class KroneckerNetwork(nn.Module):
    """Polyhistor-Lite: Decomposed Lite-HyperNetworks at the first stage's widths and each
    block's Layer-wise Scaling Kernels (see the module docstring)."""

    def __init__(self, sites: Sequence[Site], tasks: int, dim: int, hidden: int, rank: int,
                 kernel_front: bool = True):
        super().__init__()
        self.sites = tuple(sites)
        self.positions = [p for p in POSITIONS if any(s.position == p for s in sites)]
        base = min(sites, key=lambda site: site.dim)
        self.scales = {site.block: self.scale(site, base) for site in self.sites}
        self.task_embedding = nn.Parameter(torch.randn(tasks, dim))
        if len(self.positions) > 1:
            self.position_embedding = nn.Parameter(torch.randn(2, dim))
        self.projector = Projector((3 if len(self.positions) > 1 else 2) * dim, hidden, dim)
        self.heads = GeneratorHeads(dim, low_rank_shapes(base.dim, base.width, rank))
        self.layer_embedding = nn.ParameterDict({
            str(block): nn.Parameter(torch.randn(c, dim)) for block, c in self.scales.items()})
        self.kernels = nn.ModuleDict({
            str(block): nn.ModuleDict({p: ScalingKernels(c, kernel_front)
                                       for p in self.positions})
            for block, c in self.scales.items() if c > 1})

    @staticmethod
    def scale(site: Site, base: Site) -> int:
        """c with d = c d_0 and k = c k_0: the Kronecker factor from the first stage up."""
        scale = site.dim // base.dim
        if site.dim != scale * base.dim or site.width != scale * base.width:
            raise StrategyError(
                f'PolyhistorLite: {site.name} has width {site.dim} and bottleneck '
                f'{site.width}, not a multiple c of the first stage\'s {base.dim} and '
                f'{base.width} (same c): choose a reduction_factor that divides every width',
                strategy='PolyhistorLite', option='reduction_factor')
        return scale

    def forward(self) -> Dict[str, AdapterWeights]:
        blocks = list(self.layer_embedding)
        layers = torch.cat([self.layer_embedding[block] for block in blocks])  # (sum c, e)
        parts = [self.task_embedding, layers]
        if len(self.positions) > 1:
            parts.append(self.position_embedding)
        rows = self.projector(joined(parts))  # (T, sum c[, 2], e): one batch for all blocks
        if len(self.positions) == 1:
            rows = rows[:, :, None]
        generated = low_rank_weights(self.heads(rows))  # (T, sum c, P, ...)
        start, out = 0, {}
        for block in blocks:
            c = self.scales[int(block)]
            for p, position in enumerate(self.positions):
                sets = AdapterWeights(*(w[:, start:start + c, p] for w in generated[:4]))
                out[block, position] = (self.kernels[block][position](sets) if c > 1 else
                                        AdapterWeights(*(w[:, 0] for w in sets[:4])))
            start += c
        return {site.name: out[str(site.block), site.position] for site in self.sites}
