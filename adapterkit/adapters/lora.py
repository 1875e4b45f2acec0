"""LoRA (Hu et al., 2022): a trainable low-rank update beside frozen Linear/Conv2d weights.

Every targeted layer is replaced by a LoRA layer that *is* a layer of the same type (a
subclass of ``nn.Linear`` / ``nn.Conv2d`` holding the very same ``weight`` and ``bias``
tensors, so their names and the pretrained loading are unchanged) plus two factors:
``lora_A`` (rank x in, kaiming-uniform) and ``lora_B`` (out x rank, zero, so training starts
from the pretrained function). The output is ``layer(x) + scale * B(A(dropout(x)))``.

For a convolution, A is a k x k convolution into ``rank`` channels with the layer's own
stride, padding and dilation and B a 1x1 convolution: B·A is again one k x k kernel, so
merging is exact.
"""
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import StrategyError
from ..registry import ADAPTERS
from .base import AdapterStrategy, Patterns, as_pattern_list
from ..layers.dropout import LoRADropout
from ..layers.task_lowrank import task_add_up, task_down

#: The four linears of every Swin block: attention qkv and proj, MLP fc1 and fc2. Anchored,
#: so SwinV2's extra linears (``attn.cpb_mlp.*``) are not hit.
SWIN_BLOCK_LINEARS = r'layers\.\d+\.blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])'

_OPTIONS = ('rank', 'alpha', 'scale', 'dropout')


