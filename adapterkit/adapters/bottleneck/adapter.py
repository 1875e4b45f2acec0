"""Bottleneck adapters (Houlsby et al., 2019; Pfeiffer et al., 2021).

An adapter is a small residual MLP, ``x + up(GELU(down(x)))``, applied to the output of a
block's sublayer before the block adds its residual: the Houlsby placement adapts the
attention and the MLP of every block, the Pfeiffer placement the MLP only. ``up`` starts at
zero, so the adapted backbone starts as exactly the pretrained one.

Injection: the adapter becomes a child ``adapter`` of the sublayer it follows
(``layers.0.blocks.0.attn.adapter.down.weight``) and a forward hook passes that sublayer's
output through it. timm's modules, code and names stay untouched, and LoRA on the same
sublayer's linears composes with it. An adapter is nonlinear, so it cannot be merged.
"""
import re
from typing import Optional, Sequence, Union

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

PerStage = Union[int, Sequence[int]]


class BottleneckAdapter(nn.Module):
    """``x + up(GELU(down(x)))`` on the last dimension, the identity at initialisation."""

    def __init__(self, dim: int, width: int):
        super().__init__()
        self.down = nn.Linear(dim, width)
        self.act = nn.GELU()
        self.up = nn.Linear(width, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(self.act(self.down(x)))


def _adapt_output(module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of an adapted sublayer: its output goes through its adapter."""
    return module.adapter(output)


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
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    mergeable = False
    not_mergeable_reason = 'a bottleneck adapter is a nonlinear layer of its own'
    prefixes = ('adapter.',)

    def __init__(self, placement: str = 'houlsby', targets: Patterns = None,
                 reduction_factor: PerStage = 16, bottleneck: Optional[PerStage] = None,
                 trainable: Patterns = None):
        super().__init__(trainable=trainable)
        if targets is None:
            if placement not in PLACEMENTS:
                raise StrategyError(f'Adapter: unknown placement {placement!r} '
                                    f'(choose from {", ".join(PLACEMENTS)})',
                                    strategy='Adapter', option='placement')
            targets = PLACEMENTS[placement]
        self.targets = as_pattern_list(targets)
        if not self.targets:
            raise StrategyError('Adapter: no targets given', strategy='Adapter', option='targets')
        self.reduction_factor = reduction_factor
        self.bottleneck = bottleneck

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        targets = self.match_modules(backbone, self.targets)
        widths = {}
        for name, module in targets.items():  # check all before changing anything
            dim = _output_width(module)
            if dim is None:
                raise StrategyError(f'Adapter: target {name} is a {type(module).__name__}; an '
                                    f'adapter follows an attention, an MLP or a Linear',
                                    strategy='Adapter', option='targets')
            if hasattr(module, 'adapter'):
                raise StrategyError(f'Adapter: target {name} has an adapter already',
                                    strategy='Adapter', option='targets')
            widths[name] = (dim, self._width(name, dim))
        for name, module in targets.items():
            module.adapter = self.adapter_module(*widths[name])
            module.register_forward_hook(_adapt_output)
            self.mark_trainable(backbone, [f'{name}.adapter.{p}' for p, _ in
                                           module.adapter.named_parameters()])

    def adapter_module(self, dim: int, width: int) -> nn.Module:
        """The module after a sublayer of ``dim`` channels, with bottleneck ``width``: the
        identity at initialisation. Presets of the family (PHM, Compacter, low-rank
        adapters) override this and keep the placement, widths and training."""
        return BottleneckAdapter(dim, width)

    def _width(self, name: str, dim: int) -> int:
        """The bottleneck width of the adapter after sublayer ``name`` of width ``dim``."""
        option = 'bottleneck' if self.bottleneck is not None else 'reduction_factor'
        value = getattr(self, option)
        if not isinstance(value, int):
            stage = re.match(r'layers\.(\d+)\.', name)
            if stage is None or int(stage.group(1)) >= len(value):
                raise StrategyError(f'Adapter: {option}={list(value)} gives no value for {name} '
                                    f'(one value per stage layers.{{i}})',
                                    strategy='Adapter', option=option)
            value = value[int(stage.group(1))]
        return value if option == 'bottleneck' else max(1, dim // value)

    def __repr__(self) -> str:
        return f'Adapter(targets={self.targets!r})'
