"""HyperFormer (Mahabadi et al., ACL 2021, arXiv 2106.04489) for Swin: one shared
hypernetwork generates every task's and every block's adapter weights from a task embedding
and a layer embedding; the adapters run in per-task streams of one frozen backbone.

The parts every hypernetwork method shares live here (Polyhistor builds on them,
``adapters/polyhistor/``):

- ``TaskProjector``: the task embeddings z_t (and layer embeddings l_j) and the projector
  I = LayerNorm(W2 ReLU(W1 [z_t; l_j] + b1) + b2) of the authors' code (128 -> 128 -> 64,
  LayerNorm eps 1e-6), computed for every task and block in one batch;
- ``GeneratorHeads``: ``Linear(e, size)`` heads, one per generated tensor, applied to all
  (task, block) rows of a stage at once;
- ``GeneratedAdapter``: the hooked child of an adapted sublayer, ``x + LN(U phi(D x + b_D)
  + b_U)`` (the post-LayerNorm only where generated) with the weights of task t applied to
  task t's stream: the input viewed (T, rows, C), one batched product per projection;
- ``HyperAdapters``: the strategy base: placement (``houlsby``: after the attention and the
  MLP of every block; ``pfeiffer``: the MLP only), task streams through every stage from the
  first block (``layers/streams.py``), and a forward pre-hook on the backbone that runs the
  hypernetwork once per forward and hands each adapter its weights (they depend on the
  tasks and blocks, never on the input: computed once per step, not per sample). A subclass
  says what its hypernetwork is (``hypernetwork``).

HyperFormer on Swin (docs/strategies.md, "Hypernetwork adapters"): the widths d_s differ per
stage, so every stage has its own generator heads (for the attention and for the MLP adapter:
D, b_D, U, b_U and the post-adapter LayerNorm's gain and bias, the authors' "conditional
layer norm"); the task and layer embeddings (one per block, 0..11) and the projector are
shared by all stages. Initialisation as the authors': every Linear N(0, 0.01^2), biases 0, the
embeddings N(0, 1). Not mergeable: the adapters are nonlinear and every task has its own.
"""
import functools
import re
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StrategyError
from ..registry import ADAPTERS
from .base import AdapterStrategy, Patterns
from .bottleneck.adapter import ACTIVATIONS, PLACEMENTS, _output_width

SITE = re.compile(r'layers\.(\d+)\.blocks\.(\d+)\.(attn|mlp)')


class Site(NamedTuple):
    """An adapted sublayer: its name, stage, global block index (0 .. blocks - 1), position
    (``attn`` or ``mlp``), width d and bottleneck width k."""

    name: str
    stage: int
    block: int
    position: str
    dim: int
    width: int


class AdapterWeights(NamedTuple):
    """One adapter's generated tensors for all T tasks: D (T, k, d), b_D (T, k), U (T, d, k),
    b_U (T, d) and, where generated, the post-LayerNorm's gain and bias (T, d)."""

    down: torch.Tensor
    down_bias: torch.Tensor
    up: torch.Tensor
    up_bias: torch.Tensor
    norm_weight: Optional[torch.Tensor] = None
    norm_bias: Optional[torch.Tensor] = None


def init_linear(linear: nn.Linear) -> nn.Linear:
    """The authors' initialisation of every hypernetwork Linear: N(0, 0.01^2), bias 0."""
    nn.init.normal_(linear.weight, std=0.01)
    nn.init.zeros_(linear.bias)
    return linear


