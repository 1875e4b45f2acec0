"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021).

An adapter is a small residual MLP, ``x + up(GELU(down(x)))``, applied to the output of a
block's sublayer before the block adds its residual: the Houlsby placement adapts the
attention and the MLP of every block, the Pfeiffer placement the MLP only. ``up`` starts at
zero, so the adapted backbone starts as exactly the pretrained one.

Injection: the adapter becomes a child of the sublayer it follows, named by the strategy's
``child`` (``adapter``: ``layers.0.blocks.0.attn.adapter.down.weight``), and a forward hook
passes that sublayer's output through it. timm's modules, code and names stay untouched,
and LoRA on the same sublayer's linears composes with it. An adapter is nonlinear, so it
cannot be merged.

The presets of the family (PHM adapters, Compacter, low-rank adapters) subclass ``Adapter``
with a child name of their own and override ``adapter_module`` (and, for parts every
adapter shares, ``prepare``); placement, widths and training stay here.
"""
import functools
import re
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ...errors import StrategyError
from ...registry import ADAPTERS
from ..base import AdapterStrategy, Patterns, as_pattern_list

#: Which sublayers get an adapter, per placement (timm Swin names).
PLACEMENTS = {
    'houlsby': r'layers\.\d+\.blocks\.\d+\.(attn|mlp)',
    'pfeiffer': r'layers\.\d+\.blocks\.\d+\.mlp',
}

#: The bottleneck's nonlinearity: exact GELU, or the tanh approximation (the ``gelu_new``
#: of the Compacter authors' code).
ACTIVATIONS = {'gelu': dict(approximate='none'), 'gelu_tanh': dict(approximate='tanh')}

PerStage = Union[int, Sequence[int]]


class BottleneckAdapter(nn.Module):
    """``x + up(act(down(x)))`` on the last dimension.

    By default ``down`` and ``up`` are ``nn.Linear`` layers with ``up`` at zero, so the
    adapter starts as the identity; a preset passes projections of its own (PHM, low-rank).
    """

    def __init__(self, dim: int, width: int, activation: str = 'gelu',
                 down: Optional[nn.Module] = None, up: Optional[nn.Module] = None):
        super().__init__()
        self.down = nn.Linear(dim, width) if down is None else down
        self.act = nn.GELU(**ACTIVATIONS[activation])
        if up is None:
            up = nn.Linear(width, dim)
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        self.up = up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _adapt_output(child: str, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an adapted sublayer: its output goes through its adapter ``child``."""
    return getattr(module, child)(output)


def _output_width(module: nn.Module) -> Optional[int]:
    """Channels of a sublayer's output: a Linear's own, attention's ``proj``, an MLP's ``fc2``."""
    for linear in (module, getattr(module, 'proj', None), getattr(module, 'fc2', None)):
        if isinstance(linear, nn.Linear):
            return linear.out_features
    return None


@ADAPTERS.register_module()
class Adapter(AdapterStrategy):
    """Bottleneck adapters after the sublayers chosen by ``placement`` (or ``targets``).

    Args:
        placement: ``'houlsby'`` (after attention and after the MLP of every block) or
            ``'pfeiffer'`` (after the MLP only).
        targets: regex pattern(s) of sublayers to adapt instead of a placement (attention,
            MLP or Linear modules; fullmatch on backbone module names).
        reduction_factor: bottleneck width = sublayer width // reduction_factor; one value,
            or one per stage (``layers.{i}``).
        bottleneck: the bottleneck width itself, one value or one per stage; overrides
            ``reduction_factor``.
        activation: ``'gelu'`` (exact) or ``'gelu_tanh'`` (its tanh approximation).
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    mergeable = False
    not_mergeable_reason = 'a bottleneck adapter is a nonlinear layer of its own'
    #: The name of the adapter module under the sublayer it follows; a preset has its own,
    #: and its prefix is that name.
    child = 'adapter'
    prefixes = ('adapter.',)

    def __init__(self, placement: str = 'houlsby', targets: Patterns = None,
                 reduction_factor: PerStage = 16, bottleneck: Optional[PerStage] = None,
                 activation: str = 'gelu', trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if targets is None:
            if placement not in PLACEMENTS:
                raise self.error(f'unknown placement {placement!r} (choose from '
                                 f'{", ".join(PLACEMENTS)})', 'placement')
            targets = PLACEMENTS[placement]
        self.targets = as_pattern_list(targets)
        if not self.targets:
            raise self.error('no targets given', 'targets')
        if activation not in ACTIVATIONS:
            raise self.error(f'unknown activation {activation!r} (choose from '
                             f'{", ".join(ACTIVATIONS)})', 'activation')
        self.reduction_factor = reduction_factor
        self.bottleneck = bottleneck
        self.activation = activation

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        targets = self.match_modules(backbone, self.targets)
        widths = {}
        for name, module in targets.items():  # check all before changing anything
            dim = _output_width(module)
            if dim is None:
                raise self.error(f'target {name} is a {type(module).__name__}; an adapter '
                                 f'follows an attention, an MLP or a Linear', 'targets')
            if hasattr(module, self.child):
                raise self.error(f'target {name} has an adapter {self.child!r} already',
                                 'targets')
            widths[name] = (dim, self._width(name, dim))
        self.prepare(backbone, widths)
        for name, module in targets.items():
            setattr(module, self.child, self.adapter_module(name, *widths[name]))
            module.register_forward_hook(functools.partial(_adapt_output, self.child))
            self.mark_trainable(backbone, [f'{name}.{self.child}.{p}' for p, _ in
                                           getattr(module, self.child).named_parameters()])

    def prepare(self, backbone: nn.Module, widths: Dict[str, Tuple[int, int]]) -> None:
        """Called once every target has passed the checks above and before the first
        adapter is built, with ``{target: (width, bottleneck width)}``: a preset checks
        its own constraints here (raising leaves the model as it was) and then adds the
        parts its adapters share. Nothing for plain adapters."""

    def adapter_module(self, name: str, dim: int, width: int) -> nn.Module:
        """The module after sublayer ``name`` of ``dim`` channels, with bottleneck
        ``width``; here the identity at initialisation. Presets of the family (PHM,
        Compacter, low-rank adapters) override this with their projections and their
        authors' initialisation, and keep the placement, widths and training."""
        return BottleneckAdapter(dim, width, self.activation)

    def error(self, message: str, option: str) -> StrategyError:
        """``'<Strategy>: <message>'``, about ``option``."""
        name = type(self).__name__
        return StrategyError(f'{name}: {message}', strategy=name, option=option)

    def _width(self, name: str, dim: int) -> int:
        """The bottleneck width of the adapter after sublayer ``name`` of width ``dim``."""
        option = 'bottleneck' if self.bottleneck is not None else 'reduction_factor'
        value = getattr(self, option)
        if not isinstance(value, int):
            stage = re.match(r'layers\.(\d+)\.', name)
            if stage is None or int(stage.group(1)) >= len(value):
                raise self.error(f'{option}={list(value)} gives no value for {name} (one '
                                 f'value per stage layers.{{i}})', option)
            value = value[int(stage.group(1))]
        return value if option == 'bottleneck' else max(1, dim // value)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(targets={self.targets!r})'