class LoRALayer:
    """What LoRALinear and LoRAConv2d share: the factors, the scale and merging."""

    def _add_lora(self, a_shape, b_shape, rank: int, scale: float, dropout: float) -> None:
        self.rank = rank
        self.scale = scale
        like = dict(device=self.weight.device, dtype=self.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(a_shape, **like))
        self.lora_B = nn.Parameter(torch.zeros(b_shape, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.lora_dropout = LoRADropout(dropout) if dropout else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        """``scale * B·A`` in the layout of ``weight``."""
        return (self.scale * self.lora_B.flatten(1) @ self.lora_A.flatten(1)).view_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.merged:  # the delta is inside the weight already
            return out
        return out + self.scale * self._lora_forward(self.lora_dropout(x))

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight.add_(self.delta_weight())
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight.sub_(self.delta_weight())
            self.merged = False

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, rank={self.rank}, scale={self.scale:g}'


class LoRALinear(LoRALayer, nn.Linear):
    """An ``nn.Linear`` (the wrapped layer's own weight and bias) with a LoRA update."""

    def __init__(self, base: nn.Linear, rank: int, scale: float, dropout: float = 0.0):
        # built on 'meta' (nothing allocated), then given the wrapped layer's tensors
        super().__init__(base.in_features, base.out_features, bias=base.bias is not None,
                         device='meta')
        self.weight, self.bias = base.weight, base.bias
        self._add_lora((rank, base.in_features), (base.out_features, rank), rank, scale, dropout)
        self.train(base.training)

    def _lora_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_A), self.lora_B)

    #: what ``forward_tasks`` takes per task (PerTask's task-batched forward)
    task_tensors = ('lora_A', 'lora_B')

    def forward_tasks(self, tensors: Dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The forward of T task streams at once (``adapters/pertask.py``): ``x`` (T, ...,
        in) stacked task-major, stream t with the factors ``tensors['lora_A'][t]`` and
        ``tensors['lora_B'][t]``. The frozen product runs once on all rows with its bias
        fused, and each task's delta is added into its rows in place."""
        flat = x.reshape(-1, x.shape[-1])
        out = F.linear(flat, self.weight, self.bias)  # 2-D: addmm's own output, not a view
        low = task_down(self.lora_dropout(flat).view(len(x), -1, flat.shape[-1]),
                        tensors['lora_A'])
        if self.scale != 1:
            low = low * self.scale
        return task_add_up(out, low, tensors['lora_B']).view(*x.shape[:-1], -1)


class LoRAConv2d(LoRALayer, nn.Conv2d):
    """An ``nn.Conv2d`` (the wrapped layer's own weight and bias) with a LoRA update."""

    def __init__(self, base: nn.Conv2d, rank: int, scale: float, dropout: float = 0.0):
        super().__init__(base.in_channels, base.out_channels, base.kernel_size,
                         stride=base.stride, padding=base.padding, dilation=base.dilation,
                         groups=base.groups, bias=base.bias is not None,
                         padding_mode=base.padding_mode, device='meta')
        self.weight, self.bias = base.weight, base.bias
        self._add_lora((rank, base.in_channels, *base.kernel_size),
                       (base.out_channels, rank, 1, 1), rank, scale, dropout)
        self.train(base.training)

    def _lora_forward(self, x: torch.Tensor) -> torch.Tensor:
        # A with the layer's own geometry (and padding mode), then B as a 1x1 conv
        return F.conv2d(self._conv_forward(x, self.lora_A, None), self.lora_B)


_LORA_LAYERS = {nn.Linear: LoRALinear, nn.Conv2d: LoRAConv2d}


@ADAPTERS.register_module()
class LoRA(AdapterStrategy):
    """LoRA on the backbone modules whose names fullmatch ``targets``.

    Args:
        targets: regex pattern(s), ``re.fullmatch``-ed against backbone module names (timm's
            names); every match must be an ``nn.Linear`` or an ``nn.Conv2d`` (groups=1).
            Default: qkv, proj, fc1 and fc2 of every Swin block.
        rank: rank r of the update.
        alpha: the scale is ``alpha / rank`` (LoRA's convention); default ``alpha = rank``,
            i.e. scale 1.
        scale: the scale itself (MTLoRA's convention); give ``alpha`` or ``scale``, not both.
        dropout: dropout on the input of the LoRA branch.
        overrides: per-target options: a list of ``dict(pattern=..., rank=..., alpha=...,
            scale=..., dropout=...)``. For each target, the first override whose pattern
            fullmatches its name replaces the options it gives (giving ``alpha`` or ``scale``
            replaces both). Every override must match at least one target.
        trainable: extra backbone parts to keep trainable (see ``AdapterStrategy``).
    """

    prefixes = ('lora_A', 'lora_B')

    def __init__(self, targets: Patterns = SWIN_BLOCK_LINEARS, rank: int = 4,
                 alpha: Optional[float] = None, scale: Optional[float] = None,
                 dropout: float = 0.0, overrides: Optional[Sequence[dict]] = None,
                 trainable: Patterns = None):
        super().__init__(trainable=trainable)
        self.targets = as_pattern_list(targets)
        if not self.targets:
            raise StrategyError('LoRA: no targets given', strategy='LoRA', option='targets')
        self.defaults = self._checked(dict(rank=rank, alpha=alpha, scale=scale,
                                           dropout=dropout), 'LoRA')
        self.overrides = [dict(override) for override in overrides or []]
        for override in self.overrides:
            if 'pattern' not in override:
                raise StrategyError(f'LoRA: override {override} has no `pattern`',
                                    strategy='LoRA', option='overrides')
            unknown = sorted(set(override) - {'pattern', *_OPTIONS})
            if unknown:
                raise StrategyError(f'LoRA: override {override["pattern"]!r} has unknown option '
                                    f'{unknown[0]!r} (options: {", ".join(_OPTIONS)})',
                                    strategy='LoRA', option='overrides')
        self.layer_names: List[str] = []  # backbone modules this strategy replaced

    def apply(self, model: nn.Module) -> None:
        backbone = model.backbone
        targets = self.match_modules(backbone, self.targets)
        for name, module in targets.items():  # check all before changing anything
            if isinstance(module, LoRALayer):
                raise StrategyError(f'LoRA: target {name} has LoRA already; apply LoRA once '
                                    f'(per-target ranks and scales go in `overrides`)',
                                    strategy='LoRA', option='targets')
            if type(module) not in _LORA_LAYERS or getattr(module, 'groups', 1) != 1:
                raise StrategyError(f'LoRA: target {name} is a {type(module).__name__}; LoRA '
                                    f'adapts nn.Linear and nn.Conv2d (groups=1) layers',
                                    strategy='LoRA', option='targets')
        options = self._options_per_target(list(targets))
        for name, module in targets.items():
            layer = _LORA_LAYERS[type(module)](module, **options[name])
            parent, _, child = name.rpartition('.')
            setattr(backbone.get_submodule(parent), child, layer)
            self.mark_trainable(backbone, [f'{name}.lora_A', f'{name}.lora_B'])
            self.layer_names.append(name)

    def adapted_layers(self, model: nn.Module) -> List[nn.Module]:
        return [model.backbone.get_submodule(name) for name in self.layer_names]

    def peft_form(self, model: nn.Module) -> Tuple[dict, Dict[str, str]]:
        """peft's ``LoraConfig``: the targets as one regex (peft fullmatches a string, as
        we do), ``lora_alpha = scale * r``, and the layers whose rank or scale differ from
        the defaults by their escaped names in ``rank_pattern`` / ``alpha_pattern``. The
        factors are the same tensors: ``lora_A.weight`` (r x in, or a k x k conv into r
        channels), ``lora_B.weight`` (out x r)."""
        if self.trainable:
            raise StrategyError('LoRA: peft has no equivalent of `trainable` (pretrained parts '
                                'trained beside LoRA); export as adapterkit files instead',
                                strategy='LoRA', option='trainable')
        rank, alpha, scale = (self.defaults[k] for k in ('rank', 'alpha', 'scale'))
        scale = float((rank if alpha is None else alpha) / rank if scale is None else scale)
        config = dict(peft_type='LORA', r=rank, lora_alpha=scale * rank,
                      lora_dropout=self.defaults['dropout'], bias='none', use_rslora=False,
                      use_dora=False, fan_in_fan_out=False, modules_to_save=None,
                      target_modules='|'.join(f'(?:{p})' for p in self.targets),
                      rank_pattern={}, alpha_pattern={})
        names = {}
        for name, layer in zip(self.layer_names, self.adapted_layers(model)):
            if (layer.rank, layer.scale) != (rank, scale):
                config['rank_pattern'][re.escape(name)] = layer.rank
                config['alpha_pattern'][re.escape(name)] = layer.scale * layer.rank
            dropout = getattr(layer.lora_dropout, 'p', 0.0)
            if dropout != self.defaults['dropout']:
                raise StrategyError(f'LoRA: peft has one lora_dropout, but target {name} has '
                                    f'{dropout}', strategy='LoRA', option='overrides')
            names.update({f'{name}.{factor}': f'{name}.{factor}.weight'
                          for factor in self.prefixes})
        return config, names

    def _options_per_target(self, names: List[str]) -> Dict[str, dict]:
        """``{target: dict(rank, scale, dropout)}`` after the overrides."""
        for override in self.overrides:  # each one must apply somewhere
            self.match_names(names, [override['pattern']], 'override', 'LoRA target')
        options = {}
        for name in names:
            chosen = dict(self.defaults)
            override = next((o for o in self.overrides if re.fullmatch(o['pattern'], name)),
                            None)
            if override is not None:
                if 'alpha' in override or 'scale' in override:
                    chosen.update(alpha=None, scale=None)
                chosen.update({k: v for k, v in override.items() if k != 'pattern'})
                chosen = self._checked(chosen, f'LoRA override {override["pattern"]!r}')
            rank, alpha, scale = chosen['rank'], chosen['alpha'], chosen['scale']
            if scale is None:
                scale = (rank if alpha is None else alpha) / rank
            options[name] = dict(rank=rank, scale=float(scale), dropout=chosen['dropout'])
        return options

    @staticmethod
    def _checked(options: dict, owner: str) -> dict:
        if not isinstance(options['rank'], int) or options['rank'] < 1:
            raise StrategyError(f'{owner}: rank must be a positive integer, got '
                                f'{options["rank"]!r}', strategy='LoRA', option='rank')
        if options['alpha'] is not None and options['scale'] is not None:
            raise StrategyError(f'{owner}: give alpha (scale = alpha / rank) or scale, not both',
                                strategy='LoRA', option='alpha')
        return options

    def __repr__(self) -> str:
        return f'LoRA(targets={self.targets!r}, rank={self.defaults["rank"]})'