class TaskProjector(nn.Module):
    """I[t, j] = LayerNorm(W2 ReLU(W1 [z_t; l_j] + b1) + b2) for every task t and block j:
    (T, blocks, dim); with ``blocks=0`` the task alone, (T, dim)."""

    def __init__(self, tasks: int, blocks: int, dim: int = 64, hidden: int = 128):
        super().__init__()
        self.task_embedding = nn.Parameter(torch.randn(tasks, dim))
        self.layer_embedding = nn.Parameter(torch.randn(blocks, dim)) if blocks else None
        self.hidden = init_linear(nn.Linear(dim * (2 if blocks else 1), hidden))
        self.out = init_linear(nn.Linear(hidden, dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self) -> torch.Tensor:
        z = self.task_embedding
        if self.layer_embedding is not None:
            rows = (len(z), len(self.layer_embedding), z.shape[-1])
            z = torch.cat([z[:, None].expand(rows), self.layer_embedding[None].expand(rows)],
                          dim=-1)
        return self.norm(self.out(F.relu(self.hidden(z))))


class GeneratorHeads(nn.Module):
    """One ``Linear(dim, prod(shape))`` per generated tensor; ``forward(I)`` with I (..., dim)
    answers ``{name: (..., *shape)}``."""

    def __init__(self, dim: int, shapes: Dict[str, Sequence[int]]):
        super().__init__()
        self.shapes = {name: tuple(shape) for name, shape in shapes.items()}
        for name, shape in self.shapes.items():
            self.add_module(name, init_linear(nn.Linear(dim, _prod(shape))))

    def forward(self, embedding: torch.Tensor) -> Dict[str, torch.Tensor]:
        return {name: getattr(self, name)(embedding).unflatten(-1, shape)
                for name, shape in self.shapes.items()}


def _prod(shape: Sequence[int]) -> int:
    out = 1
    for size in shape:
        out *= size
    return out


def stage_rows(sites: Sequence[Site]) -> Dict[int, List[int]]:
    """``{stage: [global block indices]}`` of the adapted blocks, in order."""
    rows: Dict[int, List[int]] = {}
    for site in sites:
        if site.block not in rows.setdefault(site.stage, []):
            rows[site.stage].append(site.block)
    return rows


def stage_shapes(sites: Sequence[Site]) -> Dict[int, Dict[str, tuple]]:
    """``{stage: {position: (d, k)}}``."""
    shapes: Dict[int, Dict[str, tuple]] = {}
    for site in sites:
        shapes.setdefault(site.stage, {})[site.position] = (site.dim, site.width)
    return shapes


class HyperFormerNetwork(nn.Module):
    """The projector and per-stage generator heads; ``forward()`` answers every site's
    ``AdapterWeights``, all tasks at once."""

    def __init__(self, sites: Sequence[Site], tasks: int, dim: int, hidden: int,
                 conditional_norm: bool = True):
        super().__init__()
        self.sites = tuple(sites)
        self.conditional_norm = conditional_norm
        self.projector = TaskProjector(tasks, 1 + max(s.block for s in sites), dim, hidden)
        self.stages = nn.ModuleDict({
            str(stage): nn.ModuleDict({position: GeneratorHeads(dim, self.shapes(d, k))
                                       for position, (d, k) in positions.items()})
            for stage, positions in stage_shapes(sites).items()})

    def shapes(self, d: int, k: int) -> Dict[str, tuple]:
        shapes = dict(down=(k, d), down_bias=(k,), up=(d, k), up_bias=(d,))
        if self.conditional_norm:
            shapes.update(norm_weight=(d,), norm_bias=(d,))
        return shapes

    def weights(self, generated: Dict[str, torch.Tensor]) -> AdapterWeights:
        """The adapter tensors from what the heads generated (here, themselves)."""
        return AdapterWeights(**generated)

    def forward(self) -> Dict[str, AdapterWeights]:
        embedding = self.projector()  # (T, blocks, e): every task and block in one batch
        out = {}
        for stage, blocks in stage_rows(self.sites).items():
            rows = embedding[:, blocks]  # (T, n_s, e)
            for position, heads in self.stages[str(stage)].items():
                weights = self.weights(heads(rows))  # (T, n_s, ...) each
                for site in self.sites:
                    if site.stage == stage and site.position == position:
                        index = blocks.index(site.block)
                        out[site.name] = AdapterWeights(
                            *(None if w is None else w[:, index] for w in weights))
        return out


class GeneratedAdapter(nn.Module):
    """``x + LN(U phi(D x + b_D) + b_U)`` with task t's generated weights on task t's stream
    (the input's rows are the T task streams, task-major). Holds no parameters: the strategy
    sets ``weights`` before every forward of the backbone."""

    def __init__(self, activation: str = 'gelu'):
        super().__init__()
        self.approximate = ACTIVATIONS[activation]['approximate']
        self.weights: Optional[AdapterWeights] = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weights
        streams = x.reshape(len(w.down), -1, x.shape[-1])  # (T, rows, d)
        hidden = torch.baddbmm(w.down_bias[:, None], streams, w.down.transpose(1, 2))
        hidden = F.gelu(hidden, approximate=self.approximate)
        out = torch.baddbmm(w.up_bias[:, None], hidden, w.up.transpose(1, 2))
        if w.norm_weight is not None:
            out = F.layer_norm(out, out.shape[-1:]) * w.norm_weight[:, None] \
                + w.norm_bias[:, None]
        return (streams + out).reshape(x.shape)

    def __getstate__(self):
        # a copy (deepcopy, pickle) drops the generated weights: they belong to one forward
        return {**self.__dict__, 'weights': None}


def _adapt_output(child: str, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an adapted sublayer: its output goes through its adapter ``child``."""
    return getattr(module, child)(output)


def _generate(child: str, backbone: nn.Module, args) -> None:
    """Forward pre-hook of the backbone: the hypernetwork ``child`` runs once and every
    adapter gets its weights for this forward (kept until the next one, for the blocks that
    gradient checkpointing recomputes in backward)."""
    for site, weights in getattr(backbone, child)().items():
        getattr(backbone.get_submodule(site), child).weights = weights


class HyperAdapters(AdapterStrategy):
    """Base of the strategies whose adapters a shared hypernetwork generates per task (see
    the module docstring); a subclass sets ``child`` (its parameter prefix) and builds its
    hypernetwork in ``hypernetwork``.

    Args:
        placement: ``'houlsby'`` (after the attention and the MLP of every block) or
            ``'pfeiffer'`` (after the MLP only).
        reduction_factor: bottleneck width k = d // reduction_factor.
        task_dim: e, the size of the task and layer embeddings and of the projector's output.
        hidden_dim: h, the projector's hidden width.
        activation: ``'gelu'`` (exact) or ``'gelu_tanh'`` (the authors' ``gelu_new``).
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    mergeable = False
    not_mergeable_reason = ('its adapters are nonlinear layers, and every task has adapter '
                            'weights of its own')
    task_streams = True
    child = ''

    def __init__(self, placement: str = 'houlsby', reduction_factor: int = 4,
                 task_dim: int = 64, hidden_dim: int = 128, activation: str = 'gelu',
                 trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if placement not in PLACEMENTS:
            raise self.error(f'unknown placement {placement!r} (choose from '
                             f'{", ".join(PLACEMENTS)})', 'placement')
        if activation not in ACTIVATIONS:
            raise self.error(f'unknown activation {activation!r} (choose from '
                             f'{", ".join(ACTIVATIONS)})', 'activation')
        for option, value in (('reduction_factor', reduction_factor), ('task_dim', task_dim),
                              ('hidden_dim', hidden_dim)):
            if not isinstance(value, int) or value < 1:
                raise self.error(f'{option} must be a positive integer, got {value!r}', option)
        self.placement = placement
        self.reduction_factor = reduction_factor
        self.task_dim, self.hidden_dim = task_dim, hidden_dim
        self.activation = activation

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        sites = self.sites(backbone)
        policy = backbone.streams.with_tasks(model.tasks, start='layers.0.blocks.0',
                                             through_stages=True, owner=type(self).__name__)
        network = self.hypernetwork(sites, len(model.tasks))  # may refuse the widths
        backbone.add_module(self.child, network)
        for site in sites:
            module = backbone.get_submodule(site.name)
            setattr(module, self.child, GeneratedAdapter(self.activation))
            module.register_forward_hook(functools.partial(_adapt_output, self.child))
        backbone.register_forward_pre_hook(functools.partial(_generate, self.child))
        backbone.streams = policy
        self.mark_trainable(backbone, [f'{self.child}.{name}'
                                       for name, _ in network.named_parameters()])

    def sites(self, backbone: nn.Module) -> List[Site]:
        """The adapted sublayers, in order; checked before the model changes."""
        blocks = [f'layers.{i}.blocks.{j}' for i, stage in enumerate(backbone.layers)
                  for j in range(len(stage.blocks))]
        sites = []
        for name, module in self.match_modules(backbone, [PLACEMENTS[self.placement]]).items():
            stage, block, position = SITE.fullmatch(name).groups()
            if hasattr(module, self.child):
                raise self.error(f'{name} has an adapter {self.child!r} already', 'placement')
            dim = _output_width(module)
            sites.append(Site(name, int(stage), blocks.index(f'layers.{stage}.blocks.{block}'),
                              position, dim, max(1, dim // self.reduction_factor)))
        return sites

    def hypernetwork(self, sites: List[Site], tasks: int) -> nn.Module:
        """The module (``backbone.<child>``) whose ``forward()`` answers ``{site name:
        AdapterWeights}`` for all ``tasks`` at once; raise here where the sites do not fit."""
        raise NotImplementedError

    def error(self, message: str, option: str) -> StrategyError:
        name = type(self).__name__
        return StrategyError(f'{name}: {message}', strategy=name, option=option)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(placement={self.placement!r}, '
                f'reduction_factor={self.reduction_factor})')


@ADAPTERS.register_module()
class HyperFormer(HyperAdapters):
    """HyperFormer on Swin: per-task adapters generated by one hypernetwork (see the module
    docstring).

    Args:
        conditional_norm: generate the post-adapter LayerNorm's gain and bias too (the
            authors' default); False: no LayerNorm after the adapter.
        **options: those of ``HyperAdapters`` (``placement``, ``reduction_factor`` (4),
            ``task_dim`` (64), ``hidden_dim`` (128), ``activation``, ``trainable``).
    """

    child = 'hyperformer'
    prefixes = ('hyperformer.',)

    def __init__(self, conditional_norm: bool = True, **options):
        super().__init__(**options)
        self.conditional_norm = conditional_norm

    def hypernetwork(self, sites: List[Site], tasks: int) -> nn.Module:
        return HyperFormerNetwork(sites, tasks, self.task_dim, self.hidden_dim,
                                  self.conditional_norm)
